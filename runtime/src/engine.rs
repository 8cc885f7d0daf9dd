//! [`LocalEngine`]: runs a whole dataflow inside one process.

use crate::error::{RuntimeError, TaskFailure};
use crate::replicas::{Replication, StateReplicas};
use crate::restore::load_restored_tasks;
use crate::snapshots::{SnapshotSubmitter, SnapshotWriter};
use crate::task_loop::{run_operator, run_source, TaskCommand, TaskContext, TaskExit};
pub use crate::wiring::WorkerPart;
use crate::wiring::{plan, SubtaskPlan};
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_operators::output::{OutputWiring, TaskCounters};
use weir_operators::task::VertexFactory;
use weir_operators::Dataflow;
use weir_protocol::cluster::SubtaskRestore;
use weir_protocol::{
    CheckpointManifest, ControlCommand, KeyGroupRange, VertexId, VertexKind, WorkerEvent,
};
use weir_state::{CheckpointStorage, MemoryBackend, StateBackend};

/// Asks a running job to stop. Clones share the flag; a child token is
/// cancelled when it or its parent is.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
    parent: Option<Arc<AtomicBool>>,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled by `self` or by its own `cancel`, which does not
    /// cancel `self`.
    pub fn child(&self) -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            parent: Some(self.flag.clone()),
        }
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// Whether cancellation was requested (here or on the parent).
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
            || self
                .parent
                .as_ref()
                .is_some_and(|p| p.load(Ordering::Relaxed))
    }
}

/// Checkpointing for one run of a job: where state goes, and the channels
/// to and from the checkpoint coordinator.
pub struct CheckpointRun {
    /// The job's id: its checkpoints live under `{storage}/{job_id}/`.
    pub job_id: String,
    /// Checkpoint storage.
    pub storage: CheckpointStorage,
    /// Commands from the coordinator (trigger, complete).
    pub commands: Receiver<ControlCommand>,
    /// Events to the coordinator (acks, declines, finished sources).
    pub events: Sender<WorkerEvent>,
    /// The checkpoint to resume from, if any.
    pub restore: Option<RestoreSource>,
    /// Local copies and peer replicas of what the tasks upload.
    pub replication: Option<Arc<Replication>>,
}

/// A complete checkpoint to resume from, and where its files are.
#[derive(Debug, Clone)]
pub struct RestoreSource {
    /// The storage holding it.
    pub storage: CheckpointStorage,
    /// The job id it was written under.
    pub job_id: String,
    /// Its manifest.
    pub manifest: CheckpointManifest,
    /// Local copies (own and peer replicas) to read before the storage.
    pub replicas: Option<Arc<StateReplicas>>,
}

/// How the engine runs jobs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Records per batch sent between tasks.
    pub batch_size: usize,
    /// Messages (batches) a channel holds before its producer waits.
    pub channel_capacity: usize,
    /// Where keyed state lives.
    pub state_backend: Arc<dyn StateBackend>,
    /// Threads writing snapshots to checkpoint storage.
    pub snapshot_threads: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            batch_size: 1024,
            channel_capacity: 16,
            state_backend: Arc::new(MemoryBackend),
            snapshot_threads: 2,
        }
    }
}

/// What a finished job did.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport {
    /// Name of the job.
    pub job: String,
    /// Records produced by the sources.
    pub events_in: u64,
    /// Records received by the sinks.
    pub records_out: u64,
    /// Wall-clock time from start to the last task ending.
    pub elapsed: Duration,
}

impl JobReport {
    /// Source records per second of elapsed time.
    pub fn events_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.events_in as f64 / secs
        } else {
            0.0
        }
    }
}

/// Runs every subtask of a dataflow on its own thread in this process.
#[derive(Debug, Clone, Default)]
pub struct LocalEngine {
    config: EngineConfig,
}

/// The first failure of a run, as it happened.
type FirstFailure = Arc<Mutex<Option<(String, u32, TaskFailure)>>>;

/// What every subtask thread shares.
#[derive(Clone)]
struct Shared {
    cancel: CancelToken,
    failure: FirstFailure,
    batch_size: usize,
    snapshots: Option<SnapshotSubmitter>,
    events: Option<Sender<WorkerEvent>>,
    done: Sender<()>,
    ready: Arc<Readiness>,
}

/// Counts the local subtasks not yet created (state restored); calls back
/// once all are.
struct Readiness {
    left: std::sync::atomic::AtomicUsize,
    on_running: Option<OnRunning>,
    restored: Vec<SubtaskRestore>,
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

/// Called once every local subtask of a deployment is running, with the
/// tier each restored subtask's state came from.
pub type OnRunning = Arc<dyn Fn(&[SubtaskRestore]) + Send + Sync>;

/// A unique id for one run of a job on this engine (without a
/// coordinator's deployment id).
fn new_attempt_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl LocalEngine {
    /// An engine with `config`.
    pub fn new(config: EngineConfig) -> Self {
        Self { config }
    }

    /// Runs `dataflow` to completion without checkpoints. Returns when
    /// every subtask has ended: all input processed, a subtask failed (the
    /// rest are cancelled and the failure is returned), or `cancel` was
    /// triggered.
    pub fn run(
        &self,
        dataflow: &Dataflow,
        cancel: &CancelToken,
    ) -> Result<JobReport, RuntimeError> {
        self.run_with(dataflow, None, cancel)
    }

    /// Runs `dataflow`, checkpointing through `checkpoints` when given (and
    /// resuming from its `restore` checkpoint). With checkpoints, sources
    /// that run out of input wait for the final checkpoint, and the job
    /// ends when it is complete and committed.
    pub fn run_with(
        &self,
        dataflow: &Dataflow,
        checkpoints: Option<CheckpointRun>,
        cancel: &CancelToken,
    ) -> Result<JobReport, RuntimeError> {
        self.run_part(dataflow, None, checkpoints, cancel)
    }

    /// Runs the subtasks of `dataflow` that `part` places on this worker
    /// (all of them when `part` is `None`), like [`run_with`](Self::run_with).
    /// The report counts the local subtasks only.
    pub fn run_part(
        &self,
        dataflow: &Dataflow,
        part: Option<&WorkerPart<'_>>,
        checkpoints: Option<CheckpointRun>,
        cancel: &CancelToken,
    ) -> Result<JobReport, RuntimeError> {
        let graph = dataflow.graph();
        graph.validate().map_err(|source| RuntimeError::Graph {
            job: graph.name.clone(),
            source,
        })?;
        let started = Instant::now();
        let mut restored_tiers = Vec::new();
        let mut restored = match checkpoints.as_ref().and_then(|c| c.restore.as_ref()) {
            Some(source) => {
                let local = |vertex: VertexId, subtask: u32| {
                    part.is_none_or(|p| p.is_local(vertex, subtask))
                };
                let (tasks, tiers) = load_restored_tasks(
                    graph,
                    &source.manifest,
                    &source.storage,
                    &source.job_id,
                    source.replicas.as_deref(),
                    &local,
                )?;
                restored_tiers = tiers;
                tasks
            }
            None => HashMap::new(),
        };
        let attempt = match part {
            // One id across the deployment's workers: a file sink tells
            // its deployment's hidden files from earlier ones' by it.
            Some(part) if !part.deployment.deployment_id.is_empty() => format!(
                "{}-{}",
                part.deployment.attempt, part.deployment.deployment_id
            ),
            Some(part) => format!("{}-{}", part.deployment.attempt, new_attempt_id()),
            None => new_attempt_id(),
        };
        let job_cancel = cancel.child();
        let (plans, mut controls) = plan(
            &self.config,
            dataflow,
            part,
            checkpoints.is_some(),
            &attempt,
            &mut restored,
            &job_cancel,
        )?;
        let (done, finished) = crossbeam_channel::unbounded();
        let ready = Arc::new(Readiness {
            left: std::sync::atomic::AtomicUsize::new(plans.len()),
            on_running: part.and_then(|p| p.on_running.clone()),
            restored: std::mem::take(&mut restored_tiers),
        });
        let mut aborted = None;
        let (writer, commands, shared) = match checkpoints {
            Some(run) => {
                let (writer, submitter) = SnapshotWriter::start(
                    &run.job_id,
                    run.storage.clone(),
                    run.events.clone(),
                    self.config.snapshot_threads,
                    run.replication.clone(),
                );
                aborted = Some(writer.aborted());
                let shared = Shared {
                    cancel: job_cancel.clone(),
                    failure: Arc::new(Mutex::new(None)),
                    batch_size: self.config.batch_size,
                    snapshots: Some(submitter),
                    events: Some(run.events),
                    done,
                    ready: ready.clone(),
                };
                (Some(writer), Some(run.commands), shared)
            }
            None => {
                let shared = Shared {
                    cancel: job_cancel.clone(),
                    failure: Arc::new(Mutex::new(None)),
                    batch_size: self.config.batch_size,
                    snapshots: None,
                    events: None,
                    done,
                    ready: ready.clone(),
                };
                (None, None, shared)
            }
        };
        let mut handles = Vec::with_capacity(plans.len());
        let mut counters = Vec::with_capacity(plans.len());
        for plan in plans {
            counters.push((plan.kind, plan.counters.clone()));
            let factory = dataflow.factory(plan.info.vertex).clone();
            let (operator, subtask) = (plan.info.operator.clone(), plan.info.subtask);
            let task_shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{operator}-{subtask}"))
                .spawn(move || {
                    let exit = run_subtask(plan, factory, &task_shared);
                    let _ = task_shared.done.send(());
                    exit
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(source) => {
                    job_cancel.cancel();
                    for handle in handles {
                        let _ = handle.join();
                    }
                    return Err(RuntimeError::Spawn {
                        operator,
                        subtask,
                        source,
                    });
                }
            }
        }
        let failure = shared.failure.clone();
        drop(shared);
        route_commands(
            (commands.as_ref(), aborted.as_ref()),
            &mut controls,
            &finished,
            handles.len(),
            &job_cancel,
        );
        let mut all_finished = true;
        for handle in handles {
            // run_subtask catches panics, so join only fails if that failed.
            all_finished &= matches!(handle.join(), Ok(TaskExit::Finished));
        }
        tracing::debug!(job = %graph.name, "every local task ended");
        if let Some(writer) = writer {
            writer.shutdown(job_cancel.is_cancelled() || !all_finished);
        }
        tracing::debug!(job = %graph.name, "snapshot writer stopped");
        let job = graph.name.clone();
        if let Some((operator, subtask, cause)) =
            failure.lock().unwrap_or_else(|p| p.into_inner()).take()
        {
            return Err(RuntimeError::TaskFailed {
                job,
                operator,
                subtask,
                cause,
            });
        }
        if !all_finished {
            return Err(RuntimeError::Cancelled { job });
        }
        let sum = |kind: VertexKind, pick: fn(&TaskCounters) -> u64| -> u64 {
            counters
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, c)| pick(c))
                .sum()
        };
        Ok(JobReport {
            job,
            events_in: sum(VertexKind::Source, |c| {
                c.records_out.load(Ordering::Relaxed)
            }),
            records_out: sum(VertexKind::Sink, |c| c.records_in.load(Ordering::Relaxed)),
            elapsed: started.elapsed(),
        })
    }
}

/// Passes the coordinator's commands to the tasks until every task has ended.
fn route_commands(
    (commands, aborted): (
        Option<&Receiver<ControlCommand>>,
        Option<&crate::snapshots::AbortedCheckpoints>,
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
fn run_subtask(plan: SubtaskPlan, factory: VertexFactory, shared: &Shared) -> TaskExit {
    let SubtaskPlan {
        info,
        keyed,
        outputs,
        inputs,
        counters,
        control,
        ..
    } = plan;
    let wiring = OutputWiring {
        edges: outputs,
        batch_size: shared.batch_size,
        counters: counters.clone(),
    };
    let ctx = TaskContext {
        task: info.id(),
        key_groups: if keyed {
            info.key_groups()
        } else {
            KeyGroupRange::new(0, 0)
        },
        cancel: &shared.cancel,
        control: &control,
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
