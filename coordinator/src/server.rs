//! [`Coordinator`]: the REST API and the worker endpoint on a runtime of
//! their own, and the leadership loop: campaign, take over the control
//! state, lead until the term is lost, step down, campaign again. While it
//! does not lead, the endpoints answer as a standby, naming the leader.

use crate::cluster::{Cluster, JobCatalog};
use crate::control::{ControlPlane, CoordinatorAddress, LeaderInfo};
use crate::error::CoordinatorError;
use crate::session::{resume, take_over, TermSettings};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
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
    /// How long a new leader waits for the workers of a running attempt to
    /// report before it restarts the attempt instead of adopting it.
    pub adopt_within: Duration,
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
            adopt_within: Duration::from_secs(5),
        }
    }
}

/// This coordinator process as its endpoints see it: where it serves, how
/// it is elected, and the cluster it leads while it leads.
pub struct Node {
    /// Where this coordinator serves.
    pub address: CoordinatorAddress,
    /// Its election and control store.
    pub plane: Arc<dyn ControlPlane>,
    /// The shared token clients and workers must present, if any.
    pub token: Option<String>,
    leading: Mutex<Option<Arc<Cluster>>>,
    leading_changed: Condvar,
    /// `leading_changed` for async waiters (the failure detector's task).
    leadership: tokio::sync::Notify,
    last_step_down: Mutex<Option<StepDown>>,
    /// When this coordinator last won the election, ms since the Unix epoch.
    won_at_ms: Mutex<Option<u64>>,
}

/// When and why this coordinator last stopped leading.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepDown {
    /// The term it led.
    pub term: u64,
    /// When leadership lapsed (the lease clock), or was found lost, in ms
    /// since the Unix epoch.
    pub at_ms: u64,
    /// Why.
    pub reason: String,
}

impl Node {
    /// The cluster this coordinator leads, if it leads.
    pub fn cluster(&self) -> Option<Arc<Cluster>> {
        crate::cluster::lock(&self.leading)
            .clone()
            .filter(|c| c.leads())
    }

    /// Waits (at most `patience`) until this coordinator leads.
    pub fn wait_leading(&self, patience: Duration) -> Option<Arc<Cluster>> {
        let deadline = Instant::now() + patience;
        let mut leading = crate::cluster::lock(&self.leading);
        loop {
            if let Some(cluster) = leading.as_ref().filter(|c| c.leads()) {
                return Some(cluster.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            leading = self
                .leading_changed
                .wait_timeout(leading, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn set_leading(&self, cluster: Option<Arc<Cluster>>) {
        *crate::cluster::lock(&self.leading) = cluster;
        self.leading_changed.notify_all();
        self.leadership.notify_waiters();
    }

    /// When this coordinator's term began, while it leads.
    pub fn leading_since_ms(&self) -> Option<u64> {
        self.cluster().and(*crate::cluster::lock(&self.won_at_ms))
    }

    /// When and why this coordinator last stepped down, if it did.
    pub fn last_step_down(&self) -> Option<StepDown> {
        crate::cluster::lock(&self.last_step_down).clone()
    }

    /// The leader: this coordinator when it leads, else the election's
    /// (a blocking call: not from async code).
    pub fn leader(&self) -> Result<Option<LeaderInfo>, CoordinatorError> {
        if let Some(cluster) = self.cluster() {
            return Ok(Some(LeaderInfo {
                address: self.address.clone(),
                term: cluster.term,
            }));
        }
        self.plane.leader()
    }
}

/// A running coordinator; dropping it stops it.
pub struct Coordinator {
    node: Arc<Node>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Coordinator(api {}, workers {})",
            self.node.address.api, self.node.address.workers
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

fn local_addr(listener: &TcpListener, address: &str) -> Result<SocketAddr, CoordinatorError> {
    listener
        .local_addr()
        .map_err(|source| CoordinatorError::Listen {
            address: address.to_owned(),
            source,
        })
}

impl Coordinator {
    /// Binds both endpoints, starts serving (as a standby until elected)
    /// and campaigns for leadership through `plane`.
    pub fn start(
        config: &CoordinatorConfig,
        catalog: Arc<dyn JobCatalog>,
        plane: Arc<dyn ControlPlane>,
    ) -> Result<Self, CoordinatorError> {
        crate::crash::announce();
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
        let api_addr = local_addr(&api, &config.listen)?;
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
        let worker_addr = local_addr(&workers, &worker_listen)?;
        let node = Arc::new(Node {
            address: CoordinatorAddress {
                api: api_addr.to_string(),
                workers: worker_addr.to_string(),
            },
            plane: plane.clone(),
            token: config.token.clone(),
            leading: Mutex::new(None),
            leading_changed: Condvar::new(),
            leadership: tokio::sync::Notify::new(),
            last_step_down: Mutex::new(None),
            won_at_ms: Mutex::new(None),
        });
        let settings = TermSettings {
            catalog,
            checkpoint_root: config.checkpoint_dir.clone(),
            heartbeat_timeout: config.heartbeat_timeout,
            lease: plane.lease(),
            adopt_within: config.adopt_within,
        };
        let leading = node.clone();
        std::thread::Builder::new()
            .name("leadership".into())
            .spawn(move || lead(&leading, &settings))
            .map_err(|source| CoordinatorError::Listen {
                address: config.listen.clone(),
                source,
            })?;
        let ticking = node.clone();
        let beat_every = config.heartbeat_interval.max(Duration::from_millis(1));
        runtime.spawn(async move {
            let mut last_beat = Instant::now();
            loop {
                // Registered before the check, so a term that begins in
                // between still wakes it.
                let leadership = ticking.leadership.notified();
                let Some(cluster) = ticking.cluster() else {
                    // A standby: nothing to detect or send until it leads.
                    leadership.await;
                    continue;
                };
                let now = Instant::now();
                cluster.check_heartbeats(now);
                if now.duration_since(last_beat) >= beat_every {
                    cluster.heartbeat_workers();
                    last_beat = now;
                }
                // Until the next heartbeat out is due or the detector's
                // next worker would be silent too long, whichever is first.
                let next_beat = last_beat + beat_every;
                let wake = cluster
                    .next_silence_deadline()
                    .map_or(next_beat, |deadline| deadline.min(next_beat));
                tokio::time::sleep_until(wake.into()).await;
            }
        });
        runtime.spawn(crate::rpc::serve_workers(workers, node.clone()));
        let app = crate::api::router(node.clone());
        runtime.spawn(async move {
            if let Err(error) = axum::serve(api, app).await {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "the REST API stopped"
                );
            }
        });
        Ok(Self { node, runtime })
    }

    /// The REST API's address.
    pub fn api_addr(&self) -> &str {
        &self.node.address.api
    }

    /// The worker endpoint's address.
    pub fn worker_addr(&self) -> &str {
        &self.node.address.workers
    }

    /// This coordinator process.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Stops serving.
    pub fn shutdown(self) {
        self.runtime.shutdown_background();
    }
}

/// Campaigns, leads until the term is lost, steps down; forever.
fn lead(node: &Node, settings: &TermSettings) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let leadership = match node.plane.campaign(&node.address) {
            Ok(leadership) => leadership,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "campaign for leadership failed; retrying"
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let term = leadership.term;
        *crate::cluster::lock(&node.won_at_ms) = Some(weir_protocol::time::now_ms());
        let (cluster, jobs) = match take_over(settings, &leadership) {
            Ok(taken) => taken,
            Err(error) => {
                tracing::error!(
                    term,
                    error = &error as &dyn std::error::Error,
                    "could not take over the control state; giving the leadership up"
                );
                (leadership.resign)();
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        tracing::info!(term, jobs = jobs.len(), plane = %node.plane.describe(), "leading");
        node.set_leading(Some(cluster.clone()));
        resume(&cluster, jobs);
        let reason = leadership.guard.wait_lost();
        // Supervisors waiting for their workers look at leadership now.
        for job in cluster.jobs() {
            job.wake();
        }
        // A lapsed lease lapsed at its deadline, whenever this thread woke.
        let at_ms = match leadership.guard.lapses_at() {
            Some(at) if at <= Instant::now() => weir_protocol::time::wall_ms(at),
            _ => weir_protocol::time::now_ms(),
        };
        node.set_leading(None);
        *crate::cluster::lock(&node.last_step_down) = Some(StepDown {
            term,
            at_ms,
            reason: reason.clone(),
        });
        tracing::error!(term, %reason, "stepping down: this coordinator no longer leads");
        // Workers go and find the new leader; their deployments run on.
        cluster.kick_all();
        (leadership.resign)();
    }
}
