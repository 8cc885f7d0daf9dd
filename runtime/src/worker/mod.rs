//! [`run_worker`]: a worker process's life: register with the coordinator,
//! serve data exchange, run the deployments it is given, report their
//! checkpoint events and ends, and heartbeat.
//!
//! The control connection carries JSON frames ([`weir_protocol::wire`]).
//! Commands and cancellations name a deployment's job and attempt; those
//! for an attempt not running here are dropped and logged.
//!
//! A worker that loses its coordinator (the connection fails, or nothing
//! arrives for `coordinator_timeout`: it may be cut off by a partition)
//! fences itself: it cancels every deployment, so a zombie attempt can
//! neither ack nor commit, then registers again as a new worker.
//!
//! - this module: the session loop (connect, register, read commands).
//! - [`deploy`]: running one deployment on the engine.

mod deploy;

use crate::engine::CancelToken;
use crate::error::RuntimeError;
use crate::exchange::framing::{read_frame, FrameReadError};
use crate::exchange::Exchange;
use crate::replicas::StateReplicas;
use crossbeam_channel::Sender;
use deploy::DeployContext;
use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_operators::Dataflow;
use weir_protocol::cluster::JobSpec;
use weir_protocol::wire::{frame, ToCoordinator, ToWorker, PROTOCOL_VERSION};
use weir_protocol::ControlCommand;
use weir_protocol::WireError;
use weir_state::{RocksDbBackend, StateBackend};

/// Builds a job's dataflow from its spec: the binary's job registry.
pub type DataflowBuilder = Arc<
    dyn Fn(&JobSpec) -> Result<Dataflow, Box<dyn std::error::Error + Send + Sync>> + Send + Sync,
>;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The coordinator's worker endpoint (`host:port`).
    pub coordinator: String,
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
    /// Silence from the coordinator after which the worker stops its
    /// deployments and registers again.
    pub coordinator_timeout: Duration,
    /// How long to keep trying to (re)register before giving up.
    pub reconnect_for: Duration,
    /// Messages a channel buffers, locally and (as credits) remotely.
    pub channel_capacity: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            coordinator: "127.0.0.1:0".into(),
            slots: 1,
            data_listen: "127.0.0.1:0".into(),
            token: None,
            name: format!("worker-{}", std::process::id()),
            heartbeat: Duration::from_millis(100),
            coordinator_timeout: Duration::from_secs(1),
            reconnect_for: Duration::from_secs(60),
            channel_capacity: 16,
        }
    }
}

/// A control message as a whole frame: its JSON after its length.
pub fn encode_control<T: serde::Serialize>(message: &T) -> Vec<u8> {
    frame(&serde_json::to_vec(message).expect("control messages serialize"))
}

/// A control message from a frame's body.
pub fn decode_control<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(body).map_err(|e| WireError::Malformed {
        what: "control frame",
        problem: e.to_string(),
    })
}

/// The control connection's sending half, shared by every thread.
#[derive(Clone)]
pub(crate) struct ControlLink {
    stream: Arc<Mutex<TcpStream>>,
}

impl ControlLink {
    pub(crate) fn send(&self, message: &ToCoordinator) -> bool {
        let frame = encode_control(message);
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        stream.write_all(&frame).is_ok()
    }
}

/// A deployment running here.
pub(crate) struct Running {
    attempt: u32,
    commands: Sender<ControlCommand>,
    cancel: CancelToken,
}

/// The deployments running here, by job number; waiters learn when one ends.
#[derive(Default)]
pub(crate) struct Deployments {
    by_job: Mutex<HashMap<u32, Running>>,
    ended: std::sync::Condvar,
}

impl Deployments {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Running>> {
        self.by_job.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets `attempt` of job `job` (it ended), unless a newer one replaced it.
    pub(crate) fn ended(&self, job: u32, attempt: u32) {
        let mut running = self.lock();
        if running.get(&job).is_some_and(|r| r.attempt == attempt) {
            running.remove(&job);
        }
        self.ended.notify_all();
    }

    /// Cancels every deployment and waits (at most `patience`) for them to end.
    fn stop_all(&self, patience: Duration) {
        let mut running = self.lock();
        for deployment in running.values() {
            deployment.cancel.cancel();
        }
        let deadline = Instant::now() + patience;
        while !running.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            running = self
                .ended
                .wait_timeout(running, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

pub(crate) type RunningMap = Arc<Deployments>;

/// What a worker keeps across sessions with the coordinator.
struct WorkerState {
    exchange: Exchange,
    replicas: Arc<StateReplicas>,
    running: RunningMap,
    rocksdb: Arc<dyn StateBackend>,
    build: DataflowBuilder,
}

/// Runs a worker until `shutdown` is cancelled. A lost coordinator is
/// retried (registering again) for `reconnect_for`; a refusal at the first
/// registration (bad token, duplicate) is returned at once.
pub fn run_worker(
    config: &WorkerConfig,
    build: DataflowBuilder,
    shutdown: &CancelToken,
) -> Result<(), RuntimeError> {
    let replicas = Arc::new(StateReplicas::default_location());
    let state = WorkerState {
        exchange: Exchange::start(
            &config.data_listen,
            config.channel_capacity,
            Some(replicas.clone()),
        )?,
        replicas,
        running: Arc::new(Deployments::default()),
        rocksdb: Arc::new(RocksDbBackend::default_location()),
        build,
    };
    let mut registered_once = false;
    let mut since_last_session = Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        let outcome = session(config, &state, shutdown, &mut registered_once);
        state.running.stop_all(Duration::from_secs(10));
        if shutdown.is_cancelled() {
            weir_state::rocks::finish_background_closes();
            return Ok(());
        }
        match outcome {
            Ok(()) => {
                since_last_session = Instant::now();
                backoff = Duration::from_millis(50);
            }
            Err(error) if !registered_once => return Err(error),
            Err(error) if since_last_session.elapsed() > config.reconnect_for => return Err(error),
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "cannot register; retrying"
                );
            }
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(1));
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

fn millis_since(origin: Instant) -> u64 {
    origin.elapsed().as_millis() as u64
}

/// One registration: returns `Ok` when the coordinator went away after a
/// successful registration (the caller registers again).
fn session(
    config: &WorkerConfig,
    state: &WorkerState,
    shutdown: &CancelToken,
    registered_once: &mut bool,
) -> Result<(), RuntimeError> {
    let network = |action: &'static str| {
        let address = config.coordinator.clone();
        move |source| RuntimeError::Network {
            action,
            address,
            source,
        }
    };
    let mut stream = TcpStream::connect(&config.coordinator)
        .map_err(network("connecting to the coordinator at"))?;
    let _ = stream.set_nodelay(true);
    let link = ControlLink {
        stream: Arc::new(Mutex::new(
            stream
                .try_clone()
                .map_err(network("cloning the connection to"))?,
        )),
    };
    link.send(&ToCoordinator::Register {
        protocol: PROTOCOL_VERSION,
        token: config.token.clone(),
        name: config.name.clone(),
        slots: config.slots,
        data_addr: state.exchange.local_addr().to_string(),
    });
    let me = match read_message(&mut stream)? {
        ToWorker::Registered { worker } => worker,
        ToWorker::Rejected { reason } => return Err(RuntimeError::Rejected { reason }),
        other => {
            return Err(RuntimeError::Rejected {
                reason: format!("expected a registration answer, got {other:?}"),
            })
        }
    };
    *registered_once = true;
    state.exchange.set_worker_id(me.0);
    tracing::info!(worker = %me, slots = config.slots, data = %state.exchange.local_addr(), "registered with the coordinator");
    let stop = shutdown.child();
    let origin = Instant::now();
    let last_heard = Arc::new(AtomicU64::new(0));
    // Heartbeats out.
    let (beats, beat_stop, every) = (link.clone(), stop.clone(), config.heartbeat);
    spawn("heartbeat", move || {
        while !beat_stop.is_cancelled() && beats.send(&ToCoordinator::Heartbeat) {
            std::thread::sleep(every);
        }
    })?;
    // The watchdog closes the connection (ending the read loop below) on
    // shutdown, or when the coordinator has been silent for too long.
    let closer = stream
        .try_clone()
        .map_err(network("cloning the connection to"))?;
    let (watch_stop, heard, timeout) =
        (stop.clone(), last_heard.clone(), config.coordinator_timeout);
    spawn("coordinator-watchdog", move || {
        while !watch_stop.is_cancelled() {
            let silent = millis_since(origin).saturating_sub(heard.load(Ordering::Relaxed));
            if silent > timeout.as_millis() as u64 {
                tracing::warn!(
                    silent_ms = silent,
                    "no word from the coordinator; stopping deployments and registering again"
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = closer.shutdown(Shutdown::Both);
    })?;
    let context = DeployContext {
        me,
        exchange: state.exchange.clone(),
        link,
        build: state.build.clone(),
        rocksdb: state.rocksdb.clone(),
        replicas: state.replicas.clone(),
        channel_capacity: config.channel_capacity,
        running: state.running.clone(),
    };
    let result = loop {
        let message = match read_message(&mut stream) {
            Ok(message) => message,
            Err(_) if shutdown.is_cancelled() => break Ok(()),
            Err(error) => {
                tracing::warn!(worker = %me, error = &error as &dyn std::error::Error, "lost the coordinator");
                break Ok(());
            }
        };
        last_heard.store(millis_since(origin), Ordering::Relaxed);
        match message {
            ToWorker::Deploy(deployment) => context.deploy(*deployment),
            ToWorker::Command {
                job_number,
                attempt,
                command,
            } => {
                let running = state.running.lock();
                match running.get(&job_number) {
                    Some(r) if r.attempt == attempt => {
                        let _ = r.commands.send(command);
                    }
                    _ => tracing::debug!(
                        job = job_number,
                        attempt,
                        ?command,
                        "dropping a command for an attempt not running here"
                    ),
                }
            }
            ToWorker::Cancel {
                job_number,
                attempt,
            } => {
                let running = state.running.lock();
                if let Some(r) = running.get(&job_number).filter(|r| r.attempt == attempt) {
                    tracing::info!(job = job_number, attempt, "cancelling deployment");
                    r.cancel.cancel();
                }
            }
            ToWorker::Rejected { reason } => break Err(RuntimeError::Rejected { reason }),
            ToWorker::Heartbeat | ToWorker::Registered { .. } => {}
        }
    };
    stop.cancel();
    result
}

fn read_message(stream: &mut TcpStream) -> Result<ToWorker, RuntimeError> {
    let body = read_frame(stream).map_err(|error| match error {
        FrameReadError::Closed => RuntimeError::CoordinatorLost {
            problem: "it closed the connection".into(),
        },
        other => RuntimeError::CoordinatorLost {
            problem: other.to_string(),
        },
    })?;
    decode_control(&body).map_err(|e| RuntimeError::CoordinatorLost {
        problem: e.to_string(),
    })
}
