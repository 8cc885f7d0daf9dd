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
//! - [`restore`]: where an attempt restores from, waiting for checkpoint
//!   storage while it does not answer.
//! - [`regional`]: restarting only the regions that lost a task, for a
//!   job whose graph falls apart into pipelined regions.
//! - [`spares`]: workers that join a running attempt become its spares
//!   and catch up on its latest checkpoint.

mod adopt;
mod attempt;
mod ends;
mod regional;
mod restore;
mod spares;

use crate::history::{RestartRecord, RestartScope, StorageWaitPhase};
pub use adopt::Adoption;
use restore::{
    choose_restore, open_restore_point, persist_waiting, until_storage_answers, Unanswered,
};
pub use restore::{resolve_restore, restore_location};

use crate::cluster::{Cluster, Reservation};
use crate::control::JobResult;
use crate::job::JobHandle;
use crate::restart::{RestartDecision, RestartStrategy, RestartTracker};
use crate::scaling::{next_shape, Shape};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_protocol::cluster::RestorePoint;
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
    /// Checkpoint storage did not answer (a restore could not read state,
    /// or the driver could not list checkpoints): redeployed once it
    /// answers, without counting against the restart strategy.
    StorageUnavailable(String),
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
        ended_at_ms: weir_protocol::time::now_ms(),
    };
    // Recorded before the state is shown: a job that a client sees ended
    // is never run again by a new leader. An outage of the storage holding
    // the record is waited out (a cancel does not cut it short).
    let recorded = restore::wait_for_storage(
        job,
        &restart_strategy(&job.settings),
        (StorageWaitPhase::JobRecord, restore::Cancel::Waits),
        None,
        || job.persist(|stored| stored.result = Some(result.clone())),
    );
    match recorded {
        Ok(()) => {}
        Err(Unanswered::Failed(error)) => {
            tracing::warn!(job = %job.job_id, error = &error as &dyn std::error::Error, "could not record the end of the job; the next leader will finish it");
            return;
        }
        Err(Unanswered::Stopped) => {
            tracing::warn!(job = %job.job_id, "no longer leading before the end of the job was recorded; the next leader will finish it");
            return;
        }
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
    let mut restarts =
        RestartTracker::with_failures(restart_strategy(settings), stored.consecutive_failures);
    let strategy = *restarts.strategy();
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
            Some(location) => {
                match until_storage_answers(job, &strategy, StorageWaitPhase::Restore, None, || {
                    open_restore_point(location)
                }) {
                    Ok(point) => Next::Deploy(Some(point)),
                    Err(Unanswered::Stopped) => return stopped(job),
                    Err(Unanswered::Failed(error)) => {
                        return fail(job, "its restore point is gone", &error)
                    }
                }
            }
        },
    };
    let full = Shape {
        spec: job.spec.clone(),
        graph: job.graph.clone(),
    };
    // Attempts in a row that met a storage outage (they do not count
    // against the restart strategy, but back off like it).
    let mut storage_failures = 0;
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
        let (cause, storage_caused) = match end {
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
                let Some(storage) = storage.as_ref() else {
                    return end_job(
                        job,
                        JobState::Failed,
                        Some("rescaling needs checkpoints".into()),
                    );
                };
                match until_storage_answers(job, &strategy, StorageWaitPhase::Restore, None, || {
                    choose_restore(job, storage, floor, false)
                }) {
                    Ok(Some(point)) => {
                        next = Next::Deploy(Some(point));
                        continue;
                    }
                    Err(Unanswered::Stopped) => return stopped(job),
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
            AttemptEnd::Failed(cause) => (cause, false),
            AttemptEnd::StorageUnavailable(cause) => (cause, true),
        };
        tracing::warn!(job = %job.job_id, %cause, storage_caused, "attempt failed");
        job.record().failure = Some(cause.clone());
        let Some(storage) = storage.as_ref() else {
            // Without checkpoints there is nothing consistent to restart from.
            return end_job(job, JobState::Failed, None);
        };
        // An attempt that failed before all of it ran may have met a
        // corrupt checkpoint file: then verify every checksum (and fall
        // back past it); otherwise the workers check them as they read,
        // and listing the files is enough.
        let ran = job.record().lifecycle.state() == JobState::Running;
        let wait = if storage_caused {
            // Storage, not the job, failed: wait for it as long as it takes
            // (backing off until an attempt runs a healthy while).
            storage_failures = if started.elapsed() >= strategy.reset_after {
                1
            } else {
                storage_failures + 1
            };
            strategy.storage_backoff(storage_failures)
        } else {
            storage_failures = 0;
            match restarts.on_failure(started.elapsed()) {
                RestartDecision::GiveUp { .. } => return end_job(job, JobState::Failed, None),
                RestartDecision::RestartAfter(wait) => wait,
            }
        };
        job.advance(JobState::Recovering);
        let failures = restarts.failures();
        let recorded = persist_waiting(job, &strategy, |stored| {
            stored.restarts += 1;
            stored.consecutive_failures = failures;
            stored.failure = Some(cause.clone());
        });
        if let Err(stop) = recorded {
            return stopped_by(job, stop);
        }
        let failed_attempt = job.stored().attempt;
        {
            let mut record = job.record();
            let detected_at = record.recovering_since.unwrap_or_else(Instant::now);
            record.note_restart(RestartRecord {
                detected_at_ms: weir_protocol::time::wall_ms(detected_at),
                cause: cause.clone(),
                scope: RestartScope::Global,
                attempt: failed_attempt,
                regions: Vec::new(),
                recovery_ms: None,
                restored: Vec::new(),
                superseded: false,
            });
        }
        // The backoff runs from when the failure was detected: the time
        // spent stopping the attempt counts towards it. The checkpoint is
        // chosen meanwhile.
        let detected = job.record().recovering_since.unwrap_or_else(Instant::now);
        let chosen = choose_restore(job, storage, floor, !ran);
        if job.pause(
            (detected + wait).saturating_duration_since(Instant::now()),
            true,
        ) {
            continue;
        }
        let chosen = until_storage_answers(
            job,
            &strategy,
            StorageWaitPhase::Restore,
            Some(chosen),
            || choose_restore(job, storage, floor, !ran),
        )
        .and_then(|chosen| match chosen {
            Some(point) => Ok(Some(point)),
            None => restore::without_checkpoint(job, &strategy, floor, &mut initial),
        });
        match chosen {
            Ok(point) => next = Next::Deploy(point),
            Err(Unanswered::Stopped) => continue,
            Err(Unanswered::Failed(error)) => {
                return fail(job, "choosing a checkpoint to restore", &error)
            }
        }
    }
}

/// Ends the job Failed: `what` went wrong with `error`.
fn fail(job: &JobHandle, what: &str, error: &crate::error::CoordinatorError) {
    let cause = format!("{what}: {}", crate::error::chain(error));
    end_job(job, JobState::Failed, Some(cause));
}

/// A wait was cut short: by a cancel (the job ends cancelled) or by the
/// end of this coordinator's term (the next leader takes the job over).
fn stopped(job: &JobHandle) {
    if job.leads() && job.is_cancel_requested() {
        end_job(job, JobState::Cancelled, None);
    }
}

/// A record could not be written: the wait was cut short, or this
/// coordinator no longer leads (its write was refused).
fn stopped_by(job: &JobHandle, stop: Unanswered) {
    match stop {
        Unanswered::Stopped => stopped(job),
        Unanswered::Failed(error) => {
            tracing::warn!(job = %job.job_id, error = &error as &dyn std::error::Error, "could not record the job's restart; leaving it to the next leader");
        }
    }
}

/// The restart strategy of a job's settings.
pub(crate) fn restart_strategy(settings: &weir_protocol::RunSettings) -> RestartStrategy {
    RestartStrategy {
        initial_backoff: Duration::from_millis(settings.restart_backoff_ms),
        max_attempts: settings.max_restarts,
        ..RestartStrategy::default()
    }
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
    // A new leader has seen no checkpoint complete yet: the holders are
    // where the last recorded attempt ran and pushed its replicas (a wrong
    // guess only costs a download from storage).
    let holders = if holders.is_empty() {
        attempt::recorded_holders(&job.stored(), &shape.graph, job.settings.replicas)
            .filter(|_| job.stored().running_parallelism == shape.spec.parallelism)
            .unwrap_or_default()
    } else {
        holders
    };
    match cluster.reserve(&shape.graph, &holders) {
        Ok(Reservation { placement, peers }) => {
            let before = job.stored().newest_attempt();
            let end = attempt::deploy(cluster, job, &shape, &placement, &peers, storage, restore);
            // Where the attempt ran last, once recorded (a regional
            // failover moves slots).
            let stored = job.stored();
            let last = if stored.attempt > before {
                &stored.placement
            } else {
                &placement
            };
            cluster.release(&shape.graph, last);
            end
        }
        Err(error) => AttemptEnd::Failed(error.to_string()),
    }
}
