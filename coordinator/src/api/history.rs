//! The read-only views an operator watches a job through:
//! `GET /v1/jobs/{id}/checkpoints` (the checkpoint history with each
//! subtask's part), `GET /v1/jobs/{id}/exceptions` (the restart history)
//! and `GET /metrics` (the Prometheus text format).

use super::{find, leading, ApiError, ApiState};
use crate::history::{CheckpointRecord, RestartRecord, HISTORY_LEN};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

/// Checkpoints `GET /v1/jobs/{id}/checkpoints` returns unless asked.
pub const DEFAULT_CHECKPOINTS: usize = 50;

/// What `GET /v1/jobs/{id}/checkpoints` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointHistory {
    /// The job.
    pub job_id: String,
    /// Checkpoints completed under this leader.
    pub completed: u32,
    /// Checkpoints aborted under this leader.
    pub aborted: u32,
    /// The newest complete checkpoint the job would restore.
    pub latest_completed: Option<u64>,
    /// The newest checkpoints first (completed, aborted with their cause);
    /// the newest [`DETAILED_LEN`](crate::history::DETAILED_LEN) with each
    /// subtask's part.
    pub checkpoints: Vec<CheckpointRecord>,
}

/// What `GET /v1/jobs/{id}/exceptions` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExceptionHistory {
    /// The job.
    pub job_id: String,
    /// Global restarts over the job's life (every leader's).
    pub restarts: u32,
    /// The last failure, with its causes.
    pub failure: Option<String>,
    /// The newest restarts under this leader first, with their cause and
    /// how their subtasks were restored.
    pub exceptions: Vec<RestartRecord>,
}

#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    limit: Option<usize>,
}

pub(super) async fn checkpoints(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<CheckpointHistory>, ApiError> {
    let job = find(&state, &id)?;
    let limit = query.limit.unwrap_or(DEFAULT_CHECKPOINTS).min(HISTORY_LEN);
    let stats = job.checkpoint_stats();
    Ok(Json(CheckpointHistory {
        job_id: job.job_id.clone(),
        completed: stats.completed,
        aborted: stats.aborted,
        latest_completed: job.stored().checkpoint.map(|c| c.epoch),
        checkpoints: stats.history.into_iter().rev().take(limit).collect(),
    }))
}

pub(super) async fn exceptions(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ExceptionHistory>, ApiError> {
    let job = find(&state, &id)?;
    let stored = job.stored();
    let record = job.record();
    Ok(Json(ExceptionHistory {
        job_id: job.job_id.clone(),
        restarts: stored.restarts,
        failure: record.failure.clone(),
        exceptions: record.restarts.iter().rev().cloned().collect(),
    }))
}

pub(super) async fn metrics(State(state): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let cluster = leading(&state)?;
    let text = tokio::task::spawn_blocking(move || cluster.metrics.encode(&cluster))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text))
}
