//! Collecting the workers' ends of an attempt: the first failure (or a
//! cancel request, or slots coming back for a scaled-down attempt) stops
//! the others, unless it hit only some regions of a job that falls apart
//! into several: then those regions restart on their own
//! ([`Regional`]) and the others run on. A coordinator that no longer
//! leads stops collecting and says nothing to the workers.

use super::regional::Regional;
use super::AttemptEnd;
use crate::adoption::Heard;
use crate::cluster::Cluster;
use crate::job::{AttemptReport, JobHandle, PartId};
use crate::scaling::should_scale_up;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use weir_protocol::cluster::DeploymentOutcome;
use weir_protocol::{FailureKind, JobState, WorkerId};

/// How often a scaled-down attempt looks for free slots.
const SLOT_CHECK: Duration = Duration::from_millis(200);

/// How long an ending attempt waits for its workers to confirm.
const END_GRACE: Duration = Duration::from_secs(10);

/// Where the workers of an attempt are: which parts (a worker's
/// deployment, one per region for a job deployed region by region) have
/// not started, which have not ended, and the counters of those that
/// finished.
#[derive(Debug, Clone)]
pub(super) struct Progress {
    workers: Vec<WorkerId>,
    pending: BTreeSet<PartId>,
    starting: BTreeSet<PartId>,
    events_in: u64,
    records_out: u64,
}

impl Progress {
    /// A freshly deployed attempt of `parts`.
    pub(super) fn starting(parts: &[PartId]) -> Self {
        let mut workers: Vec<WorkerId> = parts.iter().map(|(w, _)| *w).collect();
        workers.dedup();
        Self {
            workers,
            pending: parts.iter().copied().collect(),
            starting: parts.iter().copied().collect(),
            events_in: 0,
            records_out: 0,
        }
    }

    /// An adopted attempt, as its workers reported it (`parts_of`: the
    /// parts each runs), and the reports of single regions that came in
    /// while the adoption was decided.
    pub(super) fn adopted(
        heard: &Heard,
        parts_of: impl Fn(WorkerId) -> Vec<PartId>,
        late: Vec<(PartId, AttemptReport)>,
    ) -> Self {
        let parts: Vec<PartId> = heard.keys().flat_map(|w| parts_of(*w)).collect();
        let mut progress = Self::starting(&parts);
        progress.workers = heard.keys().copied().collect();
        for (worker, report) in heard {
            let Some(report) = report else { continue };
            let theirs: Vec<PartId> = parts_of(*worker);
            if report.started {
                for part in &theirs {
                    progress.starting.remove(part);
                }
            }
            if let Some(DeploymentOutcome::Finished {
                events_in,
                records_out,
            }) = &report.ended
            {
                for part in &theirs {
                    progress.pending.remove(part);
                    progress.starting.remove(part);
                }
                progress.events_in += events_in;
                progress.records_out += records_out;
            }
        }
        for (part, report) in late {
            match report {
                AttemptReport::Started(_) => {
                    progress.starting.remove(&part);
                }
                AttemptReport::Ended(DeploymentOutcome::Finished {
                    events_in,
                    records_out,
                }) if progress.pending.remove(&part) => {
                    progress.starting.remove(&part);
                    progress.events_in += events_in;
                    progress.records_out += records_out;
                }
                _ => {}
            }
        }
        progress
    }

    /// The attempt's workers.
    pub(super) fn workers(&self) -> Vec<WorkerId> {
        self.workers.clone()
    }
}

/// Takes the parts a report of `part` is about out of `pending`: that
/// part, or (a worker's loss, `None`) every part of the worker.
fn take_parts(pending: &mut BTreeSet<PartId>, (worker, region): PartId) -> Vec<PartId> {
    let taken: Vec<PartId> = pending
        .iter()
        .filter(|(w, r)| *w == worker && (region.is_none() || *r == region))
        .copied()
        .collect();
    for part in &taken {
        pending.remove(part);
    }
    taken
}

/// The workers of `parts`.
fn workers_of(parts: &BTreeSet<PartId>) -> BTreeSet<WorkerId> {
    parts.iter().map(|(w, _)| *w).collect()
}

/// Why the wait for a report ended without one.
enum Woken {
    /// A wake-up or a deadline: look at the job and the clock.
    Looked,
    /// Every report sender is gone.
    Disconnected,
}

/// Waits for every worker's end of the attempt; on the first failure (or a
/// cancel request) tells the others to stop, unless `regional` restarts
/// just the regions that failed. Workers that join meanwhile become spares
/// and catch up from `storage`.
#[allow(clippy::too_many_arguments)]
pub(super) fn collect_ends(
    cluster: &Cluster,
    job: &JobHandle,
    attempt: u32,
    progress: Progress,
    reports: &crossbeam_channel::Receiver<(PartId, AttemptReport)>,
    (slots, full_slots): (u32, u32),
    mut regional: Option<Regional>,
    storage: Option<&weir_state::CheckpointStorage>,
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
    let stop_all = |pending: &BTreeSet<PartId>| {
        cluster.cancel(&workers_of(pending), job.number, attempt);
    };
    let all_running = |job: &JobHandle| {
        job.advance(JobState::Running);
        job.record().note_running();
        tracing::info!(job = %job.job_id, attempt, "every subtask is running");
    };
    if starting.is_empty() {
        all_running(job);
    }
    let mut all_started = starting.is_empty();
    while !pending.is_empty() || regional.as_ref().is_some_and(Regional::is_restarting) {
        if !job.leads() {
            return AttemptEnd::Deposed;
        }
        // Reports and wake-ups (a cancel request, leadership lost) are
        // signals; the rest are deadlines: the lease lapsing, the next look
        // at free slots, the end of the grace the workers have to confirm,
        // a regional restart's next step.
        let deadline = [
            job.lease_lapses_at(),
            (stopping_since.is_none() && slots < full_slots).then(|| looked_at_slots + SLOT_CHECK),
            stopping_since.map(|since| since + END_GRACE),
            regional
                .as_ref()
                .filter(|_| stopping_since.is_none())
                .and_then(Regional::next_step),
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
            Ok((part, AttemptReport::Started(restored))) => {
                job.record().last_restore.extend(restored.iter().copied());
                if starting.remove(&part) {
                    if let Some(regional) = regional.as_mut() {
                        regional.started(job, part, &restored);
                    }
                }
                if !all_started && starting.is_empty() && failure.is_none() {
                    all_started = true;
                    all_running(job);
                }
            }
            Ok((part, AttemptReport::Ended(outcome))) => {
                let parts = take_parts(&mut pending, part);
                if part.1.is_none() {
                    // A lost worker confirms none of its cancelled parts.
                    if let Some(regional) = regional.as_mut() {
                        regional.ended(part);
                    }
                }
                if parts.is_empty() {
                    // A region's earlier attempt confirming its cancel, or
                    // a report of a part that already ended.
                    if let Some(regional) = regional.as_mut() {
                        regional.ended(part);
                    }
                    continue;
                }
                for part in &parts {
                    starting.remove(part);
                }
                let worker = part.0;
                let failed = match outcome {
                    DeploymentOutcome::Finished {
                        events_in: e,
                        records_out: r,
                    } => {
                        events_in += e;
                        records_out += r;
                        None
                    }
                    DeploymentOutcome::Failed { error, kind } => {
                        Some((format!("{worker}: {error}"), kind))
                    }
                    DeploymentOutcome::Cancelled if stopping_since.is_none() => {
                        Some((format!("{worker} cancelled its part"), FailureKind::Task))
                    }
                    DeploymentOutcome::Cancelled => None,
                };
                if let Some((cause, kind)) = failed {
                    let regional_restart = stopping_since.is_none()
                        && failure.is_none()
                        && kind == FailureKind::Task
                        && !job.is_cancel_requested()
                        && regional.as_mut().is_some_and(|regional| {
                            regional.restart(
                                cluster,
                                job,
                                &parts,
                                &cause,
                                &mut pending,
                                &mut starting,
                            )
                        });
                    // Keep the root cause, not the cancellations it caused.
                    if !regional_restart
                        && failure
                            .as_ref()
                            .is_none_or(|(f, _)| f.contains("was cancelled"))
                    {
                        failure = Some((cause, kind));
                    }
                }
            }
            Ok((_, AttemptReport::Reattached(_))) => {}
            Ok(((worker, _), AttemptReport::Joined)) => {
                if stopping_since.is_none() {
                    super::spares::joined(cluster, job, attempt, storage, worker);
                }
            }
            Ok(((worker, _), AttemptReport::CaughtUp(outcome))) => {
                super::spares::caught_up(cluster, job, storage, worker, outcome);
            }
            Err(Woken::Looked) => {}
            Err(Woken::Disconnected) => break,
        }
        if stopping_since.is_none() && failure.is_none() {
            if let Some(Err(cause)) = regional
                .as_mut()
                .map(|r| r.step(cluster, job, &mut pending, &mut starting))
            {
                // The regions could not restart on their own: the job does.
                failure = Some((cause, FailureKind::Task));
            }
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
                if let Some(regional) = regional.as_mut() {
                    regional.abandon();
                }
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
            if let Some(regional) = regional.as_mut() {
                regional.abandon();
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
