//! The vocabulary of a cluster: workers, job submissions, deployments and
//! the job lifecycle. Shared by the coordinator (which decides) and the
//! workers (which run what they are given).

use crate::checkpoint::CheckpointManifest;
use crate::graph::JobGraph;
use crate::ids::SubtaskId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A worker as numbered by the coordinator when it registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub u32);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}", self.0)
    }
}

/// Which job to build and with which options: every process builds the
/// same dataflow from it with its compiled-in job registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The registered job's name (`keyed-sum`, `nexmark-q5`, …).
    pub job: String,
    /// `--param` values, as given.
    #[serde(default)]
    pub params: Vec<(String, String)>,
    /// Parallelism of every operator.
    pub parallelism: u32,
    /// Key groups of keyed state.
    pub max_parallelism: u32,
    /// Directory of the file sink (absolute); stdout when absent.
    #[serde(default)]
    pub output: Option<String>,
}

/// Which keyed-state backend the tasks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Heap state, snapshotted copy-on-write.
    #[default]
    Memory,
    /// RocksDB on local disk, incremental checkpoints.
    Rocksdb,
}

/// Where the first attempt of a job resumes from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreFrom {
    /// The beginning.
    #[default]
    Nothing,
    /// The latest complete checkpoint that verifies (the beginning if none).
    Latest,
    /// A checkpoint directory's URL or path.
    Checkpoint(String),
}

/// How the coordinator runs a submitted job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSettings {
    /// Checkpoints go under `{checkpoint root}/{job_id}/`; the job name when absent.
    pub job_id: Option<String>,
    /// Time between checkpoints in milliseconds; 0 turns checkpoints off.
    pub checkpoint_interval_ms: u64,
    /// A checkpoint not complete after this long is aborted.
    pub checkpoint_timeout_ms: u64,
    /// Pause between the end of one checkpoint and the next trigger.
    pub min_pause_ms: u64,
    /// Complete checkpoints kept.
    pub retain: usize,
    /// Keyed-state backend.
    pub state_backend: BackendKind,
    /// Where the first attempt resumes from.
    pub restore: RestoreFrom,
    /// Consecutive failed attempts before the job is Failed.
    pub max_restarts: u32,
    /// Wait before the first restart, doubled per consecutive failure.
    pub restart_backoff_ms: u64,
    /// Records per batch between tasks (four times as many to a task on
    /// another worker).
    pub batch_size: usize,
    /// Peers each worker pushes its checkpoint files to (`state.replicas`).
    pub replicas: u32,
    /// When too few slots are free, run at a lower parallelism (and scale
    /// back up when slots return) instead of failing.
    pub allow_scale_down: bool,
    /// When restoring, drop saved state that no operator of the job takes
    /// (by uid) instead of refusing the submission.
    pub allow_non_restored_state: bool,
    /// Consecutive failed checkpoints tolerated before the job fails over
    /// (restarts from its last complete checkpoint); a failed final
    /// checkpoint is retried instead and never counts.
    pub tolerable_failed_checkpoints: u32,
}

/// The default of [`RunSettings::tolerable_failed_checkpoints`]: a failover
/// cannot bring back checkpoint storage, and the restore after it would
/// wait for the same storage, so an outage is ridden out in place for a
/// while (about a minute at the default 1 s interval); the tolerance ends
/// only where a task keeps failing its snapshots for reasons of its own.
pub const DEFAULT_TOLERABLE_FAILED_CHECKPOINTS: u32 = 60;

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            job_id: None,
            checkpoint_interval_ms: 1000,
            checkpoint_timeout_ms: 60_000,
            min_pause_ms: 0,
            retain: 3,
            state_backend: BackendKind::Memory,
            restore: RestoreFrom::Nothing,
            max_restarts: 5,
            restart_backoff_ms: 100,
            batch_size: 1024,
            replicas: 1,
            allow_scale_down: false,
            allow_non_restored_state: false,
            tolerable_failed_checkpoints: DEFAULT_TOLERABLE_FAILED_CHECKPOINTS,
        }
    }
}

/// A client's request to run a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// What to run.
    pub spec: JobSpec,
    /// How to run it.
    #[serde(default)]
    pub settings: RunSettings,
}

/// Where one subtask runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPlacement {
    /// The vertex.
    pub vertex: u32,
    /// The subtask index.
    pub subtask: u32,
    /// The worker running it.
    pub worker: WorkerId,
}

/// A worker taking part in a deployment, and where it serves data exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The worker.
    pub worker: WorkerId,
    /// Its data-exchange address (`host:port`).
    pub data_addr: String,
}

/// Checkpointing of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentCheckpoints {
    /// Checkpoint storage root URL.
    pub storage_url: String,
    /// Checkpoints go under `{storage_url}/{job_id}/`.
    pub job_id: String,
    /// The checkpoint to restore, already verified by the coordinator.
    pub restore: Option<RestorePoint>,
}

/// A complete checkpoint a deployment resumes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorePoint {
    /// Storage root URL holding it.
    pub storage_url: String,
    /// The job id it was written under.
    pub job_id: String,
    /// Its manifest.
    pub manifest: CheckpointManifest,
}

/// One attempt of a job on a set of workers: what each worker must run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Unique to this deployment, the same on every worker: what its
    /// tasks name their files after (a file sink's hidden files), so that
    /// they can tell files of this deployment from those of earlier ones.
    #[serde(default)]
    pub deployment_id: String,
    /// The coordinator's number for the job (in every data frame).
    pub job_number: u32,
    /// The job's id (checkpoint directory name).
    pub job_id: String,
    /// The attempt: increases with every (re)deployment of the job.
    pub attempt: u32,
    /// What to build.
    pub spec: JobSpec,
    /// The graph the coordinator validated; a worker checks that it built the same.
    pub graph: JobGraph,
    /// Every subtask's worker.
    pub placement: Vec<TaskPlacement>,
    /// Every worker of the deployment.
    pub peers: Vec<Peer>,
    /// Checkpointing, when on.
    pub checkpoints: Option<DeploymentCheckpoints>,
    /// Keyed-state backend.
    pub state_backend: BackendKind,
    /// Records per batch.
    pub batch_size: usize,
    /// Peers each worker pushes its checkpoint files to.
    pub replicas: u32,
}

impl Deployment {
    /// The peers `worker` pushes replicas to: the next `replicas` workers
    /// of the deployment in id order, wrapping around.
    pub fn replica_peers(&self, worker: WorkerId) -> Vec<WorkerId> {
        let mut ids: Vec<WorkerId> = self.peers.iter().map(|p| p.worker).collect();
        ids.sort();
        replica_ring(&ids, worker, self.replicas)
    }

    /// The worker running `subtask` of `vertex`, if placed.
    pub fn worker_of(&self, vertex: u32, subtask: u32) -> Option<WorkerId> {
        self.placement
            .iter()
            .find(|p| p.vertex == vertex && p.subtask == subtask)
            .map(|p| p.worker)
    }
}

/// The `replicas` workers after `worker` in `ids` (sorted), wrapping
/// around, never `worker` itself.
pub fn replica_ring(ids: &[WorkerId], worker: WorkerId, replicas: u32) -> Vec<WorkerId> {
    let Some(at) = ids.iter().position(|w| *w == worker) else {
        return Vec::new();
    };
    (1..ids.len())
        .map(|step| ids[(at + step) % ids.len()])
        .take(replicas as usize)
        .collect()
}

/// Which copy of a subtask's checkpoint files a restore read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreTier {
    /// The worker's own copy of a snapshot it took.
    Local,
    /// A replica a peer pushed to the worker at checkpoint time.
    Peer,
    /// The durable copy in checkpoint storage.
    ObjectStore,
}

impl fmt::Display for RestoreTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestoreTier::Local => "local",
            RestoreTier::Peer => "peer",
            RestoreTier::ObjectStore => "object store",
        })
    }
}

/// Which tier served the restore of one subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskRestore {
    /// The vertex.
    pub vertex: u32,
    /// The subtask.
    pub subtask: u32,
    /// The slowest tier any of its files came from.
    pub tier: RestoreTier,
}

/// What a worker reports about one of its deployments when it registers
/// with a (new) leader: enough for the leader to adopt the running attempt
/// instead of restarting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentReport {
    /// The job's number.
    pub job_number: u32,
    /// The attempt.
    pub attempt: u32,
    /// Every local subtask runs (its state restored).
    pub started: bool,
    /// Which tier served each restored local subtask.
    #[serde(default)]
    pub restored: Vec<SubtaskRestore>,
    /// Local sources that have emitted all of their input.
    #[serde(default)]
    pub finished_sources: Vec<SubtaskId>,
    /// Whether the sources were told to take the final checkpoint (after
    /// which they close, so no other checkpoint can be taken).
    #[serde(default)]
    pub final_triggered: bool,
    /// How its part ended, if it has.
    #[serde(default)]
    pub ended: Option<DeploymentOutcome>,
}

/// How a worker's part of a deployment ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentOutcome {
    /// Every local subtask finished.
    Finished {
        /// Records the local sources produced.
        events_in: u64,
        /// Records the local sinks received.
        records_out: u64,
    },
    /// A local subtask failed, or the deployment could not start.
    Failed {
        /// The error and its causes, for status and logs.
        error: String,
        /// Whether checkpoint storage failed (then the coordinator waits for
        /// it before it redeploys) or the deployment itself.
        #[serde(default)]
        kind: crate::control::FailureKind,
    },
    /// The deployment was cancelled.
    Cancelled,
}

/// The lifecycle of a job on the coordinator. Which transitions are
/// allowed is declared by the coordinator's job state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Accepted, not yet placed.
    Created,
    /// Subtasks being placed and deployed.
    Scheduling,
    /// Every worker runs its subtasks.
    Running,
    /// An attempt failed; the next one is being prepared.
    Recovering,
    /// A cancel was requested; workers are stopping.
    Cancelling,
    /// Done: all input processed and committed.
    Finished,
    /// Given up (restart strategy exhausted, or the job cannot run).
    Failed,
    /// Cancelled by a client.
    Cancelled,
}

impl JobState {
    /// Whether the job will never change state again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Finished | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
