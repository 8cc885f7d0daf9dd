//! `weir run JOB …`: run a job on the embedded cluster (coordinator and
//! worker in this process) and report on it.

use crate::cli::job_args::JobArgs;
use crate::embedded::run_embedded;
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use weir_coordinator::JobStatus;
use weir_operators::job::{JobOptions, JobRegistry};
use weir_state::storage::default_checkpoint_dir;

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

fn percentile(durations_ms: &[f64], p: f64) -> Option<f64> {
    if durations_ms.is_empty() {
        return None;
    }
    let mut sorted = durations_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[rank.min(sorted.len() - 1)])
}

impl RunStats {
    fn new(status: &JobStatus) -> Self {
        let events_per_s = if status.elapsed_s > 0.0 {
            status.events_in as f64 / status.elapsed_s
        } else {
            0.0
        };
        Self {
            job: status.job.clone(),
            parallelism: status.parallelism,
            events_in: status.events_in,
            records_out: status.records_out,
            elapsed_s: status.elapsed_s,
            events_per_s,
            restarts: status.restarts,
            restored_from: status.restored_from,
            checkpoints_completed: status.checkpoints_completed,
            checkpoints_aborted: status.checkpoints_aborted,
            checkpoint_p50_ms: percentile(&status.checkpoint_durations_ms, 50.0),
            checkpoint_p99_ms: percentile(&status.checkpoint_durations_ms, 99.0),
            checkpoint_last_bytes: status.checkpoint_sizes.last().copied(),
        }
    }
}

/// Builds the job (bad parameters fail here, before any checkpoint storage
/// is touched), runs it to the end on the embedded cluster (restarting it
/// from checkpoints on failure), prints the summary to standard error
/// (standard output may carry the job's records).
pub fn run(args: RunArgs, registry: &JobRegistry) -> Result<(), Box<dyn std::error::Error>> {
    let mut request = args.job.submit_request()?;
    let spec = &request.spec;
    let options = JobOptions {
        parallelism: spec.parallelism,
        max_parallelism: spec.max_parallelism,
        output: spec.output.as_ref().map(PathBuf::from),
    };
    let dataflow = registry.build(&spec.job, &spec.params, &options)?;
    let graph = dataflow.graph();
    if request.settings.checkpoint_interval_ms == 0 && args.job.restore.is_some() {
        return Err("--restore needs checkpoints; --checkpoint-interval must not be 0".into());
    }
    request
        .settings
        .job_id
        .get_or_insert_with(|| graph.name.clone());
    let slots = weir_coordinator::scheduler::slots_needed(graph);
    let checkpoint_dir = match &args.checkpoint_dir {
        Some(url) => url.clone(),
        None => default_checkpoint_dir().display().to_string(),
    };
    tracing::info!(job = %spec.job, parallelism = spec.parallelism, "starting");
    let status = run_embedded(registry, checkpoint_dir, slots, request)?;
    let stats = RunStats::new(&status);
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
