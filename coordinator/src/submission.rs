//! Accepting a job: validate it against the job registry and the free
//! slots, resolve its restore point, record it in the control store and
//! start its supervisor. Shared by the REST API and the embedded cluster
//! of `weir run`.

use crate::catalog::CheckpointCatalog;
use crate::cluster::{AddJobError, Cluster};
use crate::job::JobHandle;
use crate::restore_check::check_restore;
use crate::scheduler::slots_needed;
use crate::supervisor::{resolve_restore, restore_location, spawn_supervisor, Start};
use std::sync::Arc;
use weir_protocol::SubmitRequest;
use weir_state::CheckpointStorage;

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The request is wrong (unknown job, bad parameters, too few slots,
    /// unusable checkpoint): the client must change it.
    #[error("{0}")]
    Invalid(String),
    /// The job id is taken by a job that has not ended.
    #[error("{0}")]
    Conflict(String),
    /// This coordinator lost its leadership while accepting the job (the
    /// client should ask the new leader).
    #[error("{0}")]
    NotLeader(String),
    /// The coordinator could not start the job.
    #[error("{0}")]
    Internal(String),
}

/// Whether `id` can name a job's checkpoint directory.
fn check_job_id(id: &str) -> Result<(), SubmitError> {
    let fine = id != crate::savepoint::DEFAULT_SAVEPOINT_DIR
        && !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(())
    } else {
        Err(SubmitError::Invalid(format!(
            "job id '{id}' must be 1 to 200 letters, digits, '-', '_' or '.', not starting with '.', and not '{}' (where savepoints go)",
            crate::savepoint::DEFAULT_SAVEPOINT_DIR
        )))
    }
}

/// Validates a submission, records the job and starts its supervisor.
pub fn submit_job(
    cluster: &Arc<Cluster>,
    request: SubmitRequest,
) -> Result<Arc<JobHandle>, SubmitError> {
    let SubmitRequest { spec, settings } = request;
    if spec.parallelism == 0 {
        return Err(SubmitError::Invalid(String::from(
            "parallelism must be at least 1",
        )));
    }
    if let Some(id) = &settings.job_id {
        check_job_id(id)?;
    }
    let graph = cluster.catalog.graph(&spec).map_err(SubmitError::Invalid)?;
    let needed = slots_needed(&graph);
    let free: u32 = cluster.free_slots().values().sum();
    if needed > free {
        return Err(SubmitError::Invalid(format!(
            "job '{}' needs {needed} slots (parallelism {}) but only {free} are free",
            graph.name, spec.parallelism
        )));
    }
    let storage = if settings.checkpoint_interval_ms > 0 {
        Some(
            CheckpointStorage::open(&cluster.checkpoint_root).map_err(|e| {
                SubmitError::Invalid(format!(
                    "checkpoint storage {}: {e}",
                    cluster.checkpoint_root
                ))
            })?,
        )
    } else if settings.restore != weir_protocol::cluster::RestoreFrom::Nothing {
        return Err(SubmitError::Invalid(
            "restoring needs checkpoints: the checkpoint interval must not be 0".into(),
        ));
    } else {
        None
    };
    let mut restore = None;
    let mut restore_warnings = Vec::new();
    let job_graph = graph.clone();
    let added = cluster.add_job(spec, settings, graph, |stored| {
        let Some(storage) = &storage else {
            return Ok(());
        };
        let point = resolve_restore(&stored.settings.restore, storage, &stored.job_id)
            .map_err(|e| crate::error::chain(&e))?;
        if let Some(point) = &point {
            let location = restore_location(point);
            let warnings = check_restore(
                &job_graph,
                &point.manifest,
                stored.settings.allow_non_restored_state,
            )
            .map_err(|e| format!("cannot restore {location}: {e}"))?;
            for warning in &warnings {
                tracing::warn!(job = %stored.job_id, %location, "{warning}");
            }
            restore_warnings = warnings;
        }
        stored.initial_restore = point.as_ref().map(restore_location);
        restore = point;
        stored.floor = CheckpointCatalog::new(storage.clone(), &stored.job_id)
            .highest_epoch()
            .map_err(|e| crate::error::chain(&e))?
            .map(|e| e.0);
        Ok(())
    });
    let job = match added {
        Ok(job) => job,
        Err(AddJobError::Conflict(message)) => return Err(SubmitError::Conflict(message)),
        Err(AddJobError::Invalid(message)) => return Err(SubmitError::Invalid(message)),
        Err(AddJobError::Store(error)) => {
            return Err(SubmitError::NotLeader(format!(
                "this coordinator lost its leadership while recording the job, which may or may not have been accepted (see `weir jobs list`): {}",
                crate::error::chain(&error)
            )))
        }
    };
    job.record().warnings = restore_warnings;
    spawn_supervisor(
        cluster.clone(),
        job.clone(),
        storage,
        Start::Submitted { restore },
    )
    .map_err(|e| SubmitError::Internal(e.to_string()))?;
    tracing::info!(job = %job.job_id, number = job.number, "job submitted");
    Ok(job)
}
