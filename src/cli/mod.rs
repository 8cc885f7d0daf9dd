//! The `weir` command line: one module per subcommand.
//!
//! - [`run`]: `weir run JOB …`, a job on the embedded cluster.
//! - [`coordinator`]: `weir coordinator`, standalone or `--ha etcd://…`.
//! - [`worker`]: `weir worker --coordinator A[,B…]`.
//! - [`submit`]: `weir submit JOB …`, a job for the cluster.
//! - [`jobs`]: `weir jobs available|list|status|cancel|wait`.
//! - [`checkpoints`]: `weir checkpoints list|show|verify|dump|diff|gc`, straight from storage.
//! - [`job_args`]: the job options `run` and `submit` share.

pub mod checkpoints;
pub mod coordinator;
pub mod job_args;
pub mod jobs;
pub mod run;
pub mod submit;
pub mod worker;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use weir_jobs::JobRegistry;

/// Weir: fault-tolerant stream processing.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job on the embedded engine, in this process.
    Run(Box<run::RunArgs>),
    /// Start a coordinator: the REST API for clients and the endpoint for workers.
    Coordinator(coordinator::CoordinatorArgs),
    /// Start a worker that runs the subtasks a coordinator assigns.
    Worker(worker::WorkerArgs),
    /// Submit a job to a coordinator and print its id.
    Submit(Box<submit::SubmitArgs>),
    /// Inspect jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Inspect checkpoints straight from checkpoint storage.
    #[command(subcommand)]
    Checkpoints(checkpoints::CheckpointsCommand),
}

/// Logs go to standard error; `WEIR_LOG` (or `RUST_LOG`) sets the filter,
/// default `warn`.
pub fn install_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("WEIR_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a parsed command against `registry`; prints an error as one line
/// (with its causes) and returns a failure exit code.
pub fn run(cli: Cli, registry: &JobRegistry) -> ExitCode {
    let result = match cli.command {
        Command::Run(args) => run::run(*args, registry),
        Command::Coordinator(args) => coordinator::run(args, registry),
        Command::Worker(args) => worker::run(args, registry),
        Command::Submit(args) => submit::run(*args),
        Command::Jobs(command) => jobs::run(command, registry),
        Command::Checkpoints(command) => checkpoints::run(command, registry),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Parses a duration: `0`, `off`, `250ms`, `1s`, `1.5s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if text == "0" || text == "off" {
        return Ok(std::time::Duration::ZERO);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("'{text}' needs a unit: ms, s, m or h"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' does not start with a number"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}' (use ms, s, m or h)"
            ))
        }
    };
    std::time::Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{text}': {e}"))
}

/// An error and its sources, joined by ": ".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    weir_protocol::error::chain(error)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
    }
}
