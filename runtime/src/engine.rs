//! [`LocalEngine`]: runs a whole dataflow inside one process.

use crate::channels::local_channel;
use crate::error::{RuntimeError, TaskFailure};
use crate::task_loop::{run_operator, run_source, TaskExit};
use crossbeam_channel::Receiver;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_operators::output::{EdgeWiring, OutputChannel, OutputWiring, TaskCounters};
use weir_operators::task::VertexFactory;
use weir_operators::{Dataflow, Message, TaskInfo};
use weir_protocol::{Partitioning, VertexKind};
use weir_state::{MemoryBackend, StateBackend};

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

/// How the engine runs jobs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Records per batch sent between tasks.
    pub batch_size: usize,
    /// Messages (batches) a channel holds before its producer waits.
    pub channel_capacity: usize,
    /// Where keyed state lives.
    pub state_backend: Arc<dyn StateBackend>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            batch_size: 1024,
            channel_capacity: 16,
            state_backend: Arc::new(MemoryBackend),
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

/// One subtask ready to start.
struct SubtaskPlan {
    info: TaskInfo,
    kind: VertexKind,
    outputs: Vec<EdgeWiring>,
    inputs: Vec<Receiver<Message>>,
    counters: Arc<TaskCounters>,
}

/// The first failure of a run, as it happened.
type FirstFailure = Arc<Mutex<Option<(String, u32, TaskFailure)>>>;

impl LocalEngine {
    /// An engine with `config`.
    pub fn new(config: EngineConfig) -> Self {
        Self { config }
    }

    /// Runs `dataflow` to completion. Returns when every subtask has ended:
    /// all inputs processed, a subtask failed (the rest are cancelled and
    /// the failure is returned), or `cancel` was triggered.
    pub fn run(
        &self,
        dataflow: &Dataflow,
        cancel: &CancelToken,
    ) -> Result<JobReport, RuntimeError> {
        let graph = dataflow.graph();
        graph.validate().map_err(|source| RuntimeError::Graph {
            job: graph.name.clone(),
            source,
        })?;
        let started = Instant::now();
        let plans = self.plan(dataflow);
        let job_cancel = cancel.child();
        let failure: FirstFailure = Arc::new(Mutex::new(None));
        let mut handles = Vec::with_capacity(plans.len());
        let mut counters = Vec::with_capacity(plans.len());
        for plan in plans {
            counters.push((plan.kind, plan.counters.clone()));
            let factory = dataflow.factory(plan.info.vertex).clone();
            let (operator, subtask) = (plan.info.operator.clone(), plan.info.subtask);
            let (task_cancel, task_failure) = (job_cancel.clone(), failure.clone());
            let batch_size = self.config.batch_size;
            let handle = std::thread::Builder::new()
                .name(format!("{operator}-{subtask}"))
                .spawn(move || run_subtask(plan, factory, batch_size, &task_cancel, &task_failure))
                .map_err(|source| {
                    job_cancel.cancel();
                    RuntimeError::Spawn {
                        operator: operator.clone(),
                        subtask,
                        source,
                    }
                });
            match handle {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    for handle in handles {
                        let _ = handle.join();
                    }
                    return Err(e);
                }
            }
        }
        let mut all_finished = true;
        for handle in handles {
            // run_subtask catches panics, so join only fails if that failed.
            all_finished &= matches!(handle.join(), Ok(TaskExit::Finished));
        }
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

    /// Creates the channels of every edge and the plan of every subtask.
    fn plan(&self, dataflow: &Dataflow) -> Vec<SubtaskPlan> {
        let graph = dataflow.graph();
        // plans[vertex][subtask]
        let mut plans: Vec<Vec<SubtaskPlan>> = graph
            .vertices
            .iter()
            .map(|v| {
                (0..v.parallelism)
                    .map(|subtask| SubtaskPlan {
                        info: TaskInfo {
                            job: graph.name.clone(),
                            vertex: v.id,
                            operator: v.name.clone(),
                            subtask,
                            parallelism: v.parallelism,
                            max_parallelism: graph.max_parallelism,
                            state_backend: self.config.state_backend.clone(),
                        },
                        kind: v.kind,
                        outputs: Vec::new(),
                        inputs: Vec::new(),
                        counters: Arc::new(TaskCounters::default()),
                    })
                    .collect()
            })
            .collect();
        for (edge_index, edge) in graph.edges.iter().enumerate() {
            let upstream = graph.vertices[edge.from.index()].parallelism;
            let downstream = graph.vertices[edge.to.index()].parallelism;
            for i in 0..upstream {
                let targets: Vec<u32> = match edge.partitioning {
                    Partitioning::Forward => vec![i],
                    _ => (0..downstream).collect(),
                };
                let mut channels: Vec<Box<dyn OutputChannel>> = Vec::with_capacity(targets.len());
                for j in targets {
                    let (sender, receiver) = local_channel(self.config.channel_capacity);
                    channels.push(Box::new(sender));
                    plans[edge.to.index()][j as usize].inputs.push(receiver);
                }
                plans[edge.from.index()][i as usize]
                    .outputs
                    .push(EdgeWiring {
                        partitioning: edge.partitioning,
                        channels,
                        key_hasher: dataflow.key_hasher(edge_index),
                        max_parallelism: graph.max_parallelism,
                    });
            }
        }
        plans.into_iter().flatten().collect()
    }
}

/// The body of one subtask thread: create the task, run its loop, and
/// record the first failure (cancelling the job).
fn run_subtask(
    plan: SubtaskPlan,
    factory: VertexFactory,
    batch_size: usize,
    cancel: &CancelToken,
    failure: &FirstFailure,
) -> TaskExit {
    let SubtaskPlan {
        info,
        outputs,
        inputs,
        counters,
        ..
    } = plan;
    let wiring = OutputWiring {
        edges: outputs,
        batch_size,
        counters: counters.clone(),
    };
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| match &factory {
        VertexFactory::Source(make) => {
            let mut task = make(&info, wiring)?;
            run_source(task.as_mut(), cancel)
        }
        VertexFactory::Operator(make) => {
            let mut task = make(&info, wiring)?;
            run_operator(task.as_mut(), &inputs, &counters, cancel)
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
    let mut first = failure.lock().unwrap_or_else(|p| p.into_inner());
    if first.is_none() {
        *first = Some((info.operator.clone(), info.subtask, cause));
    }
    cancel.cancel();
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
