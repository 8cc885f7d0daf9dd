//! Collecting the workers' ends of an attempt: the first failure (or a
//! cancel request, or slots coming back for a scaled-down attempt) stops
//! the others; a coordinator that no longer leads stops collecting and
//! says nothing to the workers.

use super::AttemptEnd;
use crate::adoption::Heard;
use crate::cluster::Cluster;
use crate::job::{AttemptReport, JobHandle};
use crate::scaling::should_scale_up;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use weir_protocol::cluster::DeploymentOutcome;
use weir_protocol::{FailureKind, JobState, WorkerId};

/// How often a scaled-down attempt looks for free slots.
const SLOT_CHECK: Duration = Duration::from_millis(200);

/// How long an ending attempt waits for its workers to confirm.
const END_GRACE: Duration = Duration::from_secs(10);

/// Where the workers of an attempt are: which parts have not started, which
/// have not ended, and the counters of those that finished.
#[derive(Debug, Clone)]
pub(super) struct Progress {
    workers: Vec<WorkerId>,
    pending: BTreeSet<WorkerId>,
    starting: BTreeSet<WorkerId>,
    events_in: u64,
    records_out: u64,
}

impl Progress {
    /// A freshly deployed attempt on `workers`.
    pub(super) fn starting(workers: &[WorkerId]) -> Self {
        Self {
            workers: workers.to_vec(),
            pending: workers.iter().copied().collect(),
            starting: workers.iter().copied().collect(),
            events_in: 0,
            records_out: 0,
        }
    }

    /// An adopted attempt, as its workers reported it.
    pub(super) fn adopted(heard: &Heard) -> Self {
        let mut progress = Self::starting(&heard.keys().copied().collect::<Vec<_>>());
        for (worker, report) in heard {
            let Some(report) = report else { continue };
            if report.started {
                progress.starting.remove(worker);
            }
            if let Some(DeploymentOutcome::Finished {
                events_in,
                records_out,
            }) = &report.ended
            {
                progress.pending.remove(worker);
                progress.starting.remove(worker);
                progress.events_in += events_in;
                progress.records_out += records_out;
            }
        }
        progress
    }

    /// The attempt's workers.
    pub(super) fn workers(&self) -> Vec<WorkerId> {
        self.workers.clone()
    }
}

/// Why the wait for a report ended without one.
enum Woken {
    /// A wake-up or a deadline: look at the job and the clock.
    Looked,
    /// Every report sender is gone.
    Disconnected,
}

/// Waits for every worker's end of the attempt; on the first failure (or a
/// cancel request) tells the others to stop.
pub(super) fn collect_ends(
    cluster: &Cluster,
    job: &JobHandle,
    attempt: u32,
    progress: Progress,
    reports: &crossbeam_channel::Receiver<(WorkerId, AttemptReport)>,
    (slots, full_slots): (u32, u32),
) -> AttemptEnd {
    let Progress {
        mut pending,
        mut starting,
        mut events_in,
        mut records_out,
        ..
    } = progress;
    let mut rescale = false;
    let mut looked_at_slots = Instant::now();
    let mut failure: Option<(String, FailureKind)> = None;
    let mut stopping_since: Option<Instant> = None;
    let stop_all = |pending: &BTreeSet<WorkerId>| {
        cluster.cancel(pending, job.number, attempt);
    };
    let all_running = |job: &JobHandle| {
        job.advance(JobState::Running);
        job.record().note_running();
        tracing::info!(job = %job.job_id, attempt, "every subtask is running");
    };
    if starting.is_empty() {
        all_running(job);
    }
    while !pending.is_empty() {
        if !job.leads() {
            return AttemptEnd::Deposed;
        }
        // Reports and wake-ups (a cancel request, leadership lost) are
        // signals; the rest are deadlines: the lease lapsing, the next look
        // at free slots, the end of the grace the workers have to confirm.
        let deadline = [
            job.lease_lapses_at(),
            (stopping_since.is_none() && slots < full_slots).then(|| looked_at_slots + SLOT_CHECK),
            stopping_since.map(|since| since + END_GRACE),
        ]
        .into_iter()
        .flatten()
        .min();
        let report = {
            let mut select = crossbeam_channel::Select::new();
            let report = select.recv(reports);
            select.recv(job.wakeups());
            let ready = match deadline {
                Some(deadline) => select.select_deadline(deadline).ok(),
                None => Some(select.select()),
            };
            match ready {
                Some(op) if op.index() == report => {
                    op.recv(reports).map_err(|_| Woken::Disconnected)
                }
                Some(op) => {
                    let _ = op.recv(job.wakeups());
                    Err(Woken::Looked)
                }
                None => Err(Woken::Looked),
            }
        };
        match report {
            Ok((worker, AttemptReport::Started(restored))) => {
                job.record().last_restore.extend(restored);
                if starting.remove(&worker) && starting.is_empty() && failure.is_none() {
                    all_running(job);
                }
            }
            Ok((worker, AttemptReport::Ended(outcome))) => {
                if !pending.remove(&worker) {
                    continue;
                }
                match outcome {
                    DeploymentOutcome::Finished {
                        events_in: e,
                        records_out: r,
                    } => {
                        events_in += e;
                        records_out += r;
                    }
                    DeploymentOutcome::Failed { error, kind } => {
                        let error = format!("{worker}: {error}");
                        // Keep the root cause, not the cancellations it caused.
                        if failure
                            .as_ref()
                            .is_none_or(|(f, _)| f.contains("was cancelled"))
                        {
                            failure = Some((error, kind));
                        }
                    }
                    DeploymentOutcome::Cancelled => {
                        if stopping_since.is_none() && failure.is_none() {
                            failure =
                                Some((format!("{worker} cancelled its part"), FailureKind::Task));
                        }
                    }
                }
            }
            Ok((_, AttemptReport::Reattached(_))) => {}
            Err(Woken::Looked) => {}
            Err(Woken::Disconnected) => break,
        }
        if stopping_since.is_none() && slots < full_slots && looked_at_slots.elapsed() >= SLOT_CHECK
        {
            looked_at_slots = Instant::now();
            let free: u32 = cluster.free_slots().values().sum();
            let checkpoints = job
                .record()
                .live_checkpoints
                .as_ref()
                .map_or(0, |live| crate::cluster::lock(live).completed);
            if should_scale_up(slots, full_slots, free, checkpoints) {
                rescale = true;
                stop_all(&pending);
                stopping_since = Some(Instant::now());
            }
        }
        if stopping_since.is_none() && (failure.is_some() || job.is_cancel_requested()) {
            if job.is_cancel_requested() {
                job.advance(JobState::Cancelling);
            }
            if failure.is_some() {
                job.record().note_failure(Instant::now());
            }
            stop_all(&pending);
            stopping_since = Some(Instant::now());
        }
        if stopping_since.is_some_and(|since| since.elapsed() >= END_GRACE) {
            tracing::warn!(job = %job.job_id, attempt, ?pending, "workers did not confirm the end of the attempt");
            break;
        }
    }
    match failure {
        _ if job.is_cancel_requested() => AttemptEnd::Cancelled,
        _ if rescale => AttemptEnd::Rescale,
        Some((cause, FailureKind::StorageUnavailable)) => AttemptEnd::StorageUnavailable(cause),
        Some((cause, FailureKind::Task)) => AttemptEnd::Failed(cause),
        _ => AttemptEnd::Finished {
            events_in,
            records_out,
        },
    }
}
