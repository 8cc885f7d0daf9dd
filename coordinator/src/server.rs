//! [`Coordinator`]: the REST API and the worker endpoint on a runtime of
//! their own, sharing one [`Cluster`].

use crate::cluster::{Cluster, JobCatalog};
use crate::error::CoordinatorError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How a coordinator runs.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// REST API address (`host:port`, port 0 for any).
    pub listen: String,
    /// Worker endpoint address; the API's host with any port when absent.
    pub worker_listen: Option<String>,
    /// Checkpoint storage root URL or path.
    pub checkpoint_dir: String,
    /// The shared token; required when listening beyond loopback.
    pub token: Option<String>,
    /// Silence after which a worker is declared lost.
    pub heartbeat_timeout: Duration,
    /// Interval of the coordinator's heartbeats to workers.
    pub heartbeat_interval: Duration,
}

impl CoordinatorConfig {
    /// Loopback, any port, checkpoints under `checkpoint_dir`, 1 s timeout.
    pub fn local(checkpoint_dir: String) -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            worker_listen: None,
            checkpoint_dir,
            token: None,
            heartbeat_timeout: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(100),
        }
    }
}

/// How often the failure detector looks at the clock.
const DETECTOR_TICK: Duration = Duration::from_millis(10);

/// A running coordinator; dropping it stops it.
pub struct Coordinator {
    api_addr: SocketAddr,
    worker_addr: SocketAddr,
    cluster: Arc<Cluster>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Coordinator(api {}, workers {})",
            self.api_addr, self.worker_addr
        )
    }
}

fn bind(runtime: &tokio::runtime::Runtime, address: &str) -> Result<TcpListener, CoordinatorError> {
    runtime
        .block_on(TcpListener::bind(address))
        .map_err(|source| CoordinatorError::Listen {
            address: address.to_owned(),
            source,
        })
}

impl Coordinator {
    /// Binds both endpoints and starts serving.
    pub fn start(
        config: &CoordinatorConfig,
        catalog: Arc<dyn JobCatalog>,
    ) -> Result<Self, CoordinatorError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("coordinator")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|source| CoordinatorError::Listen {
                address: config.listen.clone(),
                source,
            })?;
        let api = bind(&runtime, &config.listen)?;
        let api_addr = api
            .local_addr()
            .map_err(|source| CoordinatorError::Listen {
                address: config.listen.clone(),
                source,
            })?;
        if !api_addr.ip().is_loopback() && config.token.is_none() {
            return Err(CoordinatorError::TokenRequired {
                address: api_addr.to_string(),
            });
        }
        let worker_listen = config
            .worker_listen
            .clone()
            .unwrap_or_else(|| SocketAddr::new(api_addr.ip(), 0).to_string());
        let workers = bind(&runtime, &worker_listen)?;
        let worker_addr = workers
            .local_addr()
            .map_err(|source| CoordinatorError::Listen {
                address: worker_listen.clone(),
                source,
            })?;
        let cluster = Arc::new(Cluster::new(
            catalog,
            config.checkpoint_dir.clone(),
            config.token.clone(),
            config.heartbeat_timeout,
        ));
        let ticking = cluster.clone();
        let beat_every = config.heartbeat_interval.max(DETECTOR_TICK);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(DETECTOR_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut last_beat = std::time::Instant::now();
            loop {
                tick.tick().await;
                let now = std::time::Instant::now();
                ticking.check_heartbeats(now);
                if now.duration_since(last_beat) >= beat_every {
                    ticking.heartbeat_workers();
                    last_beat = now;
                }
            }
        });
        runtime.spawn(crate::rpc::serve_workers(workers, cluster.clone()));
        let app = crate::api::router(cluster.clone(), worker_addr.to_string());
        runtime.spawn(async move {
            if let Err(error) = axum::serve(api, app).await {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "the REST API stopped"
                );
            }
        });
        Ok(Self {
            api_addr,
            worker_addr,
            cluster,
            runtime,
        })
    }

    /// The REST API's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The worker endpoint's address.
    pub fn worker_addr(&self) -> SocketAddr {
        self.worker_addr
    }

    /// The cluster state (for embedding).
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Stops serving.
    pub fn shutdown(self) {
        self.runtime.shutdown_background();
    }
}
