//! The embedded cluster behind `weir run`: the local engine, the checkpoint
//! driver and the restart strategy in one process.
//!
//! Each attempt builds the job's dataflow, resumes it from a checkpoint
//! when there is one to resume from, and runs it with a checkpoint driver
//! on its own thread. A failed attempt is restarted from the latest
//! complete checkpoint that verifies, after the restart strategy's backoff.

use std::time::Instant;
use weir_coordinator::{
    CheckpointCatalog, CheckpointDriver, CheckpointStats, CoordinatorError, DriverConfig,
    RestartDecision, RestartStrategy, RestartTracker,
};
use weir_operators::Dataflow;
use weir_protocol::{CheckpointManifest, Epoch};
use weir_runtime::{
    CancelToken, CheckpointRun, EngineConfig, JobReport, LocalEngine, RestoreSource, RuntimeError,
};
use weir_state::CheckpointStorage;

/// Where the first attempt resumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreRequest {
    /// Start from the beginning.
    Nothing,
    /// The latest complete checkpoint that verifies; from the beginning
    /// (with a warning) if there is none.
    Latest,
    /// This checkpoint: a checkpoint directory's URL or path
    /// (`…/{job}/chk-0000000042`).
    Checkpoint(String),
}

/// Checkpointing of an embedded run.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// Storage root for checkpoints.
    pub storage: CheckpointStorage,
    /// The job's id: checkpoints go under `{root}/{job_id}/`.
    pub job_id: String,
    /// Interval, timeout, pause, retention.
    pub driver: DriverConfig,
}

/// How to run a job embedded.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The engine's settings.
    pub engine: EngineConfig,
    /// Checkpointing, or `None` for none (and no restarts).
    pub checkpoints: Option<CheckpointSettings>,
    /// Where the first attempt resumes from.
    pub restore: RestoreRequest,
    /// When failed attempts restart.
    pub restart: RestartStrategy,
}

/// What an embedded run amounted to.
#[derive(Debug, Clone)]
pub struct EmbeddedReport {
    /// The last (successful) attempt.
    pub job: JobReport,
    /// Attempts that failed and were restarted.
    pub restarts: u32,
    /// The checkpoint the first attempt resumed from.
    pub restored_from: Option<Epoch>,
    /// Checkpoints of all attempts.
    pub checkpoints: CheckpointStats,
}

/// Why an embedded run failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The job failed and the restart strategy gave up (or it does not
    /// checkpoint, so it cannot restart).
    #[error("the job failed after {restarts} restarts")]
    Failed {
        /// Restarts before giving up.
        restarts: u32,
        /// The last failure.
        #[source]
        source: RuntimeError,
    },
    /// The job could not be started.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Checkpoint storage or a named checkpoint is unusable.
    #[error(transparent)]
    Checkpoint(#[from] CoordinatorError),
    /// The dataflow could not be built.
    #[error("building the job")]
    Build(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Opens the checkpoint named by a checkpoint directory URL or path; it
/// must be complete and verify.
pub fn open_checkpoint(location: &str) -> Result<RestoreSource, CoordinatorError> {
    let (catalog, epoch) = CheckpointCatalog::open_checkpoint(location)?;
    if !catalog.is_complete(epoch)? {
        return Err(CoordinatorError::NotRestorable {
            location: location.to_owned(),
            problem: "it has no commit marker (it never completed)".into(),
        });
    }
    let manifest = catalog.manifest(epoch)?;
    catalog.verify(&manifest)?;
    Ok(RestoreSource {
        storage: catalog.storage().clone(),
        job_id: catalog.job().to_owned(),
        manifest,
    })
}

fn latest(settings: &CheckpointSettings) -> Result<Option<RestoreSource>, CoordinatorError> {
    let catalog = CheckpointCatalog::new(settings.storage.clone(), &settings.job_id);
    Ok(catalog
        .latest_restorable()?
        .map(|manifest: CheckpointManifest| RestoreSource {
            storage: settings.storage.clone(),
            job_id: settings.job_id.clone(),
            manifest,
        }))
}

/// Runs a job to the end: `build` creates its dataflow for each attempt.
pub fn run_embedded<E>(
    build: impl Fn() -> Result<Dataflow, E>,
    config: &EmbeddedConfig,
    cancel: &CancelToken,
) -> Result<EmbeddedReport, EmbeddedError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let engine = LocalEngine::new(config.engine.clone());
    let Some(settings) = &config.checkpoints else {
        let dataflow = build().map_err(|e| EmbeddedError::Build(Box::new(e)))?;
        let job = engine.run(&dataflow, cancel)?;
        return Ok(EmbeddedReport {
            job,
            restarts: 0,
            restored_from: None,
            checkpoints: CheckpointStats::default(),
        });
    };
    let mut restore = match &config.restore {
        RestoreRequest::Nothing => None,
        RestoreRequest::Checkpoint(location) => Some(open_checkpoint(location)?),
        RestoreRequest::Latest => {
            let found = latest(settings)?;
            if found.is_none() {
                tracing::warn!(job = %settings.job_id, "no complete checkpoint to restore; starting from the beginning");
            }
            found
        }
    };
    let restored_from = restore.as_ref().map(|r| r.manifest.epoch);
    let mut restarts = RestartTracker::new(config.restart);
    let mut stats = CheckpointStats::default();
    loop {
        let dataflow = build().map_err(|e| EmbeddedError::Build(Box::new(e)))?;
        if let Some(source) = &restore {
            tracing::info!(job = %settings.job_id, epoch = source.manifest.epoch.0, "restoring from checkpoint");
        }
        let started = Instant::now();
        let (result, attempt_stats) =
            run_attempt(&engine, &dataflow, settings, restore.take(), cancel)?;
        merge(&mut stats, attempt_stats);
        let error = match result {
            Ok(job) => {
                return Ok(EmbeddedReport {
                    job,
                    restarts: restarts.failures(),
                    restored_from,
                    checkpoints: stats,
                })
            }
            Err(error) => error,
        };
        if cancel.is_cancelled() || matches!(error, RuntimeError::IncompatibleCheckpoint { .. }) {
            return Err(error.into());
        }
        match restarts.on_failure(started.elapsed()) {
            RestartDecision::GiveUp { failures } => {
                return Err(EmbeddedError::Failed {
                    restarts: failures - 1,
                    source: error,
                })
            }
            RestartDecision::RestartAfter(wait) => {
                tracing::warn!(
                    job = %settings.job_id,
                    error = &error as &dyn std::error::Error,
                    backoff = ?wait,
                    "job failed; restarting from the latest checkpoint"
                );
                std::thread::sleep(wait);
                restore = latest(settings)?;
            }
        }
    }
}

/// One attempt: the engine on this thread, the checkpoint driver on another.
fn run_attempt(
    engine: &LocalEngine,
    dataflow: &Dataflow,
    settings: &CheckpointSettings,
    restore: Option<RestoreSource>,
    cancel: &CancelToken,
) -> Result<(Result<JobReport, RuntimeError>, CheckpointStats), EmbeddedError> {
    let catalog = CheckpointCatalog::new(settings.storage.clone(), &settings.job_id);
    let restored_from = restore.as_ref().map(|r| r.manifest.epoch);
    let driver = CheckpointDriver::new(catalog, dataflow.graph(), settings.driver, restored_from)?;
    let (events_tx, events) = crossbeam_channel::unbounded();
    let (commands, commands_rx) = crossbeam_channel::unbounded();
    let driver = std::thread::Builder::new()
        .name("checkpoint-driver".into())
        .spawn(move || driver.run(&events, &commands))
        .map_err(|source| RuntimeError::Spawn {
            operator: "checkpoint-driver".into(),
            subtask: 0,
            source,
        })?;
    let run = CheckpointRun {
        job_id: settings.job_id.clone(),
        storage: settings.storage.clone(),
        commands: commands_rx,
        events: events_tx,
        restore,
    };
    let result = engine.run_with(dataflow, Some(run), cancel);
    let stats = driver.join().unwrap_or_default();
    Ok((result, stats))
}

fn merge(total: &mut CheckpointStats, attempt: CheckpointStats) {
    total.completed += attempt.completed;
    total.aborted += attempt.aborted;
    total.durations.extend(attempt.durations);
    total.sizes.extend(attempt.sizes);
    total.incremental_sizes.extend(attempt.incremental_sizes);
}

/// Shared so tests and benchmarks can build the same settings as the CLI.
pub fn checkpoint_settings(
    url: &str,
    job_id: &str,
    driver: DriverConfig,
) -> Result<CheckpointSettings, CoordinatorError> {
    Ok(CheckpointSettings {
        storage: CheckpointStorage::open(url)?,
        job_id: job_id.to_owned(),
        driver,
    })
}
