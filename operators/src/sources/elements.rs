//! A source of fixed records.

use super::{cannot_rescale, decode_position, Source};
use crate::data::Data;
use crate::error::OperatorError;
use crate::output::Output;
use crate::task::{SourcePoll, TaskInfo};
use std::sync::Arc;

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
    const NAME: &'static str = "elements";

    fn open(&mut self, info: &TaskInfo) -> Result<(), OperatorError> {
        self.next = info.subtask as usize;
        self.step = info.parallelism.max(1) as usize;
        if let Some(restored) = &info.restored {
            if restored.operator_states.len() != info.parallelism as usize {
                return Err(cannot_rescale(
                    "elements",
                    info,
                    restored.operator_states.len(),
                ));
            }
            if let Some(json) = info.own_operator_state() {
                self.next = decode_position::<usize>("elements", json)?;
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

    fn position(&self) -> Option<String> {
        Some(self.next.to_string())
    }
}
