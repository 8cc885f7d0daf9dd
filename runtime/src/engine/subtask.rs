//! The body of one subtask thread, and the routing of the coordinator's
//! commands to the tasks of a run.

use super::config::OnRunning;
use crate::cancel::CancelToken;
use crate::checkpoint::snapshots::{AbortedCheckpoints, SnapshotSubmitter};
use crate::error::TaskFailure;
use crate::local::wiring::SubtaskPlan;
use crate::task::{run_operator, run_source, TaskCommand, TaskContext, TaskExit};
use crossbeam_channel::{Receiver, Sender};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use weir_operators::output::OutputWiring;
use weir_operators::task::VertexFactory;
use weir_protocol::cluster::SubtaskRestore;
use weir_protocol::{ControlCommand, KeyGroupRange, WorkerEvent};

/// The first failure of a run, as it happened.
pub(super) type FirstFailure = Arc<Mutex<Option<(String, u32, TaskFailure)>>>;

/// What every subtask thread shares.
#[derive(Clone)]
pub(super) struct Shared {
    /// The job's id (its name in a local run), for the tasks' log spans.
    pub(super) job: Arc<str>,
    pub(super) cancel: CancelToken,
    pub(super) failure: FirstFailure,
    pub(super) batch_size: usize,
    pub(super) snapshots: Option<SnapshotSubmitter>,
    pub(super) events: Option<Sender<WorkerEvent>>,
    pub(super) done: Sender<()>,
    pub(super) ready: Arc<Readiness>,
}

/// Counts the local subtasks not yet created (state restored); calls back
/// once all are.
pub(super) struct Readiness {
    pub(super) left: std::sync::atomic::AtomicUsize,
    pub(super) on_running: Option<OnRunning>,
    pub(super) restored: Vec<SubtaskRestore>,
}

impl Readiness {
    fn task_ready(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(on_running) = &self.on_running {
                on_running(&self.restored);
            }
        }
    }
}

/// Passes the coordinator's commands to the tasks until every task has ended.
pub(super) fn route_commands(
    (commands, aborted): (
        Option<&Receiver<ControlCommand>>,
        Option<&AbortedCheckpoints>,
    ),
    controls: &mut [(bool, Sender<TaskCommand>)],
    finished: &Receiver<()>,
    tasks: usize,
    cancel: &CancelToken,
) {
    let mut ended = 0;
    let mut commands = commands;
    while ended < tasks {
        let mut select = crossbeam_channel::Select::new();
        select.recv(finished);
        if let Some(commands) = commands {
            select.recv(commands);
        }
        let op = select.select();
        if op.index() == 0 {
            if op.recv(finished).is_ok() {
                ended += 1;
            }
            continue;
        }
        let Some(receiver) = commands else { continue };
        match op.recv(receiver) {
            Ok(ControlCommand::TriggerCheckpoint {
                epoch,
                is_final,
                stop,
            }) => {
                for (_, control) in controls.iter().filter(|(source, _)| *source) {
                    let _ = control.send(TaskCommand::Trigger {
                        epoch,
                        is_final,
                        stop,
                    });
                }
            }
            Ok(ControlCommand::CheckpointCompleted { epoch }) => {
                for (_, control) in controls.iter() {
                    let _ = control.send(TaskCommand::Completed(epoch));
                }
            }
            Ok(ControlCommand::CheckpointAborted { epoch }) => {
                if let Some(aborted) = aborted {
                    aborted.abort(epoch);
                }
            }
            Ok(ControlCommand::FailJob { reason }) => {
                tracing::error!(%reason, "the checkpoint coordinator failed the job");
                cancel.cancel();
            }
            // The coordinator stopped; tasks still end on their own.
            Err(_) => commands = None,
        }
    }
}

/// The body of one subtask thread: create the task, run its loop, and
/// record the first failure (cancelling the job).
pub(super) fn run_subtask(plan: SubtaskPlan, factory: VertexFactory, shared: &Shared) -> TaskExit {
    let SubtaskPlan {
        info,
        keyed,
        outputs,
        inputs,
        counters,
        control,
        wake,
        ..
    } = plan;
    let wiring = OutputWiring {
        edges: outputs,
        batch_size: shared.batch_size,
        counters: counters.clone(),
    };
    // Every event of the task carries its job and subtask, so that one
    // checkpoint can be followed through the logs of every worker.
    let _span = tracing::info_span!("task", job = %shared.job, task = %info.id()).entered();
    let ctx = TaskContext {
        task: info.id(),
        key_groups: if keyed {
            info.key_groups()
        } else {
            KeyGroupRange::new(0, 0)
        },
        cancel: &shared.cancel,
        control: &control,
        wake: &wake,
        snapshots: shared.snapshots.as_ref(),
        events: shared.events.as_ref(),
        counters: &counters,
    };
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| match &factory {
        VertexFactory::Source(make) => {
            let mut task = make(&info, wiring)?;
            shared.ready.task_ready();
            run_source(task.as_mut(), &ctx)
        }
        VertexFactory::Operator(make) => {
            let mut task = make(&info, wiring)?;
            shared.ready.task_ready();
            run_operator(task.as_mut(), &inputs, &ctx)
        }
    }));
    let cause = match outcome {
        Ok(Ok(exit)) => return exit,
        Ok(Err(error)) => TaskFailure::Error(error),
        Err(panic) => TaskFailure::Panic {
            message: panic_message(panic.as_ref()),
        },
    };
    tracing::error!(
        job = %info.job,
        operator = %info.operator,
        task = info.subtask,
        error = &cause as &dyn std::error::Error,
        "task failed; cancelling the job"
    );
    let mut first = shared.failure.lock().unwrap_or_else(|p| p.into_inner());
    if first.is_none() {
        *first = Some((info.operator.clone(), info.subtask, cause));
    }
    shared.cancel.cancel();
    TaskExit::Cancelled
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}
