//! Accepting a job: validate it against the job registry and the free
//! slots, resolve its restore point, register it and start its supervisor.
//! Shared by the REST API and the embedded cluster of `weir run`.

use crate::cluster::Cluster;
use crate::job::JobHandle;
use crate::scheduler::slots_needed;
use crate::supervisor::{resolve_restore, spawn_supervisor};
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
    /// The coordinator could not start the job.
    #[error("{0}")]
    Internal(String),
}

/// Validates a submission, registers the job and starts its supervisor.
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
    let job = cluster
        .add_job(spec, settings, graph)
        .map_err(SubmitError::Conflict)?;
    let restore = match &storage {
        Some(storage) => match resolve_restore(&job.settings.restore, storage, &job.job_id) {
            Ok(restore) => restore,
            Err(error) => {
                let message = crate::error::chain(&error);
                job.record().failure = Some(message.clone());
                job.advance(weir_protocol::JobState::Failed);
                return Err(SubmitError::Invalid(message));
            }
        },
        None => None,
    };
    spawn_supervisor(cluster.clone(), job.clone(), storage, restore)
        .map_err(|e| SubmitError::Internal(e.to_string()))?;
    tracing::info!(job = %job.job_id, number = job.number, "job submitted");
    Ok(job)
}
