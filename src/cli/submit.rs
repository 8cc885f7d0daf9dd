//! `weir submit JOB --coordinator ADDR …`: hand a job to a coordinator.

use crate::cli::job_args::JobArgs;
use crate::cli::jobs::Remote;
use crate::client::Client;
use clap::Args;

/// Arguments of `weir submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// What to run and how.
    #[command(flatten)]
    pub job: JobArgs,
    /// The coordinator (`--json`: print the job's status instead of its id).
    #[command(flatten)]
    pub remote: Remote,
}

/// Submits the job and prints its id.
pub fn run(args: SubmitArgs) -> Result<(), Box<dyn std::error::Error>> {
    let request = args.job.submit_request()?;
    let client = Client::new(&args.remote.coordinator, args.remote.token)?;
    let status = client.submit(&request)?;
    if args.remote.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        for warning in &status.warnings {
            eprintln!("warning: {warning}");
        }
        println!("{}", status.job_id);
    }
    Ok(())
}
