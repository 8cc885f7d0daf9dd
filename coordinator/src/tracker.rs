//! The checkpoint tracker: when to trigger, complete or abort a checkpoint.
//!
//! Pure decision logic: facts (time passing, acks, declines, finished
//! sources) go in with the current time, decisions come out. The driver
//! does the I/O. At most one checkpoint is in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use weir_protocol::{Epoch, SubtaskId, SubtaskState, WorkerEvent};

/// When checkpoints are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// Time between triggers.
    pub interval: Duration,
    /// A checkpoint not complete after this long is aborted.
    pub timeout: Duration,
    /// Time between the end of one checkpoint and the next trigger.
    pub min_pause: Duration,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
            min_pause: Duration::ZERO,
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
    Abort {
        /// The checkpoint.
        epoch: Epoch,
        /// Why.
        reason: String,
    },
    /// The final checkpoint failed: the job must restart from its last
    /// complete checkpoint.
    FailJob {
        /// Why.
        reason: String,
    },
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
}

#[derive(Debug)]
struct Pending {
    epoch: Epoch,
    is_final: bool,
    triggered_at: Instant,
    states: BTreeMap<SubtaskId, SubtaskState>,
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
    final_triggered: bool,
}

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
        }
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

    /// Time passed: trigger a due checkpoint, or abort one that timed out.
    pub fn tick(&mut self, now: Instant) -> Option<Decision> {
        if let Some(pending) = &self.pending {
            if now.saturating_duration_since(pending.triggered_at) >= self.config.timeout {
                let reason = format!("not complete after {:?}", self.config.timeout);
                return Some(self.fail_pending(now, reason));
            }
            return None;
        }
        if self.final_triggered {
            return None;
        }
        let all_sources_done = self.finished_sources.len() == self.sources.len();
        let interval_due = now.saturating_duration_since(self.last_trigger) >= self.config.interval;
        let pause_over = self
            .last_end
            .is_none_or(|end| now.saturating_duration_since(end) >= self.config.min_pause);
        if all_sources_done || (interval_due && pause_over) {
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
                }))
            }
            WorkerEvent::Declined {
                epoch,
                task,
                reason,
            } => {
                if self.pending() != Some(epoch) {
                    return None;
                }
                Some(self.fail_pending(now, format!("task {task} declined: {reason}")))
            }
            WorkerEvent::SourceFinished { task } => {
                if self.sources.contains(&task) {
                    self.finished_sources.insert(task);
                }
                self.tick(now)
            }
        }
    }

    /// The driver could not write the checkpoint's manifest or marker.
    pub fn on_commit_failed(
        &mut self,
        completed: &CompletedCheckpoint,
        reason: String,
    ) -> Decision {
        if completed.is_final {
            Decision::FailJob {
                reason: format!(
                    "final checkpoint {} could not be committed: {reason}",
                    completed.epoch
                ),
            }
        } else {
            Decision::Abort {
                epoch: completed.epoch,
                reason,
            }
        }
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
        });
        Decision::Trigger {
            epoch,
            is_final,
            at: now,
        }
    }

    fn fail_pending(&mut self, now: Instant, reason: String) -> Decision {
        let pending = self.pending.take().expect("a pending checkpoint");
        self.last_end = Some(now);
        if pending.is_final {
            Decision::FailJob {
                reason: format!("final checkpoint {} failed: {reason}", pending.epoch),
            }
        } else {
            Decision::Abort {
                epoch: pending.epoch,
                reason,
            }
        }
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
        })
    }

    fn tracker(t0: Instant) -> CheckpointTracker {
        let config = CheckpointConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            min_pause: Duration::from_millis(500),
        };
        CheckpointTracker::new(config, [task(0, 0), task(1, 0)], [task(0, 0)], Epoch(1), t0)
    }

    fn secs(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
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
            Some(Decision::Abort {
                epoch: Epoch(1),
                ..
            })
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
        };
        let Some(Decision::Abort { epoch, reason }) = t.on_event(declined, secs(t0, 7.1)) else {
            panic!("expected abort")
        };
        assert_eq!(epoch, Epoch(2));
        assert!(reason.contains("disk full"));
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
    fn a_failed_final_checkpoint_fails_the_job() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        t.on_event(
            WorkerEvent::SourceFinished { task: task(0, 0) },
            secs(t0, 0.1),
        );
        assert!(matches!(
            t.tick(secs(t0, 6.0)),
            Some(Decision::FailJob { .. })
        ));
    }
}
