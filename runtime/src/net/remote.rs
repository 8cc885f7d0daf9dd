//! [`RemoteSender`], the sending end of a channel into a subtask on another
//! worker: it spends a credit per message and queues its frame on the link.
//! (The receiving end is a bounded queue that routing fills and whose task
//! returns credits as it consumes, set up by the exchange.)

use super::credits::{CreditGate, CreditSink, NoCredit};
use super::links::PeerLink;
use crate::cancel::CancelToken;
use std::sync::Arc;
use std::time::Duration;
use weir_operators::output::OutputChannel;
use weir_operators::{BatchCodec, Message, OperatorError};
use weir_protocol::wire::{
    encode_exchange_body, ChannelKey, ExchangeFrame, FrameBody, OutgoingFrame, CHANNEL_KEY_LEN,
    MAX_FRAME_LEN,
};

/// The sending end of a channel into a subtask on another worker.
pub struct RemoteSender {
    key: ChannelKey,
    gate: Arc<CreditGate>,
    link: Arc<PeerLink>,
    codec: BatchCodec,
    cancel: CancelToken,
}

impl RemoteSender {
    /// The sender of channel `key` over `link`, spending `gate`'s credits;
    /// `cancel` (the job's) wakes it while it waits for credit.
    pub(crate) fn new(
        key: ChannelKey,
        gate: Arc<CreditGate>,
        link: Arc<PeerLink>,
        codec: BatchCodec,
        cancel: CancelToken,
    ) -> Self {
        gate.wake_on(&cancel);
        Self {
            key,
            gate,
            link,
            codec,
            cancel,
        }
    }
}

/// How many times the job's batch size a batch to another worker holds.
/// Each message across processes costs two thread hand-offs (the link's
/// writer, the peer's reader) and a system call on each side, more than
/// the records it carries at the usual size (Flink's network buffers are
/// 32 KiB); larger batches only wait while records keep coming, since a
/// task whose input runs dry sends what it has.
const REMOTE_BATCH_FACTOR: usize = 4;

/// The messages a remote channel's queue holds (its credits) on a worker
/// whose local channels hold `channel_capacity`: twice the records of a
/// local channel, in batches [`REMOTE_BATCH_FACTOR`] times larger.
/// Measured on W1 across two workers: the local count of messages (four
/// times the records in flight) made barriers wait about twice as long
/// behind data; the records of a local channel left too few credits in
/// flight across processes, and throughput fell by about a sixth.
pub fn remote_queue_capacity(channel_capacity: usize) -> usize {
    (channel_capacity * 2 / REMOTE_BATCH_FACTOR).max(2)
}

impl OutputChannel for RemoteSender {
    fn batch_records(&self, batch_size: usize) -> usize {
        batch_size.saturating_mul(REMOTE_BATCH_FACTOR)
    }

    fn send(&mut self, message: Message) -> Result<Duration, OperatorError> {
        let mut waited = self.acquire()?;
        let body = match message {
            Message::Data(batch) => {
                // Each part is a message of its own, and spends a credit.
                let parts = self.codec.encode(&batch, MAX_FRAME_LEN - CHANNEL_KEY_LEN)?;
                for (i, records) in parts.into_iter().enumerate() {
                    if i > 0 {
                        waited += self.acquire()?;
                    }
                    self.queue(OutgoingFrame::Records {
                        key: self.key,
                        records,
                    })?;
                }
                return Ok(waited);
            }
            Message::Watermark(t) => FrameBody::Watermark(t),
            Message::Idle => FrameBody::Idle,
            Message::Barrier(epoch) => FrameBody::Barrier(epoch.0),
            Message::EndOfData => FrameBody::EndOfData,
            Message::EndOfStream => FrameBody::EndOfStream,
            Message::StopBarrier(epoch) => FrameBody::StopBarrier(epoch.0),
        };
        let frame = encode_exchange_body(&ExchangeFrame::Message {
            key: self.key,
            body,
        });
        self.queue(OutgoingFrame::Encoded(frame))?;
        Ok(waited)
    }
}

impl RemoteSender {
    /// Its credit gate: how many messages it may send before the receiver
    /// has room for them.
    pub(crate) fn gate(&self) -> Arc<CreditGate> {
        self.gate.clone()
    }

    /// Spends a credit, waiting for one; returns how long it waited.
    fn acquire(&self) -> Result<Duration, OperatorError> {
        self.gate.acquire(&self.cancel).map_err(|e| match e {
            NoCredit::Closed | NoCredit::Cancelled => OperatorError::Disconnected,
        })
    }

    fn queue(&self, frame: OutgoingFrame) -> Result<(), OperatorError> {
        if self.link.send_frame(frame) {
            Ok(())
        } else {
            Err(OperatorError::Disconnected)
        }
    }
}
