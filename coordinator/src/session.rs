//! A leader's term: taking over from the control store when the election
//! is won, and giving everything up when it is lost.
//!
//! Taking over builds the term's [`Cluster`] from the stored records:
//! ended jobs are shown as they ended and never run again; for every
//! unfinished job whose attempt was deployed, the inbox its workers will
//! report into is opened before the coordinator answers anyone, and its
//! supervisor decides whether to adopt that attempt or restart it.

use crate::cluster::{Cluster, JobCatalog, Term};
use crate::control::{JobResult, Leadership};
use crate::error::CoordinatorError;
use crate::job::JobHandle;
use crate::supervisor::{spawn_supervisor, Adoption, Start};
use std::sync::Arc;
use std::time::Duration;
use weir_protocol::{JobGraph, JobState};
use weir_state::CheckpointStorage;

/// What a term needs from the coordinator's settings.
#[derive(Clone)]
pub struct TermSettings {
    /// The job registry.
    pub catalog: Arc<dyn JobCatalog>,
    /// Checkpoint storage root URL.
    pub checkpoint_root: String,
    /// Silence after which a worker is declared lost.
    pub heartbeat_timeout: Duration,
    /// The leader's lease, told to workers.
    pub lease: Option<Duration>,
    /// How long to wait for the workers of a running attempt.
    pub adopt_within: Duration,
}

/// A job to resume once the term is published.
pub struct Resumed {
    job: Arc<JobHandle>,
    storage: Option<CheckpointStorage>,
    adoption: Option<Adoption>,
}

/// Builds the term's cluster from the control store; the jobs to resume
/// come back with their adoption inboxes already open.
pub fn take_over(
    settings: &TermSettings,
    leadership: &Leadership,
) -> Result<(Arc<Cluster>, Vec<Resumed>), CoordinatorError> {
    let state = leadership.store.load()?;
    let cluster = Arc::new(Cluster::new(
        settings.catalog.clone(),
        settings.checkpoint_root.clone(),
        settings.heartbeat_timeout,
        Term {
            term: leadership.term,
            store: leadership.store.clone(),
            guard: leadership.guard.clone(),
            counters: state.counters,
            lease: settings.lease,
        },
    ));
    let mut resumed = Vec::new();
    for mut stored in state.jobs {
        let graph = match settings.catalog.graph(&stored.spec) {
            Ok(graph) => graph,
            Err(problem) => {
                if stored.result.is_none() {
                    tracing::error!(job = %stored.job_id, %problem, "this build cannot run the job it took over");
                    stored.result = Some(JobResult {
                        state: JobState::Failed,
                        failure: Some(format!("the new leader cannot build the job: {problem}")),
                        events_in: 0,
                        records_out: 0,
                        ended_at_ms: weir_protocol::time::now_ms(),
                    });
                    cluster.put_job(&stored)?;
                }
                JobGraph::new(stored.spec.job.clone())
            }
        };
        let unfinished = stored.result.is_none();
        let job = Arc::new(JobHandle::new(
            stored,
            graph,
            leadership.store.clone(),
            leadership.guard.clone(),
        ));
        cluster.insert_job(job.clone());
        if !unfinished {
            continue;
        }
        let storage = if job.settings.checkpoint_interval_ms > 0 {
            match CheckpointStorage::open(&settings.checkpoint_root) {
                Ok(storage) => Some(storage),
                Err(error) => return Err(error.into()),
            }
        } else {
            None
        };
        let adoption = Adoption::open(&job, settings.adopt_within, storage.is_some());
        tracing::info!(job = %job.job_id, number = job.number, attempt = job.stored().attempt, adopting = adoption.is_some(), "resuming a job of an earlier term");
        resumed.push(Resumed {
            job,
            storage,
            adoption,
        });
    }
    Ok((cluster, resumed))
}

/// Starts the supervisors of the resumed jobs.
pub fn resume(cluster: &Arc<Cluster>, jobs: Vec<Resumed>) {
    for Resumed {
        job,
        storage,
        adoption,
    } in jobs
    {
        if let Err(error) = spawn_supervisor(
            cluster.clone(),
            job.clone(),
            storage,
            Start::Resumed { adoption },
        ) {
            tracing::error!(job = %job.job_id, error = &error as &dyn std::error::Error, "could not start the supervisor of a resumed job");
        }
    }
}
