//! Running one attempt: deploying it to its workers, or carrying on with
//! one a new leader adopted; either way with its checkpoint driver, its
//! command forwarding and the collection of its workers' ends.

use super::ends::{collect_ends, Progress};
use super::regional::{CommandTargets, Regional};
use super::restore::Unanswered;
use super::AttemptEnd;
use crate::catalog::CheckpointCatalog;
use crate::cluster::Cluster;
use crate::control::CheckpointPointer;
use crate::driver::{
    CheckpointDriver, CheckpointFence, CheckpointStats, DriverConfig, DriverControl,
};
use crate::error::CoordinatorError;
use crate::history::StorageWaitPhase;
use crate::job::{AttemptInbox, AttemptReport, JobHandle, PartId};
use crate::scaling::Shape;
use crate::tracker::CheckpointConfig;
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_protocol::cluster::{
    replica_candidates, Deployment, DeploymentCheckpoints, DeploymentOutcome, Peer, RegionPart,
    RestorePoint, TaskPlacement,
};
use weir_protocol::regions::RegionMap;
use weir_protocol::wire::ToWorker;
use weir_protocol::{ControlCommand, Epoch, FailureKind, SubtaskId, WorkerEvent, WorkerId};
use weir_state::CheckpointStorage;

/// The control store's side of one job's checkpoints.
struct JobFence(Arc<JobHandle>);

impl CheckpointFence for JobFence {
    fn triggering(&self, epoch: Epoch, stop: bool) -> Result<(), CoordinatorError> {
        self.0.persist(|stored| {
            stored.last_epoch = stored.last_epoch.max(epoch.0);
            if stop {
                stored.stop_triggered = Some(epoch.0);
            }
        })
    }

    fn completing(&self, epoch: Epoch, is_final: bool) -> Result<(), CoordinatorError> {
        let term = self.0.term();
        self.0.persist(|stored| {
            stored.checkpoint = Some(CheckpointPointer {
                epoch: epoch.0,
                is_final,
                term,
                completed_at_ms: weir_protocol::time::now_ms(),
            })
        })
    }

    fn term(&self) -> u64 {
        self.0.term()
    }

    fn stopping(&self, location: &str) -> Result<(), CoordinatorError> {
        self.0
            .persist(|stored| stored.stopped_with_savepoint = Some(location.to_owned()))
    }
}

/// The checkpoint driver of a running attempt and where its commands go.
pub(super) struct Checkpoints {
    thread: Option<std::thread::JoinHandle<CheckpointStats>>,
    /// The supervisor's word to the driver on regional failovers.
    control: Sender<DriverControl>,
    /// The workers its commands go to.
    targets: CommandTargets,
}

impl Checkpoints {
    /// Starts the driver of `attempt` (reading `events`) and the thread
    /// that forwards its commands to `workers`. `finished` are sources
    /// that finished before (an adopted attempt).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        cluster: &Cluster,
        job: &Arc<JobHandle>,
        shape: &Shape,
        attempt: u32,
        workers: &[WorkerId],
        storage: &CheckpointStorage,
        after: Option<Epoch>,
        finished: Vec<SubtaskId>,
        events: Receiver<WorkerEvent>,
    ) -> Result<Self, AttemptEnd> {
        let settings = &job.settings;
        let catalog = CheckpointCatalog::new(storage.clone(), &job.job_id);
        let config = DriverConfig {
            checkpoint: CheckpointConfig {
                interval: Duration::from_millis(settings.checkpoint_interval_ms),
                timeout: Duration::from_millis(settings.checkpoint_timeout_ms),
                min_pause: Duration::from_millis(settings.min_pause_ms),
                tolerable_failures: settings.tolerable_failed_checkpoints,
            },
            retained: settings.retain,
        };
        let live = Arc::new(std::sync::Mutex::new(CheckpointStats::default()));
        job.record().live_checkpoints = Some(live.clone());
        let last_epoch = Some(Epoch(job.stored().last_epoch)).filter(|e| e.0 > 0);
        // After a failover the latest checkpoint is older than usual.
        let adopted = job.record().adopted;
        // Epochs continue after those in storage: wait for it to answer
        // (an adopted attempt keeps running meanwhile).
        let strategy = super::restart_strategy(settings);
        // An adopted attempt runs on while it waits; any other waits
        // before it is deployed.
        let phase = if adopted {
            StorageWaitPhase::Checkpoints
        } else {
            StorageWaitPhase::Start
        };
        let driver = super::restore::until_storage_answers(job, &strategy, phase, None, || {
            CheckpointDriver::new(catalog.clone(), &shape.graph, config, after.max(last_epoch))
        });
        let mut driver = match driver {
            Ok(driver) => driver,
            Err(Unanswered::Stopped) if job.leads() => return Err(AttemptEnd::Cancelled),
            Err(Unanswered::Stopped) => return Err(AttemptEnd::Deposed),
            Err(Unanswered::Failed(error)) => {
                return Err(AttemptEnd::Fatal(crate::error::chain(&error)))
            }
        };
        driver = driver
            .publish_to(live)
            .fenced_by(Arc::new(JobFence(job.clone())))
            .with_metrics(cluster.metrics.clone())
            .with_finished_sources(finished);
        if adopted {
            driver = driver.checkpoint_at_once();
        }
        let (savepoints_tx, savepoints_rx) = crossbeam_channel::unbounded();
        let (control, control_rx) = crossbeam_channel::unbounded();
        driver = driver
            .with_savepoints(savepoints_rx)
            .with_control(control_rx);
        *crate::cluster::lock(&job.savepoints) = Some(savepoints_tx);
        let (commands_tx, commands_rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name(format!("checkpoints-{}", job.number))
            .spawn(move || driver.run(&events, &commands_tx))
            .ok();
        let number = job.number;
        // Commands end with the driver (its sender drops). A regional
        // failover adds the workers lost slots move to.
        let targets: CommandTargets = Arc::new(std::sync::Mutex::new(
            workers
                .iter()
                .filter_map(|w| cluster.outbox(*w).map(|outbox| (*w, outbox)))
                .collect(),
        ));
        let senders = targets.clone();
        let guard = cluster.guard().clone();
        let _ = std::thread::Builder::new()
            .name(format!("commands-{number}"))
            .spawn(move || {
                for command in commands_rx {
                    if !guard.leads() {
                        break;
                    }
                    let senders = crate::cluster::lock(&senders).clone();
                    for (_, outbox) in &senders {
                        let _ = outbox.send(ToWorker::Command {
                            job_number: number,
                            attempt,
                            command: command.clone(),
                        });
                    }
                    if matches!(
                        command,
                        ControlCommand::TriggerCheckpoint { stop: true, .. }
                    ) {
                        crate::crash::point("after-stop-trigger");
                    }
                }
            });
        Ok(Self {
            thread,
            control,
            targets,
        })
    }

    /// What a regional failover needs of the driver.
    fn regional(&self) -> (Sender<DriverControl>, CommandTargets) {
        (self.control.clone(), self.targets.clone())
    }

    /// Waits for the driver (its event channel closed) and keeps its figures.
    fn finish(self, job: &JobHandle, shape: &Shape) -> Option<(String, FailureKind)> {
        // Requests from now on find no driver (one still queued is
        // answered as the driver ends).
        *crate::cluster::lock(&job.savepoints) = None;
        let thread = self.thread?;
        let mut stats = thread.join().unwrap_or_default();
        let failed_over = stats.failed_over.take();
        // Where the attempt ran last (a regional failover moves slots).
        let stored = job.stored();
        let spares: Vec<WorkerId> = stored.spares.iter().map(|p| p.worker).collect();
        let workers: Vec<WorkerId> = stored.peers.iter().map(|p| p.worker).collect();
        let placement = &stored.placement;
        let mut record = job.record();
        record.live_checkpoints = None;
        if stats.completed > 0 {
            // This attempt's checkpoints are the newest: their copies are
            // where this attempt ran, and where those workers pushed them.
            record.holders = state_holders(
                &shape.graph,
                placement,
                &workers,
                &spares,
                job.settings.replicas,
            );
            record.holders_parallelism = shape.spec.parallelism;
        }
        record.checkpoints.absorb(stats);
        // An outage the attempt saw is over for it; a restart that meets
        // it again shows its own wait.
        record.checkpoints.outage = None;
        failed_over
    }
}

/// Deploys one attempt and waits for it to end.
pub(super) fn deploy(
    cluster: &Cluster,
    job: &Arc<JobHandle>,
    shape: &Shape,
    placement: &[TaskPlacement],
    peers: &[(WorkerId, String)],
    storage: Option<&CheckpointStorage>,
    restore: Option<RestorePoint>,
) -> AttemptEnd {
    let settings = &job.settings;
    let peers: Vec<Peer> = peers
        .iter()
        .map(|(worker, data_addr)| Peer {
            worker: *worker,
            data_addr: data_addr.clone(),
        })
        .collect();
    let deployed: Vec<WorkerId> = peers.iter().map(|p| p.worker).collect();
    let spares = if settings.replicas > 0 {
        cluster.spares(&deployed)
    } else {
        Vec::new()
    };
    // A job whose graph falls apart into regions (and that checkpoints, so
    // a region can restart alone) is deployed region by region, each with
    // an attempt of its own above the job's.
    let regions = RegionMap::of(&shape.graph);
    let by_region = regions.is_regional() && storage.is_some();
    let attempt = job.stored().newest_attempt() + 1;
    let region_attempts: BTreeMap<u32, u32> = if by_region {
        (0..regions.len()).map(|r| (r, attempt + 1 + r)).collect()
    } else {
        BTreeMap::new()
    };
    // The attempt is recorded before any worker hears of it: a new leader
    // then knows which attempt may be running, and where.
    let recorded =
        super::restore::persist_waiting(job, &super::restart_strategy(settings), |stored| {
            stored.attempt = attempt;
            stored.region_attempts = region_attempts.clone();
            stored.placement = placement.to_vec();
            stored.peers = peers.clone();
            stored.spares = spares.clone();
            stored.running_parallelism = shape.spec.parallelism;
            // A stop an earlier attempt triggered is abandoned with it.
            stored.stop_triggered = None;
        });
    match recorded {
        Ok(()) => {}
        Err(_) if job.leads() && job.is_cancel_requested() => return AttemptEnd::Cancelled,
        Err(_) => return AttemptEnd::Deposed,
    }
    {
        let mut record = job.record();
        record.adopted = false;
        record.last_restore.clear();
        record.started.get_or_insert_with(Instant::now);
    }
    let workers: Vec<WorkerId> = peers.iter().map(|p| p.worker).collect();
    let (reports, reports_rx) = crossbeam_channel::unbounded();
    let mut events = None;
    let mut checkpoints = None;
    let mut driver = None;
    if let Some(storage) = storage {
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        let after = restore.as_ref().map(|r| r.manifest.epoch);
        match Checkpoints::start(
            cluster,
            job,
            shape,
            attempt,
            &workers,
            storage,
            after,
            Vec::new(),
            events_rx,
        ) {
            Ok(started) => driver = Some(started),
            Err(end) => return end,
        }
        events = Some(events_tx);
        checkpoints = Some(DeploymentCheckpoints {
            storage_url: storage.url().to_owned(),
            job_id: job.job_id.clone(),
            restore,
        });
    }
    *job.inbox() = Some(AttemptInbox {
        attempt,
        region_attempts: region_attempts.clone(),
        cancelling: Default::default(),
        workers: workers.clone(),
        events,
        reports: reports.clone(),
        adopting: false,
    });
    let deployment = Deployment {
        deployment_id: uuid::Uuid::new_v4().simple().to_string(),
        job_number: job.number,
        job_id: job.job_id.clone(),
        attempt,
        region: None,
        spec: shape.spec.clone(),
        graph: shape.graph.clone(),
        placement: placement.to_vec(),
        peers,
        checkpoints,
        state_backend: settings.state_backend,
        batch_size: settings.batch_size,
        replicas: settings.replicas,
        spares,
    };
    let mut parts: Vec<PartId> = Vec::new();
    for worker in &workers {
        let mut theirs: Vec<(Option<(u32, u32)>, Deployment)> = Vec::new();
        if by_region {
            for region in regions.regions_on(placement, *worker) {
                theirs.push((
                    Some((region, region_attempts[&region])),
                    Deployment {
                        attempt: region_attempts[&region],
                        region: Some(RegionPart {
                            region,
                            job_attempt: attempt,
                            others_running: false,
                        }),
                        placement: regions.placement_of(placement, region),
                        ..deployment.clone()
                    },
                ));
            }
        } else {
            theirs.push((None, deployment.clone()));
        }
        for (region, deployment) in theirs {
            parts.push((*worker, region));
            if !cluster.send(*worker, ToWorker::Deploy(Box::new(deployment))) {
                let _ = reports.send((
                    (*worker, region),
                    AttemptReport::Ended(DeploymentOutcome::Failed {
                        error: format!("worker {worker} is gone"),
                        kind: weir_protocol::FailureKind::Task,
                    }),
                ));
            }
        }
    }
    drop(reports);
    tracing::info!(job = %job.job_id, attempt, workers = ?workers, regions = region_attempts.len(), "attempt deployed");
    let progress = Progress::starting(&parts);
    finish(
        cluster,
        job,
        shape,
        attempt,
        storage,
        driver,
        progress,
        &reports_rx,
    )
}

/// Carries on with `attempt`, adopted from an earlier leader: its workers
/// run it already and report into `reports` (and `events`, when it
/// checkpoints); `progress` is what they reported so far.
#[allow(clippy::too_many_arguments)]
pub(super) fn adopted(
    cluster: &Cluster,
    job: &Arc<JobHandle>,
    shape: &Shape,
    attempt: u32,
    storage: Option<&CheckpointStorage>,
    events: Option<Receiver<WorkerEvent>>,
    reports: &Receiver<(PartId, AttemptReport)>,
    progress: Progress,
    finished_sources: Vec<SubtaskId>,
) -> AttemptEnd {
    let workers = progress.workers();
    {
        let mut record = job.record();
        record.adopted = true;
        record.started.get_or_insert_with(Instant::now);
    }
    let pointer = job.stored().checkpoint;
    let mut driver = None;
    if let (Some(storage), Some(events)) = (storage, events) {
        if pointer.is_some_and(|p| p.is_final) {
            // Nothing is left to checkpoint: the events are not needed.
            drop(events);
        } else {
            let after = pointer.map(|p| Epoch(p.epoch));
            match Checkpoints::start(
                cluster,
                job,
                shape,
                attempt,
                &workers,
                storage,
                after,
                finished_sources,
                events,
            ) {
                Ok(started) => driver = Some(started),
                Err(end) => {
                    cluster.cancel(&workers, job.number, attempt);
                    *job.inbox() = None;
                    return end;
                }
            }
        }
    }
    if let Some(pointer) = pointer {
        // The previous leader may have stopped between completing the
        // checkpoint and telling the sinks; committing again is harmless.
        if let Some(storage) = storage {
            let catalog = CheckpointCatalog::new(storage.clone(), &job.job_id);
            if let Err(error) = catalog
                .list()
                .and_then(|entries| catalog.repair_marker(&entries, Epoch(pointer.epoch)))
            {
                tracing::warn!(job = %job.job_id, error = &error as &dyn std::error::Error, "could not check the latest checkpoint's commit marker");
            }
        }
        for worker in &workers {
            cluster.send(
                *worker,
                ToWorker::Command {
                    job_number: job.number,
                    attempt,
                    command: ControlCommand::CheckpointCompleted {
                        epoch: Epoch(pointer.epoch),
                    },
                },
            );
        }
    }
    tracing::info!(job = %job.job_id, attempt, workers = ?workers, "attempt adopted: every worker kept it running");
    finish(
        cluster, job, shape, attempt, storage, driver, progress, reports,
    )
}

/// Collects the ends of a running attempt and stops its driver.
#[allow(clippy::too_many_arguments)]
fn finish(
    cluster: &Cluster,
    job: &JobHandle,
    shape: &Shape,
    attempt: u32,
    storage: Option<&CheckpointStorage>,
    driver: Option<Checkpoints>,
    progress: Progress,
    reports: &Receiver<(PartId, AttemptReport)>,
) -> AttemptEnd {
    let full_slots = crate::scheduler::slots_needed(&job.graph);
    let regional = Regional::new(
        job,
        shape,
        attempt,
        storage,
        driver.as_ref().map(Checkpoints::regional),
    );
    let end = collect_ends(
        cluster,
        job,
        attempt,
        progress,
        reports,
        (shape.slots(), full_slots),
        regional,
        storage,
    );
    // Dropping the inbox closes the driver's event channel: it stops.
    *job.inbox() = None;
    let failed_over = driver.and_then(|driver| driver.finish(job, shape));
    match (end, failed_over) {
        // The workers only saw a cancel: the cause is the driver's, and a
        // failover for storage does not count against the restarts.
        (AttemptEnd::Failed(_), Some((cause, FailureKind::StorageUnavailable))) => {
            AttemptEnd::StorageUnavailable(cause)
        }
        (AttemptEnd::Failed(_), Some((cause, FailureKind::Task))) => AttemptEnd::Failed(cause),
        (end, _) => end,
    }
}

/// The holders of the last recorded attempt's checkpoints (`stored`, the
/// job's control-store record), when it ran one and a checkpoint completed.
pub(super) fn recorded_holders(
    stored: &crate::control::StoredJob,
    graph: &weir_protocol::JobGraph,
    replicas: u32,
) -> Option<BTreeMap<u32, Vec<WorkerId>>> {
    stored.checkpoint?;
    if stored.placement.is_empty() {
        return None;
    }
    let workers: Vec<WorkerId> = stored.peers.iter().map(|p| p.worker).collect();
    let spares: Vec<WorkerId> = stored.spares.iter().map(|p| p.worker).collect();
    Some(state_holders(
        graph,
        &stored.placement,
        &workers,
        &spares,
        replicas,
    ))
}

/// For each slot, the workers holding the state its subtasks checkpointed:
/// the worker that ran it, then those it may have pushed replicas to, best
/// first (the [`replica_candidates`] the workers push to).
fn state_holders(
    graph: &weir_protocol::JobGraph,
    placement: &[TaskPlacement],
    workers: &[WorkerId],
    spares: &[WorkerId],
    replicas: u32,
) -> BTreeMap<u32, Vec<WorkerId>> {
    let widest = crate::scheduler::slots_needed(graph);
    let Some(vertex) = graph.vertices.iter().find(|v| v.parallelism == widest) else {
        return BTreeMap::new();
    };
    placement
        .iter()
        .filter(|p| p.vertex == vertex.id.0)
        .map(|p| {
            let mut holders = vec![p.worker];
            holders.extend(replica_candidates(workers, spares, p.worker, replicas));
            (p.subtask, holders)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{CheckpointPointer, StoredJob};
    use weir_protocol::{JobGraph, JobSpec, RunSettings, Vertex, VertexId, VertexKind};

    #[test]
    fn a_new_leader_guesses_the_holders_from_the_recorded_attempt() {
        let spec = JobSpec {
            job: "j".into(),
            params: Vec::new(),
            parallelism: 2,
            max_parallelism: 128,
            output: None,
        };
        let mut stored = StoredJob::new(1, "j".into(), spec, RunSettings::default());
        let mut graph = JobGraph::new("j");
        graph.vertices.push(Vertex {
            id: VertexId(0),
            name: "v".into(),
            uid: None,
            kind: VertexKind::Operator,
            parallelism: 2,
            keyed: false,
        });
        let peer = |id: u32| Peer {
            worker: WorkerId(id),
            data_addr: format!("127.0.0.1:{id}"),
        };
        stored.placement = (0..2)
            .map(|s| TaskPlacement {
                vertex: 0,
                subtask: s,
                worker: WorkerId(s + 1),
            })
            .collect();
        stored.peers = vec![peer(1), peer(2)];
        stored.spares = vec![peer(3)];
        assert_eq!(
            recorded_holders(&stored, &graph, 1),
            None,
            "no checkpoint yet"
        );
        stored.checkpoint = Some(CheckpointPointer {
            epoch: 4,
            is_final: false,
            term: 1,
            completed_at_ms: 0,
        });
        let holders = recorded_holders(&stored, &graph, 1).unwrap();
        // Each slot's own worker, then its replicas: the spare first.
        assert_eq!(holders[&0][..2], [WorkerId(1), WorkerId(3)]);
        assert_eq!(holders[&1][..2], [WorkerId(2), WorkerId(3)]);
    }
}
