//! The coordinator's shared state: registered workers and their slots,
//! and the jobs with their current attempt's inbox. The worker endpoint,
//! the REST API and the job supervisors all work on one [`Cluster`].

use crate::driver::CheckpointStats;
use crate::lifecycle::{JobLifecycle, Transition};
use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use weir_protocol::cluster::{DeploymentOutcome, JobSpec, RunSettings, TaskPlacement};
use weir_protocol::wire::ToWorker;
use weir_protocol::{JobGraph, JobState, WorkerEvent, WorkerId};

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
    /// Frames to it.
    pub outbox: tokio::sync::mpsc::UnboundedSender<ToWorker>,
    /// When it last sent anything.
    pub last_seen: Instant,
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
}

/// Where the running attempt of a job takes its workers' reports.
pub struct AttemptInbox {
    /// The attempt.
    pub attempt: u32,
    /// The workers it runs on.
    pub workers: Vec<WorkerId>,
    /// Checkpoint events, to the checkpoint driver (absent without checkpoints).
    pub events: Option<Sender<WorkerEvent>>,
    /// Ends of the workers' parts.
    pub ends: Sender<(WorkerId, DeploymentOutcome)>,
}

/// What the API reports about a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The coordinator's number for it.
    pub number: u32,
    /// Its id (checkpoint directory name).
    pub job_id: String,
    /// The registered job it runs.
    pub job: String,
    /// Current lifecycle state.
    pub state: JobState,
    /// The current (or last) attempt; 0 before the first deployment.
    pub attempt: u32,
    /// Parallelism.
    pub parallelism: u32,
    /// Attempts that failed and were restarted.
    pub restarts: u32,
    /// The last failure, with its causes.
    pub failure: Option<String>,
    /// Records the sources produced (last attempt, known once it ends).
    pub events_in: u64,
    /// Records the sinks received (last attempt, known once it ends).
    pub records_out: u64,
    /// The checkpoint the first attempt restored.
    pub restored_from: Option<u64>,
    /// Checkpoints completed over all attempts.
    pub checkpoints_completed: u32,
    /// Checkpoints aborted over all attempts.
    pub checkpoints_aborted: u32,
    /// Duration of each completed checkpoint, in milliseconds.
    pub checkpoint_durations_ms: Vec<f64>,
    /// Size of each completed checkpoint, in bytes.
    pub checkpoint_sizes: Vec<u64>,
    /// Bytes each completed checkpoint added over the one before it.
    pub checkpoint_incremental_sizes: Vec<u64>,
    /// Where each subtask runs.
    pub placement: Vec<TaskPlacement>,
    /// Every state entered, with its time.
    pub transitions: Vec<Transition>,
    /// Seconds from the first deployment to the end (or to now).
    pub elapsed_s: f64,
}

/// A job known to the coordinator.
pub struct JobHandle {
    /// Its number (in every exchange frame of its deployments).
    pub number: u32,
    /// Its id.
    pub job_id: String,
    /// What to build.
    pub spec: JobSpec,
    /// How to run it.
    pub settings: RunSettings,
    /// Its validated graph.
    pub graph: JobGraph,
    /// Set when a client asked to cancel.
    pub cancel_requested: AtomicBool,
    /// The running attempt's inbox.
    pub inbox: Mutex<Option<AttemptInbox>>,
    /// Lifecycle and report.
    pub record: Mutex<JobRecord>,
}

/// The mutable part of a job.
#[derive(Debug, Default)]
pub struct JobRecord {
    /// Its lifecycle.
    pub lifecycle: JobLifecycle,
    /// Current attempt.
    pub attempt: u32,
    /// Restarts so far.
    pub restarts: u32,
    /// Last failure.
    pub failure: Option<String>,
    /// Counters of the last finished attempt.
    pub events_in: u64,
    /// Counters of the last finished attempt.
    pub records_out: u64,
    /// The checkpoint the first attempt restored.
    pub restored_from: Option<u64>,
    /// Checkpoints of all attempts.
    pub checkpoints: CheckpointStats,
    /// Current placement.
    pub placement: Vec<TaskPlacement>,
    /// When the first attempt was deployed.
    pub started: Option<Instant>,
    /// When the job ended.
    pub ended: Option<Instant>,
}

/// Slots reserved for one attempt.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// Where each subtask runs.
    pub placement: Vec<TaskPlacement>,
    /// The workers involved and their data-exchange addresses.
    pub peers: Vec<(WorkerId, String)>,
}

/// The first operator with the job's largest parallelism.
fn widest_vertex(graph: &JobGraph) -> Option<u32> {
    let needed = crate::scheduler::slots_needed(graph);
    graph
        .vertices
        .iter()
        .find(|v| v.parallelism == needed)
        .map(|v| v.id.0)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl JobHandle {
    /// The job's record, locked.
    pub fn record(&self) -> MutexGuard<'_, JobRecord> {
        lock(&self.record)
    }

    /// The running attempt's inbox, locked.
    pub fn inbox(&self) -> MutexGuard<'_, Option<AttemptInbox>> {
        lock(&self.inbox)
    }

    /// Whether a client asked to cancel.
    pub fn is_cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::Relaxed)
    }

    /// The job as reported by the API.
    pub fn status(&self) -> JobStatus {
        let record = self.record();
        let elapsed = match (record.started, record.ended) {
            (Some(start), Some(end)) => end.saturating_duration_since(start),
            (Some(start), None) => start.elapsed(),
            _ => Default::default(),
        };
        JobStatus {
            number: self.number,
            job_id: self.job_id.clone(),
            job: self.spec.job.clone(),
            state: record.lifecycle.state(),
            attempt: record.attempt,
            parallelism: self.spec.parallelism,
            restarts: record.restarts,
            failure: record.failure.clone(),
            events_in: record.events_in,
            records_out: record.records_out,
            restored_from: record.restored_from,
            checkpoints_completed: record.checkpoints.completed,
            checkpoints_aborted: record.checkpoints.aborted,
            checkpoint_durations_ms: record
                .checkpoints
                .durations
                .iter()
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect(),
            checkpoint_sizes: record.checkpoints.sizes.clone(),
            checkpoint_incremental_sizes: record.checkpoints.incremental_sizes.clone(),
            placement: record.placement.clone(),
            transitions: record.lifecycle.history().to_vec(),
            elapsed_s: elapsed.as_secs_f64(),
        }
    }
}

#[derive(Default)]
struct Inner {
    workers: BTreeMap<WorkerId, WorkerEntry>,
    jobs: BTreeMap<u32, Arc<JobHandle>>,
    next_worker: u32,
    next_job: u32,
}

/// The coordinator's state, shared by its endpoints and supervisors.
pub struct Cluster {
    inner: Mutex<Inner>,
    /// The job registry.
    pub catalog: Arc<dyn JobCatalog>,
    /// Checkpoint storage root URL.
    pub checkpoint_root: String,
    /// The shared token clients and workers must present, if any.
    pub token: Option<String>,
}

impl Cluster {
    /// An empty cluster.
    pub fn new(
        catalog: Arc<dyn JobCatalog>,
        checkpoint_root: String,
        token: Option<String>,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            catalog,
            checkpoint_root,
            token,
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Registers a worker; refuses a data address another live worker has.
    pub fn register_worker(
        &self,
        name: String,
        slots: u32,
        data_addr: String,
        outbox: tokio::sync::mpsc::UnboundedSender<ToWorker>,
    ) -> Result<WorkerId, String> {
        let mut inner = self.inner();
        if let Some((id, _)) = inner.workers.iter().find(|(_, w)| w.data_addr == data_addr) {
            return Err(format!(
                "a worker serving data exchange at {data_addr} is already registered (as {id})"
            ));
        }
        inner.next_worker += 1;
        let id = WorkerId(inner.next_worker);
        inner.workers.insert(
            id,
            WorkerEntry {
                name,
                slots,
                used: 0,
                data_addr,
                outbox,
                last_seen: Instant::now(),
            },
        );
        Ok(id)
    }

    /// Notes that `worker` is alive.
    pub fn seen(&self, worker: WorkerId) {
        if let Some(entry) = self.inner().workers.get_mut(&worker) {
            entry.last_seen = Instant::now();
        }
    }

    /// A worker is gone: forget it and fail the attempts running on it.
    pub fn remove_worker(&self, worker: WorkerId, cause: &str) {
        let jobs: Vec<Arc<JobHandle>> = {
            let mut inner = self.inner();
            if inner.workers.remove(&worker).is_none() {
                return;
            }
            inner.jobs.values().cloned().collect()
        };
        let mut busy = false;
        for job in jobs {
            if let Some(inbox) = job.inbox().as_ref() {
                if inbox.workers.contains(&worker) {
                    busy = true;
                    let _ = inbox.ends.send((
                        worker,
                        DeploymentOutcome::Failed {
                            error: format!("worker {worker} was lost: {cause}"),
                        },
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

    /// Sends `message` to `worker`; false when it is gone.
    pub fn send(&self, worker: WorkerId, message: ToWorker) -> bool {
        self.inner()
            .workers
            .get(&worker)
            .is_some_and(|w| w.outbox.send(message).is_ok())
    }

    /// The channel to `worker`, if it is registered.
    pub fn outbox(&self, worker: WorkerId) -> Option<tokio::sync::mpsc::UnboundedSender<ToWorker>> {
        self.inner().workers.get(&worker).map(|w| w.outbox.clone())
    }

    /// The registered workers.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.inner()
            .workers
            .iter()
            .map(|(id, w)| WorkerInfo {
                id: *id,
                name: w.name.clone(),
                slots: w.slots,
                used: w.used,
                data_addr: w.data_addr.clone(),
            })
            .collect()
    }

    /// Free slots per worker.
    pub fn free_slots(&self) -> BTreeMap<WorkerId, u32> {
        self.inner()
            .workers
            .iter()
            .map(|(id, w)| (*id, w.slots.saturating_sub(w.used)))
            .collect()
    }

    /// Places `graph` and reserves its slots, atomically.
    pub fn reserve(
        &self,
        graph: &JobGraph,
    ) -> Result<Reservation, crate::scheduler::NotEnoughSlots> {
        let mut inner = self.inner();
        let free = inner
            .workers
            .iter()
            .map(|(id, w)| (*id, w.slots.saturating_sub(w.used)))
            .collect();
        let placement = crate::scheduler::place(graph, &free)?;
        // Each slot holds one subtask of the widest operator.
        let widest = widest_vertex(graph);
        let mut slots: BTreeMap<WorkerId, u32> = BTreeMap::new();
        for p in placement.iter().filter(|p| Some(p.vertex) == widest) {
            *slots.entry(p.worker).or_default() += 1;
        }
        let mut peers = Vec::new();
        for (worker, n) in slots {
            if let Some(entry) = inner.workers.get_mut(&worker) {
                entry.used += n;
                peers.push((worker, entry.data_addr.clone()));
            }
        }
        Ok(Reservation { placement, peers })
    }

    /// Returns the slots of `placement` (workers that are gone are skipped).
    pub fn release(&self, graph: &JobGraph, placement: &[TaskPlacement]) {
        let widest = widest_vertex(graph);
        let mut inner = self.inner();
        for p in placement.iter().filter(|p| Some(p.vertex) == widest) {
            if let Some(entry) = inner.workers.get_mut(&p.worker) {
                entry.used = entry.used.saturating_sub(1);
            }
        }
    }

    /// Adds a job under a fresh number; refuses a job id in use by a job
    /// that has not ended.
    pub fn add_job(
        &self,
        spec: JobSpec,
        settings: RunSettings,
        graph: JobGraph,
    ) -> Result<Arc<JobHandle>, String> {
        let mut inner = self.inner();
        let number = inner.next_job + 1;
        let job_id = settings
            .job_id
            .clone()
            .unwrap_or_else(|| format!("{}-{number}", graph.name));
        if let Some(other) = inner
            .jobs
            .values()
            .find(|j| j.job_id == job_id && !j.record().lifecycle.state().is_terminal())
        {
            return Err(format!(
                "job id '{job_id}' is in use by job {} which has not ended",
                other.number
            ));
        }
        inner.next_job = number;
        let job = Arc::new(JobHandle {
            number,
            job_id,
            spec,
            settings,
            graph,
            cancel_requested: AtomicBool::new(false),
            inbox: Mutex::new(None),
            record: Mutex::new(JobRecord::default()),
        });
        inner.jobs.insert(number, job.clone());
        Ok(job)
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
