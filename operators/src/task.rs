//! The seam between the operator API and the runtime: type-erased tasks the
//! runtime drives, the factories that create them, and [`Dataflow`], the
//! runnable form of a job.

use crate::data::{Batch, Timestamp};
use crate::error::OperatorError;
use crate::output::{ErasedKeyHasher, OutputWiring};
use std::sync::Arc;
use std::time::Duration;
use weir_protocol::{JobGraph, KeyGroupRange, VertexId};
use weir_state::{StateBackend, StateScope};

/// Who a subtask is, and what it may use.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    /// Name of the job.
    pub job: String,
    /// The vertex this subtask belongs to.
    pub vertex: VertexId,
    /// Name of the vertex.
    pub operator: String,
    /// Index of this subtask, `0..parallelism`.
    pub subtask: u32,
    /// Number of subtasks of the vertex.
    pub parallelism: u32,
    /// Number of key groups of the job.
    pub max_parallelism: u32,
    /// Where keyed state lives.
    pub state_backend: Arc<dyn StateBackend>,
}

impl TaskInfo {
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
    /// Nothing to produce now (e.g. rate-limited); poll again after this long at most.
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
    /// Ends the stream on every output.
    fn finish(&mut self) -> Result<(), OperatorError>;
}

/// A subtask with inputs as the runtime drives it.
///
/// The runtime merges the watermarks of all input channels (the minimum)
/// and calls [`watermark`](Self::watermark) when it advances. When every
/// input has ended it calls `watermark(MAX_WATERMARK)` and then
/// [`finish`](Self::finish).
pub trait OperatorTask: Send {
    /// Processes a batch of input records.
    fn process(&mut self, batch: Batch) -> Result<(), OperatorError>;
    /// The combined input watermark advanced to `watermark`.
    fn watermark(&mut self, watermark: Timestamp) -> Result<(), OperatorError>;
    /// The wall clock reached `now` (ms); fire due processing-time timers.
    fn processing_time(&mut self, now: Timestamp) -> Result<(), OperatorError>;
    /// When the next processing-time timer is due, if any.
    fn next_processing_deadline(&self) -> Option<Timestamp>;
    /// Sends buffered records downstream.
    fn flush(&mut self) -> Result<(), OperatorError>;
    /// All inputs ended: emit final results and end the outputs.
    fn finish(&mut self) -> Result<(), OperatorError>;
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
    ) -> Self {
        Self {
            graph,
            factories,
            key_hashers,
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
}
