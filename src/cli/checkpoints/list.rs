//! `weir checkpoints list JOB_ROOT`.

use super::{bytes, table, utc};
use clap::Args;
use serde::Serialize;
use std::collections::HashSet;
use weir_coordinator::{CheckpointCatalog, CheckpointStatus};

/// Arguments of `weir checkpoints list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The job's checkpoint directory: `{checkpoint-dir}/{job}` (URL or path).
    pub job_root: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One row of the listing.
#[derive(Debug, Serialize)]
pub struct CheckpointRow {
    /// The checkpoint's epoch.
    pub epoch: u64,
    /// `complete`, `orphaned` (manifest without commit marker), `aborted`
    /// (never completed, older than a complete one) or `in_progress`.
    pub status: &'static str,
    /// Whether it is the final checkpoint of a finished run.
    pub is_final: Option<bool>,
    /// Whether it is a savepoint (self-contained, kept until deleted).
    pub savepoint: bool,
    /// When it was triggered, ms since the Unix epoch.
    pub triggered_at_ms: Option<i64>,
    /// From trigger to last ack, ms.
    pub duration_ms: Option<i64>,
    /// Bytes of state it references.
    pub size_bytes: Option<u64>,
    /// Bytes the checkpoint before it (in the listing) did not reference.
    pub incremental_bytes: Option<u64>,
    /// Number of subtasks that took part.
    pub subtasks: Option<usize>,
}

/// Lists the job's checkpoints, newest first.
pub fn run(args: ListArgs) -> Result<(), Box<dyn std::error::Error>> {
    let catalog = CheckpointCatalog::open_job(&args.job_root)?;
    let mut rows = Vec::new();
    let mut previous: HashSet<String> = HashSet::new();
    let entries = catalog.list()?;
    if entries.is_empty() && !catalog.exists()? {
        return Err(format!(
            "nothing is at {}: no checkpoints and no directory (a job's checkpoints are in {{checkpoint-dir}}/{{job-id}})",
            args.job_root
        )
        .into());
    }
    let newest_complete = entries
        .iter()
        .filter(|e| e.status == CheckpointStatus::Complete)
        .map(|e| e.epoch)
        .max();
    for entry in entries {
        let status = match entry.status {
            CheckpointStatus::Complete => "complete",
            CheckpointStatus::Orphaned => "orphaned",
            // At most one checkpoint is in flight, and it is the newest.
            CheckpointStatus::Incomplete if newest_complete.is_some_and(|c| entry.epoch < c) => {
                "aborted"
            }
            CheckpointStatus::Incomplete => "in_progress",
        };
        let manifest = match entry.status {
            CheckpointStatus::Incomplete => None,
            _ => catalog.manifest(entry.epoch).ok(),
        };
        let row = match &manifest {
            None => CheckpointRow {
                epoch: entry.epoch.0,
                status,
                is_final: None,
                savepoint: false,
                triggered_at_ms: None,
                duration_ms: None,
                size_bytes: None,
                incremental_bytes: None,
                subtasks: None,
            },
            Some(m) => {
                let incremental = m
                    .files()
                    .filter(|f| !previous.contains(&f.path))
                    .map(|f| f.size)
                    .sum();
                previous = m.files().map(|f| f.path.clone()).collect();
                CheckpointRow {
                    epoch: entry.epoch.0,
                    status,
                    is_final: Some(m.is_final),
                    savepoint: m.savepoint,
                    triggered_at_ms: Some(m.triggered_at_ms),
                    duration_ms: Some(m.completed_at_ms - m.triggered_at_ms),
                    size_bytes: Some(m.files().map(|f| f.size).sum()),
                    incremental_bytes: Some(incremental),
                    subtasks: Some(m.operators.iter().map(|o| o.subtasks.len()).sum()),
                }
            }
        };
        rows.push(row);
    }
    rows.reverse();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut out = table(&[
        "EPOCH",
        "TRIGGERED (UTC)",
        "STATUS",
        "DURATION",
        "SIZE",
        "INCREMENTAL",
        "SUBTASKS",
    ]);
    let dash = || "-".to_string();
    for row in &rows {
        let status = match (row.status, row.is_final, row.savepoint) {
            ("complete", _, true) => "savepoint".to_string(),
            ("complete", Some(true), _) => "complete (final)".to_string(),
            (status, _, _) => status.replace('_', " "),
        };
        out.add_row(vec![
            row.epoch.to_string(),
            row.triggered_at_ms.map(utc).unwrap_or_else(dash),
            status,
            row.duration_ms
                .map(|d| format!("{d} ms"))
                .unwrap_or_else(dash),
            row.size_bytes.map(bytes).unwrap_or_else(dash),
            row.incremental_bytes.map(bytes).unwrap_or_else(dash),
            row.subtasks.map(|s| s.to_string()).unwrap_or_else(dash),
        ]);
    }
    println!("{out}");
    Ok(())
}
