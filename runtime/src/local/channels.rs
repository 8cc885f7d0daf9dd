//! Bounded in-process channels between subtasks.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::time::{Duration, Instant};
use weir_operators::output::OutputChannel;
use weir_operators::{Message, OperatorError};

/// The sending end of a channel between two subtasks on one worker.
pub struct LocalSender {
    sender: Sender<Message>,
}

impl OutputChannel for LocalSender {
    fn send(&mut self, message: Message) -> Result<Duration, OperatorError> {
        // The clock is read only when the channel is full.
        let message = match self.sender.try_send(message) {
            Ok(()) => return Ok(Duration::ZERO),
            Err(TrySendError::Disconnected(_)) => return Err(OperatorError::Disconnected),
            Err(TrySendError::Full(message)) => message,
        };
        let waiting = Instant::now();
        self.sender
            .send(message)
            .map_err(|_| OperatorError::Disconnected)?;
        Ok(waiting.elapsed())
    }
}

/// A channel holding at most `capacity` messages (batches or control
/// messages); a producer that finds it full waits.
pub fn local_channel(capacity: usize) -> (LocalSender, Receiver<Message>) {
    let (sender, receiver) = crossbeam_channel::bounded(capacity.max(1));
    (LocalSender { sender }, receiver)
}
