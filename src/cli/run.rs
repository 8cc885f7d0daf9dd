//! `weir run JOB …`: run a job on the embedded engine and report on it.

use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use weir_jobs::{JobOptions, JobParams, JobRegistry};
use weir_runtime::{CancelToken, EngineConfig, JobReport, LocalEngine};

/// Arguments of `weir run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job to run (see `weir jobs available`).
    pub job: String,
    /// Parallelism of every operator.
    #[arg(short = 'p', long, default_value_t = 1)]
    pub parallelism: u32,
    /// A job parameter, `key=value`; repeat for several.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Write output files into this directory instead of printing records.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Also write the run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
    /// Number of key groups: the highest parallelism keyed state can later
    /// be rescaled to.
    #[arg(long, default_value_t = weir_protocol::key_group::DEFAULT_MAX_PARALLELISM)]
    pub max_parallelism: u32,
    /// Records per batch between operators.
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
}

/// The summary of a run, as written by `--stats`.
#[derive(Debug, Serialize)]
pub struct RunStats {
    /// The job's name.
    pub job: String,
    /// Parallelism of every operator.
    pub parallelism: u32,
    /// Records produced by the sources.
    pub events_in: u64,
    /// Records received by the sinks.
    pub records_out: u64,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
    /// `events_in / elapsed_s`.
    pub events_per_s: f64,
}

impl RunStats {
    fn new(report: &JobReport, parallelism: u32) -> Self {
        Self {
            job: report.job.clone(),
            parallelism,
            events_in: report.events_in,
            records_out: report.records_out,
            elapsed_s: report.elapsed.as_secs_f64(),
            events_per_s: report.events_per_second(),
        }
    }
}

/// Builds the job, runs it to the end, prints the summary to standard
/// error (standard output may carry the job's records).
pub fn run(args: RunArgs, registry: &JobRegistry) -> Result<(), Box<dyn std::error::Error>> {
    let params = JobParams::split_pairs(&args.params)?;
    let options = JobOptions {
        parallelism: args.parallelism,
        max_parallelism: args.max_parallelism,
        output: args.output.clone(),
    };
    let dataflow = registry.build(&args.job, &params, &options)?;
    let engine = LocalEngine::new(EngineConfig {
        batch_size: args.batch_size.max(1),
        ..EngineConfig::default()
    });
    tracing::info!(job = %args.job, parallelism = args.parallelism, "starting");
    let report = engine.run(&dataflow, &CancelToken::new())?;
    let stats = RunStats::new(&report, args.parallelism);
    eprintln!(
        "{}: {} events in, {} records out, {:.3} s, {:.0} events/s",
        stats.job, stats.events_in, stats.records_out, stats.elapsed_s, stats.events_per_s
    );
    if let Some(path) = &args.stats {
        let json = serde_json::to_string_pretty(&stats)?;
        std::fs::write(path, json + "\n").map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("writing stats to {}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
}
