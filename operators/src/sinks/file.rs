//! A sink that writes lines into files in a directory.

use super::Sink;
use crate::data::Data;
use crate::error::OperatorError;
use crate::task::TaskInfo;
use std::fmt::Display;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Writes each record on its own line into `DIR/part-<subtask>`, one file
/// per sink subtask. An existing file of the same name is replaced; use one
/// directory per sink.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    path: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl Clone for FileSink {
    /// A clone is a fresh, unopened sink into the same directory.
    fn clone(&self) -> Self {
        Self::new(self.dir.clone())
    }
}

impl FileSink {
    /// A sink writing into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            path: PathBuf::new(),
            writer: None,
        }
    }

    fn io(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> OperatorError + '_ {
        move |source| OperatorError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }
}

impl<T: Data + Display> Sink<T> for FileSink {
    const NAME: &'static str = "file";

    fn open(&mut self, info: &TaskInfo) -> Result<(), OperatorError> {
        self.path = self.dir.clone();
        std::fs::create_dir_all(&self.dir).map_err(self.io("creating directory"))?;
        self.path = self.dir.join(format!("part-{:05}", info.subtask));
        let file = File::create(&self.path).map_err(self.io("creating"))?;
        self.writer = Some(BufWriter::with_capacity(1 << 16, file));
        Ok(())
    }

    fn write(&mut self, records: Vec<T>) -> Result<(), OperatorError> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(OperatorError::user(
                "file sink written before it was opened",
            ));
        };
        for record in records {
            if let Err(source) = writeln!(writer, "{record}") {
                return Err(OperatorError::Io {
                    action: "writing",
                    path: self.path.clone(),
                    source,
                });
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        if let Some(mut writer) = self.writer.take() {
            writer.flush().map_err(self.io("flushing"))?;
            writer
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|file| file.sync_all())
                .map_err(self.io("syncing"))?;
        }
        Ok(())
    }
}
