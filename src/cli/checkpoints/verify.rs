//! `weir checkpoints verify CHECKPOINT|JOB_ROOT`.

use super::{bytes, table};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use weir_coordinator::{CheckpointCatalog, CheckpointStatus};
use weir_protocol::{Epoch, StateFile};

/// Arguments of `weir checkpoints verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A checkpoint directory (`…/{job}/chk-NNNNNNNNNN`), or a job's
    /// directory (`…/{job}`) to verify all its complete checkpoints.
    pub location: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The verdict on one file.
#[derive(Debug, Serialize)]
pub struct FileCheck {
    /// The checkpoint referencing it.
    pub epoch: u64,
    /// Path relative to the job directory.
    pub path: String,
    /// Size the manifest records.
    pub size: u64,
    /// `None` if it is intact, otherwise what is wrong.
    pub problem: Option<String>,
}

fn check(catalog: &CheckpointCatalog, epoch: Epoch, file: &StateFile) -> FileCheck {
    let problem = catalog
        .storage()
        .get_checked(catalog.job(), file)
        .err()
        .map(|e| crate::cli::error_chain(&e));
    FileCheck {
        epoch: epoch.0,
        path: file.path.clone(),
        size: file.size,
        problem,
    }
}

/// Verifies; fails (non-zero exit) when any file is missing or corrupt.
pub fn run(args: VerifyArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (catalog, epochs) = match CheckpointCatalog::open_checkpoint(&args.location) {
        Ok((catalog, epoch)) => (catalog, vec![epoch]),
        Err(_) => {
            let catalog = CheckpointCatalog::open_job(&args.location)?;
            let complete = catalog
                .list()?
                .into_iter()
                .filter(|e| e.status == CheckpointStatus::Complete)
                .map(|e| e.epoch)
                .collect();
            (catalog, complete)
        }
    };
    if epochs.is_empty() {
        return Err(format!("no complete checkpoint under {}", args.location).into());
    }
    let mut work = Vec::new();
    for &epoch in &epochs {
        let manifest = catalog.manifest(epoch)?;
        work.extend(manifest.files().map(|f| (epoch, f.clone())));
    }
    // A progress bar by bytes, on standard error when it is a terminal and
    // there is enough to read for one to be worth showing.
    let total: u64 = work.iter().map(|(_, f)| f.size).sum();
    let progress = if total >= 64 << 20 {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut checks = Vec::with_capacity(work.len());
    for (epoch, file) in &work {
        progress.set_message(file.path.clone());
        checks.push(check(&catalog, *epoch, file));
        progress.inc(file.size);
    }
    progress.finish_and_clear();
    let bad = checks.iter().filter(|c| c.problem.is_some()).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        let mut out = table(&["CHECKPOINT", "FILE", "SIZE", "RESULT"]);
        for c in &checks {
            out.add_row(vec![
                c.epoch.to_string(),
                c.path.clone(),
                bytes(c.size),
                c.problem.clone().unwrap_or_else(|| "ok".into()),
            ]);
        }
        println!("{out}");
        println!(
            "{} checkpoint(s), {} file(s) checked, {bad} with problems",
            epochs.len(),
            checks.len()
        );
    }
    if bad > 0 {
        return Err(format!("{bad} of {} files are missing or corrupt", checks.len()).into());
    }
    Ok(())
}
