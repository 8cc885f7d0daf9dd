//! A worker's `/metrics` endpoint: its [`WorkerMetrics`] in the Prometheus
//! text format over HTTP, on a thread of its own, behind the cluster's
//! token like the coordinator's API (required beyond loopback).

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use weir_runtime::metrics::{WorkerMetrics, CONTENT_TYPE};

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsEndpointError {
    /// Beyond loopback, anyone could read the job's figures.
    #[error("serving metrics on {address} (beyond loopback) requires a shared token: pass --token or set WEIR_TOKEN")]
    TokenRequired {
        /// The address asked for.
        address: SocketAddr,
    },
    /// The address is malformed, taken, or not this machine's.
    #[error("serving metrics on {address}")]
    Listen {
        /// The address asked for.
        address: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct Endpoint {
    metrics: WorkerMetrics,
    token: Option<Arc<str>>,
}

/// Serves `metrics` at `http://{listen}/metrics` until the process ends;
/// returns the address it listens on (`listen` may ask for port 0).
pub fn serve(
    listen: &str,
    token: Option<String>,
    metrics: WorkerMetrics,
) -> Result<SocketAddr, MetricsEndpointError> {
    let listen_error = |source| MetricsEndpointError::Listen {
        address: listen.to_owned(),
        source,
    };
    let listener = std::net::TcpListener::bind(listen).map_err(listen_error)?;
    let address = listener.local_addr().map_err(listen_error)?;
    if !address.ip().is_loopback() && token.is_none() {
        return Err(MetricsEndpointError::TokenRequired { address });
    }
    listener.set_nonblocking(true).map_err(listen_error)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(listen_error)?;
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener).map_err(listen_error)?
    };
    let endpoint = Endpoint {
        metrics,
        token: token.map(Arc::from),
    };
    let router = Router::new()
        .route("/metrics", get(scrape))
        .layer(axum::middleware::from_fn_with_state(
            endpoint.clone(),
            authorize,
        ))
        .with_state(endpoint);
    std::thread::Builder::new()
        .name("metrics-endpoint".into())
        .spawn(move || {
            if let Err(error) = runtime.block_on(async { axum::serve(listener, router).await }) {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "the metrics endpoint stopped"
                );
            }
        })
        .map_err(listen_error)?;
    tracing::info!(%address, "serving metrics at /metrics");
    Ok(address)
}

async fn scrape(State(endpoint): State<Endpoint>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        endpoint.metrics.encode(),
    )
        .into_response()
}

async fn authorize(State(endpoint): State<Endpoint>, request: Request, next: Next) -> Response {
    if let Some(expected) = &endpoint.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(given) if weir_coordinator::api::tokens_match(given, expected) => {}
            Some(_) => return (StatusCode::UNAUTHORIZED, "wrong token\n").into_response(),
            None => {
                return (
                    StatusCode::UNAUTHORIZED,
                    "this worker requires a token (Authorization: Bearer …)\n",
                )
                    .into_response()
            }
        }
    }
    next.run(request).await
}
