//! What a job's checkpoints amounted to: counts and figures, the recent
//! checkpoint history (completed and aborted, with causes), and whether the
//! job is waiting for checkpoint storage.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Checkpoints kept in a job's history (the newest ones): enough to show an
/// outage of a minute or two at a 200 ms interval.
pub const HISTORY_LEN: usize = 300;

/// How a checkpoint of the history ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointOutcome {
    /// Complete: its manifest and pointer are written.
    Completed,
    /// Aborted: a task declined, it timed out, or its commit failed.
    Aborted,
}

/// One checkpoint of a job's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Its epoch.
    pub epoch: u64,
    /// How it ended.
    pub outcome: CheckpointOutcome,
    /// Whether it was a final checkpoint.
    pub is_final: bool,
    /// When it was triggered (ms since the Unix epoch).
    pub triggered_at_ms: u64,
    /// From trigger to its end, in milliseconds.
    pub duration_ms: f64,
    /// Its state size in bytes (completed ones).
    pub size_bytes: Option<u64>,
    /// Why it was aborted.
    pub cause: Option<String>,
    /// Whether checkpoint storage caused the abort.
    pub storage_unavailable: bool,
}

/// What a wait for checkpoint storage is holding up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageWaitPhase {
    /// The job runs, but its checkpoints fail on storage.
    Checkpoints,
    /// A restart waits for storage to choose or read its checkpoint.
    Restore,
    /// An attempt waits for storage to list the checkpoints it numbers
    /// its own after, before it is deployed.
    Start,
    /// The job's control record (kept in checkpoint storage by a
    /// standalone coordinator) waits to be written before the job goes on.
    JobRecord,
}

/// A wait for checkpoint storage in progress, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageWait {
    /// What it holds up.
    pub phase: StorageWaitPhase,
    /// When storage first failed (ms since the Unix epoch).
    pub since_ms: u64,
    /// How long it has been failing, in seconds.
    pub waited_s: f64,
    /// The last error, with its causes.
    pub last_error: String,
}

/// An outage of checkpoint storage seen by one job, while it lasts.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    /// What it holds up.
    pub phase: StorageWaitPhase,
    /// When storage first failed.
    pub since: Instant,
    /// The same, as wall-clock milliseconds.
    pub since_ms: u64,
    /// The last error, with its causes.
    pub last_error: String,
}

impl Outage {
    /// Storage failed (again) with `error`: the outage that began earlier
    /// goes on, or one begins now.
    pub fn go_on(outage: &mut Option<Outage>, phase: StorageWaitPhase, error: String) {
        match outage {
            Some(outage) if outage.phase == phase => outage.last_error = error,
            _ => {
                *outage = Some(Outage {
                    phase,
                    since: Instant::now(),
                    since_ms: weir_protocol::time::now_ms(),
                    last_error: error,
                })
            }
        }
    }

    /// How long it has lasted.
    pub fn waited(&self) -> Duration {
        self.since.elapsed()
    }

    /// As the API shows it.
    pub fn report(&self) -> StorageWait {
        StorageWait {
            phase: self.phase,
            since_ms: self.since_ms,
            waited_s: self.waited().as_secs_f64(),
            last_error: self.last_error.clone(),
        }
    }
}

/// What the checkpoints of one run amounted to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointStats {
    /// Checkpoints completed.
    pub completed: u32,
    /// Checkpoints aborted.
    pub aborted: u32,
    /// Time from trigger to commit of each completed checkpoint.
    pub durations: Vec<Duration>,
    /// Total state size of each completed checkpoint, in bytes.
    pub sizes: Vec<u64>,
    /// Bytes each completed checkpoint added: files the checkpoint before
    /// it did not reference (all of them for full checkpoints).
    pub incremental_sizes: Vec<u64>,
    /// The newest checkpoints, oldest first (at most [`HISTORY_LEN`]).
    pub history: VecDeque<CheckpointRecord>,
    /// Checkpoints failed in a row at the end of the run.
    pub failed_in_a_row: u32,
    /// Checkpoint storage failing the checkpoints, while it lasts.
    pub outage: Option<Outage>,
    /// Why the driver failed the job over (more failed checkpoints in a
    /// row than tolerated), and whether storage caused the last of them.
    pub failed_over: Option<(String, weir_protocol::FailureKind)>,
}

impl CheckpointStats {
    /// Adds the figures of a later run.
    pub fn absorb(&mut self, later: CheckpointStats) {
        self.completed += later.completed;
        self.aborted += later.aborted;
        self.durations.extend(later.durations);
        self.sizes.extend(later.sizes);
        self.incremental_sizes.extend(later.incremental_sizes);
        for record in later.history {
            self.remember(record);
        }
        self.failed_in_a_row = later.failed_in_a_row;
        self.outage = later.outage;
        self.failed_over = later.failed_over;
    }

    /// Adds a checkpoint to the history, forgetting the oldest beyond
    /// [`HISTORY_LEN`].
    pub fn remember(&mut self, record: CheckpointRecord) {
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u64) -> CheckpointRecord {
        CheckpointRecord {
            epoch,
            outcome: CheckpointOutcome::Aborted,
            is_final: false,
            triggered_at_ms: 0,
            duration_ms: 1.0,
            size_bytes: None,
            cause: Some("writing x: connection refused".into()),
            storage_unavailable: true,
        }
    }

    #[test]
    fn the_history_keeps_the_newest_checkpoints_across_runs() {
        let mut earlier = CheckpointStats::default();
        for epoch in 0..HISTORY_LEN as u64 {
            earlier.remember(record(epoch));
        }
        let mut later = CheckpointStats::default();
        later.remember(record(1000));
        earlier.absorb(later);
        assert_eq!(earlier.history.len(), HISTORY_LEN);
        assert_eq!(earlier.history.front().unwrap().epoch, 1);
        assert_eq!(earlier.history.back().unwrap().epoch, 1000);
    }

    #[test]
    fn an_outage_keeps_its_start_and_takes_the_latest_error() {
        let mut outage = None;
        Outage::go_on(&mut outage, StorageWaitPhase::Checkpoints, "first".into());
        let since = outage.as_ref().unwrap().since;
        Outage::go_on(&mut outage, StorageWaitPhase::Checkpoints, "second".into());
        let report = outage.as_ref().unwrap();
        assert_eq!(
            (report.since, report.last_error.as_str()),
            (since, "second")
        );
        // Another phase is another wait.
        Outage::go_on(&mut outage, StorageWaitPhase::Restore, "third".into());
        assert_eq!(outage.unwrap().phase, StorageWaitPhase::Restore);
    }
}
