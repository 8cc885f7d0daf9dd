//! The `weir` binary: parses arguments, installs logging, runs the command.

use clap::Parser;
use std::process::ExitCode;
use weir::cli::{self, Cli};
use weir::jobs::JobRegistry;

fn main() -> ExitCode {
    let args = Cli::parse();
    cli::install_tracing();
    cli::run(args, &JobRegistry::builtin())
}
