//! The two ends of a channel between subtasks on different workers: the
//! [`RemoteSender`] that spends a credit per message and queues its frame on
//! the link, and the receiving queue whose task returns credits as it
//! consumes.

use super::credits::{CreditGate, CreditReturn, CreditSink, NoCredit};
use super::links::PeerLink;
use super::routing::Inbound;
use super::Exchange;
use crate::cancel::CancelToken;
use crate::error::RuntimeError;
use crossbeam_channel::Receiver;
use std::sync::Arc;
use weir_operators::output::OutputChannel;
use weir_operators::{BatchCodec, Message, OperatorError};
use weir_protocol::wire::{encode_exchange_body, ChannelKey, ExchangeFrame, FrameBody};

impl Exchange {
    /// The sending end of a channel to a subtask on `peer`.
    pub fn sender(
        &self,
        key: ChannelKey,
        peer: u32,
        codec: BatchCodec,
        cancel: CancelToken,
    ) -> Result<RemoteSender, RuntimeError> {
        let link = self.link(peer)?;
        let gate = self.gate(key, peer);
        gate.wake_on(&cancel);
        Ok(RemoteSender {
            key,
            gate,
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
