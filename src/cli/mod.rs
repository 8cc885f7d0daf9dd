//! The `weir` command line: one module per subcommand.
//!
//! - [`run`]: `weir run JOB …`, a job on the embedded engine.
//! - [`jobs`]: `weir jobs available`, the registered jobs and their parameters.

pub mod jobs;
pub mod run;

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
    Run(run::RunArgs),
    /// Inspect jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
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
        Command::Run(args) => run::run(args, registry),
        Command::Jobs(command) => jobs::run(command, registry),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// An error and its sources, joined by ": ".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
