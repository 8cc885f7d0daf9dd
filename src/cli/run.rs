//! `weir run JOB …`: run a job on the embedded engine and report on it.

use crate::cli::job_args::{BackendChoice, JobArgs};
use crate::embedded::{
    checkpoint_settings, run_embedded, EmbeddedConfig, EmbeddedReport, RestoreRequest,
};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weir_coordinator::{CheckpointConfig, DriverConfig, RestartStrategy};
use weir_jobs::{JobOptions, JobParams, JobRegistry};
use weir_runtime::{CancelToken, EngineConfig};
use weir_state::storage::default_checkpoint_dir;
use weir_state::{MemoryBackend, RocksDbBackend};

/// Arguments of `weir run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// What to run and how.
    #[command(flatten)]
    pub job: JobArgs,
    /// Also write the run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
    /// Where checkpoints go: a `file://` URL or a directory
    /// [default: $WEIR_DATA_DIR/checkpoints, else ~/.local/share/weir/checkpoints].
    #[arg(long, value_name = "URL")]
    pub checkpoint_dir: Option<String>,
}

/// The summary of a run, as written by `--stats`.
#[derive(Debug, Serialize)]
pub struct RunStats {
    /// The job's name.
    pub job: String,
    /// Parallelism of every operator.
    pub parallelism: u32,
    /// Records produced by the sources (in the last attempt).
    pub events_in: u64,
    /// Records received by the sinks (in the last attempt).
    pub records_out: u64,
    /// Wall-clock seconds of the last attempt.
    pub elapsed_s: f64,
    /// `events_in / elapsed_s`.
    pub events_per_s: f64,
    /// Attempts that failed and were restarted.
    pub restarts: u32,
    /// The checkpoint the run resumed from.
    pub restored_from: Option<u64>,
    /// Checkpoints completed.
    pub checkpoints_completed: u32,
    /// Checkpoints aborted.
    pub checkpoints_aborted: u32,
    /// Median checkpoint duration (trigger to commit), ms.
    pub checkpoint_p50_ms: Option<f64>,
    /// 99th-percentile checkpoint duration, ms.
    pub checkpoint_p99_ms: Option<f64>,
    /// State size of the last checkpoint, bytes.
    pub checkpoint_last_bytes: Option<u64>,
}

fn percentile(durations: &[Duration], p: f64) -> Option<f64> {
    if durations.is_empty() {
        return None;
    }
    let mut sorted: Vec<f64> = durations.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[rank.min(sorted.len() - 1)])
}

impl RunStats {
    fn new(report: &EmbeddedReport, parallelism: u32) -> Self {
        let job = &report.job;
        let checkpoints = &report.checkpoints;
        Self {
            job: job.job.clone(),
            parallelism,
            events_in: job.events_in,
            records_out: job.records_out,
            elapsed_s: job.elapsed.as_secs_f64(),
            events_per_s: job.events_per_second(),
            restarts: report.restarts,
            restored_from: report.restored_from.map(|e| e.0),
            checkpoints_completed: checkpoints.completed,
            checkpoints_aborted: checkpoints.aborted,
            checkpoint_p50_ms: percentile(&checkpoints.durations, 50.0),
            checkpoint_p99_ms: percentile(&checkpoints.durations, 99.0),
            checkpoint_last_bytes: checkpoints.sizes.last().copied(),
        }
    }
}

/// Builds the job, runs it to the end (restarting it from checkpoints on
/// failure), prints the summary to standard error (standard output may
/// carry the job's records).
pub fn run(args: RunArgs, registry: &JobRegistry) -> Result<(), Box<dyn std::error::Error>> {
    let params = JobParams::split_pairs(&args.job.params)?;
    let options = JobOptions {
        parallelism: args.job.parallelism,
        max_parallelism: args.job.max_parallelism,
        output: args.job.output.clone(),
    };
    let build = || registry.build(&args.job.job, &params, &options);
    // Bad parameters fail here, before any checkpoint storage is touched.
    let job_name = build()?.graph().name.clone();
    let checkpoints = if args.job.checkpoint_interval.is_zero() {
        None
    } else {
        let url = match &args.checkpoint_dir {
            Some(url) => url.clone(),
            None => default_checkpoint_dir().display().to_string(),
        };
        let driver = DriverConfig {
            checkpoint: CheckpointConfig {
                interval: args.job.checkpoint_interval,
                timeout: args.job.checkpoint_timeout,
                min_pause: args.job.min_pause,
            },
            retained: args.job.retain,
        };
        Some(checkpoint_settings(
            &url,
            args.job.job_id.as_deref().unwrap_or(&job_name),
            driver,
        )?)
    };
    let restore = match args.job.restore.as_deref() {
        None => RestoreRequest::Nothing,
        Some("latest") => RestoreRequest::Latest,
        Some(location) => RestoreRequest::Checkpoint(location.to_owned()),
    };
    if checkpoints.is_none() && restore != RestoreRequest::Nothing {
        return Err("--restore needs checkpoints; --checkpoint-interval must not be 0".into());
    }
    let config = EmbeddedConfig {
        engine: EngineConfig {
            batch_size: args.job.batch_size.max(1),
            state_backend: match args.job.state_backend {
                BackendChoice::Memory => Arc::new(MemoryBackend),
                BackendChoice::Rocksdb => Arc::new(RocksDbBackend::default_location()),
            },
            ..EngineConfig::default()
        },
        checkpoints,
        restore,
        restart: RestartStrategy {
            initial_backoff: args.job.restart_backoff,
            max_attempts: args.job.max_restarts,
            ..RestartStrategy::default()
        },
    };
    tracing::info!(job = %args.job.job, parallelism = args.job.parallelism, "starting");
    let report = run_embedded(build, &config, &CancelToken::new())?;
    let stats = RunStats::new(&report, args.job.parallelism);
    let mut summary = format!(
        "{}: {} events in, {} records out, {:.3} s, {:.0} events/s",
        stats.job, stats.events_in, stats.records_out, stats.elapsed_s, stats.events_per_s
    );
    if let Some(p50) = stats.checkpoint_p50_ms {
        summary += &format!(
            ", {} checkpoints (p50 {p50:.1} ms)",
            stats.checkpoints_completed
        );
    }
    if stats.restarts > 0 {
        summary += &format!(", {} restarts", stats.restarts);
    }
    eprintln!("{summary}");
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
