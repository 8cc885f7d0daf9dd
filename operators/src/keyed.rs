//! [`KeyedStream`]: a stream partitioned by key, the input of stateful
//! operators.

use crate::builder::{add_vertex, Connection, Stream};
use crate::data::{Data, Key};
use crate::output::{ErasedKeyHasher, KeyHasher, Output};
use crate::process::{KeyFn, KeyedProcessFunction, KeyedProcessOperator};
use crate::task::{OperatorTask, TaskInfo, VertexFactory};
use crate::window::{AggregateFunction, WindowAssigner, WindowOperator, Windowed};
use std::sync::Arc;
use weir_protocol::key_group::stable_hash;
use weir_protocol::{Partitioning, VertexKind};

/// A stream whose records are routed by key, so that each key is handled
/// by exactly one subtask of the next operator.
pub struct KeyedStream<K, T> {
    stream: Stream<T>,
    key: KeyFn<K, T>,
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    pub(crate) fn new(stream: Stream<T>, key: KeyFn<K, T>) -> Self {
        Self { stream, key }
    }

    /// Processes records one key at a time with keyed state and timers.
    ///
    /// ```
    /// use weir_operators::prelude::*;
    ///
    /// /// Counts records per key and emits the running count.
    /// #[derive(Clone, Default)]
    /// struct Count {
    ///     seen: Option<ValueState<u64, u64>>,
    /// }
    ///
    /// impl KeyedProcessFunction for Count {
    ///     type Key = u64;
    ///     type In = GeneratedEvent;
    ///     type Out = (u64, u64);
    ///
    ///     fn open(&mut self, state: &mut StateRegistry<'_, u64>) -> Result<(), OperatorError> {
    ///         self.seen = Some(state.value("seen")?);
    ///         Ok(())
    ///     }
    ///
    ///     fn process(
    ///         &mut self,
    ///         _event: GeneratedEvent,
    ///         ctx: &mut KeyedContext<'_, u64, (u64, u64)>,
    ///     ) -> Result<(), OperatorError> {
    ///         let seen = self.seen.expect("opened");
    ///         let n = seen.get(ctx)?.unwrap_or(0) + 1;
    ///         seen.set(ctx, n)?;
    ///         let key = *ctx.key();
    ///         ctx.emit((key, n))
    ///     }
    /// }
    ///
    /// let job = JobBuilder::new("count");
    /// job.source(Generator::new(100, 5, 1))
    ///     .key_by(|e| e.key)
    ///     .process(Count::default())
    ///     .discard();
    /// job.build().unwrap();
    /// ```
    pub fn process<P>(self, function: P) -> Stream<P::Out>
    where
        P: KeyedProcessFunction<Key = K, In = T>,
    {
        self.process_named("process", function, None)
    }

    /// Groups records into event-time windows per key; finish with
    /// [`WindowedStream::aggregate`].
    pub fn window<W: WindowAssigner>(self, assigner: W) -> WindowedStream<K, T, W> {
        WindowedStream {
            keyed: self,
            assigner,
        }
    }

    fn process_named<P>(
        self,
        name: &str,
        function: P,
        out_timestamps: Option<crate::basic::TimestampFn<P::Out>>,
    ) -> Stream<P::Out>
    where
        P: KeyedProcessFunction<Key = K, In = T>,
    {
        let key = self.key.clone();
        let timestamps = self.stream.timestamps.clone();
        let factory = VertexFactory::Operator(Arc::new(move |info: &TaskInfo, wiring| {
            let out = Output::new(&info.operator, wiring)?;
            let operator = KeyedProcessOperator::open(
                info,
                function.clone(),
                key.clone(),
                timestamps.clone(),
                out,
            )?;
            Ok(Box::new(operator) as Box<dyn OperatorTask>)
        }));
        let key = self.key;
        let hasher: KeyHasher<T> = Arc::new(move |record: &T| stable_hash(&key(record)));
        let erased: ErasedKeyHasher = Arc::new(hasher);
        let connection = Connection {
            partitioning: Some(Partitioning::Hash),
            key_hasher: Some(erased),
            codec: Some(self.stream.codec),
        };
        let graph = self.stream.graph().clone();
        let id = add_vertex(
            &graph,
            name,
            VertexKind::Operator,
            true,
            factory,
            self.stream.producers(),
            Some(connection),
        );
        Stream::new(graph, vec![id], out_timestamps)
    }
}

/// A keyed stream cut into windows, waiting for its aggregate.
pub struct WindowedStream<K, T, W> {
    keyed: KeyedStream<K, T>,
    assigner: W,
}

impl<K: Key, T: Data, W: WindowAssigner> WindowedStream<K, T, W> {
    /// Aggregates each window of each key; one result per window and key is
    /// emitted when the watermark passes the window's end. Records that
    /// arrive after their window fired are dropped as late.
    ///
    /// The result stream carries timestamps (`window end - 1`), so it can be
    /// windowed or keyed again in event time.
    pub fn aggregate<A>(self, aggregate: A) -> Stream<Windowed<K, A::Out>>
    where
        A: AggregateFunction<In = T>,
    {
        let operator = WindowOperator::new(self.assigner, aggregate);
        let timestamps: crate::basic::TimestampFn<Windowed<K, A::Out>> =
            Arc::new(|w: &Windowed<K, A::Out>| w.end - 1);
        self.keyed
            .process_named("window", operator, Some(timestamps))
    }
}
