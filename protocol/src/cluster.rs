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
    /// The attempt: increases with every (re)deployment of the job or of
    /// one of its regions, so no two deployments of a job share one (the
    /// data channels of each are told apart by it).
    pub attempt: u32,
    /// The pipelined region this deployment runs, for a job whose graph
    /// falls apart into several (each region is deployed, and restarted,
    /// on its own); `None`: every subtask placed on the worker.
    #[serde(default)]
    pub region: Option<RegionPart>,
    /// What to build.
    pub spec: JobSpec,
    /// The graph the coordinator validated; a worker checks that it built the same.
    pub graph: JobGraph,
    /// The worker of every subtask this deployment runs (of its region,
    /// when it has one).
    pub placement: Vec<TaskPlacement>,
    /// Every worker of the job (replicas go to them and its spares).
    pub peers: Vec<Peer>,
    /// Checkpointing, when on.
    pub checkpoints: Option<DeploymentCheckpoints>,
    /// Keyed-state backend.
    pub state_backend: BackendKind,
    /// Records per batch.
    pub batch_size: usize,
    /// Peers each worker pushes its checkpoint files to.
    pub replicas: u32,
    /// Workers outside the deployment with a free slot, which could take a
    /// lost slot's place: replicas go to them first, so that a lost slot
    /// moves to a worker holding its state without pushing a survivor out
    /// of its own. The deployment's workers dial them.
    #[serde(default)]
    pub spares: Vec<Peer>,
}

/// Which pipelined region a deployment runs, and of which attempt of the
/// job: the attempt whose checkpoint driver sends it commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionPart {
    /// The region's index in
    /// [`pipelined_regions`](crate::regions::pipelined_regions).
    pub region: u32,
    /// The job's attempt: its commands (checkpoint triggers, commits) name
    /// it, whichever attempt the region runs.
    pub job_attempt: u32,
    /// The region restarted on its own while the job's other regions kept
    /// running (regional failover): a clean-up at start must touch only
    /// what this region's subtasks left, never another's pending output.
    #[serde(default)]
    pub others_running: bool,
}

impl Deployment {
    /// The attempt whose commands this deployment follows.
    pub fn command_attempt(&self) -> u32 {
        self.region.map_or(self.attempt, |r| r.job_attempt)
    }

    /// The region this deployment runs, if the job has several.
    pub fn region_index(&self) -> Option<u32> {
        self.region.map(|r| r.region)
    }

    /// The workers `worker` pushes replicas to while all take them: the
    /// first `replicas` of its [`replica_candidates`].
    pub fn replica_peers(&self, worker: WorkerId) -> Vec<WorkerId> {
        let mut peers = self.replica_candidates(worker);
        peers.truncate(self.replicas as usize);
        peers
    }

    /// Every worker `worker` may push replicas to, best first
    /// ([`replica_candidates`]).
    pub fn replica_candidates(&self, worker: WorkerId) -> Vec<WorkerId> {
        let ids: Vec<WorkerId> = self.peers.iter().map(|p| p.worker).collect();
        let spares: Vec<WorkerId> = self.spares.iter().map(|p| p.worker).collect();
        replica_candidates(&ids, &spares, worker, self.replicas)
    }

    /// The worker running `subtask` of `vertex`, if placed.
    pub fn worker_of(&self, vertex: u32, subtask: u32) -> Option<WorkerId> {
        self.placement
            .iter()
            .find(|p| p.vertex == vertex && p.subtask == subtask)
            .map(|p| p.worker)
    }
}

/// The files of checkpoint `manifest` that `spare` holds as a replica once
/// it caught up: those of every subtask whose worker (under `placement`)
/// pushes to `spare` among its first `replicas` [`replica_candidates`]
/// (pure). Each file once.
pub fn catch_up_files(
    manifest: &crate::CheckpointManifest,
    placement: &[TaskPlacement],
    deployed: &[WorkerId],
    spares: &[WorkerId],
    spare: WorkerId,
    replicas: u32,
) -> Vec<crate::StateFile> {
    let pushes_to_spare = |worker: WorkerId| {
        let mut candidates = replica_candidates(deployed, spares, worker, replicas);
        candidates.truncate(replicas as usize);
        candidates.contains(&spare)
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut files = Vec::new();
    for operator in &manifest.operators {
        for (index, state) in operator.subtasks.iter().enumerate() {
            let worker = placement
                .iter()
                .find(|p| p.vertex == operator.vertex.0 && p.subtask == index as u32)
                .map(|p| p.worker);
            if !worker.is_some_and(pushes_to_spare) {
                continue;
            }
            for file in &state.files {
                if seen.insert(file.path.clone()) {
                    files.push(file.clone());
                }
            }
        }
    }
    files
}

/// The workers `worker` (one of `deployed`) may push its checkpoint files
/// to, best first: the spares, starting at a different one for each
/// deployed worker so that several spares share the load; then the
/// deployed workers after `worker` in id order, wrapping around. Never
/// `worker` itself; none when `replicas` is 0. A worker pushes each file
/// to the first `replicas` that take it; the coordinator places a lost
/// slot on the first of them with room, so both call this one function.
pub fn replica_candidates(
    deployed: &[WorkerId],
    spares: &[WorkerId],
    worker: WorkerId,
    replicas: u32,
) -> Vec<WorkerId> {
    let mut deployed = deployed.to_vec();
    deployed.sort();
    deployed.dedup();
    let Some(at) = deployed.iter().position(|w| *w == worker) else {
        return Vec::new();
    };
    if replicas == 0 {
        return Vec::new();
    }
    let mut spares: Vec<WorkerId> = spares
        .iter()
        .copied()
        .filter(|w| deployed.binary_search(w).is_err())
        .collect();
    spares.sort();
    spares.dedup();
    let spread = (0..spares.len()).map(|step| spares[(at + step) % spares.len()]);
    let ring = (1..deployed.len()).map(|step| deployed[(at + step) % deployed.len()]);
    spread.chain(ring).collect()
}

#[cfg(test)]
mod replica_tests {
    use super::*;

    #[test]
    fn a_new_spare_catches_up_on_the_files_of_the_workers_that_push_to_it() {
        use crate::checkpoint::{OperatorState, StateFile, SubtaskState};
        use crate::{Epoch, KeyGroupRange, VertexId};
        let file = |path: &str| StateFile {
            path: path.into(),
            size: 1,
            crc32c: 0,
            key_groups: Vec::new(),
            format: Default::default(),
        };
        let subtask = |index: u32, path: &str| SubtaskState {
            subtask: index,
            key_groups: KeyGroupRange::new(0, 0),
            files: vec![file(path), file("shared/common")],
            operator_state: None,
        };
        let manifest = CheckpointManifest {
            version: crate::checkpoint::MANIFEST_VERSION,
            job: "j".into(),
            epoch: Epoch(4),
            triggered_at_ms: 0,
            completed_at_ms: 0,
            max_parallelism: 128,
            is_final: false,
            leader_term: None,
            savepoint: false,
            operators: vec![OperatorState {
                vertex: VertexId(0),
                name: "sum".into(),
                uid: None,
                parallelism: 2,
                subtasks: vec![subtask(0, "a"), subtask(1, "b")],
            }],
        };
        let placement: Vec<TaskPlacement> = (0..2)
            .map(|s| TaskPlacement {
                vertex: 0,
                subtask: s,
                worker: WorkerId(s + 1),
            })
            .collect();
        let deployed = [WorkerId(1), WorkerId(2)];
        let paths = |spares: &[WorkerId], spare: u32, replicas: u32| -> Vec<String> {
            catch_up_files(
                &manifest,
                &placement,
                &deployed,
                spares,
                WorkerId(spare),
                replicas,
            )
            .into_iter()
            .map(|f| f.path)
            .collect()
        };
        // One spare: every worker pushes to it first; shared files once.
        assert_eq!(paths(&[WorkerId(5)], 5, 1), vec!["a", "shared/common", "b"]);
        // Two spares share the load: each holds one worker's files.
        let two = [WorkerId(5), WorkerId(6)];
        assert_eq!(paths(&two, 5, 1), vec!["a", "shared/common"]);
        assert_eq!(paths(&two, 6, 1), vec!["b", "shared/common"]);
        // Without replicas a spare holds nothing.
        assert!(paths(&[WorkerId(5)], 5, 0).is_empty());
    }

    fn ids(ids: &[u32]) -> Vec<WorkerId> {
        ids.iter().map(|i| WorkerId(*i)).collect()
    }

    #[test]
    fn without_spares_candidates_go_round_the_deployment() {
        let deployed = ids(&[3, 1, 2]);
        assert_eq!(
            replica_candidates(&deployed, &[], WorkerId(1), 1),
            ids(&[2, 3])
        );
        assert_eq!(
            replica_candidates(&deployed, &[], WorkerId(3), 2),
            ids(&[1, 2])
        );
        assert!(replica_candidates(&deployed, &[], WorkerId(9), 1).is_empty());
        assert!(
            replica_candidates(&deployed, &[], WorkerId(1), 0).is_empty(),
            "no replicas, no candidates"
        );
    }

    #[test]
    fn spares_come_first_and_share_the_load() {
        let deployed = ids(&[1, 2, 3]);
        for worker in [1, 2, 3] {
            assert_eq!(
                replica_candidates(&deployed, &ids(&[7]), WorkerId(worker), 1)[0],
                WorkerId(7)
            );
        }
        let two = ids(&[8, 7]);
        let first: Vec<WorkerId> = [1, 2, 3]
            .iter()
            .map(|w| replica_candidates(&deployed, &two, WorkerId(*w), 1)[0])
            .collect();
        assert_eq!(first, ids(&[7, 8, 7]), "alternating");
        assert_eq!(
            replica_candidates(&deployed, &two, WorkerId(2), 1),
            ids(&[8, 7, 3, 1]),
            "then the ring"
        );
        // A spare that is also deployed counts once, as deployed.
        assert_eq!(
            replica_candidates(&deployed, &ids(&[2]), WorkerId(1), 1),
            ids(&[2, 3])
        );
    }

    #[test]
    fn a_deployment_pushes_to_its_first_candidates() {
        let peer = |id: u32| Peer {
            worker: WorkerId(id),
            data_addr: format!("127.0.0.1:{id}"),
        };
        let deployment = |replicas: u32| Deployment {
            deployment_id: String::new(),
            job_number: 1,
            job_id: "j".into(),
            attempt: 1,
            region: None,
            spec: JobSpec {
                job: "j".into(),
                params: Vec::new(),
                parallelism: 2,
                max_parallelism: 128,
                output: None,
            },
            graph: crate::JobGraph::new("j"),
            placement: Vec::new(),
            peers: vec![peer(1), peer(2)],
            checkpoints: None,
            state_backend: BackendKind::Memory,
            batch_size: 1,
            replicas,
            spares: vec![peer(5)],
        };
        assert_eq!(deployment(1).replica_peers(WorkerId(1)), ids(&[5]));
        assert_eq!(deployment(2).replica_peers(WorkerId(2)), ids(&[5, 1]));
        assert_eq!(deployment(9).replica_peers(WorkerId(2)), ids(&[5, 1]));
        assert!(deployment(0).replica_peers(WorkerId(2)).is_empty());
    }
}

/// One running subtask's cumulative figures, as a worker reports them to
/// the coordinator about once a second (for its per-operator rates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFigures {
    /// The job's id.
    pub job_id: String,
    /// The operator's vertex.
    pub vertex: u32,
    /// The subtask.
    pub subtask: u32,
    /// Records received since it started.
    pub records_in: u64,
    /// Records sent downstream since it started.
    pub records_out: u64,
    /// Seconds it was busy since it started.
    pub busy_s: f64,
    /// Seconds it waited for input.
    pub idle_s: f64,
    /// Seconds it waited for room downstream.
    pub backpressured_s: f64,
    /// How full its inputs were when it last looked (0 to 1).
    pub input_fill: f64,
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

impl RestoreTier {
    /// Its name as a metric label (`local`, `peer`, `object_store`).
    pub fn label(self) -> &'static str {
        match self {
            RestoreTier::Local => "local",
            RestoreTier::Peer => "peer",
            RestoreTier::ObjectStore => "object_store",
        }
    }
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

/// Which tier served the restore of one subtask, how long it took and
/// what it fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskRestore {
    /// The vertex.
    pub vertex: u32,
    /// The subtask.
    pub subtask: u32,
    /// The slowest tier any of its files came from.
    pub tier: RestoreTier,
    /// Milliseconds its restore took to fetch and check its files, before
    /// its task opens them (0 from a worker that does not report it).
    #[serde(default)]
    pub duration_ms: u64,
    /// Bytes of its files from each tier. A keyed-state file another
    /// subtask of the same worker read first (restoring at another
    /// parallelism) counts only there.
    #[serde(default)]
    pub bytes: TierBytes,
}

/// Bytes per [`RestoreTier`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierBytes {
    /// From the worker's own copies.
    pub local: u64,
    /// From replicas peers pushed to the worker.
    pub peer: u64,
    /// Downloaded from checkpoint storage.
    pub object_store: u64,
}

impl TierBytes {
    /// Counts `bytes` more from `tier`.
    pub fn add(&mut self, tier: RestoreTier, bytes: u64) {
        *self.of_mut(tier) += bytes;
    }

    /// The bytes from `tier`.
    pub fn of(&self, tier: RestoreTier) -> u64 {
        match tier {
            RestoreTier::Local => self.local,
            RestoreTier::Peer => self.peer,
            RestoreTier::ObjectStore => self.object_store,
        }
    }

    fn of_mut(&mut self, tier: RestoreTier) -> &mut u64 {
        match tier {
            RestoreTier::Local => &mut self.local,
            RestoreTier::Peer => &mut self.peer,
            RestoreTier::ObjectStore => &mut self.object_store,
        }
    }
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
    /// The region it runs, for a job deployed region by region.
    #[serde(default)]
    pub region: Option<RegionPart>,
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
