//! Keyed state as bytes in a sorted key-value store: the [`SortedKv`]
//! contract a backend implements to hold state larger than memory
//! (RocksDB's in [`crate::rocks`]; a backend outside this crate the same
//! way), and the value, map, list and timer tables laid out on it.
//!
//! # Layout
//!
//! Every key starts with its key group (big-endian `u16`) and its table's
//! id (a stable 64-bit hash of the table name), so the state of a range of
//! key groups is one contiguous key range: it can be copied into another
//! instance when a job is restored at another parallelism. Values are the
//! postcard encoding of the table's values.
//!
//! - this module: [`SortedKv`], the key layout, and `KvTable`, where one
//!   table lives in a store.
//! - `tables`: the value (with a write-back cache), map and list stores.

pub(crate) mod tables;

use crate::codec::encode;
use crate::error::StateError;
use crate::snapshot::{NativeFiles, NativeSnapshot};
use crate::store::StateKey;
use std::sync::Arc;
use weir_protocol::key_group::stable_hash;
use weir_protocol::{Epoch, KeyGroup, KeyGroupRange};

/// A key and its value, as stored.
pub type RawEntry = (Vec<u8>, Vec<u8>);

/// A change to one key: its new value, or `None` to delete it.
pub type RawChange = (Vec<u8>, Option<Vec<u8>>);

/// The keyed state of one operator subtask in a backend that stores bytes:
/// a map from byte keys to byte values, ordered by key.
///
/// # Contract
///
/// - Keys sort bytewise: [`scan`](Self::scan) returns every entry whose key
///   starts with a prefix, in key order, and the entries of a range of key
///   groups are one contiguous range (see the module's layout).
/// - A write is visible to every later read; nothing needs to survive a
///   crash of the process (state is made durable by checkpoints, and a
///   crashed job restores from one).
/// - [`snapshot`](Self::snapshot) captures every write made before it; the
///   returned [`NativeSnapshot`] writes files that
///   [`restore_range`](Self::restore_range) (of any instance of the same
///   backend) reads back, while this instance keeps changing.
/// - Used by one subtask thread at a time, shared with the snapshots it
///   took (`Send + Sync`).
pub trait SortedKv: Send + Sync + std::fmt::Debug {
    /// The backend's name, as snapshots name their files' format.
    fn backend(&self) -> &'static str;
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Sets `key` to `value`.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StateError>;
    /// Deletes `key` (nothing if absent).
    fn delete(&self, key: &[u8]) -> Result<(), StateError>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<RawEntry>, StateError>;
    /// Applies many changes at once (a cache's, before a snapshot).
    fn apply(&self, changes: Vec<RawChange>) -> Result<(), StateError>;
    /// How many keys a value table may cache in front of the store.
    fn cache_entries(&self) -> usize;
    /// Captures the current contents, to be written as checkpoint files.
    fn snapshot(self: Arc<Self>, epoch: Epoch) -> Result<Box<dyn NativeSnapshot>, StateError>;
    /// Checkpoint `epoch` is complete: files it wrote may be referenced by
    /// later checkpoints instead of being written again.
    fn checkpoint_complete(&self, epoch: Epoch);
    /// Adds the entries of the key groups in `range` from a checkpointed
    /// instance of this backend.
    fn restore_range(&self, files: &NativeFiles, range: KeyGroupRange) -> Result<(), StateError>;
}

/// The id of a table in keys: a stable hash of its name.
pub(crate) fn table_id(name: &str) -> u64 {
    stable_hash(name)
}

/// Bytes every key starts with: key group and table id.
pub(crate) const PREFIX_LEN: usize = 10;

/// `[key group][table id]`: the first bytes of every key of a table in a
/// key group.
pub(crate) fn key_prefix(key_group: KeyGroup, table: u64) -> [u8; PREFIX_LEN] {
    let mut prefix = [0u8; PREFIX_LEN];
    prefix[..2].copy_from_slice(&key_group.to_be_bytes());
    prefix[2..].copy_from_slice(&table.to_be_bytes());
    prefix
}

/// The key group and table id a stored key starts with, if it is long enough.
pub(crate) fn split_prefix(key: &[u8]) -> Option<(KeyGroup, u64, &[u8])> {
    let prefix = key.get(..PREFIX_LEN)?;
    let key_group = u16::from_be_bytes([prefix[0], prefix[1]]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&prefix[2..]);
    Some((key_group, u64::from_be_bytes(id), &key[PREFIX_LEN..]))
}

/// The key group a stored key belongs to.
pub fn key_group_of_key(key: &[u8]) -> Option<KeyGroup> {
    key.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// Where one table lives in a [`SortedKv`].
#[derive(Debug, Clone)]
pub(crate) struct KvTable {
    pub(crate) kv: Arc<dyn SortedKv>,
    pub(crate) name: String,
    pub(crate) id: u64,
    pub(crate) range: KeyGroupRange,
}

impl KvTable {
    pub(crate) fn new(kv: Arc<dyn SortedKv>, name: &str, range: KeyGroupRange) -> Self {
        Self {
            kv,
            name: name.to_owned(),
            id: table_id(name),
            range,
        }
    }

    pub(crate) fn check(&self, key_group: KeyGroup) -> Result<(), StateError> {
        if self.range.contains(key_group) {
            Ok(())
        } else {
            Err(StateError::KeyGroupNotOwned {
                table: self.name.clone(),
                key_group,
                start: self.range.start,
                end: self.range.end,
            })
        }
    }

    pub(crate) fn prefix(&self, key_group: KeyGroup) -> [u8; PREFIX_LEN] {
        key_prefix(key_group, self.id)
    }

    /// `[key group][table][postcard(key)]`.
    pub(crate) fn key<K: StateKey>(
        &self,
        key_group: KeyGroup,
        key: &K,
    ) -> Result<Vec<u8>, StateError> {
        let mut bytes = self.prefix(key_group).to_vec();
        bytes.extend(encode(key, &self.name)?);
        Ok(bytes)
    }

    /// Number of entries of this table in its key groups.
    pub(crate) fn count(&self) -> usize {
        self.range
            .iter()
            .map(|g| self.kv.scan(&self.prefix(g)).map_or(0, |e| e.len()))
            .sum()
    }
}

/// Splits a map table's stored key (after its prefix) into the encoded key
/// and user key: `[len(key) as u32][key][user key]`.
pub(crate) fn split_map_key<'a>(
    key: &'a [u8],
    table: &str,
) -> Result<(&'a [u8], &'a [u8]), StateError> {
    let corrupt = || StateError::Corrupt {
        path: table.to_owned(),
        problem: "a map entry's key is too short".into(),
    };
    let len = key.get(..4).ok_or_else(corrupt)?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let encoded = key.get(4..4 + len).ok_or_else(corrupt)?;
    Ok((encoded, &key[4 + len..]))
}
