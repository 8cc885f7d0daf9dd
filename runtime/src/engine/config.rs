//! What a run of the engine is given, and what it reports.

use crate::checkpoint::replicas::StateReplicas;
use crate::checkpoint::replication::Replication;
use crate::metrics::WorkerMetrics;
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;
use weir_protocol::cluster::SubtaskRestore;
use weir_protocol::{CheckpointManifest, ControlCommand, WorkerEvent};
use weir_state::{CheckpointStorage, MemoryBackend, StateBackend};

/// Checkpointing for one run of a job: where state goes, and the channels
/// to and from the checkpoint coordinator.
pub struct CheckpointRun {
    /// The job's id: its checkpoints live under `{storage}/{job_id}/`.
    pub job_id: String,
    /// Checkpoint storage.
    pub storage: CheckpointStorage,
    /// Commands from the coordinator (trigger, complete).
    pub commands: Receiver<ControlCommand>,
    /// Events to the coordinator (acks, declines, finished sources).
    pub events: Sender<WorkerEvent>,
    /// The checkpoint to resume from, if any.
    pub restore: Option<RestoreSource>,
    /// Local copies and peer replicas of what the tasks upload.
    pub replication: Option<Arc<Replication>>,
}

/// A complete checkpoint to resume from, and where its files are.
#[derive(Debug, Clone)]
pub struct RestoreSource {
    /// The storage holding it.
    pub storage: CheckpointStorage,
    /// The job id it was written under.
    pub job_id: String,
    /// Its manifest.
    pub manifest: CheckpointManifest,
    /// Local copies (own and peer replicas) to read before the storage.
    pub replicas: Option<Arc<StateReplicas>>,
}

/// How the engine runs jobs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Records per batch sent between tasks (four times as many to a task
    /// on another worker).
    pub batch_size: usize,
    /// Messages (batches) a channel holds before its producer waits.
    pub channel_capacity: usize,
    /// Where keyed state lives.
    pub state_backend: Arc<dyn StateBackend>,
    /// Threads writing snapshots to checkpoint storage.
    pub snapshot_threads: usize,
    /// Where the tasks' figures are exported.
    pub metrics: WorkerMetrics,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            batch_size: 1024,
            channel_capacity: 16,
            state_backend: Arc::new(MemoryBackend),
            snapshot_threads: 2,
            metrics: WorkerMetrics::default(),
        }
    }
}

/// What a finished job did.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport {
    /// Name of the job.
    pub job: String,
    /// Records produced by the sources.
    pub events_in: u64,
    /// Records received by the sinks.
    pub records_out: u64,
    /// Wall-clock time from start to the last task ending.
    pub elapsed: Duration,
}

impl JobReport {
    /// Source records per second of elapsed time.
    pub fn events_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.events_in as f64 / secs
        } else {
            0.0
        }
    }
}

/// Called once every local subtask of a deployment is running, with the
/// tier each restored subtask's state came from.
pub type OnRunning = Arc<dyn Fn(&[SubtaskRestore]) + Send + Sync>;
