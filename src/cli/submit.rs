//! `weir submit JOB --coordinator ADDR …`: hand a job to a coordinator.

use crate::cli::job_args::JobArgs;
use crate::client::Client;
use clap::Args;

/// Arguments of `weir submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// What to run and how.
    #[command(flatten)]
    pub job: JobArgs,
    /// The coordinator's API address (`host:port`).
    #[arg(long, env = "WEIR_COORDINATOR")]
    pub coordinator: String,
    /// The cluster's shared token.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the job's status as JSON instead of its id.
    #[arg(long)]
    pub json: bool,
}

/// Submits the job and prints its id.
pub fn run(args: SubmitArgs) -> Result<(), Box<dyn std::error::Error>> {
    let request = args.job.submit_request()?;
    let client = Client::new(&args.coordinator, args.token)?;
    let status = client.submit(&request)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("{}", status.job_id);
    }
    Ok(())
}
