//! Files pushed to a peer over the exchange link, in parts, and the
//! [`FileInbox`] that takes them in on the other side. The exchange only
//! carries the bytes: what is pushed, to whom, and where it is kept is the
//! replication service's business (`checkpoint::replication`).

use super::links::{Counts, PeerLink};
use std::cell::Cell;
use std::time::{Duration, Instant};
use weir_protocol::wire::{encode_exchange_body, ExchangeFrame, OutgoingFrame};

/// Largest part of a file in one frame.
pub const FILE_PART: usize = 4 << 20;

/// Frames queued on a link above which file pushes wait.
const FILE_QUEUE: u64 = 16;

/// How long a push may go without the link's writer handing any of it to
/// the socket: a peer that stopped taking it (paused, cut off) goes
/// without. A large file to a peer that keeps taking it takes as long as
/// it takes (a fixed bound for the whole file failed 500 MB RocksDB files
/// on this machine now and then, and with them every replica after).
const FILE_PATIENCE: Duration = Duration::from_secs(2);

/// Where the parts of files that peers push arrive.
pub trait FileInbox: Send + Sync {
    /// Stores part of `path` of job `job_id`: `bytes` at `offset` of a file
    /// of `total` bytes. Parts of a file arrive in order, the first at
    /// offset 0; the file is complete once the last part is stored.
    fn store_part(
        &self,
        job_id: &str,
        path: &str,
        offset: u64,
        total: u64,
        bytes: &[u8],
    ) -> std::io::Result<()>;
}

/// What became of a file pushed to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Every part is on the socket.
    Taken,
    /// There is no link to the peer (not up yet, or gone).
    NoLink,
    /// The peer did not take it within a couple of seconds (overloaded,
    /// paused or cut off).
    TooSlow,
}

/// Pushes `bytes`, file `path` of job `job_id`, over `link`, in parts of at
/// most [`FILE_PART`] bytes, waiting while the link has much queued (so
/// pushes never pile up in memory), and returns once every part is on the
/// socket, or what stopped it.
pub(crate) fn push_file(link: &PeerLink, job_id: &str, path: &str, bytes: &[u8]) -> Pushed {
    let total = bytes.len() as u64;
    let mut offset = 0usize;
    let waited = |done: bool| {
        if done {
            Pushed::Taken
        } else if link.closed.load(std::sync::atomic::Ordering::Relaxed) {
            Pushed::NoLink
        } else {
            Pushed::TooSlow
        }
    };
    loop {
        if !wait_moving(link, |c| c.queued - c.written <= FILE_QUEUE) {
            return waited(false);
        }
        let end = (offset + FILE_PART).min(bytes.len());
        let frame = OutgoingFrame::Encoded(encode_exchange_body(&ExchangeFrame::Replica {
            job_id: job_id.to_owned(),
            path: path.to_owned(),
            offset: offset as u64,
            total,
            bytes: bytes[offset..end].to_vec(),
        }));
        let Some(number) = link.queue(frame) else {
            return Pushed::NoLink;
        };
        offset = end;
        if offset >= bytes.len() {
            return waited(wait_moving(link, |c| c.written >= number));
        }
    }
}

/// Waits until `done`, for as long as the link's writer keeps handing
/// frames to the socket; false once [`FILE_PATIENCE`] passes without it
/// handing any, or when the link stops.
fn wait_moving(link: &PeerLink, done: impl Fn(&Counts) -> bool) -> bool {
    let (finished, seen) = (Cell::new(false), Cell::new(None::<u64>));
    loop {
        let moved = link
            .progress
            .wait(Instant::now() + FILE_PATIENCE, |counts| {
                if done(counts) {
                    finished.set(true);
                    return true;
                }
                let moved = seen.get().is_some_and(|written| counts.written > written);
                seen.set(Some(counts.written));
                moved
            });
        if finished.get() {
            return true;
        }
        if !moved {
            return false;
        }
    }
}
