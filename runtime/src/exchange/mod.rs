//! Data exchange between workers over TCP.
//!
//! Each pair of workers shares one connection (the worker with the lower
//! id dials) that multiplexes every channel between their subtasks, of
//! every job, in both directions. Frames are rkyv [`ExchangeFrame`]s: a
//! channel message (records, watermark, barrier, end of data or stream)
//! or a credit grant ([`credits`]). Every frame names its job and attempt;
//! frames of an attempt that is no longer deployed here are dropped and
//! logged, so a zombie of an earlier attempt cannot feed a new one.
//!
//! - [`framing`]: length-prefixed frames on blocking sockets.
//! - [`credits`]: the sender's credit gate and the receiver's credit return.
//! - this module: [`Exchange`], the worker's listener, its links to peers,
//!   the routing of inbound frames, and [`RemoteSender`].

pub mod credits;
pub mod framing;

use crate::engine::CancelToken;
use crate::error::RuntimeError;
use crate::replicas::{Origin, StateReplicas};
use credits::{CreditGate, CreditReturn, CreditSink, NoCredit};
use crossbeam_channel::{Receiver, Sender};
use framing::{read_frame, FrameReadError};
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use weir_operators::output::OutputChannel;
use weir_operators::{Batch, BatchCodec, Message, OperatorError};
use weir_protocol::cluster::Peer;
use weir_protocol::wire::{
    decode_exchange, encode_exchange, encode_exchange_body, ChannelKey, ExchangeBody,
    ExchangeFrame, FrameBody, PROTOCOL_VERSION,
};
use weir_protocol::Epoch;

/// Largest part of a replica in one frame.
pub const REPLICA_PART: usize = 4 << 20;

/// Frames queued on a link above which replica pushes wait.
const REPLICA_QUEUE: u64 = 16;

/// How long pushing one file's replica may hold up its snapshot: a peer
/// that takes longer (overloaded, cut off) goes without; storage has the file.
const REPLICA_PATIENCE: Duration = Duration::from_secs(2);

/// How long a worker waits for a peer with a higher id to dial it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The sending half of the connection to one peer.
struct PeerLink {
    peer: u32,
    frames: Sender<ExchangeBody>,
    closed: AtomicBool,
    progress: Arc<LinkProgress>,
}

/// How far a link's writer got: frames queued, and frames handed to the
/// socket. Replica pushes wait on it instead of polling the queue.
#[derive(Default)]
struct LinkProgress {
    counts: Mutex<Counts>,
    changed: Condvar,
}

#[derive(Default)]
struct Counts {
    queued: u64,
    written: u64,
    stopped: bool,
}

impl LinkProgress {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer handed `written` frames in all to the socket.
    fn written(&self, written: u64) {
        self.counts().written = written;
        self.changed.notify_all();
    }

    /// The writer stopped (the connection is gone).
    fn stopped(&self) {
        self.counts().stopped = true;
        self.changed.notify_all();
    }

    /// Waits until `done(counts)`; false if the writer stopped or
    /// `deadline` passed first (a peer that stopped reading).
    fn wait(&self, deadline: Instant, done: impl Fn(&Counts) -> bool) -> bool {
        let mut counts = self.counts();
        while !done(&counts) {
            let left = deadline.saturating_duration_since(Instant::now());
            if counts.stopped || left.is_zero() {
                return false;
            }
            counts = self
                .changed
                .wait_timeout(counts, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

impl PeerLink {
    /// Queues a frame; its number in the link's order, or `None` when the
    /// link is gone.
    fn queue(&self, frame: ExchangeBody) -> Option<u64> {
        if self.closed.load(Ordering::Relaxed) {
            return None;
        }
        // Numbered under the lock, so numbers follow the queue's order.
        let mut counts = self.progress.counts();
        self.frames.send(frame).ok()?;
        counts.queued += 1;
        Some(counts.queued)
    }
}

impl CreditSink for PeerLink {
    fn send_frame(&self, frame: ExchangeBody) -> bool {
        self.queue(frame).is_some()
    }
}

/// An inbound channel: where its messages go, and how to decode records.
struct Inbound {
    queue: Sender<Message>,
    codec: BatchCodec,
}

#[derive(Default)]
struct Routes {
    links: HashMap<u32, Arc<PeerLink>>,
    inbound: HashMap<ChannelKey, Inbound>,
    gates: HashMap<ChannelKey, (u32, Arc<CreditGate>)>,
    /// The newest attempt deployed here, per job number.
    attempts: HashMap<u32, u32>,
}

impl Routes {
    /// Whether `key` belongs to an attempt older than the newest deployed
    /// here for its job (a zombie's frame).
    fn is_older_attempt(&self, key: &ChannelKey) -> bool {
        key.attempt < self.attempts.get(&key.job).copied().unwrap_or(0)
    }
}

struct Shared {
    me: Mutex<Option<u32>>,
    replicas: Option<Arc<StateReplicas>>,
    routes: Mutex<Routes>,
    links_changed: Condvar,
    capacity: u32,
}

/// A worker's data-exchange endpoint.
#[derive(Clone)]
pub struct Exchange {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Exchange({})", self.addr)
    }
}

impl Exchange {
    /// Listens on `listen` (`host:port`, port 0 for any); `capacity` is the
    /// number of messages a remote input channel buffers (its credits).
    pub fn start(
        listen: &str,
        capacity: usize,
        replicas: Option<Arc<StateReplicas>>,
    ) -> Result<Self, RuntimeError> {
        let listener = TcpListener::bind(listen).map_err(|source| RuntimeError::Network {
            action: "listening for data exchange on",
            address: listen.to_owned(),
            source,
        })?;
        let addr = listener
            .local_addr()
            .map_err(|source| RuntimeError::Network {
                action: "reading the address of",
                address: listen.to_owned(),
                source,
            })?;
        let exchange = Self {
            shared: Arc::new(Shared {
                me: Mutex::new(None),
                replicas,
                routes: Mutex::new(Routes::default()),
                links_changed: Condvar::new(),
                capacity: capacity.max(1) as u32,
            }),
            addr,
        };
        let acceptor = exchange.clone();
        std::thread::Builder::new()
            .name("exchange-accept".into())
            .spawn(move || acceptor.accept_loop(listener))
            .map_err(|source| RuntimeError::Spawn {
                operator: "exchange-accept".into(),
                subtask: 0,
                source,
            })?;
        Ok(exchange)
    }

    /// The address peers dial.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets this worker's id, once the coordinator assigned it.
    pub fn set_worker_id(&self, id: u32) {
        *self.shared.me.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.shared.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn accept_loop(&self, listener: TcpListener) {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let exchange = self.clone();
            let _ = std::thread::Builder::new()
                .name("exchange-in".into())
                .spawn(move || {
                    let peer = match read_hello(&mut stream) {
                        Ok(peer) => peer,
                        Err(problem) => {
                            tracing::warn!(%problem, "refused a data-exchange connection");
                            return;
                        }
                    };
                    exchange.serve(peer, stream);
                });
        }
    }

    /// Makes sure there is a link to every peer: dials those with a higher
    /// id, waits for those with a lower id to dial.
    pub fn connect(&self, me: u32, peers: &[Peer]) -> Result<(), RuntimeError> {
        for peer in peers.iter().filter(|p| p.worker.0 > me) {
            if self.routes().links.contains_key(&peer.worker.0) {
                continue;
            }
            let mut stream =
                TcpStream::connect(&peer.data_addr).map_err(|source| RuntimeError::Network {
                    action: "connecting to the data exchange of",
                    address: peer.data_addr.clone(),
                    source,
                })?;
            let hello = encode_exchange(&ExchangeFrame::Hello {
                protocol: PROTOCOL_VERSION,
                from: me,
                to: peer.worker.0,
            });
            stream
                .write_all(&hello)
                .map_err(|source| RuntimeError::Network {
                    action: "greeting",
                    address: peer.data_addr.clone(),
                    source,
                })?;
            let exchange = self.clone();
            let id = peer.worker.0;
            let link = self.add_link(id, &stream)?;
            std::thread::Builder::new()
                .name("exchange-out".into())
                .spawn(move || exchange.read_loop(link, stream))
                .map_err(|source| RuntimeError::Spawn {
                    operator: "exchange-reader".into(),
                    subtask: id,
                    source,
                })?;
        }
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut routes = self.routes();
        for peer in peers.iter().filter(|p| p.worker.0 < me) {
            while !routes.links.contains_key(&peer.worker.0) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(RuntimeError::PeerUnreachable {
                        peer: peer.worker.0,
                        address: peer.data_addr.clone(),
                    });
                }
                routes = self
                    .shared
                    .links_changed
                    .wait_timeout(routes, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        Ok(())
    }

    fn serve(&self, peer: u32, stream: TcpStream) {
        match self.add_link(peer, &stream) {
            Ok(link) => self.read_loop(link, stream),
            Err(error) => {
                tracing::warn!(
                    peer,
                    error = &error as &dyn std::error::Error,
                    "data-exchange link failed"
                )
            }
        }
    }

    /// Registers the link to `peer` and starts its writer thread.
    fn add_link(&self, peer: u32, stream: &TcpStream) -> Result<Arc<PeerLink>, RuntimeError> {
        let _ = stream.set_nodelay(true);
        let writer = stream.try_clone().map_err(|source| RuntimeError::Network {
            action: "cloning the connection to",
            address: format!("worker {peer}"),
            source,
        })?;
        let (frames, outgoing) = crossbeam_channel::unbounded();
        let progress = Arc::new(LinkProgress::default());
        let link = Arc::new(PeerLink {
            peer,
            frames,
            closed: AtomicBool::new(false),
            progress: progress.clone(),
        });
        std::thread::Builder::new()
            .name(format!("exchange-w{peer}"))
            .spawn(move || {
                write_loop(writer, outgoing, &progress);
                progress.stopped();
            })
            .map_err(|source| RuntimeError::Spawn {
                operator: "exchange-writer".into(),
                subtask: peer,
                source,
            })?;
        let previous = self.routes().links.insert(peer, link.clone());
        if let Some(previous) = previous {
            previous.closed.store(true, Ordering::Relaxed);
        }
        self.shared.links_changed.notify_all();
        tracing::debug!(peer, "data-exchange link up");
        Ok(link)
    }

    fn read_loop(&self, link: Arc<PeerLink>, mut stream: TcpStream) {
        let peer = link.peer;
        let outcome = loop {
            let body = match read_frame(&mut stream) {
                Ok(body) => body,
                Err(error) => break error,
            };
            let frame = match decode_exchange(&body) {
                Ok(frame) => frame,
                Err(error) => break FrameReadError::Wire(error),
            };
            if let Err(problem) = self.dispatch(frame) {
                tracing::warn!(peer, %problem, "data-exchange protocol violation; closing the link");
                break FrameReadError::Closed;
            }
        };
        if !matches!(outcome, FrameReadError::Closed) {
            tracing::warn!(
                peer,
                error = &outcome as &dyn std::error::Error,
                "data-exchange link failed"
            );
        }
        self.drop_link(&link);
    }

    /// A link is gone: senders to that peer fail, inputs from it close.
    fn drop_link(&self, link: &Arc<PeerLink>) {
        link.closed.store(true, Ordering::Relaxed);
        link.progress.stopped();
        let mut routes = self.routes();
        if routes
            .links
            .get(&link.peer)
            .is_some_and(|l| Arc::ptr_eq(l, link))
        {
            routes.links.remove(&link.peer);
        }
        for (peer, gate) in routes.gates.values() {
            if *peer == link.peer {
                gate.close();
            }
        }
        tracing::debug!(peer = link.peer, "data-exchange link down");
    }

    /// Routes one inbound frame; an error closes the link.
    fn dispatch(&self, frame: ExchangeFrame) -> Result<(), String> {
        match frame {
            ExchangeFrame::Hello { .. } => Err("a second hello".into()),
            ExchangeFrame::Replica {
                job_id,
                path,
                offset,
                total,
                bytes,
            } => {
                if let Some(replicas) = &self.shared.replicas {
                    if let Err(error) =
                        replicas.store_part(Origin::Peer, &job_id, &path, offset, total, &bytes)
                    {
                        tracing::warn!(job = %job_id, %path, error = &error as &dyn std::error::Error, "storing a replica failed");
                    }
                }
                Ok(())
            }
            ExchangeFrame::Credit { key, credits } => {
                if self.routes().is_older_attempt(&key) {
                    tracing::debug!(
                        job = key.job,
                        attempt = key.attempt,
                        "dropping a credit of an older attempt"
                    );
                    return Ok(());
                }
                // A grant may arrive before its sender is set up: the gate
                // keeps it until then.
                self.gate(key, UNKNOWN_PEER).grant(credits);
                Ok(())
            }
            ExchangeFrame::Message { key, body } => {
                let routes = self.routes();
                let Some(inbound) = routes.inbound.get(&key) else {
                    if routes.is_older_attempt(&key) {
                        tracing::debug!(
                            job = key.job,
                            attempt = key.attempt,
                            "dropping a frame of an older attempt"
                        );
                    } else {
                        tracing::debug!(
                            job = key.job,
                            attempt = key.attempt,
                            "dropping a frame for a channel not deployed here"
                        );
                    }
                    return Ok(());
                };
                let message = match body {
                    FrameBody::Records(bytes) => {
                        let len = inbound
                            .codec
                            .encoded_len(&bytes)
                            .map_err(|e| e.to_string())?;
                        Message::Data(Batch::encoded(bytes, len, inbound.codec))
                    }
                    FrameBody::Watermark(t) => Message::Watermark(t),
                    FrameBody::Barrier(epoch) => Message::Barrier(Epoch(epoch)),
                    FrameBody::EndOfData => Message::EndOfData,
                    FrameBody::EndOfStream => Message::EndOfStream,
                    FrameBody::StopBarrier(epoch) => Message::StopBarrier(Epoch(epoch)),
                };
                inbound
                    .queue
                    .try_send(message)
                    .map_err(|e| match e {
                        crossbeam_channel::TrySendError::Full(_) => {
                            format!("channel {key:?} got more messages than it granted credits")
                        }
                        // The task ended (cancelled): nothing to deliver to.
                        crossbeam_channel::TrySendError::Disconnected(_) => String::new(),
                    })
                    .or_else(|e| if e.is_empty() { Ok(()) } else { Err(e) })
            }
        }
    }

    fn gate(&self, key: ChannelKey, peer: u32) -> Arc<CreditGate> {
        let mut routes = self.routes();
        let entry = routes
            .gates
            .entry(key)
            .or_insert_with(|| (peer, Arc::new(CreditGate::default())));
        if entry.0 == UNKNOWN_PEER {
            entry.0 = peer;
        }
        entry.1.clone()
    }

    /// Notes that `attempt` of job `job` is deployed here: frames of older
    /// attempts are from now on reported as such.
    pub fn begin_attempt(&self, job: u32, attempt: u32) {
        let mut routes = self.routes();
        let newest = routes.attempts.entry(job).or_insert(attempt);
        *newest = (*newest).max(attempt);
    }

    /// The link to `peer`, which [`connect`](Self::connect) set up.
    fn link(&self, peer: u32) -> Result<Arc<PeerLink>, RuntimeError> {
        self.routes()
            .links
            .get(&peer)
            .cloned()
            .ok_or(RuntimeError::PeerUnreachable {
                peer,
                address: "(no link)".into(),
            })
    }

    /// The sending end of a channel to a subtask on `peer`.
    pub fn sender(
        &self,
        key: ChannelKey,
        peer: u32,
        codec: BatchCodec,
        cancel: CancelToken,
    ) -> Result<RemoteSender, RuntimeError> {
        let link = self.link(peer)?;
        Ok(RemoteSender {
            key,
            gate: self.gate(key, peer),
            link,
            codec,
            cancel,
        })
    }

    /// The receiving end of a channel from a subtask on `peer`: a queue
    /// holding `capacity` messages, and the credit return its task calls.
    pub fn receiver(
        &self,
        key: ChannelKey,
        peer: u32,
        codec: BatchCodec,
    ) -> Result<(Receiver<Message>, Arc<CreditReturn>), RuntimeError> {
        let capacity = self.shared.capacity;
        let link = self.link(peer)?;
        let (queue, receiver) = crossbeam_channel::bounded(capacity as usize);
        self.routes().inbound.insert(key, Inbound { queue, codec });
        let credits = Arc::new(CreditReturn::new(key, link, (capacity / 4).max(1)));
        credits.grant(capacity);
        Ok((receiver, credits))
    }

    /// Pushes a copy of a checkpoint file to `peer`, in parts of at most
    /// [`REPLICA_PART`] bytes, waiting while the link has much queued (so
    /// replicas never pile up in memory), and returns once every part is
    /// on the socket: the snapshot's ack follows its replicas. False when
    /// the link is gone.
    pub fn replicate(&self, peer: u32, job_id: &str, path: &str, bytes: &[u8]) -> bool {
        let Some(link) = self.routes().links.get(&peer).cloned() else {
            return false;
        };
        let total = bytes.len() as u64;
        let deadline = Instant::now() + REPLICA_PATIENCE;
        let mut offset = 0usize;
        loop {
            let progress = &link.progress;
            if !progress.wait(deadline, |c| c.queued - c.written <= REPLICA_QUEUE) {
                return false;
            }
            let end = (offset + REPLICA_PART).min(bytes.len());
            let frame = encode_exchange_body(&ExchangeFrame::Replica {
                job_id: job_id.to_owned(),
                path: path.to_owned(),
                offset: offset as u64,
                total,
                bytes: bytes[offset..end].to_vec(),
            });
            let Some(number) = link.queue(frame) else {
                return false;
            };
            offset = end;
            if offset >= bytes.len() {
                return link.progress.wait(deadline, |c| c.written >= number);
            }
        }
    }

    /// Forgets every channel of `attempt` of job `job` (it ended here).
    pub fn release(&self, job: u32, attempt: u32) {
        let mut routes = self.routes();
        routes
            .inbound
            .retain(|k, _| !(k.job == job && k.attempt == attempt));
        routes.gates.retain(|k, (_, gate)| {
            let keep = !(k.job == job && k.attempt == attempt);
            if !keep {
                gate.close();
            }
            keep
        });
    }
}

/// Placeholder peer of a gate created by an early credit grant.
const UNKNOWN_PEER: u32 = u32::MAX;

fn read_hello(stream: &mut TcpStream) -> Result<u32, String> {
    let body = read_frame(stream).map_err(|e| e.to_string())?;
    match decode_exchange(&body).map_err(|e| e.to_string())? {
        ExchangeFrame::Hello { protocol, from, .. } if protocol == PROTOCOL_VERSION => Ok(from),
        ExchangeFrame::Hello { protocol, .. } => Err(format!(
            "peer speaks protocol version {protocol}, this worker {PROTOCOL_VERSION}"
        )),
        _ => Err("the first frame was not a hello".into()),
    }
}

fn write_loop(stream: TcpStream, frames: Receiver<ExchangeBody>, progress: &LinkProgress) {
    let mut out = BufWriter::with_capacity(256 << 10, stream);
    let mut written = 0u64;
    let write = |out: &mut BufWriter<TcpStream>, body: &ExchangeBody| {
        out.write_all(&(body.len() as u32).to_be_bytes())
            .and_then(|()| out.write_all(body))
    };
    while let Ok(frame) = frames.recv() {
        if write(&mut out, &frame).is_err() {
            return;
        }
        written += 1;
        // Coalesce whatever is queued before flushing.
        while let Ok(frame) = frames.try_recv() {
            if write(&mut out, &frame).is_err() {
                return;
            }
            written += 1;
        }
        if out.flush().is_err() {
            return;
        }
        progress.written(written);
    }
    let _ = out.flush();
}

/// The sending end of a channel into a subtask on another worker.
pub struct RemoteSender {
    key: ChannelKey,
    gate: Arc<CreditGate>,
    link: Arc<PeerLink>,
    codec: BatchCodec,
    cancel: CancelToken,
}

impl OutputChannel for RemoteSender {
    fn send(&mut self, message: Message) -> Result<(), OperatorError> {
        self.gate.acquire(&self.cancel).map_err(|e| match e {
            NoCredit::Closed | NoCredit::Cancelled => OperatorError::Disconnected,
        })?;
        let body = match message {
            Message::Data(batch) => FrameBody::Records(self.codec.encode(&batch)?),
            Message::Watermark(t) => FrameBody::Watermark(t),
            Message::Barrier(epoch) => FrameBody::Barrier(epoch.0),
            Message::EndOfData => FrameBody::EndOfData,
            Message::EndOfStream => FrameBody::EndOfStream,
            Message::StopBarrier(epoch) => FrameBody::StopBarrier(epoch.0),
        };
        let frame = encode_exchange_body(&ExchangeFrame::Message {
            key: self.key,
            body,
        });
        if self.link.send_frame(frame) {
            Ok(())
        } else {
            Err(OperatorError::Disconnected)
        }
    }
}
