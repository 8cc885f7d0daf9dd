//! The deployments running on this worker, and what it tells a (new)
//! leader about them when it registers: which attempt runs, whether every
//! local subtask started, which sources finished, whether the final
//! checkpoint was triggered, and how the parts that ended since the last
//! registration ended. A leader adopts an attempt from these reports
//! instead of restarting it.
//!
//! A job whose graph falls apart into pipelined regions runs one
//! deployment per region here, each with its own attempt: a regional
//! failover replaces one without touching the others. The job attempt's
//! commands reach every region of it.

use crate::cancel::CancelToken;
use crate::checkpoint::replication::Replication;
use crossbeam_channel::Sender;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use weir_protocol::cluster::{
    replica_candidates, DeploymentOutcome, DeploymentReport, Peer, RegionPart, SubtaskRestore,
};
use weir_protocol::WorkerId;
use weir_protocol::{ControlCommand, SubtaskId};

/// Where a deployment's replicas go: the service pushing them, and what
/// its candidates are computed from (spares that join are added).
pub(crate) struct ReplicaTargets {
    pub(crate) replication: Arc<Replication>,
    pub(crate) me: WorkerId,
    pub(crate) deployed: Vec<WorkerId>,
    pub(crate) spares: Vec<WorkerId>,
    pub(crate) replicas: u32,
}

/// A deployment running here.
pub(crate) struct Running {
    pub(crate) attempt: u32,
    /// Its region, when the job is deployed region by region.
    pub(crate) region: Option<RegionPart>,
    /// Where its replicas go, when it checkpoints.
    pub(crate) replicas: Option<ReplicaTargets>,
    pub(crate) commands: Sender<ControlCommand>,
    pub(crate) cancel: CancelToken,
    started: bool,
    restored: Vec<SubtaskRestore>,
    finished_sources: Vec<SubtaskId>,
    final_triggered: bool,
}

impl Running {
    pub(crate) fn new(
        attempt: u32,
        region: Option<RegionPart>,
        commands: Sender<ControlCommand>,
        cancel: CancelToken,
    ) -> Self {
        Self {
            attempt,
            region,
            replicas: None,
            commands,
            cancel,
            started: false,
            restored: Vec::new(),
            finished_sources: Vec::new(),
            final_triggered: false,
        }
    }

    /// The job attempt whose commands it follows.
    fn command_attempt(&self) -> u32 {
        self.region.map_or(self.attempt, |r| r.job_attempt)
    }
}

/// A deployment's key here: its job and region.
type Key = (u32, Option<u32>);

#[derive(Default)]
struct Inner {
    by_job: HashMap<Key, Running>,
    /// Parts that ended since the last registration: (job, attempt,
    /// region, outcome).
    ended: Vec<(u32, u32, Option<RegionPart>, DeploymentOutcome)>,
}

/// The deployments running here, by job number and region; waiters learn
/// when one ends.
#[derive(Default)]
pub(crate) struct Deployments {
    inner: Mutex<Inner>,
    ended: Condvar,
}

impl Deployments {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tracking `running` for `job`, cancelling the deployment of
    /// its region it replaces, and any of an older job attempt.
    pub(crate) fn insert(&self, job: u32, running: Running) {
        let mut inner = self.inner();
        let newest = running.command_attempt();
        for ((number, _), older) in inner.by_job.iter() {
            if *number == job && older.command_attempt() < newest {
                older.cancel.cancel();
            }
        }
        let key = (job, running.region.map(|r| r.region));
        if let Some(previous) = inner.by_job.insert(key, running) {
            previous.cancel.cancel();
        }
    }

    /// Runs `act` on the deployment of `job` that is `attempt`.
    pub(crate) fn with<T>(
        &self,
        job: u32,
        attempt: u32,
        act: impl FnOnce(&mut Running) -> T,
    ) -> Option<T> {
        self.inner()
            .by_job
            .iter_mut()
            .find(|((number, _), r)| *number == job && r.attempt == attempt)
            .map(|(_, r)| act(r))
    }

    /// Every local subtask of `attempt` of `job` runs.
    pub(crate) fn started(&self, job: u32, attempt: u32, restored: &[SubtaskRestore]) {
        self.with(job, attempt, |r| {
            r.started = true;
            r.restored = restored.to_vec();
        });
    }

    /// A source of `attempt` of `job` emitted all of its input.
    pub(crate) fn source_finished(&self, job: u32, attempt: u32, task: SubtaskId) {
        self.with(job, attempt, |r| r.finished_sources.push(task));
    }

    /// The coordinator sent `command` to job attempt `attempt` of `job`:
    /// passes it on to every deployment of it (one per region). False when
    /// that attempt does not run here.
    pub(crate) fn command(&self, job: u32, attempt: u32, command: ControlCommand) -> bool {
        let mut inner = self.inner();
        let mut delivered = false;
        for ((number, _), r) in inner.by_job.iter_mut() {
            if *number != job || r.command_attempt() != attempt {
                continue;
            }
            if matches!(
                command,
                ControlCommand::TriggerCheckpoint { is_final: true, .. }
            ) {
                r.final_triggered = true;
            }
            let _ = r.commands.send(command.clone());
            delivered = true;
        }
        delivered
    }

    /// Forgets `attempt` of job `job`, which ended with `outcome` (unless a
    /// newer attempt replaced it), and keeps the outcome for the next
    /// registration.
    pub(crate) fn ended(
        &self,
        job: u32,
        attempt: u32,
        region: Option<RegionPart>,
        outcome: DeploymentOutcome,
    ) {
        let mut inner = self.inner();
        inner
            .by_job
            .retain(|(number, _), r| !(*number == job && r.attempt == attempt));
        inner.ended.push((job, attempt, region, outcome));
        self.ended.notify_all();
    }

    /// What to tell a leader when registering: every running deployment
    /// and every part that ended since the last registration.
    pub(crate) fn reports(&self) -> Vec<DeploymentReport> {
        let inner = self.inner();
        let mut reports: Vec<DeploymentReport> = inner
            .by_job
            .iter()
            .map(|((job, _), r)| DeploymentReport {
                job_number: *job,
                attempt: r.attempt,
                region: r.region,
                started: r.started,
                restored: r.restored.clone(),
                finished_sources: r.finished_sources.clone(),
                final_triggered: r.final_triggered,
                ended: None,
            })
            .collect();
        for (job, attempt, region, outcome) in &inner.ended {
            reports.push(DeploymentReport {
                job_number: *job,
                attempt: *attempt,
                region: *region,
                started: true,
                restored: Vec::new(),
                finished_sources: Vec::new(),
                final_triggered: false,
                ended: Some(outcome.clone()),
            });
        }
        reports
    }

    /// A leader accepted `reports`: the ends among them need not be told again.
    pub(crate) fn reported(&self, reports: &[DeploymentReport]) {
        self.inner().ended.retain(|(job, attempt, _, _)| {
            !reports
                .iter()
                .any(|r| r.ended.is_some() && r.job_number == *job && r.attempt == *attempt)
        });
    }

    /// Whether any deployment runs here.
    pub(crate) fn is_empty(&self) -> bool {
        self.inner().by_job.is_empty()
    }

    /// Spare `spare` joined job attempt `attempt` of `job`: the deployments
    /// of it push replicas to it from now on when it is among their first
    /// candidates. Returns it if any does (it must be dialed).
    pub(crate) fn spare_joined(&self, job: u32, attempt: u32, spare: &Peer) -> Option<Peer> {
        let mut inner = self.inner();
        let mut dial = false;
        for ((number, _), r) in inner.by_job.iter_mut() {
            if *number != job || r.command_attempt() != attempt {
                continue;
            }
            let Some(targets) = r.replicas.as_mut() else {
                continue;
            };
            if !targets.spares.contains(&spare.worker) {
                targets.spares.push(spare.worker);
            }
            let candidates = replica_candidates(
                &targets.deployed,
                &targets.spares,
                targets.me,
                targets.replicas,
            );
            dial |= candidates
                .iter()
                .take(targets.replicas as usize)
                .any(|w| *w == spare.worker);
            targets
                .replication
                .set_candidates(candidates.into_iter().map(|w| w.0).collect());
        }
        dial.then(|| spare.clone())
    }

    /// Cancels `attempt` of `job`: the deployment of `region` that is
    /// that attempt, or (`None`) every deployment of it, or of the job
    /// attempt it names. False when none runs here.
    pub(crate) fn cancel(&self, job: u32, attempt: u32, region: Option<u32>) -> bool {
        let inner = self.inner();
        let mut found = false;
        for ((number, at), r) in inner.by_job.iter() {
            let matches = match region {
                Some(region) => *at == Some(region) && r.attempt == attempt,
                None => r.attempt == attempt || r.command_attempt() == attempt,
            };
            if *number == job && matches {
                r.cancel.cancel();
                found = true;
            }
        }
        found
    }

    /// Cancels every deployment and waits (at most `patience`) for them to end.
    pub(crate) fn stop_all(&self, patience: Duration) {
        let mut inner = self.inner();
        for deployment in inner.by_job.values() {
            deployment.cancel.cancel();
        }
        let deadline = Instant::now() + patience;
        while !inner.by_job.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            inner = self
                .ended
                .wait_timeout(inner, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
