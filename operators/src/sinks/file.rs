//! A sink that writes lines into files in a directory, exactly once when
//! the job checkpoints.
//!
//! Without checkpoints, subtask `j` writes `DIR/part-<j>` directly.
//!
//! With checkpoints it runs a two-phase commit, as Flink's file sink does:
//!
//! 1. records go to a hidden in-progress file `.part-<j>-<attempt>.inprogress`;
//! 2. at the barrier of checkpoint `e` the file is synced and renamed to the
//!    hidden pending file `.part-<j>-<e>-<attempt>.pending`, and the list of
//!    pending files becomes the sink's checkpointed state (pre-commit);
//! 3. when checkpoint `e` completes, every pending file up to `e` is renamed
//!    to the visible `part-<j>-<e>` (commit; a rename that already happened
//!    is skipped, so commits can be replayed).
//!
//! A run that is not restored replaces the committed files of earlier runs
//! in the directory. On restore from checkpoint `c`, the pending files recorded in `c` are
//! committed (they may not have been before the crash) and every other
//! hidden file of earlier attempts is deleted: its records come again from
//! the restored sources. The directory therefore never shows a record
//! twice, nor one that a restored run will produce again.

use super::Sink;
use crate::data::Data;
use crate::error::OperatorError;
use crate::task::TaskInfo;
use serde::{Deserialize, Serialize};
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

/// The checkpointed state: pre-committed files not known to be committed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PendingFiles {
    pending: Vec<(u64, String)>,
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
    /// Pre-committed files (epoch, file name) not yet committed.
    pending: Vec<(u64, String)>,
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
            pending: Vec::new(),
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

    /// Renames pending file `name` (of old subtask `subtask`) to its
    /// committed name; done already is fine.
    fn commit_file(&self, subtask: u32, epoch: u64, name: &str) -> Result<(), OperatorError> {
        if name.contains('/') || !name.starts_with(".part-") {
            return Err(OperatorError::user(format!(
                "file sink: checkpointed pending file name '{name}' is not one of ours"
            )));
        }
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

    /// After a restore: commits what the checkpoint pre-committed for the
    /// old subtasks this subtask takes over, and (subtask 0) deletes every
    /// hidden file no restored checkpoint needs.
    fn recover(&mut self, info: &TaskInfo) -> Result<(), OperatorError> {
        let mut keep = HashSet::new();
        if let Some(restored) = &info.restored {
            for (old, state) in restored.operator_states.iter().enumerate() {
                let Some(json) = state else { continue };
                let state: PendingFiles = serde_json::from_str(json).map_err(|e| {
                    OperatorError::user_caused_by("file sink: unreadable checkpointed state", e)
                })?;
                for (epoch, name) in state.pending {
                    if epoch <= restored.epoch.0 {
                        if old as u32 % info.parallelism == info.subtask {
                            self.commit_file(old as u32, epoch, &name)?;
                        }
                        keep.insert(name);
                    }
                }
            }
        }
        if info.subtask == 0 {
            let entries = std::fs::read_dir(&self.dir).map_err(Self::io(&self.dir, "listing"))?;
            for entry in entries {
                let entry = entry.map_err(Self::io(&self.dir, "listing"))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = name.ends_with(".inprogress") || name.ends_with(".pending");
                let stale_hidden = name.starts_with(".part-")
                    && ours
                    && !keep.contains(&name)
                    && !name.contains(&self.attempt);
                // A fresh (not restored) run replaces the output of earlier
                // runs; nothing is committed before every sink has opened.
                let earlier_output = info.restored.is_none() && is_committed_name(&name);
                if stale_hidden || earlier_output {
                    std::fs::remove_file(entry.path())
                        .map_err(Self::io(&entry.path(), "removing"))?;
                }
            }
        }
        self.sync_dir()
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

impl<T: Data + Display> Sink<T> for FileSink {
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
            self.recover(info)?;
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
        if !self.transactional {
            return Ok(None);
        }
        if self.close_current()? {
            let name = format!(
                ".part-{:05}-{:010}-{}.pending",
                self.subtask, epoch.0, self.attempt
            );
            let pending = self.dir.join(&name);
            std::fs::rename(&self.current, &pending)
                .map_err(Self::io(&self.current, "renaming"))?;
            self.sync_dir()?;
            self.pending.push((epoch.0, name));
        }
        let state = PendingFiles {
            pending: self.pending.clone(),
        };
        serde_json::to_string(&state)
            .map(Some)
            .map_err(|e| OperatorError::user_caused_by("file sink: encoding state", e))
    }

    fn commit(&mut self, epoch: Epoch) -> Result<(), OperatorError> {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(e, _)| *e <= epoch.0);
        self.pending = later;
        for (e, name) in &due {
            self.commit_file(self.subtask, *e, name)?;
        }
        if !due.is_empty() {
            self.sync_dir()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        if self.transactional {
            // Records after the last barrier wait for the final checkpoint.
            if let Some(writer) = self.writer.as_mut() {
                writer
                    .flush()
                    .map_err(Self::io(&self.current, "flushing"))?;
            }
            return Ok(());
        }
        self.close_current().map(|_| ())
    }

    fn has_pending_commits(&self) -> bool {
        self.transactional && (self.writer.is_some() || !self.pending.is_empty())
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
