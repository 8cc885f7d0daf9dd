//! The `weir` binary: the command line over Weir's reference jobs.

use std::process::ExitCode;

fn main() -> ExitCode {
    weir::cli::main(weir::jobs::registry())
}
