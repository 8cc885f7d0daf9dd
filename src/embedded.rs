//! The embedded cluster behind `weir run`: the coordinator and one worker
//! in this process, running the same code as `weir coordinator` and
//! `weir worker` (the control connection goes over loopback; every edge of
//! the job stays an in-memory channel, since all of it runs in one worker).

use std::sync::Arc;
use std::time::Duration;
use weir_coordinator::submission::{submit_job, SubmitError};
use weir_coordinator::{Coordinator, CoordinatorConfig, CoordinatorError, JobStatus, MemoryPlane};
use weir_operators::job::JobRegistry;
use weir_protocol::{JobState, SubmitRequest};
use weir_runtime::worker::{run_worker, FixedEndpoint, WorkerConfig};
use weir_runtime::{CancelToken, RuntimeError};

/// Why an embedded run did not finish.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The coordinator could not start.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The worker could not start or stopped.
    #[error("the embedded worker stopped")]
    Worker(#[source] RuntimeError),
    /// The job was refused.
    #[error(transparent)]
    Refused(#[from] SubmitError),
    /// The job ended without finishing.
    #[error("job '{job}' ended {state} after {restarts} restarts{}", cause.as_deref().map(|c| format!(": {c}")).unwrap_or_default())]
    Ended {
        /// The job's id.
        job: String,
        /// Its final state.
        state: JobState,
        /// Restarts before it ended.
        restarts: u32,
        /// The last failure.
        cause: Option<String>,
    },
}

/// A coordinator and one worker of `slots` slots, in this process; both
/// stop when it is dropped.
pub struct EmbeddedCluster {
    coordinator: Option<Coordinator>,
    cluster: Arc<weir_coordinator::Cluster>,
    stop: CancelToken,
    worker: Option<std::thread::JoinHandle<Result<(), RuntimeError>>>,
}

impl EmbeddedCluster {
    /// Starts the coordinator (checkpoints under `checkpoint_dir`) and a
    /// worker building jobs from `registry`, and waits for it to register.
    pub fn start(
        registry: JobRegistry,
        checkpoint_dir: String,
        slots: u32,
    ) -> Result<Self, EmbeddedError> {
        let config = CoordinatorConfig::local(checkpoint_dir);
        let catalog = Arc::new(crate::cluster::RegistryCatalog(registry.clone()));
        // One job in one process: nothing to resume in a later run.
        let coordinator = Coordinator::start(&config, catalog, Arc::new(MemoryPlane::new()))?;
        let Some(cluster) = coordinator.node().wait_leading(Duration::from_secs(30)) else {
            return Err(EmbeddedError::Worker(RuntimeError::NoLeader {
                problem: "the embedded coordinator did not take the lead".into(),
            }));
        };
        let (registered, first_registration) = crossbeam_channel::bounded(1);
        let worker_config = WorkerConfig {
            coordinator: Arc::new(FixedEndpoint(coordinator.worker_addr().to_owned())),
            slots: slots.max(1),
            name: "embedded".into(),
            registered: Some(registered),
            ..WorkerConfig::default()
        };
        let stop = CancelToken::new();
        let build = crate::cluster::registry_builder(registry);
        let worker_stop = stop.clone();
        let worker = std::thread::Builder::new()
            .name("embedded-worker".into())
            .spawn(move || run_worker(&worker_config, build, &worker_stop))
            .map_err(|source| {
                EmbeddedError::Worker(RuntimeError::Spawn {
                    operator: "embedded-worker".into(),
                    subtask: 0,
                    source,
                })
            })?;
        let mut embedded = Self {
            coordinator: Some(coordinator),
            cluster,
            stop,
            worker: Some(worker),
        };
        // The worker drops its config (and the sender in it) when it ends:
        // a disconnected channel before any id means it never registered.
        if first_registration.recv().is_err() {
            let result = embedded.worker.take().expect("started above").join();
            return Err(EmbeddedError::Worker(match result {
                Ok(Err(error)) => error,
                _ => RuntimeError::CoordinatorLost {
                    problem: "the worker ended before registering".into(),
                },
            }));
        }
        Ok(embedded)
    }

    /// Runs a job to its end: its final status when it Finished.
    pub fn run(&self, request: SubmitRequest) -> Result<JobStatus, EmbeddedError> {
        let job = submit_job(&self.cluster, request)?;
        let state = job.wait_until_ended();
        let status = job.status();
        if state == JobState::Finished {
            return Ok(status);
        }
        Err(EmbeddedError::Ended {
            job: status.job_id,
            state,
            restarts: status.restarts,
            cause: status.failure,
        })
    }

    /// Stops the worker and the coordinator.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        if let Some(coordinator) = self.coordinator.take() {
            coordinator.shutdown();
        }
    }
}

/// Runs one job on a fresh embedded cluster sized for it.
pub fn run_embedded(
    registry: &JobRegistry,
    checkpoint_dir: String,
    slots: u32,
    request: SubmitRequest,
) -> Result<JobStatus, EmbeddedError> {
    let cluster = EmbeddedCluster::start(registry.clone(), checkpoint_dir, slots)?;
    let result = cluster.run(request);
    cluster.stop();
    result
}
