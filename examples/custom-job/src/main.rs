//! The `custom-job` binary: the whole `weir` command line, for this
//! crate's jobs.

fn main() -> std::process::ExitCode {
    weir::cli::main(custom_job::registry())
}
