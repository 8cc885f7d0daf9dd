//! The job options `weir run` and `weir submit` share, and the submit
//! request they amount to.

use crate::cli::parse_duration;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;
use weir_operators::job::JobParams;
use weir_protocol::cluster::{BackendKind, JobSpec, RestoreFrom, RunSettings};
use weir_protocol::SubmitRequest;

/// The state backends a job can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// Keyed state on the heap.
    Memory,
    /// Keyed state in RocksDB (larger than memory; incremental checkpoints).
    Rocksdb,
}

/// What to run and how: the options `weir run` and `weir submit` share.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job to run (see `weir jobs available`).
    pub job: String,
    /// Parallelism of every operator.
    #[arg(short = 'p', long, default_value_t = 1)]
    pub parallelism: u32,
    /// A job parameter, `key=value`; repeat for several.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Write output files into this directory instead of printing records
    /// (exactly once when checkpointing).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Number of key groups: the highest parallelism keyed state can later
    /// be rescaled to.
    #[arg(long, default_value_t = weir_protocol::key_group::DEFAULT_MAX_PARALLELISM)]
    pub max_parallelism: u32,
    /// Records per batch between operators (four times as many to an
    /// operator on another worker).
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
    /// Time between checkpoints (`500ms`, `1s`, `2m`); `0` disables
    /// checkpoints, restarts and exactly-once output.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,
    /// A checkpoint not complete after this long is aborted.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub checkpoint_timeout: Duration,
    /// Least time between the end of a checkpoint and the next.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub min_pause: Duration,
    /// Complete checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    pub retain: usize,
    /// Resume from `latest` (the newest complete checkpoint that verifies;
    /// from the beginning if none) or from a checkpoint directory's URL.
    #[arg(long, value_name = "latest|URL")]
    pub restore: Option<String>,
    /// Where keyed state lives.
    #[arg(long, value_enum, default_value_t = BackendChoice::Memory)]
    pub state_backend: BackendChoice,
    /// Checkpoints go under `{checkpoint-dir}/{job-id}/` [default: the job's name].
    #[arg(long)]
    pub job_id: Option<String>,
    /// Consecutive failures after which the job gives up.
    #[arg(long, default_value_t = 5)]
    pub max_restarts: u32,
    /// Wait before the first restart; doubles on each consecutive failure.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_duration)]
    pub restart_backoff: Duration,
    /// Peer workers each worker pushes its checkpoint files to
    /// (`state.replicas`): a failed subtask restores from one of them, or
    /// from a local copy, before checkpoint storage.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// When workers are lost and too few slots remain, keep running at a
    /// lower parallelism (key groups redistributed) instead of failing, and
    /// scale back up once slots return.
    #[arg(long)]
    pub allow_scale_down: bool,
    /// Failed checkpoints in a row tolerated before the job fails over
    /// (restarts from its last complete checkpoint). Checkpoints go on at
    /// the interval while they fail; a failed final checkpoint is retried
    /// until it completes and never counts.
    #[arg(long, value_name = "N", default_value_t = weir_protocol::cluster::DEFAULT_TOLERABLE_FAILED_CHECKPOINTS)]
    pub tolerable_failed_checkpoints: u32,
    /// With `--restore`: drop saved state that no operator of the job takes
    /// (matched by uid) instead of refusing to start.
    #[arg(long)]
    pub allow_non_restored_state: bool,
}

impl JobArgs {
    /// The options as a submission; a relative output directory is made
    /// absolute, since workers may run elsewhere.
    pub fn submit_request(&self) -> Result<SubmitRequest, Box<dyn std::error::Error>> {
        let params = JobParams::split_pairs(&self.params)?;
        let output = match &self.output {
            Some(dir) => Some(std::path::absolute(dir)?.display().to_string()),
            None => None,
        };
        Ok(SubmitRequest {
            spec: JobSpec {
                job: self.job.clone(),
                params,
                parallelism: self.parallelism,
                max_parallelism: self.max_parallelism,
                output,
            },
            settings: RunSettings {
                job_id: self.job_id.clone(),
                checkpoint_interval_ms: self.checkpoint_interval.as_millis() as u64,
                checkpoint_timeout_ms: self.checkpoint_timeout.as_millis() as u64,
                min_pause_ms: self.min_pause.as_millis() as u64,
                retain: self.retain,
                state_backend: match self.state_backend {
                    BackendChoice::Memory => BackendKind::Memory,
                    BackendChoice::Rocksdb => BackendKind::Rocksdb,
                },
                restore: match self.restore.as_deref() {
                    None => RestoreFrom::Nothing,
                    Some("latest") => RestoreFrom::Latest,
                    Some(location) => RestoreFrom::Checkpoint(location.to_owned()),
                },
                max_restarts: self.max_restarts,
                restart_backoff_ms: self.restart_backoff.as_millis() as u64,
                batch_size: self.batch_size.max(1),
                replicas: self.replicas,
                allow_scale_down: self.allow_scale_down,
                allow_non_restored_state: self.allow_non_restored_state,
                tolerable_failed_checkpoints: self.tolerable_failed_checkpoints,
            },
        })
    }
}
