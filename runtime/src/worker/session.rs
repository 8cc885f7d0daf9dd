//! One session with a leader: find it, connect, register (reporting the
//! deployments running here), then heartbeat and carry out its commands
//! until it goes away or falls silent.

use super::deploy::DeployContext;
use super::{spawn, WorkerConfig, WorkerState};
use crate::cancel::CancelToken;
use crate::checkpoint::catch_up::catch_up;
use crate::error::RuntimeError;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_protocol::cluster::DeploymentReport;
use weir_protocol::framing::{read_frame, FrameReadError};
use weir_protocol::wire::{
    decode_control, encode_control, ToCoordinator, ToWorker, PROTOCOL_VERSION,
};
use weir_protocol::WorkerEvent;

/// How often a worker reports its tasks' figures to the coordinator.
const TASK_FIGURES_EVERY: Duration = Duration::from_secs(1);

/// How long connecting to a coordinator may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a write to the coordinator may block (a cut-off connection).
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

fn millis_since(origin: Instant) -> u64 {
    origin.elapsed().as_millis() as u64
}

fn connect(address: &str) -> Result<TcpStream, RuntimeError> {
    let network = |source| RuntimeError::Network {
        action: "connecting to the coordinator at",
        address: address.to_owned(),
        source,
    };
    let resolved = address
        .to_socket_addrs()
        .map_err(network)?
        .next()
        .ok_or_else(|| network(std::io::Error::other("the address resolves to nothing")))?;
    let stream = TcpStream::connect_timeout(&resolved, CONNECT_TIMEOUT).map_err(network)?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    Ok(stream)
}

/// Registers at `address`; the leader's answer.
fn register(
    config: &WorkerConfig,
    state: &WorkerState,
    address: &str,
    reports: &[DeploymentReport],
) -> Result<(TcpStream, ToWorker), RuntimeError> {
    let mut stream = connect(address)?;
    let previous = *state.me.lock().unwrap_or_else(|p| p.into_inner());
    let frame = encode_control(&ToCoordinator::Register {
        protocol: PROTOCOL_VERSION,
        token: config.token.clone(),
        name: config.name.clone(),
        slots: config.slots,
        data_addr: state.exchange.local_addr().to_string(),
        metrics_addr: config.metrics_addr.clone(),
        previous,
        deployments: reports.to_vec(),
    })
    .map_err(|source| RuntimeError::Frame {
        what: "the registration",
        source,
    })?;
    use std::io::Write;
    stream
        .write_all(&frame)
        .map_err(|source| RuntimeError::Network {
            action: "registering with the coordinator at",
            address: address.to_owned(),
            source,
        })?;
    // A coordinator that does not answer in time is no leader.
    let _ = stream.set_read_timeout(Some(config.coordinator_timeout.max(CONNECT_TIMEOUT)));
    let answer = read_message(&mut stream)?;
    let _ = stream.set_read_timeout(None);
    Ok((stream, answer))
}

/// One registration: returns `Ok` when the leader went away after a
/// successful registration (the caller looks for a leader again).
pub(super) fn run(
    config: &WorkerConfig,
    state: &WorkerState,
    shutdown: &CancelToken,
) -> Result<(), RuntimeError> {
    let address = config
        .coordinator
        .find()
        .map_err(|problem| RuntimeError::NoLeader { problem })?;
    let reports = state.running.reports();
    let (mut stream, mut answer) = register(config, state, &address, &reports)?;
    if let ToWorker::NotLeader { leader } = &answer {
        // One hop to the leader the standby named.
        let Some(leader) = leader.clone() else {
            return Err(RuntimeError::NoLeader {
                problem: format!("{address} is a standby and knows no leader"),
            });
        };
        (stream, answer) = register(config, state, &leader, &reports)?;
    }
    let (me, lease_ms) = match answer {
        ToWorker::Registered { worker, lease_ms } => (worker, lease_ms),
        ToWorker::Rejected { reason } => return Err(RuntimeError::Rejected { reason }),
        ToWorker::NotLeader { leader } => {
            return Err(RuntimeError::NoLeader {
                problem: format!(
                    "the coordinator named as leader is a standby too (it names {})",
                    leader.as_deref().unwrap_or("none")
                ),
            })
        }
        other => {
            return Err(RuntimeError::Rejected {
                reason: format!("expected a registration answer, got {other:?}"),
            })
        }
    };
    state.running.reported(&reports);
    let previous = state
        .me
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .replace(me);
    *state.lease.lock().unwrap_or_else(|p| p.into_inner()) = lease_ms.map(Duration::from_millis);
    state.exchange.set_worker_id(me.0);
    tracing::info!(worker = %me, ?previous, slots = config.slots, data = %state.exchange.local_addr(), coordinator = %address, deployments = reports.len(), "registered with the leader");
    if let Some(registered) = &config.registered {
        let _ = registered.try_send(me);
    }
    let network = |action: &'static str| {
        let address = address.clone();
        move |source| RuntimeError::Network {
            action,
            address,
            source,
        }
    };
    state.link.set(Some(
        stream
            .try_clone()
            .map_err(network("cloning the connection to"))?,
    ));
    reannounce(state, &reports);
    let stop = shutdown.child();
    let origin = Instant::now();
    let last_heard = Arc::new(AtomicU64::new(0));
    // Heartbeats out.
    config.metrics.set_worker(me.0.to_string(), config.slots);
    let (beats, beat_stop, every) = (state.link.clone(), stop.clone(), config.heartbeat);
    let beat_metrics = config.metrics.clone();
    spawn("heartbeat", move || {
        // The tasks' figures go with every heartbeat a second or more
        // after the last ones (the coordinator's dashboard rates).
        let mut reported = Instant::now();
        while beats.send(&ToCoordinator::Heartbeat) {
            beat_metrics.heartbeat_sent();
            if reported.elapsed() >= TASK_FIGURES_EVERY {
                reported = Instant::now();
                let tasks = beat_metrics.running_figures();
                if !tasks.is_empty() && !beats.send(&ToCoordinator::TaskMetrics { tasks }) {
                    break;
                }
            }
            if beat_stop.wait_timeout(every) {
                break;
            }
        }
    })?;
    // The watchdog closes the connection (ending the read loop below) on
    // shutdown, or when the leader has been silent for too long.
    let closer = stream
        .try_clone()
        .map_err(network("cloning the connection to"))?;
    let (watch_stop, heard, timeout) =
        (stop.clone(), last_heard.clone(), config.coordinator_timeout);
    spawn("coordinator-watchdog", move || {
        loop {
            let silent = millis_since(origin).saturating_sub(heard.load(Ordering::Relaxed));
            let timeout_ms = timeout.as_millis() as u64;
            if silent > timeout_ms {
                tracing::warn!(
                    silent_ms = silent,
                    "no word from the leader; looking for one (deployments keep running)"
                );
                break;
            }
            // Until the leader's silence would pass the timeout, unless a
            // frame arrives in between (then the next deadline is later).
            let left = Duration::from_millis(timeout_ms - silent + 1);
            if watch_stop.wait_timeout(left) {
                break;
            }
        }
        let _ = closer.shutdown(Shutdown::Both);
    })?;
    let context = DeployContext {
        me,
        exchange: state.exchange.clone(),
        link: state.link.clone(),
        build: state.build.clone(),
        rocksdb: state.rocksdb.clone(),
        replicas: state.replicas.clone(),
        channel_capacity: config.channel_capacity,
        running: state.running.clone(),
        metrics: config.metrics.clone(),
    };
    loop {
        let message = match read_message(&mut stream) {
            Ok(message) => message,
            Err(_) if shutdown.is_cancelled() => break,
            Err(error) => {
                tracing::warn!(worker = %me, error = &error as &dyn std::error::Error, "lost the leader");
                break;
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
                if !state.running.command(job_number, attempt, command.clone()) {
                    tracing::debug!(
                        job = job_number,
                        attempt,
                        ?command,
                        "dropping a command for an attempt not running here"
                    );
                }
            }
            ToWorker::Cancel {
                job_number,
                attempt,
                region,
            } => {
                if state.running.cancel(job_number, attempt, region) {
                    tracing::info!(job = job_number, attempt, ?region, "cancelling deployment");
                }
            }
            ToWorker::SpareJoined {
                job_number,
                attempt,
                spare,
            } => {
                if let Some(spare) = state.running.spare_joined(job_number, attempt, &spare) {
                    tracing::info!(job = job_number, attempt, spare = %spare.worker, "a spare joined: replicas go to it");
                    state.exchange.dial_spares(me.0, &[spare]);
                }
            }
            ToWorker::CatchUp {
                job_number,
                job_id,
                storage_url,
                epoch,
                files,
            } => {
                let (replicas, link, rate) = (
                    state.replicas.clone(),
                    state.link.clone(),
                    config.catch_up_rate,
                );
                let spawned = spawn("catch-up", move || {
                    let started = Instant::now();
                    tracing::info!(job = %job_id, epoch, files = files.len(), "catching up on the latest checkpoint as a new spare");
                    let copied = weir_state::CheckpointStorage::open(&storage_url)
                        .map_err(|source| RuntimeError::CatchUp {
                            job: job_id.clone(),
                            path: storage_url.clone(),
                            source: Box::new(source),
                        })
                        .and_then(|storage| catch_up(&replicas, &storage, &job_id, &files, rate));
                    let took_ms = started.elapsed().as_millis() as u64;
                    let (copied_bytes, failure) = match copied {
                        Ok(done) => {
                            tracing::info!(job = %job_id, epoch, files = done.files, bytes = done.bytes, took_ms, "caught up");
                            (done.bytes, None)
                        }
                        Err(error) => {
                            tracing::warn!(job = %job_id, epoch, error = &error as &dyn std::error::Error, "catching up failed; a restore here reads what is missing from storage");
                            (0, Some(weir_protocol::error::chain(&error)))
                        }
                    };
                    link.send(&ToCoordinator::CaughtUp {
                        job_number,
                        epoch,
                        copied_bytes,
                        took_ms,
                        failure,
                    });
                });
                if let Err(error) = spawned {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "cannot start catching up"
                    );
                }
            }
            ToWorker::Rejected { reason } => {
                tracing::warn!(worker = %me, %reason, "the leader closed the connection");
                break;
            }
            ToWorker::Heartbeat | ToWorker::Registered { .. } | ToWorker::NotLeader { .. } => {}
        }
    }
    state.link.set(None);
    stop.cancel();
    Ok(())
}

/// Tells the leader what happened to the deployments between the snapshot
/// of `registered` and the link being up (those frames found no link):
/// parts that started, sources that finished, parts that ended. The
/// leader ignores what it heard already.
fn reannounce(state: &WorkerState, registered: &[DeploymentReport]) {
    let now = state.running.reports();
    for report in &now {
        let (job_number, attempt) = (report.job_number, report.attempt);
        let region = report.region.map(|r| r.region);
        let before = registered
            .iter()
            .find(|r| r.job_number == job_number && r.attempt == attempt);
        if let Some(outcome) = &report.ended {
            if before.is_none_or(|b| b.ended.is_none()) {
                state.link.send(&ToCoordinator::Ended {
                    job_number,
                    attempt,
                    region,
                    outcome: outcome.clone(),
                });
            }
            continue;
        }
        if report.started && before.is_none_or(|b| !b.started) {
            state.link.send(&ToCoordinator::Started {
                job_number,
                attempt,
                region,
                restored: report.restored.clone(),
            });
        }
        for task in &report.finished_sources {
            if before.is_none_or(|b| !b.finished_sources.contains(task)) {
                state.link.send(&ToCoordinator::Event {
                    job_number,
                    attempt,
                    region,
                    event: WorkerEvent::SourceFinished { task: *task },
                });
            }
        }
    }
    state.running.reported(&now);
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
