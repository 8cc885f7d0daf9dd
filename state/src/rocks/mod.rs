//! The RocksDB state backend: keyed state larger than memory.
//!
//! One RocksDB instance per operator subtask, in a local working directory,
//! is the subtask's [`SortedKv`](crate::serialized::SortedKv): the tables
//! are laid out in it as [`crate::serialized`] says, so that a range of key
//! groups is one contiguous key range, copied into another instance when a
//! job is restored at another parallelism.
//!
//! The serialized value tables keep a write-back cache in front of the
//! database; a snapshot first writes the caches' changes, then takes a RocksDB
//! checkpoint (hard links to the immutable SST files). The files are
//! uploaded off the task thread; an SST already uploaded by a complete
//! checkpoint is referenced from `shared/` instead of being uploaded again,
//! which makes checkpoints incremental.
//!
//! # Layout
//!
//! - this module: [`RocksDbBackend`] and [`RocksDb`], the per-subtask
//!   instance.
//! - `kv`: the instance as a `SortedKv`.
//! - `checkpoint`: local checkpoints, incremental upload bookkeeping, and
//!   restoring key-group ranges from checkpointed instances.

pub(crate) mod checkpoint;
mod kv;

pub use checkpoint::RocksSnapshot;

use crate::backend::{StateBackend, StateScope, VisitEntry};
use crate::error::StateError;
use crate::owned_dir::OwnedDir;
use crate::snapshot::NativeFiles;
use crate::store::KeyedStateStore;
use rocksdb::{Options, WriteOptions, DB};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The backend's name, on the command line and in snapshot file formats.
pub const BACKEND: &str = "rocksdb";

/// Keeps keyed state in RocksDB instances under a local directory.
#[derive(Debug, Clone)]
pub struct RocksDbBackend {
    local_dir: PathBuf,
    cache_entries: usize,
    owned: Arc<OnceLock<Arc<OwnedDir>>>,
}

impl RocksDbBackend {
    /// A backend whose instances live under `local_dir`, each value table
    /// caching up to `cache_entries` keys.
    pub fn new(local_dir: impl Into<PathBuf>, cache_entries: usize) -> Self {
        Self {
            local_dir: local_dir.into(),
            cache_entries,
            owned: Arc::new(OnceLock::new()),
        }
    }

    /// The default: under the data directory, 500,000 cached keys per table.
    pub fn default_location() -> Self {
        Self::new(crate::storage::data_dir().join("rocksdb"), 500_000)
    }
}

/// Distinguishes instances opened by one process.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);

impl StateBackend for RocksDbBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn open_keyed(&self, scope: StateScope) -> Result<KeyedStateStore, StateError> {
        let (dir, uid, owner) = self.instance_dir(&scope)?;
        let db = RocksDb::open(dir, uid, owner, self.cache_entries)?;
        Ok(KeyedStateStore::serialized(scope, Arc::new(db)))
    }

    /// A checkpointed instance that holds exactly the scope's key groups
    /// (a restore at the same parallelism) becomes the new instance as it
    /// is: its files are written into the instance directory and opened,
    /// instead of copying every entry.
    fn open_keyed_from(
        &self,
        scope: StateScope,
        snapshots: &[NativeFiles],
    ) -> Result<KeyedStateStore, StateError> {
        let whole = match snapshots {
            [whole] if whole.key_groups == scope.key_groups && whole.backend == BACKEND => whole,
            _ => {
                let mut store = self.open_keyed(scope)?;
                for files in snapshots {
                    store.restore_native(files)?;
                }
                return Ok(store);
            }
        };
        let (dir, uid, owner) = self.instance_dir(&scope)?;
        checkpoint::materialize(whole, &dir)?;
        let db = RocksDb::open(dir, uid, owner, self.cache_entries)?;
        Ok(KeyedStateStore::serialized(scope, Arc::new(db)))
    }

    fn scan_native(
        &self,
        files: &NativeFiles,
        visit: &mut VisitEntry<'_>,
    ) -> Result<(), StateError> {
        checkpoint::scan_checkpointed(files, visit)
    }
}

impl RocksDbBackend {
    /// A fresh instance directory and uid for `scope`. Instances live in
    /// this process's [`OwnedDir`] under the local directory (claimed on
    /// first use, which deletes those of processes that were killed).
    fn instance_dir(
        &self,
        scope: &StateScope,
    ) -> Result<(PathBuf, String, Arc<OwnedDir>), StateError> {
        let owned = match self.owned.get() {
            Some(owned) => owned,
            None => {
                let claimed =
                    OwnedDir::claim(&self.local_dir).map_err(|source| StateError::LocalIo {
                        action: "claiming a directory for RocksDB instances in",
                        path: self.local_dir.display().to_string(),
                        source,
                    })?;
                // A racing thread's claim may win; ours is deleted on drop.
                self.owned.get_or_init(|| Arc::new(claimed))
            }
        };
        // Unique across processes and time: incremental checkpoints name
        // their shared files by it.
        let uid = uuid::Uuid::new_v4().simple().to_string();
        let dir = owned.path().join(format!(
            "{}-{}-{}",
            sanitize(&scope.operator),
            scope.subtask,
            NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)
        ));
        Ok((dir, uid, owned.clone()))
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One subtask's RocksDB instance; deleted from disk when dropped.
pub struct RocksDb {
    db: Option<DB>,
    dir: PathBuf,
    uid: String,
    /// The process's directory holding `dir`: kept until `dir` is deleted.
    owner: Option<Arc<OwnedDir>>,
    cache_entries: usize,
    write_options: WriteOptions,
    pub(crate) incremental: checkpoint::Incremental,
}

impl std::fmt::Debug for RocksDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDb").field("dir", &self.dir).finish()
    }
}

pub(crate) fn options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    // Memtable flushes happen at every checkpoint, on the task's clock:
    // keep them cheap (no compression in L0 and L1), compress below.
    use rocksdb::DBCompressionType::{Lz4, None as Uncompressed, Zstd};
    options.set_compression_per_level(&[Uncompressed, Uncompressed, Lz4, Lz4, Lz4, Lz4, Zstd]);
    options
}

pub(crate) fn rocks_error<'a>(
    dir: &'a Path,
    action: &'static str,
) -> impl FnOnce(rocksdb::Error) -> StateError + 'a {
    move |source| StateError::RocksDb {
        action,
        path: dir.display().to_string(),
        source,
    }
}

impl RocksDb {
    fn open(
        dir: PathBuf,
        uid: String,
        owner: Arc<OwnedDir>,
        cache_entries: usize,
    ) -> Result<Self, StateError> {
        std::fs::create_dir_all(&dir).map_err(|source| StateError::LocalIo {
            action: "creating",
            path: dir.display().to_string(),
            source,
        })?;
        let db = DB::open(&options(), &dir).map_err(rocks_error(&dir, "opening"))?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Ok(Self {
            db: Some(db),
            dir,
            uid,
            owner: Some(owner),
            cache_entries,
            write_options,
            incremental: checkpoint::Incremental::default(),
        })
    }

    pub(crate) fn db(&self) -> &DB {
        self.db.as_ref().expect("open until dropped")
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Identifies this instance in shared file names.
    pub(crate) fn uid(&self) -> &str {
        &self.uid
    }

    /// How every write goes in: without the write-ahead log, because state
    /// is made durable by checkpoints (which flush the memtable), not by
    /// the log; a crash restores from the last checkpoint anyway.
    pub(crate) fn write_options(&self) -> &WriteOptions {
        &self.write_options
    }
}

impl Drop for RocksDb {
    fn drop(&mut self) {
        // Closing flushes what the memtables hold (the write-ahead log is
        // off), which for a large instance takes a while; nobody reads the
        // instance again, so a task (and a cancelled deployment) need not
        // wait for it: close and delete it in the background.
        let db = self.db.take();
        // Nor does anybody need what its memtables hold: a restart restores
        // from a checkpoint. Not flushing them on close leaves the CPU and
        // the disk to that restore (a mutable option, set here for every
        // way an instance was opened).
        if let Some(db) = &db {
            if let Err(error) = db.set_options(&[("avoid_flush_during_shutdown", "true")]) {
                tracing::debug!(%error, "closing an instance with a flush");
            }
        }
        let dir = std::mem::take(&mut self.dir);
        let owner = self.owner.take();
        let close = move || {
            drop(db);
            let _ = std::fs::remove_dir_all(&dir);
            drop(owner);
        };
        match std::thread::Builder::new()
            .name("rocksdb-close".into())
            .spawn(close)
        {
            Ok(handle) => CLOSING
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(handle),
            Err(_) => tracing::warn!("could not close a RocksDB instance in the background"),
        }
    }
}

/// Instances being closed in the background.
static CLOSING: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Waits until every dropped instance is closed and deleted (before a
/// process exits, so that it leaves no instance behind).
pub fn finish_background_closes() {
    let closing = std::mem::take(&mut *CLOSING.lock().unwrap_or_else(|p| p.into_inner()));
    for handle in closing {
        let _ = handle.join();
    }
}
