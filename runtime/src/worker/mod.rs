//! [`run_worker`]: a worker process's life: find the leader coordinator,
//! register, serve data exchange, run the deployments it is given, report
//! their checkpoint events and ends, and heartbeat.
//!
//! The control connection carries JSON frames ([`weir_protocol::wire`]).
//! Commands and cancellations name a deployment's job and attempt; those
//! for an attempt not running here are dropped and logged.
//!
//! A worker that loses its leader (the connection fails, or nothing
//! arrives for `coordinator_timeout`: it may be cut off, or the leader
//! died) keeps its deployments running while it looks for a leader, for
//! the leaderless window (the leader's lease plus a margin, by default).
//! It registers with whichever coordinator leads then, under the id it had,
//! reporting its deployments, so that the new leader can adopt them.
//! Nothing commits in the meantime: sinks commit only when a leader says a
//! checkpoint completed. A worker that finds no leader within the window
//! fences itself: it cancels every deployment, so a zombie attempt can
//! neither ack nor commit.
//!
//! - this module: the configuration and the loop over sessions.
//! - [`session`]: one registration with a leader (connect, register, read
//!   commands, heartbeat).
//! - [`deployments`]: the deployments running here and the reports a new
//!   leader adopts them from.
//! - [`deploy`]: running one deployment on the engine.

mod deploy;
mod deployments;
mod session;

use crate::cancel::CancelToken;
use crate::checkpoint::replicas::StateReplicas;
use crate::error::RuntimeError;
use crate::net::Exchange;
use deployments::Deployments;
use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_operators::Dataflow;
use weir_protocol::cluster::JobSpec;
use weir_protocol::wire::{encode_control, ToCoordinator};
use weir_protocol::WorkerId;
use weir_state::{RocksDbBackend, StateBackend};

/// Builds a job's dataflow from its spec: the binary's job registry.
pub type DataflowBuilder = Arc<
    dyn Fn(&JobSpec) -> Result<Dataflow, Box<dyn std::error::Error + Send + Sync>> + Send + Sync,
>;

/// Finds the worker endpoint of the coordinator that leads.
pub trait FindLeader: Send + Sync + std::fmt::Debug {
    /// The leader's worker endpoint (`host:port`), or why none is known.
    fn find(&self) -> Result<String, String>;
}

/// One coordinator at a known worker endpoint (as `weir run` embeds it).
#[derive(Debug, Clone)]
pub struct FixedEndpoint(pub String);

impl FindLeader for FixedEndpoint {
    fn find(&self) -> Result<String, String> {
        Ok(self.0.clone())
    }
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How to find the leader coordinator's worker endpoint.
    pub coordinator: Arc<dyn FindLeader>,
    /// Slots offered.
    pub slots: u32,
    /// Where to serve data exchange (`host:port`, port 0 for any).
    pub data_listen: String,
    /// The cluster's shared token, if it has one.
    pub token: Option<String>,
    /// A name for the coordinator's logs.
    pub name: String,
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// Silence from the coordinator after which the worker gives it up and
    /// looks for a leader (its deployments keep running).
    pub coordinator_timeout: Duration,
    /// How long deployments keep running without a leader before the
    /// worker cancels them; `None`: the leader's lease plus
    /// [`LEADERLESS_MARGIN`], or [`STANDALONE_LEADERLESS`] for a leader
    /// without a lease.
    pub leaderless_timeout: Option<Duration>,
    /// How long to keep trying to (re)register before giving up.
    pub reconnect_for: Duration,
    /// Messages a channel buffers, locally and (as credits) remotely.
    pub channel_capacity: usize,
    /// Told the worker's id at every registration with a leader (for an
    /// embedding process that waits until its worker is registered).
    pub registered: Option<crossbeam_channel::Sender<WorkerId>>,
    /// Bytes per second a new spare copies checkpoint files at while it
    /// catches up on a running job (0: unthrottled).
    pub catch_up_rate: u64,
    /// Its metrics, which its deployments' tasks report into.
    pub metrics: crate::metrics::WorkerMetrics,
    /// Where the embedding process serves [`metrics`](Self::metrics)
    /// (`host:port`), told to the coordinator for its cluster view.
    pub metrics_addr: Option<String>,
}

/// The default catch-up rate: 100 MiB/s, a fraction of a 10 Gbit/s link.
pub const DEFAULT_CATCH_UP_RATE: u64 = 100 << 20;

/// Added to the leader's lease for the leaderless window: time for a
/// standby to win and take over after the lease expires.
pub const LEADERLESS_MARGIN: Duration = Duration::from_secs(3);

/// The leaderless window under a standalone coordinator (no lease): time
/// for it to be started again.
pub const STANDALONE_LEADERLESS: Duration = Duration::from_secs(10);

/// How long a worker that never registered looks for a leader.
const FIRST_REGISTRATION: Duration = Duration::from_secs(10);

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            coordinator: Arc::new(FixedEndpoint("127.0.0.1:0".into())),
            slots: 1,
            data_listen: "127.0.0.1:0".into(),
            token: None,
            name: format!("worker-{}", std::process::id()),
            heartbeat: Duration::from_millis(100),
            coordinator_timeout: Duration::from_secs(1),
            leaderless_timeout: None,
            reconnect_for: Duration::from_secs(60),
            channel_capacity: 16,
            registered: None,
            catch_up_rate: DEFAULT_CATCH_UP_RATE,
            metrics: crate::metrics::WorkerMetrics::default(),
            metrics_addr: None,
        }
    }
}

/// The sending half of the control connection to the current leader,
/// shared by every thread and deployment; between leaders it has none, and
/// what is sent is dropped (ends are reported at the next registration).
#[derive(Clone, Default)]
pub(crate) struct ControlLink {
    stream: Arc<Mutex<Option<TcpStream>>>,
}

impl ControlLink {
    fn stream(&self) -> std::sync::MutexGuard<'_, Option<TcpStream>> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn send(&self, message: &ToCoordinator) -> bool {
        let frame = match encode_control(message) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "a message to the coordinator is too large to send"
                );
                return false;
            }
        };
        let mut stream = self.stream();
        stream.as_mut().is_some_and(|s| s.write_all(&frame).is_ok())
    }

    fn set(&self, stream: Option<TcpStream>) {
        *self.stream() = stream;
    }
}

pub(crate) type RunningMap = Arc<Deployments>;

/// What a worker keeps across sessions with coordinators.
pub(crate) struct WorkerState {
    exchange: Exchange,
    replicas: Arc<StateReplicas>,
    running: RunningMap,
    rocksdb: Arc<dyn StateBackend>,
    build: DataflowBuilder,
    link: ControlLink,
    /// The id the last leader gave this worker.
    me: Mutex<Option<WorkerId>>,
    /// The last leader's lease.
    lease: Mutex<Option<Duration>>,
}

impl WorkerState {
    /// The worker is told to stop: its deployments end, RocksDB instances
    /// finish closing.
    fn shut_down(&self) {
        self.running.stop_all(Duration::from_secs(10));
        weir_state::rocks::finish_background_closes();
    }

    fn leaderless_window(&self, config: &WorkerConfig) -> Duration {
        config.leaderless_timeout.unwrap_or_else(|| {
            match *self.lease.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(lease) => lease + LEADERLESS_MARGIN,
                None => STANDALONE_LEADERLESS,
            }
        })
    }
}

/// Runs a worker until `shutdown` is cancelled. A lost leader is looked
/// for again (registering with whichever coordinator leads) for
/// `reconnect_for`; a refusal at the first registration (bad token,
/// duplicate) is returned at once.
pub fn run_worker(
    config: &WorkerConfig,
    build: DataflowBuilder,
    shutdown: &CancelToken,
) -> Result<(), RuntimeError> {
    let replicas = Arc::new(StateReplicas::default_location().map_err(|source| {
        RuntimeError::LocalIo {
            action: "claiming a directory for replicas in",
            path: weir_state::storage::data_dir()
                .join("replicas")
                .display()
                .to_string(),
            source,
        }
    })?);
    let state = WorkerState {
        exchange: Exchange::start(
            &config.data_listen,
            crate::net::remote::remote_queue_capacity(config.channel_capacity),
            Some(replicas.clone()),
        )?,
        replicas,
        running: Arc::new(Deployments::default()),
        rocksdb: Arc::new(RocksDbBackend::default_location()),
        build,
        link: ControlLink::default(),
        me: Mutex::new(None),
        lease: Mutex::new(None),
    };
    let started = Instant::now();
    // When the last session with a leader ended (none yet: never registered);
    // the leaderless window runs from then.
    let mut last_session: Option<Instant> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        let outcome = session::run(config, &state, shutdown);
        if shutdown.is_cancelled() {
            state.shut_down();
            return Ok(());
        }
        match outcome {
            Ok(()) => {
                last_session = Some(Instant::now());
                backoff = Duration::from_millis(50);
            }
            Err(error @ RuntimeError::Rejected { .. }) if last_session.is_none() => {
                return Err(error)
            }
            Err(error) if last_session.is_none() && started.elapsed() > FIRST_REGISTRATION => {
                return Err(error)
            }
            Err(error) if last_session.unwrap_or(started).elapsed() > config.reconnect_for => {
                return Err(error)
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "cannot register with a leader; retrying"
                );
            }
        }
        let window = state.leaderless_window(config);
        if let Some(since) = last_session {
            if since.elapsed() > window && !state.running.is_empty() {
                tracing::warn!(window = ?window, "no leader within the leaderless window: stopping every deployment");
                state.running.stop_all(Duration::from_secs(10));
            }
        }
        // While deployments wait for a leader to adopt them, look often.
        let cap = if state.running.is_empty() {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(200)
        };
        if shutdown.wait_timeout(backoff.min(cap)) {
            state.shut_down();
            return Ok(());
        }
        backoff = (backoff * 2).min(cap);
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), RuntimeError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map(|_| ())
        .map_err(|source| RuntimeError::Spawn {
            operator: name.into(),
            subtask: 0,
            source,
        })
}
