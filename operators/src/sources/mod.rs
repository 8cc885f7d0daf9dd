//! Sources: where a job's records come from.
//!
//! - [`Generator`]: deterministic keyed events from a seed, optionally rate-limited.
//! - [`FileLines`]: the lines of a text file, split by byte range across subtasks.
//! - [`NexmarkSource`]: the Nexmark auction benchmark's events.
//! - [`FromElements`]: a fixed list of records (tests, examples).
//!
//! A user-defined source implements [`Source`]; [`SplitWatermarks`] derives
//! its watermarks from several splits (partitions), idle ones left out.

mod elements;
mod file;
mod generator;
mod nexmark;
mod watermarks;

pub use self::elements::FromElements;
pub use self::file::FileLines;
pub use self::generator::{GeneratedEvent, Generator};
pub use self::nexmark::{NexmarkEvent, NexmarkSource, NEXMARK_BASE_TIME};
pub use self::watermarks::{SplitWatermarks, WatermarkChange};

use crate::data::Data;
use crate::error::OperatorError;
use crate::output::Output;
use crate::task::{Restored, SourcePoll, SourceTask, TaskInfo, TaskSnapshot};
use crate::TimestampFn;
use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_protocol::Epoch;

/// A source of records: the connector contract for input.
///
/// It is cloned once per subtask; each clone is [`open`](Self::open)ed
/// with its subtask's [`TaskInfo`] and produces its share of the input.
/// At every checkpoint barrier the runtime asks for its
/// [`position`](Self::position) and saves it with the checkpoint; a job
/// restored from that checkpoint hands the saved positions back to `open`,
/// so that the source resumes right after the records the checkpoint
/// covers (the rest of exactly-once is the sinks'). After a rescale every
/// subtask receives the positions of all old subtasks and takes its share
/// (a Kafka source: the partitions it now owns; see [`Restored`]).
///
/// Event time: a source whose records carry timestamps says how to read
/// them ([`event_time`](Self::event_time)) and emits watermarks itself
/// ([`Output::emit_watermark`]); when it has nothing to read for a while
/// it says so with [`Output::mark_idle`], so that downstream watermarks do
/// not wait for it. [`SplitWatermarks`] does both for a source that reads
/// several splits (partitions) with bounded out-of-orderness.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use weir_operators::prelude::*;
///
/// /// Counts from 0 to `end`, resuming after the last number checkpointed.
/// #[derive(Clone)]
/// struct Counter {
///     end: u64,
///     next: u64,
/// }
///
/// #[derive(Serialize, Deserialize)]
/// struct Next(u64);
///
/// impl Source for Counter {
///     type Out = u64;
///     type Position = Next;
///     const NAME: &'static str = "counter";
///
///     fn open(&mut self, _info: &TaskInfo, restored: Option<Restored<Next>>) -> Result<(), OperatorError> {
///         if let Some(restored) = restored {
///             if restored.rescaled() {
///                 return Err(restored.cannot_rescale("counter source"));
///             }
///             self.next = restored.own().map_or(0, |n| n.0);
///         }
///         Ok(())
///     }
///
///     fn poll(&mut self, out: &mut Output<u64>, max: usize) -> Result<SourcePoll, OperatorError> {
///         for _ in 0..max {
///             if self.next == self.end {
///                 return Ok(SourcePoll::Finished);
///             }
///             out.collect(self.next)?;
///             self.next += 1;
///         }
///         Ok(SourcePoll::Ready)
///     }
///
///     fn position(&mut self, _epoch: Epoch) -> Option<Next> {
///         Some(Next(self.next))
///     }
/// }
///
/// let job = JobBuilder::new("count").with_parallelism(1);
/// job.source(Counter { end: 10, next: 0 }).discard();
/// job.build().expect("a valid job");
/// ```
pub trait Source: Clone + Send + Sync + 'static {
    /// The records it produces.
    type Out: Data;
    /// What it saves at each checkpoint to resume from (`()` for a source
    /// that starts over after a restore).
    type Position: Serialize + DeserializeOwned + Send + 'static;
    /// Default operator name.
    const NAME: &'static str;

    /// Prepares subtask `info.subtask` of `info.parallelism`; `restored`
    /// holds the positions every subtask saved in the checkpoint the job
    /// was restored from.
    fn open(
        &mut self,
        info: &TaskInfo,
        restored: Option<Restored<Self::Position>>,
    ) -> Result<(), OperatorError>;

    /// Emits at most `max_records` records into `out`.
    fn poll(
        &mut self,
        out: &mut Output<Self::Out>,
        max_records: usize,
    ) -> Result<SourcePoll, OperatorError>;

    /// The position reached, saved with checkpoint `epoch`, whose barrier
    /// the runtime emits right after. `None`: nothing to save.
    fn position(&mut self, _epoch: Epoch) -> Option<Self::Position> {
        None
    }

    /// Checkpoint `epoch`, which holds this source's position, is
    /// complete; a source may tell its system (a Kafka consumer group
    /// commits the offsets, for monitoring only: the checkpoint is the
    /// truth).
    fn checkpoint_complete(&mut self, _epoch: Epoch) -> Result<(), OperatorError> {
        Ok(())
    }

    /// How to read a record's event time, when the source assigns it (and
    /// emits the watermarks): the stream then needs no `assign_timestamps`.
    fn event_time(&self) -> Option<TimestampFn<Self::Out>> {
        None
    }
}

/// Runs a [`Source`] as a task.
pub(crate) struct SourceRunner<S: Source> {
    source: S,
    out: Output<S::Out>,
}

/// How many records a source may emit per poll before the runtime checks
/// for cancellation and flushes.
const RECORDS_PER_POLL: usize = 4096;

impl<S: Source> SourceRunner<S> {
    pub(crate) fn boxed(
        info: &TaskInfo,
        mut source: S,
        out: Output<S::Out>,
    ) -> Result<Box<dyn SourceTask>, OperatorError> {
        let restored = info.restored_states(&format!("{} source", S::NAME))?;
        source.open(info, restored)?;
        Ok(Box::new(Self { source, out }))
    }
}

impl<S: Source> SourceTask for SourceRunner<S> {
    fn poll(&mut self) -> Result<SourcePoll, OperatorError> {
        self.source.poll(&mut self.out, RECORDS_PER_POLL)
    }

    fn flush(&mut self) -> Result<(), OperatorError> {
        self.out.flush()
    }

    fn checkpoint(&mut self, epoch: Epoch) -> Result<TaskSnapshot, OperatorError> {
        let position = match self.source.position(epoch) {
            None => None,
            Some(position) => Some(serde_json::to_string(&position).map_err(|e| {
                OperatorError::user_caused_by(
                    format!("{} source: encoding its position", S::NAME),
                    e,
                )
            })?),
        };
        self.out.emit_barrier(epoch)?;
        Ok(TaskSnapshot {
            keyed: None,
            operator_state: position,
        })
    }

    fn checkpoint_complete(&mut self, epoch: Epoch) -> Result<(), OperatorError> {
        self.source.checkpoint_complete(epoch)
    }

    fn end_of_data(&mut self) -> Result<(), OperatorError> {
        self.out.end_of_data()
    }

    fn close(&mut self) -> Result<(), OperatorError> {
        self.out.end_of_stream()
    }

    fn suspend(&mut self) -> Result<(), OperatorError> {
        self.out.suspend();
        Ok(())
    }
}

/// Splits `0..total` into `parallelism` contiguous parts; returns part `index`.
pub(crate) fn split_range(total: u64, index: u32, parallelism: u32) -> (u64, u64) {
    let (i, p) = (u128::from(index), u128::from(parallelism.max(1)));
    let t = u128::from(total);
    ((t * i / p) as u64, (t * (i + 1) / p) as u64)
}
