//! A sink that prints records.

use super::Sink;
use crate::data::Data;
use crate::error::OperatorError;
use std::fmt::Display;
use std::io::Write;

/// Prints each record on its own line to standard output. Lines of one
/// batch are written together, so lines from different subtasks never mix.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdoutSink;

impl<T: Data + Display> Sink<T> for StdoutSink {
    const NAME: &'static str = "stdout";

    fn write(&mut self, records: Vec<T>) -> Result<(), OperatorError> {
        let mut text = String::new();
        for record in records {
            use std::fmt::Write as _;
            let _ = writeln!(text, "{record}");
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|source| OperatorError::Io {
                action: "writing to",
                path: "standard output".into(),
                source,
            })
    }
}
