//! `weir checkpoints gc JOB_ROOT [--keep K] [--dry-run]`.

use super::{bytes, table};
use clap::Args;
use weir_coordinator::CheckpointCatalog;

/// Arguments of `weir checkpoints gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// The job's checkpoint directory: `{checkpoint-dir}/{job}` (URL or path).
    pub job_root: String,
    /// Complete checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
    /// Only say what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Applies retention to a job's checkpoints.
pub fn run(args: GcArgs) -> Result<(), Box<dyn std::error::Error>> {
    let catalog = CheckpointCatalog::open_job(&args.job_root)?;
    let report = catalog.retain(args.keep, args.dry_run)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut out = table(&["FILE", "SIZE"]);
    for (path, size) in &report.deleted {
        out.add_row(vec![path.clone(), bytes(*size)]);
    }
    if !report.deleted.is_empty() {
        println!("{out}");
    }
    let kept: Vec<String> = report.kept.iter().map(|e| e.0.to_string()).collect();
    println!(
        "{} {} file(s), {}; kept checkpoints {}",
        if args.dry_run {
            "would delete"
        } else {
            "deleted"
        },
        report.deleted.len(),
        bytes(report.deleted.iter().map(|(_, s)| s).sum()),
        if kept.is_empty() {
            "none".into()
        } else {
            kept.join(", ")
        }
    );
    Ok(())
}
