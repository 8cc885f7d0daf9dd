//! The worker endpoint: one TCP connection per worker carrying JSON
//! control frames ([`weir_protocol::wire`]).
//!
//! The first frame must be a valid `Register` (right protocol version and
//! token). A bad frame at any point (garbage, truncated, oversized, not
//! JSON of the protocol) is answered with `Rejected` naming the problem,
//! and that connection is closed; the endpoint keeps serving the others.
//! A closed connection is a lost worker. A coordinator that does not lead
//! answers a registration with `NotLeader`, naming the leader's endpoint.

use crate::cluster::Cluster;
use crate::job::{AttemptReport, CatchUpOutcome};
use crate::server::Node;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use weir_protocol::wire::{
    decode_control, encode_control, frame_len, ToCoordinator, ToWorker, PROTOCOL_VERSION,
};
use weir_protocol::{WireError, WorkerId};

/// Why a connection ended when the worker closed it.
const CLOSED: &str = "connection closed";

/// Why a connection ended when the failure detector declared its worker lost.
const DECLARED_LOST: &str = "declared lost by the failure detector";

/// Accepts worker connections until the listener fails.
pub async fn serve_workers(listener: TcpListener, node: Arc<Node>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "accepting a worker connection failed"
                );
                continue;
            }
        };
        let node = node.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match serve_worker(stream, &node).await {
                Err(reason) if reason != CLOSED => {
                    tracing::warn!(%peer, %reason, "worker connection closed")
                }
                _ => tracing::debug!(%peer, "worker connection closed"),
            }
        });
    }
}

/// Reads one frame's body; `Ok(None)` at a clean end of stream.
async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> Result<Option<Vec<u8>>, WireError> {
    let mut header = [0u8; 4];
    let got = read_full(stream, &mut header).await;
    if got == 0 {
        return Ok(None);
    }
    if got < 4 {
        return Err(WireError::Truncated { expected: 4, got });
    }
    let len = frame_len(header)?;
    let mut body = vec![0u8; len];
    let got = read_full(stream, &mut body).await;
    if got < len {
        return Err(WireError::Truncated { expected: len, got });
    }
    Ok(Some(body))
}

async fn read_full(stream: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

async fn reject(stream: &mut TcpStream, reason: String) -> String {
    answer_and_close(
        stream,
        &ToWorker::Rejected {
            reason: reason.clone(),
        },
    )
    .await;
    reason
}

fn too_large(error: &weir_protocol::error::WireError) {
    tracing::error!(
        error = error as &dyn std::error::Error,
        "a message to a worker is too large to send"
    );
}

/// Sends `message` as the last frame of the connection.
async fn answer_and_close(stream: &mut TcpStream, message: &ToWorker) {
    match encode_control(message) {
        Ok(frame) => {
            let _ = stream.write_all(&frame).await;
        }
        Err(error) => too_large(&error),
    }
    let _ = stream.shutdown().await;
    // Read what the peer still sends before closing: closing with unread
    // input makes the kernel reset the connection, which can destroy the
    // rejection before the peer reads it.
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), drain).await;
}

async fn next_message(stream: &mut TcpStream) -> Result<Option<ToCoordinator>, String> {
    match read_frame(stream).await {
        Ok(None) => Ok(None),
        Ok(Some(body)) => match decode_control::<ToCoordinator>(&body) {
            Ok(message) => Ok(Some(message)),
            Err(error) => Err(reject(stream, error.to_string()).await),
        },
        Err(error) => Err(reject(stream, error.to_string()).await),
    }
}

async fn serve_worker(mut stream: TcpStream, node: &Arc<Node>) -> Result<(), String> {
    let Some(first) = next_message(&mut stream).await? else {
        return Ok(());
    };
    let ToCoordinator::Register {
        protocol,
        token,
        name,
        slots,
        data_addr,
        metrics_addr,
        previous,
        deployments,
    } = first
    else {
        return Err(reject(&mut stream, "the first frame must be a registration".into()).await);
    };
    if protocol != PROTOCOL_VERSION {
        return Err(reject(
            &mut stream,
            format!(
                "worker speaks protocol version {protocol}, this coordinator {PROTOCOL_VERSION}"
            ),
        )
        .await);
    }
    if let Some(expected) = &node.token {
        match token {
            Some(given) if crate::api::tokens_match(&given, expected) => {}
            Some(_) => return Err(reject(&mut stream, "wrong token".into()).await),
            None => {
                return Err(reject(&mut stream, "this coordinator requires a token".into()).await)
            }
        }
    }
    if slots == 0 {
        return Err(reject(&mut stream, "a worker must offer at least one slot".into()).await);
    }
    let Some(cluster) = node.cluster() else {
        let asked = node.clone();
        let leader = tokio::task::spawn_blocking(move || asked.leader())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .filter(|l| l.address != node.address)
            .map(|l| l.address.workers);
        answer_and_close(&mut stream, &ToWorker::NotLeader { leader }).await;
        return Ok(());
    };
    let (outbox, mut outgoing) = mpsc::unbounded_channel();
    let (kick, kicked) = watch::channel(false);
    let registering = cluster.clone();
    let (registered_name, sender) = (name.clone(), outbox.clone());
    let registered = tokio::task::spawn_blocking(move || {
        registering.register_worker(
            crate::cluster::WorkerOffer {
                name: registered_name,
                slots,
                data_addr,
                metrics_addr,
            },
            previous,
            deployments,
            sender,
            kick,
        )
    })
    .await
    .unwrap_or_else(|e| Err(format!("registration failed: {e}")));
    let worker = match registered {
        Ok(worker) => worker,
        Err(reason) => return Err(reject(&mut stream, reason).await),
    };
    tracing::info!(%worker, %name, slots, ?previous, "worker registered");
    let (mut reader, mut writer) = stream.into_split();
    let mut writer_kicked = kicked.clone();
    let writing = tokio::spawn(async move {
        loop {
            // Queued frames first (a rejection must go out before the close).
            let message = tokio::select! {
                biased;
                message = outgoing.recv() => message,
                _ = writer_kicked.changed() => None,
            };
            let Some(message) = message else { break };
            let rejected = matches!(message, ToWorker::Rejected { .. });
            let frame = match encode_control(&message) {
                Ok(frame) => frame,
                // The worker cannot read it either: closing makes it
                // reconnect and the coordinator deal with it afresh.
                Err(error) => {
                    too_large(&error);
                    break;
                }
            };
            if writer.write_all(&frame).await.is_err() || rejected {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut kicked = kicked;
    let cause = loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader) => frame,
            // Declared lost (silent too long): the detector already acted.
            _ = kicked.changed() => break DECLARED_LOST.to_owned(),
        };
        let body = match frame {
            Ok(Some(body)) => body,
            Ok(None) => break CLOSED.to_owned(),
            Err(error) => {
                let reason = error.to_string();
                let _ = outbox.send(ToWorker::Rejected {
                    reason: reason.clone(),
                });
                break reason;
            }
        };
        cluster.heard(worker);
        let message = match decode_control::<ToCoordinator>(&body) {
            Ok(message) => message,
            Err(error) => {
                let reason = error.to_string();
                let _ = outbox.send(ToWorker::Rejected {
                    reason: reason.clone(),
                });
                break reason;
            }
        };
        if let Err(reason) = handle(&cluster, worker, message) {
            let _ = outbox.send(ToWorker::Rejected {
                reason: reason.clone(),
            });
            break reason;
        }
    };
    drop(outbox);
    if cluster.leads() {
        cluster.disconnected(worker, &cause);
    }
    let _ = writing.await;
    Err(cause)
}

/// Acts on one message of a registered worker; an error closes its connection.
fn handle(cluster: &Cluster, worker: WorkerId, message: ToCoordinator) -> Result<(), String> {
    match message {
        ToCoordinator::Register { .. } => Err(format!("worker {worker} is already registered")),
        ToCoordinator::Heartbeat => {
            cluster.metrics.heartbeat(worker);
            Ok(())
        }
        ToCoordinator::TaskMetrics { tasks } => {
            crate::cluster::lock(&cluster.rates).report(tasks, std::time::Instant::now());
            Ok(())
        }
        ToCoordinator::Event {
            job_number,
            attempt,
            region,
            event,
        } => {
            let Some(job) = cluster.job_by_number(job_number) else {
                tracing::warn!(%worker, job = job_number, "event for an unknown job dropped");
                return Ok(());
            };
            let inbox = job.inbox();
            match inbox.as_ref() {
                Some(inbox) if inbox.accepts_event(attempt, region) => {
                    if let Some(events) = &inbox.events {
                        let _ = events.send(event);
                    }
                }
                _ => {
                    tracing::warn!(%worker, job = %job.job_id, attempt, ?region, ?event, "dropping an event of an attempt that is not running")
                }
            }
            Ok(())
        }
        ToCoordinator::Started {
            job_number,
            attempt,
            region,
            restored,
        } => {
            if let Some(job) = cluster.job_by_number(job_number) {
                for r in &restored {
                    tracing::info!(job = %job.job_id, attempt, ?region, %worker, vertex = r.vertex, task = r.subtask, tier = %r.tier, "subtask restored");
                }
                let inbox = job.inbox();
                if let Some(inbox) = inbox.as_ref().filter(|i| i.accepts_event(attempt, region)) {
                    let part = (worker, region.map(|r| (r, attempt)));
                    let _ = inbox.reports.send((part, AttemptReport::Started(restored)));
                }
            }
            Ok(())
        }
        ToCoordinator::CaughtUp {
            job_number,
            epoch,
            copied_bytes,
            took_ms,
            failure,
        } => {
            if let Some(job) = cluster.job_by_number(job_number) {
                if let Some(inbox) = job.inbox().as_ref() {
                    let outcome = CatchUpOutcome {
                        epoch,
                        copied_bytes,
                        took_ms,
                        failure,
                    };
                    let _ = inbox
                        .reports
                        .send(((worker, None), AttemptReport::CaughtUp(outcome)));
                }
            }
            Ok(())
        }
        ToCoordinator::Ended {
            job_number,
            attempt,
            region,
            outcome,
        } => {
            let Some(job) = cluster.job_by_number(job_number) else {
                return Ok(());
            };
            let inbox = job.inbox();
            match inbox.as_ref() {
                Some(inbox) if inbox.accepts(attempt, region) => {
                    let part = (worker, region.map(|r| (r, attempt)));
                    let _ = inbox.reports.send((part, AttemptReport::Ended(outcome)));
                }
                _ => {
                    tracing::info!(%worker, job = %job.job_id, attempt, ?region, ?outcome, "end of an attempt that is no longer running")
                }
            }
            Ok(())
        }
    }
}
