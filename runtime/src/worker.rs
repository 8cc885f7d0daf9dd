//! [`run_worker`]: a worker process's life: register with the coordinator,
//! serve data exchange, run the deployments it is given, report their
//! checkpoint events and ends, and heartbeat.
//!
//! The control connection to the coordinator carries JSON frames
//! ([`weir_protocol::wire`]). Every deployment runs on its own thread with
//! the [`LocalEngine`]; commands and cancellations name the deployment's
//! job and attempt, and those for an attempt not running here are dropped
//! and logged.

use crate::engine::{
    CancelToken, CheckpointRun, EngineConfig, LocalEngine, RestoreSource, WorkerPart,
};
use crate::error::RuntimeError;
use crate::exchange::framing::{read_frame, FrameReadError};
use crate::exchange::Exchange;
use crossbeam_channel::Sender;
use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_operators::Dataflow;
use weir_protocol::cluster::{BackendKind, Deployment, DeploymentOutcome, JobSpec};
use weir_protocol::wire::{
    decode_control, encode_control, ToCoordinator, ToWorker, PROTOCOL_VERSION,
};
use weir_protocol::{ControlCommand, WorkerEvent, WorkerId};
use weir_state::{CheckpointStorage, MemoryBackend, RocksDbBackend, StateBackend};

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
            channel_capacity: 16,
        }
    }
}

/// The control connection's sending half, shared by every thread.
#[derive(Clone)]
struct ControlLink {
    stream: Arc<Mutex<TcpStream>>,
}

impl ControlLink {
    fn send(&self, message: &ToCoordinator) -> bool {
        let frame = encode_control(message);
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        stream.write_all(&frame).is_ok()
    }
}

/// A deployment running here.
struct Running {
    attempt: u32,
    commands: Sender<ControlCommand>,
    cancel: CancelToken,
}

type RunningMap = Arc<Mutex<HashMap<u32, Running>>>;

/// Runs a worker until `shutdown` is cancelled or the coordinator goes
/// away (an error). Returns once its deployments have been cancelled.
pub fn run_worker(
    config: &WorkerConfig,
    build: DataflowBuilder,
    shutdown: &CancelToken,
) -> Result<(), RuntimeError> {
    let exchange = Exchange::start(&config.data_listen, config.channel_capacity)?;
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
        data_addr: exchange.local_addr().to_string(),
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
    exchange.set_worker_id(me.0);
    tracing::info!(worker = %me, slots = config.slots, data = %exchange.local_addr(), "registered with the coordinator");
    let stop = shutdown.child();
    spawn_heartbeat(link.clone(), config.heartbeat, stop.clone())?;
    // Unblocks the read below when the worker is asked to stop.
    let closer = stream
        .try_clone()
        .map_err(network("cloning the connection to"))?;
    let watcher = stop.clone();
    std::thread::Builder::new()
        .name("worker-shutdown".into())
        .spawn(move || {
            while !watcher.is_cancelled() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = closer.shutdown(Shutdown::Both);
        })
        .map_err(|source| RuntimeError::Spawn {
            operator: "worker-shutdown".into(),
            subtask: 0,
            source,
        })?;
    let running: RunningMap = Arc::new(Mutex::new(HashMap::new()));
    let rocksdb: Arc<dyn StateBackend> = Arc::new(RocksDbBackend::default_location());
    let context = DeployContext {
        me,
        exchange,
        link,
        build,
        rocksdb,
        channel_capacity: config.channel_capacity,
        running: running.clone(),
    };
    let result = loop {
        let message = match read_message(&mut stream) {
            Ok(message) => message,
            Err(_) if stop.is_cancelled() => break Ok(()),
            Err(error) => break Err(error),
        };
        match message {
            ToWorker::Deploy(deployment) => context.deploy(*deployment),
            ToWorker::Command {
                job_number,
                attempt,
                command,
            } => {
                let running = running.lock().unwrap_or_else(|p| p.into_inner());
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
                let running = running.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(r) = running.get(&job_number).filter(|r| r.attempt == attempt) {
                    tracing::info!(job = job_number, attempt, "cancelling deployment");
                    r.cancel.cancel();
                }
            }
            ToWorker::Rejected { reason } => break Err(RuntimeError::Rejected { reason }),
            ToWorker::Registered { .. } => {}
        }
    };
    stop.cancel();
    for deployment in running.lock().unwrap_or_else(|p| p.into_inner()).values() {
        deployment.cancel.cancel();
    }
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

fn spawn_heartbeat(
    link: ControlLink,
    every: Duration,
    stop: CancelToken,
) -> Result<(), RuntimeError> {
    std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            while !stop.is_cancelled() && link.send(&ToCoordinator::Heartbeat) {
                std::thread::sleep(every);
            }
        })
        .map(|_| ())
        .map_err(|source| RuntimeError::Spawn {
            operator: "heartbeat".into(),
            subtask: 0,
            source,
        })
}

/// What every deployment thread of this worker shares.
#[derive(Clone)]
struct DeployContext {
    me: WorkerId,
    exchange: Exchange,
    link: ControlLink,
    build: DataflowBuilder,
    rocksdb: Arc<dyn StateBackend>,
    channel_capacity: usize,
    running: RunningMap,
}

impl DeployContext {
    fn deploy(&self, deployment: Deployment) {
        let (job, attempt) = (deployment.job_number, deployment.attempt);
        let (commands, commands_rx) = crossbeam_channel::unbounded();
        let cancel = CancelToken::new();
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(previous) = running.insert(
                job,
                Running {
                    attempt,
                    commands,
                    cancel: cancel.clone(),
                },
            ) {
                previous.cancel.cancel();
            }
        }
        self.exchange.begin_attempt(job, attempt);
        let context = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("deploy-{job}-{attempt}"))
            .spawn(move || {
                tracing::info!(job = %deployment.job_id, attempt, "deployment starting");
                let outcome = match context.run(&deployment, commands_rx, &cancel) {
                    Ok(report) => DeploymentOutcome::Finished {
                        events_in: report.events_in,
                        records_out: report.records_out,
                    },
                    Err(_) if cancel.is_cancelled() => DeploymentOutcome::Cancelled,
                    Err(error) => {
                        tracing::error!(job = %deployment.job_id, attempt, error = &error as &dyn std::error::Error, "deployment failed");
                        DeploymentOutcome::Failed {
                            error: error_chain(&error),
                        }
                    }
                };
                context.exchange.release(job, attempt);
                {
                    let mut running = context.running.lock().unwrap_or_else(|p| p.into_inner());
                    if running.get(&job).is_some_and(|r| r.attempt == attempt) {
                        running.remove(&job);
                    }
                }
                tracing::info!(job = %deployment.job_id, attempt, ?outcome, "deployment ended");
                context.link.send(&ToCoordinator::Ended {
                    job_number: job,
                    attempt,
                    outcome,
                });
            });
        if let Err(error) = spawned {
            self.link.send(&ToCoordinator::Ended {
                job_number: job,
                attempt,
                outcome: DeploymentOutcome::Failed {
                    error: format!("could not start the deployment thread: {error}"),
                },
            });
        }
    }

    fn run(
        &self,
        deployment: &Deployment,
        commands: crossbeam_channel::Receiver<ControlCommand>,
        cancel: &CancelToken,
    ) -> Result<crate::engine::JobReport, RuntimeError> {
        let dataflow = (self.build)(&deployment.spec).map_err(|source| RuntimeError::Build {
            job: deployment.spec.job.clone(),
            source,
        })?;
        if dataflow.graph() != &deployment.graph {
            return Err(RuntimeError::IncompatibleGraph {
                job: deployment.job_id.clone(),
                problem: "this worker builds a different graph from the coordinator's (another build of weir?)".into(),
            });
        }
        self.exchange.connect(self.me.0, &deployment.peers)?;
        let engine = LocalEngine::new(EngineConfig {
            batch_size: deployment.batch_size.max(1),
            channel_capacity: self.channel_capacity,
            state_backend: match deployment.state_backend {
                BackendKind::Memory => Arc::new(MemoryBackend),
                BackendKind::Rocksdb => self.rocksdb.clone(),
            },
            ..EngineConfig::default()
        });
        let part = WorkerPart {
            deployment,
            me: self.me,
            exchange: &self.exchange,
        };
        let Some(settings) = &deployment.checkpoints else {
            return engine.run_part(&dataflow, Some(&part), None, cancel);
        };
        let open = |url: &str| {
            CheckpointStorage::open(url).map_err(|source| RuntimeError::Restore {
                epoch: weir_protocol::Epoch(0),
                source,
            })
        };
        let restore = match &settings.restore {
            Some(point) => Some(RestoreSource {
                storage: open(&point.storage_url)?,
                job_id: point.job_id.clone(),
                manifest: point.manifest.clone(),
            }),
            None => None,
        };
        let (events, events_rx) = crossbeam_channel::unbounded::<WorkerEvent>();
        let link = self.link.clone();
        let (job_number, attempt) = (deployment.job_number, deployment.attempt);
        let forwarder = std::thread::Builder::new()
            .name(format!("events-{job_number}-{attempt}"))
            .spawn(move || {
                for event in events_rx {
                    link.send(&ToCoordinator::Event {
                        job_number,
                        attempt,
                        event,
                    });
                }
            })
            .map_err(|source| RuntimeError::Spawn {
                operator: "event-forwarder".into(),
                subtask: 0,
                source,
            })?;
        let run = CheckpointRun {
            job_id: settings.job_id.clone(),
            storage: open(&settings.storage_url)?,
            commands,
            events,
            restore,
        };
        let result = engine.run_part(&dataflow, Some(&part), Some(run), cancel);
        let _ = forwarder.join();
        result
    }
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
