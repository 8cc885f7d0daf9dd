//! The `weir` command line: one module per subcommand.
//!
//! - [`run`]: `weir run JOB …`, a job on the embedded cluster.
//! - [`coordinator`]: `weir coordinator`, standalone or `--ha etcd://…`.
//! - [`worker`]: `weir worker --coordinator A[,B…]`.
//! - [`submit`]: `weir submit JOB …`, a job for the cluster.
//! - [`jobs`]: `weir jobs available|list|status|cancel|wait`.
//! - [`history`]: `weir jobs history JOB [--epoch N]`, its newest
//!   checkpoints with causes, or each subtask's part of one.
//! - [`exceptions`]: `weir jobs exceptions JOB`, its restarts.
//! - [`savepoint`]: `weir jobs savepoint JOB_ID [--stop] [--dir URL]`.
//! - [`checkpoints`]: `weir checkpoints list|show|verify|dump|diff|gc`, straight from storage.
//! - [`job_args`]: the job options `run` and `submit` share.

pub mod checkpoints;
pub mod coordinator;
pub mod exceptions;
pub mod history;
pub mod job_args;
pub mod jobs;
pub mod run;
pub mod savepoint;
pub mod submit;
pub mod worker;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use weir_operators::job::JobRegistry;

/// Weir: fault-tolerant stream processing.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
pub struct Cli {
    /// How logs are written to standard error: `text` (`field=value`) or
    /// `json` (one object per line, for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "WEIR_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines with `field=value` pairs.
    Text,
    /// One JSON object per line: time, level, message, fields and the
    /// spans it happened in (`task` with `job` and `task`, `checkpoint`
    /// with `epoch`).
    Json,
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

/// Logs go to standard error in `format`; `WEIR_LOG` (or `RUST_LOG`) sets
/// the filter, default `warn`.
pub fn install_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("WEIR_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    let _ = match format {
        // Colours only on a terminal: logs piped to a file or a test stay
        // plain text (`field=value`).
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}

/// The whole `weir` command line for a binary whose jobs are `registry`:
/// parses the arguments, installs logging and runs the command. A user's
/// own binary is `fn main() -> ExitCode { weir::cli::main(my_registry()) }`.
pub fn main(registry: JobRegistry) -> ExitCode {
    let args = Cli::parse();
    install_tracing(args.log_format);
    run(args, &registry)
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
pub use weir_operators::job::parse_duration;

/// An error and its sources, joined by ": ".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    weir_protocol::error::chain(error)
}
