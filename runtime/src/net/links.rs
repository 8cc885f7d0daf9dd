//! The connection to one peer: the hello that opens it, the writer thread
//! that drains its queue onto the socket (coalescing frames before each
//! flush) and reports how far it got, and the reader that hands each
//! inbound frame on (to [`routing`](super::routing)).

use super::credits::CreditSink;
use crate::error::RuntimeError;
use crossbeam_channel::{Receiver, Sender};
use std::io::{BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;
use weir_protocol::framing::{read_exchange, read_frame, write_exchange, FrameReadError};
use weir_protocol::wire::{
    decode_exchange, ExchangeFrame, IncomingFrame, OutgoingFrame, PROTOCOL_VERSION,
};

/// The sending half of the connection to one peer.
pub(crate) struct PeerLink {
    pub(crate) peer: u32,
    frames: Sender<OutgoingFrame>,
    pub(crate) closed: AtomicBool,
    pub(crate) progress: Arc<LinkProgress>,
}

/// How far a link's writer got: frames queued, and frames handed to the
/// socket. Replica pushes wait on it instead of polling the queue.
#[derive(Default)]
pub(crate) struct LinkProgress {
    counts: Mutex<Counts>,
    changed: Condvar,
}

#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) queued: u64,
    pub(crate) written: u64,
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
    pub(crate) fn wait(&self, deadline: Instant, done: impl Fn(&Counts) -> bool) -> bool {
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
    pub(crate) fn queue(&self, frame: OutgoingFrame) -> Option<u64> {
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
    fn send_frame(&self, frame: OutgoingFrame) -> bool {
        self.queue(frame).is_some()
    }
}

impl PeerLink {
    /// Opens the link to `peer` over `stream`: starts its writer thread.
    pub(crate) fn open(peer: u32, stream: &TcpStream) -> Result<Arc<Self>, RuntimeError> {
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
                write_loop(peer, writer, outgoing, &progress);
                progress.stopped();
            })
            .map_err(|source| RuntimeError::Spawn {
                operator: "exchange-writer".into(),
                subtask: peer,
                source,
            })?;
        Ok(link)
    }

    /// Nothing more goes out on this link (a newer one replaced it).
    pub(crate) fn retire(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// The connection is gone: nothing more goes out, and whoever waits
    /// for the writer stops waiting.
    pub(crate) fn close(&self) {
        self.retire();
        self.progress.stopped();
    }
}

/// Reads `peer`'s frames from `stream`, handing each to `route`, until the
/// connection ends or fails or `route` refuses a frame (a protocol
/// violation); logs why, unless the peer closed it cleanly.
pub(crate) fn read_frames(
    peer: u32,
    stream: TcpStream,
    mut route: impl FnMut(IncomingFrame) -> Result<(), String>,
) {
    // A records frame is read as header, key and body: buffered, that is
    // one system call for many frames rather than three for each.
    let mut stream = BufReader::with_capacity(64 << 10, stream);
    let outcome = loop {
        let frame = match read_exchange(&mut stream) {
            Ok(frame) => frame,
            Err(error) => break error,
        };
        if let Err(problem) = route(frame) {
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
}

pub(crate) fn read_hello(stream: &mut TcpStream) -> Result<u32, String> {
    let body = read_frame(stream).map_err(|e| e.to_string())?;
    match decode_exchange(&body).map_err(|e| e.to_string())? {
        ExchangeFrame::Hello { protocol, from, .. } if protocol == PROTOCOL_VERSION => Ok(from),
        ExchangeFrame::Hello { protocol, .. } => Err(format!(
            "peer speaks protocol version {protocol}, this worker {PROTOCOL_VERSION}"
        )),
        _ => Err("the first frame was not a hello".into()),
    }
}

fn write_loop(
    peer: u32,
    stream: TcpStream,
    frames: Receiver<OutgoingFrame>,
    progress: &LinkProgress,
) {
    let mut out = BufWriter::with_capacity(64 << 10, stream);
    if let Err(error) = write_frames(&mut out, &frames, progress) {
        tracing::warn!(
            peer,
            error = &error as &dyn std::error::Error,
            "writing to the data-exchange link failed; closing it"
        );
        // The reader sees the end too, so the link is forgotten and the
        // senders to this peer fail rather than queue into nothing.
        let _ = out.get_ref().shutdown(std::net::Shutdown::Both);
    }
}

/// Writes queued frames until the queue closes, coalescing what is queued
/// before each flush and reporting how far it got.
fn write_frames(
    out: &mut BufWriter<TcpStream>,
    frames: &Receiver<OutgoingFrame>,
    progress: &LinkProgress,
) -> std::io::Result<()> {
    let mut written = 0u64;
    while let Ok(frame) = frames.recv() {
        write_exchange(out, &frame)?;
        written += 1;
        while let Ok(frame) = frames.try_recv() {
            write_exchange(out, &frame)?;
            written += 1;
        }
        out.flush()?;
        progress.written(written);
    }
    out.flush()
}
