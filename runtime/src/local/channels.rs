//! Bounded in-process channels between subtasks.

use crossbeam_channel::{Receiver, Sender};
use weir_operators::output::OutputChannel;
use weir_operators::{Message, OperatorError};

/// The sending end of a channel between two subtasks on one worker.
pub struct LocalSender {
    sender: Sender<Message>,
}

impl OutputChannel for LocalSender {
    fn send(&mut self, message: Message) -> Result<(), OperatorError> {
        self.sender
            .send(message)
            .map_err(|_| OperatorError::Disconnected)
    }
}

/// A channel holding at most `capacity` messages (batches or control
/// messages); a producer that finds it full waits.
pub fn local_channel(capacity: usize) -> (LocalSender, Receiver<Message>) {
    let (sender, receiver) = crossbeam_channel::bounded(capacity.max(1));
    (LocalSender { sender }, receiver)
}
