//! The Weir operator API: what a user writes a job against.
//!
//! A job is built with a [`JobBuilder`]: add [`sources`], transform the
//! resulting [`Stream`]s (`map`, `filter`, `flat_map`, `union`,
//! `assign_timestamps`), partition them with `key_by` into a
//! [`KeyedStream`] for stateful [`KeyedProcessFunction`]s and event-time
//! [`window`]s, and end them in [`sinks`]. [`JobBuilder::build`] validates
//! the graph and returns a [`Dataflow`] that the runtime executes.
//!
//! ```
//! use std::time::Duration;
//! use weir_operators::prelude::*;
//!
//! let job = JobBuilder::new("per-key-counts").with_parallelism(2);
//! job.source(Generator::new(10_000, 100, 7))
//!     .assign_timestamps(|e| e.timestamp, Duration::from_millis(0))
//!     .key_by(|e| e.key)
//!     .window(TumblingWindows::of(Duration::from_secs(1)))
//!     .aggregate(Count::new())
//!     .map(|w| format!("{},{},{}", w.key, w.start, w.value))
//!     .print();
//! let dataflow = job.build().expect("a valid job");
//! assert_eq!(dataflow.graph().vertices.len(), 5);
//! ```
//!
//! # Layout
//!
//! User-facing:
//! - [`builder`]: [`JobBuilder`] and [`Stream`] with the stateless transformations.
//! - [`keyed`]: [`KeyedStream`], the entry to keyed processing and windows.
//! - [`process`]: [`KeyedProcessFunction`], its [`KeyedContext`], and the
//!   state handles [`ValueState`], [`MapState`], [`ListState`].
//! - [`window`]: window assigners, [`AggregateFunction`], [`Windowed`] results.
//! - [`sources`] and [`sinks`]: built-in connectors and the connector
//!   contracts for new ones: [`Source`](sources::Source) (positions saved
//!   at each barrier and handed back on restore, event time, watermarks,
//!   idleness; [`SplitWatermarks`](sources::SplitWatermarks) for
//!   partitioned input), [`Sink`](sinks::Sink) (at least once) and
//!   [`TwoPhaseSink`](sinks::TwoPhaseSink) (exactly once: pre-commit at
//!   the barrier, commit when the checkpoint completes).
//! - [`data`]: the [`Data`] and [`Key`] bounds, batches and stream messages,
//!   and [`BatchCodec`], how a batch crosses to another worker (a record
//!   count, then bitcode).
//! - [`job`]: jobs as a library: [`JobDefinition`](job::JobDefinition),
//!   [`JobRegistry`](job::JobRegistry), typed parameters, the
//!   [`JobContext`](job::JobContext) a job is built from.
//! - [`error`]: [`OperatorError`] (at run time), [`BuildError`] (when a
//!   graph is built) and [`JobError`] (when a job is built by name).
//!
//! Runtime-facing (what `weir-runtime` drives; users rarely touch it):
//! - [`task`]: [`Dataflow`], the task traits and their factories.
//! - [`output`]: [`Output`], batching and partitioning of operator output;
//!   [`OutputChannel`](output::OutputChannel) is what a runtime's channel
//!   implements (a remote one asks for larger batches).
//!
//! Internal: `basic` (map/filter/flat_map/watermark operators) and
//! `record_task` (adapts typed operators to tasks).

#![warn(missing_docs)]

mod basic;
pub mod builder;
pub mod data;
pub mod error;
pub mod job;
pub mod keyed;
pub mod output;
pub mod process;
mod record_task;
pub mod sinks;
pub mod sources;
pub mod task;
pub mod window;

pub use basic::TimestampFn;
pub use builder::{JobBuilder, Stream};
pub use data::{Batch, BatchCodec, Data, Key, Message, Timestamp, MAX_WATERMARK};
pub use error::{BuildError, JobError, OperatorError};
pub use keyed::{KeyedStream, WindowedStream};
pub use output::Output;
pub use process::{
    KeyedContext, KeyedProcessFunction, ListState, MapState, StateRegistry, ValueState,
};
pub use task::{Dataflow, TaskInfo};
pub use weir_protocol::key_group::DEFAULT_MAX_PARALLELISM;
pub use weir_protocol::Epoch;
pub use weir_state::TimeDomain;
pub use window::{
    AggregateFunction, Count, SlidingWindows, TumblingWindows, Window, WindowAssigner, Windowed,
};

/// Everything needed to write a job, in one import.
pub mod prelude {
    pub use crate::output::Output;
    pub use crate::sinks::{BlackholeSink, CollectSink, FileSink, Sink, StdoutSink, TwoPhaseSink};
    pub use crate::sources::{
        FileLines, FromElements, GeneratedEvent, Generator, NexmarkEvent, NexmarkSource, Source,
        SplitWatermarks,
    };
    pub use crate::task::{Restored, SourcePoll, SourceWaker, TaskInfo};
    pub use crate::{
        AggregateFunction, Count, Data, Epoch, JobBuilder, Key, KeyedContext, KeyedProcessFunction,
        KeyedStream, ListState, MapState, OperatorError, SlidingWindows, StateRegistry, Stream,
        TimeDomain, Timestamp, TumblingWindows, ValueState, Window, Windowed,
    };
}
