//! Adapts typed, record-at-a-time operators to the runtime's
//! [`OperatorTask`]: downcasts each batch once and loops over its records.

use crate::data::{Batch, Data, Timestamp};
use crate::error::OperatorError;
use crate::output::Output;
use crate::task::{OperatorTask, TaskSnapshot};
use weir_protocol::Epoch;

/// A typed operator with one (possibly merged) input and one output.
pub(crate) trait RecordOperator: Send + 'static {
    type In: Data;
    type Out: Data;

    fn process(
        &mut self,
        record: Self::In,
        out: &mut Output<Self::Out>,
    ) -> Result<(), OperatorError>;

    /// Called after each input batch.
    fn end_of_batch(&mut self, _out: &mut Output<Self::Out>) -> Result<(), OperatorError> {
        Ok(())
    }

    fn watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<Self::Out>,
    ) -> Result<(), OperatorError> {
        out.emit_watermark(watermark)
    }

    fn processing_time(
        &mut self,
        _now: Timestamp,
        _out: &mut Output<Self::Out>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    fn next_processing_deadline(&self) -> Option<Timestamp> {
        None
    }

    fn finish(&mut self, _out: &mut Output<Self::Out>) -> Result<(), OperatorError> {
        Ok(())
    }
}

pub(crate) struct RecordTask<O: RecordOperator> {
    name: String,
    operator: O,
    out: Output<O::Out>,
}

impl<O: RecordOperator> RecordTask<O> {
    pub(crate) fn boxed(name: &str, operator: O, out: Output<O::Out>) -> Box<dyn OperatorTask> {
        Box::new(Self {
            name: name.to_owned(),
            operator,
            out,
        })
    }
}

/// Takes the records of type `T` out of a batch, or names the mismatch.
pub(crate) fn records_of<T: Data>(operator: &str, batch: Batch) -> Result<Vec<T>, OperatorError> {
    batch
        .decode()?
        .into_records::<T>()
        .map_err(|_| OperatorError::WrongRecordType {
            operator: operator.to_owned(),
            expected: std::any::type_name::<T>(),
        })
}

impl<O: RecordOperator> OperatorTask for RecordTask<O> {
    fn process(&mut self, batch: Batch) -> Result<(), OperatorError> {
        for record in records_of::<O::In>(&self.name, batch)? {
            self.operator.process(record, &mut self.out)?;
        }
        self.operator.end_of_batch(&mut self.out)
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<(), OperatorError> {
        self.operator.watermark(watermark, &mut self.out)
    }

    fn inputs_idle(&mut self) -> Result<(), OperatorError> {
        self.out.mark_idle()
    }

    fn processing_time(&mut self, now: Timestamp) -> Result<(), OperatorError> {
        self.operator.processing_time(now, &mut self.out)
    }

    fn next_processing_deadline(&self) -> Option<Timestamp> {
        self.operator.next_processing_deadline()
    }

    fn flush(&mut self) -> Result<(), OperatorError> {
        self.out.flush()
    }

    fn checkpoint(&mut self, epoch: Epoch) -> Result<TaskSnapshot, OperatorError> {
        self.out.emit_barrier(epoch)?;
        Ok(TaskSnapshot::default())
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        self.operator.finish(&mut self.out)?;
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
