//! A source of fixed records.

use super::Source;
use crate::data::Data;
use crate::error::OperatorError;
use crate::output::Output;
use crate::task::{Restored, SourcePoll, TaskInfo};
use std::sync::Arc;
use weir_protocol::Epoch;

/// Emits a fixed list of records: subtask `i` of `p` emits the records at
/// positions `i, i + p, …`, in order. Handy for tests and examples.
///
/// ```
/// use weir_operators::prelude::*;
/// let job = JobBuilder::new("elements");
/// job.source(FromElements::new(vec!["a".to_string(), "b".to_string()])).print();
/// # job.build().unwrap();
/// ```
#[derive(Debug)]
pub struct FromElements<T> {
    records: Arc<Vec<T>>,
    next: usize,
    step: usize,
}

impl<T> Clone for FromElements<T> {
    fn clone(&self) -> Self {
        Self {
            records: self.records.clone(),
            next: 0,
            step: 1,
        }
    }
}

impl<T: Data> FromElements<T> {
    /// A source of `records`.
    pub fn new(records: Vec<T>) -> Self {
        Self {
            records: Arc::new(records),
            next: 0,
            step: 1,
        }
    }
}

impl<T: Data + Sync> Source for FromElements<T> {
    type Out = T;
    /// The index of the next record this subtask emits.
    type Position = usize;
    const NAME: &'static str = "elements";

    fn open(
        &mut self,
        info: &TaskInfo,
        restored: Option<Restored<usize>>,
    ) -> Result<(), OperatorError> {
        self.next = info.subtask as usize;
        self.step = info.parallelism.max(1) as usize;
        if let Some(restored) = restored {
            if restored.rescaled() {
                return Err(restored.cannot_rescale("elements source"));
            }
            if let Some(next) = restored.own() {
                self.next = *next;
            }
        }
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut Output<T>,
        max_records: usize,
    ) -> Result<SourcePoll, OperatorError> {
        for _ in 0..max_records {
            let Some(record) = self.records.get(self.next) else {
                return Ok(SourcePoll::Finished);
            };
            out.collect(record.clone())?;
            self.next += self.step;
        }
        Ok(SourcePoll::Ready)
    }

    fn position(&mut self, _epoch: Epoch) -> Option<usize> {
        Some(self.next)
    }
}
