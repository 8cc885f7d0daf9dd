//! What a job's checkpoints amounted to: counts and figures, the recent
//! checkpoint history (completed and aborted, with causes, and each
//! subtask's part), whether the job is waiting for checkpoint storage, and
//! its recent restarts.

use crate::tracker::AckReceipt;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Checkpoints kept in a job's history (the newest ones): enough to show an
/// outage of a minute or two at a 200 ms interval.
pub const HISTORY_LEN: usize = 300;

/// The newest checkpoints of the history that keep their per-subtask
/// details (as Flink's web UI keeps ten): the details of a job at high
/// parallelism would otherwise make the history large.
pub const DETAILED_LEN: usize = 20;

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
    /// Bytes it added: files the checkpoint before it did not reference
    /// (completed ones; all of its files for a full checkpoint).
    #[serde(default)]
    pub incremental_size_bytes: Option<u64>,
    /// Why it was aborted.
    pub cause: Option<String>,
    /// Whether checkpoint storage caused the abort.
    pub storage_unavailable: bool,
    /// Each subtask's part, in subtask order, for the subtasks that acked
    /// (only for the newest [`DETAILED_LEN`] checkpoints).
    #[serde(default)]
    pub subtasks: Vec<SubtaskCheckpoint>,
}

/// One subtask's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskCheckpoint {
    /// Its operator's name.
    pub operator: String,
    /// Its operator's vertex id.
    pub vertex: u32,
    /// Its index.
    pub subtask: u32,
    /// From the trigger to its ack, in milliseconds.
    pub acked_after_ms: f64,
    /// The bytes of its state files.
    pub size_bytes: u64,
    /// Waiting for barriers on all of its inputs, in milliseconds.
    pub alignment_ms: f64,
    /// The synchronous part of its snapshot.
    pub sync_ms: f64,
    /// Writing its files to checkpoint storage.
    pub async_ms: f64,
}

/// Restarts kept in a job's restart history (the newest ones).
pub const RESTARTS_KEPT: usize = 100;

/// What a restart restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartScope {
    /// The whole job: a new job attempt.
    Global,
    /// Only the pipelined regions that lost a task.
    Regional,
}

/// One restart of a job, as `GET /v1/jobs/{id}/exceptions` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestartRecord {
    /// When the failure was detected (ms since the Unix epoch).
    pub detected_at_ms: u64,
    /// What failed, with its causes.
    pub cause: String,
    /// What restarted.
    pub scope: RestartScope,
    /// The job attempt that failed (a regional restart keeps it running).
    pub attempt: u32,
    /// For a regional restart: the regions restarted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<u32>,
    /// From detection to every restarted subtask running, once they run.
    pub recovery_ms: Option<f64>,
    /// The tier each restored subtask's state came from, once they run.
    #[serde(default)]
    pub restored: Vec<weir_protocol::cluster::SubtaskRestore>,
    /// It never ran: a global restart followed before it did.
    #[serde(default)]
    pub superseded: bool,
}

impl CheckpointRecord {
    /// Each subtask's part of checkpoint `epoch`, from its acks
    /// (`receipts`) and states, in subtask order.
    pub fn subtask_details(
        graph: &weir_protocol::JobGraph,
        triggered_at: Instant,
        receipts: &std::collections::BTreeMap<weir_protocol::SubtaskId, AckReceipt>,
        states: &std::collections::BTreeMap<weir_protocol::SubtaskId, weir_protocol::SubtaskState>,
    ) -> Vec<SubtaskCheckpoint> {
        let ms = |us: u64| us as f64 / 1000.0;
        receipts
            .iter()
            .map(|(task, receipt)| SubtaskCheckpoint {
                operator: graph
                    .vertices
                    .get(task.vertex.index())
                    .map_or_else(String::new, |v| v.name.clone()),
                vertex: task.vertex.0,
                subtask: task.index,
                acked_after_ms: receipt
                    .at
                    .saturating_duration_since(triggered_at)
                    .as_secs_f64()
                    * 1000.0,
                size_bytes: states
                    .get(task)
                    .map_or(0, |s| s.files.iter().map(|f| f.size).sum()),
                alignment_ms: ms(receipt.timing.alignment_us),
                sync_ms: ms(receipt.timing.sync_us),
                async_ms: ms(receipt.timing.async_us),
            })
            .collect()
    }
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
        for record in later.history {
            self.remember(record);
        }
        self.failed_in_a_row = later.failed_in_a_row;
        self.outage = later.outage;
        self.failed_over = later.failed_over;
    }

    /// Adds a checkpoint to the history, forgetting the oldest beyond
    /// [`HISTORY_LEN`] and the details of those beyond [`DETAILED_LEN`].
    pub fn remember(&mut self, record: CheckpointRecord) {
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(record);
        if let Some(undetailed) = self.history.len().checked_sub(DETAILED_LEN + 1) {
            self.history[undetailed].subtasks = Vec::new();
        }
    }

    /// The completed checkpoints of the history, oldest first.
    pub fn completed(&self) -> impl Iterator<Item = &CheckpointRecord> {
        self.history
            .iter()
            .filter(|r| r.outcome == CheckpointOutcome::Completed)
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
            incremental_size_bytes: None,
            cause: Some("writing x: connection refused".into()),
            storage_unavailable: true,
            subtasks: vec![SubtaskCheckpoint {
                operator: "sum".into(),
                vertex: 1,
                subtask: 0,
                acked_after_ms: 2.0,
                size_bytes: 10,
                alignment_ms: 0.5,
                sync_ms: 0.1,
                async_ms: 1.0,
            }],
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
        // Only the newest keep their details.
        let detailed: Vec<u64> = earlier
            .history
            .iter()
            .filter(|r| !r.subtasks.is_empty())
            .map(|r| r.epoch)
            .collect();
        assert_eq!(detailed.len(), DETAILED_LEN);
        assert_eq!(detailed.last(), Some(&1000));
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
