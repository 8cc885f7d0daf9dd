//! `weir jobs …`: what jobs this binary can run.

use clap::Subcommand;
use std::io::Write;
use weir_jobs::JobRegistry;

/// Subcommands of `weir jobs`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List the registered jobs with their parameters and defaults.
    Available,
}

/// Runs a `weir jobs` subcommand.
pub fn run(command: JobsCommand, registry: &JobRegistry) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        JobsCommand::Available => {
            let mut out = std::io::stdout().lock();
            for job in registry.jobs() {
                writeln!(out, "{}\n    {}", job.name, job.description)?;
                for param in job.params {
                    let default = match param.default {
                        Some(value) => format!("default {value}"),
                        None => "required".into(),
                    };
                    writeln!(
                        out,
                        "    --param {}=…  {} ({default})",
                        param.name, param.help
                    )?;
                }
            }
            Ok(())
        }
    }
}
