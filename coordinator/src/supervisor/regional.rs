//! Regional failover, as Flink's region failover strategy: a job whose
//! graph falls apart into pipelined regions
//! ([`RegionMap`](weir_protocol::regions::RegionMap)) is deployed region
//! by region, and a failure restarts only the regions that lost a task.
//! The other regions keep running, keep their attempt, and keep taking
//! part in checkpoints; the restarted ones resume from the latest complete
//! checkpoint. That is consistent because regions exchange no records:
//! their parts of one checkpoint never depended on each other.
//!
//! A restart goes through three steps, driven by [`collect_ends`]'s loop:
//!
//! 1. **Begin** ([`Regional::restart`]): the checkpoint driver aborts the
//!    checkpoint in flight and triggers none until the regions run again;
//!    the regions' deployments on surviving workers are cancelled.
//! 2. **Redeploy** ([`Regional::step`]), once those confirmed their end
//!    (or the grace passed) and the restart strategy's backoff is over: the
//!    regions' slots on lost workers move to a worker holding their state
//!    (or any with room), the regions get new attempts, and their new
//!    deployments restore the latest checkpoint.
//! 3. **Running** ([`Regional::started`]): once every new part started,
//!    checkpoints go on, and the restart is recorded with its duration.
//!
//! Whatever cannot be done regionally (the final checkpoint was triggered,
//! a stop-with-savepoint runs, no slot is free, storage does not answer, a
//! failure outside the restarting regions while they restart) becomes an
//! error, and the job restarts as a whole.
//!
//! [`collect_ends`]: super::ends::collect_ends

use super::restore::choose_restore;
use crate::cluster::Cluster;
use crate::driver::DriverControl;
use crate::history::{RestartRecord, RestartScope};
use crate::job::{JobHandle, PartId, RegionalRestart, REGIONAL_RESTARTS_KEPT};
use crate::restart::{RestartDecision, RestartTracker};
use crate::scaling::Shape;
use crossbeam_channel::Sender;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_protocol::cluster::{
    Deployment, DeploymentCheckpoints, Peer, RegionPart, SubtaskRestore, TaskPlacement,
};
use weir_protocol::regions::{Failover, RegionMap};
use weir_protocol::wire::ToWorker;
use weir_protocol::{Epoch, SubtaskId, VertexKind, WorkerId};
use weir_state::CheckpointStorage;

/// How long cancelled parts of restarting regions have to confirm their
/// end before the regions are redeployed anyway (their channels and files
/// are fenced by their attempt).
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// How long the checkpoint driver has to agree to hold its checkpoints.
const DRIVER_PATIENCE: Duration = Duration::from_secs(5);

/// The workers the checkpoint driver's commands go to; a regional restart
/// adds the workers its lost slots moved to.
pub(super) type CommandTargets =
    Arc<Mutex<Vec<(WorkerId, tokio::sync::mpsc::UnboundedSender<ToWorker>)>>>;

/// The regions being restarted, before their new deployments go out.
#[derive(Debug)]
struct Restarting {
    regions: BTreeSet<u32>,
    cause: String,
    /// Their cancelled parts on surviving workers, until each confirms.
    waiting: BTreeSet<PartId>,
    cancelled_at: Instant,
    /// When the restart strategy's backoff ends.
    deploy_at: Instant,
    detected: Instant,
    detected_at_ms: u64,
}

/// Where restarting regions run after their lost slots moved.
struct Moved {
    /// The job's placement, lost slots on their new workers.
    placement: Vec<TaskPlacement>,
    /// The job's workers with their new ones.
    peers: Vec<Peer>,
    /// The workers a slot was reserved on (given back if the restart
    /// does not happen).
    taken: Vec<WorkerId>,
}

/// Restarted regions whose new parts have not all started.
#[derive(Debug)]
struct Recovering {
    parts: BTreeSet<PartId>,
    detected: Instant,
    /// Its entry in the job record's regional restarts.
    record: RegionalRestart,
    /// How its started parts' subtasks were restored.
    restored: Vec<SubtaskRestore>,
}

/// The regional failover of one running attempt.
pub(super) struct Regional {
    map: RegionMap,
    shape: Shape,
    job_attempt: u32,
    storage: CheckpointStorage,
    driver: Sender<DriverControl>,
    targets: CommandTargets,
    restarts: RestartTracker,
    /// When each region last (re)started: one that ran a healthy while
    /// forgets its earlier failures.
    started: BTreeMap<u32, Instant>,
    restarting: Option<Restarting>,
    recovering: Vec<Recovering>,
    /// The sources of the regions restarted since checkpoints were held.
    held_sources: Vec<SubtaskId>,
}

impl Regional {
    /// Regional failover for `job_attempt` of `job` running `shape`, when
    /// its graph has more than one region and it checkpoints.
    pub(super) fn new(
        job: &JobHandle,
        shape: &Shape,
        job_attempt: u32,
        storage: Option<&CheckpointStorage>,
        driver: Option<(Sender<DriverControl>, CommandTargets)>,
    ) -> Option<Self> {
        let map = RegionMap::of(&shape.graph);
        let (storage, (driver, targets)) = (storage?, driver?);
        if !map.is_regional() {
            return None;
        }
        let now = Instant::now();
        Some(Self {
            started: (0..map.len()).map(|r| (r, now)).collect(),
            map,
            shape: shape.clone(),
            job_attempt,
            storage: storage.clone(),
            driver,
            targets,
            restarts: RestartTracker::new(super::restart_strategy(&job.settings)),
            restarting: None,
            recovering: Vec::new(),
            held_sources: Vec::new(),
        })
    }

    /// Whether regions are between their failure and their redeployment.
    pub(super) fn is_restarting(&self) -> bool {
        self.restarting.is_some()
    }

    /// When [`step`](Self::step) has something to do.
    pub(super) fn next_step(&self) -> Option<Instant> {
        let restarting = self.restarting.as_ref()?;
        let confirmed = if restarting.waiting.is_empty() {
            restarting.cancelled_at
        } else {
            restarting.cancelled_at + CANCEL_GRACE
        };
        Some(confirmed.max(restarting.deploy_at))
    }

    /// `failed` (parts taken out of `pending`) failed with `cause`:
    /// restarts the regions they ran, if the others can go on. False when
    /// the job must restart as a whole.
    pub(super) fn restart(
        &mut self,
        cluster: &Cluster,
        job: &JobHandle,
        failed: &[PartId],
        cause: &str,
        pending: &mut BTreeSet<PartId>,
        starting: &mut BTreeSet<PartId>,
    ) -> bool {
        let placement = job.stored().placement;
        let mut regions: BTreeSet<u32> = BTreeSet::new();
        for (worker, region) in failed {
            match region {
                Some((region, _)) => {
                    regions.insert(*region);
                }
                None => regions.extend(self.map.regions_on(&placement, *worker)),
            }
        }
        if let Some(restarting) = &self.restarting {
            regions.extend(restarting.regions.iter().copied());
        }
        let Failover::Regions(regions) = self.map.failover(&regions) else {
            return false;
        };
        let now = Instant::now();
        let ran_for = regions
            .iter()
            .filter_map(|r| self.started.get(r))
            .map(|since| now.saturating_duration_since(*since))
            .min()
            .unwrap_or_default();
        let wait = match self.restarts.on_failure(ran_for) {
            RestartDecision::GiveUp { .. } => return false,
            RestartDecision::RestartAfter(wait) => wait,
        };
        if !self.hold_checkpoints(&regions, cause) {
            return false;
        }
        // Their parts on surviving workers stop; those on lost workers are
        // gone already. From now on their old attempt's events and starts
        // are dropped (its ends still count).
        if let Some(inbox) = job.inbox().as_mut() {
            inbox.cancelling.extend(regions.iter().copied());
        }
        let doomed: Vec<PartId> = pending
            .iter()
            .filter(|(_, r)| r.is_some_and(|(r, _)| regions.contains(&r)))
            .copied()
            .collect();
        let mut waiting = BTreeSet::new();
        for part in doomed {
            pending.remove(&part);
            starting.remove(&part);
            let (worker, Some((region, attempt))) = part else {
                continue;
            };
            cluster.cancel_region(worker, job.number, attempt, region);
            waiting.insert(part);
        }
        self.recovering.retain(|r| {
            !r.parts
                .iter()
                .any(|(_, p)| p.is_some_and(|(p, _)| regions.contains(&p)))
        });
        let detected = job.record().recovering_since.unwrap_or(now);
        job.record().note_failure(detected);
        tracing::warn!(job = %job.job_id, attempt = self.job_attempt, ?regions, %cause, backoff = ?wait, "restarting only the regions that lost a task; the others keep running");
        match &mut self.restarting {
            Some(restarting) => {
                restarting.regions = regions;
                restarting.waiting.extend(waiting);
                restarting.deploy_at = restarting.deploy_at.max(detected + wait);
            }
            None => {
                self.restarting = Some(Restarting {
                    regions,
                    cause: cause.to_owned(),
                    waiting,
                    cancelled_at: now,
                    deploy_at: detected + wait,
                    detected,
                    detected_at_ms: weir_protocol::time::now_ms(),
                })
            }
        }
        true
    }

    /// Asks the checkpoint driver to abort the checkpoint in flight and
    /// hold the next until the regions run; false when it refuses.
    fn hold_checkpoints(&self, regions: &BTreeSet<u32>, cause: &str) -> bool {
        let sources = self.sources_of(regions);
        let (reply, answer) = crossbeam_channel::bounded(1);
        let asked = self.driver.send(DriverControl::RegionsRestarting {
            sources,
            reason: format!("regions {regions:?} restart: {cause}"),
            reply,
        });
        // A driver stuck writing to storage that does not answer leaves the
        // restart to the whole job.
        asked.is_ok() && answer.recv_timeout(DRIVER_PATIENCE).unwrap_or(false)
    }

    /// A part that is no longer pending ended: a cancelled part of a
    /// restarting region confirming (a worker's loss confirms all of its).
    pub(super) fn ended(&mut self, (worker, region): PartId) {
        if let Some(restarting) = &mut self.restarting {
            restarting
                .waiting
                .retain(|(w, r)| !(*w == worker && (region.is_none() || *r == region)));
        }
    }

    /// The restarting regions' sources.
    fn sources_of(&self, regions: &BTreeSet<u32>) -> Vec<SubtaskId> {
        regions
            .iter()
            .flat_map(|r| self.map.tasks(*r).iter().copied())
            .filter(|(vertex, _)| {
                self.shape
                    .graph
                    .vertices
                    .iter()
                    .any(|v| v.id == *vertex && v.kind == VertexKind::Source)
            })
            .map(|(vertex, index)| SubtaskId { vertex, index })
            .collect()
    }

    /// Redeploys the restarting regions once their old parts confirmed
    /// their end and the backoff is over. An error: they cannot restart on
    /// their own.
    pub(super) fn step(
        &mut self,
        cluster: &Cluster,
        job: &JobHandle,
        pending: &mut BTreeSet<PartId>,
        starting: &mut BTreeSet<PartId>,
    ) -> Result<(), String> {
        let ready = self.next_step().is_some_and(|at| Instant::now() >= at);
        if !ready {
            return Ok(());
        }
        let restarting = self.restarting.take().expect("ready above");
        let record = self.redeploy(cluster, job, &restarting, pending, starting)?;
        self.held_sources
            .extend(self.sources_of(&restarting.regions));
        let parts: BTreeSet<PartId> = pending
            .iter()
            .filter(|(_, r)| r.is_some_and(|(r, _)| restarting.regions.contains(&r)))
            .copied()
            .collect();
        let now = Instant::now();
        for region in &restarting.regions {
            self.started.insert(*region, now);
        }
        job.record().note_restart(RestartRecord {
            detected_at_ms: record.detected_at_ms,
            cause: record.cause.clone(),
            scope: RestartScope::Regional,
            attempt: self.job_attempt,
            regions: record.regions.clone(),
            recovery_ms: None,
            restored: Vec::new(),
            superseded: false,
        });
        self.recovering.push(Recovering {
            parts,
            detected: restarting.detected,
            record,
            restored: Vec::new(),
        });
        Ok(())
    }

    fn redeploy(
        &mut self,
        cluster: &Cluster,
        job: &JobHandle,
        restarting: &Restarting,
        pending: &mut BTreeSet<PartId>,
        starting: &mut BTreeSet<PartId>,
    ) -> Result<RegionalRestart, String> {
        let regions = &restarting.regions;
        let stored = job.stored();
        let floor = stored.floor.map(Epoch);
        let point = choose_restore(job, &self.storage, floor, false).map_err(|error| {
            format!(
                "choosing the checkpoint regions {regions:?} restore: {}",
                crate::error::chain(&error)
            )
        })?;
        if point.is_none() && (stored.initial_restore.is_some() || stored.checkpoint.is_some()) {
            return Err(format!(
                "regions {regions:?} found no checkpoint to restore, and cannot start over alone"
            ));
        }
        let Moved {
            placement,
            peers,
            taken,
        } = self.replace_lost(cluster, job, regions, &stored)?;
        let give_back = |error: String| {
            cluster.give_back(&taken);
            error
        };
        let base = stored.newest_attempt();
        let attempts: BTreeMap<u32, u32> = regions
            .iter()
            .enumerate()
            .map(|(k, region)| (*region, base + 1 + k as u32))
            .collect();
        job.persist(|stored| {
            stored.placement = placement.clone();
            stored.peers = peers.clone();
            stored.region_attempts.extend(&attempts);
        })
        .map_err(|error| {
            give_back(format!(
                "recording the restart of regions {regions:?}: {}",
                crate::error::chain(&error)
            ))
        })?;
        // The restore figures shown are those of the restarted regions.
        job.record().last_restore.clear();
        if let Some(inbox) = job.inbox().as_mut() {
            inbox.region_attempts.extend(&attempts);
            for region in regions {
                inbox.cancelling.remove(region);
            }
            for peer in &peers {
                if !inbox.workers.contains(&peer.worker) {
                    inbox.workers.push(peer.worker);
                }
            }
        }
        {
            let mut targets = crate::cluster::lock(&self.targets);
            for peer in &peers {
                if !targets.iter().any(|(w, _)| *w == peer.worker) {
                    if let Some(outbox) = cluster.outbox(peer.worker) {
                        targets.push((peer.worker, outbox));
                    }
                }
            }
        }
        let settings = &job.settings;
        let deployment_id = uuid::Uuid::new_v4().simple().to_string();
        for region in regions {
            let part_placement = self.map.placement_of(&placement, *region);
            let workers: BTreeSet<WorkerId> = part_placement.iter().map(|p| p.worker).collect();
            for worker in workers {
                let deployment = Deployment {
                    deployment_id: deployment_id.clone(),
                    job_number: job.number,
                    job_id: job.job_id.clone(),
                    attempt: attempts[region],
                    region: Some(RegionPart {
                        region: *region,
                        job_attempt: self.job_attempt,
                        others_running: true,
                    }),
                    spec: self.shape.spec.clone(),
                    graph: self.shape.graph.clone(),
                    placement: part_placement.clone(),
                    peers: peers.clone(),
                    checkpoints: Some(DeploymentCheckpoints {
                        storage_url: self.storage.url().to_owned(),
                        job_id: job.job_id.clone(),
                        restore: point.clone(),
                    }),
                    state_backend: settings.state_backend,
                    batch_size: settings.batch_size,
                    replicas: settings.replicas,
                    spares: stored.spares.clone(),
                };
                if !cluster.send(worker, ToWorker::Deploy(Box::new(deployment))) {
                    return Err(format!(
                        "{worker} left before region {region} was redeployed on it"
                    ));
                }
                let part = (worker, Some((*region, attempts[region])));
                pending.insert(part);
                starting.insert(part);
            }
        }
        let restored_from = point.as_ref().map(|p| p.manifest.epoch.0);
        tracing::info!(job = %job.job_id, attempt = self.job_attempt, ?regions, ?attempts, ?restored_from, "regions redeployed");
        Ok(RegionalRestart {
            regions: regions.iter().copied().collect(),
            attempts,
            cause: restarting.cause.clone(),
            restored_from,
            detected_at_ms: restarting.detected_at_ms,
            recovery_ms: None,
        })
    }

    /// The placement with the restarting regions' tasks on lost workers
    /// moved (a whole slot at a time: slot `i` runs subtask `i` of every
    /// operator) to a worker holding the slot's state with a free slot, or
    /// any with one; and the job's peers with their new workers.
    fn replace_lost(
        &self,
        cluster: &Cluster,
        job: &JobHandle,
        regions: &BTreeSet<u32>,
        stored: &crate::control::StoredJob,
    ) -> Result<Moved, String> {
        let registered = cluster.free_slots();
        let mut placement = stored.placement.clone();
        let mut lost_slots = BTreeSet::new();
        for task in &placement {
            if registered.contains_key(&task.worker) {
                continue;
            }
            match self.map.region_of(task.vertex, task.subtask) {
                Some(region) if regions.contains(&region) => {
                    lost_slots.insert(task.subtask);
                }
                _ => {
                    return Err(format!(
                        "{} left, and not all of its regions restart",
                        task.worker
                    ))
                }
            }
        }
        let holders = {
            let record = job.record();
            if record.holders_parallelism == self.shape.spec.parallelism {
                record.holders.clone()
            } else {
                BTreeMap::new()
            }
        };
        let mut peers = stored.peers.clone();
        let mut taken = Vec::new();
        for slot in lost_slots {
            let preferred = holders.get(&slot).map(Vec::as_slice).unwrap_or(&[]);
            let Some((worker, data_addr)) = cluster.take_slot(preferred) else {
                cluster.give_back(&taken);
                return Err(format!(
                    "no free slot for slot {slot} of the restarting regions"
                ));
            };
            taken.push(worker);
            for task in placement.iter_mut() {
                if task.subtask == slot && !registered.contains_key(&task.worker) {
                    task.worker = worker;
                }
            }
            if !peers.iter().any(|p| p.worker == worker) {
                peers.push(Peer { worker, data_addr });
            }
            tracing::info!(job = %job.job_id, slot, %worker, "a lost slot of the restarting regions moves");
        }
        peers.retain(|p| {
            registered.contains_key(&p.worker) || placement.iter().any(|t| t.worker == p.worker)
        });
        Ok(Moved {
            placement,
            peers,
            taken,
        })
    }

    /// A part started: once every new part of a restart did, checkpoints
    /// go on and the restart is recorded.
    pub(super) fn started(&mut self, job: &JobHandle, part: PartId, restored: &[SubtaskRestore]) {
        let Some(at) = self.recovering.iter().position(|r| r.parts.contains(&part)) else {
            return;
        };
        let recovering = &mut self.recovering[at];
        recovering.parts.remove(&part);
        recovering.restored.extend_from_slice(restored);
        if !recovering.parts.is_empty() {
            return;
        }
        let mut done = self.recovering.remove(at);
        let took = done.detected.elapsed().as_secs_f64() * 1000.0;
        done.record.recovery_ms = Some(took);
        tracing::info!(job = %job.job_id, attempt = self.job_attempt, regions = ?done.record.regions, recovery_ms = took, "restarted regions run again");
        {
            let mut record = job.record();
            record.note_regional_running(&done.record, took, done.restored);
            record.note_running();
            record.regional_restarts.push_back(done.record);
            while record.regional_restarts.len() > REGIONAL_RESTARTS_KEPT {
                record.regional_restarts.pop_front();
            }
        }
        if self.restarting.is_none() && self.recovering.is_empty() {
            let sources = std::mem::take(&mut self.held_sources);
            let _ = self.driver.send(DriverControl::RegionsRunning { sources });
        }
    }

    /// The attempt stops as a whole: nothing more to restart.
    pub(super) fn abandon(&mut self) {
        self.restarting = None;
        self.recovering.clear();
    }
}
