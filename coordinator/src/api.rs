//! The REST/JSON API for clients (axum).
//!
//! | method and path | does |
//! |---|---|
//! | `POST /v1/jobs` | submit a [`SubmitRequest`]; 201 with the job's status |
//! | `GET /v1/jobs` | every job's status |
//! | `GET /v1/jobs/{id}` | one job's status (by id or number) |
//! | `POST /v1/jobs/{id}/cancel` | ask a job to stop; 202 |
//! | `GET /v1/cluster` | the worker endpoint and the registered workers |
//!
//! Errors are `{"error": "…"}` with a 4xx status. When the coordinator
//! has a token, every request must carry `Authorization: Bearer <token>`.

use crate::cluster::{Cluster, WorkerInfo};
use crate::job::{JobHandle, JobStatus};
use crate::submission::{submit_job, SubmitError};
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use weir_protocol::SubmitRequest;

/// What `GET /v1/cluster` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Where workers connect.
    pub worker_endpoint: String,
    /// The registered workers.
    pub workers: Vec<WorkerInfo>,
}

#[derive(Clone)]
struct ApiState {
    cluster: Arc<Cluster>,
    worker_endpoint: String,
}

/// An error response.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// Compares tokens in time independent of where they differ.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API's router.
pub fn router(cluster: Arc<Cluster>, worker_endpoint: String) -> Router {
    let state = ApiState {
        cluster,
        worker_endpoint,
    };
    Router::new()
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(status))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/cluster", get(cluster_info))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .with_state(state)
}

async fn authorize(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.cluster.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            None => {
                return ApiError(
                    StatusCode::UNAUTHORIZED,
                    "this coordinator requires a token (Authorization: Bearer …)".into(),
                )
                .into_response()
            }
            Some(given) if !tokens_match(given, expected) => {
                return ApiError(StatusCode::UNAUTHORIZED, "wrong token".into()).into_response()
            }
            Some(_) => {}
        }
    }
    next.run(request).await
}

async fn submit(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<(StatusCode, Json<JobStatus>), ApiError> {
    let request: SubmitRequest = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("malformed submit request: {e}")))?;
    let cluster = state.cluster.clone();
    let job = tokio::task::spawn_blocking(move || submit_job(&cluster, request))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|error| {
            let status = match error {
                SubmitError::Invalid(_) => StatusCode::BAD_REQUEST,
                SubmitError::Conflict(_) => StatusCode::CONFLICT,
                SubmitError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            ApiError(status, error.to_string())
        })?;
    Ok((StatusCode::CREATED, Json(job.status())))
}

async fn list(State(state): State<ApiState>) -> Json<Vec<JobStatus>> {
    Json(state.cluster.jobs().iter().map(|j| j.status()).collect())
}

fn find(state: &ApiState, id: &str) -> Result<Arc<JobHandle>, ApiError> {
    state
        .cluster
        .job(id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job '{id}'")))
}

async fn status(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<JobStatus>, ApiError> {
    Ok(Json(find(&state, &id)?.status()))
}

async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobStatus>), ApiError> {
    let job = find(&state, &id)?;
    let current = job.record().lifecycle.state();
    if current.is_terminal() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("job '{}' has already ended ({current})", job.job_id),
        ));
    }
    job.cancel_requested.store(true, Ordering::Relaxed);
    Ok((StatusCode::ACCEPTED, Json(job.status())))
}

async fn cluster_info(State(state): State<ApiState>) -> Json<ClusterInfo> {
    Json(ClusterInfo {
        worker_endpoint: state.worker_endpoint.clone(),
        workers: state.cluster.workers(),
    })
}
