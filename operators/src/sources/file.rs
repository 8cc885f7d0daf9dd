//! Lines of a text file.

use super::{split_range, Source};
use crate::error::OperatorError;
use crate::output::Output;
use crate::task::{Restored, SourcePoll, TaskInfo};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use weir_protocol::Epoch;

/// Reads a text file line by line (without the line terminator).
///
/// The file is split into one byte range per subtask; a line belongs to the
/// subtask whose range holds its first byte. The source tracks the byte
/// offset of the next line it will read ([`FileLines::offset`]).
#[derive(Debug)]
pub struct FileLines {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    offset: u64,
    end: u64,
    line: Vec<u8>,
}

impl Clone for FileLines {
    /// A clone is a fresh, unopened source of the same file.
    fn clone(&self) -> Self {
        Self::new(self.path.clone())
    }
}

impl FileLines {
    /// Lines of the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            reader: None,
            offset: 0,
            end: 0,
            line: Vec::new(),
        }
    }

    /// Byte offset of the next line this subtask will read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn io(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> OperatorError + '_ {
        move |source| OperatorError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }
}

impl Source for FileLines {
    type Out = String;
    type Position = FilePosition;
    const NAME: &'static str = "file";

    fn open(
        &mut self,
        info: &TaskInfo,
        restored: Option<Restored<FilePosition>>,
    ) -> Result<(), OperatorError> {
        let mut file = File::open(&self.path).map_err(self.io("opening"))?;
        if let Some(restored) = restored {
            if restored.rescaled() {
                return Err(restored.cannot_rescale("file source"));
            }
            if let Some(position) = restored.own() {
                file.seek(SeekFrom::Start(position.offset))
                    .map_err(self.io("seeking in"))?;
                self.offset = position.offset;
                self.end = position.end;
                self.reader = Some(BufReader::new(file));
                return Ok(());
            }
        }
        let len = file
            .metadata()
            .map_err(self.io("reading metadata of"))?
            .len();
        let (start, end) = split_range(len, info.subtask, info.parallelism);
        let mut offset = start;
        if start > 0 {
            // The line running through `start` belongs to the previous
            // subtask unless `start` is exactly where a line begins.
            file.seek(SeekFrom::Start(start - 1))
                .map_err(self.io("seeking in"))?;
            let mut previous = [0u8; 1];
            file.read_exact(&mut previous).map_err(self.io("reading"))?;
            let mut reader = BufReader::new(file);
            if previous[0] != b'\n' {
                let mut skipped = Vec::new();
                offset += reader
                    .read_until(b'\n', &mut skipped)
                    .map_err(self.io("reading"))? as u64;
            }
            self.reader = Some(reader);
        } else {
            self.reader = Some(BufReader::new(file));
        }
        self.offset = offset;
        self.end = end;
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut Output<String>,
        max_records: usize,
    ) -> Result<SourcePoll, OperatorError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(SourcePoll::Finished);
        };
        for _ in 0..max_records {
            if self.offset >= self.end {
                return Ok(SourcePoll::Finished);
            }
            self.line.clear();
            let read =
                reader
                    .read_until(b'\n', &mut self.line)
                    .map_err(|source| OperatorError::Io {
                        action: "reading",
                        path: self.path.clone(),
                        source,
                    })?;
            if read == 0 {
                return Ok(SourcePoll::Finished);
            }
            self.offset += read as u64;
            while matches!(self.line.last(), Some(b'\n' | b'\r')) {
                self.line.pop();
            }
            out.collect(String::from_utf8_lossy(&self.line).into_owned())?;
        }
        Ok(SourcePoll::Ready)
    }

    fn position(&mut self, _epoch: Epoch) -> Option<FilePosition> {
        Some(FilePosition {
            offset: self.offset,
            end: self.end,
        })
    }
}

/// The [`FileLines`] source's checkpointed position: the next line's
/// offset and the end of its subtask's byte range.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct FilePosition {
    offset: u64,
    end: u64,
}
