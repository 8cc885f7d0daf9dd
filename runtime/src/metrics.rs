//! A worker's metrics, in the Prometheus text format: per task records in
//! and out, busy, idle and back-pressured time, how full its inputs are
//! and the credits it holds for its outgoing channels; per worker the
//! heartbeats it sent and the replica bytes it pushed.
//!
//! Tasks share their [`TaskCounters`] with the runtime; the figures are
//! read when `/metrics` is scraped, so that counting costs a task nothing
//! beyond the counters it keeps anyway. A deployment's tasks are
//! registered while it runs; those of the last [`ENDED_KEPT`] ended
//! deployments stay (their final figures) until a newer task takes their
//! labels, so that the series stay bounded by the tasks of a few
//! deployments, whatever the number of jobs over time.

use crate::net::credits::CreditGate;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use weir_operators::output::TaskCounters;
use weir_protocol::cluster::TaskFigures;

/// Ended deployments whose tasks' final figures stay exported.
pub const ENDED_KEPT: usize = 4;

/// The `Content-Type` of what [`WorkerMetrics::encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The labels of one task's series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, EncodeLabelSet)]
pub struct TaskLabels {
    /// The job's id.
    pub job: String,
    /// The operator's name.
    pub operator: String,
    /// The subtask index.
    pub subtask: u32,
    /// The worker running it.
    pub worker: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
}

/// One task, as its metrics see it.
#[derive(Debug)]
pub struct TaskMetrics {
    /// Its job, operator and subtask (the worker label is added when
    /// encoding: a worker learns its id only once registered).
    pub job: String,
    /// Its operator's name.
    pub operator: String,
    /// Its operator's vertex id.
    pub vertex: u32,
    /// Its subtask index.
    pub subtask: u32,
    /// The counters it keeps.
    pub counters: Arc<TaskCounters>,
    /// The credit gates of its channels to other workers.
    pub gates: Vec<Arc<CreditGate>>,
}

#[derive(Debug)]
struct Registered {
    task: TaskMetrics,
    started: Instant,
    ended: Option<Instant>,
    /// Registration order: among tasks with the same labels, the newest wins.
    order: u64,
    /// The busy seconds last read (as `f64` bits): busy time is what was
    /// not spent waiting, and a wait for room downstream counts only once
    /// it ended, so a reading never goes below the last one.
    busy_read: AtomicU64,
}

#[derive(Debug, Default)]
struct Tasks {
    next_order: u64,
    /// Deployments by registration number, running ones and the last ended.
    deployments: BTreeMap<u64, Vec<Registered>>,
    ended: VecDeque<u64>,
}

#[derive(Debug, Default)]
struct Shared {
    worker: Mutex<String>,
    slots: AtomicU64,
    tasks: Mutex<Tasks>,
    heartbeats_sent: AtomicU64,
    replica_bytes_pushed: AtomicU64,
    replica_files_pushed: AtomicU64,
}

/// A worker's metrics; clones share them.
#[derive(Debug, Clone, Default)]
pub struct WorkerMetrics {
    shared: Arc<Shared>,
}

/// Keeps a deployment's tasks registered; dropping it marks them ended.
#[derive(Debug)]
pub struct DeploymentMetrics {
    metrics: WorkerMetrics,
    number: u64,
}

impl Drop for DeploymentMetrics {
    fn drop(&mut self) {
        let mut tasks = self.metrics.tasks();
        let now = Instant::now();
        if let Some(registered) = tasks.deployments.get_mut(&self.number) {
            for task in registered {
                task.ended = Some(now);
            }
        }
        tasks.ended.push_back(self.number);
        while tasks.ended.len() > ENDED_KEPT {
            if let Some(oldest) = tasks.ended.pop_front() {
                tasks.deployments.remove(&oldest);
            }
        }
    }
}

impl WorkerMetrics {
    fn tasks(&self) -> std::sync::MutexGuard<'_, Tasks> {
        self.shared.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The worker's id (its `worker` label), once it registered.
    pub fn set_worker(&self, worker: String, slots: u32) {
        *self.shared.worker.lock().unwrap_or_else(|p| p.into_inner()) = worker;
        self.shared.slots.store(u64::from(slots), Ordering::Relaxed);
    }

    /// Registers a deployment's tasks until the returned guard drops.
    pub fn deployment(&self, tasks: Vec<TaskMetrics>) -> DeploymentMetrics {
        let mut all = self.tasks();
        let started = Instant::now();
        all.next_order += 1;
        let number = all.next_order;
        let registered = tasks
            .into_iter()
            .map(|task| Registered {
                task,
                started,
                ended: None,
                order: number,
                busy_read: AtomicU64::new(0),
            })
            .collect();
        all.deployments.insert(number, registered);
        DeploymentMetrics {
            metrics: self.clone(),
            number,
        }
    }

    /// A heartbeat went to the coordinator.
    pub fn heartbeat_sent(&self) {
        self.shared.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// A replica file of `bytes` went to a peer.
    pub fn replica_pushed(&self, bytes: u64) {
        self.shared
            .replica_bytes_pushed
            .fetch_add(bytes, Ordering::Relaxed);
        self.shared
            .replica_files_pushed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Every metric, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }

    /// The figures of every running task, for the coordinator.
    pub fn running_figures(&self) -> Vec<TaskFigures> {
        let tasks = self.tasks();
        let now = Instant::now();
        tasks
            .deployments
            .values()
            .flatten()
            .filter(|r| r.ended.is_none())
            .map(|registered| {
                let sample = TaskSample::read(registered, now);
                TaskFigures {
                    job_id: registered.task.job.clone(),
                    vertex: registered.task.vertex,
                    subtask: registered.task.subtask,
                    records_in: sample.records_in,
                    records_out: sample.records_out,
                    busy_s: sample.busy_s,
                    idle_s: sample.idle_s,
                    backpressured_s: sample.backpressured_s,
                    input_fill: sample.input_fill,
                }
            })
            .collect()
    }

    /// Each task's figures, read now: the newest task of each label set.
    fn samples(&self) -> Vec<(TaskLabels, TaskSample)> {
        let worker = self
            .shared
            .worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let tasks = self.tasks();
        let now = Instant::now();
        let mut newest: BTreeMap<TaskLabels, (u64, TaskSample)> = BTreeMap::new();
        for registered in tasks.deployments.values().flatten() {
            let labels = TaskLabels {
                job: registered.task.job.clone(),
                operator: registered.task.operator.clone(),
                subtask: registered.task.subtask,
                worker: worker.clone(),
            };
            if newest
                .get(&labels)
                .is_some_and(|(order, _)| *order > registered.order)
            {
                continue;
            }
            let sample = TaskSample::read(registered, now);
            newest.insert(labels, (registered.order, sample));
        }
        newest
            .into_iter()
            .map(|(labels, (_, sample))| (labels, sample))
            .collect()
    }
}

/// One task's figures at one moment.
#[derive(Debug, Clone, Copy)]
struct TaskSample {
    records_in: u64,
    records_out: u64,
    busy_s: f64,
    idle_s: f64,
    backpressured_s: f64,
    input_fill: f64,
    output_credits: u64,
    running: bool,
}

impl TaskSample {
    fn read(registered: &Registered, now: Instant) -> Self {
        let counters = &registered.task.counters;
        let until = registered.ended.unwrap_or(now);
        // A wait for input in progress counts as idle already.
        let idle_s = counters.idle_at(until).as_secs_f64();
        let backpressured_s = counters.backpressured_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let lived = until
            .saturating_duration_since(registered.started)
            .as_secs_f64();
        let busy_now = (lived - idle_s - backpressured_s).max(0.0);
        let busy_before = f64::from_bits(registered.busy_read.load(Ordering::Relaxed));
        let busy_s = busy_now.max(busy_before);
        registered
            .busy_read
            .fetch_max(busy_s.to_bits(), Ordering::Relaxed);
        let capacity = counters.input_capacity.load(Ordering::Relaxed);
        let input_fill = match capacity {
            0 => 0.0,
            capacity => counters.input_queued.load(Ordering::Relaxed) as f64 / capacity as f64,
        };
        Self {
            records_in: counters.records_in.load(Ordering::Relaxed),
            records_out: counters.records_out.load(Ordering::Relaxed),
            busy_s,
            idle_s,
            backpressured_s,
            input_fill,
            output_credits: registered.task.gates.iter().map(|g| g.available()).sum(),
            running: registered.ended.is_none(),
        }
    }
}

type Pick<T> = fn(&TaskSample) -> T;

impl Collector for WorkerMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let samples = self.samples();
        let counters: [(&str, &str, Pick<f64>); 5] = [
            ("weir_task_records_in", "Records a task received.", |s| {
                s.records_in as f64
            }),
            (
                "weir_task_records_out",
                "Records a task sent downstream.",
                |s| s.records_out as f64,
            ),
            (
                "weir_task_busy_seconds",
                "Time a task spent neither waiting for input nor for room downstream.",
                |s| s.busy_s,
            ),
            (
                "weir_task_idle_seconds",
                "Time a task waited for input.",
                |s| s.idle_s,
            ),
            (
                "weir_task_backpressured_seconds",
                "Time a task waited for room downstream (back-pressure).",
                |s| s.backpressured_s,
            ),
        ];
        for (name, help, pick) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, sample) in &samples {
                ConstCounter::new(pick(sample)).encode(family.encode_family(labels)?)?;
            }
        }
        let gauges: [(&str, &str, Pick<f64>); 3] = [
            (
                "weir_task_input_queue_fill_ratio",
                "How full a task's input channels were when it last looked (0 to 1).",
                |s| s.input_fill,
            ),
            (
                "weir_task_output_credits",
                "Credits a task holds for its channels to other workers.",
                |s| s.output_credits as f64,
            ),
            (
                "weir_task_running",
                "1 while a task runs, 0 once its deployment ended.",
                |s| f64::from(u8::from(s.running)),
            ),
        ];
        for (name, help, pick) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, sample) in &samples {
                ConstGauge::new(pick(sample)).encode(family.encode_family(labels)?)?;
            }
        }
        let worker = WorkerLabels {
            worker: self
                .shared
                .worker
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        };
        let shared = &self.shared;
        let worker_counters = [
            (
                "weir_worker_heartbeats_sent",
                "Heartbeats the worker sent to the coordinator.",
                &shared.heartbeats_sent,
            ),
            (
                "weir_worker_replica_bytes_pushed",
                "Bytes of checkpoint files the worker pushed to peers' replicas.",
                &shared.replica_bytes_pushed,
            ),
            (
                "weir_worker_replica_files_pushed",
                "Checkpoint files the worker pushed to peers' replicas.",
                &shared.replica_files_pushed,
            ),
        ];
        for (name, help, value) in worker_counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value.load(Ordering::Relaxed))
                .encode(family.encode_family(&worker)?)?;
        }
        let mut slots = encoder.encode_descriptor(
            "weir_worker_slots",
            "Slots the worker offers.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(shared.slots.load(Ordering::Relaxed) as i64)
            .encode(slots.encode_family(&worker)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(job: &str, subtask: u32, counters: &Arc<TaskCounters>) -> TaskMetrics {
        TaskMetrics {
            job: job.into(),
            operator: "sum".into(),
            vertex: 1,
            subtask,
            counters: counters.clone(),
            gates: Vec::new(),
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn a_task_is_exported_with_its_labels_and_the_newest_of_one_label_set_wins() {
        let metrics = WorkerMetrics::default();
        metrics.set_worker("3".into(), 2);
        let first = Arc::new(TaskCounters::default());
        first.records_in.store(10, Ordering::Relaxed);
        let deployment = metrics.deployment(vec![task("j-1", 0, &first)]);
        let series =
            r#"weir_task_records_in_total{job="j-1",operator="sum",subtask="0",worker="3"}"#;
        let text = metrics.encode();
        assert_eq!(value(&text, series), Some(10.0), "{text}");
        assert_eq!(
            value(
                &text,
                r#"weir_task_running{job="j-1",operator="sum",subtask="0",worker="3"}"#
            ),
            Some(1.0)
        );
        drop(deployment);
        // Ended: its final figures stay, until a restarted task takes over.
        let text = metrics.encode();
        assert_eq!(value(&text, series), Some(10.0), "{text}");
        let second = Arc::new(TaskCounters::default());
        second.records_in.store(3, Ordering::Relaxed);
        let _restarted = metrics.deployment(vec![task("j-1", 0, &second)]);
        let text = metrics.encode();
        assert_eq!(value(&text, series), Some(3.0), "{text}");
        assert_eq!(text.matches(series).count(), 1, "{text}");
    }

    #[test]
    fn a_long_wait_for_input_counts_as_idle_while_it_lasts_and_busy_never_falls() {
        let metrics = WorkerMetrics::default();
        let counters = Arc::new(TaskCounters::default());
        let _deployment = metrics.deployment(vec![task("j-1", 0, &counters)]);
        let busy = |m: &WorkerMetrics| {
            value(
                &m.encode(),
                r#"weir_task_busy_seconds_total{job="j-1",operator="sum",subtask="0",worker=""}"#,
            )
            .unwrap()
        };
        let waiting = Instant::now();
        counters.idle_from(waiting);
        let before = busy(&metrics);
        std::thread::sleep(std::time::Duration::from_millis(50));
        // Waiting all along: not busier than before.
        let during = busy(&metrics);
        assert!(during - before < 0.02, "{before} then {during}");
        // A wait for room downstream reported at its end takes time off
        // busy: the reading does not go back.
        counters.idled(waiting.elapsed());
        counters.backpressured(std::time::Duration::from_secs(10));
        assert!(busy(&metrics) >= during);
    }

    #[test]
    fn only_the_last_ended_deployments_stay() {
        let metrics = WorkerMetrics::default();
        for job in 0..ENDED_KEPT + 3 {
            let counters = Arc::new(TaskCounters::default());
            drop(metrics.deployment(vec![task(&format!("j-{job}"), 0, &counters)]));
        }
        let text = metrics.encode();
        let exported = text
            .lines()
            .filter(|l| l.starts_with("weir_task_records_in_total"))
            .count();
        assert_eq!(exported, ENDED_KEPT, "{text}");
        assert!(!text.contains(r#"job="j-0""#), "{text}");
    }
}
