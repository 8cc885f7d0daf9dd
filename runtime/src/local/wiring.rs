//! Wiring a deployment: the plan of every subtask this worker runs, and
//! the channels of every edge — in-memory between local subtasks, through
//! the data exchange to and from subtasks on other workers.

use super::channels::local_channel;
use crate::cancel::CancelToken;
use crate::engine::config::{EngineConfig, OnRunning};
use crate::error::RuntimeError;
use crate::net::credits::CreditGate;
use crate::net::Exchange;
use crate::task::{TaskCommand, TaskInput};
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::Arc;
use weir_operators::output::{EdgeWiring, OutputChannel, TaskCounters};
use weir_operators::task::{RestoredTask, SourceWaker};
use weir_operators::{Dataflow, TaskInfo};
use weir_protocol::cluster::Deployment;
use weir_protocol::wire::ChannelKey;
use weir_protocol::{Partitioning, VertexId, VertexKind, WorkerId};

/// The part of a deployment one worker runs: its subtasks are those placed
/// on `me`; edges to and from other workers go through `exchange`.
pub struct WorkerPart<'a> {
    /// The deployment.
    pub deployment: &'a Deployment,
    /// This worker.
    pub me: WorkerId,
    /// Its data exchange, already connected to every peer of the deployment.
    pub exchange: &'a Exchange,
    /// Called once every local subtask has been created (state restored).
    pub on_running: Option<OnRunning>,
}

impl WorkerPart<'_> {
    fn worker_of(&self, vertex: VertexId, subtask: u32) -> Option<WorkerId> {
        self.deployment.worker_of(vertex.0, subtask)
    }

    pub(crate) fn is_local(&self, vertex: VertexId, subtask: u32) -> bool {
        self.worker_of(vertex, subtask) == Some(self.me)
    }

    fn key(&self, edge: usize, from: u32, to: u32) -> ChannelKey {
        ChannelKey {
            job: self.deployment.job_number,
            attempt: self.deployment.attempt,
            edge: edge as u32,
            from,
            to,
        }
    }
}

/// One subtask ready to start.
pub(crate) struct SubtaskPlan {
    pub(crate) info: TaskInfo,
    pub(crate) kind: VertexKind,
    pub(crate) keyed: bool,
    pub(crate) outputs: Vec<EdgeWiring>,
    pub(crate) inputs: Vec<TaskInput>,
    pub(crate) counters: Arc<TaskCounters>,
    /// The credit gates of its channels to other workers (for metrics).
    pub(crate) gates: Vec<Arc<CreditGate>>,
    pub(crate) control: Receiver<TaskCommand>,
    /// Woken by the task's [`SourceWaker`] (sources wait on it when idle).
    pub(crate) wake: Receiver<()>,
}

/// Creates the channels of every edge and the plan of every subtask,
/// and each task's control channel (with whether it is a source).
#[allow(clippy::type_complexity)]
pub(crate) fn plan(
    config: &EngineConfig,
    dataflow: &Dataflow,
    part: Option<&WorkerPart<'_>>,
    checkpointing: bool,
    attempt: &str,
    restored: &mut HashMap<(VertexId, u32), Arc<RestoredTask>>,
    cancel: &CancelToken,
) -> Result<(Vec<SubtaskPlan>, Vec<(bool, Sender<TaskCommand>)>), RuntimeError> {
    let graph = dataflow.graph();
    let is_local =
        |vertex: VertexId, subtask: u32| part.is_none_or(|p| p.is_local(vertex, subtask));
    let mut controls = Vec::new();
    // plans[vertex][subtask], `None` for subtasks on other workers.
    let mut plans: Vec<Vec<Option<SubtaskPlan>>> = graph
        .vertices
        .iter()
        .map(|v| {
            (0..v.parallelism)
                .map(|subtask| {
                    if !is_local(v.id, subtask) {
                        return None;
                    }
                    let (control_sender, control) = crossbeam_channel::unbounded();
                    // One pending wake is enough: the source polls everything then.
                    let (wake_sender, wake) = crossbeam_channel::bounded(1);
                    controls.push((v.kind == VertexKind::Source, control_sender));
                    Some(SubtaskPlan {
                        info: TaskInfo {
                            job: graph.name.clone(),
                            vertex: v.id,
                            operator: v.name.clone(),
                            state_id: v.state_id().to_owned(),
                            subtask,
                            parallelism: v.parallelism,
                            max_parallelism: graph.max_parallelism,
                            state_backend: config.state_backend.clone(),
                            checkpointing,
                            attempt: attempt.to_owned(),
                            restored: restored.remove(&(v.id, subtask)),
                            others_running: part.is_some_and(|p| {
                                p.deployment.region.is_some_and(|r| r.others_running)
                            }),
                            waker: SourceWaker::new(move || {
                                let _ = wake_sender.try_send(());
                            }),
                        },
                        kind: v.kind,
                        keyed: v.keyed,
                        outputs: Vec::new(),
                        inputs: Vec::new(),
                        counters: Arc::new(TaskCounters::default()),
                        gates: Vec::new(),
                        control,
                        wake,
                    })
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
            let from_local = is_local(edge.from, i);
            let mut channels: Vec<Box<dyn OutputChannel>> = Vec::with_capacity(targets.len());
            for j in targets {
                let to_local = is_local(edge.to, j);
                let input = match (from_local, to_local, part) {
                    (true, true, _) | (_, _, None) => {
                        let (sender, receiver) = local_channel(config.channel_capacity);
                        channels.push(Box::new(sender));
                        Some(TaskInput::local(receiver))
                    }
                    (false, false, _) => None,
                    (true, false, Some(part)) => {
                        let peer = part.worker_of(edge.to, j).map_or(u32::MAX, |w| w.0);
                        let codec = edge_codec(dataflow, edge_index)?;
                        let key = part.key(edge_index, i, j);
                        let sender = part.exchange.sender(key, peer, codec, cancel.clone())?;
                        if let Some(plan) = plans[edge.from.index()][i as usize].as_mut() {
                            plan.gates.push(sender.gate());
                        }
                        channels.push(Box::new(sender));
                        None
                    }
                    (false, true, Some(part)) => {
                        let peer = part.worker_of(edge.from, i).map_or(u32::MAX, |w| w.0);
                        let codec = edge_codec(dataflow, edge_index)?;
                        let key = part.key(edge_index, i, j);
                        let (receiver, credits) = part.exchange.receiver(key, peer, codec)?;
                        Some(TaskInput {
                            receiver,
                            credits: Some(credits),
                        })
                    }
                };
                if let (Some(input), Some(plan)) =
                    (input, plans[edge.to.index()][j as usize].as_mut())
                {
                    plan.inputs.push(input);
                }
            }
            if let Some(plan) = plans[edge.from.index()][i as usize].as_mut() {
                plan.outputs.push(EdgeWiring {
                    partitioning: edge.partitioning,
                    channels,
                    key_hasher: dataflow.key_hasher(edge_index),
                    max_parallelism: graph.max_parallelism,
                });
            }
        }
    }
    Ok((plans.into_iter().flatten().flatten().collect(), controls))
}

fn edge_codec(
    dataflow: &Dataflow,
    edge: usize,
) -> Result<weir_operators::BatchCodec, RuntimeError> {
    dataflow
        .codec(edge)
        .ok_or_else(|| RuntimeError::IncompatibleGraph {
            job: dataflow.graph().name.clone(),
            problem: format!("edge {edge} has no record codec, so it cannot cross workers"),
        })
}
