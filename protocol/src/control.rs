//! Messages between the checkpoint coordinator and the workers running a
//! job's tasks. In one process they travel over channels; between
//! processes, over the control connection.

use crate::checkpoint::TaskAck;
use crate::ids::{Epoch, SubtaskId};
use serde::{Deserialize, Serialize};

/// From the coordinator to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlCommand {
    /// Sources: record your position and emit `Barrier(epoch)`.
    TriggerCheckpoint {
        /// The new checkpoint.
        epoch: Epoch,
        /// The final checkpoint, taken once every source has finished: sources
        /// close their outputs once a final checkpoint completed (a failed one
        /// is triggered again under a new epoch).
        is_final: bool,
        /// A stop-with-savepoint: sources emit nothing after its barrier and
        /// suspend their outputs (no final watermark, no final results);
        /// the job ends once the checkpoint completed and sinks committed.
        #[serde(default)]
        stop: bool,
    },
    /// The checkpoint is complete (its commit marker is written): commit
    /// what it covers (transactional sinks).
    CheckpointCompleted {
        /// The completed checkpoint.
        epoch: Epoch,
    },
    /// The checkpoint will never complete; forget it.
    CheckpointAborted {
        /// The aborted checkpoint.
        epoch: Epoch,
    },
    /// The job cannot go on (for example, its final checkpoint failed):
    /// cancel it so that it restarts from its last complete checkpoint.
    FailJob {
        /// Why.
        reason: String,
    },
}

/// What failed: decides whether waiting for checkpoint storage can help.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The task or the deployment itself failed.
    #[default]
    Task,
    /// Checkpoint storage did not answer or answered with an error (not
    /// "not found" or "corrupt"): the same step may succeed once it is back.
    StorageUnavailable,
}

/// From a worker to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerEvent {
    /// A subtask's part of a checkpoint is durable.
    Ack(TaskAck),
    /// A subtask could not take its part of a checkpoint; the checkpoint
    /// cannot complete.
    Declined {
        /// The checkpoint.
        epoch: Epoch,
        /// The subtask.
        task: SubtaskId,
        /// Why, for logs.
        reason: String,
        /// Whether checkpoint storage failed (the job waits for it) or the
        /// task itself.
        #[serde(default)]
        kind: FailureKind,
    },
    /// A source has emitted all of its input and waits for the final checkpoint.
    SourceFinished {
        /// The source subtask.
        task: SubtaskId,
    },
}
