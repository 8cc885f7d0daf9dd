//! The control store: what outlives a coordinator process (DESIGN.md
//! §6.1), and the election that decides which coordinator may write it.
//!
//! A [`ControlPlane`] makes this coordinator leader ([`campaign`]) and
//! hands it a [`ControlStore`] whose writes are fenced by the term it won.
//! Three planes implement both traits:
//!
//! - [`memory::MemoryPlane`]: in this process only; `weir run`, and tests.
//! - [`dir::DirPlane`]: standalone, one coordinator; records kept in
//!   checkpoint storage (a directory or `s3://`), so a coordinator started
//!   again with the same flags resumes every job.
//! - [`etcd::EtcdPlane`]: several coordinators, one leader, elected with an
//!   etcd lease and campaign.
//!
//! What is stored: the id counters (jobs, workers), and per job its spec,
//! settings, attempt and placement, restarts used, the highest checkpoint
//! epoch it triggered, the pointer to its latest completed checkpoint, and
//! its result once it ended. State payloads stay in checkpoint storage.
//!
//! # Contract
//!
//! Every implementation keeps it, and `coordinator/tests/control_store.rs`
//! runs one suite against each:
//!
//! - A write that returns `Ok` is durable: every later [`ControlStore::load`],
//!   from any process and term, sees it.
//! - Writes are fenced: a store's writes succeed only while its term is the
//!   newest. Once a later term exists (another coordinator won the election,
//!   or the standalone coordinator was started again), every write fails
//!   with [`CoordinatorError::Fenced`] and changes nothing.
//! - Terms only grow: a campaign won later has a higher term.
//! - Job records are keyed by number; a put replaces the record.
//!
//! [`campaign`]: ControlPlane::campaign

pub mod dir;
pub mod etcd;
pub mod lease;
pub mod memory;

use crate::error::CoordinatorError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use weir_protocol::cluster::{JobSpec, Peer, RunSettings, TaskPlacement};
use weir_protocol::JobState;

pub use lease::{LeaseClock, LeaseGuard};

/// The highest ids handed out so far: ids never repeat across restarts
/// and leaders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// The last job number.
    pub jobs: u32,
    /// The last worker id.
    pub workers: u32,
}

/// The latest completed checkpoint of a job: it is complete once this
/// pointer is written (before its commit marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPointer {
    /// Its epoch.
    pub epoch: u64,
    /// Whether it is the job's final checkpoint.
    pub is_final: bool,
    /// The term of the leader that completed it.
    pub term: u64,
    /// When it completed, ms since the Unix epoch.
    pub completed_at_ms: u64,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// Finished, Failed or Cancelled.
    pub state: JobState,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Records its sources produced (last attempt).
    pub events_in: u64,
    /// Records its sinks received (last attempt).
    pub records_out: u64,
    /// When it ended, ms since the Unix epoch.
    pub ended_at_ms: u64,
}

/// One job as the control store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredJob {
    /// Its number (in every frame of its deployments); never reused.
    pub number: u32,
    /// Its id (checkpoint directory name).
    pub job_id: String,
    /// What to build.
    pub spec: JobSpec,
    /// How to run it.
    pub settings: RunSettings,
    /// When it was submitted, ms since the Unix epoch.
    pub submitted_at_ms: u64,
    /// The newest epoch in its checkpoint directory before it started: a
    /// restart never resumes from an earlier run's checkpoint.
    pub floor: Option<u64>,
    /// The checkpoint directory its first attempt restored, if any.
    pub initial_restore: Option<String>,
    /// The current (or last) attempt; 0 before the first deployment.
    pub attempt: u32,
    /// Where the current attempt's subtasks run (written before it deploys).
    pub placement: Vec<TaskPlacement>,
    /// The current attempt's workers and their data addresses.
    pub peers: Vec<Peer>,
    /// The spare workers the current attempt pushes replicas to first
    /// ([`Deployment::spares`](weir_protocol::cluster::Deployment::spares)).
    #[serde(default)]
    pub spares: Vec<Peer>,
    /// For a job deployed region by region: the attempt each region of
    /// the current attempt runs (a region restarted on its own runs a
    /// newer one than `attempt`).
    #[serde(default)]
    pub region_attempts: std::collections::BTreeMap<u32, u32>,
    /// Parallelism of the current attempt.
    pub running_parallelism: u32,
    /// Restarts so far.
    pub restarts: u32,
    /// Consecutive failures the restart strategy has counted.
    pub consecutive_failures: u32,
    /// The last failure.
    pub failure: Option<String>,
    /// The highest checkpoint epoch triggered: epochs keep rising across
    /// leaders.
    pub last_epoch: u64,
    /// The latest completed checkpoint.
    pub checkpoint: Option<CheckpointPointer>,
    /// Set once the job ended: a new leader never reruns it.
    pub result: Option<JobResult>,
    /// The savepoint the job was stopped with: from then on it never runs
    /// again (the savepoint's restore commits what its sinks left pending).
    #[serde(default)]
    pub stopped_with_savepoint: Option<String>,
    /// The epoch of a stop-with-savepoint the current attempt triggered
    /// (its sources stop after it): a new leader never adopts such an
    /// attempt unless the stop is recorded as done.
    #[serde(default)]
    pub stop_triggered: Option<u64>,
}

impl StoredJob {
    /// The newest attempt number given out, the job's or a region's: the
    /// next deployment's is higher.
    pub fn newest_attempt(&self) -> u32 {
        self.region_attempts
            .values()
            .copied()
            .fold(self.attempt, u32::max)
    }

    /// A job just submitted.
    pub fn new(number: u32, job_id: String, spec: JobSpec, settings: RunSettings) -> Self {
        Self {
            number,
            job_id,
            spec,
            settings,
            submitted_at_ms: weir_protocol::time::now_ms(),
            floor: None,
            initial_restore: None,
            attempt: 0,
            placement: Vec::new(),
            peers: Vec::new(),
            spares: Vec::new(),
            region_attempts: Default::default(),
            running_parallelism: 0,
            restarts: 0,
            consecutive_failures: 0,
            failure: None,
            last_epoch: 0,
            checkpoint: None,
            result: None,
            stopped_with_savepoint: None,
            stop_triggered: None,
        }
    }
}

/// Everything a new leader reads when its term begins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlState {
    /// The id counters.
    pub counters: Counters,
    /// Every job, by number.
    pub jobs: Vec<StoredJob>,
}

/// Where a coordinator serves: what standbys and the election tell
/// workers and clients about the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorAddress {
    /// The REST API (`host:port`).
    pub api: String,
    /// The worker endpoint (`host:port`).
    pub workers: String,
}

/// The leader as the election knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// Where it serves.
    pub address: CoordinatorAddress,
    /// Its term.
    pub term: u64,
}

/// The control state of one leader's term. See the module documentation
/// for the contract every implementation keeps.
pub trait ControlStore: Send + Sync {
    /// The term this store's writes are fenced by.
    fn term(&self) -> u64;
    /// Everything stored (by this term and earlier ones).
    fn load(&self) -> Result<ControlState, CoordinatorError>;
    /// Replaces the id counters.
    fn put_counters(&self, counters: &Counters) -> Result<(), CoordinatorError>;
    /// Creates or replaces the record of job `job.number`.
    fn put_job(&self, job: &StoredJob) -> Result<(), CoordinatorError>;
    /// Whether the term holds after a write failed with `error`. By
    /// default no: a store that cannot be written may have a new leader
    /// (etcd). A store no other coordinator writes keeps its term through
    /// an outage of the storage under it; the write is tried again later.
    fn survives_failed_write(&self, _error: &CoordinatorError) -> bool {
        false
    }
}

/// A won election: the term, its fenced store, and the guard that says
/// whether the term still holds.
pub struct Leadership {
    /// The term.
    pub term: u64,
    /// The store, fenced by `term`.
    pub store: Arc<dyn ControlStore>,
    /// Whether this coordinator still leads; lost when its lease cannot be
    /// renewed in time.
    pub guard: Arc<LeaseGuard>,
    /// Gives the leadership up at once (for etcd, revokes the lease so a
    /// standby need not wait for it to expire).
    pub resign: Box<dyn FnOnce() + Send>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Leadership(term {})", self.term)
    }
}

/// How a coordinator becomes leader, and where its control state lives.
pub trait ControlPlane: Send + Sync {
    /// For logs: the kind and location.
    fn describe(&self) -> String;
    /// Blocks until this coordinator (serving at `me`) leads.
    fn campaign(&self, me: &CoordinatorAddress) -> Result<Leadership, CoordinatorError>;
    /// The current leader, as far as the plane knows.
    fn leader(&self) -> Result<Option<LeaderInfo>, CoordinatorError>;
    /// The leader's lease (none for a coordinator that is leader alone).
    fn lease(&self) -> Option<Duration>;
}

/// Parses `--ha`: `etcd://HOST:PORT[,HOST:PORT…]` into etcd endpoints.
pub fn parse_etcd_url(url: &str) -> Result<Vec<String>, CoordinatorError> {
    let bad = |problem: &str| CoordinatorError::BadHaUrl {
        url: url.to_owned(),
        problem: problem.to_owned(),
    };
    let rest = url
        .strip_prefix("etcd://")
        .ok_or_else(|| bad("it must start with etcd://"))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(bad("it names no etcd endpoint"));
    }
    rest.split(',')
        .map(|endpoint| {
            let (host, port) = endpoint
                .rsplit_once(':')
                .ok_or_else(|| bad(&format!("'{endpoint}' has no port (HOST:PORT)")))?;
            if host.is_empty() || host.contains('/') {
                return Err(bad(&format!("'{endpoint}' has no host")));
            }
            port.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad(&format!("'{port}' in '{endpoint}' is not a port number")))?;
            Ok(format!("http://{endpoint}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_urls_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_etcd_url("etcd://127.0.0.1:2379,10.0.0.2:2379").unwrap(),
            ["http://127.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        for (url, problem) in [
            ("http://127.0.0.1:2379", "must start with etcd://"),
            ("etcd://", "names no etcd endpoint"),
            ("etcd://localhost", "has no port"),
            ("etcd://:2379", "has no host"),
            ("etcd://h:x", "is not a port number"),
            ("etcd://h:2379,h:0", "is not a port number"),
        ] {
            let error = parse_etcd_url(url).unwrap_err().to_string();
            assert!(error.contains(problem), "{url}: {error}");
        }
    }
}
