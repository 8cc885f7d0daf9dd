//! A sink that drops every record.

use super::Sink;
use crate::data::Data;
use crate::error::OperatorError;

/// Drops every record; the runtime still counts them as output.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlackholeSink;

impl<T: Data> Sink<T> for BlackholeSink {
    const NAME: &'static str = "blackhole";

    fn write(&mut self, records: Vec<T>) -> Result<(), OperatorError> {
        drop(records);
        Ok(())
    }
}
