//! The supervisor of one job: a thread that deploys attempts (or adopts
//! the one the workers kept running through a failover), runs their
//! checkpoint driver, collects the workers' ends, and restarts failed
//! attempts from the latest complete checkpoint under the restart
//! strategy. Every state change goes through the job's lifecycle state
//! machine, and every durable one through the job's control-store record.
//! A supervisor whose coordinator no longer leads stops without a word to
//! the workers: the next leader takes the job over.
//!
//! - this module: the loop over attempts, restarts and the job's end.
//! - [`attempt`]: deploying an attempt, or running an adopted one, with
//!   its checkpoint driver.
//! - [`adopt`]: after a failover, waiting for the workers' reports and
//!   acting on the [adoption decision](crate::adoption).
//! - [`ends`]: collecting the workers' ends of an attempt.

mod adopt;
mod attempt;
mod ends;

pub use adopt::Adoption;

use crate::catalog::CheckpointCatalog;
use crate::cluster::{Cluster, Reservation};
use crate::control::JobResult;
use crate::error::CoordinatorError;
use crate::job::JobHandle;
use crate::restart::{RestartDecision, RestartStrategy, RestartTracker};
use crate::scaling::{next_shape, Shape};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_protocol::checkpoint::paths;
use weir_protocol::cluster::{RestoreFrom, RestorePoint};
use weir_protocol::{Epoch, JobState};
use weir_state::CheckpointStorage;

/// How an attempt ended.
pub(crate) enum AttemptEnd {
    Finished {
        events_in: u64,
        records_out: u64,
    },
    Failed(String),
    /// A failure restarting cannot fix.
    Fatal(String),
    Cancelled,
    /// Stopped to redeploy at full parallelism (slots came back).
    Rescale,
    /// This coordinator no longer leads: stop, and leave the job to the next.
    Deposed,
    /// The job was stopped with a savepoint (found so after a failover).
    Stopped,
}

/// How a supervisor begins.
pub enum Start {
    /// A new submission, restoring `restore` first.
    Submitted {
        /// The checkpoint the first attempt restores, if any.
        restore: Option<RestorePoint>,
    },
    /// A job taken over from an earlier leader: adopt the attempt its
    /// workers kept running, or (when there is none) deploy afresh.
    Resumed {
        /// The attempt to adopt, when one was deployed.
        adoption: Option<Adoption>,
    },
}

/// Resolves where the first attempt restores from; `storage` is the
/// checkpoint root, `job_id` the job's directory in it.
pub fn resolve_restore(
    request: &RestoreFrom,
    storage: &CheckpointStorage,
    job_id: &str,
) -> Result<Option<RestorePoint>, CoordinatorError> {
    match request {
        RestoreFrom::Nothing => Ok(None),
        RestoreFrom::Latest => {
            let catalog = CheckpointCatalog::new(storage.clone(), job_id);
            let found = catalog.latest_restorable()?.map(|manifest| RestorePoint {
                storage_url: storage.url().to_owned(),
                job_id: job_id.to_owned(),
                manifest,
            });
            if found.is_none() {
                tracing::warn!(job = %job_id, "no complete checkpoint to restore; starting from the beginning");
            }
            Ok(found)
        }
        RestoreFrom::Checkpoint(location) => open_restore_point(location).map(Some),
    }
}

fn open_restore_point(location: &str) -> Result<RestorePoint, CoordinatorError> {
    let (catalog, manifest) = CheckpointCatalog::open_restorable(location)?;
    Ok(RestorePoint {
        storage_url: catalog.storage().url().to_owned(),
        job_id: catalog.job().to_owned(),
        manifest,
    })
}

/// The directory URL of a restore point (what the control store keeps).
pub fn restore_location(point: &RestorePoint) -> String {
    format!(
        "{}/{}",
        point.storage_url.trim_end_matches('/'),
        paths::checkpoint_dir(&point.job_id, point.manifest.epoch)
    )
}

/// Starts the supervisor of `job`.
pub fn spawn_supervisor(
    cluster: Arc<Cluster>,
    job: Arc<JobHandle>,
    storage: Option<CheckpointStorage>,
    start: Start,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("job-{}", job.number))
        .spawn(move || supervise(&cluster, &job, storage, start))
        .map(|_| ())
}

/// What the supervisor does next.
enum Next {
    /// Deploy a new attempt restoring this point.
    Deploy(Option<RestorePoint>),
    /// Take over the attempt the workers kept running.
    Adopt(Adoption),
}

/// Ends the job in `state` and records its result.
fn end_job(job: &JobHandle, state: JobState, failure: Option<String>) {
    let (events_in, records_out) = {
        let mut record = job.record();
        if failure.is_some() {
            record.failure = failure.clone();
        }
        (record.events_in, record.records_out)
    };
    if state == JobState::Finished {
        // Every worker started before it ended.
        job.advance(JobState::Running);
    }
    if state == JobState::Cancelled {
        job.advance(JobState::Cancelling);
    }
    let result = JobResult {
        state,
        failure: failure.or_else(|| job.record().failure.clone()),
        events_in,
        records_out,
        ended_at_ms: crate::time::now_ms(),
    };
    // Recorded before the state is shown: a job that a client sees ended
    // is never run again by a new leader.
    if let Err(error) = job.persist(|stored| stored.result = Some(result)) {
        tracing::warn!(job = %job.job_id, error = &error as &dyn std::error::Error, "could not record the end of the job; the next leader will finish it");
        return;
    }
    job.advance(state);
}

fn supervise(
    cluster: &Cluster,
    job: &Arc<JobHandle>,
    storage: Option<CheckpointStorage>,
    start: Start,
) {
    let settings = &job.settings;
    let stored = job.stored();
    if stored.stopped_with_savepoint.is_some() && matches!(start, Start::Resumed { adoption: None })
    {
        // Stopped with a savepoint before a failover, nothing deployed: it
        // never runs again. (An attempt still deployed is cancelled by the
        // adoption.)
        return end_job(job, JobState::Finished, None);
    }
    // A restart resumes from a checkpoint of this job's own attempts (above
    // `floor`, the newest epoch in storage before it started) or else from
    // where the first attempt started: never from an earlier run's.
    let floor = stored.floor.map(Epoch);
    let mut initial: Option<RestorePoint> = None;
    let mut next = match start {
        Start::Submitted { restore } => {
            job.record().restored_from = restore.as_ref().map(|r| r.manifest.epoch.0);
            initial = restore.clone();
            Next::Deploy(restore)
        }
        Start::Resumed {
            adoption: Some(adoption),
        } => Next::Adopt(adoption),
        Start::Resumed { adoption: None } => match stored.initial_restore.as_deref() {
            None => Next::Deploy(None),
            Some(location) => match open_restore_point(location) {
                Ok(point) => Next::Deploy(Some(point)),
                Err(error) => {
                    return end_job(
                        job,
                        JobState::Failed,
                        Some(format!(
                            "its restore point is gone: {}",
                            crate::error::chain(&error)
                        )),
                    )
                }
            },
        },
    };
    let mut restarts = RestartTracker::with_failures(
        RestartStrategy {
            initial_backoff: Duration::from_millis(settings.restart_backoff_ms),
            max_attempts: settings.max_restarts,
            ..RestartStrategy::default()
        },
        stored.consecutive_failures,
    );
    let full = Shape {
        spec: job.spec.clone(),
        graph: job.graph.clone(),
    };
    loop {
        if !job.leads() {
            return;
        }
        if job.is_cancel_requested() {
            return end_job(job, JobState::Cancelled, None);
        }
        let started = Instant::now();
        let end = match std::mem::replace(&mut next, Next::Deploy(None)) {
            Next::Adopt(adoption) => adopt::run(cluster, job, adoption, storage.as_ref()),
            Next::Deploy(restore) => deploy(cluster, job, &full, storage.as_ref(), restore),
        };
        let cause = match end {
            AttemptEnd::Deposed => {
                tracing::info!(job = %job.job_id, "no longer leading: leaving the job to the next leader");
                return;
            }
            _ if !job.leads() => return,
            AttemptEnd::Finished {
                events_in,
                records_out,
            } => {
                let mut record = job.record();
                record.events_in = events_in;
                record.records_out = records_out;
                drop(record);
                return end_job(job, JobState::Finished, None);
            }
            AttemptEnd::Cancelled => return end_job(job, JobState::Cancelled, None),
            AttemptEnd::Stopped => return end_job(job, JobState::Finished, None),
            _ if job.stored().stopped_with_savepoint.is_some() => {
                // The attempt failed after its stop-with-savepoint was
                // recorded: the savepoint holds everything, and restoring it
                // commits what the sinks had pending.
                tracing::warn!(job = %job.job_id, "the attempt ended badly after the job was stopped with a savepoint; the job stays stopped");
                return end_job(job, JobState::Finished, None);
            }
            AttemptEnd::Rescale => {
                tracing::info!(job = %job.job_id, "slots are back: redeploying at full parallelism");
                match choose_restore(job, storage.as_ref(), floor, false) {
                    Ok(Some(point)) => {
                        next = Next::Deploy(Some(point));
                        continue;
                    }
                    _ => {
                        return end_job(
                            job,
                            JobState::Failed,
                            Some("rescaling found no checkpoint to resume from".into()),
                        )
                    }
                }
            }
            AttemptEnd::Fatal(cause) => return end_job(job, JobState::Failed, Some(cause)),
            AttemptEnd::Failed(cause) => cause,
        };
        tracing::warn!(job = %job.job_id, %cause, "attempt failed");
        job.record().failure = Some(cause.clone());
        if storage.is_none() {
            // Without checkpoints there is nothing consistent to restart from.
            return end_job(job, JobState::Failed, None);
        }
        match restarts.on_failure(started.elapsed()) {
            RestartDecision::GiveUp { .. } => return end_job(job, JobState::Failed, None),
            RestartDecision::RestartAfter(wait) => {
                // An attempt that failed before all of it ran may have met a
                // corrupt checkpoint file: then verify every checksum (and
                // fall back past it); otherwise the workers check them as
                // they read, and listing the files is enough.
                let ran = job.record().lifecycle.state() == JobState::Running;
                job.advance(JobState::Recovering);
                let failures = restarts.failures();
                if job
                    .persist(|stored| {
                        stored.restarts += 1;
                        stored.consecutive_failures = failures;
                        stored.failure = Some(cause.clone());
                    })
                    .is_err()
                {
                    return;
                }
                // The backoff runs from when the failure was detected: the
                // time spent stopping the attempt counts towards it.
                let detected = job.record().recovering_since.unwrap_or_else(Instant::now);
                let until = detected + wait;
                let chosen = choose_restore(job, storage.as_ref(), floor, !ran);
                while Instant::now() < until && !job.is_cancel_requested() && job.leads() {
                    std::thread::sleep(Duration::from_millis(10).min(wait));
                }
                match chosen {
                    Ok(Some(point)) => next = Next::Deploy(Some(point)),
                    Ok(None) => next = Next::Deploy(initial_point(job, &mut initial)),
                    Err(error) => {
                        return end_job(
                            job,
                            JobState::Failed,
                            Some(format!(
                                "choosing a checkpoint to restore: {}",
                                crate::error::chain(&error)
                            )),
                        )
                    }
                }
            }
        }
    }
}

/// Where the first attempt started (re-read from storage after a failover).
fn initial_point(job: &JobHandle, initial: &mut Option<RestorePoint>) -> Option<RestorePoint> {
    if initial.is_none() {
        let location = job.stored().initial_restore?;
        match open_restore_point(&location) {
            Ok(point) => *initial = Some(point),
            Err(error) => {
                tracing::warn!(job = %job.job_id, %location, error = &error as &dyn std::error::Error, "the first attempt's restore point is gone; starting from the beginning");
            }
        }
    }
    initial.clone()
}

/// The newest checkpoint the job's pointer allows, above its floor.
fn choose_restore(
    job: &JobHandle,
    storage: Option<&CheckpointStorage>,
    floor: Option<Epoch>,
    checksums: bool,
) -> Result<Option<RestorePoint>, CoordinatorError> {
    let Some(storage) = storage else {
        return Ok(None);
    };
    let pointer = job.stored().checkpoint.map(|c| Epoch(c.epoch));
    let catalog = CheckpointCatalog::new(storage.clone(), &job.job_id);
    Ok(catalog
        .latest_for_restart(pointer, floor, checksums)?
        .map(|manifest| RestorePoint {
            storage_url: storage.url().to_owned(),
            job_id: job.job_id.clone(),
            manifest,
        }))
}

/// Places and deploys a new attempt, restoring `restore`, and runs it to
/// its end.
fn deploy(
    cluster: &Cluster,
    job: &Arc<JobHandle>,
    full: &Shape,
    storage: Option<&CheckpointStorage>,
    restore: Option<RestorePoint>,
) -> AttemptEnd {
    job.advance(JobState::Scheduling);
    let shape = match next_shape(cluster, full, job.settings.allow_scale_down) {
        Ok(shape) => shape,
        Err(error) => return AttemptEnd::Fatal(error),
    };
    // Holders are per slot of the shape that checkpointed.
    let holders = {
        let record = job.record();
        if record.holders_parallelism == shape.spec.parallelism {
            record.holders.clone()
        } else {
            BTreeMap::new()
        }
    };
    match cluster.reserve(&shape.graph, &holders) {
        Ok(Reservation { placement, peers }) => {
            let end = attempt::deploy(cluster, job, &shape, &placement, &peers, storage, restore);
            cluster.release(&shape.graph, &placement);
            end
        }
        Err(error) => AttemptEnd::Failed(error.to_string()),
    }
}
