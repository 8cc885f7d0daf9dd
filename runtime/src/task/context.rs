//! What a subtask's loop is given ([`TaskContext`], [`TaskInput`],
//! [`TaskCommand`]) and how it ends ([`TaskExit`]), shared by the source
//! and operator loops.

use crate::cancel::CancelToken;
use crate::checkpoint::snapshots::SnapshotSubmitter;
use crate::net::credits::CreditReturn;
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_operators::output::TaskCounters;
use weir_operators::task::TaskSnapshot;
use weir_operators::{Message, OperatorError};
use weir_protocol::{AckTiming, Epoch, KeyGroupRange, SubtaskId, WorkerEvent};

/// How a subtask's loop ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskExit {
    /// It processed all of its input and ended its outputs.
    Finished,
    /// It stopped early: the job was cancelled, or a neighbour task is gone.
    Cancelled,
}

/// What the engine tells one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskCommand {
    /// Sources: take checkpoint `epoch` (closing once it completed if it
    /// is final, suspending if it is a stop-with-savepoint).
    Trigger {
        /// The checkpoint.
        epoch: Epoch,
        /// Whether it is the final one.
        is_final: bool,
        /// Whether the job stops after it (no data after its barrier).
        stop: bool,
    },
    /// Checkpoint `epoch` is complete.
    Completed(Epoch),
}

/// One input channel of an operator subtask.
pub struct TaskInput {
    /// Where its messages arrive.
    pub receiver: Receiver<Message>,
    /// For a channel from another worker: hands credit back to the sender
    /// as messages are consumed.
    pub credits: Option<Arc<CreditReturn>>,
}

impl TaskInput {
    /// An input fed by a channel within this process.
    pub fn local(receiver: Receiver<Message>) -> Self {
        Self {
            receiver,
            credits: None,
        }
    }
}

/// What a subtask's loop works with besides its task.
pub struct TaskContext<'a> {
    /// This subtask.
    pub task: SubtaskId,
    /// Its key groups (empty range for non-keyed operators).
    pub key_groups: KeyGroupRange,
    /// Set when the job is being cancelled.
    pub cancel: &'a CancelToken,
    /// Commands from the engine.
    pub control: &'a Receiver<TaskCommand>,
    /// Wakes an idle source early (its [`SourceWaker`](weir_operators::task::SourceWaker)).
    pub wake: &'a Receiver<()>,
    /// Where snapshots go, when the job checkpoints.
    pub snapshots: Option<&'a SnapshotSubmitter>,
    /// Events to the coordinator, when the job checkpoints.
    pub events: Option<&'a Sender<WorkerEvent>>,
    /// Counters for the job summary.
    pub counters: &'a TaskCounters,
}

impl TaskContext<'_> {
    /// Takes the synchronous part of the task's snapshot of `epoch` (with
    /// `take`, timed) after `alignment` waiting for barriers, and hands it
    /// to the snapshot writer.
    pub(super) fn checkpoint(
        &self,
        epoch: Epoch,
        alignment: Duration,
        take: impl FnOnce() -> Result<TaskSnapshot, OperatorError>,
    ) -> Result<(), OperatorError> {
        let started = Instant::now();
        let snapshot = take()?;
        let timing = AckTiming {
            alignment_us: alignment.as_micros() as u64,
            sync_us: started.elapsed().as_micros() as u64,
            async_us: 0,
        };
        tracing::debug!(
            epoch = epoch.0,
            alignment_us = timing.alignment_us,
            sync_us = timing.sync_us,
            "barrier passed: snapshot taken"
        );
        if let Some(snapshots) = self.snapshots {
            snapshots.submit(epoch, self.task, self.key_groups, snapshot, timing);
        }
        Ok(())
    }
}

/// A send to a vanished downstream task means the job is being torn down,
/// not that this task failed.
pub(super) fn disconnected_is_cancel(
    result: Result<TaskExit, OperatorError>,
) -> Result<TaskExit, OperatorError> {
    match result {
        Err(OperatorError::Disconnected) => Ok(TaskExit::Cancelled),
        other => other,
    }
}
