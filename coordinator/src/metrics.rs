//! The coordinator's metrics, in the Prometheus text format (`/metrics`).
//!
//! Per job: state and uptime, records in (from its sources) and out (into
//! its sinks), checkpoints completed and aborted, the last
//! completed checkpoint's epoch, size and incremental size, histograms of
//! checkpoint duration (trigger to complete) and of each subtask's
//! alignment, synchronous and asynchronous phase; restarts (global and
//! regional), recoveries and their time, restored subtasks and bytes per
//! tier. Per cluster: workers and slots, heartbeats received per worker,
//! workers lost and how long each was silent before it was declared lost.
//!
//! Counts and gauges are read from the jobs' records when scraped (the
//! same figures `GET /v1/jobs/{id}` shows); histograms are observed as
//! checkpoints complete and workers are lost. Series stay bounded: jobs
//! that have not ended, and the last [`ENDED_JOBS_KEPT`] that have; the
//! heartbeats of registered workers only. Per-task figures (records,
//! busy/idle/back-pressured time, queues, credits) are each worker's own
//! `/metrics`.

use crate::cluster::Cluster;
use crate::history::{CheckpointRecord, RestartScope};
use crate::job::{JobHandle, TIERS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_protocol::{VertexKind, WorkerId};

/// Ended jobs whose series stay exported (the newest ones).
pub const ENDED_JOBS_KEPT: usize = 10;

/// The `Content-Type` of what [`CoordinatorMetrics::encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, EncodeLabelSet)]
struct JobLabels {
    job: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
}

type Histograms = Family<JobLabels, Histogram, fn() -> Histogram>;

/// From 1 ms to about 65 s.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The coordinator's metrics (one leader term's).
#[derive(Debug)]
pub struct CoordinatorMetrics {
    checkpoint_duration: Histograms,
    checkpoint_alignment: Histograms,
    checkpoint_sync: Histograms,
    checkpoint_async: Histograms,
    /// Jobs with histogram series, to drop those of jobs no longer exported.
    histogram_jobs: Mutex<BTreeSet<String>>,
    heartbeats: Family<WorkerLabels, Counter>,
    /// Workers with a heartbeat series, to drop those of workers gone.
    heartbeat_workers: Mutex<BTreeSet<WorkerId>>,
    workers_lost: Counter,
    loss_detection: Histogram,
}

impl Default for CoordinatorMetrics {
    fn default() -> Self {
        Self {
            checkpoint_duration: Histograms::new_with_constructor(seconds_histogram),
            checkpoint_alignment: Histograms::new_with_constructor(seconds_histogram),
            checkpoint_sync: Histograms::new_with_constructor(seconds_histogram),
            checkpoint_async: Histograms::new_with_constructor(seconds_histogram),
            histogram_jobs: Mutex::new(BTreeSet::new()),
            heartbeats: Family::default(),
            heartbeat_workers: Mutex::new(BTreeSet::new()),
            workers_lost: Counter::default(),
            loss_detection: seconds_histogram(),
        }
    }
}

impl CoordinatorMetrics {
    /// Checkpoint `record` of `job` completed.
    pub fn checkpoint_completed(&self, job: &str, record: &CheckpointRecord) {
        let labels = JobLabels { job: job.into() };
        crate::cluster::lock(&self.histogram_jobs).insert(job.into());
        self.checkpoint_duration
            .get_or_create(&labels)
            .observe(record.duration_ms / 1000.0);
        for subtask in &record.subtasks {
            let phases = [
                (&self.checkpoint_alignment, subtask.alignment_ms),
                (&self.checkpoint_sync, subtask.sync_ms),
                (&self.checkpoint_async, subtask.async_ms),
            ];
            for (family, ms) in phases {
                family.get_or_create(&labels).observe(ms / 1000.0);
            }
        }
    }

    /// A heartbeat (or any frame) arrived from `worker`.
    pub fn heartbeat(&self, worker: WorkerId) {
        crate::cluster::lock(&self.heartbeat_workers).insert(worker);
        self.heartbeats
            .get_or_create(&WorkerLabels {
                worker: worker.0.to_string(),
            })
            .inc();
    }

    /// `worker` was declared lost after `silent` without a word.
    pub fn worker_lost(&self, worker: WorkerId, silent: Duration) {
        self.heartbeats.remove(&WorkerLabels {
            worker: worker.0.to_string(),
        });
        self.workers_lost.inc();
        self.loss_detection.observe(silent.as_secs_f64());
    }

    /// Every metric of `cluster`, in the Prometheus text format.
    pub fn encode(&self, cluster: &Cluster) -> String {
        let jobs = exported_jobs(cluster.jobs());
        let exported: BTreeSet<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
        {
            let mut known = crate::cluster::lock(&self.histogram_jobs);
            for gone in known.difference(&exported) {
                let labels = JobLabels { job: gone.clone() };
                for family in self.histograms() {
                    family.remove(&labels);
                }
            }
            known.retain(|job| exported.contains(job));
        }
        let workers = cluster.workers();
        {
            // A heartbeat handled as its worker was declared lost may have
            // brought back a series of a worker that is gone.
            let mut known = crate::cluster::lock(&self.heartbeat_workers);
            known.retain(|worker| {
                let live = workers.iter().any(|w| w.id == *worker);
                if !live {
                    self.heartbeats.remove(&WorkerLabels {
                        worker: worker.0.to_string(),
                    });
                }
                live
            });
        }
        let mut registry = Registry::default();
        let histograms = [
            (
                "weir_checkpoint_duration_seconds",
                "Checkpoints from trigger to complete.",
                &self.checkpoint_duration,
            ),
            (
                "weir_checkpoint_alignment_seconds",
                "Subtasks' waits for the barrier on all of their inputs.",
                &self.checkpoint_alignment,
            ),
            (
                "weir_checkpoint_sync_seconds",
                "Subtasks' synchronous snapshot phase.",
                &self.checkpoint_sync,
            ),
            (
                "weir_checkpoint_async_seconds",
                "Subtasks' asynchronous phase: writing their files to checkpoint storage.",
                &self.checkpoint_async,
            ),
        ];
        for (name, help, family) in histograms {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "weir_worker_heartbeats_received",
            "Heartbeats received from each registered worker.",
            self.heartbeats.clone(),
        );
        registry.register(
            "weir_workers_lost",
            "Workers declared lost.",
            self.workers_lost.clone(),
        );
        registry.register(
            "weir_worker_loss_detection_seconds",
            "How long a lost worker had been silent when it was declared lost.",
            self.loss_detection.clone(),
        );
        registry.register_collector(Box::new(Figures {
            jobs: jobs
                .iter()
                .map(|job| {
                    let totals = crate::cluster::lock(&cluster.rates)
                        .totals(&job.job_id, std::time::Instant::now());
                    JobFigures::of(job, &totals)
                })
                .collect(),
            workers: workers.len() as u64,
            slots: workers.iter().map(|w| u64::from(w.slots)).sum(),
            slots_used: workers.iter().map(|w| u64::from(w.used)).sum(),
        }));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }

    fn histograms(&self) -> [&Histograms; 4] {
        [
            &self.checkpoint_duration,
            &self.checkpoint_alignment,
            &self.checkpoint_sync,
            &self.checkpoint_async,
        ]
    }
}

/// The jobs that have not ended, and the newest [`ENDED_JOBS_KEPT`] that have.
fn exported_jobs(mut jobs: Vec<Arc<JobHandle>>) -> Vec<Arc<JobHandle>> {
    jobs.sort_by_key(|j| std::cmp::Reverse(j.number));
    let mut ended = 0;
    jobs.retain(|job| {
        if !job.record().lifecycle.state().is_terminal() {
            return true;
        }
        ended += 1;
        ended <= ENDED_JOBS_KEPT
    });
    jobs
}

/// One job's figures at one scrape.
#[derive(Debug)]
struct JobFigures {
    labels: JobLabels,
    state: String,
    uptime_s: f64,
    restarts_global: u64,
    restarts_regional: u64,
    recoveries: u64,
    recovery_s: f64,
    checkpoints_completed: u64,
    checkpoints_aborted: u64,
    records_in: u64,
    records_out: u64,
    last_checkpoint: Option<(u64, u64, u64)>,
    restored: [(u64, u64); 3],
}

impl JobFigures {
    /// `job`'s figures; `totals` are its operators' records so far, by
    /// vertex, while it runs.
    fn of(job: &JobHandle, totals: &BTreeMap<u32, (u64, u64)>) -> Self {
        let status = job.status();
        let record = job.record();
        let (records_in, records_out) = if status.state.is_terminal() {
            (status.events_in, status.records_out)
        } else {
            let of_kind = |kind: VertexKind, pick: fn(&(u64, u64)) -> u64| -> u64 {
                job.graph
                    .vertices
                    .iter()
                    .filter(|v| v.kind == kind)
                    .filter_map(|v| totals.get(&v.id.0))
                    .map(pick)
                    .sum()
            };
            (
                of_kind(VertexKind::Source, |t| t.1),
                of_kind(VertexKind::Sink, |t| t.0),
            )
        };
        let last_checkpoint = status
            .checkpoint_history
            .iter()
            .rev()
            .find(|r| r.size_bytes.is_some())
            .map(|r| {
                (
                    r.epoch,
                    r.size_bytes.unwrap_or(0),
                    r.incremental_size_bytes.unwrap_or(0),
                )
            });
        Self {
            labels: JobLabels {
                job: job.job_id.clone(),
            },
            state: status.state.to_string(),
            uptime_s: status.elapsed_s,
            restarts_global: u64::from(status.restarts),
            restarts_regional: record.regional_restart_count,
            recoveries: record.recoveries.0,
            recovery_s: record.recoveries.1,
            checkpoints_completed: u64::from(status.checkpoints_completed),
            checkpoints_aborted: u64::from(status.checkpoints_aborted),
            records_in,
            records_out,
            last_checkpoint,
            restored: record.restored_by_tier,
        }
    }
}

#[derive(Debug)]
struct Figures {
    jobs: Vec<JobFigures>,
    workers: u64,
    slots: u64,
    slots_used: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    job: String,
    state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ScopeLabels {
    job: String,
    scope: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TierLabels {
    job: String,
    tier: &'static str,
}

type Pick<T> = fn(&JobFigures) -> Option<T>;

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut state = encoder.encode_descriptor(
            "weir_job_state",
            "1 for a job's current state.",
            None,
            MetricType::Gauge,
        )?;
        for job in &self.jobs {
            let labels = StateLabels {
                job: job.labels.job.clone(),
                state: job.state.clone(),
            };
            ConstGauge::new(1i64).encode(state.encode_family(&labels)?)?;
        }
        let counters: [(&str, &str, Pick<f64>); 6] = [
            (
                "weir_job_records_in",
                "Records the job's sources produced (in the running attempt; the whole run once it ended).",
                |j| Some(j.records_in as f64),
            ),
            (
                "weir_job_records_out",
                "Records the job's sinks received (in the running attempt; the whole run once it ended).",
                |j| Some(j.records_out as f64),
            ),
            (
                "weir_checkpoints_completed",
                "Checkpoints completed under this leader.",
                |j| Some(j.checkpoints_completed as f64),
            ),
            (
                "weir_checkpoints_aborted",
                "Checkpoints aborted under this leader.",
                |j| Some(j.checkpoints_aborted as f64),
            ),
            (
                "weir_job_recoveries",
                "Recoveries (global or regional) finished under this leader.",
                |j| Some(j.recoveries as f64),
            ),
            (
                "weir_job_recovery_seconds",
                "Time from detecting a failure to every restarted subtask running, summed.",
                |j| Some(j.recovery_s),
            ),
        ];
        for (name, help, pick) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for job in &self.jobs {
                if let Some(value) = pick(job) {
                    ConstCounter::new(value).encode(family.encode_family(&job.labels)?)?;
                }
            }
        }
        let gauges: [(&str, &str, Pick<f64>); 4] = [
            (
                "weir_job_uptime_seconds",
                "Time since the job's first attempt was deployed.",
                |j| Some(j.uptime_s),
            ),
            (
                "weir_checkpoint_last_epoch",
                "The epoch of the last completed checkpoint.",
                |j| j.last_checkpoint.map(|c| c.0 as f64),
            ),
            (
                "weir_checkpoint_last_size_bytes",
                "The state size of the last completed checkpoint.",
                |j| j.last_checkpoint.map(|c| c.1 as f64),
            ),
            (
                "weir_checkpoint_last_incremental_size_bytes",
                "Bytes the last completed checkpoint added over the one before it.",
                |j| j.last_checkpoint.map(|c| c.2 as f64),
            ),
        ];
        for (name, help, pick) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for job in &self.jobs {
                if let Some(value) = pick(job) {
                    ConstGauge::new(value).encode(family.encode_family(&job.labels)?)?;
                }
            }
        }
        let mut restarts = encoder.encode_descriptor(
            "weir_job_restarts",
            "Restarts: global (a new job attempt, counted over leaders) and regional (under this leader).",
            None,
            MetricType::Counter,
        )?;
        for job in &self.jobs {
            for (scope, value) in [
                (RestartScope::Global, job.restarts_global),
                (RestartScope::Regional, job.restarts_regional),
            ] {
                let labels = ScopeLabels {
                    job: job.labels.job.clone(),
                    scope: match scope {
                        RestartScope::Global => "global",
                        RestartScope::Regional => "regional",
                    },
                };
                ConstCounter::new(value).encode(restarts.encode_family(&labels)?)?;
            }
        }
        let tiers = [
            (
                "weir_restored_subtasks",
                "Subtasks restored under this leader, by the slowest tier their state came from.",
                false,
            ),
            (
                "weir_restored_bytes",
                "Bytes of state restored under this leader, by tier.",
                true,
            ),
        ];
        for (name, help, bytes) in tiers {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for job in &self.jobs {
                for (tier, (count, restored_bytes)) in TIERS.iter().zip(job.restored) {
                    let labels = TierLabels {
                        job: job.labels.job.clone(),
                        tier: tier.label(),
                    };
                    let value = if bytes { restored_bytes } else { count };
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let cluster = [
            (
                "weir_workers_registered",
                "Workers registered with this leader.",
                self.workers,
            ),
            (
                "weir_slots",
                "Slots the registered workers offer.",
                self.slots,
            ),
            (
                "weir_slots_used",
                "Slots running deployments.",
                self.slots_used,
            ),
        ];
        for (name, help, value) in cluster {
            let gauge = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(gauge)?;
        }
        Ok(())
    }
}
