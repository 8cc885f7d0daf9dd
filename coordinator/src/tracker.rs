//! The checkpoint tracker: when to trigger, complete or abort a checkpoint,
//! and when failed checkpoints mean the job must fail over.
//!
//! Pure decision logic: facts (time passing, acks, declines, finished
//! sources) go in with the current time, decisions come out. The driver
//! does the I/O. At most one checkpoint is in flight.
//!
//! The failure policy: checkpoints keep being triggered at the interval
//! while they fail; more than `tolerable_failures` failures in a row fail
//! the job over. A failed final checkpoint (every source has finished) is
//! triggered again at the interval under a new epoch, however often it
//! fails: its records were all processed, and only storage or a sink
//! stands between the job and its end.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use weir_protocol::{AckTiming, Epoch, FailureKind, SubtaskId, SubtaskState, WorkerEvent};

/// When checkpoints are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// Time between triggers.
    pub interval: Duration,
    /// A checkpoint not complete after this long is aborted.
    pub timeout: Duration,
    /// Time between the end of one checkpoint and the next trigger.
    pub min_pause: Duration,
    /// Failed checkpoints in a row tolerated before the job fails over.
    pub tolerable_failures: u32,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
            min_pause: Duration::ZERO,
            tolerable_failures: weir_protocol::cluster::DEFAULT_TOLERABLE_FAILED_CHECKPOINTS,
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Tell the sources to inject `Barrier(epoch)`.
    Trigger {
        /// The new checkpoint.
        epoch: Epoch,
        /// Whether it is the final one (every source has finished).
        is_final: bool,
        /// When it was triggered (for the manifest and statistics).
        at: Instant,
    },
    /// Every task acked: write the manifest, then the commit marker.
    Complete(CompletedCheckpoint),
    /// The checkpoint cannot complete: clean up its files.
    Abort(FailedCheckpoint),
}

/// A checkpoint that failed, and what follows from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCheckpoint {
    /// The checkpoint.
    pub epoch: Epoch,
    /// Whether it was a final one (another is triggered at the interval).
    pub is_final: bool,
    /// When it was triggered.
    pub triggered_at: Instant,
    /// Why it failed.
    pub reason: String,
    /// Whether checkpoint storage failed, or a task.
    pub kind: FailureKind,
    /// Checkpoints failed in a row, this one included.
    pub failed_in_a_row: u32,
    /// More failed in a row than tolerated: the job must fail over
    /// (restart from its last complete checkpoint). Never for a final one.
    pub fail_over: bool,
    /// The acks that had arrived.
    pub receipts: BTreeMap<SubtaskId, AckReceipt>,
}

/// When a subtask's ack arrived, and what its phases took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckReceipt {
    /// When it arrived.
    pub at: Instant,
    /// Its phases, as the subtask measured them.
    pub timing: AckTiming,
}

/// A checkpoint all of whose acks arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedCheckpoint {
    /// The checkpoint.
    pub epoch: Epoch,
    /// Whether it is the final one.
    pub is_final: bool,
    /// When it was triggered.
    pub triggered_at: Instant,
    /// When its last ack arrived.
    pub completed_at: Instant,
    /// Every task's state.
    pub states: BTreeMap<SubtaskId, SubtaskState>,
    /// Every task's ack.
    pub receipts: BTreeMap<SubtaskId, AckReceipt>,
}

#[derive(Debug)]
struct Pending {
    epoch: Epoch,
    is_final: bool,
    triggered_at: Instant,
    states: BTreeMap<SubtaskId, SubtaskState>,
    receipts: BTreeMap<SubtaskId, AckReceipt>,
}

/// Decides the checkpoints of one running job.
#[derive(Debug)]
pub struct CheckpointTracker {
    config: CheckpointConfig,
    tasks: BTreeSet<SubtaskId>,
    sources: BTreeSet<SubtaskId>,
    finished_sources: BTreeSet<SubtaskId>,
    next_epoch: Epoch,
    pending: Option<Pending>,
    last_trigger: Instant,
    last_end: Option<Instant>,
    /// A final checkpoint is in flight or complete: nothing else triggers.
    final_triggered: bool,
    /// A final checkpoint failed: the next waits for the interval.
    final_failed: bool,
    failed_in_a_row: u32,
    /// Regions restart (regional failover): nothing triggers until their
    /// tasks run again.
    held: bool,
}

/// Why regions cannot restart on their own while the job's checkpoints go
/// on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalCheckpointTriggered;

impl CheckpointTracker {
    /// A tracker for a job with these `tasks` (every subtask acks every
    /// checkpoint), of which `sources` are sources, started at `now`; the
    /// first checkpoint gets `first_epoch`.
    pub fn new(
        config: CheckpointConfig,
        tasks: impl IntoIterator<Item = SubtaskId>,
        sources: impl IntoIterator<Item = SubtaskId>,
        first_epoch: Epoch,
        now: Instant,
    ) -> Self {
        Self {
            config,
            tasks: tasks.into_iter().collect(),
            sources: sources.into_iter().collect(),
            finished_sources: BTreeSet::new(),
            next_epoch: first_epoch,
            pending: None,
            last_trigger: now,
            last_end: None,
            final_triggered: false,
            final_failed: false,
            failed_in_a_row: 0,
            held: false,
        }
    }

    /// Regions restart on their own, among them the sources `restarted`:
    /// the checkpoint in flight cannot complete (aborted, without counting
    /// as a failure), and none is triggered until
    /// [`regions_running`](Self::regions_running). Refused once the final
    /// checkpoint was triggered: the other regions' sources closed after it
    /// and can take no other.
    pub fn regions_restarting(
        &mut self,
        restarted: &[SubtaskId],
        reason: String,
    ) -> Result<Option<Decision>, FinalCheckpointTriggered> {
        if self.final_triggered {
            return Err(FinalCheckpointTriggered);
        }
        self.held = true;
        for source in restarted {
            self.finished_sources.remove(source);
        }
        let Some(pending) = self.pending.take() else {
            return Ok(None);
        };
        Ok(Some(Decision::Abort(FailedCheckpoint {
            epoch: pending.epoch,
            is_final: pending.is_final,
            triggered_at: pending.triggered_at,
            reason,
            kind: FailureKind::Task,
            failed_in_a_row: self.failed_in_a_row,
            fail_over: false,
            receipts: pending.receipts,
        })))
    }

    /// The restarted regions run again, among them the sources
    /// `restarted`, which have not finished whatever their old attempt
    /// said (its last events may have come in after the restart began):
    /// the next checkpoint is due at once (the restarted tasks resume from
    /// an older one).
    pub fn regions_running(&mut self, restarted: &[SubtaskId], now: Instant) {
        for source in restarted {
            self.finished_sources.remove(source);
        }
        self.held = false;
        self.due_now(now);
    }

    /// Whether regions are restarting (nothing triggers).
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Makes the next checkpoint due at once (minimum pause aside): after a
    /// failover, the latest complete checkpoint is older than usual.
    pub fn due_now(&mut self, now: Instant) {
        self.last_trigger = now.checked_sub(self.config.interval).unwrap_or(now);
    }

    /// The checkpoint in flight, if any.
    pub fn pending(&self) -> Option<Epoch> {
        self.pending.as_ref().map(|p| p.epoch)
    }

    /// Checkpoints failed in a row so far.
    pub fn failed_in_a_row(&self) -> u32 {
        self.failed_in_a_row
    }

    /// When [`tick`](Self::tick) has its next decision: the pending
    /// checkpoint's timeout, or the next trigger (a final one at once).
    /// `None` while nothing but an event can change anything (a final
    /// checkpoint is in flight or complete). Exact: `tick` at any time at
    /// or after it decides something, so the driver waits for events until
    /// then and never looks at the clock in between.
    pub fn next_due(&self) -> Option<Instant> {
        if let Some(pending) = &self.pending {
            return pending.triggered_at.checked_add(self.config.timeout);
        }
        if self.final_triggered || self.held {
            return None;
        }
        if self.finished_sources.len() == self.sources.len() && !self.final_failed {
            // Due at once (the last trigger is in the past).
            return Some(self.last_trigger);
        }
        let interval = self.last_trigger.checked_add(self.config.interval)?;
        match self.last_end {
            Some(end) => Some(interval.max(end.checked_add(self.config.min_pause)?)),
            None => Some(interval),
        }
    }

    /// Time passed: trigger a due checkpoint, or abort one that timed out.
    pub fn tick(&mut self, now: Instant) -> Option<Decision> {
        if let Some(pending) = &self.pending {
            if now.saturating_duration_since(pending.triggered_at) >= self.config.timeout {
                let reason = format!("not complete after {:?}", self.config.timeout);
                return Some(self.fail_pending(now, reason, FailureKind::Task));
            }
            return None;
        }
        if self.final_triggered || self.held {
            return None;
        }
        let all_sources_done = self.finished_sources.len() == self.sources.len();
        let interval_due = now.saturating_duration_since(self.last_trigger) >= self.config.interval;
        let pause_over = self
            .last_end
            .is_none_or(|end| now.saturating_duration_since(end) >= self.config.min_pause);
        // The first final checkpoint goes out as soon as the sources are
        // done; one after a failed final one waits like any other.
        let final_due = all_sources_done && !self.final_failed;
        if final_due || (interval_due && pause_over) {
            return Some(self.trigger(now, all_sources_done));
        }
        None
    }

    /// A worker reported something.
    pub fn on_event(&mut self, event: WorkerEvent, now: Instant) -> Option<Decision> {
        match event {
            WorkerEvent::Ack(ack) => {
                let pending = self.pending.as_mut()?;
                if ack.epoch != pending.epoch || !self.tasks.contains(&ack.task) {
                    return None;
                }
                pending.states.insert(ack.task, ack.state);
                pending.receipts.insert(
                    ack.task,
                    AckReceipt {
                        at: now,
                        timing: ack.timing,
                    },
                );
                if pending.states.len() < self.tasks.len() {
                    return None;
                }
                let done = self.pending.take().expect("checked above");
                self.last_end = Some(now);
                Some(Decision::Complete(CompletedCheckpoint {
                    epoch: done.epoch,
                    is_final: done.is_final,
                    triggered_at: done.triggered_at,
                    completed_at: now,
                    states: done.states,
                    receipts: done.receipts,
                }))
            }
            WorkerEvent::Declined {
                epoch,
                task,
                reason,
                kind,
            } => {
                if self.pending() != Some(epoch) {
                    return None;
                }
                Some(self.fail_pending(now, format!("task {task} declined: {reason}"), kind))
            }
            WorkerEvent::SourceFinished { task } => {
                if self.sources.contains(&task) {
                    self.finished_sources.insert(task);
                }
                self.tick(now)
            }
        }
    }

    /// The driver could not record the trigger of the pending checkpoint
    /// (so it never went out): it failed.
    pub fn on_trigger_failed(
        &mut self,
        now: Instant,
        reason: String,
        kind: FailureKind,
    ) -> Option<Decision> {
        self.pending.as_ref()?;
        Some(self.fail_pending(now, reason, kind))
    }

    /// The driver wrote the checkpoint's manifest and pointer: it is
    /// complete, and the failures in a row are over.
    pub fn on_committed(&mut self) {
        self.failed_in_a_row = 0;
    }

    /// The driver could not write the checkpoint's manifest or pointer.
    pub fn on_commit_failed(
        &mut self,
        completed: &CompletedCheckpoint,
        reason: String,
        kind: FailureKind,
    ) -> Decision {
        self.failed(
            (completed.epoch, completed.is_final, completed.triggered_at),
            reason,
            kind,
            completed.receipts.clone(),
        )
    }

    fn trigger(&mut self, now: Instant, is_final: bool) -> Decision {
        let epoch = self.next_epoch;
        self.next_epoch = Epoch(epoch.0 + 1);
        self.last_trigger = now;
        self.final_triggered = is_final;
        self.pending = Some(Pending {
            epoch,
            is_final,
            triggered_at: now,
            states: BTreeMap::new(),
            receipts: BTreeMap::new(),
        });
        Decision::Trigger {
            epoch,
            is_final,
            at: now,
        }
    }

    fn fail_pending(&mut self, now: Instant, reason: String, kind: FailureKind) -> Decision {
        let pending = self.pending.take().expect("a pending checkpoint");
        self.last_end = Some(now);
        self.failed(
            (pending.epoch, pending.is_final, pending.triggered_at),
            reason,
            kind,
            pending.receipts,
        )
    }

    /// Checkpoint `(epoch, is_final, triggered_at)` failed.
    fn failed(
        &mut self,
        (epoch, is_final, triggered_at): (Epoch, bool, Instant),
        reason: String,
        kind: FailureKind,
        receipts: BTreeMap<SubtaskId, AckReceipt>,
    ) -> Decision {
        self.failed_in_a_row += 1;
        if is_final {
            // Triggered again at the interval: the sources wait for it.
            self.final_triggered = false;
            self.final_failed = true;
        }
        Decision::Abort(FailedCheckpoint {
            epoch,
            is_final,
            triggered_at,
            reason,
            kind,
            failed_in_a_row: self.failed_in_a_row,
            fail_over: !is_final && self.failed_in_a_row > self.config.tolerable_failures,
            receipts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_protocol::{KeyGroupRange, TaskAck, VertexId};

    fn task(vertex: u32, index: u32) -> SubtaskId {
        SubtaskId {
            vertex: VertexId(vertex),
            index,
        }
    }

    fn ack(epoch: u64, t: SubtaskId) -> WorkerEvent {
        WorkerEvent::Ack(TaskAck {
            epoch: Epoch(epoch),
            task: t,
            state: SubtaskState {
                subtask: t.index,
                key_groups: KeyGroupRange::new(0, 0),
                files: vec![],
                operator_state: None,
            },
            timing: Default::default(),
        })
    }

    fn tracker(t0: Instant) -> CheckpointTracker {
        let config = CheckpointConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            min_pause: Duration::from_millis(500),
            tolerable_failures: 2,
        };
        CheckpointTracker::new(config, [task(0, 0), task(1, 0)], [task(0, 0)], Epoch(1), t0)
    }

    fn secs(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    /// `next_due` is exactly when `tick` next decides: never earlier (the
    /// driver would wake for nothing), never later (it would decide late).
    #[test]
    fn next_due_is_exactly_when_tick_decides() {
        let t0 = Instant::now();
        let mut tracker = tracker(t0);
        let just_before = |at: Instant| at - Duration::from_millis(1);
        let due = tracker.next_due().unwrap();
        assert_eq!(due, secs(t0, 1.0));
        assert_eq!(tracker.tick(just_before(due)), None);
        assert!(matches!(tracker.tick(due), Some(Decision::Trigger { .. })));
        // In flight: its timeout.
        let due = tracker.next_due().unwrap();
        assert_eq!(due, secs(t0, 6.0));
        assert_eq!(tracker.tick(just_before(due)), None);
        // Completed late: the minimum pause decides.
        tracker.on_event(ack(1, task(0, 0)), secs(t0, 1.8));
        tracker.on_event(ack(1, task(1, 0)), secs(t0, 1.8));
        let due = tracker.next_due().unwrap();
        assert_eq!(due, secs(t0, 2.3));
        assert_eq!(tracker.tick(just_before(due)), None);
        assert!(matches!(tracker.tick(due), Some(Decision::Trigger { .. })));
        // Timed out at its deadline.
        let due = tracker.next_due().unwrap();
        assert!(matches!(tracker.tick(due), Some(Decision::Abort(_))));
        // The sources are done: the final checkpoint is due at once, and
        // once it is in flight only its timeout is.
        let now = secs(t0, 7.4);
        let decision = tracker.on_event(WorkerEvent::SourceFinished { task: task(0, 0) }, now);
        assert!(matches!(
            decision,
            Some(Decision::Trigger { is_final: true, .. })
        ));
        assert_eq!(tracker.next_due(), Some(now + Duration::from_secs(5)));
        tracker.on_event(ack(3, task(0, 0)), secs(t0, 7.5));
        tracker.on_event(ack(3, task(1, 0)), secs(t0, 7.5));
        assert_eq!(tracker.next_due(), None);
    }

    #[test]
    fn triggers_on_the_interval_and_completes_when_every_task_acked() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        assert_eq!(t.tick(secs(t0, 0.5)), None);
        let Some(Decision::Trigger {
            epoch, is_final, ..
        }) = t.tick(secs(t0, 1.0))
        else {
            panic!("expected a trigger")
        };
        assert_eq!((epoch, is_final), (Epoch(1), false));
        // At most one in flight.
        assert_eq!(t.tick(secs(t0, 2.5)), None);
        assert_eq!(t.on_event(ack(1, task(0, 0)), secs(t0, 2.6)), None);
        assert_eq!(
            t.on_event(ack(1, task(0, 0)), secs(t0, 2.6)),
            None,
            "duplicates count once"
        );
        let Some(Decision::Complete(done)) = t.on_event(ack(1, task(1, 0)), secs(t0, 2.7)) else {
            panic!("expected completion")
        };
        assert_eq!(done.epoch, Epoch(1));
        assert_eq!(done.states.len(), 2);
        // Minimum pause after the end, though the interval has passed.
        assert_eq!(t.tick(secs(t0, 3.0)), None);
        assert!(matches!(
            t.tick(secs(t0, 3.2)),
            Some(Decision::Trigger {
                epoch: Epoch(2),
                ..
            })
        ));
    }

    #[test]
    fn an_adopted_job_checkpoints_at_once() {
        let t0 = Instant::now() + Duration::from_secs(5);
        let mut t = tracker(t0);
        assert_eq!(t.tick(t0), None);
        t.due_now(t0);
        assert!(matches!(
            t.tick(t0),
            Some(Decision::Trigger {
                epoch: Epoch(1),
                ..
            })
        ));
    }

    #[test]
    fn stale_and_foreign_acks_are_ignored() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        t.tick(secs(t0, 1.0));
        assert_eq!(t.on_event(ack(0, task(0, 0)), secs(t0, 1.1)), None);
        assert_eq!(t.on_event(ack(1, task(9, 9)), secs(t0, 1.1)), None);
        assert_eq!(t.pending(), Some(Epoch(1)));
    }

    #[test]
    fn timeouts_and_declines_abort() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        t.tick(secs(t0, 1.0));
        assert!(matches!(
            t.tick(secs(t0, 6.0)),
            Some(Decision::Abort(FailedCheckpoint {
                epoch: Epoch(1),
                fail_over: false,
                ..
            }))
        ));
        let trigger = t.tick(secs(t0, 7.0));
        assert!(matches!(
            trigger,
            Some(Decision::Trigger {
                epoch: Epoch(2),
                ..
            })
        ));
        let declined = WorkerEvent::Declined {
            epoch: Epoch(2),
            task: task(1, 0),
            reason: "disk full".into(),
            kind: FailureKind::Task,
        };
        let Some(Decision::Abort(failed)) = t.on_event(declined, secs(t0, 7.1)) else {
            panic!("expected abort")
        };
        assert_eq!(failed.epoch, Epoch(2));
        assert!(failed.reason.contains("disk full"));
        assert_eq!((failed.failed_in_a_row, failed.fail_over), (2, false));
    }

    fn storage_decline(epoch: u64) -> WorkerEvent {
        WorkerEvent::Declined {
            epoch: Epoch(epoch),
            task: task(1, 0),
            reason: "writing keyed.state: connection refused".into(),
            kind: FailureKind::StorageUnavailable,
        }
    }

    #[test]
    fn more_failures_in_a_row_than_tolerated_fail_the_job_over() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let mut outcomes = Vec::new();
        // Checkpoints keep being triggered at the interval while they fail.
        for (n, at) in [1.0, 2.0, 3.0].into_iter().enumerate() {
            let Some(Decision::Trigger { epoch, .. }) = t.tick(secs(t0, at)) else {
                panic!("checkpoint {n} is triggered at {at} s")
            };
            let Some(Decision::Abort(failed)) =
                t.on_event(storage_decline(epoch.0), secs(t0, at + 0.1))
            else {
                panic!("expected abort")
            };
            assert_eq!(failed.kind, FailureKind::StorageUnavailable);
            outcomes.push((failed.failed_in_a_row, failed.fail_over));
        }
        // Two tolerated; the third in a row fails the job over.
        assert_eq!(outcomes, [(1, false), (2, false), (3, true)]);
    }

    #[test]
    fn a_completed_checkpoint_ends_the_failures_in_a_row() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        for at in [1.0, 2.0] {
            t.tick(secs(t0, at));
            let epoch = t.pending().unwrap();
            t.on_event(storage_decline(epoch.0), secs(t0, at + 0.1));
        }
        assert_eq!(t.failed_in_a_row(), 2);
        let Some(Decision::Trigger { epoch, .. }) = t.tick(secs(t0, 3.0)) else {
            panic!("expected a trigger")
        };
        t.on_event(ack(epoch.0, task(0, 0)), secs(t0, 3.1));
        let Some(Decision::Complete(_)) = t.on_event(ack(epoch.0, task(1, 0)), secs(t0, 3.2))
        else {
            panic!("expected completion")
        };
        t.on_committed();
        assert_eq!(t.failed_in_a_row(), 0);
        t.tick(secs(t0, 4.0));
        let Some(Decision::Abort(failed)) =
            t.on_event(storage_decline(t.pending().unwrap().0), secs(t0, 4.1))
        else {
            panic!("expected abort")
        };
        assert_eq!((failed.failed_in_a_row, failed.fail_over), (1, false));
    }

    #[test]
    fn a_checkpoint_whose_commit_failed_counts_as_failed() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let Some(Decision::Trigger { epoch, .. }) = t.tick(secs(t0, 1.0)) else {
            panic!("expected a trigger")
        };
        t.on_event(ack(epoch.0, task(0, 0)), secs(t0, 1.1));
        let Some(Decision::Complete(done)) = t.on_event(ack(epoch.0, task(1, 0)), secs(t0, 1.2))
        else {
            panic!("expected completion")
        };
        let Decision::Abort(failed) = t.on_commit_failed(
            &done,
            "writing manifest.json".into(),
            FailureKind::StorageUnavailable,
        ) else {
            panic!("expected abort")
        };
        assert_eq!((failed.epoch, failed.failed_in_a_row), (epoch, 1));
    }

    #[test]
    fn finished_sources_trigger_the_final_checkpoint_at_once() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let finished = WorkerEvent::SourceFinished { task: task(0, 0) };
        let Some(Decision::Trigger {
            epoch, is_final, ..
        }) = t.on_event(finished, secs(t0, 0.1))
        else {
            panic!("expected the final trigger")
        };
        assert_eq!((epoch, is_final), (Epoch(1), true));
        t.on_event(ack(1, task(0, 0)), secs(t0, 0.2));
        let Some(Decision::Complete(done)) = t.on_event(ack(1, task(1, 0)), secs(t0, 0.3)) else {
            panic!("expected completion")
        };
        assert!(done.is_final);
        assert_eq!(
            t.tick(secs(t0, 10.0)),
            None,
            "nothing after the final checkpoint"
        );
    }

    #[test]
    fn a_failed_final_checkpoint_is_triggered_again_at_the_interval_however_often() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let Some(Decision::Trigger {
            epoch: Epoch(1),
            is_final: true,
            ..
        }) = t.on_event(
            WorkerEvent::SourceFinished { task: task(0, 0) },
            secs(t0, 0.1),
        )
        else {
            panic!("expected the final trigger")
        };
        // Timed out (5 s): aborted, never failed over.
        let Some(Decision::Abort(failed)) = t.tick(secs(t0, 5.1)) else {
            panic!("expected abort")
        };
        assert!(failed.is_final && !failed.fail_over);
        // Far more failures than tolerated (2): each is triggered again,
        // once the interval and the minimum pause have passed.
        let mut at = 5.1;
        for epoch in 2..=6 {
            assert_eq!(t.tick(secs(t0, at + 0.4)), None, "the minimum pause first");
            let Some(Decision::Trigger {
                epoch: triggered,
                is_final: true,
                ..
            }) = t.tick(secs(t0, at + 0.5))
            else {
                panic!("final checkpoint {epoch} is triggered again")
            };
            assert_eq!(triggered, Epoch(epoch));
            let Some(Decision::Abort(failed)) =
                t.on_event(storage_decline(epoch), secs(t0, at + 0.6))
            else {
                panic!("expected abort")
            };
            assert!(failed.is_final && !failed.fail_over);
            at += 1.0;
        }
        // Storage is back: the next one completes, and nothing follows it.
        let Some(Decision::Trigger { epoch, .. }) = t.tick(secs(t0, at + 0.5)) else {
            panic!("expected a trigger")
        };
        t.on_event(ack(epoch.0, task(0, 0)), secs(t0, at + 0.6));
        let Some(Decision::Complete(done)) =
            t.on_event(ack(epoch.0, task(1, 0)), secs(t0, at + 0.7))
        else {
            panic!("expected completion")
        };
        assert!(done.is_final);
        assert_eq!(t.tick(secs(t0, at + 10.0)), None);
    }

    #[test]
    fn restarting_regions_abort_the_checkpoint_in_flight_and_hold_the_next() {
        let t0 = Instant::now();
        let mut tracker = tracker(t0);
        assert!(matches!(
            tracker.tick(secs(t0, 1.0)),
            Some(Decision::Trigger { .. })
        ));
        tracker.on_event(ack(1, task(1, 0)), secs(t0, 1.1));
        let aborted = tracker
            .regions_restarting(&[task(0, 0)], "region 0 restarts".into())
            .unwrap();
        let Some(Decision::Abort(failed)) = aborted else {
            panic!("the checkpoint in flight is aborted: {aborted:?}");
        };
        assert_eq!(failed.epoch, Epoch(1));
        assert!(!failed.fail_over);
        assert_eq!(
            failed.failed_in_a_row, 0,
            "a regional restart is no checkpoint failure"
        );
        // A late ack of the aborted checkpoint changes nothing; nothing is due.
        assert_eq!(tracker.on_event(ack(1, task(0, 0)), secs(t0, 1.2)), None);
        assert_eq!(tracker.next_due(), None);
        assert_eq!(tracker.tick(secs(t0, 30.0)), None);
        // The old attempt's last word, after the restart began, is ignored
        // once the regions run.
        tracker.on_event(
            WorkerEvent::SourceFinished { task: task(0, 0) },
            secs(t0, 2.0),
        );
        // Running again: due at once, under a new epoch.
        tracker.regions_running(&[task(0, 0)], secs(t0, 31.0));
        let Some(Decision::Trigger {
            epoch, is_final, ..
        }) = tracker.tick(secs(t0, 31.0))
        else {
            panic!("a checkpoint is due once the regions run");
        };
        assert_eq!((epoch, is_final), (Epoch(2), false));
    }

    #[test]
    fn regions_cannot_restart_alone_after_the_final_checkpoint_was_triggered() {
        let t0 = Instant::now();
        let mut tracker = tracker(t0);
        let decision = tracker.on_event(WorkerEvent::SourceFinished { task: task(0, 0) }, t0);
        assert!(matches!(
            decision,
            Some(Decision::Trigger { is_final: true, .. })
        ));
        assert_eq!(
            tracker.regions_restarting(&[task(0, 0)], "r".into()),
            Err(FinalCheckpointTriggered)
        );
        assert!(!tracker.is_held());
    }
}
