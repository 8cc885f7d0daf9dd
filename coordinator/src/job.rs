//! A job on the coordinator: its spec, lifecycle, the running attempt's
//! inbox for the workers' reports, and the status the API reports.

use crate::cluster::lock;
use crate::control::{ControlStore, LeaseGuard, StoredJob};
use crate::detector::Loss;
use crate::driver::CheckpointStats;
use crate::error::CoordinatorError;
use crate::history::{CheckpointRecord, Outage, RestartRecord, RestartScope, StorageWait};
use crate::lifecycle::{JobLifecycle, Transition};
use crate::savepoint::SavepointRequest;
use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;
use weir_protocol::cluster::{
    DeploymentOutcome, JobSpec, RestoreTier, RunSettings, SubtaskRestore, TaskPlacement,
};
use weir_protocol::{JobGraph, JobState, WorkerEvent, WorkerId};

/// Who a report is about: a worker, and the region of its deployment with
/// the attempt it runs (`None`: everything it runs of the attempt: a
/// whole-job deployment, or the worker's loss). A region's new attempt is
/// another part than its old one on the same worker.
pub type PartId = (WorkerId, Option<(u32, u32)>);

/// Where the running attempt of a job takes its workers' reports.
pub struct AttemptInbox {
    /// The attempt.
    pub attempt: u32,
    /// For a job deployed region by region: the attempt each region runs
    /// (a region restarted on its own runs a newer one).
    pub region_attempts: BTreeMap<u32, u32>,
    /// Regions whose attempt is being cancelled for a regional restart:
    /// their ends still count, their events and starts no longer do.
    pub cancelling: std::collections::BTreeSet<u32>,
    /// The workers it runs on.
    pub workers: Vec<WorkerId>,
    /// Checkpoint events, to the checkpoint driver (absent without checkpoints).
    pub events: Option<Sender<WorkerEvent>>,
    /// The workers' reports: their parts started, or ended.
    pub reports: Sender<(PartId, AttemptReport)>,
    /// Set while a new leader waits for the attempt's workers to report
    /// their deployments (adoption after a failover).
    pub adopting: bool,
}

impl AttemptInbox {
    /// Whether a message of `attempt` from a deployment of `region` is of
    /// the running attempt (and not of a region's earlier one).
    pub fn accepts(&self, attempt: u32, region: Option<u32>) -> bool {
        match region {
            None => attempt == self.attempt,
            Some(region) => self.region_attempts.get(&region) == Some(&attempt),
        }
    }

    /// Whether a checkpoint event or start of `attempt` from a deployment
    /// of `region` counts: of the running attempt, and not of a region
    /// being cancelled (a restarted source must not be taken for finished
    /// by its old attempt's word).
    pub fn accepts_event(&self, attempt: u32, region: Option<u32>) -> bool {
        self.accepts(attempt, region) && region.is_none_or(|r| !self.cancelling.contains(&r))
    }
}

/// What a worker reports about its part of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptReport {
    /// All its subtasks run; restored ones say which tier served them.
    Started(Vec<SubtaskRestore>),
    /// Its part ended.
    Ended(DeploymentOutcome),
    /// It registered with a new leader, reporting its deployment of this
    /// attempt (`None`: it runs no deployment of it).
    Reattached(Option<weir_protocol::cluster::DeploymentReport>),
    /// A worker registered while the attempt runs: it may become a spare.
    Joined,
    /// A spare finished copying its share of checkpoint `epoch`.
    CaughtUp(CatchUpOutcome),
}

/// How a spare's catch-up ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUpOutcome {
    /// The checkpoint it copied files of.
    pub epoch: u64,
    /// Bytes copied (files it held already are not counted).
    pub copied_bytes: u64,
    /// How long it took, in milliseconds.
    pub took_ms: u64,
    /// Why it stopped short, if it did.
    pub failure: Option<String>,
}

/// The last loss of a worker that ran the job, and the recovery after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossReport {
    /// The worker.
    pub worker: WorkerId,
    /// Why it was declared lost.
    pub cause: String,
    /// How long it had been silent when declared lost (the heartbeat
    /// timeout path), or since its last heartbeat when its connection
    /// dropped (the fast path).
    pub silent_ms: f64,
    /// When the loss was detected (ms since the Unix epoch).
    pub detected_at_ms: u64,
    /// When every subtask ran again (ms since the Unix epoch).
    pub recovered_at_ms: Option<u64>,
    /// From detection to every subtask running again.
    pub recovery_ms: Option<f64>,
}

/// One regional failover: some regions restarted, the others kept running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionalRestart {
    /// The regions restarted.
    pub regions: Vec<u32>,
    /// Their new attempts, by region.
    pub attempts: BTreeMap<u32, u32>,
    /// What failed.
    pub cause: String,
    /// The checkpoint they restored (`None`: they started over).
    pub restored_from: Option<u64>,
    /// When the failure was detected (ms since the Unix epoch).
    pub detected_at_ms: u64,
    /// From detection to every subtask of the regions running again.
    pub recovery_ms: Option<f64>,
}

/// A spare that joined the running attempt catching up on a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpareCatchUp {
    /// The spare.
    pub worker: WorkerId,
    /// The checkpoint whose files it copies.
    pub epoch: u64,
    /// Files of its share.
    pub files: u32,
    /// Their bytes.
    pub bytes: u64,
    /// Bytes it copied (those it held already are not), once done.
    pub copied_bytes: Option<u64>,
    /// How long it took, once done.
    pub took_ms: Option<u64>,
    /// Why it stopped short, if it did.
    pub failure: Option<String>,
}

/// How many catch-ups a job's status keeps.
pub const SPARE_CATCH_UPS_KEPT: usize = 16;

/// How many regional failovers a job's status keeps.
pub const REGIONAL_RESTARTS_KEPT: usize = 16;

/// What the API reports about a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The coordinator's number for it.
    pub number: u32,
    /// Its id (checkpoint directory name).
    pub job_id: String,
    /// The registered job it runs.
    pub job: String,
    /// Current lifecycle state.
    pub state: JobState,
    /// The current (or last) attempt; 0 before the first deployment.
    pub attempt: u32,
    /// Parallelism asked for.
    pub parallelism: u32,
    /// Parallelism of the current attempt: lower than asked while scaled
    /// down for lack of slots.
    pub running_parallelism: u32,
    /// Attempts that failed and were restarted.
    pub restarts: u32,
    /// The last failure, with its causes.
    pub failure: Option<String>,
    /// Records the sources produced (last attempt, known once it ends).
    pub events_in: u64,
    /// Records the sinks received (last attempt, known once it ends).
    pub records_out: u64,
    /// The checkpoint the first attempt restored.
    pub restored_from: Option<u64>,
    /// Checkpoints completed over all attempts.
    pub checkpoints_completed: u32,
    /// Checkpoints aborted over all attempts.
    pub checkpoints_aborted: u32,
    /// Duration of each completed checkpoint of the history (the newest
    /// [`HISTORY_LEN`](crate::history::HISTORY_LEN) checkpoints), in
    /// milliseconds.
    pub checkpoint_durations_ms: Vec<f64>,
    /// Size of each completed checkpoint of the history, in bytes.
    pub checkpoint_sizes: Vec<u64>,
    /// Bytes each completed checkpoint of the history added over the one
    /// before it.
    pub checkpoint_incremental_sizes: Vec<u64>,
    /// Where each subtask runs.
    pub placement: Vec<TaskPlacement>,
    /// The spare workers (outside the attempt, with a free slot when it
    /// deployed) its workers push replicas to first.
    #[serde(default)]
    pub spares: Vec<WorkerId>,
    /// How many pipelined regions its graph falls apart into
    /// ([`pipelined_regions`](weir_protocol::regions::pipelined_regions)).
    /// With more than one, a failure restarts only the regions that lost a
    /// task.
    #[serde(default)]
    pub regions: u32,
    /// The attempt each region runs, by region (empty for a job of one
    /// region): a region restarted on its own runs a newer one than the
    /// job's `attempt`, the others keep theirs.
    #[serde(default)]
    pub region_attempts: BTreeMap<u32, u32>,
    /// Regional failovers under the current leader, oldest first (the
    /// last few).
    #[serde(default)]
    pub regional_restarts: Vec<RegionalRestart>,
    /// Spares that joined the running attempt, catching up on its latest
    /// checkpoint (the last few, oldest first).
    #[serde(default)]
    pub spare_catch_ups: Vec<SpareCatchUp>,
    /// The last loss of one of its workers.
    pub last_loss: Option<LossReport>,
    /// From the last failure's detection to every subtask running again.
    pub last_recovery_ms: Option<f64>,
    /// Which tier (local copy, peer replica, object store) served each
    /// restored subtask of the current attempt.
    pub restored: Vec<SubtaskRestore>,
    /// Every state entered under the current leader, with its time.
    pub transitions: Vec<Transition>,
    /// The latest completed checkpoint (the control store's pointer).
    pub latest_checkpoint: Option<u64>,
    /// Whether the current attempt was adopted by a new leader after a
    /// failover (instead of being restarted).
    pub adopted: bool,
    /// The term of the leader reporting this status.
    pub leader_term: u64,
    /// The location of the last savepoint taken in this coordinator's time.
    #[serde(default)]
    pub last_savepoint: Option<String>,
    /// What the user should know about how the job restored (state matched
    /// by derived names, dropped, or operators starting empty).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Seconds from the first deployment to the end (or to now).
    pub elapsed_s: f64,
    /// Set while the job waits for checkpoint storage: its checkpoints
    /// fail on storage, or a restart waits to choose or read its checkpoint.
    #[serde(default)]
    pub storage_wait: Option<StorageWait>,
    /// Checkpoints failed in a row (a completed one ends the run).
    #[serde(default)]
    pub failed_checkpoints_in_a_row: u32,
    /// Failed checkpoints in a row tolerated before the job fails over.
    #[serde(default)]
    pub tolerable_failed_checkpoints: u32,
    /// The newest checkpoints in this coordinator's time, oldest first:
    /// completed and aborted, with the cause of each abort.
    #[serde(default)]
    pub checkpoint_history: Vec<CheckpointRecord>,
}

/// A job known to the coordinator.
pub struct JobHandle {
    /// Its number (in every exchange frame of its deployments).
    pub number: u32,
    /// Its id.
    pub job_id: String,
    /// What to build.
    pub spec: JobSpec,
    /// How to run it.
    pub settings: RunSettings,
    /// Its validated graph.
    pub graph: JobGraph,
    /// Set when a client asked to cancel.
    pub cancel_requested: AtomicBool,
    /// The running attempt's inbox.
    pub inbox: Mutex<Option<AttemptInbox>>,
    /// Where savepoint requests go while an attempt's checkpoint driver runs.
    pub savepoints: Mutex<Option<Sender<SavepointRequest>>>,
    /// Lifecycle and report.
    pub record: Mutex<JobRecord>,
    /// Notified on every change of lifecycle state.
    pub state_changed: Condvar,
    /// `state_changed` for async waiters (the API's long-polled status).
    state_changes: tokio::sync::Notify,
    /// Wakes the supervisor's wait for its attempt's reports: a cancel was
    /// requested, or leadership was lost (holds at most one wake-up).
    wake: (Sender<()>, crossbeam_channel::Receiver<()>),
    /// Its record in the control store, as last written.
    stored: Mutex<StoredJob>,
    /// Held while a change of the record is written (not `stored`, which
    /// readers such as the API take).
    writing: Mutex<()>,
    store: Arc<dyn ControlStore>,
    guard: Arc<LeaseGuard>,
}

/// The mutable part of a job.
#[derive(Debug, Default)]
pub struct JobRecord {
    /// Its lifecycle.
    pub lifecycle: JobLifecycle,
    /// Last failure.
    pub failure: Option<String>,
    /// Counters of the last finished attempt.
    pub events_in: u64,
    /// Counters of the last finished attempt.
    pub records_out: u64,
    /// The checkpoint the first attempt restored.
    pub restored_from: Option<u64>,
    /// Checkpoints of all attempts.
    pub checkpoints: CheckpointStats,
    /// When the first attempt was deployed.
    pub started: Option<Instant>,
    /// When the job ended.
    pub ended: Option<Instant>,
    /// The last loss of one of its workers.
    pub last_loss: Option<LossReport>,
    /// When the failure being recovered from was detected.
    pub recovering_since: Option<Instant>,
    /// Duration of the last recovery.
    pub last_recovery_ms: Option<f64>,
    /// Which tier served each restored subtask of the current attempt.
    pub last_restore: Vec<SubtaskRestore>,
    /// The running attempt's checkpoint figures, as its driver publishes them.
    pub live_checkpoints: Option<std::sync::Arc<Mutex<CheckpointStats>>>,
    /// The parallelism `holders` is for.
    pub holders_parallelism: u32,
    /// Per slot, the workers holding the newest checkpoint's state.
    pub holders: std::collections::BTreeMap<u32, Vec<WorkerId>>,
    /// Whether the current attempt was adopted after a failover.
    pub adopted: bool,
    /// The location of the last savepoint.
    pub last_savepoint: Option<String>,
    /// Warnings of the restore check when the job was submitted.
    pub warnings: Vec<String>,
    /// The supervisor waiting for checkpoint storage (to restore, or to
    /// write the job's record), while it lasts.
    pub waiting_for_storage: Option<Outage>,
    /// Regional failovers under this leader, the last
    /// [`REGIONAL_RESTARTS_KEPT`].
    pub regional_restarts: std::collections::VecDeque<RegionalRestart>,
    /// Catch-ups of spares that joined, the last [`SPARE_CATCH_UPS_KEPT`].
    pub spare_catch_ups: std::collections::VecDeque<SpareCatchUp>,
    /// Restarts under this leader, the last
    /// [`RESTARTS_KEPT`](crate::history::RESTARTS_KEPT).
    pub restarts: std::collections::VecDeque<RestartRecord>,
    /// Regional restarts under this leader.
    pub regional_restart_count: u64,
    /// Recoveries under this leader, and their total time in seconds.
    pub recoveries: (u64, f64),
    /// Subtasks restored under this leader, and their bytes, per tier
    /// (local, peer, object store).
    pub restored_by_tier: [(u64, u64); 3],
}

use weir_protocol::time::now_ms as wall_ms;

/// The restore tiers, in the order of [`JobRecord::restored_by_tier`].
pub const TIERS: [RestoreTier; 3] = [
    RestoreTier::Local,
    RestoreTier::Peer,
    RestoreTier::ObjectStore,
];

impl JobRecord {
    /// A worker of the running attempt was declared lost at `detected`.
    pub fn note_loss(&mut self, worker: WorkerId, cause: &str, loss: Loss, detected: Instant) {
        let silent_ms = match loss {
            Loss::Silent(silent) | Loss::Disconnected(silent) => silent.as_secs_f64() * 1000.0,
        };
        self.last_loss = Some(LossReport {
            worker,
            cause: cause.to_owned(),
            silent_ms,
            detected_at_ms: wall_ms(),
            recovered_at_ms: None,
            recovery_ms: None,
        });
        self.note_failure(detected);
    }

    /// The running attempt failed (detected at `at`); recovery starts.
    pub fn note_failure(&mut self, at: Instant) {
        let since = self.recovering_since.get_or_insert(at);
        *since = (*since).min(at);
    }

    /// The job restarts (`restart.recovery_ms` is filled in once it runs).
    pub fn note_restart(&mut self, restart: RestartRecord) {
        if restart.scope == RestartScope::Regional {
            self.regional_restart_count += 1;
        } else {
            // What was still recovering will not run: the job restarts.
            for earlier in self.restarts.iter_mut().filter(|r| r.recovery_ms.is_none()) {
                earlier.superseded = true;
            }
        }
        self.restarts.push_back(restart);
        while self.restarts.len() > crate::history::RESTARTS_KEPT {
            self.restarts.pop_front();
        }
    }

    /// The regions of regional restart `regional` run again, `took`
    /// milliseconds after the failure, their subtasks restored as `restored`.
    pub fn note_regional_running(
        &mut self,
        regional: &RegionalRestart,
        took: f64,
        restored: Vec<SubtaskRestore>,
    ) {
        let restart = self.restarts.iter_mut().rev().find(|r| {
            r.scope == RestartScope::Regional
                && r.recovery_ms.is_none()
                && !r.superseded
                && r.regions == regional.regions
                && r.detected_at_ms == regional.detected_at_ms
        });
        if let Some(restart) = restart {
            restart.recovery_ms = Some(took);
            restart.restored = restored;
        }
    }

    /// Every subtask of the new attempt (or of the restarted regions) runs:
    /// the recovery is over.
    pub fn note_running(&mut self) {
        let Some(since) = self.recovering_since.take() else {
            return;
        };
        let took = since.elapsed().as_secs_f64() * 1000.0;
        self.last_recovery_ms = Some(took);
        self.recoveries.0 += 1;
        self.recoveries.1 += took / 1000.0;
        for restored in &self.last_restore {
            for (tier, totals) in TIERS.iter().zip(&mut self.restored_by_tier) {
                totals.0 += u64::from(restored.tier == *tier);
                totals.1 += restored.bytes.of(*tier);
            }
        }
        if let Some(restart) = self
            .restarts
            .back_mut()
            .filter(|r| r.scope == RestartScope::Global && r.recovery_ms.is_none())
        {
            restart.recovery_ms = Some(took);
            restart.restored = self.last_restore.clone();
        }
        if let Some(loss) = self
            .last_loss
            .as_mut()
            .filter(|l| l.recovered_at_ms.is_none())
        {
            loss.recovered_at_ms = Some(wall_ms());
            loss.recovery_ms = Some(took);
        }
    }
}

impl JobHandle {
    /// A job with its control-store record `stored` and validated `graph`,
    /// whose record changes go to `store` while `guard` holds.
    pub fn new(
        stored: StoredJob,
        graph: JobGraph,
        store: Arc<dyn ControlStore>,
        guard: Arc<LeaseGuard>,
    ) -> Self {
        let mut record = JobRecord {
            failure: stored.failure.clone(),
            ..JobRecord::default()
        };
        if let Some(result) = &stored.result {
            record.lifecycle = JobLifecycle::ended(result.state, result.ended_at_ms);
            record.failure = result.failure.clone().or(record.failure);
            record.events_in = result.events_in;
            record.records_out = result.records_out;
        }
        Self {
            number: stored.number,
            job_id: stored.job_id.clone(),
            spec: stored.spec.clone(),
            settings: stored.settings.clone(),
            graph,
            cancel_requested: std::sync::atomic::AtomicBool::new(false),
            inbox: Mutex::new(None),
            savepoints: Mutex::new(None),
            record: Mutex::new(record),
            state_changed: Condvar::new(),
            state_changes: tokio::sync::Notify::new(),
            wake: crossbeam_channel::bounded(1),
            stored: Mutex::new(stored),
            writing: Mutex::new(()),
            store,
            guard,
        }
    }

    /// The control store's record, as last written.
    pub fn stored(&self) -> StoredJob {
        lock(&self.stored).clone()
    }

    /// Changes the job's control-store record durably: `change` applies to
    /// a copy, which is written (fenced by the leader's term) and only then
    /// kept. A refused or failed write ends this coordinator's leadership,
    /// unless the store keeps its term through the failure (an outage of
    /// a standalone coordinator's storage): then only the write failed.
    pub fn persist(&self, change: impl FnOnce(&mut StoredJob)) -> Result<(), CoordinatorError> {
        let _writing = lock(&self.writing);
        let mut next = self.stored();
        change(&mut next);
        if let Some(reason) = self.guard.lost() {
            return Err(CoordinatorError::Fenced {
                term: self.store.term(),
                newer: None,
                what: format!("writing job {} ({reason})", self.number),
            });
        }
        if let Err(error) = self.store.put_job(&next) {
            self.guard.write_failed(&*self.store, &error);
            return Err(error);
        }
        *lock(&self.stored) = next;
        Ok(())
    }

    /// Whether this coordinator still leads.
    pub fn leads(&self) -> bool {
        self.guard.leads()
    }

    /// When the leader's lease lapses unless renewed (none without a lease).
    pub fn lease_lapses_at(&self) -> Option<Instant> {
        self.guard.lapses_at()
    }

    /// The leader's term.
    pub fn term(&self) -> u64 {
        self.store.term()
    }

    /// Moves the job to `to` (staying put if it is there already), and
    /// wakes whoever waits for a change.
    pub fn advance(&self, to: JobState) {
        let mut record = self.record();
        if record.lifecycle.state() == to {
            return;
        }
        if record.lifecycle.advance(to) {
            tracing::info!(job = %self.job_id, state = %to, "job state");
            if to.is_terminal() {
                record.ended = Some(Instant::now());
            }
            self.state_changed.notify_all();
            self.state_changes.notify_waiters();
        }
    }

    /// Waits, without holding a thread, until the job has ended or
    /// `patience` passed.
    pub async fn ended_within(&self, patience: std::time::Duration) {
        let waiting = async {
            loop {
                // Registered before the check, so an end in between wakes it.
                let changed = self.state_changes.notified();
                if self.record().lifecycle.state().is_terminal() {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(patience, waiting).await;
    }

    /// Waits until the job has ended; returns its final state.
    pub fn wait_until_ended(&self) -> JobState {
        let mut record = self.record();
        while !record.lifecycle.state().is_terminal() {
            record = self
                .state_changed
                .wait(record)
                .unwrap_or_else(|p| p.into_inner());
        }
        record.lifecycle.state()
    }

    /// Waits until the job has ended, at most `patience`; its final state,
    /// or `None` if it still runs.
    pub fn wait_until_ended_for(&self, patience: std::time::Duration) -> Option<JobState> {
        let ended = |record: &JobRecord| record.lifecycle.state().is_terminal();
        self.wait_for(patience, ended)
            .then(|| self.record().lifecycle.state())
    }

    /// Waits until `done` holds of the record (checked on every change of
    /// state and every cancel request), at most `patience`; whether it did.
    fn wait_for(&self, patience: std::time::Duration, done: impl Fn(&JobRecord) -> bool) -> bool {
        let deadline = Instant::now() + patience;
        let mut record = self.record();
        while !done(&record) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            record = self
                .state_changed
                .wait_timeout(record, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// The job's record, locked.
    pub fn record(&self) -> MutexGuard<'_, JobRecord> {
        lock(&self.record)
    }

    /// The running attempt's inbox, locked.
    pub fn inbox(&self) -> MutexGuard<'_, Option<AttemptInbox>> {
        lock(&self.inbox)
    }

    /// Asks the job to stop, waking its supervisor if it is waiting.
    pub fn request_cancel(&self) {
        self.cancel_requested.store(true, Ordering::Relaxed);
        // Notifies under the record's lock, which waiters check the flag under.
        self.wake();
    }

    /// Wakes the supervisor to look at the job's cancel request and the
    /// coordinator's leadership.
    pub fn wake(&self) {
        let _ = self.wake.0.try_send(());
        // Waits on the record (`pause`, storage waits) look again too.
        let _record = self.record();
        self.state_changed.notify_all();
    }

    /// Where [`wake`](Self::wake)s arrive, for the supervisor to select on.
    pub fn wakeups(&self) -> &crossbeam_channel::Receiver<()> {
        &self.wake.1
    }

    /// Waits `wait`, or until this coordinator no longer leads (the
    /// leadership loop [`wake`](Self::wake)s every job when its term ends,
    /// lapsed or lost) or, if `cancel_ends_it`, a cancel is requested;
    /// whether either happened.
    pub fn pause(&self, wait: std::time::Duration, cancel_ends_it: bool) -> bool {
        self.wait_for(wait, |_| {
            !self.leads() || (cancel_ends_it && self.is_cancel_requested())
        })
    }

    /// Whether a client asked to cancel.
    pub fn is_cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::Relaxed)
    }

    /// The checkpoints of every attempt so far, the running one's included.
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        Self::merged_checkpoints(&self.record())
    }

    fn merged_checkpoints(record: &JobRecord) -> CheckpointStats {
        let mut checkpoints = record.checkpoints.clone();
        if let Some(live) = &record.live_checkpoints {
            checkpoints.absorb(lock(live).clone());
        }
        checkpoints
    }

    /// The job as reported by the API.
    pub fn status(&self) -> JobStatus {
        let record = self.record();
        // Attempt, restarts and placement are the control store's record.
        let stored = lock(&self.stored);
        let checkpoints = Self::merged_checkpoints(&record);
        let elapsed = match (record.started, record.ended) {
            (Some(start), Some(end)) => end.saturating_duration_since(start),
            (Some(start), None) => start.elapsed(),
            _ => Default::default(),
        };
        JobStatus {
            number: self.number,
            job_id: self.job_id.clone(),
            job: self.spec.job.clone(),
            state: record.lifecycle.state(),
            attempt: stored.attempt,
            parallelism: self.spec.parallelism,
            running_parallelism: stored.running_parallelism,
            restarts: stored.restarts,
            failure: record.failure.clone(),
            events_in: record.events_in,
            records_out: record.records_out,
            restored_from: record.restored_from,
            checkpoints_completed: checkpoints.completed,
            checkpoints_aborted: checkpoints.aborted,
            checkpoint_durations_ms: checkpoints.completed().map(|r| r.duration_ms).collect(),
            checkpoint_sizes: checkpoints
                .completed()
                .map(|r| r.size_bytes.unwrap_or(0))
                .collect(),
            checkpoint_incremental_sizes: checkpoints
                .completed()
                .map(|r| r.incremental_size_bytes.unwrap_or(0))
                .collect(),
            placement: stored.placement.clone(),
            spares: stored.spares.iter().map(|p| p.worker).collect(),
            regions: weir_protocol::regions::pipelined_regions(&self.graph).len() as u32,
            region_attempts: stored.region_attempts.clone(),
            regional_restarts: record.regional_restarts.iter().cloned().collect(),
            spare_catch_ups: record.spare_catch_ups.iter().cloned().collect(),
            last_loss: record.last_loss.clone(),
            last_recovery_ms: record.last_recovery_ms,
            restored: record.last_restore.clone(),
            transitions: record.lifecycle.history().to_vec(),
            latest_checkpoint: stored.checkpoint.map(|c| c.epoch),
            adopted: record.adopted,
            leader_term: self.store.term(),
            last_savepoint: stored
                .stopped_with_savepoint
                .clone()
                .or_else(|| record.last_savepoint.clone()),
            warnings: record.warnings.clone(),
            elapsed_s: elapsed.as_secs_f64(),
            storage_wait: record
                .waiting_for_storage
                .as_ref()
                .or(checkpoints.outage.as_ref())
                .map(Outage::report),
            failed_checkpoints_in_a_row: checkpoints.failed_in_a_row,
            tolerable_failed_checkpoints: self.settings.tolerable_failed_checkpoints,
            // The details are `GET /v1/jobs/{id}/checkpoints`'s.
            checkpoint_history: checkpoints
                .history
                .into_iter()
                .map(|record| CheckpointRecord {
                    subtasks: Vec::new(),
                    ..record
                })
                .collect(),
        }
    }
}
