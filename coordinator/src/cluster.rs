//! The coordinator's shared state: registered workers and their slots,
//! and the jobs with their current attempt's inbox. The worker endpoint,
//! the REST API and the job supervisors all work on one [`Cluster`].

use crate::detector::{FailureDetector, Loss};
use crate::job::{AttemptReport, JobHandle, JobRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use weir_protocol::cluster::{DeploymentOutcome, JobSpec, RunSettings, TaskPlacement};
use weir_protocol::wire::ToWorker;
use weir_protocol::{JobGraph, WorkerId};

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

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

struct Inner {
    workers: BTreeMap<WorkerId, WorkerEntry>,
    jobs: BTreeMap<u32, Arc<JobHandle>>,
    detector: FailureDetector,
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
        heartbeat_timeout: Duration,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner {
                workers: BTreeMap::new(),
                jobs: BTreeMap::new(),
                detector: FailureDetector::new(heartbeat_timeout),
                next_worker: 0,
                next_job: 0,
            }),
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
        kick: tokio::sync::watch::Sender<bool>,
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
                kick,
            },
        );
        inner.detector.heard(id, Instant::now());
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

    /// Tells every worker the coordinator is alive.
    pub fn heartbeat_workers(&self) {
        for entry in self.inner().workers.values() {
            let _ = entry.outbox.send(ToWorker::Heartbeat);
        }
    }

    /// A worker is gone: forget it and fail the attempts running on it.
    fn remove_worker(&self, worker: WorkerId, cause: &str, loss: Loss) {
        let detected = Instant::now();
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
                    job.record().note_loss(worker, cause, loss, detected);
                    let _ = inbox.reports.send((
                        worker,
                        AttemptReport::Ended(DeploymentOutcome::Failed {
                            error: format!("worker {worker} was lost: {cause}"),
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
        holders: &BTreeMap<u32, Vec<WorkerId>>,
    ) -> Result<Reservation, crate::scheduler::NotEnoughSlots> {
        let mut inner = self.inner();
        let free = inner
            .workers
            .iter()
            .map(|(id, w)| (*id, w.slots.saturating_sub(w.used)))
            .collect();
        let placement = crate::scheduler::place(graph, &free, holders)?;
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
            state_changed: std::sync::Condvar::new(),
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
