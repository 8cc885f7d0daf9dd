//! An operator's or sink's loop.
//!
//! It reads whichever input channel (or its control channel) has a
//! message, without blocking while any has one; when none has, it flushes
//! its output (so records never linger while it waits) and blocks until a
//! message arrives, its next processing-time timer is due, or the job is
//! cancelled. Channels that delivered the barrier being aligned are not
//! read until alignment completes.

use super::aligner::{Alignment, BarrierAligner};
use super::context::{disconnected_is_cancel, TaskCommand, TaskContext, TaskExit, TaskInput};
use super::watermarks::{IdleOutcome, InputWatermarks};
use crossbeam_channel::Select;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use weir_operators::output::TaskCounters;
use weir_operators::task::OperatorTask;
use weir_operators::{Message, OperatorError};

/// Every how many messages a task records how full its inputs are.
const QUEUE_SAMPLE_EVERY: u64 = 64;

/// Records how many messages wait in `inputs` (for the worker's metrics).
fn sample_queues(inputs: &[TaskInput], counters: &TaskCounters) {
    let queued: usize = inputs.iter().map(|i| i.receiver.len()).sum();
    let capacity: usize = inputs
        .iter()
        .map(|i| i.receiver.capacity().unwrap_or(0))
        .sum();
    counters
        .input_queued
        .store(queued as u64, Ordering::Relaxed);
    counters
        .input_capacity
        .store(capacity as u64, Ordering::Relaxed);
}

/// The longest a task waits for its next processing-time timer before it
/// reads the wall clock again (which NTP may have stepped meanwhile).
const WALL_CLOCK_RECHECK: Duration = Duration::from_secs(1);
use weir_protocol::time::now_timestamp as now_millis;
use weir_protocol::Epoch;

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
    /// The barrier being aligned, and when it arrived on the first input.
    aligning_since: Option<(Epoch, Instant)>,
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
            aligning_since: None,
        }
    }

    /// The alignment that just completed: how long since its first barrier.
    fn aligned(&mut self) -> Duration {
        self.aligning_since
            .take()
            .map_or(Duration::ZERO, |(_, since)| since.elapsed())
    }

    /// Barrier `epoch` arrived without completing an alignment: the
    /// alignment of `epoch` began now unless it had (a newer barrier
    /// replaces an older alignment).
    fn aligning(&mut self, epoch: Epoch) {
        if self.aligning_since.is_none_or(|(e, _)| e != epoch) {
            self.aligning_since = Some((epoch, Instant::now()));
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
        let mut received: u64 = 0;
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
            // Index 0 is the control channel, 1 the cancel signal; then the
            // readable inputs.
            let readable: Vec<usize> = (0..inputs.len())
                .filter(|&c| !self.closed[c] && !self.aligner.is_blocked(c))
                .collect();
            let mut select = Select::new();
            select.recv(ctx.control);
            select.recv(ctx.cancel.signal());
            for &c in &readable {
                select.recv(&inputs[c].receiver);
            }
            let ready = match select.try_select() {
                Ok(op) => Some(op),
                Err(_) => {
                    task.flush()?;
                    sample_queues(inputs, ctx.counters);
                    let idle_since = Instant::now();
                    ctx.counters.idle_from(idle_since);
                    let ready = match deadline {
                        Some(due) => {
                            // Timers follow the wall clock, which can step:
                            // look again at least every second.
                            let wait = Duration::from_millis((due - now_millis()).max(0) as u64)
                                .min(WALL_CLOCK_RECHECK);
                            select.select_timeout(wait).ok()
                        }
                        None => Some(select.select()),
                    };
                    ctx.counters.idled(idle_since.elapsed());
                    ready
                }
            };
            // The timer is due.
            let Some(op) = ready else { continue };
            if op.index() == 1 {
                let _ = op.recv(ctx.cancel.signal());
                return Ok(TaskExit::Cancelled);
            }
            if op.index() == 0 {
                match op.recv(ctx.control) {
                    Ok(TaskCommand::Completed(epoch)) => task.checkpoint_complete(epoch)?,
                    Ok(TaskCommand::Trigger { .. }) => {}
                    // The engine is gone: nothing will complete any more.
                    Err(_) => return Ok(TaskExit::Cancelled),
                }
                continue;
            }
            let channel = readable[op.index() - 2];
            let Ok(message) = op.recv(&inputs[channel].receiver) else {
                // The upstream task vanished without closing its stream:
                // the job is being torn down.
                return Ok(TaskExit::Cancelled);
            };
            if let Some(credits) = &inputs[channel].credits {
                credits.consumed();
            }
            received = received.wrapping_add(1);
            if received.is_multiple_of(QUEUE_SAMPLE_EVERY) {
                sample_queues(inputs, ctx.counters);
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
                self.watermarks.activate(channel);
                task.process(batch)?;
            }
            Message::Watermark(watermark) => {
                if let Some(advanced) = self.watermarks.observe(channel, watermark) {
                    task.watermark(advanced)?;
                }
            }
            Message::Idle => match self.watermarks.idle(channel) {
                IdleOutcome::Advanced(advanced) => task.watermark(advanced)?,
                IdleOutcome::AllIdle => task.inputs_idle()?,
                IdleOutcome::Unchanged => {}
            },
            Message::Barrier(epoch) => {
                let aligned = self.aligner.on_barrier(channel, epoch);
                if let Alignment::Aligned(epoch) = aligned {
                    let alignment = self.aligned();
                    ctx.checkpoint(epoch, alignment, || task.checkpoint(epoch))?;
                } else {
                    self.aligning(epoch);
                }
            }
            Message::EndOfData => self.channel_data_ended(task, channel)?,
            Message::StopBarrier(epoch) => {
                self.closed[channel] = true;
                if let Alignment::Aligned(epoch) = self.aligner.on_barrier(channel, epoch) {
                    // Every input stopped at this barrier: snapshot and pass
                    // the stop on; the outputs end with it.
                    task.suspend()?;
                    let alignment = self.aligned();
                    ctx.checkpoint(epoch, alignment, || task.checkpoint(epoch))?;
                    self.outputs_closed = true;
                } else {
                    self.aligning(epoch);
                }
            }
            Message::EndOfStream => {
                self.channel_data_ended(task, channel)?;
                self.closed[channel] = true;
                if let Alignment::Aligned(epoch) = self.aligner.on_closed(channel) {
                    let alignment = self.aligned();
                    ctx.checkpoint(epoch, alignment, || task.checkpoint(epoch))?;
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
