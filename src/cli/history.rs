//! `weir jobs history JOB`: a job's newest checkpoints, completed and
//! aborted, with the cause of each abort (an outage of checkpoint storage
//! shows as a run of aborts naming the storage error); with `--epoch N`,
//! each subtask's part of checkpoint N. It reads
//! `GET /v1/jobs/{id}/checkpoints`, as the dashboard does.

use crate::cli::checkpoints::{bytes, table, utc};
use crate::cli::jobs::{client, Remote};
use clap::Args;
use weir_coordinator::history::{CheckpointOutcome, CheckpointRecord, HISTORY_LEN};

/// Arguments of `weir jobs history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The job's id or number.
    pub job: String,
    /// Show at most this many of the newest checkpoints.
    #[arg(long, default_value_t = 30)]
    pub last: usize,
    /// Show each subtask's part of this checkpoint (ack time, size,
    /// alignment, synchronous and asynchronous phase) instead.
    #[arg(long)]
    pub epoch: Option<u64>,
    /// The coordinator.
    #[command(flatten)]
    pub remote: Remote,
}

/// Prints the history, oldest first.
pub fn run(args: HistoryArgs) -> Result<(), Box<dyn std::error::Error>> {
    let client = client(&args.remote)?;
    let limit = if args.epoch.is_some() {
        HISTORY_LEN
    } else {
        args.last
    };
    let mut history = client.checkpoints(&args.job, limit)?;
    history.checkpoints.reverse();
    if let Some(epoch) = args.epoch {
        let record = history
            .checkpoints
            .iter()
            .find(|r| r.epoch == epoch)
            .ok_or_else(|| format!("checkpoint {epoch} is not in the job's history"))?;
        return subtasks(record, args.remote.json);
    }
    if args.remote.json {
        println!("{}", serde_json::to_string_pretty(&history.checkpoints)?);
        return Ok(());
    }
    let mut rows = table(&[
        "EPOCH",
        "OUTCOME",
        "TRIGGERED",
        "DURATION",
        "SIZE",
        "ADDED",
        "CAUSE",
    ]);
    for record in &history.checkpoints {
        let outcome = match (record.outcome, record.is_final) {
            (CheckpointOutcome::Completed, false) => "completed",
            (CheckpointOutcome::Completed, true) => "completed (final)",
            (CheckpointOutcome::Aborted, false) => "aborted",
            (CheckpointOutcome::Aborted, true) => "aborted (final)",
        };
        rows.add_row(vec![
            record.epoch.to_string(),
            outcome.to_owned(),
            utc(record.triggered_at_ms as i64),
            format!("{:.1} ms", record.duration_ms),
            record.size_bytes.map_or("-".into(), bytes),
            record.incremental_size_bytes.map_or("-".into(), bytes),
            match (&record.cause, record.storage_unavailable) {
                (Some(cause), true) => format!("checkpoint storage: {cause}"),
                (Some(cause), false) => cause.clone(),
                (None, _) => "-".into(),
            },
        ]);
    }
    println!("{rows}");
    if let Some(wait) = &client.job(&args.job)?.storage_wait {
        println!("{}", crate::cli::jobs::storage_line(wait));
    }
    Ok(())
}

/// Each subtask's part of checkpoint `record`.
fn subtasks(record: &CheckpointRecord, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    if json {
        println!("{}", serde_json::to_string_pretty(&record.subtasks)?);
        return Ok(());
    }
    if record.subtasks.is_empty() {
        return Err(format!(
            "checkpoint {} has no subtask details (only the newest checkpoints keep them)",
            record.epoch
        )
        .into());
    }
    let mut rows = table(&[
        "OPERATOR",
        "SUBTASK",
        "ACKED AFTER",
        "SIZE",
        "ALIGNMENT",
        "SYNC",
        "ASYNC",
    ]);
    for subtask in &record.subtasks {
        rows.add_row(vec![
            subtask.operator.clone(),
            subtask.subtask.to_string(),
            format!("{:.1} ms", subtask.acked_after_ms),
            bytes(subtask.size_bytes),
            format!("{:.2} ms", subtask.alignment_ms),
            format!("{:.2} ms", subtask.sync_ms),
            format!("{:.2} ms", subtask.async_ms),
        ]);
    }
    println!("{rows}");
    Ok(())
}
