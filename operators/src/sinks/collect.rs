//! A sink that collects records in memory.

use super::Sink;
use crate::data::Data;
use crate::error::OperatorError;
use std::sync::{Arc, Mutex};

/// Appends every record to a shared vector; for tests and examples that
/// inspect a job's output in the same process.
///
/// ```
/// use weir_operators::prelude::*;
/// let collected = CollectSink::new();
/// let job = JobBuilder::new("collect");
/// job.source(Generator::new(3, 1, 0)).map(|e| e.seq).sink(collected.clone());
/// # let _ = job.build().unwrap();
/// // After running the job: collected.records() holds 0, 1, 2 in some order.
/// ```
#[derive(Debug)]
pub struct CollectSink<T> {
    records: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for CollectSink<T> {
    /// Clones share the same vector.
    fn clone(&self) -> Self {
        Self {
            records: self.records.clone(),
        }
    }
}

impl<T: Data> Default for CollectSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Data> CollectSink<T> {
    /// An empty collector.
    pub fn new() -> Self {
        Self {
            records: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A copy of everything collected so far, in arrival order.
    pub fn records(&self) -> Vec<T> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl<T: Data> Sink<T> for CollectSink<T> {
    const NAME: &'static str = "collect";

    fn write(&mut self, records: Vec<T>) -> Result<(), OperatorError> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(records);
        Ok(())
    }
}
