//! The web dashboard, served at `/` with its assets compiled into the
//! binary (no build step: plain HTML, CSS and JavaScript that poll the
//! REST API), and `GET /v1/jobs/{id}/graph`, the job graph with each
//! operator's rates that the dashboard draws.
//!
//! A browser cannot send the bearer token by itself: when the coordinator
//! has one, `/?token=…` checks it and keeps it in a cookie
//! ([`TOKEN_COOKIE`]), which the API then accepts like the header.

use super::{find, leading, ApiError, ApiState};
use crate::rates::OperatorRates;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use weir_protocol::{Partitioning, VertexKind};

/// The cookie a browser keeps the token in.
pub const TOKEN_COOKIE: &str = "weir_token";

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

/// What `GET /v1/jobs/{id}/graph` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GraphView {
    /// The job.
    pub job_id: String,
    /// Its operators, by vertex id, with their rates.
    pub vertices: Vec<VertexView>,
    /// Its connections.
    pub edges: Vec<EdgeView>,
}

/// One operator and its rates over the last second or so.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VertexView {
    /// Its vertex id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Source, operator or sink.
    pub kind: VertexKind,
    /// Its parallelism.
    pub parallelism: u32,
    /// Its subtasks' rates and shares (zero when none reports).
    #[serde(flatten)]
    pub rates: OperatorRates,
}

/// One connection between operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeView {
    /// The upstream vertex.
    pub from: u32,
    /// The downstream vertex.
    pub to: u32,
    /// How records are routed.
    pub partitioning: Partitioning,
}

pub(super) async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
}

pub(super) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

pub(super) async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

pub(super) async fn graph(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<GraphView>, ApiError> {
    let cluster = leading(&state)?;
    let job = find(&state, &id)?;
    // The graph running now: below the asked parallelism when slots are short.
    let running = job.stored().running_parallelism;
    let mut rates =
        crate::cluster::lock(&cluster.rates).operators(&job.job_id, std::time::Instant::now());
    let vertices = job
        .graph
        .vertices
        .iter()
        .map(|v| VertexView {
            id: v.id.0,
            name: v.name.clone(),
            kind: v.kind,
            parallelism: if running > 0 && running < v.parallelism {
                running
            } else {
                v.parallelism
            },
            rates: rates.remove(&v.id.0).unwrap_or_default(),
        })
        .collect();
    let edges = job
        .graph
        .edges
        .iter()
        .map(|e| EdgeView {
            from: e.from.0,
            to: e.to.0,
            partitioning: e.partitioning,
        })
        .collect();
    Ok(Json(GraphView {
        job_id: job.job_id.clone(),
        vertices,
        edges,
    }))
}

/// The token a request carries in the [`TOKEN_COOKIE`] cookie.
pub(super) fn cookie_token(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == TOKEN_COOKIE).then(|| from_hex(value)).flatten()
        })
}

/// The cookie's value for `token`: hexadecimal, so that any token fits a
/// cookie (`;`, `,` and spaces do not).
pub(super) fn cookie_value(token: &str) -> String {
    token.bytes().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(value: &str) -> Option<String> {
    if !value.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..value.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(value.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The token in a `?token=` query, percent-decoded.
pub(super) fn query_token(query: Option<&str>) -> Option<String> {
    #[derive(Deserialize)]
    struct TokenQuery {
        token: Option<String>,
    }
    let query: TokenQuery = serde_urlencoded::from_str(query?).ok()?;
    query.token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_found_in_its_cookie_and_its_query() {
        let mut headers = axum::http::HeaderMap::new();
        let token = "s3;c ret,%";
        headers.insert(
            header::COOKIE,
            format!("theme=dark; weir_token={}", cookie_value(token))
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie_token(&headers).as_deref(), Some(token));
        assert_eq!(cookie_token(&axum::http::HeaderMap::new()), None);
        let mut garbled = axum::http::HeaderMap::new();
        garbled.insert(header::COOKIE, "weir_token=zz1".parse().unwrap());
        assert_eq!(cookie_token(&garbled), None);
        assert_eq!(
            query_token(Some("a=1&token=s3%3Bc%20ret%2C%25")).as_deref(),
            Some(token)
        );
        assert_eq!(query_token(Some("a=1")), None);
        assert_eq!(query_token(None), None);
    }
}
