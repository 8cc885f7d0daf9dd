//! The REST/JSON API for clients (axum).
//!
//! | method and path | does |
//! |---|---|
//! | `POST /v1/jobs` | submit a [`SubmitRequest`]; 201 with the job's status |
//! | `GET /v1/jobs` | every job's status |
//! | `GET /v1/jobs/{id}` | one job's status (by id or number) |
//! | `POST /v1/jobs/{id}/cancel` | ask a job to stop; 202 |
//! | `GET /v1/jobs/{id}/checkpoints?limit=N` | the newest checkpoints, with each subtask's part ([`CheckpointHistory`](history::CheckpointHistory)) |
//! | `GET /v1/jobs/{id}/exceptions` | the restarts, with causes and restore tiers ([`ExceptionHistory`](history::ExceptionHistory)) |
//! | `GET /v1/cluster` | the worker endpoint and the registered workers |
//! | `GET /v1/leader` | this coordinator's role and the leader (any coordinator answers) |
//! | `GET /metrics` | the leader's metrics, Prometheus text format ([`crate::metrics`]) |
//! | `GET /v1/jobs/{id}/graph` | the job graph with each operator's rates ([`GraphView`](dashboard::GraphView)) |
//! | `GET /` | the web dashboard ([`dashboard`]) |
//!
//! Errors are `{"error": "…"}` with a 4xx status. When the coordinator
//! has a token, every request must carry `Authorization: Bearer <token>`
//! (or the dashboard's cookie, set by opening `/?token=<token>`).
//! A standby answers every other request with `307 Temporary Redirect` to
//! the same path on the leader (`Location`, and `"leader"` in the JSON
//! body), or `503 Service Unavailable` while no leader is known.

pub mod dashboard;
pub mod history;

use crate::cluster::{Cluster, WorkerInfo};
use crate::control::{CoordinatorAddress, LeaderInfo};
use crate::job::{JobHandle, JobStatus};
use crate::savepoint::{take_savepoint, SavepointDone, SavepointError, SavepointOptions};
use crate::server::Node;
use crate::submission::{submit_job, SubmitError};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use weir_protocol::SubmitRequest;

/// How long `GET /v1/leader` waits for the election to name the leader.
const LEADER_ANSWER_WITHIN: Duration = Duration::from_millis(500);

/// What `GET /v1/cluster` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Where workers connect.
    pub worker_endpoint: String,
    /// The registered workers.
    pub workers: Vec<WorkerInfo>,
    /// The workers this leader declared lost, newest first.
    #[serde(default)]
    pub lost: Vec<crate::cluster::LostWorker>,
}

/// What `GET /v1/leader` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderAnswer {
    /// The coordinator that answered.
    pub this: CoordinatorAddress,
    /// Whether it leads.
    pub leading: bool,
    /// The leader, when one is known.
    pub leader: Option<LeaderInfo>,
    /// Why the leader is not known, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// When and why this coordinator last stopped leading.
    #[serde(default)]
    pub last_step_down: Option<crate::server::StepDown>,
    /// When its term began (ms since the Unix epoch), while it leads.
    #[serde(default)]
    pub leading_since_ms: Option<u64>,
}

#[derive(Clone)]
struct ApiState {
    node: Arc<Node>,
}

/// An error response.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// The cluster this coordinator leads, or the answer of a standby.
fn leading(state: &ApiState) -> Result<Arc<Cluster>, ApiError> {
    state.node.cluster().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "this coordinator stepped down; ask the leader".into(),
        )
    })
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// Compares tokens in time independent of where they differ.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The API's router.
pub fn router(node: Arc<Node>) -> Router {
    let state = ApiState { node };
    Router::new()
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(status))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/savepoint", post(savepoint))
        .route("/v1/jobs/{id}/checkpoints", get(history::checkpoints))
        .route("/v1/jobs/{id}/exceptions", get(history::exceptions))
        .route("/v1/cluster", get(cluster_info))
        .route("/metrics", get(history::metrics))
        .route("/v1/jobs/{id}/graph", get(dashboard::graph))
        .route("/", get(dashboard::index))
        .route("/dashboard/dashboard.js", get(dashboard::script))
        .route("/dashboard/dashboard.css", get(dashboard::style))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), standby))
        .route("/v1/leader", get(leader))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .with_state(state)
}

/// Asks the election who leads (a blocking call, off the async threads).
async fn ask_leader(node: &Arc<Node>) -> Result<Option<LeaderInfo>, String> {
    let asked = node.clone();
    tokio::task::spawn_blocking(move || asked.leader())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| crate::error::chain(&e))
}

/// A standby redirects to the leader (or says none is known).
async fn standby(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if state.node.cluster().is_some() {
        return next.run(request).await;
    }
    let me = &state.node.address;
    let leader = ask_leader(&state.node).await;
    match leader {
        Ok(Some(leader)) if leader.address != *me => {
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            let location = format!("http://{}{path}", leader.address.api);
            let body = serde_json::json!({
                "error": format!(
                    "this coordinator ({}) is a standby; the leader is {} (term {})",
                    me.api, leader.address.api, leader.term
                ),
                "leader": leader.address.api,
            });
            let mut response = (StatusCode::TEMPORARY_REDIRECT, Json(body)).into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Ok(_) => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this coordinator ({}) is a standby and no leader is elected yet",
                me.api
            ),
        )
        .into_response(),
        Err(problem) => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this coordinator ({}) is a standby and cannot tell the leader: {problem}",
                me.api
            ),
        )
        .into_response(),
    }
}

async fn leader(State(state): State<ApiState>) -> Json<LeaderAnswer> {
    let node = &state.node;
    let leading = node.cluster().is_some();
    let last_step_down = node.last_step_down();
    // Answer promptly even when the election cannot be asked (this
    // coordinator may be cut off from etcd): clients probe with short
    // deadlines.
    let asked = tokio::time::timeout(LEADER_ANSWER_WITHIN, ask_leader(node)).await;
    let (leader, problem) = match asked {
        Ok(Ok(leader)) => (leader, None),
        Ok(Err(problem)) => (None, Some(problem)),
        Err(_) => (
            None,
            Some(format!(
                "the election did not answer within {LEADER_ANSWER_WITHIN:?}"
            )),
        ),
    };
    Json(LeaderAnswer {
        this: node.address.clone(),
        leading,
        leader,
        problem,
        last_step_down,
        leading_since_ms: node.leading_since_ms(),
    })
}

async fn authorize(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.node.token {
        // A browser opening the dashboard passes the token once in the
        // query; it is kept in a cookie, which later requests carry.
        if let Some(given) = dashboard::query_token(request.uri().query()) {
            if !tokens_match(&given, expected) {
                return ApiError(StatusCode::UNAUTHORIZED, "wrong token".into()).into_response();
            }
            let cookie = format!(
                "{}={}; Path=/; HttpOnly; SameSite=Strict",
                dashboard::TOKEN_COOKIE,
                dashboard::cookie_value(&given)
            );
            // To the dashboard itself, whatever the path asked: never
            // elsewhere.
            return (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, "/".to_owned()),
                    (header::SET_COOKIE, cookie),
                ],
            )
                .into_response();
        }
        // The cookie a browser sends by itself is good for reads only: a
        // page elsewhere must not submit or cancel jobs with it.
        let reads = matches!(*request.method(), Method::GET | Method::HEAD);
        let from_cookie = reads
            .then(|| dashboard::cookie_token(request.headers()))
            .flatten();
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned)
            .or(from_cookie);
        let given = given.as_deref();
        match given {
            None => {
                return ApiError(
                    StatusCode::UNAUTHORIZED,
                    "this coordinator requires a token (Authorization: Bearer …; the dashboard: open /?token=…)".into(),
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
    let cluster = leading(&state)?;
    let job = tokio::task::spawn_blocking(move || submit_job(&cluster, request))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|error| {
            let status = match error {
                SubmitError::Invalid(_) => StatusCode::BAD_REQUEST,
                SubmitError::Conflict(_) => StatusCode::CONFLICT,
                // Not 503: the job may have been recorded, and a client
                // must not submit it again blindly.
                SubmitError::NotLeader(_) => StatusCode::INTERNAL_SERVER_ERROR,
                SubmitError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            ApiError(status, error.to_string())
        })?;
    Ok((StatusCode::CREATED, Json(job.status())))
}

async fn list(State(state): State<ApiState>) -> Result<Json<Vec<JobStatus>>, ApiError> {
    let cluster = leading(&state)?;
    Ok(Json(cluster.jobs().iter().map(|j| j.status()).collect()))
}

fn find(state: &ApiState, id: &str) -> Result<Arc<JobHandle>, ApiError> {
    leading(state)?
        .job(id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job '{id}'")))
}

/// `GET /v1/jobs/{id}`'s query: `wait_ms` makes the answer wait until the
/// job has ended or that long passed (at most [`MAX_STATUS_WAIT`]), so that
/// a client waiting for the end asks once instead of polling.
#[derive(Debug, serde::Deserialize)]
struct StatusQuery {
    wait_ms: Option<u64>,
}

/// The longest a status request waits for a job to end.
const MAX_STATUS_WAIT: Duration = Duration::from_secs(60);

async fn status(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Result<Json<JobStatus>, ApiError> {
    let job = find(&state, &id)?;
    if let Some(wait) = query.wait_ms.map(Duration::from_millis) {
        job.ended_within(wait.min(MAX_STATUS_WAIT)).await;
    }
    Ok(Json(job.status()))
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
    job.request_cancel();
    Ok((StatusCode::ACCEPTED, Json(job.status())))
}

async fn savepoint(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<SavepointDone>, ApiError> {
    let options: SavepointOptions = if body.is_empty() {
        SavepointOptions::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| bad_request(format!("malformed savepoint request: {e}")))?
    };
    let cluster = leading(&state)?;
    let job = find(&state, &id)?;
    let done = tokio::task::spawn_blocking(move || {
        take_savepoint(&job, &cluster.checkpoint_root, &options)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|error| match error {
        SavepointError::Refused(problem) => ApiError(StatusCode::CONFLICT, problem),
        SavepointError::Invalid(problem) => bad_request(problem),
        SavepointError::Failed(problem) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, problem),
    })?;
    Ok(Json(done))
}

async fn cluster_info(State(state): State<ApiState>) -> Result<Json<ClusterInfo>, ApiError> {
    let cluster = leading(&state)?;
    Ok(Json(ClusterInfo {
        worker_endpoint: state.node.address.workers.clone(),
        workers: cluster.workers(),
        lost: cluster.recently_lost(),
    }))
}
