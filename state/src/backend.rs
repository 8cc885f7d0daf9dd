//! The [`StateBackend`] contract and the in-memory backend.

use crate::error::StateError;
use crate::snapshot::NativeFiles;
use crate::store::KeyedStateStore;
use weir_protocol::KeyGroupRange;

/// Whose state a [`KeyedStateStore`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateScope {
    /// Name of the job.
    pub job: String,
    /// Name of the operator (vertex).
    pub operator: String,
    /// Index of the subtask.
    pub subtask: u32,
    /// The key groups the subtask owns.
    pub key_groups: KeyGroupRange,
    /// The job's number of key groups.
    pub max_parallelism: u32,
}

/// Where keyed state lives.
///
/// A backend keeps state as objects (the heap) or as bytes in a
/// [`SortedKv`](crate::serialized::SortedKv) of its own, which gives each
/// store ([`KeyedStateStore::serialized`]) and writes snapshots in its own
/// file format; a backend outside this crate does the same and runs the
/// `conformance` suite.
///
/// # Contract
///
/// - [`open_keyed`](Self::open_keyed) returns a store that holds exactly the
///   key groups of its scope: an access to a key of another key group fails
///   with [`StateError::KeyGroupNotOwned`] and changes nothing.
/// - Stores of different scopes are independent: a write through one is
///   never visible through another.
/// - A freshly opened store is empty.
/// - A backend is shared by all subtasks of a worker (`Send + Sync`); a
///   store is used by one subtask thread at a time (`Send`).
pub trait StateBackend: Send + Sync + std::fmt::Debug {
    /// Short name, as given on the command line (`memory`, …).
    fn name(&self) -> &'static str;

    /// Opens the keyed state of one operator subtask.
    fn open_keyed(&self, scope: StateScope) -> Result<KeyedStateStore, StateError>;

    /// Opens the keyed state of one operator subtask holding the key groups
    /// of its scope from this backend's own snapshots. A backend may adopt
    /// a snapshot whole when it covers exactly the scope's key groups; by
    /// default the entries are copied in.
    fn open_keyed_from(
        &self,
        scope: StateScope,
        snapshots: &[NativeFiles],
    ) -> Result<KeyedStateStore, StateError> {
        let mut store = self.open_keyed(scope)?;
        for files in snapshots {
            store.restore_native(files)?;
        }
        Ok(store)
    }

    /// Calls `visit(key, value)` for every entry of one of this backend's
    /// own snapshots (to show a checkpoint's contents).
    fn scan_native(
        &self,
        files: &NativeFiles,
        visit: &mut VisitEntry<'_>,
    ) -> Result<(), StateError> {
        let _ = visit;
        Err(StateError::Backend {
            backend: self.name(),
            action: format!("reading a snapshot in the format of {}", files.backend),
            source: "this backend writes no files of its own".into(),
        })
    }
}

/// Visits one stored entry: (key, value).
pub type VisitEntry<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StateError> + 'a;

/// Keeps all state as Rust objects on the heap; the fastest backend, bounded
/// by memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryBackend;

impl StateBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn open_keyed(&self, scope: StateScope) -> Result<KeyedStateStore, StateError> {
        Ok(KeyedStateStore::on_heap(scope))
    }
}
