//! A sink that writes lines into files in a directory, exactly once when
//! the job checkpoints.
//!
//! Without checkpoints, subtask `j` writes `DIR/part-<j>` directly.
//!
//! With checkpoints it is a [`TwoPhaseSink`], as Flink's file sink is:
//!
//! 1. records go to a hidden in-progress file `.part-<j>-<attempt>.inprogress`;
//! 2. at the barrier of checkpoint `e` the file is synced and renamed to the
//!    hidden pending file `.part-<j>-<e>-<attempt>.pending`, whose name is
//!    the pending transaction (pre-commit);
//! 3. when checkpoint `e` completes, the pending file is renamed to the
//!    visible `part-<j>-<e>` (commit; a rename that already happened is
//!    skipped, so commits can be replayed).
//!
//! A run that is not restored replaces the committed files of earlier runs
//! in the directory. On restore from checkpoint `c`, the pending files
//! recorded in `c` are committed (they may not have been before the crash)
//! and subtask 0 deletes every other hidden file of earlier attempts (its
//! records come again from the restored sources). The directory therefore
//! never shows a record twice, nor one that a restored run will produce
//! again.

use super::TwoPhaseSink;
use crate::data::Data;
use crate::error::OperatorError;
use crate::task::TaskInfo;
use std::collections::HashSet;
use std::fmt::Display;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use weir_protocol::Epoch;

/// Whether `name` is a committed file of this sink: `part-NNNNN-EEEEEEEEEE`.
fn is_committed_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("part-") else {
        return false;
    };
    let bytes = rest.as_bytes();
    bytes.len() == 16
        && bytes[5] == b'-'
        && bytes[..5].iter().chain(&bytes[6..]).all(u8::is_ascii_digit)
}

/// Writes each record on its own line into files under a directory, one
/// set of files per sink subtask; exactly once when the job checkpoints
/// (see the module documentation). Use one directory per sink.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    subtask: u32,
    attempt: String,
    transactional: bool,
    /// The file records are written to now.
    current: PathBuf,
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
            subtask: 0,
            attempt: String::new(),
            transactional: false,
            current: PathBuf::new(),
            writer: None,
        }
    }

    fn io<'a>(
        path: &'a Path,
        action: &'static str,
    ) -> impl FnOnce(std::io::Error) -> OperatorError + 'a {
        move |source| OperatorError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    fn committed_name(subtask: u32, epoch: u64) -> String {
        format!("part-{subtask:05}-{epoch:010}")
    }

    /// Renames pending file `name` to its committed name; done already is
    /// fine. The subtask that wrote it is in its name (it may be another
    /// one's after a rescale).
    fn commit_file(&self, epoch: u64, name: &str) -> Result<(), OperatorError> {
        let subtask = name
            .strip_prefix(".part-")
            .and_then(|rest| rest.get(..5))
            .filter(|_| !name.contains('/'))
            .and_then(|digits| digits.parse::<u32>().ok())
            .ok_or_else(|| {
                OperatorError::user(format!(
                    "file sink: checkpointed pending file name '{name}' is not one of ours"
                ))
            })?;
        let from = self.dir.join(name);
        let to = self.dir.join(Self::committed_name(subtask, epoch));
        match std::fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && to.exists() => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(OperatorError::user(format!(
                "file sink: {} holds neither the pending file {name} of checkpoint {epoch} nor its committed form; \
                 restore into the output directory the checkpoint was taken with",
                self.dir.display()
            ))),
            Err(source) => Err(OperatorError::Io {
                action: "committing",
                path: from,
                source,
            }),
        }
    }

    fn sync_dir(&self) -> Result<(), OperatorError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(Self::io(&self.dir, "syncing directory"))
    }

    fn writer(&mut self) -> Result<&mut BufWriter<File>, OperatorError> {
        if self.writer.is_none() {
            let file = File::create(&self.current).map_err(Self::io(&self.current, "creating"))?;
            self.writer = Some(BufWriter::with_capacity(1 << 16, file));
        }
        Ok(self.writer.as_mut().expect("just opened"))
    }

    /// Flushes and syncs the current file and closes it.
    fn close_current(&mut self) -> Result<bool, OperatorError> {
        let Some(mut writer) = self.writer.take() else {
            return Ok(false);
        };
        writer
            .flush()
            .map_err(Self::io(&self.current, "flushing"))?;
        let file = writer.into_inner().map_err(|e| OperatorError::Io {
            action: "flushing",
            path: self.current.clone(),
            source: e.into_error(),
        })?;
        file.sync_all()
            .map_err(Self::io(&self.current, "syncing"))?;
        Ok(true)
    }
}

impl<T: Data + Display> TwoPhaseSink<T> for FileSink {
    /// The pending file's name.
    type Pending = String;
    const NAME: &'static str = "file";

    fn open(&mut self, info: &TaskInfo) -> Result<(), OperatorError> {
        std::fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir, "creating directory"))?;
        self.subtask = info.subtask;
        self.attempt = info.attempt.clone();
        self.transactional = info.checkpointing;
        if self.transactional {
            self.current = self.dir.join(format!(
                ".part-{:05}-{}.inprogress",
                info.subtask, info.attempt
            ));
        } else {
            self.current = self.dir.join(format!("part-{:05}", info.subtask));
            self.writer()?;
        }
        Ok(())
    }

    fn write(&mut self, records: Vec<T>) -> Result<(), OperatorError> {
        let writer = self.writer()?;
        let mut failed = None;
        for record in records {
            if let Err(e) = writeln!(writer, "{record}") {
                failed = Some(e);
                break;
            }
        }
        match failed {
            Some(source) => Err(OperatorError::Io {
                action: "writing",
                path: self.current.clone(),
                source,
            }),
            None => Ok(()),
        }
    }

    fn pre_commit(&mut self, epoch: Epoch) -> Result<Option<String>, OperatorError> {
        let had_records = self.close_current()?;
        if !self.transactional || !had_records {
            return Ok(None);
        }
        let name = format!(
            ".part-{:05}-{:010}-{}.pending",
            self.subtask, epoch.0, self.attempt
        );
        let pending = self.dir.join(&name);
        std::fs::rename(&self.current, &pending).map_err(Self::io(&self.current, "renaming"))?;
        self.sync_dir()?;
        Ok(Some(name))
    }

    fn commit(&mut self, epoch: Epoch, name: &String) -> Result<(), OperatorError> {
        self.commit_file(epoch.0, name)?;
        self.sync_dir()
    }

    /// Subtask 0 deletes every hidden file of earlier attempts that the
    /// restored checkpoint does not own and, on a fresh start, the
    /// committed output of earlier runs. A subtask restarted with its
    /// region alone deletes only its own hidden files: the other subtasks
    /// kept running, and their pending files are still to be committed.
    fn abort_stale(&mut self, info: &TaskInfo, owned: &[String]) -> Result<(), OperatorError> {
        if !self.transactional || (info.subtask != 0 && !info.others_running) {
            return Ok(());
        }
        let own_prefix = format!(".part-{:05}-", self.subtask);
        let keep: HashSet<&str> = owned.iter().map(String::as_str).collect();
        let entries = std::fs::read_dir(&self.dir).map_err(Self::io(&self.dir, "listing"))?;
        for entry in entries {
            let entry = entry.map_err(Self::io(&self.dir, "listing"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.ends_with(".inprogress") || name.ends_with(".pending");
            let share = if info.others_running {
                own_prefix.as_str()
            } else {
                ".part-"
            };
            let stale_hidden = name.starts_with(share)
                && ours
                && !keep.contains(name.as_str())
                && !name.contains(&self.attempt);
            // A fresh (not restored) run replaces the output of earlier
            // runs; nothing is committed before every sink has opened.
            let earlier_output =
                info.restored.is_none() && !info.others_running && is_committed_name(&name);
            if stale_hidden || earlier_output {
                std::fs::remove_file(entry.path()).map_err(Self::io(&entry.path(), "removing"))?;
            }
        }
        self.sync_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::is_committed_name;

    #[test]
    fn only_committed_file_names_match() {
        assert!(is_committed_name("part-00001-0000000042"));
        assert!(!is_committed_name("part-00001"));
        assert!(!is_committed_name("part-0001-0000000042"));
        assert!(!is_committed_name(".part-00001-0000000042-x.pending"));
        assert!(!is_committed_name("notes.txt"));
    }
}
