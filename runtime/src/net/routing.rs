//! Where an inbound frame goes: a channel message to its input queue (its
//! records decoded lazily by the task), a credit grant to its sender's
//! gate, a file part to the [`FileInbox`](super::FileInbox); and attempt
//! fencing, which drops the frames of an attempt older than the newest
//! job attempt deployed here, or of a deployment that ended here (a
//! region's earlier attempt, after a regional failover).

use super::credits::CreditGate;
use super::files::FileInbox;
use super::links::PeerLink;
use crossbeam_channel::Sender;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use weir_operators::{Batch, BatchCodec, Message};
use weir_protocol::wire::{ChannelKey, ExchangeFrame, FrameBody, IncomingFrame};
use weir_protocol::Epoch;

/// An inbound channel: where its messages go, and how to decode records.
pub(crate) struct Inbound {
    pub(crate) queue: Sender<Message>,
    pub(crate) codec: BatchCodec,
}

/// Every link, inbound channel and credit gate of this worker.
#[derive(Default)]
pub(crate) struct Routes {
    pub(crate) links: HashMap<u32, Arc<PeerLink>>,
    pub(crate) inbound: HashMap<ChannelKey, Inbound>,
    pub(crate) gates: HashMap<ChannelKey, (u32, Arc<CreditGate>)>,
    /// The newest job attempt deployed here, per job number.
    pub(crate) attempts: HashMap<u32, u32>,
    /// Deployments (job, attempt) at or above their job's newest attempt
    /// that ended here: a region's earlier attempts.
    pub(crate) ended: HashSet<(u32, u32)>,
}

impl Routes {
    /// Whether `key` belongs to an attempt older than the newest deployed
    /// here for its job, or to one that ended here (a zombie's frame).
    fn is_older_attempt(&self, key: &ChannelKey) -> bool {
        key.attempt < self.attempts.get(&key.job).copied().unwrap_or(0)
            || self.ended.contains(&(key.job, key.attempt))
    }
}

impl Routes {
    /// The credit gate of `key`, sending to `peer` (created on first use:
    /// a grant may arrive before its sender is set up).
    pub(crate) fn gate(&mut self, key: ChannelKey, peer: u32) -> Arc<CreditGate> {
        let entry = self
            .gates
            .entry(key)
            .or_insert_with(|| (peer, Arc::new(CreditGate::default())));
        if entry.0 == UNKNOWN_PEER {
            entry.0 = peer;
        }
        entry.1.clone()
    }

    /// `link` is gone: it is no longer the link to its peer, and the
    /// senders to that peer fail.
    pub(crate) fn forget_link(&mut self, link: &Arc<PeerLink>) {
        if self
            .links
            .get(&link.peer)
            .is_some_and(|l| Arc::ptr_eq(l, link))
        {
            self.links.remove(&link.peer);
        }
        for (peer, gate) in self.gates.values() {
            if *peer == link.peer {
                gate.close();
            }
        }
    }
}

/// Locks `routes` (a panicked holder leaves them usable).
pub(crate) fn lock(routes: &Mutex<Routes>) -> MutexGuard<'_, Routes> {
    routes.lock().unwrap_or_else(|p| p.into_inner())
}

/// Routes one inbound frame; an error closes the link.
pub(crate) fn dispatch(
    routes: &Mutex<Routes>,
    inbox: Option<&dyn FileInbox>,
    frame: IncomingFrame,
) -> Result<(), String> {
    let frame = match frame {
        IncomingFrame::Records { key, records } => {
            return deliver(routes, key, |codec| {
                let len = codec.encoded_len(&records).map_err(|e| e.to_string())?;
                Ok(Message::Data(Batch::encoded(records, len, codec)))
            })
        }
        IncomingFrame::Frame(frame) => frame,
    };
    match frame {
        ExchangeFrame::Hello { .. } => Err("a second hello".into()),
        ExchangeFrame::Replica {
            job_id,
            path,
            offset,
            total,
            bytes,
        } => {
            if let Some(inbox) = inbox {
                if let Err(error) = inbox.store_part(&job_id, &path, offset, total, &bytes) {
                    tracing::warn!(job = %job_id, %path, error = &error as &dyn std::error::Error, "storing a pushed file failed");
                }
            }
            Ok(())
        }
        ExchangeFrame::Credit { key, credits } => {
            // One guard: a deployment that begins meanwhile cannot slip
            // between the fencing check and the grant.
            let mut routes = lock(routes);
            if routes.is_older_attempt(&key) {
                tracing::debug!(
                    job = key.job,
                    attempt = key.attempt,
                    "dropping a credit of an older attempt"
                );
                return Ok(());
            }
            // A grant may arrive before its sender is set up: the gate
            // keeps it until then.
            routes.gate(key, UNKNOWN_PEER).grant(credits);
            Ok(())
        }
        ExchangeFrame::Message { key, body } => deliver(routes, key, |_| {
            Ok(match body {
                FrameBody::Watermark(t) => Message::Watermark(t),
                FrameBody::Idle => Message::Idle,
                FrameBody::Barrier(epoch) => Message::Barrier(Epoch(epoch)),
                FrameBody::EndOfData => Message::EndOfData,
                FrameBody::EndOfStream => Message::EndOfStream,
                FrameBody::StopBarrier(epoch) => Message::StopBarrier(Epoch(epoch)),
            })
        }),
    }
}

/// Queues one message of channel `key` for its task, made by `message`
/// with the channel's codec; drops it if the channel is not (or no
/// longer) deployed here.
fn deliver(
    routes: &Mutex<Routes>,
    key: ChannelKey,
    message: impl FnOnce(BatchCodec) -> Result<Message, String>,
) -> Result<(), String> {
    // The routes are held only for the lookup: decoding the message and
    // queueing it must not hold up the other links' readers.
    let (queue, codec) = {
        let routes = lock(routes);
        let Some(inbound) = routes.inbound.get(&key) else {
            let why = if routes.is_older_attempt(&key) {
                "dropping a frame of an older attempt"
            } else {
                "dropping a frame for a channel not deployed here"
            };
            tracing::debug!(job = key.job, attempt = key.attempt, "{why}");
            return Ok(());
        };
        (inbound.queue.clone(), inbound.codec)
    };
    match queue.try_send(message(codec)?) {
        Ok(()) => Ok(()),
        Err(crossbeam_channel::TrySendError::Full(_)) => Err(format!(
            "channel {key:?} got more messages than it granted credits"
        )),
        // The task ended (cancelled): nothing to deliver to.
        Err(crossbeam_channel::TrySendError::Disconnected(_)) => Ok(()),
    }
}

/// Placeholder peer of a gate created by an early credit grant.
const UNKNOWN_PEER: u32 = u32::MAX;
