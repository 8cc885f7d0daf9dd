//! Sinks: where a job's records end.
//!
//! - [`StdoutSink`]: one line per record on standard output.
//! - [`BlackholeSink`]: drops records (benchmarks).
//! - [`FileSink`]: one line per record into files in a directory; exactly
//!   once (two-phase commit on checkpoints) when the job checkpoints.
//! - [`CollectSink`]: records into a shared vector (tests, examples).
//!
//! A user-defined sink implements [`Sink`].

mod blackhole;
mod collect;
mod file;
mod stdout;

pub use self::blackhole::BlackholeSink;
pub use self::collect::CollectSink;
pub use self::file::FileSink;
pub use self::stdout::StdoutSink;

use crate::data::{Batch, Data, Timestamp};
use crate::error::OperatorError;
use crate::record_task::records_of;
use crate::task::{OperatorTask, TaskInfo, TaskSnapshot};
use std::marker::PhantomData;
use weir_protocol::Epoch;

/// A destination for records. It is cloned once per subtask; each clone is
/// [`open`](Self::open)ed before it receives records.
pub trait Sink<T>: Clone + Send + Sync + 'static {
    /// Default operator name.
    const NAME: &'static str;

    /// Prepares subtask `info.subtask`.
    fn open(&mut self, _info: &TaskInfo) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Writes a batch of records.
    fn write(&mut self, records: Vec<T>) -> Result<(), OperatorError>;

    /// At checkpoint `epoch`'s barrier: make everything written so far
    /// durable and ready to commit, and return the state to checkpoint
    /// (pending transactions), as JSON.
    fn pre_commit(&mut self, _epoch: Epoch) -> Result<Option<String>, OperatorError> {
        Ok(None)
    }

    /// Checkpoint `epoch` is complete: make everything pre-committed up to
    /// it visible. Must be idempotent.
    fn commit(&mut self, _epoch: Epoch) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The input ended: make everything written durable (a transactional
    /// sink still waits for the final checkpoint to commit it).
    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Whether output waits for a checkpoint to commit it.
    fn has_pending_commits(&self) -> bool {
        false
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

    fn processing_time(&mut self, _now: Timestamp) -> Result<(), OperatorError> {
        Ok(())
    }

    fn next_processing_deadline(&self) -> Option<Timestamp> {
        None
    }

    fn flush(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }

    fn checkpoint(&mut self, epoch: Epoch) -> Result<TaskSnapshot, OperatorError> {
        Ok(TaskSnapshot {
            keyed: None,
            operator_state: self.sink.pre_commit(epoch)?,
        })
    }

    fn checkpoint_complete(&mut self, epoch: Epoch) -> Result<(), OperatorError> {
        self.sink.commit(epoch)
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        self.sink.finish()
    }

    fn close(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }

    fn suspend(&mut self) -> Result<(), OperatorError> {
        // Nothing follows a stop barrier: what the sink holds is pre-committed
        // by its checkpoint and committed when that completes.
        Ok(())
    }

    fn has_pending_commits(&self) -> bool {
        self.sink.has_pending_commits()
    }
}
