//! RocksDB snapshots: local checkpoints, incremental uploads, and restores
//! of key-group ranges.

use super::{options, rocks_error, RocksDb, BACKEND};
use crate::backend::VisitEntry;
use crate::error::StateError;
use crate::serialized::key_group_of_key;
use crate::snapshot::{NativeFiles, NativeSnapshot, PutFile};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use weir_protocol::checkpoint::paths;
use weir_protocol::{Epoch, KeyGroupRange, StateFile, StateFileFormat};

/// Which SST files are safely in shared storage.
///
/// An SST uploaded (or reused) by checkpoint `e` may be reused by later
/// checkpoints only once `e` is complete: until then nothing guarantees
/// that a retained manifest references it.
#[derive(Debug, Default)]
pub(crate) struct Incremental {
    inner: Mutex<IncrementalFiles>,
}

#[derive(Debug, Default)]
struct IncrementalFiles {
    /// SSTs referenced by the newest complete checkpoint, by local name.
    confirmed: HashMap<String, StateFile>,
    /// SSTs referenced by checkpoints not yet known to be complete.
    by_epoch: BTreeMap<Epoch, HashMap<String, StateFile>>,
}

impl Incremental {
    fn lock(&self) -> std::sync::MutexGuard<'_, IncrementalFiles> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reusable(&self, name: &str) -> Option<StateFile> {
        self.lock().confirmed.get(name).cloned()
    }

    fn record(&self, epoch: Epoch, name: &str, file: &StateFile) {
        self.lock()
            .by_epoch
            .entry(epoch)
            .or_default()
            .insert(name.to_owned(), file.clone());
    }

    /// Checkpoint `epoch` is complete: its SSTs become the reusable ones.
    pub(crate) fn confirm(&self, epoch: Epoch) {
        let mut files = self.lock();
        if let Some(referenced) = files.by_epoch.remove(&epoch) {
            files.confirmed = referenced;
        }
        files.by_epoch.retain(|e, _| *e > epoch);
    }
}

/// A RocksDB checkpoint on local disk, waiting to be uploaded; the local
/// copy is deleted when this is dropped.
pub struct RocksSnapshot {
    pub(crate) local: PathBuf,
    pub(crate) db: Arc<RocksDb>,
    pub(crate) epoch: Epoch,
}

impl std::fmt::Debug for RocksSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksSnapshot")
            .field("local", &self.local)
            .finish()
    }
}

impl Drop for RocksSnapshot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.local);
    }
}

fn local_io<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::LocalIo {
        action,
        path: path.display().to_string(),
        source,
    }
}

impl NativeSnapshot for RocksSnapshot {
    /// Uploads the checkpoint's files with `put(job-relative path, bytes)`:
    /// SSTs that a complete checkpoint already uploaded are referenced, new
    /// SSTs go to `shared/{instance}/{epoch}-{name}`, the rest (manifest,
    /// options, current) to `{task_dir}/db/{name}`.
    fn write(&self, task_dir: &str, put: &mut PutFile<'_>) -> Result<Vec<StateFile>, StateError> {
        self.upload(task_dir, put)
    }
}

impl RocksSnapshot {
    /// Takes a RocksDB checkpoint of `db` (hard links to its SSTs).
    pub(crate) fn take(db: &Arc<RocksDb>, epoch: Epoch) -> Result<Self, StateError> {
        let local = db.dir().with_extension(format!("chk-{}", epoch.0));
        let _ = std::fs::remove_dir_all(&local);
        let checkpoint =
            Checkpoint::new(db.db()).map_err(rocks_error(db.dir(), "checkpointing"))?;
        checkpoint
            .create_checkpoint(&local)
            .map_err(rocks_error(&local, "creating a checkpoint in"))?;
        Ok(Self {
            local,
            db: db.clone(),
            epoch,
        })
    }

    fn upload(&self, task_dir: &str, put: &mut PutFile<'_>) -> Result<Vec<StateFile>, StateError> {
        let mut names: Vec<String> = std::fs::read_dir(&self.local)
            .map_err(local_io(&self.local, "listing"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let is_sst = name.ends_with(".sst");
            if is_sst {
                if let Some(file) = self.db.incremental.reusable(&name) {
                    self.db.incremental.record(self.epoch, &name, &file);
                    files.push(file);
                    continue;
                }
            }
            let path = self.local.join(&name);
            let bytes = std::fs::read(&path).map_err(local_io(&path, "reading"))?;
            let relative = if is_sst {
                paths::shared_file(self.db.uid(), self.epoch, &name)
            } else {
                format!("{task_dir}/db/{name}")
            };
            let file = StateFile {
                path: relative.clone(),
                size: bytes.len() as u64,
                crc32c: crc32c::crc32c(&bytes),
                key_groups: Vec::new(),
                format: StateFileFormat::Native {
                    backend: BACKEND.into(),
                    name: name.clone(),
                },
            };
            put(&relative, bytes)?;
            if is_sst {
                self.db.incremental.record(self.epoch, &name, &file);
            }
            files.push(file);
        }
        Ok(files)
    }
}

/// Copies the entries of the key groups in `range` from a checkpointed
/// instance into `target`.
pub(crate) fn restore_range(
    target: &RocksDb,
    restored: &NativeFiles,
    range: KeyGroupRange,
) -> Result<(), StateError> {
    let start = range.start.max(restored.key_groups.start);
    let end = range.end.min(restored.key_groups.end);
    if start >= end {
        return Ok(());
    }
    let scratch = target
        .dir()
        .with_extension(format!("restore-{start}-{end}"));
    let result =
        materialize(restored, &scratch).and_then(|()| copy_range(&scratch, target, start, end));
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Writes a checkpointed instance's files into a fresh directory `scratch`.
pub(crate) fn materialize(restored: &NativeFiles, scratch: &Path) -> Result<(), StateError> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(local_io(scratch, "creating"))?;
    let names = restored
        .files
        .iter()
        .map(|(name, _)| name)
        .chain(restored.local.iter().map(|(name, _)| name));
    for name in names {
        if name.contains('/') || name.contains("..") {
            return Err(StateError::Corrupt {
                path: name.clone(),
                problem: "a RocksDB file name must not contain a path".into(),
            });
        }
    }
    for (name, copy) in &restored.local {
        let path = scratch.join(name);
        // A link shares the copy's blocks: local copies are shared SSTs,
        // which RocksDB never rewrites (it only deletes them, which leaves
        // the copy). Across file systems, copy instead.
        if std::fs::hard_link(copy, &path).is_err() {
            std::fs::copy(copy, &path).map_err(local_io(&path, "copying"))?;
        }
    }
    for (name, bytes) in &restored.files {
        let path = scratch.join(name);
        std::fs::write(&path, bytes).map_err(local_io(&path, "writing"))?;
    }
    Ok(())
}

fn copy_range(scratch: &Path, target: &RocksDb, start: u16, end: u16) -> Result<(), StateError> {
    let source = DB::open_for_read_only(&options(), scratch, false)
        .map_err(rocks_error(scratch, "opening"))?;
    let from = start.to_be_bytes();
    let mut batch = WriteBatch::default();
    for entry in source.iterator(IteratorMode::From(&from, Direction::Forward)) {
        let (key, value) = entry.map_err(rocks_error(scratch, "reading"))?;
        match key_group_of_key(&key) {
            Some(group) if group < end => batch.put(&key, &value),
            _ => break,
        }
        if batch.len() >= 10_000 {
            target
                .db()
                .write_opt(std::mem::take(&mut batch), target.write_options())
                .map_err(rocks_error(scratch, "restoring into"))?;
        }
    }
    target
        .db()
        .write_opt(batch, target.write_options())
        .map_err(rocks_error(scratch, "restoring into"))
}

/// Calls `visit(key, value)` for every entry of a checkpointed instance.
pub(crate) fn scan_checkpointed(
    restored: &NativeFiles,
    visit: &mut VisitEntry<'_>,
) -> Result<(), StateError> {
    let scratch = std::env::temp_dir().join(format!("weir-dump-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        materialize(restored, &scratch)?;
        let db = DB::open_for_read_only(&options(), &scratch, false)
            .map_err(rocks_error(&scratch, "opening"))?;
        for entry in db.iterator(IteratorMode::Start) {
            let (key, value) = entry.map_err(rocks_error(&scratch, "reading"))?;
            visit(&key, &value)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}
