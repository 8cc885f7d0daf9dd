//! The state of one leader's term: registered workers and their slots,
//! the jobs with their current attempt's inbox, and the fenced control
//! store every durable change goes through. The worker endpoint, the REST
//! API and the job supervisors all work on one [`Cluster`]; a coordinator
//! that steps down drops it, and builds a new one from the control store
//! when it leads again.
//!
//! - [`slots`]: the workers' slots: what is free, who the spares are,
//!   and reserving and releasing an attempt's placement.

mod slots;

pub use slots::Reservation;

use crate::control::{ControlStore, Counters, LeaseGuard, StoredJob};
use crate::detector::{FailureDetector, Loss};
use crate::error::CoordinatorError;
use crate::job::{AttemptReport, JobHandle};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use weir_protocol::cluster::{DeploymentOutcome, DeploymentReport, JobSpec, RunSettings};
use weir_protocol::wire::ToWorker;
use weir_protocol::{JobGraph, WorkerId};

/// Why a job could not be added.
#[derive(Debug)]
pub enum AddJobError {
    /// Its id is taken by a job that has not ended.
    Conflict(String),
    /// Preparing its record failed (for example, its restore point).
    Invalid(String),
    /// The control store refused or failed (this coordinator steps down).
    Store(CoordinatorError),
}

/// Builds the graph of a submitted job: the binary's job registry, seen by
/// the coordinator only through this trait.
pub trait JobCatalog: Send + Sync {
    /// The validated graph of `spec`, or why the spec is wrong (unknown
    /// job, bad parameters), in words for the client.
    fn graph(&self, spec: &JobSpec) -> Result<JobGraph, String>;
}

/// A registered worker.
pub struct WorkerEntry {
    /// Its name, for logs.
    pub name: String,
    /// Slots it offered.
    pub slots: u32,
    /// Slots in use by deployments.
    pub used: u32,
    /// Its data-exchange address.
    pub data_addr: String,
    /// Where it serves `/metrics`, if it does.
    pub metrics_addr: Option<String>,
    /// Frames to it.
    pub outbox: tokio::sync::mpsc::UnboundedSender<ToWorker>,
    /// Set to close its connection (the worker was declared lost).
    pub kick: tokio::sync::watch::Sender<bool>,
}

/// A worker as shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its id.
    pub id: WorkerId,
    /// Its name.
    pub name: String,
    /// Slots offered.
    pub slots: u32,
    /// Slots in use.
    pub used: u32,
    /// Its data-exchange address.
    pub data_addr: String,
    /// Where it serves `/metrics`, if it does.
    #[serde(default)]
    pub metrics_addr: Option<String>,
    /// How long ago the leader last heard from it, in milliseconds.
    #[serde(default)]
    pub heartbeat_age_ms: Option<u64>,
}

/// A worker this leader declared lost, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostWorker {
    /// Its id.
    pub id: WorkerId,
    /// Its name.
    pub name: String,
    /// Why it was declared lost.
    pub cause: String,
    /// When (ms since the Unix epoch).
    pub lost_at_ms: u64,
}

/// Lost workers the API lists (the newest).
pub const LOST_WORKERS_SHOWN: usize = 20;

/// What a registering worker offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOffer {
    /// Its name, for logs.
    pub name: String,
    /// Slots it offers.
    pub slots: u32,
    /// Where it serves data exchange.
    pub data_addr: String,
    /// Where it serves `/metrics`, if it does.
    pub metrics_addr: Option<String>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

struct Inner {
    workers: BTreeMap<WorkerId, WorkerEntry>,
    /// Workers this leader declared lost: one that comes back gets a new id.
    lost: BTreeSet<WorkerId>,
    /// The newest of them, as the API shows them.
    recently_lost: std::collections::VecDeque<LostWorker>,
    jobs: BTreeMap<u32, Arc<JobHandle>>,
    /// Job ids of submissions being recorded.
    reserved_ids: BTreeSet<String>,
    detector: FailureDetector,
}

/// One leader's term, as the cluster state needs it.
pub struct Term {
    /// The term's number.
    pub term: u64,
    /// The control store, fenced by the term.
    pub store: Arc<dyn ControlStore>,
    /// Whether the term still holds.
    pub guard: Arc<LeaseGuard>,
    /// The id counters as loaded when the term began.
    pub counters: Counters,
    /// The leader's lease, told to workers (their leaderless window).
    pub lease: Option<Duration>,
}

/// The coordinator's state, shared by its endpoints and supervisors.
pub struct Cluster {
    inner: Mutex<Inner>,
    /// The job registry.
    pub catalog: Arc<dyn JobCatalog>,
    /// Checkpoint storage root URL.
    pub checkpoint_root: String,
    /// This leader's term number.
    pub term: u64,
    store: Arc<dyn ControlStore>,
    guard: Arc<LeaseGuard>,
    counters: Mutex<Counters>,
    /// The leader's lease, told to workers when they register.
    pub lease: Option<Duration>,
    /// This term's metrics.
    pub metrics: Arc<crate::metrics::CoordinatorMetrics>,
    /// The tasks' latest figures, for per-operator rates.
    pub rates: Mutex<crate::rates::TaskRates>,
}

impl Cluster {
    /// An empty cluster for `term`.
    pub fn new(
        catalog: Arc<dyn JobCatalog>,
        checkpoint_root: String,
        heartbeat_timeout: Duration,
        term: Term,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner {
                workers: BTreeMap::new(),
                lost: BTreeSet::new(),
                recently_lost: std::collections::VecDeque::new(),
                jobs: BTreeMap::new(),
                reserved_ids: BTreeSet::new(),
                detector: FailureDetector::new(heartbeat_timeout),
            }),
            catalog,
            checkpoint_root,
            term: term.term,
            store: term.store,
            guard: term.guard,
            counters: Mutex::new(term.counters),
            lease: term.lease,
            metrics: Arc::default(),
            rates: Mutex::default(),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Whether this coordinator still leads (its term holds).
    pub fn leads(&self) -> bool {
        self.guard.leads()
    }

    /// The term's guard.
    pub fn guard(&self) -> &Arc<LeaseGuard> {
        &self.guard
    }

    /// A write of the control store failed with `error`: leadership is
    /// over, unless the store keeps its term through such a failure.
    pub fn lose_leadership(&self, error: &CoordinatorError) {
        self.guard.write_failed(&*self.store, error);
    }

    /// Hands out the next id of a counter, durably (ids never repeat).
    fn next_id(&self, pick: impl Fn(&mut Counters) -> &mut u32) -> Result<u32, CoordinatorError> {
        let mut counters = lock(&self.counters);
        let mut next = *counters;
        *pick(&mut next) += 1;
        if let Err(error) = self.store.put_counters(&next) {
            self.lose_leadership(&error);
            return Err(error);
        }
        *counters = next;
        Ok(*pick(&mut next))
    }

    /// Writes a job's record.
    pub fn put_job(&self, job: &StoredJob) -> Result<(), CoordinatorError> {
        self.store
            .put_job(job)
            .inspect_err(|error| self.lose_leadership(error))
    }

    /// Registers a worker and answers it (`Registered` first); refuses a
    /// data address another live worker has. A worker that an earlier
    /// leader registered keeps its id (`previous`) unless this leader
    /// declared it lost; its `reports` go to the jobs waiting to adopt
    /// their attempts, and the deployments no job adopts are cancelled.
    #[allow(clippy::too_many_arguments)]
    pub fn register_worker(
        &self,
        offer: WorkerOffer,
        previous: Option<WorkerId>,
        reports: Vec<DeploymentReport>,
        outbox: tokio::sync::mpsc::UnboundedSender<ToWorker>,
        kick: tokio::sync::watch::Sender<bool>,
    ) -> Result<WorkerId, String> {
        let WorkerOffer {
            name,
            slots,
            data_addr,
            metrics_addr,
        } = offer;
        let conflict = |inner: &Inner| {
            inner
                .workers
                .iter()
                .find(|(_, w)| w.data_addr == data_addr)
                .map(|(id, _)| {
                    format!(
                        "a worker serving data exchange at {data_addr} is already registered (as {id})"
                    )
                })
        };
        let keeps = {
            let inner = self.inner();
            if let Some(conflict) = conflict(&inner) {
                return Err(conflict);
            }
            previous.filter(|p| {
                p.0 <= lock(&self.counters).workers
                    && !inner.workers.contains_key(p)
                    && !inner.lost.contains(p)
            })
        };
        let id = match keeps {
            Some(id) => id,
            None => WorkerId(
                self.next_id(|c| &mut c.workers)
                    .map_err(|e| crate::error::chain(&e))?,
            ),
        };
        let mut inner = self.inner();
        if let Some(conflict) = conflict(&inner) {
            return Err(conflict);
        }
        if inner.workers.contains_key(&id) {
            return Err(format!("worker {id} is already registered"));
        }
        if !self.leads() {
            return Err("this coordinator no longer leads; register with the leader".into());
        }
        // Before anything else is queued for it (heartbeats, deployments).
        let _ = outbox.send(ToWorker::Registered {
            worker: id,
            lease_ms: self.lease.map(|l| l.as_millis() as u64),
        });
        inner.workers.insert(
            id,
            WorkerEntry {
                name,
                slots,
                used: 0,
                data_addr,
                metrics_addr,
                outbox,
                kick,
            },
        );
        inner.detector.heard(id, Instant::now());
        let jobs: Vec<Arc<JobHandle>> = inner.jobs.values().cloned().collect();
        drop(inner);
        let mut stale: Vec<(u32, u32, Option<u32>)> = reports
            .iter()
            .map(|r| (r.job_number, r.attempt, r.region.map(|p| p.region)))
            .collect();
        for job in jobs {
            let inbox = job.inbox();
            let Some(inbox) = inbox
                .as_ref()
                .filter(|i| i.adopting && i.workers.contains(&id))
            else {
                continue;
            };
            let stored = job.stored();
            // The regions it must run, when the graph is the job's own
            // (not a scaled-down one's).
            let expected = (!inbox.region_attempts.is_empty()
                && stored.running_parallelism == job.spec.parallelism)
                .then(|| {
                    weir_protocol::regions::RegionMap::of(&job.graph)
                        .regions_on(&stored.placement, id)
                });
            let (report, matched) = crate::adoption::reports_of_attempt(
                &reports,
                job.number,
                inbox.attempt,
                &inbox.region_attempts,
                expected.as_ref(),
            );
            stale.retain(|(number, attempt, region)| {
                !(*number == job.number && matched.contains(&(*attempt, *region)))
            });
            let _ = inbox
                .reports
                .send(((id, None), AttemptReport::Reattached(report)));
            // What each region's deployment did before the registration:
            // progress counts parts, and their ends are not told again.
            for region_report in reports.iter().filter(|r| {
                r.job_number == job.number
                    && r.region.is_some()
                    && matched.contains(&(r.attempt, r.region.map(|p| p.region)))
            }) {
                let part = (
                    id,
                    region_report
                        .region
                        .map(|p| (p.region, region_report.attempt)),
                );
                if region_report.started {
                    let restored = region_report.restored.clone();
                    let _ = inbox.reports.send((part, AttemptReport::Started(restored)));
                }
                if let Some(outcome) = &region_report.ended {
                    let _ = inbox
                        .reports
                        .send((part, AttemptReport::Ended(outcome.clone())));
                }
            }
        }
        // A worker with a free slot that runs nothing of a running job may
        // become its spare (the job's supervisor decides).
        let jobs: Vec<Arc<JobHandle>> = self.inner().jobs.values().cloned().collect();
        for job in jobs {
            if let Some(inbox) = job.inbox().as_ref() {
                if !inbox.adopting && !inbox.workers.contains(&id) && job.settings.replicas > 0 {
                    let _ = inbox.reports.send(((id, None), AttemptReport::Joined));
                }
            }
        }
        for (job_number, attempt, region) in stale {
            tracing::info!(worker = %id, job = job_number, attempt, ?region, "cancelling a deployment no job adopts");
            self.send(
                id,
                ToWorker::Cancel {
                    job_number,
                    attempt,
                    region,
                },
            );
        }
        Ok(id)
    }

    /// Notes that something arrived from `worker`.
    pub fn heard(&self, worker: WorkerId) {
        self.inner().detector.heard(worker, Instant::now());
    }

    /// The worker's connection closed or failed (the fast path).
    pub fn disconnected(&self, worker: WorkerId, cause: &str) {
        let loss = self.inner().detector.disconnected(worker, Instant::now());
        if let Some(loss) = loss {
            self.remove_worker(worker, &format!("{loss} ({cause})"), loss);
        }
    }

    /// Declares workers silent past the heartbeat timeout lost, and closes
    /// their connections. Called by the coordinator's tick.
    pub fn check_heartbeats(&self, now: Instant) {
        let lost = self.inner().detector.tick(now);
        for (worker, loss) in lost {
            if let Some(entry) = self.inner().workers.get(&worker) {
                entry.kick.send_replace(true);
            }
            self.remove_worker(worker, &loss.to_string(), loss);
        }
    }

    /// When the failure detector would next declare a silent worker lost.
    pub fn next_silence_deadline(&self) -> Option<Instant> {
        self.inner().detector.next_deadline()
    }

    /// Tells every worker the coordinator is alive.
    pub fn heartbeat_workers(&self) {
        if !self.leads() {
            return;
        }
        for entry in self.inner().workers.values() {
            let _ = entry.outbox.send(ToWorker::Heartbeat);
        }
    }

    /// A worker is gone: forget it and fail the attempts running on it.
    fn remove_worker(&self, worker: WorkerId, cause: &str, loss: Loss) {
        let detected = Instant::now();
        let jobs: Vec<Arc<JobHandle>> = {
            let mut inner = self.inner();
            let Some(entry) = inner.workers.remove(&worker) else {
                return;
            };
            let (Loss::Silent(silent) | Loss::Disconnected(silent)) = loss;
            self.metrics.worker_lost(worker, silent);
            inner.lost.insert(worker);
            inner.recently_lost.push_front(LostWorker {
                id: worker,
                name: entry.name,
                cause: cause.to_owned(),
                lost_at_ms: weir_protocol::time::now_ms(),
            });
            inner.recently_lost.truncate(LOST_WORKERS_SHOWN);
            inner.jobs.values().cloned().collect()
        };
        let mut busy = false;
        for job in jobs {
            if let Some(inbox) = job.inbox().as_ref() {
                if inbox.workers.contains(&worker) {
                    busy = true;
                    job.record().note_loss(worker, cause, loss, detected);
                    let _ = inbox.reports.send((
                        (worker, None),
                        AttemptReport::Ended(DeploymentOutcome::Failed {
                            error: format!("worker {worker} was lost: {cause}"),
                            kind: weir_protocol::FailureKind::Task,
                        }),
                    ));
                }
            }
        }
        if busy {
            tracing::warn!(%worker, %cause, "worker lost while running a job");
        } else {
            tracing::info!(%worker, %cause, "worker left");
        }
    }

    /// Sends `message` to `worker`; false when it is gone, or when this
    /// coordinator no longer leads (a deposed leader must not steer
    /// workers).
    pub fn send(&self, worker: WorkerId, message: ToWorker) -> bool {
        if !self.leads() {
            return false;
        }
        self.inner()
            .workers
            .get(&worker)
            .is_some_and(|w| w.outbox.send(message).is_ok())
    }

    /// Tells each of `workers` to cancel `attempt` of job `job_number`.
    pub fn cancel<'a>(
        &self,
        workers: impl IntoIterator<Item = &'a WorkerId>,
        job_number: u32,
        attempt: u32,
    ) {
        for worker in workers {
            self.send(
                *worker,
                ToWorker::Cancel {
                    job_number,
                    attempt,
                    region: None,
                },
            );
        }
    }

    /// Tells `worker` to stop region `region`'s deployment of job
    /// `job_number` that is `attempt` (a regional failover).
    pub fn cancel_region(&self, worker: WorkerId, job_number: u32, attempt: u32, region: u32) {
        self.send(
            worker,
            ToWorker::Cancel {
                job_number,
                attempt,
                region: Some(region),
            },
        );
    }

    /// The channel to `worker`, if it is registered.
    pub fn outbox(&self, worker: WorkerId) -> Option<tokio::sync::mpsc::UnboundedSender<ToWorker>> {
        self.inner().workers.get(&worker).map(|w| w.outbox.clone())
    }

    /// Adds a job under a fresh number, durably; refuses a job id in use
    /// by a job that has not ended. `prepare` fills in the record (restore
    /// point, floor) before it is first written.
    pub fn add_job(
        &self,
        spec: JobSpec,
        settings: RunSettings,
        graph: JobGraph,
        prepare: impl FnOnce(&mut StoredJob) -> Result<(), String>,
    ) -> Result<Arc<JobHandle>, AddJobError> {
        if let Some(job_id) = &settings.job_id {
            self.check_job_id_free(&self.inner(), job_id)?;
        }
        let number = self.next_id(|c| &mut c.jobs).map_err(AddJobError::Store)?;
        let job_id = settings
            .job_id
            .clone()
            .unwrap_or_else(|| format!("{}-{number}", graph.name));
        // Reserved until the job is in: two submissions of one id race for it.
        {
            let mut inner = self.inner();
            self.check_job_id_free(&inner, &job_id)?;
            inner.reserved_ids.insert(job_id.clone());
        }
        let added = (|| {
            let mut stored = StoredJob::new(number, job_id.clone(), spec, settings);
            prepare(&mut stored).map_err(AddJobError::Invalid)?;
            self.put_job(&stored).map_err(AddJobError::Store)?;
            Ok(Arc::new(JobHandle::new(
                stored,
                graph,
                self.store.clone(),
                self.guard.clone(),
            )))
        })();
        let mut inner = self.inner();
        inner.reserved_ids.remove(&job_id);
        if let Ok(job) = &added {
            inner.jobs.insert(job.number, job.clone());
        }
        added
    }

    /// Refuses `job_id` when a job that has not ended, or one being added, has it.
    fn check_job_id_free(&self, inner: &Inner, job_id: &str) -> Result<(), AddJobError> {
        if inner.reserved_ids.contains(job_id) {
            return Err(AddJobError::Conflict(format!(
                "job id '{job_id}' is being taken by another submission"
            )));
        }
        match inner
            .jobs
            .values()
            .find(|j| j.job_id == job_id && !j.record().lifecycle.state().is_terminal())
        {
            Some(other) => Err(AddJobError::Conflict(format!(
                "job id '{job_id}' is in use by job {} which has not ended",
                other.number
            ))),
            None => Ok(()),
        }
    }

    /// Adds a job loaded from the control store.
    pub fn insert_job(&self, job: Arc<JobHandle>) {
        self.inner().jobs.insert(job.number, job);
    }

    /// Workers of this term, with their connections: closes them all (the
    /// coordinator stepped down; workers go and find the new leader).
    pub fn kick_all(&self) {
        for entry in self.inner().workers.values() {
            entry.kick.send_replace(true);
        }
    }

    /// A job by number or id.
    pub fn job(&self, name: &str) -> Option<Arc<JobHandle>> {
        let inner = self.inner();
        if let Some(job) = inner.jobs.values().rev().find(|j| j.job_id == name) {
            return Some(job.clone());
        }
        name.parse::<u32>()
            .ok()
            .and_then(|n| inner.jobs.get(&n).cloned())
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<Arc<JobHandle>> {
        self.inner().jobs.values().cloned().collect()
    }

    /// A job by number.
    pub fn job_by_number(&self, number: u32) -> Option<Arc<JobHandle>> {
        self.inner().jobs.get(&number).cloned()
    }
}
