//! After a failover: wait for the workers of the attempt the control store
//! names to report what they run, then adopt the attempt, finish the job,
//! or restart it (the decision itself is [`crate::adoption::decide`]).

use super::attempt;
use super::ends::Progress;
use super::AttemptEnd;
use crate::adoption::{decide, AdoptionDecision, ExpectedAttempt, Heard, StopState};
use crate::cluster::Cluster;
use crate::job::{AttemptInbox, AttemptReport, JobHandle, PartId};
use crate::scaling::Shape;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_protocol::cluster::{DeploymentOutcome, DeploymentReport, TaskPlacement};
use weir_protocol::regions::RegionMap;
use weir_protocol::{JobSpec, JobState, WorkerEvent, WorkerId};
use weir_state::CheckpointStorage;

/// An attempt a new leader may adopt, with the inbox its workers report
/// into from the moment the term began (nothing they send is lost while
/// the leader waits for the others).
pub struct Adoption {
    expected: ExpectedAttempt,
    placement: Vec<TaskPlacement>,
    reports: Receiver<(PartId, AttemptReport)>,
    events: Option<Receiver<WorkerEvent>>,
    deadline: Instant,
}

impl Adoption {
    /// Opens the inbox of the attempt `job`'s record names, for workers to
    /// report into until `within` has passed; `None` when the job never
    /// deployed an attempt.
    pub fn open(job: &JobHandle, within: Duration, checkpoints: bool) -> Option<Self> {
        let stored = job.stored();
        if stored.attempt == 0 || stored.peers.is_empty() {
            return None;
        }
        let workers: Vec<WorkerId> = stored.peers.iter().map(|p| p.worker).collect();
        let (reports_tx, reports) = crossbeam_channel::unbounded();
        let (events_tx, events) = if checkpoints {
            let (tx, rx) = crossbeam_channel::unbounded();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        *job.inbox() = Some(AttemptInbox {
            attempt: stored.attempt,
            region_attempts: stored.region_attempts.clone(),
            cancelling: Default::default(),
            workers: workers.clone(),
            events: events_tx,
            reports: reports_tx,
            adopting: true,
        });
        Some(Self {
            expected: ExpectedAttempt {
                attempt: stored.attempt,
                workers: workers.into_iter().collect(),
                stop: match (&stored.stopped_with_savepoint, stored.stop_triggered) {
                    (Some(_), _) => StopState::Done,
                    (None, Some(_)) => StopState::InFlight,
                    (None, None) => StopState::None,
                },
            },
            placement: stored.placement,
            reports,
            events,
            deadline: Instant::now() + within,
        })
    }
}

/// Notes one report of a worker of the attempt. Those of one region's
/// deployment go to `late` (the decision looks at whole workers), except a
/// failure, which no adoption survives.
fn hear(
    heard: &mut Heard,
    late: &mut Vec<(PartId, AttemptReport)>,
    (worker, region): PartId,
    report: AttemptReport,
) {
    if region.is_some() {
        if let AttemptReport::Ended(outcome @ DeploymentOutcome::Failed { .. }) = &report {
            if let Some(Some(merged)) = heard.get_mut(&worker) {
                merged.ended = Some(outcome.clone());
            }
        }
        late.push(((worker, region), report));
        return;
    }
    match report {
        AttemptReport::Reattached(report) => {
            heard.insert(worker, report);
        }
        AttemptReport::Started(restored) => {
            if let Some(Some(report)) = heard.get_mut(&worker) {
                report.started = true;
                report.restored = restored;
            }
        }
        AttemptReport::Ended(outcome) => match heard.get_mut(&worker) {
            Some(Some(report)) => report.ended = Some(outcome),
            // Lost before it reported: it runs nothing any more.
            _ => {
                heard.insert(worker, None);
            }
        },
        // Spares matter once the attempt is adopted.
        AttemptReport::Joined | AttemptReport::CaughtUp(_) => {}
    }
}

/// Closes the attempt's inbox; a worker whose report came in after the
/// decision is told to cancel (later ones find no inbox, and are
/// cancelled as deployments no job adopts).
fn close_inbox(
    cluster: &Cluster,
    job: &JobHandle,
    attempt: u32,
    reports: &Receiver<(PartId, AttemptReport)>,
) {
    *job.inbox() = None;
    for ((worker, _), report) in reports.try_iter() {
        if let AttemptReport::Reattached(Some(report)) = report {
            if report.ended.is_none() {
                cluster.cancel([&worker], job.number, attempt);
            }
        }
    }
}

/// Waits for the adoption decision and acts on it.
pub(super) fn run(
    cluster: &Cluster,
    job: &Arc<JobHandle>,
    adoption: Adoption,
    storage: Option<&CheckpointStorage>,
) -> AttemptEnd {
    let Adoption {
        expected,
        placement,
        reports,
        events,
        deadline,
    } = adoption;
    let attempt = expected.attempt;
    job.advance(JobState::Scheduling);
    let mut heard = Heard::new();
    let mut late = Vec::new();
    let cancel_heard = |heard: &Heard| {
        let running = heard
            .iter()
            .filter(|(_, report)| report.as_ref().is_some_and(|r| r.ended.is_none()))
            .map(|(worker, _)| worker);
        cluster.cancel(running, job.number, attempt);
    };
    loop {
        if !job.leads() {
            return AttemptEnd::Deposed;
        }
        if job.is_cancel_requested() {
            cancel_heard(&heard);
            return AttemptEnd::Cancelled;
        }
        let now = Instant::now();
        match decide(&expected, &heard, now >= deadline) {
            AdoptionDecision::Wait => {
                let wait = deadline
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(100));
                match reports.recv_timeout(wait) {
                    Ok((part, report)) => hear(&mut heard, &mut late, part, report),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return AttemptEnd::Deposed,
                }
            }
            AdoptionDecision::Adopt => break,
            AdoptionDecision::Finished => {
                close_inbox(cluster, job, attempt, &reports);
                let (events_in, records_out) = heard
                    .values()
                    .flatten()
                    .filter_map(|r| match &r.ended {
                        Some(DeploymentOutcome::Finished {
                            events_in,
                            records_out,
                        }) => Some((*events_in, *records_out)),
                        _ => None,
                    })
                    .fold((0, 0), |(e, r), (de, dr)| (e + de, r + dr));
                tracing::info!(job = %job.job_id, attempt, "every worker had finished the attempt before the leader changed");
                return AttemptEnd::Finished {
                    events_in,
                    records_out,
                };
            }
            AdoptionDecision::Stopped => {
                tracing::info!(job = %job.job_id, attempt, "the job was stopped with a savepoint before the leader changed");
                cancel_heard(&heard);
                close_inbox(cluster, job, attempt, &reports);
                return AttemptEnd::Stopped;
            }
            AdoptionDecision::Restart(reason) => {
                tracing::warn!(job = %job.job_id, attempt, %reason, "cannot adopt the running attempt; restarting from the latest checkpoint");
                cancel_heard(&heard);
                close_inbox(cluster, job, attempt, &reports);
                job.record().note_failure(Instant::now());
                return AttemptEnd::Failed(format!(
                    "the new leader could not adopt attempt {attempt}: {reason}"
                ));
            }
        }
    }
    if let Some(inbox) = job.inbox().as_mut() {
        inbox.adopting = false;
    }
    // Late reports that came in while deciding are still in the channel.
    let stored = job.stored();
    let shape = match adopted_shape(cluster, job, stored.running_parallelism) {
        Ok(shape) => shape,
        Err(error) => {
            cancel_heard(&heard);
            close_inbox(cluster, job, attempt, &reports);
            return AttemptEnd::Failed(error);
        }
    };
    if let Err(error) = cluster.reserve_placement(&shape.graph, &placement) {
        cancel_heard(&heard);
        close_inbox(cluster, job, attempt, &reports);
        return AttemptEnd::Failed(error);
    }
    let reports_of: Vec<&DeploymentReport> = heard.values().flatten().collect();
    let finished_sources = reports_of
        .iter()
        .flat_map(|r| r.finished_sources.iter().copied())
        .collect();
    job.record().last_restore = reports_of
        .iter()
        .flat_map(|r| r.restored.iter().copied())
        .collect();
    // A job deployed region by region runs a part per region on a worker.
    let regions = RegionMap::of(&shape.graph);
    let by_region = !stored.region_attempts.is_empty();
    let parts_of = |worker: WorkerId| -> Vec<PartId> {
        if by_region {
            regions
                .regions_on(&placement, worker)
                .into_iter()
                .filter_map(|r| Some((worker, Some((r, *stored.region_attempts.get(&r)?)))))
                .collect()
        } else {
            vec![(worker, None)]
        }
    };
    let progress = Progress::adopted(&heard, parts_of, late);
    let end = attempt::adopted(
        cluster,
        job,
        &shape,
        attempt,
        storage,
        events,
        &reports,
        progress,
        finished_sources,
    );
    // Where the attempt ran last (a regional failover moves slots).
    cluster.release(&shape.graph, &job.stored().placement);
    end
}

/// The shape the adopted attempt runs: the job's, or a scaled-down one.
fn adopted_shape(cluster: &Cluster, job: &JobHandle, parallelism: u32) -> Result<Shape, String> {
    if parallelism == 0 || parallelism == job.spec.parallelism {
        return Ok(Shape {
            spec: job.spec.clone(),
            graph: job.graph.clone(),
        });
    }
    let spec = JobSpec {
        parallelism,
        ..job.spec.clone()
    };
    let graph = cluster.catalog.graph(&spec)?;
    Ok(Shape { spec, graph })
}
