//! What a backend's storage of each kind of table does: the seam between
//! the typed tables operators use ([`crate::tables`]) and where their
//! entries live. The heap ([`crate::heap`]) keeps them as objects; the
//! serialized stores ([`crate::serialized`]) keep them as bytes in any
//! [`SortedKv`](crate::serialized::SortedKv), RocksDB's among them.
//!
//! # Contract (every implementation; `conformance` checks it)
//!
//! - Every access names the key group of its key, computed once per record
//!   by the caller; a key group outside the table's range fails with
//!   [`StateError::KeyGroupNotOwned`] and changes nothing.
//! - A write is visible to the next read of the same table, before any
//!   [`flush`](StoredTable::flush).
//! - `restore` adds a key group's entries as a snapshot section held them;
//!   entries of the same key are replaced.

use crate::error::StateError;
use crate::store::{FrozenTable, StateKind};
use rustc_hash::FxHashMap;
use weir_protocol::KeyGroup;

/// What the storage of every table does, whatever its kind.
pub(crate) trait StoredTable: Send {
    /// The table's name.
    fn name(&self) -> &str;
    /// Number of entries: values, map entries or lists.
    fn entries(&mut self) -> usize;
    /// The contents, shared copy-on-write, for a key-group-sections
    /// snapshot; `None` (the default) when the backend snapshots its
    /// instance as a whole.
    fn freeze(&self, kind: StateKind) -> Option<Box<dyn FrozenTable>> {
        let _ = kind;
        None
    }
    /// Writes what a cache holds to the backend, before a snapshot
    /// (nothing, for a store without a cache).
    fn flush(&mut self) -> Result<(), StateError> {
        Ok(())
    }
}

/// One value per key.
pub(crate) trait ValueStore<K, V>: StoredTable {
    fn get(&mut self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError>;
    fn put(&mut self, key_group: KeyGroup, key: &K, value: V) -> Result<(), StateError>;
    fn remove(&mut self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError>;
    /// Replaces the value by `f(old)` (`None` removes it) in one lookup,
    /// calling `f` exactly once; returns the new value.
    fn update(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        f: &mut dyn FnMut(Option<V>) -> Option<V>,
    ) -> Result<Option<V>, StateError>;
    fn restore(&mut self, key_group: KeyGroup, entries: Vec<(K, V)>) -> Result<(), StateError>;
}

/// A map from user keys to values, per key.
pub(crate) trait MapStore<K, MK, MV>: StoredTable {
    fn get(&self, key_group: KeyGroup, key: &K, user_key: &MK) -> Result<Option<MV>, StateError>;
    fn put(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        user_key: MK,
        value: MV,
    ) -> Result<(), StateError>;
    fn remove(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        user_key: &MK,
    ) -> Result<Option<MV>, StateError>;
    /// The entries of `key`'s map, in no particular order.
    fn entries_of(&self, key_group: KeyGroup, key: &K) -> Result<Vec<(MK, MV)>, StateError>;
    fn clear(&mut self, key_group: KeyGroup, key: &K) -> Result<(), StateError>;
    fn restore(
        &mut self,
        key_group: KeyGroup,
        entries: Vec<(K, FxHashMap<MK, MV>)>,
    ) -> Result<(), StateError>;
}

/// A list of values per key, in insertion order.
pub(crate) trait ListStore<K, V>: StoredTable {
    fn push(&mut self, key_group: KeyGroup, key: &K, value: V) -> Result<(), StateError>;
    /// `key`'s list (empty if none).
    fn get(&self, key_group: KeyGroup, key: &K) -> Result<Vec<V>, StateError>;
    /// Replaces `key`'s list; an empty list removes it.
    fn replace(&mut self, key_group: KeyGroup, key: &K, values: Vec<V>) -> Result<(), StateError>;
    fn take(&mut self, key_group: KeyGroup, key: &K) -> Result<Vec<V>, StateError>;
    fn restore(&mut self, key_group: KeyGroup, entries: Vec<(K, Vec<V>)>)
        -> Result<(), StateError>;
}
