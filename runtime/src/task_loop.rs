//! The loop each subtask thread runs.
//!
//! An operator subtask drains whichever input channel has a message,
//! without blocking while any has one; when none has, it flushes its output
//! (so records never linger while it waits) and blocks until a message
//! arrives, its next processing-time timer is due, or the poll interval
//! passes and it checks for cancellation.

use crate::engine::CancelToken;
use crate::watermarks::InputWatermarks;
use crossbeam_channel::{Receiver, Select};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weir_operators::output::TaskCounters;
use weir_operators::task::{OperatorTask, SourcePoll, SourceTask};
use weir_operators::{Message, OperatorError, Timestamp};

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

/// Runs a source until it is exhausted or the job is cancelled.
pub fn run_source(
    task: &mut dyn SourceTask,
    cancel: &CancelToken,
) -> Result<TaskExit, OperatorError> {
    loop {
        if cancel.is_cancelled() {
            return Ok(TaskExit::Cancelled);
        }
        match task.poll() {
            Ok(SourcePoll::Ready) => {}
            Ok(SourcePoll::Idle(wait)) => {
                if let Err(e) = task.flush() {
                    return disconnected_is_cancel(e);
                }
                std::thread::sleep(wait.min(POLL_INTERVAL));
            }
            Ok(SourcePoll::Finished) => break,
            Err(e) => return disconnected_is_cancel(e),
        }
    }
    match task.finish() {
        Ok(()) => Ok(TaskExit::Finished),
        Err(e) => disconnected_is_cancel(e),
    }
}

/// A send to a vanished downstream task means the job is being torn down,
/// not that this task failed.
fn disconnected_is_cancel(error: OperatorError) -> Result<TaskExit, OperatorError> {
    match error {
        OperatorError::Disconnected => Ok(TaskExit::Cancelled),
        other => Err(other),
    }
}

fn now_millis() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Timestamp)
        .unwrap_or(0)
}

/// Runs an operator or sink until every input has ended, or the job is cancelled.
pub fn run_operator(
    task: &mut dyn OperatorTask,
    inputs: &[Receiver<Message>],
    counters: &TaskCounters,
    cancel: &CancelToken,
) -> Result<TaskExit, OperatorError> {
    match operator_loop(task, inputs, counters, cancel) {
        Ok(exit) => Ok(exit),
        Err(e) => disconnected_is_cancel(e),
    }
}

fn operator_loop(
    task: &mut dyn OperatorTask,
    inputs: &[Receiver<Message>],
    counters: &TaskCounters,
    cancel: &CancelToken,
) -> Result<TaskExit, OperatorError> {
    let mut watermarks = InputWatermarks::new(inputs.len());
    // Indices (into `inputs`) of channels that have not ended.
    let mut open: Vec<usize> = (0..inputs.len()).collect();
    while !open.is_empty() {
        if cancel.is_cancelled() {
            return Ok(TaskExit::Cancelled);
        }
        let deadline = task.next_processing_deadline();
        if let Some(due) = deadline {
            let now = now_millis();
            if due <= now {
                task.processing_time(now)?;
                continue;
            }
        }
        let mut select = Select::new();
        for &i in &open {
            select.recv(&inputs[i]);
        }
        let ready = match select.try_select() {
            Ok(op) => Some(op),
            Err(_) => {
                task.flush()?;
                let wait = match deadline {
                    Some(due) => {
                        let millis =
                            (due - now_millis()).clamp(0, POLL_INTERVAL.as_millis() as i64);
                        Duration::from_millis(millis as u64)
                    }
                    None => POLL_INTERVAL,
                };
                select.select_timeout(wait).ok()
            }
        };
        let Some(op) = ready else {
            continue;
        };
        let position = op.index();
        let channel = open[position];
        let message = match op.recv(&inputs[channel]) {
            Ok(message) => message,
            // The upstream task vanished without ending its stream: the job
            // is being torn down.
            Err(_) => return Ok(TaskExit::Cancelled),
        };
        match message {
            Message::Data(batch) => {
                counters
                    .records_in
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                task.process(batch)?;
            }
            Message::Watermark(watermark) => {
                if let Some(advanced) = watermarks.observe(channel, watermark) {
                    task.watermark(advanced)?;
                }
            }
            Message::EndOfStream => {
                open.swap_remove(position);
                if let Some(advanced) = watermarks.end(channel) {
                    task.watermark(advanced)?;
                }
            }
        }
    }
    if inputs.is_empty() {
        // Unreachable for a validated graph, but an operator without inputs
        // still ends cleanly.
        task.watermark(weir_operators::MAX_WATERMARK)?;
    }
    task.finish()?;
    Ok(TaskExit::Finished)
}
