//! [`JobBuilder`] and [`Stream`]: how a user describes a job.
//!
//! Streams are handles into a graph under construction. Each
//! transformation adds a vertex and returns the stream it produces;
//! [`JobBuilder::build`] checks the graph and returns a [`Dataflow`].

use crate::basic::{Filter, FlatMap, Map, TimestampFn, WatermarkAssigner};
use crate::data::{BatchCodec, Data, Key, Timestamp};
use crate::error::BuildError;
use crate::keyed::KeyedStream;
use crate::output::{ErasedKeyHasher, Output};
use crate::record_task::{RecordOperator, RecordTask};
use crate::sinks::{
    BlackholeSink, FileSink, Sink, SinkTask, StdoutSink, TwoPhaseSink, TwoPhaseTask,
};
use crate::sources::{Source, SourceRunner};
use crate::task::{Dataflow, OperatorTask, TaskInfo, VertexFactory};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt::Display;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use weir_protocol::key_group::DEFAULT_MAX_PARALLELISM;
use weir_protocol::{Edge, JobGraph, Partitioning, Vertex, VertexId, VertexKind};

struct PendingVertex {
    name: String,
    uid: Option<String>,
    kind: VertexKind,
    parallelism: u32,
    keyed: bool,
    factory: VertexFactory,
}

struct PendingEdge {
    from: VertexId,
    to: VertexId,
    /// `None`: forward when parallelism matches, rebalance otherwise.
    partitioning: Option<Partitioning>,
    key_hasher: Option<ErasedKeyHasher>,
    codec: Option<BatchCodec>,
}

pub(crate) struct GraphState {
    name: String,
    default_parallelism: u32,
    max_parallelism: u32,
    vertices: Vec<PendingVertex>,
    edges: Vec<PendingEdge>,
}

/// How a new vertex connects to the vertices producing its input.
pub(crate) struct Connection {
    pub(crate) partitioning: Option<Partitioning>,
    pub(crate) key_hasher: Option<ErasedKeyHasher>,
    /// The codec of the records crossing the connection.
    pub(crate) codec: Option<BatchCodec>,
}

/// Describes a job: add sources, transform their streams, end them in sinks.
///
/// ```
/// use weir_operators::prelude::*;
///
/// let job = JobBuilder::new("doubled").with_parallelism(2);
/// job.source(Generator::new(1_000, 10, 7))
///     .map(|e| e.value * 2)
///     .discard();
/// let dataflow = job.build().unwrap();
/// assert_eq!(dataflow.graph().vertices.len(), 3);
/// ```
pub struct JobBuilder {
    graph: Rc<RefCell<GraphState>>,
}

impl JobBuilder {
    /// A new, empty job; operators default to parallelism 1.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            graph: Rc::new(RefCell::new(GraphState {
                name: name.into(),
                default_parallelism: 1,
                max_parallelism: DEFAULT_MAX_PARALLELISM,
                vertices: Vec::new(),
                edges: Vec::new(),
            })),
        }
    }

    /// Parallelism of operators added from now on that do not set their own.
    pub fn with_parallelism(self, parallelism: u32) -> Self {
        self.graph.borrow_mut().default_parallelism = parallelism;
        self
    }

    /// Number of key groups (the highest parallelism keyed state can be
    /// rescaled to). Default 128.
    pub fn with_max_parallelism(self, max_parallelism: u32) -> Self {
        self.graph.borrow_mut().max_parallelism = max_parallelism;
        self
    }

    /// Adds a source; its subtasks each produce part of the input.
    pub fn source<S: Source>(&self, source: S) -> Stream<S::Out> {
        let timestamps = source.event_time();
        let factory = VertexFactory::Source(Arc::new(move |info: &TaskInfo, wiring| {
            let out = Output::new(&info.operator, wiring)?;
            SourceRunner::boxed(info, source.clone(), out)
        }));
        let id = add_vertex(
            &self.graph,
            S::NAME,
            VertexKind::Source,
            false,
            factory,
            &[],
            None,
        );
        Stream::new(self.graph.clone(), vec![id], timestamps)
    }

    /// Checks the graph and returns the runnable job.
    pub fn build(self) -> Result<Dataflow, BuildError> {
        let state = self.graph.borrow();
        let mut graph = JobGraph::new(state.name.clone());
        graph.max_parallelism = state.max_parallelism;
        let mut taken = HashSet::new();
        for (i, v) in state.vertices.iter().enumerate() {
            graph.vertices.push(Vertex {
                id: VertexId(i as u32),
                name: unique_name(&v.name, &mut taken),
                uid: v.uid.clone(),
                kind: v.kind,
                parallelism: v.parallelism,
                keyed: v.keyed,
            });
        }
        // State is matched to operators by uid (or derived name): two
        // operators with one id would restore each other's state.
        let mut ids = HashSet::new();
        for vertex in &graph.vertices {
            if !ids.insert(vertex.state_id()) {
                return Err(BuildError::Operator {
                    operator: vertex.name.clone(),
                    problem: format!(
                        "its uid '{}' is also another operator's uid or name",
                        vertex.state_id()
                    ),
                });
            }
        }
        let mut key_hashers = Vec::with_capacity(state.edges.len());
        let mut codecs = Vec::with_capacity(state.edges.len());
        for e in &state.edges {
            let partitioning = e.partitioning.unwrap_or_else(|| {
                let (from, to) = (
                    &state.vertices[e.from.index()],
                    &state.vertices[e.to.index()],
                );
                if from.parallelism == to.parallelism {
                    Partitioning::Forward
                } else {
                    Partitioning::Rebalance
                }
            });
            graph.edges.push(Edge {
                from: e.from,
                to: e.to,
                partitioning,
            });
            key_hashers.push(e.key_hasher.clone());
            codecs.push(e.codec);
        }
        graph.validate()?;
        let factories = state.vertices.iter().map(|v| v.factory.clone()).collect();
        Ok(Dataflow::new(graph, factories, key_hashers, codecs))
    }
}

fn unique_name(base: &str, taken: &mut HashSet<String>) -> String {
    let mut name = base.to_owned();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

pub(crate) fn add_vertex(
    graph: &Rc<RefCell<GraphState>>,
    name: &str,
    kind: VertexKind,
    keyed: bool,
    factory: VertexFactory,
    inputs: &[VertexId],
    connection: Option<Connection>,
) -> VertexId {
    let mut state = graph.borrow_mut();
    let id = VertexId(state.vertices.len() as u32);
    let parallelism = state.default_parallelism;
    state.vertices.push(PendingVertex {
        name: name.to_owned(),
        uid: None,
        kind,
        parallelism,
        keyed,
        factory,
    });
    let connection = connection.unwrap_or(Connection {
        partitioning: None,
        key_hasher: None,
        codec: None,
    });
    for &from in inputs {
        state.edges.push(PendingEdge {
            from,
            to: id,
            partitioning: connection.partitioning,
            key_hasher: connection.key_hasher.clone(),
            codec: connection.codec,
        });
    }
    id
}

/// A stream of records of type `T`.
///
/// Transformations consume the stream and return the next one; `clone` a
/// stream to feed it into several operators.
pub struct Stream<T> {
    graph: Rc<RefCell<GraphState>>,
    /// The vertices whose output this stream is (several after a `union`).
    producers: Vec<VertexId>,
    /// The next operator's connection, when set by `rebalance`/`broadcast`.
    partitioning: Option<Partitioning>,
    /// How to read a record's event time, once timestamps are assigned.
    pub(crate) timestamps: Option<TimestampFn<T>>,
    /// How the next operator's connection sends records between workers.
    pub(crate) codec: BatchCodec,
    _records: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Self {
            graph: self.graph.clone(),
            producers: self.producers.clone(),
            partitioning: self.partitioning,
            timestamps: self.timestamps.clone(),
            codec: self.codec,
            _records: PhantomData,
        }
    }
}

impl<T: Data> Stream<T> {
    pub(crate) fn new(
        graph: Rc<RefCell<GraphState>>,
        producers: Vec<VertexId>,
        timestamps: Option<TimestampFn<T>>,
    ) -> Self {
        Self {
            graph,
            producers,
            partitioning: None,
            timestamps,
            codec: BatchCodec::of::<T>(),
            _records: PhantomData,
        }
    }

    pub(crate) fn graph(&self) -> &Rc<RefCell<GraphState>> {
        &self.graph
    }

    pub(crate) fn producers(&self) -> &[VertexId] {
        &self.producers
    }

    /// Adds a record-at-a-time operator reading this stream.
    fn then<O: RecordOperator<In = T>>(
        self,
        name: &str,
        make: impl Fn() -> O + Send + Sync + 'static,
        timestamps: Option<TimestampFn<O::Out>>,
    ) -> Stream<O::Out> {
        let factory = VertexFactory::Operator(Arc::new(move |info: &TaskInfo, wiring| {
            let out = Output::new(&info.operator, wiring)?;
            Ok(RecordTask::boxed(&info.operator, make(), out))
        }));
        let connection = Connection {
            partitioning: self.partitioning,
            key_hasher: None,
            codec: Some(self.codec),
        };
        let id = add_vertex(
            &self.graph,
            name,
            VertexKind::Operator,
            false,
            factory,
            &self.producers,
            Some(connection),
        );
        Stream::new(self.graph, vec![id], timestamps)
    }

    /// Transforms each record.
    ///
    /// ```
    /// # use weir_operators::prelude::*;
    /// # let job = JobBuilder::new("doc");
    /// let values = job.source(Generator::new(10, 2, 1)).map(|e| e.value);
    /// # values.discard();
    /// ```
    pub fn map<U: Data>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Stream<U> {
        let f: Arc<dyn Fn(T) -> U + Send + Sync> = Arc::new(f);
        self.then("map", move || Map { f: f.clone() }, None)
    }

    /// Keeps the records for which `f` is true. Timestamps stay assigned.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<T> {
        let f: Arc<dyn Fn(&T) -> bool + Send + Sync> = Arc::new(f);
        let timestamps = self.timestamps.clone();
        self.then("filter", move || Filter { f: f.clone() }, timestamps)
    }

    /// Turns each record into zero or more records.
    ///
    /// ```
    /// # use weir_operators::prelude::*;
    /// # let job = JobBuilder::new("doc");
    /// # let lines = job.source(Generator::new(10, 2, 1)).map(|e| format!("a b {}", e.key));
    /// let words = lines.flat_map(|line: String| {
    ///     line.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
    /// });
    /// # words.discard();
    /// ```
    pub fn flat_map<U: Data, I: IntoIterator<Item = U> + 'static>(
        self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Stream<U> {
        let f: Arc<dyn Fn(T) -> I + Send + Sync> = Arc::new(f);
        self.then(
            "flat_map",
            move || FlatMap {
                f: f.clone(),
                _out: PhantomData,
            },
            None,
        )
    }

    /// Partitions the stream by key: records with equal keys go to the same
    /// subtask of the next operator, which may keep state per key.
    pub fn key_by<K: Key>(
        self,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> KeyedStream<K, T> {
        KeyedStream::new(self, Arc::new(key))
    }

    /// Merges this stream with others of the same type. The result keeps
    /// this stream's timestamps.
    pub fn union(mut self, others: impl IntoIterator<Item = Stream<T>>) -> Stream<T> {
        for other in others {
            self.producers.extend(other.producers);
        }
        self
    }

    /// Sends this stream's records between workers through bitcode's
    /// derived `Encode` and `Decode` rather than through serde: about 3×
    /// cheaper to encode and decode ([`BatchCodec::derived`]), for record
    /// types that derive both besides serde's traits.
    pub fn bitcode_codec(mut self) -> Stream<T>
    where
        T: bitcode::Encode + bitcode::DecodeOwned,
    {
        self.codec = BatchCodec::derived::<T>();
        self
    }

    /// Sends batches round-robin to the next operator's subtasks.
    pub fn rebalance(mut self) -> Stream<T> {
        self.partitioning = Some(Partitioning::Rebalance);
        self
    }

    /// Sends every record to every subtask of the next operator.
    pub fn broadcast(mut self) -> Stream<T> {
        self.partitioning = Some(Partitioning::Broadcast);
        self
    }

    /// Reads each record's event time with `timestamp` and generates
    /// watermarks that allow records up to `max_out_of_orderness` late
    /// relative to the largest timestamp seen so far.
    pub fn assign_timestamps(
        self,
        timestamp: impl Fn(&T) -> Timestamp + Send + Sync + 'static,
        max_out_of_orderness: Duration,
    ) -> Stream<T> {
        let timestamp: TimestampFn<T> = Arc::new(timestamp);
        let bound = Timestamp::try_from(max_out_of_orderness.as_millis()).unwrap_or(Timestamp::MAX);
        let extractor = timestamp.clone();
        self.then(
            "watermarks",
            move || WatermarkAssigner {
                timestamp: timestamp.clone(),
                max_out_of_orderness: bound,
                max_seen: Timestamp::MIN,
                emitted: Timestamp::MIN,
            },
            Some(extractor),
        )
    }

    /// Reads each record's event time with `timestamp`, keeping the
    /// watermarks that come from upstream: after a `map` of a source that
    /// has event time (a Kafka source's per-partition watermarks), to say
    /// where the time is in the new type. [`assign_timestamps`](Self::assign_timestamps)
    /// generates new watermarks instead.
    pub fn with_timestamps(
        mut self,
        timestamp: impl Fn(&T) -> Timestamp + Send + Sync + 'static,
    ) -> Stream<T> {
        self.timestamps = Some(Arc::new(timestamp));
        self
    }

    /// Renames the operator that produces this stream.
    pub fn named(self, name: &str) -> Self {
        {
            let mut state = self.graph.borrow_mut();
            for id in &self.producers {
                state.vertices[id.index()].name = name.to_owned();
            }
        }
        self
    }

    /// Gives the operator that produces this stream a stable id: its
    /// checkpointed state is matched to it by this id when a savepoint or
    /// checkpoint is restored, also into a changed job. Without one, the
    /// operator's name derived from its place in the graph (`map-2`) is
    /// used, which changes when operators are added before it.
    pub fn uid(self, uid: &str) -> Self {
        {
            let mut state = self.graph.borrow_mut();
            for id in &self.producers {
                state.vertices[id.index()].uid = Some(uid.to_owned());
            }
        }
        self
    }

    /// Sets the parallelism of the operator that produces this stream.
    pub fn with_parallelism(self, parallelism: u32) -> Self {
        {
            let mut state = self.graph.borrow_mut();
            for id in &self.producers {
                state.vertices[id.index()].parallelism = parallelism;
            }
        }
        self
    }

    /// Ends the stream in `sink` (at least once).
    pub fn sink<S: Sink<T>>(self, sink: S) -> SinkVertex {
        let factory = VertexFactory::Operator(Arc::new(move |info: &TaskInfo, _wiring| {
            SinkTask::boxed(info, sink.clone()).map(|t| t as Box<dyn OperatorTask>)
        }));
        self.end_in(S::NAME, factory)
    }

    /// Ends the stream in a two-phase-commit `sink`: exactly once when the
    /// job checkpoints (its output shows when the checkpoint completes).
    pub fn two_phase_sink<S: TwoPhaseSink<T>>(self, sink: S) -> SinkVertex {
        let factory = VertexFactory::Operator(Arc::new(move |info: &TaskInfo, _wiring| {
            TwoPhaseTask::boxed(info, sink.clone()).map(|t| t as Box<dyn OperatorTask>)
        }));
        self.end_in(S::NAME, factory)
    }

    fn end_in(self, name: &str, factory: VertexFactory) -> SinkVertex {
        let connection = Connection {
            partitioning: self.partitioning,
            key_hasher: None,
            codec: Some(self.codec),
        };
        let id = add_vertex(
            &self.graph,
            name,
            VertexKind::Sink,
            false,
            factory,
            &self.producers,
            Some(connection),
        );
        SinkVertex {
            graph: self.graph,
            id,
        }
    }

    /// Drops every record (counting them); for benchmarks.
    pub fn discard(self) -> SinkVertex {
        self.sink(BlackholeSink)
    }
}

impl<T: Data + Display> Stream<T> {
    /// Prints each record on its own line to standard output.
    pub fn print(self) -> SinkVertex {
        self.sink(StdoutSink)
    }

    /// Writes each record on its own line into files under `dir`, one file
    /// per sink subtask.
    pub fn write_to_dir(self, dir: impl Into<PathBuf>) -> SinkVertex {
        self.two_phase_sink(FileSink::new(dir))
    }
}

/// A sink added to a job: name it, or give it a stable uid (its pending
/// transactions are state, matched by uid on restore like any operator's).
pub struct SinkVertex {
    graph: Rc<RefCell<GraphState>>,
    id: VertexId,
}

impl SinkVertex {
    /// The sink's vertex id.
    pub fn id(&self) -> VertexId {
        self.id
    }

    /// Renames the sink.
    pub fn named(self, name: &str) -> Self {
        self.graph.borrow_mut().vertices[self.id.index()].name = name.to_owned();
        self
    }

    /// Gives the sink a stable id (see [`Stream::uid`]).
    pub fn uid(self, uid: &str) -> Self {
        self.graph.borrow_mut().vertices[self.id.index()].uid = Some(uid.to_owned());
        self
    }
}
