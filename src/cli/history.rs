//! `weir jobs history JOB`: a job's newest checkpoints, completed and
//! aborted, with the cause of each abort (an outage of checkpoint storage
//! shows as a run of aborts naming the storage error).

use crate::cli::checkpoints::{bytes, table, utc};
use crate::cli::jobs::{client, Remote};
use clap::Args;
use weir_coordinator::history::CheckpointOutcome;

/// Arguments of `weir jobs history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The job's id or number.
    pub job: String,
    /// Show at most this many of the newest checkpoints.
    #[arg(long, default_value_t = 30)]
    pub last: usize,
    /// The coordinator.
    #[command(flatten)]
    pub remote: Remote,
}

/// Prints the history, oldest first.
pub fn run(args: HistoryArgs) -> Result<(), Box<dyn std::error::Error>> {
    let status = client(&args.remote)?.job(&args.job)?;
    let history = &status.checkpoint_history;
    let shown = &history[history.len().saturating_sub(args.last)..];
    if args.remote.json {
        println!("{}", serde_json::to_string_pretty(shown)?);
        return Ok(());
    }
    let mut rows = table(&["EPOCH", "OUTCOME", "TRIGGERED", "DURATION", "SIZE", "CAUSE"]);
    for record in shown {
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
            match (&record.cause, record.storage_unavailable) {
                (Some(cause), true) => format!("checkpoint storage: {cause}"),
                (Some(cause), false) => cause.clone(),
                (None, _) => "-".into(),
            },
        ]);
    }
    println!("{rows}");
    if let Some(wait) = &status.storage_wait {
        println!("{}", crate::cli::jobs::storage_line(wait));
    }
    Ok(())
}
