//! Credit-based flow control of one remote channel.
//!
//! The receiver grants as many credits as its input queue holds; each
//! message the sender puts on the wire spends one, and the receiver hands
//! credits back as its task consumes messages. A slow consumer therefore
//! stops its producer after `capacity` messages instead of making the
//! connection (shared by every channel between two workers) buffer without
//! bound, or blocking the other channels on it.

use crate::cancel::CancelToken;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use weir_protocol::wire::{encode_exchange_body, ChannelKey, ExchangeFrame, OutgoingFrame};

/// The sending side's credits on one channel.
#[derive(Debug, Default)]
pub struct CreditGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    credits: u64,
    closed: bool,
    /// Senders blocked in `acquire` right now.
    waiting: u32,
}

/// Why a sender got no credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCredit {
    /// The connection to the receiver is gone.
    Closed,
    /// The job is being cancelled.
    Cancelled,
}

impl CreditGate {
    /// Adds credits granted by the receiver.
    pub fn grant(&self, credits: u32) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.credits += u64::from(credits);
        self.changed.notify_all();
    }

    /// Wakes every waiting sender with an error: the receiver is gone.
    pub fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.closed = true;
        self.changed.notify_all();
    }

    /// Wakes every waiting sender to look at its cancel token.
    fn wake(&self) {
        // Under the lock: a sender between its check of the token and its
        // wait holds it, so it cannot miss this.
        let _state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.changed.notify_all();
    }

    /// Makes `cancel` wake the senders waiting at this gate.
    pub fn wake_on(self: &Arc<Self>, cancel: &CancelToken) {
        let gate = Arc::downgrade(self);
        cancel.on_cancel(move || {
            if let Some(gate) = gate.upgrade() {
                gate.wake();
            }
        });
    }

    /// Takes one credit, waiting while there is none; returns how long it
    /// waited. `cancel` ends the wait only if the gate was told to
    /// [`wake_on`](Self::wake_on) it.
    pub fn acquire(&self, cancel: &CancelToken) -> Result<Duration, NoCredit> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // The clock is read only when there is no credit.
        let mut waiting_since: Option<Instant> = None;
        loop {
            if state.closed {
                return Err(NoCredit::Closed);
            }
            if state.credits > 0 {
                state.credits -= 1;
                return Ok(waiting_since.map_or(Duration::ZERO, |since| since.elapsed()));
            }
            if cancel.is_cancelled() {
                return Err(NoCredit::Cancelled);
            }
            waiting_since.get_or_insert_with(Instant::now);
            state.waiting += 1;
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            state.waiting -= 1;
        }
    }

    /// Senders blocked waiting for credit.
    #[cfg(test)]
    fn waiting(&self) -> u32 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).waiting
    }

    /// Credits currently held.
    pub fn available(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).credits
    }
}

/// Where a credit frame goes: the connection to the sending worker.
pub trait CreditSink: Send + Sync {
    /// Queues an encoded frame body; false when the connection is gone.
    fn send_frame(&self, frame: OutgoingFrame) -> bool;
}

/// The receiving side: returns credits as the task consumes messages,
/// in batches of `threshold` so that credit frames stay rare.
pub struct CreditReturn {
    key: ChannelKey,
    link: Arc<dyn CreditSink>,
    consumed: AtomicU32,
    threshold: u32,
}

impl CreditReturn {
    /// Returns credits of `key` over `link` once `threshold` are due.
    pub fn new(key: ChannelKey, link: Arc<dyn CreditSink>, threshold: u32) -> Self {
        Self {
            key,
            link,
            consumed: AtomicU32::new(0),
            threshold: threshold.max(1),
        }
    }

    /// Grants `credits` to the sender now.
    pub fn grant(&self, credits: u32) {
        let frame = OutgoingFrame::Encoded(encode_exchange_body(&ExchangeFrame::Credit {
            key: self.key,
            credits,
        }));
        // A closed link means the sender is gone: nobody to grant to.
        let _ = self.link.send_frame(frame);
    }

    /// The task took one message off the channel.
    pub fn consumed(&self) {
        let consumed = self.consumed.fetch_add(1, Ordering::Relaxed) + 1;
        if consumed >= self.threshold {
            self.consumed.store(0, Ordering::Relaxed);
            self.grant(consumed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_are_spent_granted_and_closed() {
        let gate = CreditGate::default();
        let cancel = CancelToken::new();
        gate.grant(2);
        assert_eq!(gate.acquire(&cancel), Ok(Duration::ZERO));
        assert_eq!(gate.acquire(&cancel), Ok(Duration::ZERO));
        assert_eq!(gate.available(), 0);
        cancel.cancel();
        assert_eq!(gate.acquire(&cancel), Err(NoCredit::Cancelled));
        gate.close();
        assert_eq!(gate.acquire(&CancelToken::new()), Err(NoCredit::Closed));
    }

    #[test]
    fn a_sender_waiting_for_credit_wakes_when_its_job_is_cancelled() {
        let gate = Arc::new(CreditGate::default());
        let cancel = CancelToken::new();
        gate.wake_on(&cancel);
        let waiter = {
            let (gate, cancel) = (gate.clone(), cancel.clone());
            std::thread::spawn(move || gate.acquire(&cancel))
        };
        // Cancel only once it is blocked, so that the wake-up is what ends
        // its wait (not a check before waiting).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while gate.waiting() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the sender never blocked"
            );
            std::thread::yield_now();
        }
        cancel.cancel();
        assert_eq!(waiter.join().unwrap(), Err(NoCredit::Cancelled));
    }

    struct Recorded(Mutex<Vec<ExchangeFrame>>);
    impl CreditSink for Recorded {
        fn send_frame(&self, frame: OutgoingFrame) -> bool {
            let OutgoingFrame::Encoded(frame) = frame else {
                panic!("credits go in rkyv frames");
            };
            let frame = weir_protocol::wire::decode_exchange(&frame).unwrap();
            self.0.lock().unwrap().push(frame);
            true
        }
    }

    #[test]
    fn consumed_messages_return_credit_in_batches() {
        let key = ChannelKey {
            job: 1,
            attempt: 1,
            edge: 0,
            from: 0,
            to: 0,
        };
        let sink = Arc::new(Recorded(Mutex::new(Vec::new())));
        let credits = CreditReturn::new(key, sink.clone(), 4);
        for _ in 0..9 {
            credits.consumed();
        }
        let frames = sink.0.lock().unwrap().clone();
        assert_eq!(
            frames,
            vec![
                ExchangeFrame::Credit { key, credits: 4 },
                ExchangeFrame::Credit { key, credits: 4 }
            ]
        );
    }
}
