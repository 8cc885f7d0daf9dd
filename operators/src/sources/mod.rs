//! Sources: where a job's records come from.
//!
//! - [`Generator`]: deterministic keyed events from a seed, optionally rate-limited.
//! - [`FileLines`]: the lines of a text file, split by byte range across subtasks.
//! - [`NexmarkSource`]: the Nexmark auction benchmark's events.
//! - [`FromElements`]: a fixed list of records (tests, examples).
//!
//! A user-defined source implements [`Source`].

mod elements;
mod file;
mod generator;
mod nexmark;

pub use self::elements::FromElements;
pub use self::file::FileLines;
pub use self::generator::{GeneratedEvent, Generator};
pub use self::nexmark::{NexmarkEvent, NexmarkSource, NEXMARK_BASE_TIME};

use crate::data::Data;
use crate::error::OperatorError;
use crate::output::Output;
use crate::task::{SourcePoll, SourceTask, TaskInfo, TaskSnapshot};
use weir_protocol::Epoch;

/// A source of records. It is cloned once per subtask; each clone is
/// [`open`](Self::open)ed with its subtask's [`TaskInfo`] and produces its
/// share of the input.
pub trait Source: Clone + Send + Sync + 'static {
    /// The records it produces.
    type Out: Data;
    /// Default operator name.
    const NAME: &'static str;

    /// Prepares subtask `info.subtask` of `info.parallelism`.
    fn open(&mut self, info: &TaskInfo) -> Result<(), OperatorError>;

    /// Emits at most `max_records` records into `out`.
    fn poll(
        &mut self,
        out: &mut Output<Self::Out>,
        max_records: usize,
    ) -> Result<SourcePoll, OperatorError>;

    /// The position reached, as JSON, to store in a checkpoint; `open`
    /// finds it again in [`TaskInfo::restored`]. `None`: the source cannot
    /// resume and starts over after a restore.
    fn position(&self) -> Option<String> {
        None
    }
}

/// Decodes a position that this source's [`Source::position`] encoded.
pub(crate) fn decode_position<P: serde::de::DeserializeOwned>(
    source: &str,
    json: &str,
) -> Result<P, OperatorError> {
    serde_json::from_str(json).map_err(|e| {
        OperatorError::user_caused_by(
            format!("{source} source: unreadable checkpointed position"),
            e,
        )
    })
}

/// The error for a source that cannot resume at another parallelism.
pub(crate) fn cannot_rescale(source: &str, info: &TaskInfo, old: usize) -> OperatorError {
    OperatorError::user(format!(
        "{source} source cannot be restored at parallelism {} from a checkpoint taken at parallelism {old}",
        info.parallelism
    ))
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
        source.open(info)?;
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
        let position = self.source.position();
        self.out.emit_barrier(epoch)?;
        Ok(TaskSnapshot {
            keyed: None,
            operator_state: position,
        })
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
