//! Sinks: where a job's records end.
//!
//! - [`StdoutSink`]: one line per record on standard output.
//! - [`BlackholeSink`]: drops records (benchmarks).
//! - [`FileSink`]: one line per record into files in a directory; exactly
//!   once (a [`TwoPhaseSink`]) when the job checkpoints.
//! - [`CollectSink`]: records into a shared vector (tests, examples).
//!
//! A user-defined sink implements [`Sink`] (at least once) or
//! [`TwoPhaseSink`] (exactly once: output visible when its checkpoint
//! completes).

mod blackhole;
mod collect;
mod file;
mod stdout;
mod two_phase;

pub use self::blackhole::BlackholeSink;
pub use self::collect::CollectSink;
pub use self::file::FileSink;
pub use self::stdout::StdoutSink;
pub use self::two_phase::TwoPhaseSink;
pub(crate) use self::two_phase::TwoPhaseTask;

use crate::data::{Batch, Data, Timestamp};
use crate::error::OperatorError;
use crate::record_task::records_of;
use crate::task::{OperatorTask, TaskInfo, TaskSnapshot};
use std::marker::PhantomData;
use weir_protocol::Epoch;

/// A destination for records without transactions: at least once across a
/// restore (what was written after the restored checkpoint is written
/// again). A sink whose output must show each record once implements
/// [`TwoPhaseSink`] instead.
///
/// It is cloned once per subtask; each clone is [`open`](Self::open)ed
/// before it receives records.
pub trait Sink<T>: Clone + Send + Sync + 'static {
    /// Default operator name.
    const NAME: &'static str;

    /// Prepares subtask `info.subtask`.
    fn open(&mut self, _info: &TaskInfo) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Writes a batch of records.
    fn write(&mut self, records: Vec<T>) -> Result<(), OperatorError>;

    /// At each checkpoint barrier: makes everything written so far durable
    /// (the checkpoint then covers it).
    fn flush(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The input ended: makes everything written durable.
    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// Runs a [`Sink`] as a task.
pub(crate) struct SinkTask<T, S> {
    name: String,
    sink: S,
    _records: PhantomData<fn(T)>,
}

impl<T: Data, S: Sink<T>> SinkTask<T, S> {
    pub(crate) fn boxed(info: &TaskInfo, mut sink: S) -> Result<Box<Self>, OperatorError> {
        sink.open(info)?;
        Ok(Box::new(Self {
            name: info.operator.clone(),
            sink,
            _records: PhantomData,
        }))
    }
}

impl<T: Data, S: Sink<T>> OperatorTask for SinkTask<T, S> {
    fn process(&mut self, batch: Batch) -> Result<(), OperatorError> {
        let records = records_of::<T>(&self.name, batch)?;
        self.sink.write(records)
    }

    fn watermark(&mut self, _watermark: Timestamp) -> Result<(), OperatorError> {
        Ok(())
    }

    fn inputs_idle(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }

    fn processing_time(&mut self, _now: Timestamp) -> Result<(), OperatorError> {
        Ok(())
    }

    fn next_processing_deadline(&self) -> Option<Timestamp> {
        None
    }

    fn flush(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }

    fn checkpoint(&mut self, _epoch: Epoch) -> Result<TaskSnapshot, OperatorError> {
        self.sink.flush()?;
        Ok(TaskSnapshot::default())
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        self.sink.finish()
    }

    fn close(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }

    fn suspend(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}
