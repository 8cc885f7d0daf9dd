//! [`LocalEngine`]: runs a whole dataflow, or one worker's part of it,
//! inside this process, each subtask on its own thread.
//!
//! - [`config`]: what a run is given (engine settings, checkpointing, the
//!   checkpoint to resume from) and what it reports.
//! - `subtask`: the body of one subtask thread, and the routing of the
//!   coordinator's commands to the tasks.
//! - this module: [`LocalEngine`], which restores, wires, spawns and joins.

pub mod config;
mod subtask;

use crate::cancel::CancelToken;
use crate::checkpoint::restore::load_restored_tasks;
use crate::checkpoint::snapshots::SnapshotWriter;
use crate::error::RuntimeError;
use crate::local::wiring::plan;
pub use crate::local::wiring::WorkerPart;
use crate::metrics::TaskMetrics;
use crate::task::TaskExit;
use config::{CheckpointRun, EngineConfig, JobReport};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use subtask::{route_commands, run_subtask, Readiness, Shared};
use weir_operators::output::TaskCounters;
use weir_operators::Dataflow;
use weir_protocol::{VertexId, VertexKind};

/// Runs every subtask of a dataflow on its own thread in this process.
#[derive(Debug, Clone, Default)]
pub struct LocalEngine {
    config: EngineConfig,
}

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
            // The regions of one job attempt share it: they start apart.
            Some(part) if !part.deployment.deployment_id.is_empty() => format!(
                "{}-{}",
                part.deployment.command_attempt(),
                part.deployment.deployment_id
            ),
            Some(part) => format!("{}-{}", part.deployment.command_attempt(), new_attempt_id()),
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
        let job_label = match part {
            Some(part) => part.deployment.job_id.clone(),
            None => graph.name.clone(),
        };
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
                    job: Arc::from(job_label.as_str()),
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
                    job: Arc::from(job_label.as_str()),
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
        // Exported while the tasks run (and for a while after).
        let _task_metrics = self.config.metrics.deployment(
            plans
                .iter()
                .map(|plan| TaskMetrics {
                    job: job_label.clone(),
                    operator: plan.info.operator.clone(),
                    vertex: plan.info.vertex.0,
                    subtask: plan.info.subtask,
                    counters: plan.counters.clone(),
                    gates: plan.gates.clone(),
                })
                .collect(),
        );
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
