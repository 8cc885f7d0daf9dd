//! The supervisor of one job: a thread that deploys attempts, runs their
//! checkpoint driver, collects the workers' ends, and restarts failed
//! attempts from the latest complete checkpoint under the restart strategy.
//! Every state change goes through the job's lifecycle state machine.

use crate::catalog::CheckpointCatalog;
use crate::cluster::{Cluster, Reservation};
use crate::driver::{CheckpointDriver, CheckpointStats, DriverConfig};
use crate::error::CoordinatorError;
use crate::job::{AttemptInbox, AttemptReport, JobHandle};
use crate::restart::{RestartDecision, RestartStrategy, RestartTracker};
use crate::scaling::{next_shape, should_scale_up, Shape};
use crate::tracker::CheckpointConfig;
use crossbeam_channel::RecvTimeoutError;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_protocol::cluster::{
    replica_ring, Deployment, DeploymentCheckpoints, DeploymentOutcome, Peer, RestoreFrom,
    RestorePoint, TaskPlacement,
};
use weir_protocol::wire::ToWorker;
use weir_protocol::{JobState, WorkerId};
use weir_state::CheckpointStorage;

/// How often a scaled-down attempt looks for free slots.
const SLOT_CHECK: Duration = Duration::from_millis(200);

/// How long an ending attempt waits for its workers to confirm.
const END_GRACE: Duration = Duration::from_secs(10);

/// How an attempt ended.
enum AttemptEnd {
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
            let found = latest(storage, job_id)?;
            if found.is_none() {
                tracing::warn!(job = %job_id, "no complete checkpoint to restore; starting from the beginning");
            }
            Ok(found)
        }
        RestoreFrom::Checkpoint(location) => {
            let (catalog, manifest) = CheckpointCatalog::open_restorable(location)?;
            Ok(Some(RestorePoint {
                storage_url: catalog.storage().url().to_owned(),
                job_id: catalog.job().to_owned(),
                manifest,
            }))
        }
    }
}

fn latest(
    storage: &CheckpointStorage,
    job_id: &str,
) -> Result<Option<RestorePoint>, CoordinatorError> {
    latest_checked(storage, job_id, true)
}

/// The latest complete checkpoint whose files are all present, checking
/// their checksums too when `checksums`.
fn latest_checked(
    storage: &CheckpointStorage,
    job_id: &str,
    checksums: bool,
) -> Result<Option<RestorePoint>, CoordinatorError> {
    let catalog = CheckpointCatalog::new(storage.clone(), job_id);
    let manifest = if checksums {
        catalog.latest_restorable()?
    } else {
        catalog.latest_present()?
    };
    Ok(manifest.map(|manifest| RestorePoint {
        storage_url: storage.url().to_owned(),
        job_id: job_id.to_owned(),
        manifest,
    }))
}

/// Starts the supervisor of `job`, first restoring `restore`.
pub fn spawn_supervisor(
    cluster: Arc<Cluster>,
    job: Arc<JobHandle>,
    storage: Option<CheckpointStorage>,
    restore: Option<RestorePoint>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("job-{}", job.number))
        .spawn(move || supervise(&cluster, &job, storage, restore))
        .map(|_| ())
}

fn advance(job: &JobHandle, to: JobState) {
    job.advance(to);
}

fn supervise(
    cluster: &Cluster,
    job: &JobHandle,
    storage: Option<CheckpointStorage>,
    mut restore: Option<RestorePoint>,
) {
    let settings = &job.settings;
    job.record().restored_from = restore.as_ref().map(|r| r.manifest.epoch.0);
    // A restart resumes from a checkpoint of this job's own attempts (above
    // `floor`, the newest epoch in storage before it started) or else from
    // where the first attempt started: never from an earlier run's.
    let initial = restore.clone();
    let floor = storage.as_ref().and_then(|storage| {
        CheckpointCatalog::new(storage.clone(), &job.job_id)
            .highest_epoch()
            .ok()
            .flatten()
    });
    let mut restarts = RestartTracker::new(RestartStrategy {
        initial_backoff: Duration::from_millis(settings.restart_backoff_ms),
        max_attempts: settings.max_restarts,
        ..RestartStrategy::default()
    });
    let full = Shape {
        spec: job.spec.clone(),
        graph: job.graph.clone(),
    };
    loop {
        if job.is_cancel_requested() {
            advance(job, JobState::Cancelling);
            advance(job, JobState::Cancelled);
            return;
        }
        advance(job, JobState::Scheduling);
        let started = Instant::now();
        let end = match next_shape(cluster, &full, settings.allow_scale_down) {
            Ok(shape) => {
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
                        let end = run_attempt(
                            cluster,
                            job,
                            &shape,
                            &placement,
                            &peers,
                            storage.as_ref(),
                            restore.take(),
                        );
                        cluster.release(&shape.graph, &placement);
                        end
                    }
                    Err(error) => AttemptEnd::Failed(error.to_string()),
                }
            }
            Err(error) => AttemptEnd::Fatal(error),
        };
        let cause = match end {
            AttemptEnd::Finished {
                events_in,
                records_out,
            } => {
                let mut record = job.record();
                record.events_in = events_in;
                record.records_out = records_out;
                drop(record);
                // Every worker started before it ended.
                advance(job, JobState::Running);
                advance(job, JobState::Finished);
                return;
            }
            AttemptEnd::Cancelled => {
                advance(job, JobState::Cancelling);
                advance(job, JobState::Cancelled);
                return;
            }
            AttemptEnd::Rescale => {
                tracing::info!(job = %job.job_id, "slots are back: redeploying at full parallelism");
                restore = match storage.as_ref().map(|s| latest(s, &job.job_id)) {
                    Some(Ok(Some(point))) if Some(point.manifest.epoch) > floor => Some(point),
                    _ => {
                        job.record().failure =
                            Some("rescaling found no checkpoint to resume from".into());
                        advance(job, JobState::Failed);
                        return;
                    }
                };
                continue;
            }
            AttemptEnd::Fatal(cause) => {
                job.record().failure = Some(cause);
                advance(job, JobState::Failed);
                return;
            }
            AttemptEnd::Failed(cause) => cause,
        };
        tracing::warn!(job = %job.job_id, %cause, "attempt failed");
        job.record().failure = Some(cause);
        let Some(storage) = &storage else {
            // Without checkpoints there is nothing consistent to restart from.
            advance(job, JobState::Failed);
            return;
        };
        match restarts.on_failure(started.elapsed()) {
            RestartDecision::GiveUp { .. } => {
                advance(job, JobState::Failed);
                return;
            }
            RestartDecision::RestartAfter(wait) => {
                // An attempt that failed before all of it ran may have met a
                // corrupt checkpoint file: then verify every checksum (and
                // fall back past it); otherwise the workers check them as
                // they read, and listing the files is enough.
                let ran = job.record().lifecycle.state() == JobState::Running;
                advance(job, JobState::Recovering);
                job.record().restarts += 1;
                // The backoff runs from when the failure was detected: the
                // time spent stopping the attempt counts towards it.
                let detected = job.record().recovering_since.unwrap_or_else(Instant::now);
                let until = detected + wait;
                let chosen = latest_checked(storage, &job.job_id, !ran);
                while Instant::now() < until && !job.is_cancel_requested() {
                    std::thread::sleep(Duration::from_millis(10).min(wait));
                }
                match chosen {
                    Ok(Some(point)) if Some(point.manifest.epoch) > floor => restore = Some(point),
                    Ok(_) => restore = initial.clone(),
                    Err(error) => {
                        job.record().failure = Some(format!(
                            "choosing a checkpoint to restore: {}",
                            crate::error::chain(&error)
                        ));
                        advance(job, JobState::Failed);
                        return;
                    }
                }
            }
        }
    }
}

/// Deploys one attempt and waits for it to end.
fn run_attempt(
    cluster: &Cluster,
    job: &JobHandle,
    shape: &Shape,
    placement: &[TaskPlacement],
    peers: &[(WorkerId, String)],
    storage: Option<&CheckpointStorage>,
    restore: Option<RestorePoint>,
) -> AttemptEnd {
    let settings = &job.settings;
    let attempt = {
        let mut record = job.record();
        record.attempt += 1;
        record.last_restore.clear();
        record.running_parallelism = shape.spec.parallelism;
        record.placement = placement.to_vec();
        record.started.get_or_insert_with(Instant::now);
        record.attempt
    };
    let workers: Vec<WorkerId> = peers.iter().map(|(w, _)| *w).collect();
    let (reports, reports_rx) = crossbeam_channel::unbounded();
    let mut driver_thread = None;
    let mut events = None;
    let mut checkpoints = None;
    if let Some(storage) = storage {
        let catalog = CheckpointCatalog::new(storage.clone(), &job.job_id);
        let config = DriverConfig {
            checkpoint: CheckpointConfig {
                interval: Duration::from_millis(settings.checkpoint_interval_ms),
                timeout: Duration::from_millis(settings.checkpoint_timeout_ms),
                min_pause: Duration::from_millis(settings.min_pause_ms),
            },
            retained: settings.retain,
        };
        let restored_from = restore.as_ref().map(|r| r.manifest.epoch);
        let live = Arc::new(std::sync::Mutex::new(CheckpointStats::default()));
        job.record().live_checkpoints = Some(live.clone());
        let driver = match CheckpointDriver::new(catalog, &shape.graph, config, restored_from) {
            Ok(driver) => driver.publish_to(live),
            // Storage that cannot even be listed will not get better by restarting.
            Err(error) => return AttemptEnd::Fatal(crate::error::chain(&error)),
        };
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        let (commands_tx, commands_rx) = crossbeam_channel::unbounded();
        driver_thread = std::thread::Builder::new()
            .name(format!("checkpoints-{}", job.number))
            .spawn(move || driver.run(&events_rx, &commands_tx))
            .ok();
        let number = job.number;
        // Commands end with the driver (its sender drops).
        let senders: Vec<_> = workers.iter().filter_map(|w| cluster.outbox(*w)).collect();
        let _ = std::thread::Builder::new()
            .name(format!("commands-{number}"))
            .spawn(move || {
                for command in commands_rx {
                    for outbox in &senders {
                        let _ = outbox.send(ToWorker::Command {
                            job_number: number,
                            attempt,
                            command: command.clone(),
                        });
                    }
                }
            });
        events = Some(events_tx);
        checkpoints = Some(DeploymentCheckpoints {
            storage_url: storage.url().to_owned(),
            job_id: job.job_id.clone(),
            restore,
        });
    }
    *job.inbox() = Some(AttemptInbox {
        attempt,
        workers: workers.clone(),
        events,
        reports: reports.clone(),
    });
    let deployment = Deployment {
        job_number: job.number,
        job_id: job.job_id.clone(),
        attempt,
        spec: shape.spec.clone(),
        graph: shape.graph.clone(),
        placement: placement.to_vec(),
        peers: peers
            .iter()
            .map(|(worker, data_addr)| Peer {
                worker: *worker,
                data_addr: data_addr.clone(),
            })
            .collect(),
        checkpoints,
        state_backend: settings.state_backend,
        batch_size: settings.batch_size,
        replicas: settings.replicas,
    };
    for worker in &workers {
        if !cluster.send(*worker, ToWorker::Deploy(Box::new(deployment.clone()))) {
            let _ = reports.send((
                *worker,
                AttemptReport::Ended(DeploymentOutcome::Failed {
                    error: format!("worker {worker} is gone"),
                }),
            ));
        }
    }
    drop(reports);
    tracing::info!(job = %job.job_id, attempt, workers = ?workers, "attempt deployed");
    let full_slots = crate::scheduler::slots_needed(&job.graph);
    let end = collect_ends(
        cluster,
        job,
        attempt,
        &workers,
        &reports_rx,
        (shape.slots(), full_slots),
    );
    // Dropping the inbox closes the driver's event channel: it stops.
    *job.inbox() = None;
    if let Some(driver) = driver_thread {
        let stats = driver.join().unwrap_or_default();
        let mut record = job.record();
        record.live_checkpoints = None;
        if stats.completed > 0 {
            // This attempt's checkpoints are the newest: their copies are
            // where this attempt ran, and on those workers' replica peers.
            record.holders = state_holders(&shape.graph, placement, &workers, settings.replicas);
            record.holders_parallelism = shape.spec.parallelism;
        }
        record.checkpoints.absorb(stats);
    }
    end
}

/// For each slot, the workers holding the state its subtasks checkpointed:
/// the worker that ran it, then its replica peers.
fn state_holders(
    graph: &weir_protocol::JobGraph,
    placement: &[TaskPlacement],
    workers: &[WorkerId],
    replicas: u32,
) -> BTreeMap<u32, Vec<WorkerId>> {
    let mut sorted = workers.to_vec();
    sorted.sort();
    let widest = crate::scheduler::slots_needed(graph);
    let Some(vertex) = graph.vertices.iter().find(|v| v.parallelism == widest) else {
        return BTreeMap::new();
    };
    placement
        .iter()
        .filter(|p| p.vertex == vertex.id.0)
        .map(|p| {
            let mut holders = vec![p.worker];
            holders.extend(replica_ring(&sorted, p.worker, replicas));
            (p.subtask, holders)
        })
        .collect()
}

/// Waits for every worker's end of the attempt; on the first failure (or a
/// cancel request) tells the others to stop.
fn collect_ends(
    cluster: &Cluster,
    job: &JobHandle,
    attempt: u32,
    workers: &[WorkerId],
    reports: &crossbeam_channel::Receiver<(WorkerId, AttemptReport)>,
    (slots, full_slots): (u32, u32),
) -> AttemptEnd {
    let mut rescale = false;
    let mut looked_at_slots = Instant::now();
    let mut pending: BTreeSet<WorkerId> = workers.iter().copied().collect();
    let mut starting: BTreeSet<WorkerId> = pending.clone();
    let mut failure: Option<String> = None;
    let mut stopping_since: Option<Instant> = None;
    let (mut events_in, mut records_out) = (0, 0);
    let stop_all = |pending: &BTreeSet<WorkerId>| {
        for worker in pending {
            cluster.send(
                *worker,
                ToWorker::Cancel {
                    job_number: job.number,
                    attempt,
                },
            );
        }
    };
    while !pending.is_empty() {
        match reports.recv_timeout(Duration::from_millis(20)) {
            Ok((worker, AttemptReport::Started(restored))) => {
                job.record().last_restore.extend(restored);
                if starting.remove(&worker) && starting.is_empty() && failure.is_none() {
                    advance(job, JobState::Running);
                    job.record().note_running();
                    tracing::info!(job = %job.job_id, attempt, "every subtask is running");
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
                    DeploymentOutcome::Failed { error } => {
                        let error = format!("{worker}: {error}");
                        // Keep the root cause, not the cancellations it caused.
                        if failure.as_ref().is_none_or(|f| f.contains("was cancelled")) {
                            failure = Some(error);
                        }
                    }
                    DeploymentOutcome::Cancelled => {
                        if stopping_since.is_none() && failure.is_none() {
                            failure = Some(format!("{worker} cancelled its part"));
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if stopping_since.is_none() && slots < full_slots && looked_at_slots.elapsed() > SLOT_CHECK
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
                advance(job, JobState::Cancelling);
            }
            if failure.is_some() {
                job.record().note_failure(Instant::now());
            }
            stop_all(&pending);
            stopping_since = Some(Instant::now());
        }
        if stopping_since.is_some_and(|since| since.elapsed() > END_GRACE) {
            tracing::warn!(job = %job.job_id, attempt, ?pending, "workers did not confirm the end of the attempt");
            break;
        }
    }
    match failure {
        _ if job.is_cancel_requested() => AttemptEnd::Cancelled,
        _ if rescale => AttemptEnd::Rescale,
        Some(cause) => AttemptEnd::Failed(cause),
        _ => AttemptEnd::Finished {
            events_in,
            records_out,
        },
    }
}
