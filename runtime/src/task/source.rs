//! A source's loop.
//!
//! While it has data the source is polled between commands, which are
//! taken without waiting; while it is idle the loop waits for a command
//! until the source said to poll again; once its data ended (or a
//! stop-with-savepoint suspended it) the loop only waits for commands.
//! Every wait also ends when the job is cancelled.

use super::context::{disconnected_is_cancel, TaskCommand, TaskContext, TaskExit};
use crossbeam_channel::{Select, TryRecvError};
use std::time::{Duration, Instant};
use weir_operators::task::{SourcePoll, SourceTask};
use weir_operators::OperatorError;
use weir_protocol::{Epoch, WorkerEvent};

/// How long the loop may wait for a command before polling the source.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// Not at all: the source has data.
    None,
    /// Until the source's idle time passed.
    For(Duration),
    /// Until a command (or cancellation) arrives: the source is done.
    ForCommand,
}

/// The next command, within `wait`: `Ok(None)` when the wait passed
/// without one, `Err(())` when the job is cancelled or the engine is gone.
fn next_command(ctx: &TaskContext<'_>, wait: Wait) -> Result<Option<TaskCommand>, ()> {
    if ctx.cancel.is_cancelled() {
        return Err(());
    }
    if let Wait::None = wait {
        return match ctx.control.try_recv() {
            Ok(command) => Ok(Some(command)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(()),
        };
    }
    let mut select = Select::new();
    let control = select.recv(ctx.control);
    select.recv(ctx.cancel.signal());
    let wake = match wait {
        Wait::For(_) => Some(select.recv(ctx.wake)),
        _ => None,
    };
    let idle_since = Instant::now();
    ctx.counters.idle_from(idle_since);
    let op = match wait {
        Wait::For(idle) => match select.select_timeout(idle) {
            Ok(op) => op,
            Err(_) => {
                ctx.counters.idled(idle_since.elapsed());
                return Ok(None);
            }
        },
        _ => select.select(),
    };
    ctx.counters.idled(idle_since.elapsed());
    if op.index() == control {
        op.recv(ctx.control).map(Some).map_err(|_| ())
    } else if Some(op.index()) == wake {
        // Woken: poll the source now. (Its sender lives as long as the
        // task's info, so this is not a disconnect.)
        let _ = op.recv(ctx.wake);
        Ok(None)
    } else {
        // The cancel signal: it only ever disconnects.
        let _ = op.recv(ctx.cancel.signal());
        Err(())
    }
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
    let mut wait = Wait::None;
    loop {
        let Ok(command) = next_command(ctx, wait) else {
            return Ok(TaskExit::Cancelled);
        };
        match command {
            Some(TaskCommand::Trigger {
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
                ctx.checkpoint(epoch, Duration::ZERO, || task.checkpoint(epoch))?;
                if is_final {
                    final_at = Some(epoch);
                }
            }
            Some(TaskCommand::Completed(epoch)) => {
                task.checkpoint_complete(epoch)?;
                // The job ends only once its stop-with-savepoint completed:
                // if it fails instead, the job is cancelled and resumes from
                // its last checkpoint.
                if stopped_at.is_some_and(|s| epoch >= s) {
                    return Ok(TaskExit::Finished);
                }
                if final_at.is_some_and(|f| epoch >= f) {
                    task.close()?;
                    return Ok(TaskExit::Finished);
                }
            }
            None => {}
        }
        if data_done || stopped_at.is_some() {
            wait = Wait::ForCommand;
            continue;
        }
        wait = Wait::None;
        match task.poll()? {
            SourcePoll::Ready => {}
            SourcePoll::Idle(idle) => {
                task.flush()?;
                wait = Wait::For(idle);
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
