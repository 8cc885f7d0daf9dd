//! [`CheckpointDriver`]: runs the checkpoint tracker against a running job
//! and checkpoint storage.
//!
//! It feeds the workers' events and the passing time to the pure
//! [`CheckpointTracker`] and carries out its decisions: trigger, write the
//! manifest, the job's checkpoint pointer (through its
//! [`CheckpointFence`]) and then the create-only commit marker, notify
//! completion, apply retention, and clean up aborted checkpoints.
//!
//! With a fence, a checkpoint is complete once the fenced write of its
//! pointer succeeded, and a trigger goes out only once its epoch is
//! recorded: a coordinator that no longer leads can neither complete a
//! checkpoint nor tell a sink to commit, and epochs keep rising across
//! leaders. After a refusal the driver stops acting altogether.

use crate::catalog::CheckpointCatalog;
use crate::error::CoordinatorError;
pub use crate::history::CheckpointStats;
use crate::history::{CheckpointOutcome, CheckpointRecord, Outage, StorageWaitPhase};
use crate::metrics::CoordinatorMetrics;
use crate::savepoint::{default_uid_warnings, write_savepoint, SavepointDone, SavepointRequest};
use crate::tracker::{
    CheckpointConfig, CheckpointTracker, CompletedCheckpoint, Decision, FailedCheckpoint,
};
use crossbeam_channel::{Receiver, Select, Sender};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use weir_protocol::checkpoint::{paths, MANIFEST_VERSION};
use weir_protocol::{
    CheckpointManifest, ControlCommand, Epoch, FailureKind, JobGraph, OperatorState, SubtaskId,
    VertexKind, WorkerEvent,
};

/// What woke the driver up.
enum Woke {
    /// The tracker's next decision is due.
    Due,
    /// An event, or `None`: every task has ended.
    Event(Option<WorkerEvent>),
    /// A savepoint request, or `None`: nobody can ask any more.
    Savepoint(Option<SavepointRequest>),
    /// The supervisor's word on a regional failover, or `None`: it has
    /// nothing more to say.
    Control(Option<DriverControl>),
}

/// What the supervisor tells the driver during a regional failover.
#[derive(Debug)]
pub enum DriverControl {
    /// Regions restart on their own, among them the sources `sources`:
    /// abort the checkpoint in flight and trigger none until
    /// [`RegionsRunning`](Self::RegionsRunning). `reply` says whether the
    /// driver agrees: not after the final checkpoint was triggered, nor
    /// during a stop-with-savepoint (the job must restart as a whole).
    RegionsRestarting {
        /// The restarting regions' sources.
        sources: Vec<SubtaskId>,
        /// Why, for the aborted checkpoint's record.
        reason: String,
        /// Whether the driver holds its checkpoints for the restart.
        reply: Sender<bool>,
    },
    /// The restarted regions run again, among them the sources `sources`
    /// (none of which has finished, whatever their old attempt said):
    /// checkpoints go on.
    RegionsRunning {
        /// The restarted regions' sources.
        sources: Vec<SubtaskId>,
    },
}

/// The control store's side of a job's checkpoints: the fenced writes a
/// checkpoint needs.
pub trait CheckpointFence: Send + Sync {
    /// Records that `epoch` is about to be triggered (`stop`: as a
    /// stop-with-savepoint). An error means this coordinator must not
    /// trigger it (it no longer leads).
    fn triggering(&self, epoch: Epoch, stop: bool) -> Result<(), CoordinatorError>;
    /// Every task acked `epoch` and its manifest is written: writes the
    /// job's checkpoint pointer. Only after `Ok` is the checkpoint complete.
    fn completing(&self, epoch: Epoch, is_final: bool) -> Result<(), CoordinatorError>;
    /// The leader's term, recorded in manifests.
    fn term(&self) -> u64;
    /// The job stops with the savepoint at `location`: records it, so that
    /// nothing runs the job again. Only after `Ok` may its sinks commit.
    fn stopping(&self, _location: &str) -> Result<(), CoordinatorError> {
        Ok(())
    }
}

/// Checkpointing settings of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverConfig {
    /// When checkpoints are taken.
    pub checkpoint: CheckpointConfig,
    /// Complete checkpoints to keep (at least 1).
    pub retained: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            checkpoint: CheckpointConfig::default(),
            retained: 3,
        }
    }
}

/// Drives the checkpoints of one running job.
pub struct CheckpointDriver {
    catalog: CheckpointCatalog,
    graph: JobGraph,
    tracker: CheckpointTracker,
    retained: usize,
    /// Failed checkpoints in a row tolerated before the job fails over.
    tolerable_failures: u32,
    stats: CheckpointStats,
    /// Files referenced by the last completed checkpoint.
    previous_files: HashSet<String>,
    /// A copy of `stats` others can read while the driver runs.
    live: Option<Arc<Mutex<CheckpointStats>>>,
    /// The fenced writes of the control store, when there is one.
    fence: Option<Arc<dyn CheckpointFence>>,
    /// Sources that finished before the driver started (an adopted attempt).
    finished_before: Vec<SubtaskId>,
    /// Set once the fence refused: this coordinator no longer leads.
    deposed: bool,
    /// A checkpoint whose pointer write failed on storage: it may have
    /// landed, so its files are kept (a later coordinator may resume from
    /// it); retention removes them once a later checkpoint completes.
    in_doubt: Option<Epoch>,
    /// Where savepoint requests arrive.
    savepoint_requests: Option<Receiver<SavepointRequest>>,
    /// The savepoint being taken, and its epoch once triggered.
    savepoint: Option<(SavepointRequest, Option<Epoch>)>,
    /// A stop-with-savepoint was triggered: no checkpoint follows it.
    stopping: bool,
    /// The stop-with-savepoint is written: the job is ending.
    stopped: bool,
    /// Where the supervisor's word on regional failovers arrives.
    control: Option<Receiver<DriverControl>>,
    /// Where checkpoint figures are exported.
    metrics: Option<Arc<CoordinatorMetrics>>,
}

impl CheckpointDriver {
    /// A driver for `graph`, whose checkpoints go to `catalog`. Epochs
    /// continue after the highest one in storage and after `after` (the
    /// checkpoint the job resumed from, or the last epoch the job
    /// triggered), so a run never reuses the epoch of an earlier run's
    /// checkpoint or output.
    pub fn new(
        catalog: CheckpointCatalog,
        graph: &JobGraph,
        config: DriverConfig,
        after: Option<Epoch>,
    ) -> Result<Self, CoordinatorError> {
        let highest = catalog.highest_epoch()?.max(after);
        let first_epoch = Epoch(highest.map_or(1, |e| e.0 + 1));
        let tasks = graph.vertices.iter().flat_map(|v| {
            (0..v.parallelism).map(move |index| SubtaskId {
                vertex: v.id,
                index,
            })
        });
        let sources = graph
            .vertices
            .iter()
            .filter(|v| v.kind == VertexKind::Source)
            .flat_map(|v| {
                (0..v.parallelism).map(move |index| SubtaskId {
                    vertex: v.id,
                    index,
                })
            });
        let tracker = CheckpointTracker::new(
            config.checkpoint,
            tasks,
            sources,
            first_epoch,
            Instant::now(),
        );
        Ok(Self {
            catalog,
            graph: graph.clone(),
            tracker,
            retained: config.retained.max(1),
            tolerable_failures: config.checkpoint.tolerable_failures,
            stats: CheckpointStats::default(),
            previous_files: HashSet::new(),
            live: None,
            fence: None,
            finished_before: Vec::new(),
            deposed: false,
            in_doubt: None,
            savepoint_requests: None,
            savepoint: None,
            stopping: false,
            stopped: false,
            control: None,
            metrics: None,
        })
    }

    /// Writes through `fence` before each trigger and completion.
    pub fn fenced_by(mut self, fence: Arc<dyn CheckpointFence>) -> Self {
        self.fence = Some(fence);
        self
    }

    /// For an adopted attempt: the first checkpoint is due at once.
    pub fn checkpoint_at_once(mut self) -> Self {
        self.tracker.due_now(Instant::now());
        self
    }

    /// For an adopted attempt: these sources had finished already.
    pub fn with_finished_sources(mut self, tasks: impl IntoIterator<Item = SubtaskId>) -> Self {
        self.finished_before.extend(tasks);
        self
    }

    /// Exports each checkpoint's figures to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<CoordinatorMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Takes the supervisor's word on regional failovers from `control`.
    pub fn with_control(mut self, control: Receiver<DriverControl>) -> Self {
        self.control = Some(control);
        self
    }

    /// Takes savepoints asked for on `requests`.
    pub fn with_savepoints(mut self, requests: Receiver<SavepointRequest>) -> Self {
        self.savepoint_requests = Some(requests);
        self
    }

    /// Keeps `live` up to date with the driver's figures as it runs.
    pub fn publish_to(mut self, live: Arc<Mutex<CheckpointStats>>) -> Self {
        self.live = Some(live);
        self
    }

    /// Runs until the job's event channel closes (every task has ended).
    pub fn run(
        mut self,
        events: &Receiver<WorkerEvent>,
        commands: &Sender<ControlCommand>,
    ) -> CheckpointStats {
        for task in std::mem::take(&mut self.finished_before) {
            let finished = WorkerEvent::SourceFinished { task };
            if let Some(decision) = self.tracker.on_event(finished, Instant::now()) {
                self.execute(decision, commands);
            }
        }
        loop {
            // The tracker says when its next decision is due; until then
            // only an event or a savepoint request can change anything.
            // Events come first even when a decision is overdue (a deadline
            // in the past selects what is ready without waiting): a driver
            // whose every turn is due (checkpoints failing slowly) still
            // notices that its attempt ended.
            let due = self.tracker.next_due();
            let woke = {
                let mut select = Select::new();
                let event = select.recv(events);
                let requests = self.savepoint_requests.as_ref().map(|r| select.recv(r));
                let control = self.control.as_ref().map(|c| select.recv(c));
                let ready = match due {
                    Some(due) => select.select_deadline(due).ok(),
                    None => Some(select.select()),
                };
                match ready {
                    None => Woke::Due,
                    Some(op) if op.index() == event => Woke::Event(op.recv(events).ok()),
                    Some(op) if Some(op.index()) == requests => {
                        let requests = self.savepoint_requests.as_ref().expect("selected");
                        Woke::Savepoint(op.recv(requests).ok())
                    }
                    Some(op) => {
                        debug_assert_eq!(Some(op.index()), control);
                        let control = self.control.as_ref().expect("selected");
                        Woke::Control(op.recv(control).ok())
                    }
                }
            };
            let decision = match woke {
                Woke::Due => self.tracker.tick(Instant::now()),
                Woke::Event(Some(event)) => self.tracker.on_event(event, Instant::now()),
                // Every task has ended.
                Woke::Event(None) => break,
                Woke::Savepoint(Some(request)) => {
                    self.accept_savepoint(request);
                    continue;
                }
                // Nobody can ask any more: stop waiting on the channel.
                Woke::Savepoint(None) => {
                    self.savepoint_requests = None;
                    continue;
                }
                Woke::Control(Some(DriverControl::RegionsRestarting {
                    sources,
                    reason,
                    reply,
                })) => {
                    let held = if self.stopping {
                        None
                    } else {
                        self.tracker.regions_restarting(&sources, reason).ok()
                    };
                    let _ = reply.send(held.is_some());
                    held.flatten()
                }
                Woke::Control(Some(DriverControl::RegionsRunning { sources })) => {
                    self.tracker.regions_running(&sources, Instant::now());
                    continue;
                }
                Woke::Control(None) => {
                    self.control = None;
                    continue;
                }
            };
            if let Some(decision) = decision {
                self.execute(decision, commands);
                if let Some(live) = &self.live {
                    *live.lock().unwrap_or_else(|p| p.into_inner()) = self.stats.clone();
                }
            }
        }
        self.abandon_savepoint("the job's attempt ended before the savepoint completed".into());
        self.stats
    }

    /// Answers the savepoint being taken, if any, with `problem`.
    fn abandon_savepoint(&mut self, problem: String) {
        if let Some((request, _)) = self.savepoint.take() {
            let _ = request.reply.send(Err(problem));
        }
    }

    /// Takes a savepoint request (its checkpoint is due at once), or
    /// refuses it.
    fn accept_savepoint(&mut self, request: SavepointRequest) {
        if self.savepoint.is_some() || self.stopping || self.deposed {
            let _ = request.reply.send(Err(if self.deposed {
                "this coordinator no longer leads".into()
            } else {
                "a savepoint of this job is being taken already".into()
            }));
            return;
        }
        tracing::info!(job = %self.catalog.job(), stop = request.stop, "savepoint requested");
        self.tracker.due_now(Instant::now());
        self.savepoint = Some((request, None));
    }

    /// Whether checkpoint `epoch` is a stop-with-savepoint's.
    fn is_stop_savepoint(&self, epoch: Epoch) -> bool {
        self.stopping && matches!(&self.savepoint, Some((_, Some(e))) if *e == epoch)
    }

    /// Checkpoint `manifest` completed: if it is the savepoint's, writes the
    /// savepoint and answers its request (for a stop, once the stop is
    /// recorded). Returns whether that succeeded; `None` when `manifest`
    /// is not the savepoint's.
    fn finish_savepoint(&mut self, manifest: &CheckpointManifest) -> Option<Result<(), String>> {
        let Some((_, Some(epoch))) = &self.savepoint else {
            return None;
        };
        if *epoch != manifest.epoch {
            return None;
        }
        let (request, _) = self.savepoint.take().expect("checked above");
        let job = self.catalog.job().to_owned();
        let outcome = write_savepoint(&self.catalog, manifest, &request.dir)
            .map_err(|error| format!("writing the savepoint: {}", crate::error::chain(&error)))
            .and_then(|location| {
                if self.stopping {
                    if let Some(fence) = &self.fence {
                        fence.stopping(&location).map_err(|error| {
                            format!("recording the stop: {}", crate::error::chain(&error))
                        })?;
                    }
                }
                Ok(location)
            });
        let answer = match outcome {
            Ok(location) => {
                tracing::info!(job = %job, epoch = manifest.epoch.0, %location, stop = request.stop, "savepoint written");
                self.stopped = self.stopping;
                Ok(SavepointDone {
                    location,
                    epoch: manifest.epoch.0,
                    warnings: default_uid_warnings(manifest),
                    // On the final checkpoint the job ends by itself.
                    stopped: request.stop,
                })
            }
            Err(problem) => {
                tracing::warn!(job = %job, epoch = manifest.epoch.0, %problem, "the savepoint failed");
                Err(problem)
            }
        };
        let result = answer.as_ref().map(|_| ()).map_err(Clone::clone);
        let _ = request.reply.send(answer);
        Some(result)
    }

    /// A savepoint's checkpoint was aborted: answers its request.
    fn savepoint_failed(&mut self, epoch: Epoch, reason: &str) {
        if matches!(&self.savepoint, Some((_, Some(e))) if *e == epoch) {
            self.abandon_savepoint(format!(
                "the savepoint's checkpoint {} failed: {reason}",
                epoch.0
            ));
        }
    }

    fn execute(&mut self, decision: Decision, commands: &Sender<ControlCommand>) {
        if self.deposed || self.stopped {
            return;
        }
        let job = self.catalog.job().to_owned();
        match decision {
            Decision::Trigger {
                epoch, is_final, ..
            } => {
                if matches!(&self.savepoint, Some((request, None)) if request.is_cancelled()) {
                    // Its client gave up waiting before it began.
                    self.savepoint = None;
                }
                // A stop on the final checkpoint is a plain savepoint: the
                // job ends after it anyway.
                let stop =
                    matches!(&self.savepoint, Some((request, None)) if request.stop && !is_final);
                if let Some(fence) = &self.fence {
                    if let Err(error) = fence.triggering(epoch, stop) {
                        if weir_state::storage_unavailable_in(&error) {
                            // The control records live in checkpoint
                            // storage, which is away: this checkpoint fails
                            // like one whose files could not be written.
                            let reason =
                                format!("recording the trigger: {}", crate::error::chain(&error));
                            let failed = self.tracker.on_trigger_failed(
                                Instant::now(),
                                reason,
                                FailureKind::StorageUnavailable,
                            );
                            if let Some(failed) = failed {
                                self.execute(failed, commands);
                            }
                            return;
                        }
                        tracing::warn!(job = %job, epoch = epoch.0, error = &error as &dyn std::error::Error, "not triggering the checkpoint: this coordinator no longer leads");
                        self.deposed = true;
                        return;
                    }
                }
                if let Some((_, assigned @ None)) = &mut self.savepoint {
                    *assigned = Some(epoch);
                    self.stopping = stop;
                }
                tracing::debug!(job = %job, epoch = epoch.0, is_final, stop, "triggering checkpoint");
                let _ = commands.send(ControlCommand::TriggerCheckpoint {
                    epoch,
                    is_final,
                    stop,
                });
            }
            Decision::Complete(completed) => match self.commit(&completed) {
                Ok((size, added, manifest)) => {
                    let duration = completed
                        .completed_at
                        .saturating_duration_since(completed.triggered_at);
                    tracing::info!(job = %job, epoch = completed.epoch.0, ?duration, size, "checkpoint complete");
                    self.tracker.on_committed();
                    if let Some(outage) = self.stats.outage.take() {
                        tracing::info!(job = %job, epoch = completed.epoch.0, waited_s = outage.waited().as_secs_f64(), "checkpoint storage is back");
                    }
                    self.stats.failed_in_a_row = 0;
                    let record = CheckpointRecord {
                        epoch: completed.epoch.0,
                        outcome: CheckpointOutcome::Completed,
                        is_final: completed.is_final,
                        triggered_at_ms: weir_protocol::time::wall_ms(completed.triggered_at),
                        duration_ms: duration.as_secs_f64() * 1000.0,
                        size_bytes: Some(size),
                        incremental_size_bytes: Some(added),
                        cause: None,
                        storage_unavailable: false,
                        subtasks: CheckpointRecord::subtask_details(
                            &self.graph,
                            completed.triggered_at,
                            &completed.receipts,
                            &completed.states,
                        ),
                    };
                    if let Some(metrics) = &self.metrics {
                        metrics.checkpoint_completed(&job, &record);
                    }
                    self.stats.remember(record);
                    self.stats.completed += 1;
                    if self.is_stop_savepoint(completed.epoch) {
                        // Sinks commit only once the savepoint is written and
                        // the stop recorded; otherwise the job resumes from
                        // this (complete) checkpoint, whose restore commits
                        // what they left pending.
                        if let Some(Err(problem)) = self.finish_savepoint(&manifest) {
                            self.stopping = false;
                            let _ = commands.send(ControlCommand::FailJob {
                                reason: format!("stop-with-savepoint: {problem}; resuming"),
                            });
                            return;
                        }
                        crate::crash::point("after-stop-recorded");
                        let _ = commands.send(ControlCommand::CheckpointCompleted {
                            epoch: completed.epoch,
                        });
                    } else {
                        // Sinks commit first; the savepoint's copy (if this
                        // is one) is taken before retention may delete the
                        // checkpoint.
                        let _ = commands.send(ControlCommand::CheckpointCompleted {
                            epoch: completed.epoch,
                        });
                        self.finish_savepoint(&manifest);
                    }
                    if let Err(error) = self.catalog.retain(self.retained, false) {
                        tracing::warn!(job = %job, error = &error as &dyn std::error::Error, "retention cleanup failed");
                    }
                }
                // The pointer's write was refused or failed (it may even
                // have landed): never abort a checkpoint a later leader may
                // find complete.
                Err(error) if self.deposed => {
                    tracing::warn!(job = %job, epoch = completed.epoch.0, error = &error as &dyn std::error::Error, "the checkpoint is not complete: this coordinator no longer leads");
                    self.abandon_savepoint(
                        "this coordinator no longer leads; the next leader resumes the job".into(),
                    );
                }
                Err(error) => {
                    tracing::warn!(job = %job, epoch = completed.epoch.0, error = &error as &dyn std::error::Error, "committing checkpoint failed");
                    let kind = weir_state::failure_kind(&error);
                    let reason = format!("committing: {}", crate::error::chain(&error));
                    let next = self.tracker.on_commit_failed(&completed, reason, kind);
                    self.execute(next, commands);
                }
            },
            Decision::Abort(failed) => self.abort(failed, commands),
        }
    }

    /// A checkpoint failed: records it, cleans up its files, and fails the
    /// job over when more failed in a row than tolerated.
    fn abort(&mut self, failed: FailedCheckpoint, commands: &Sender<ControlCommand>) {
        let job = self.catalog.job().to_owned();
        let FailedCheckpoint {
            epoch,
            is_final,
            ref reason,
            kind,
            failed_in_a_row,
            ..
        } = failed;
        let storage = kind == FailureKind::StorageUnavailable;
        if storage {
            Outage::go_on(
                &mut self.stats.outage,
                StorageWaitPhase::Checkpoints,
                reason.clone(),
            );
            let waited_s = self
                .stats
                .outage
                .as_ref()
                .map_or(0.0, |o| o.waited().as_secs_f64());
            tracing::warn!(job = %job, epoch = epoch.0, is_final, failed_in_a_row, waited_s, %reason, "checkpoint aborted: waiting for checkpoint storage");
        } else {
            tracing::warn!(job = %job, epoch = epoch.0, is_final, failed_in_a_row, %reason, "checkpoint aborted");
        }
        self.stats.failed_in_a_row = failed_in_a_row;
        self.stats.remember(CheckpointRecord {
            epoch: epoch.0,
            outcome: CheckpointOutcome::Aborted,
            is_final,
            triggered_at_ms: weir_protocol::time::wall_ms(failed.triggered_at),
            duration_ms: failed.triggered_at.elapsed().as_secs_f64() * 1000.0,
            size_bytes: None,
            incremental_size_bytes: None,
            cause: Some(reason.clone()),
            storage_unavailable: storage,
            subtasks: CheckpointRecord::subtask_details(
                &self.graph,
                failed.triggered_at,
                &failed.receipts,
                &BTreeMap::new(),
            ),
        });

        self.savepoint_failed(epoch, reason);
        if self.stopping {
            // The sources stopped after its barrier: the job can only go on
            // from its last checkpoint.
            self.stopping = false;
            let _ = commands.send(ControlCommand::FailJob {
                reason: format!(
                    "the stop-with-savepoint checkpoint {} failed: {reason}",
                    epoch.0
                ),
            });
        } else if failed.fail_over {
            tracing::error!(job = %job, epoch = epoch.0, failed_in_a_row, tolerable = self.tolerable_failures, "more checkpoints failed in a row than tolerated: failing the job over");
            let cause = format!(
                "{failed_in_a_row} checkpoints failed in a row (tolerable: {}); the last: {reason}",
                self.tolerable_failures
            );
            self.stats.failed_over = Some((cause.clone(), kind));
            let _ = commands.send(ControlCommand::FailJob { reason: cause });
        }
        self.stats.aborted += 1;
        let _ = commands.send(ControlCommand::CheckpointAborted { epoch });
        // An epoch in doubt may have committed, so its files stay. During
        // an outage deleting would only fail after its retries, holding up
        // the driver; retention removes what is left once a later
        // checkpoint completes.
        if self.in_doubt == Some(epoch) || storage {
            return;
        }
        if let Err(error) = self
            .catalog
            .storage()
            .delete_dir(&paths::checkpoint_dir(&job, epoch))
        {
            tracing::debug!(job = %job, epoch = epoch.0, error = &error as &dyn std::error::Error, "cleaning up an aborted checkpoint failed");
        }
    }

    /// Writes the manifest, the pointer (through the fence), then the
    /// commit marker. Returns the state size and the bytes not referenced
    /// by the previous checkpoint.
    fn commit(
        &mut self,
        completed: &CompletedCheckpoint,
    ) -> Result<(u64, u64, CheckpointManifest), CoordinatorError> {
        let job = self.catalog.job();
        let mut operators: BTreeMap<u32, OperatorState> = BTreeMap::new();
        for (task, state) in &completed.states {
            let vertex = &self.graph.vertices[task.vertex.index()];
            operators
                .entry(task.vertex.0)
                .or_insert_with(|| OperatorState {
                    vertex: vertex.id,
                    name: vertex.name.clone(),
                    uid: vertex.uid.clone(),
                    parallelism: vertex.parallelism,
                    subtasks: Vec::new(),
                })
                .subtasks
                .push(state.clone());
        }
        let manifest = CheckpointManifest {
            version: MANIFEST_VERSION,
            // The registered job's name (tools rebuild the job from it),
            // not the job id its directory is named after.
            job: self.graph.name.clone(),
            epoch: completed.epoch,
            triggered_at_ms: weir_protocol::time::wall_ms(completed.triggered_at) as i64,
            completed_at_ms: weir_protocol::time::wall_ms(completed.completed_at) as i64,
            max_parallelism: self.graph.max_parallelism,
            is_final: completed.is_final,
            leader_term: self.fence.as_ref().map(|f| f.term()),
            savepoint: false,
            operators: operators.into_values().collect(),
        };
        let size = manifest.files().map(|f| f.size).sum();
        let added = manifest
            .files()
            .filter(|f| !self.previous_files.contains(&f.path))
            .map(|f| f.size)
            .sum();
        let json = serde_json::to_vec_pretty(&manifest).expect("manifests serialize");
        let storage = self.catalog.storage();
        storage.put(&paths::manifest(job, completed.epoch), json)?;
        crate::crash::point("after-manifest");
        let marker = paths::committed(job, completed.epoch);
        if let Some(fence) = &self.fence {
            if let Err(error) = fence.completing(completed.epoch, completed.is_final) {
                // An outage of the storage holding the records is a failed
                // commit (the sinks hear nothing of it); anything else means
                // another coordinator may lead.
                if weir_state::storage_unavailable_in(&error) {
                    self.in_doubt = Some(completed.epoch);
                } else {
                    self.deposed = true;
                }
                return Err(error);
            }
            crate::crash::point("after-pointer");
            // Complete by its pointer now: a missing marker is written
            // again by whoever restores it.
            if let Err(error) = storage.put_if_absent(&marker, Vec::new()) {
                tracing::warn!(job = %job, epoch = completed.epoch.0, error = &error as &dyn std::error::Error, "could not write the commit marker of a complete checkpoint");
            }
        } else if !storage.put_if_absent(&marker, Vec::new())? {
            return Err(CoordinatorError::NotRestorable {
                location: paths::checkpoint_dir(job, completed.epoch),
                problem: "its commit marker already exists".into(),
            });
        }
        self.previous_files = manifest.files().map(|f| f.path.clone()).collect();
        Ok((size, added, manifest))
    }
}
