//! The loop each subtask thread runs.
//!
//! An operator subtask reads whichever input channel (or its control
//! channel) has a message, without blocking while any has one; when none
//! has, it flushes its output (so records never linger while it waits) and
//! blocks until a message arrives, its next processing-time timer is due,
//! or the poll interval passes and it checks for cancellation. Channels
//! that delivered the barrier being aligned are not read until alignment
//! completes.

use crate::aligner::{Alignment, BarrierAligner};
use crate::engine::CancelToken;
use crate::snapshots::SnapshotSubmitter;
use crate::watermarks::InputWatermarks;
use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weir_operators::output::TaskCounters;
use weir_operators::task::{OperatorTask, SourcePoll, SourceTask, TaskSnapshot};
use weir_operators::{Message, OperatorError, Timestamp};
use weir_protocol::{Epoch, KeyGroupRange, SubtaskId, WorkerEvent};

/// How long a waiting task sleeps at most before it looks at the cancel flag.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How a subtask's loop ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskExit {
    /// It processed all of its input and ended its outputs.
    Finished,
    /// It stopped early: the job was cancelled, or a neighbour task is gone.
    Cancelled,
}

/// What the engine tells one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskCommand {
    /// Sources: take checkpoint `epoch` (closing once it completed if it
    /// is final, suspending if it is a stop-with-savepoint).
    Trigger {
        /// The checkpoint.
        epoch: Epoch,
        /// Whether it is the final one.
        is_final: bool,
        /// Whether the job stops after it (no data after its barrier).
        stop: bool,
    },
    /// Checkpoint `epoch` is complete.
    Completed(Epoch),
}

/// One input channel of an operator subtask.
pub struct TaskInput {
    /// Where its messages arrive.
    pub receiver: Receiver<Message>,
    /// For a channel from another worker: hands credit back to the sender
    /// as messages are consumed.
    pub credits: Option<std::sync::Arc<crate::exchange::credits::CreditReturn>>,
}

impl TaskInput {
    /// An input fed by a channel within this process.
    pub fn local(receiver: Receiver<Message>) -> Self {
        Self {
            receiver,
            credits: None,
        }
    }
}

/// What a subtask's loop works with besides its task.
pub struct TaskContext<'a> {
    /// This subtask.
    pub task: SubtaskId,
    /// Its key groups (empty range for non-keyed operators).
    pub key_groups: KeyGroupRange,
    /// Set when the job is being cancelled.
    pub cancel: &'a CancelToken,
    /// Commands from the engine.
    pub control: &'a Receiver<TaskCommand>,
    /// Where snapshots go, when the job checkpoints.
    pub snapshots: Option<&'a SnapshotSubmitter>,
    /// Events to the coordinator, when the job checkpoints.
    pub events: Option<&'a Sender<WorkerEvent>>,
    /// Counters for the job summary.
    pub counters: &'a TaskCounters,
}

impl TaskContext<'_> {
    fn submit(&self, epoch: Epoch, snapshot: TaskSnapshot) {
        if let Some(snapshots) = self.snapshots {
            snapshots.submit(epoch, self.task, self.key_groups, snapshot);
        }
    }
}

/// A send to a vanished downstream task means the job is being torn down,
/// not that this task failed.
fn disconnected_is_cancel(
    result: Result<TaskExit, OperatorError>,
) -> Result<TaskExit, OperatorError> {
    match result {
        Err(OperatorError::Disconnected) => Ok(TaskExit::Cancelled),
        other => other,
    }
}

fn now_millis() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Timestamp)
        .unwrap_or(0)
}

/// Runs a source until it is exhausted (and, when the job checkpoints,
/// until a final checkpoint completed) or the job is cancelled.
pub fn run_source(
    task: &mut dyn SourceTask,
    ctx: &TaskContext<'_>,
) -> Result<TaskExit, OperatorError> {
    disconnected_is_cancel(source_loop(task, ctx))
}

fn source_loop(
    task: &mut dyn SourceTask,
    ctx: &TaskContext<'_>,
) -> Result<TaskExit, OperatorError> {
    let mut data_done = false;
    // The stop-with-savepoint this source stopped at.
    let mut stopped_at: Option<Epoch> = None;
    // The last final checkpoint this source took part in: it closes once
    // one completed. A failed one is triggered again (a new epoch), and
    // the source must still be there to take it.
    let mut final_at: Option<Epoch> = None;
    // How long to wait for a command before polling the source again.
    let mut wait = Duration::ZERO;
    loop {
        if ctx.cancel.is_cancelled() {
            return Ok(TaskExit::Cancelled);
        }
        match ctx.control.recv_timeout(wait) {
            Ok(TaskCommand::Trigger {
                epoch,
                is_final,
                stop,
            }) => {
                if stop && !is_final {
                    // A stop barrier, not `end_of_data`: downstream must not
                    // emit final results that the resumed job would emit
                    // again, nor anything after the barrier.
                    task.suspend()?;
                    stopped_at = Some(epoch);
                }
                let snapshot = task.checkpoint(epoch)?;
                ctx.submit(epoch, snapshot);
                if is_final {
                    final_at = Some(epoch);
                }
            }
            // The job ends only once its stop-with-savepoint completed: if
            // it fails instead, the job is cancelled and resumes from its
            // last checkpoint.
            Ok(TaskCommand::Completed(epoch)) if stopped_at.is_some_and(|s| epoch >= s) => {
                return Ok(TaskExit::Finished);
            }
            Ok(TaskCommand::Completed(epoch)) if final_at.is_some_and(|f| epoch >= f) => {
                task.close()?;
                return Ok(TaskExit::Finished);
            }
            Ok(TaskCommand::Completed(_)) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(TaskExit::Cancelled),
        }
        if data_done || stopped_at.is_some() {
            wait = POLL_INTERVAL;
            continue;
        }
        wait = Duration::ZERO;
        match task.poll()? {
            SourcePoll::Ready => {}
            SourcePoll::Idle(idle) => {
                task.flush()?;
                wait = idle.min(POLL_INTERVAL);
            }
            SourcePoll::Finished => {
                task.end_of_data()?;
                data_done = true;
                match ctx.events {
                    Some(events) => {
                        let _ = events.send(WorkerEvent::SourceFinished { task: ctx.task });
                    }
                    None => {
                        task.close()?;
                        return Ok(TaskExit::Finished);
                    }
                }
            }
        }
    }
}

/// Runs an operator or sink until every input has closed and nothing waits
/// for a commit, or the job is cancelled.
pub fn run_operator(
    task: &mut dyn OperatorTask,
    inputs: &[TaskInput],
    ctx: &TaskContext<'_>,
) -> Result<TaskExit, OperatorError> {
    disconnected_is_cancel(OperatorLoop::new(inputs.len()).run(task, inputs, ctx))
}

/// The per-channel bookkeeping of an operator subtask.
struct OperatorLoop {
    watermarks: InputWatermarks,
    aligner: BarrierAligner,
    data_ended: Vec<bool>,
    closed: Vec<bool>,
    finished: bool,
    outputs_closed: bool,
}

impl OperatorLoop {
    fn new(channels: usize) -> Self {
        Self {
            watermarks: InputWatermarks::new(channels),
            aligner: BarrierAligner::new(channels),
            data_ended: vec![false; channels],
            closed: vec![false; channels],
            finished: false,
            outputs_closed: false,
        }
    }

    fn run(
        &mut self,
        task: &mut dyn OperatorTask,
        inputs: &[TaskInput],
        ctx: &TaskContext<'_>,
    ) -> Result<TaskExit, OperatorError> {
        if inputs.is_empty() {
            self.end_data(task)?;
        }
        loop {
            if ctx.cancel.is_cancelled() {
                return Ok(TaskExit::Cancelled);
            }
            if self.closed.iter().all(|c| *c) && !self.outputs_closed {
                if !self.finished {
                    self.end_data(task)?;
                }
                task.close()?;
                self.outputs_closed = true;
            }
            if self.outputs_closed && !task.has_pending_commits() {
                return Ok(TaskExit::Finished);
            }
            // Nothing fires after the end, nor after a stop barrier ended
            // the outputs (its timers are in the savepoint and fire in the
            // resumed job).
            let deadline = if self.finished || self.outputs_closed {
                None
            } else {
                task.next_processing_deadline()
            };
            if let Some(due) = deadline {
                let now = now_millis();
                if due <= now {
                    task.processing_time(now)?;
                    continue;
                }
            }
            // Index 0 is the control channel; then the readable inputs.
            let readable: Vec<usize> = (0..inputs.len())
                .filter(|&c| !self.closed[c] && !self.aligner.is_blocked(c))
                .collect();
            let mut select = Select::new();
            select.recv(ctx.control);
            for &c in &readable {
                select.recv(&inputs[c].receiver);
            }
            let ready = match select.try_select() {
                Ok(op) => Some(op),
                Err(_) => {
                    task.flush()?;
                    let wait = match deadline {
                        Some(due) => Duration::from_millis(
                            (due - now_millis()).clamp(0, POLL_INTERVAL.as_millis() as i64) as u64,
                        ),
                        None => POLL_INTERVAL,
                    };
                    select.select_timeout(wait).ok()
                }
            };
            let Some(op) = ready else { continue };
            if op.index() == 0 {
                match op.recv(ctx.control) {
                    Ok(TaskCommand::Completed(epoch)) => task.checkpoint_complete(epoch)?,
                    Ok(TaskCommand::Trigger { .. }) => {}
                    // The engine is gone: nothing will complete any more.
                    Err(_) => return Ok(TaskExit::Cancelled),
                }
                continue;
            }
            let channel = readable[op.index() - 1];
            let Ok(message) = op.recv(&inputs[channel].receiver) else {
                // The upstream task vanished without closing its stream:
                // the job is being torn down.
                return Ok(TaskExit::Cancelled);
            };
            if let Some(credits) = &inputs[channel].credits {
                credits.consumed();
            }
            self.handle(task, channel, message, ctx)?;
        }
    }

    fn handle(
        &mut self,
        task: &mut dyn OperatorTask,
        channel: usize,
        message: Message,
        ctx: &TaskContext<'_>,
    ) -> Result<(), OperatorError> {
        match message {
            Message::Data(batch) => {
                ctx.counters
                    .records_in
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                task.process(batch)?;
            }
            Message::Watermark(watermark) => {
                if let Some(advanced) = self.watermarks.observe(channel, watermark) {
                    task.watermark(advanced)?;
                }
            }
            Message::Barrier(epoch) => {
                if let Alignment::Aligned(epoch) = self.aligner.on_barrier(channel, epoch) {
                    let snapshot = task.checkpoint(epoch)?;
                    ctx.submit(epoch, snapshot);
                }
            }
            Message::EndOfData => self.channel_data_ended(task, channel)?,
            Message::StopBarrier(epoch) => {
                self.closed[channel] = true;
                if let Alignment::Aligned(epoch) = self.aligner.on_barrier(channel, epoch) {
                    // Every input stopped at this barrier: snapshot and pass
                    // the stop on; the outputs end with it.
                    task.suspend()?;
                    let snapshot = task.checkpoint(epoch)?;
                    ctx.submit(epoch, snapshot);
                    self.outputs_closed = true;
                }
            }
            Message::EndOfStream => {
                self.channel_data_ended(task, channel)?;
                self.closed[channel] = true;
                if let Alignment::Aligned(epoch) = self.aligner.on_closed(channel) {
                    let snapshot = task.checkpoint(epoch)?;
                    ctx.submit(epoch, snapshot);
                }
            }
        }
        Ok(())
    }

    fn channel_data_ended(
        &mut self,
        task: &mut dyn OperatorTask,
        channel: usize,
    ) -> Result<(), OperatorError> {
        if self.data_ended[channel] {
            return Ok(());
        }
        self.data_ended[channel] = true;
        if let Some(advanced) = self.watermarks.end(channel) {
            task.watermark(advanced)?;
        }
        if self.data_ended.iter().all(|d| *d) && !self.finished {
            self.end_data(task)?;
        }
        Ok(())
    }

    /// Every input reached end of data: final watermark (if not yet), then finish.
    fn end_data(&mut self, task: &mut dyn OperatorTask) -> Result<(), OperatorError> {
        if self.watermarks.current() < weir_operators::MAX_WATERMARK {
            task.watermark(weir_operators::MAX_WATERMARK)?;
        }
        task.finish()?;
        self.finished = true;
        Ok(())
    }
}
