//! Data exchange between workers over TCP.
//!
//! Each pair of workers shares one connection (the worker with the lower
//! id dials) that multiplexes every channel between their subtasks, of
//! every job, in both directions. A batch of records goes in a records
//! frame (channel key, then the edge codec's bytes, written from and read
//! into the batch's own buffer); everything else is an rkyv
//! [`ExchangeFrame`]: another channel message (watermark, barrier, end of
//! data or stream), a credit grant ([`credits`]), or part of a file pushed
//! to the peer.
//! Every channel frame names its job and attempt; frames of an attempt
//! that is no longer deployed here are dropped and logged, so a zombie of
//! an earlier attempt cannot feed a new one.
//!
//! - [`links`]: the connection to one peer: handshake, its writer thread
//!   and how far it got, and its reader.
//! - [`routing`]: every link, channel and credit gate of the worker, where
//!   an inbound frame goes (a channel's queue, a credit gate, the file
//!   inbox), and attempt fencing.
//! - [`remote`]: [`RemoteSender`](remote::RemoteSender), the sending end of
//!   a channel to another worker.
//! - [`files`]: pushing a file to a peer in parts, and the [`FileInbox`]
//!   that takes them in (replication is a service on top, in
//!   `checkpoint::replication`; the exchange only carries its bytes).
//! - [`credits`]: the sender's credit gate and the receiver's credit return.
//! - this module: [`Exchange`], which owns the listener and the routes,
//!   accepts and dials peers, and sets up and releases a job attempt's
//!   channels. It uses every module above; none of them uses it (or any
//!   other but `links`, `credits` and `files`' trait).
//!
//! Frames are read with [`weir_protocol::framing`], the reader the
//! worker's control connection uses as well.

pub mod credits;
pub mod files;
pub mod links;
pub mod remote;
pub mod routing;

pub use files::{FileInbox, Pushed};

use crate::cancel::CancelToken;
use crate::error::RuntimeError;
use credits::CreditReturn;
use crossbeam_channel::Receiver;
use links::{read_hello, PeerLink};
use remote::RemoteSender;
use routing::{Inbound, Routes};
use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use weir_operators::{BatchCodec, Message};
use weir_protocol::cluster::Peer;
use weir_protocol::wire::{encode_exchange, ChannelKey, ExchangeFrame, PROTOCOL_VERSION};

/// How long a worker waits for a peer with a higher id to dial it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

struct Shared {
    me: Mutex<Option<u32>>,
    inbox: Option<Arc<dyn FileInbox>>,
    routes: Mutex<Routes>,
    links_changed: Condvar,
    capacity: u32,
    /// One lock per peer, held while dialing it: two dials of one peer
    /// (two deployments, or a deployment and a spare's replicas) would
    /// otherwise both find no link and the second replace the first, which
    /// channels already use.
    dialing: Mutex<HashMap<u32, Arc<Mutex<()>>>>,
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
        inbox: Option<Arc<dyn FileInbox>>,
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
                inbox,
                routes: Mutex::new(Routes::default()),
                links_changed: Condvar::new(),
                capacity: capacity.max(1) as u32,
                dialing: Mutex::new(HashMap::new()),
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
        routing::lock(&self.shared.routes)
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
            self.dial(me, peer)?;
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

    /// Dials the spares (workers outside the deployment that take its
    /// replicas) that have no link yet, each on a thread of its own: a
    /// spare that is gone or slow to answer must neither hold up the
    /// deployment nor the other spares, and a replica that finds no link
    /// goes to the next candidate.
    pub fn dial_spares(&self, me: u32, spares: &[Peer]) {
        for spare in spares.iter().filter(|p| p.worker.0 != me) {
            let (exchange, spare) = (self.clone(), spare.clone());
            let spawned = std::thread::Builder::new()
                .name("exchange-dial".into())
                .spawn(move || {
                    if let Err(error) = exchange.dial(me, &spare) {
                        tracing::warn!(
                            peer = spare.worker.0,
                            error = &error as &dyn std::error::Error,
                            "cannot reach a spare; its replicas go elsewhere"
                        );
                    }
                });
            if let Err(error) = spawned {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "cannot start dialing a spare"
                );
            }
        }
    }

    /// Opens the link to `peer` unless there is one: connects (to each of
    /// its addresses in turn, within [`CONNECT_TIMEOUT`] each, so a peer
    /// that is cut off fails the dial rather than hangs it), says hello,
    /// starts reading.
    fn dial(&self, me: u32, peer: &Peer) -> Result<(), RuntimeError> {
        let lock = {
            let mut dialing = self
                .shared
                .dialing
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            dialing.entry(peer.worker.0).or_default().clone()
        };
        let _dialing = lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.routes().links.contains_key(&peer.worker.0) {
            return Ok(());
        }
        let unreachable = |source| RuntimeError::Network {
            action: "connecting to the data exchange of",
            address: peer.data_addr.clone(),
            source,
        };
        let mut last = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the address resolves to nothing",
        );
        let mut connected = None;
        for address in peer.data_addr.to_socket_addrs().map_err(unreachable)? {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(error) => last = error,
            }
        }
        let mut stream = connected.ok_or_else(|| unreachable(last))?;
        let hello = encode_exchange(&ExchangeFrame::Hello {
            protocol: PROTOCOL_VERSION,
            from: me,
            to: peer.worker.0,
        })
        .map_err(|source| RuntimeError::Frame {
            what: "the data-exchange hello",
            source,
        })?;
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
            .spawn(move || exchange.read_from(link, stream))
            .map_err(|source| RuntimeError::Spawn {
                operator: "exchange-reader".into(),
                subtask: id,
                source,
            })?;
        Ok(())
    }

    fn serve(&self, peer: u32, stream: TcpStream) {
        match self.add_link(peer, &stream) {
            Ok(link) => self.read_from(link, stream),
            Err(error) => {
                tracing::warn!(
                    peer,
                    error = &error as &dyn std::error::Error,
                    "data-exchange link failed"
                )
            }
        }
    }

    /// Registers a new link to `peer` over `stream` (replacing an older one).
    fn add_link(&self, peer: u32, stream: &TcpStream) -> Result<Arc<PeerLink>, RuntimeError> {
        let link = PeerLink::open(peer, stream)?;
        if let Some(previous) = self.routes().links.insert(peer, link.clone()) {
            previous.retire();
        }
        self.shared.links_changed.notify_all();
        tracing::debug!(peer, "data-exchange link up");
        Ok(link)
    }

    /// Routes what `link`'s peer sends until the connection ends; then the
    /// link is gone: senders to that peer fail.
    fn read_from(&self, link: Arc<PeerLink>, stream: TcpStream) {
        let inbox = self.shared.inbox.as_deref();
        links::read_frames(link.peer, stream, |frame| {
            routing::dispatch(&self.shared.routes, inbox, frame)
        });
        link.close();
        self.routes().forget_link(&link);
        tracing::debug!(peer = link.peer, "data-exchange link down");
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
        let gate = self.routes().gate(key, peer);
        Ok(RemoteSender::new(key, gate, link, codec, cancel))
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

    /// Pushes `bytes`, file `path` of job `job_id`, to `peer`
    /// ([`files::push_file`]).
    pub fn push_file(&self, peer: u32, job_id: &str, path: &str, bytes: &[u8]) -> Pushed {
        match self.link(peer) {
            Ok(link) => files::push_file(&link, job_id, path, bytes),
            Err(_) => Pushed::NoLink,
        }
    }

    /// Notes that job attempt `attempt` of job `job` is deployed here (or
    /// one of its regions): frames of older attempts are from now on
    /// dropped.
    pub fn begin_attempt(&self, job: u32, attempt: u32) {
        let mut routes = self.routes();
        let newest = routes.attempts.entry(job).or_insert(attempt);
        *newest = (*newest).max(attempt);
        let newest = *newest;
        routes.ended.retain(|(j, a)| *j != job || *a >= newest);
    }

    /// Forgets every channel of `attempt` of job `job` (it ended here);
    /// its frames are dropped from now on.
    pub fn release(&self, job: u32, attempt: u32) {
        let mut routes = self.routes();
        if attempt >= routes.attempts.get(&job).copied().unwrap_or(0) {
            routes.ended.insert((job, attempt));
        }
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
