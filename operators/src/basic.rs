//! Stateless record-at-a-time operators: map, filter, flat_map, and the
//! watermark assigner.

use crate::data::{Data, Timestamp};
use crate::error::OperatorError;
use crate::output::Output;
use crate::record_task::RecordOperator;
use std::marker::PhantomData;
use std::sync::Arc;

/// Extracts a record's event time (ms).
pub type TimestampFn<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;

pub(crate) struct Map<T, U> {
    pub(crate) f: Arc<dyn Fn(T) -> U + Send + Sync>,
}

impl<T: Data, U: Data> RecordOperator for Map<T, U> {
    type In = T;
    type Out = U;
    #[inline]
    fn process(&mut self, record: T, out: &mut Output<U>) -> Result<(), OperatorError> {
        out.collect((self.f)(record))
    }
}

pub(crate) struct Filter<T> {
    pub(crate) f: Arc<dyn Fn(&T) -> bool + Send + Sync>,
}

impl<T: Data> RecordOperator for Filter<T> {
    type In = T;
    type Out = T;
    #[inline]
    fn process(&mut self, record: T, out: &mut Output<T>) -> Result<(), OperatorError> {
        if (self.f)(&record) {
            out.collect(record)?;
        }
        Ok(())
    }
}

pub(crate) struct FlatMap<T, U, I> {
    pub(crate) f: Arc<dyn Fn(T) -> I + Send + Sync>,
    pub(crate) _out: PhantomData<fn() -> U>,
}

impl<T: Data, U: Data, I: IntoIterator<Item = U> + 'static> RecordOperator for FlatMap<T, U, I> {
    type In = T;
    type Out = U;
    #[inline]
    fn process(&mut self, record: T, out: &mut Output<U>) -> Result<(), OperatorError> {
        for item in (self.f)(record) {
            out.collect(item)?;
        }
        Ok(())
    }
}

/// Generates watermarks from record timestamps with a bound on how far out
/// of order records may arrive: after each input batch the watermark is
/// `max_timestamp_seen - max_out_of_orderness - 1`. Upstream watermarks are
/// replaced, except the final one that ends the stream.
pub(crate) struct WatermarkAssigner<T> {
    pub(crate) timestamp: TimestampFn<T>,
    pub(crate) max_out_of_orderness: Timestamp,
    pub(crate) max_seen: Timestamp,
    pub(crate) emitted: Timestamp,
}

impl<T: Data> WatermarkAssigner<T> {
    fn maybe_emit(&mut self, out: &mut Output<T>) -> Result<(), OperatorError> {
        let candidate = self
            .max_seen
            .saturating_sub(self.max_out_of_orderness)
            .saturating_sub(1);
        if candidate > self.emitted {
            self.emitted = candidate;
            out.emit_watermark(candidate)?;
        }
        Ok(())
    }
}

impl<T: Data> RecordOperator for WatermarkAssigner<T> {
    type In = T;
    type Out = T;

    #[inline]
    fn process(&mut self, record: T, out: &mut Output<T>) -> Result<(), OperatorError> {
        let ts = (self.timestamp)(&record);
        if ts > self.max_seen {
            self.max_seen = ts;
        }
        out.collect(record)
    }

    fn end_of_batch(&mut self, out: &mut Output<T>) -> Result<(), OperatorError> {
        self.maybe_emit(out)
    }

    fn watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<T>,
    ) -> Result<(), OperatorError> {
        // Only the end-of-input watermark passes; the rest are ours to make.
        if watermark == crate::data::MAX_WATERMARK && self.emitted < watermark {
            self.emitted = watermark;
            return out.emit_watermark(watermark);
        }
        self.maybe_emit(out)
    }
}
