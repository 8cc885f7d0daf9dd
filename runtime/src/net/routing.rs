//! Where an inbound frame goes: a channel message to its input queue (its
//! records decoded lazily by the task), a credit grant to its sender's
//! gate, a file part to the [`FileInbox`](super::FileInbox); and attempt
//! fencing, which drops the frames of an attempt older than the newest
//! deployed here.

use super::credits::CreditGate;
use super::links::PeerLink;
use super::Exchange;
use crossbeam_channel::Sender;
use std::collections::HashMap;
use std::sync::Arc;
use weir_operators::{Batch, BatchCodec, Message};
use weir_protocol::wire::{ChannelKey, ExchangeFrame, FrameBody};
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
    /// The newest attempt deployed here, per job number.
    pub(crate) attempts: HashMap<u32, u32>,
}

impl Routes {
    /// Whether `key` belongs to an attempt older than the newest deployed
    /// here for its job (a zombie's frame).
    fn is_older_attempt(&self, key: &ChannelKey) -> bool {
        key.attempt < self.attempts.get(&key.job).copied().unwrap_or(0)
    }
}

impl Exchange {
    /// Routes one inbound frame; an error closes the link.
    pub(crate) fn dispatch(&self, frame: ExchangeFrame) -> Result<(), String> {
        match frame {
            ExchangeFrame::Hello { .. } => Err("a second hello".into()),
            ExchangeFrame::Replica {
                job_id,
                path,
                offset,
                total,
                bytes,
            } => {
                if let Some(inbox) = &self.shared.inbox {
                    if let Err(error) = inbox.store_part(&job_id, &path, offset, total, &bytes) {
                        tracing::warn!(job = %job_id, %path, error = &error as &dyn std::error::Error, "storing a pushed file failed");
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

    pub(crate) fn gate(&self, key: ChannelKey, peer: u32) -> Arc<CreditGate> {
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
}

/// Placeholder peer of a gate created by an early credit grant.
const UNKNOWN_PEER: u32 = u32::MAX;
