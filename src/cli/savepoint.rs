//! `weir jobs savepoint JOB_ID [--stop] [--dir URL]`: a self-contained
//! checkpoint of a running job, kept until deleted; restore it with
//! `weir submit JOB --restore LOCATION` (at any parallelism, also into a
//! changed version of the job).

use crate::cli::jobs::{client, Remote};
use clap::Args;
use weir_coordinator::savepoint::SavepointOptions;

/// Arguments of `weir jobs savepoint`.
#[derive(Debug, Args)]
pub struct SavepointArgs {
    /// The job's id or number.
    pub job: String,
    /// End the job once the savepoint is complete and its sinks committed
    /// (no final results: the job resumed from the savepoint emits them).
    #[arg(long)]
    pub stop: bool,
    /// Where the savepoint goes (URL or path) [default: the coordinator's
    /// `{checkpoint-dir}/savepoints`]; it lands in `{dir}/{job-id}/chk-…`.
    #[arg(long, value_name = "URL")]
    pub dir: Option<String>,
    /// The coordinator.
    #[command(flatten)]
    pub remote: Remote,
}

/// Takes the savepoint; prints its location on standard output and any
/// warnings on standard error.
pub fn run(args: SavepointArgs) -> Result<(), Box<dyn std::error::Error>> {
    let dir = match &args.dir {
        // Relative to where the command runs, not to the coordinator.
        Some(dir) if !dir.contains("://") => Some(std::path::absolute(dir)?.display().to_string()),
        other => other.clone(),
    };
    let options = SavepointOptions {
        stop: args.stop,
        dir,
    };
    let done = client(&args.remote)?.savepoint(&args.job, &options)?;
    if args.remote.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
        return Ok(());
    }
    for warning in &done.warnings {
        eprintln!("warning: {warning}");
    }
    if done.stopped {
        eprintln!("job {} stopped after savepoint {}", args.job, done.epoch);
    }
    println!("{}", done.location);
    Ok(())
}
