//! The seam between the operator API and the runtime: type-erased tasks the
//! runtime drives, the factories that create them, and [`Dataflow`], the
//! runnable form of a job.

use crate::data::BatchCodec;
use crate::data::{Batch, Timestamp};
use crate::error::OperatorError;
use crate::output::{ErasedKeyHasher, OutputWiring};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use weir_protocol::{Epoch, JobGraph, KeyGroup, KeyGroupRange, SubtaskId, VertexId};
use weir_state::{NativeFiles, StateBackend, StateScope, StoreSnapshot};

/// The state a subtask resumes from after a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoredTask {
    /// The checkpoint restored from.
    pub epoch: Epoch,
    /// Encoded keyed state of the key groups this subtask now owns (see
    /// [`KeyedStateStore::restore_key_group`](weir_state::KeyedStateStore::restore_key_group)).
    pub key_groups: Vec<(KeyGroup, Vec<u8>)>,
    /// Snapshots in a backend's own format holding key groups this subtask
    /// now owns (see [`KeyedStateStore::restore_native`](weir_state::KeyedStateStore::restore_native)).
    pub native: Vec<NativeFiles>,
    /// The operator state of every subtask of this operator when the
    /// checkpoint was taken, by old subtask index (its length is the old
    /// parallelism). A subtask at unchanged parallelism takes its own entry;
    /// after a rescale, each decides from all of them.
    pub operator_states: Vec<Option<String>>,
}

/// The operator state a subtask restores from: what every subtask of the
/// operator saved in checkpoint [`epoch`](Self::epoch), decoded. At the
/// parallelism of the checkpoint a subtask takes its [`own`](Self::own)
/// entry; after a rescale, each decides from [`all`](Self::all) of them
/// (a Kafka source takes the partitions it now owns from every entry).
#[derive(Debug, Clone)]
pub struct Restored<S> {
    /// The checkpoint restored from.
    pub epoch: Epoch,
    /// The state of each old subtask (its length is the old parallelism);
    /// `None` for one that saved nothing.
    pub states: Vec<Option<S>>,
    subtask: u32,
    parallelism: u32,
}

impl<S> Restored<S> {
    /// The parallelism the checkpoint was taken at.
    pub fn old_parallelism(&self) -> u32 {
        self.states.len() as u32
    }

    /// Whether the operator now runs at another parallelism.
    pub fn rescaled(&self) -> bool {
        self.old_parallelism() != self.parallelism
    }

    /// This subtask's own state, when the parallelism is unchanged.
    pub fn own(&self) -> Option<&S> {
        if self.rescaled() {
            return None;
        }
        self.states.get(self.subtask as usize)?.as_ref()
    }

    /// Takes this subtask's own state, when the parallelism is unchanged.
    pub fn into_own(mut self) -> Option<S> {
        if self.rescaled() {
            return None;
        }
        self.states.get_mut(self.subtask as usize)?.take()
    }

    /// Every old subtask's state, with its old index.
    pub fn all(&self) -> impl Iterator<Item = (u32, &S)> {
        self.states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as u32, s.as_ref()?)))
    }

    /// The states of the old subtasks this subtask takes over: its own at
    /// the same parallelism; after a rescale, old subtask `i` goes to new
    /// subtask `i % parallelism` (for state that moves as a whole, such as
    /// a sink's pending transactions).
    pub fn inherited(&self) -> impl Iterator<Item = (u32, &S)> {
        let (subtask, parallelism) = (self.subtask, self.parallelism.max(1));
        self.all()
            .filter(move |(old, _)| old % parallelism == subtask)
    }

    /// The error for an operator that cannot resume at another parallelism.
    pub fn cannot_rescale(&self, connector: &str) -> OperatorError {
        OperatorError::user(format!(
            "{connector} cannot be restored at parallelism {} from a checkpoint taken at parallelism {}",
            self.parallelism,
            self.old_parallelism()
        ))
    }
}

/// What a subtask captured at a barrier: taken synchronously, written out
/// afterwards while processing continues.
#[derive(Debug, Default)]
pub struct TaskSnapshot {
    /// Keyed state, frozen copy-on-write.
    pub keyed: Option<StoreSnapshot>,
    /// Operator state that is not keyed (positions, pending transactions), as JSON.
    pub operator_state: Option<String>,
}

/// Who a subtask is, and what it may use.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    /// Name of the job.
    pub job: String,
    /// The vertex this subtask belongs to.
    pub vertex: VertexId,
    /// Name of the vertex.
    pub operator: String,
    /// The id the vertex's state is saved under: its uid, or its name
    /// without one. Stable across versions of a job that keep the uid, so
    /// a connector names what it leaves outside (transactional ids, marker
    /// rows) after it.
    pub state_id: String,
    /// Index of this subtask, `0..parallelism`.
    pub subtask: u32,
    /// Number of subtasks of the vertex.
    pub parallelism: u32,
    /// Number of key groups of the job.
    pub max_parallelism: u32,
    /// Where keyed state lives.
    pub state_backend: Arc<dyn StateBackend>,
    /// Whether checkpoints are taken (transactional sinks commit on them).
    pub checkpointing: bool,
    /// Identifies this deployment of the job; unique across runs and restarts.
    pub attempt: String,
    /// The state to resume from, when the job was restored.
    pub restored: Option<Arc<RestoredTask>>,
    /// This subtask restarted with its pipelined region alone while the
    /// job's other regions kept running (regional failover): a clean-up at
    /// start must touch only this subtask's own share (its own hidden
    /// files, its own transactional ids), never the other subtasks' output
    /// in flight.
    pub others_running: bool,
    /// Wakes this subtask when it is a source waiting after
    /// [`SourcePoll::Idle`].
    pub waker: SourceWaker,
}

/// Wakes a source subtask that waits after [`SourcePoll::Idle`], from any
/// thread: a client library's callback when records arrive, so that the
/// source neither polls on a timer nor blocks its barriers in a read.
/// Waking a source that is not waiting makes its next wait return at once.
#[derive(Clone)]
pub struct SourceWaker(Arc<dyn Fn() + Send + Sync>);

impl SourceWaker {
    /// A waker that calls `wake`.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Arc::new(wake))
    }

    /// A waker that does nothing (for a task that is not a source).
    pub fn none() -> Self {
        Self::new(|| {})
    }

    /// Wakes the source.
    pub fn wake(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for SourceWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceWaker")
    }
}

impl TaskInfo {
    /// This subtask's id.
    pub fn id(&self) -> SubtaskId {
        SubtaskId {
            vertex: self.vertex,
            index: self.subtask,
        }
    }

    /// The operator states of the restored checkpoint decoded as `S` (by
    /// old subtask, see [`Restored`]); `None` when the job was not restored.
    /// `connector` names the operator kind in the error ("kafka source").
    pub fn restored_states<S: DeserializeOwned>(
        &self,
        connector: &str,
    ) -> Result<Option<Restored<S>>, OperatorError> {
        let Some(restored) = &self.restored else {
            return Ok(None);
        };
        let mut states = Vec::with_capacity(restored.operator_states.len());
        for (old, json) in restored.operator_states.iter().enumerate() {
            let state = match json {
                None => None,
                Some(json) => Some(serde_json::from_str(json).map_err(|e| {
                    OperatorError::user_caused_by(
                        format!(
                            "{connector} '{}': unreadable state of old subtask {old} in checkpoint {}",
                            self.operator, restored.epoch.0
                        ),
                        e,
                    )
                })?),
            };
            states.push(state);
        }
        Ok(Some(Restored {
            epoch: restored.epoch,
            states,
            subtask: self.subtask,
            parallelism: self.parallelism,
        }))
    }

    /// The key groups this subtask owns.
    pub fn key_groups(&self) -> KeyGroupRange {
        KeyGroupRange::for_subtask(self.subtask, self.parallelism, self.max_parallelism)
    }

    /// The scope of this subtask's keyed state.
    pub fn state_scope(&self) -> StateScope {
        StateScope {
            job: self.job.clone(),
            operator: self.operator.clone(),
            subtask: self.subtask,
            key_groups: self.key_groups(),
            max_parallelism: self.max_parallelism,
        }
    }
}

/// What a source did when polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePoll {
    /// It produced records (or may produce more at once); poll again.
    Ready,
    /// Nothing to produce now (e.g. rate-limited, or no records yet): poll
    /// again after this long at most, or once [`TaskInfo::waker`] is woken.
    Idle(Duration),
    /// It is exhausted; the stream ends.
    Finished,
}

/// A source subtask as the runtime drives it.
pub trait SourceTask: Send {
    /// Produces up to one batch of records.
    fn poll(&mut self) -> Result<SourcePoll, OperatorError>;
    /// Sends buffered records downstream.
    fn flush(&mut self) -> Result<(), OperatorError>;
    /// Records the position reached and emits `Barrier(epoch)` after the
    /// records before it.
    fn checkpoint(&mut self, epoch: Epoch) -> Result<TaskSnapshot, OperatorError>;
    /// The input is exhausted: tells every output that no records follow.
    fn end_of_data(&mut self) -> Result<(), OperatorError>;
    /// Checkpoint `epoch` is complete.
    fn checkpoint_complete(&mut self, _epoch: Epoch) -> Result<(), OperatorError> {
        Ok(())
    }
    /// Ends the stream on every output.
    fn close(&mut self) -> Result<(), OperatorError>;
    /// The next checkpoint is a stop-with-savepoint's: its barrier goes
    /// out as a stop barrier, which ends every output without ending its
    /// data (no final watermark, no final results).
    fn suspend(&mut self) -> Result<(), OperatorError>;
}

/// A subtask with inputs as the runtime drives it.
///
/// The runtime merges the watermarks of all input channels (the minimum)
/// and calls [`watermark`](Self::watermark) when it advances; it aligns
/// barriers and calls [`checkpoint`](Self::checkpoint) once every input
/// delivered one. When every input reached end of data it calls
/// `watermark(MAX_WATERMARK)` and then [`finish`](Self::finish); when every
/// input has closed, [`close`](Self::close).
pub trait OperatorTask: Send {
    /// Processes a batch of input records.
    fn process(&mut self, batch: Batch) -> Result<(), OperatorError>;
    /// The combined input watermark advanced to `watermark`.
    fn watermark(&mut self, watermark: Timestamp) -> Result<(), OperatorError>;
    /// Every input that has not ended is idle: tell the outputs (see
    /// [`Output::mark_idle`](crate::output::Output::mark_idle)).
    fn inputs_idle(&mut self) -> Result<(), OperatorError>;
    /// The wall clock reached `now` (ms); fire due processing-time timers.
    fn processing_time(&mut self, now: Timestamp) -> Result<(), OperatorError>;
    /// When the next processing-time timer is due, if any.
    fn next_processing_deadline(&self) -> Option<Timestamp>;
    /// Sends buffered records downstream.
    fn flush(&mut self) -> Result<(), OperatorError>;
    /// Every input delivered `Barrier(epoch)`: take the synchronous part of
    /// the snapshot, then forward the barrier.
    fn checkpoint(&mut self, epoch: Epoch) -> Result<TaskSnapshot, OperatorError>;
    /// Checkpoint `epoch` is complete: commit what it covers.
    fn checkpoint_complete(&mut self, _epoch: Epoch) -> Result<(), OperatorError> {
        Ok(())
    }
    /// All inputs reached end of data: emit final results and tell the
    /// outputs that no records follow.
    fn finish(&mut self) -> Result<(), OperatorError>;
    /// All inputs closed: close the outputs.
    fn close(&mut self) -> Result<(), OperatorError>;
    /// Every input delivered a stop-with-savepoint's barrier: the
    /// checkpoint that follows sends a stop barrier on (no final results),
    /// and a sink drops anything it holds beyond what that checkpoint
    /// commits.
    fn suspend(&mut self) -> Result<(), OperatorError>;
    /// Whether the task holds output that a checkpoint still has to commit;
    /// the runtime keeps it alive until it does not.
    fn has_pending_commits(&self) -> bool {
        false
    }
    /// The task's keyed state, for tools that decode checkpoints with the
    /// operator's own (typed) state declarations.
    fn keyed_state(&mut self) -> Option<&mut weir_state::KeyedStateStore> {
        None
    }
}

/// Creates one source subtask.
pub type SourceFactory = Arc<
    dyn Fn(&TaskInfo, OutputWiring) -> Result<Box<dyn SourceTask>, OperatorError> + Send + Sync,
>;

/// Creates one operator or sink subtask.
pub type OperatorFactory = Arc<
    dyn Fn(&TaskInfo, OutputWiring) -> Result<Box<dyn OperatorTask>, OperatorError> + Send + Sync,
>;

/// How to create the subtasks of one vertex.
#[derive(Clone)]
pub enum VertexFactory {
    /// A source vertex.
    Source(SourceFactory),
    /// An operator or sink vertex.
    Operator(OperatorFactory),
}

/// A job ready to run: its validated [`JobGraph`] plus the code of every
/// operator.
///
/// Every process of a job builds the same `Dataflow` from the job's
/// registered builder and parameters; only the graph travels.
#[derive(Clone)]
pub struct Dataflow {
    graph: JobGraph,
    factories: Vec<VertexFactory>,
    key_hashers: Vec<Option<ErasedKeyHasher>>,
    codecs: Vec<Option<BatchCodec>>,
}

impl std::fmt::Debug for Dataflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataflow")
            .field("graph", &self.graph)
            .finish_non_exhaustive()
    }
}

impl Dataflow {
    pub(crate) fn new(
        graph: JobGraph,
        factories: Vec<VertexFactory>,
        key_hashers: Vec<Option<ErasedKeyHasher>>,
        codecs: Vec<Option<BatchCodec>>,
    ) -> Self {
        Self {
            graph,
            factories,
            key_hashers,
            codecs,
        }
    }

    /// The logical graph.
    pub fn graph(&self) -> &JobGraph {
        &self.graph
    }

    /// The factory of vertex `id`.
    pub fn factory(&self, id: VertexId) -> &VertexFactory {
        &self.factories[id.index()]
    }

    /// The key hasher of edge `index` (in [`JobGraph::edges`] order), for hash edges.
    pub fn key_hasher(&self, edge_index: usize) -> Option<ErasedKeyHasher> {
        self.key_hashers.get(edge_index).cloned().flatten()
    }

    /// The codec of the records on edge `index`, for edges that cross
    /// processes.
    pub fn codec(&self, edge_index: usize) -> Option<BatchCodec> {
        self.codecs.get(edge_index).copied().flatten()
    }
}
