//! Heap storage of keyed state: one map per key group behind an `Arc`
//! (copy-on-write snapshots), and the postcard encoding every backend uses
//! for keys and values.

use crate::error::StateError;
use crate::store::{FrozenTable, StateKey, StateKind};
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use weir_protocol::{KeyGroup, KeyGroupRange};

/// One `M` per key group of a range, copy-on-write.
#[derive(Debug)]
pub(crate) struct ByKeyGroup<M> {
    pub(crate) name: String,
    range: KeyGroupRange,
    groups: Vec<Arc<M>>,
}

impl<M: Default + Clone> ByKeyGroup<M> {
    pub(crate) fn new(name: &str, range: KeyGroupRange) -> Self {
        Self {
            name: name.to_owned(),
            range,
            groups: (0..range.len()).map(|_| Arc::new(M::default())).collect(),
        }
    }

    #[inline]
    pub(crate) fn group(&self, key_group: KeyGroup) -> Result<&M, StateError> {
        if !self.range.contains(key_group) {
            return Err(self.not_owned(key_group));
        }
        Ok(&self.groups[usize::from(key_group - self.range.start)])
    }

    #[inline]
    pub(crate) fn group_mut(&mut self, key_group: KeyGroup) -> Result<&mut M, StateError> {
        if !self.range.contains(key_group) {
            return Err(self.not_owned(key_group));
        }
        // Copies the group only if a snapshot still holds it.
        Ok(Arc::make_mut(
            &mut self.groups[usize::from(key_group - self.range.start)],
        ))
    }

    pub(crate) fn groups(&self) -> impl Iterator<Item = &M> {
        self.groups.iter().map(|g| g.as_ref())
    }

    /// The current version of every group, shared with the live table.
    pub(crate) fn freeze(&self, kind: StateKind) -> Frozen<M> {
        Frozen {
            name: self.name.clone(),
            kind,
            range: self.range,
            groups: self.groups.clone(),
        }
    }

    fn not_owned(&self, key_group: KeyGroup) -> StateError {
        StateError::KeyGroupNotOwned {
            table: self.name.clone(),
            key_group,
            start: self.range.start,
            end: self.range.end,
        }
    }
}

/// A table's key groups as they were at a snapshot.
pub(crate) struct Frozen<M> {
    name: String,
    kind: StateKind,
    range: KeyGroupRange,
    groups: Vec<Arc<M>>,
}

impl<M> Frozen<M> {
    fn group(&self, key_group: KeyGroup) -> Option<&M> {
        if self.range.contains(key_group) {
            Some(&self.groups[usize::from(key_group - self.range.start)])
        } else {
            None
        }
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, table: &str) -> Result<Vec<u8>, StateError> {
    postcard::to_stdvec(value).map_err(|source| StateError::Encode {
        table: table.to_owned(),
        source,
    })
}

/// Appends the encoding of `value` to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    table: &str,
) -> Result<(), StateError> {
    let taken = std::mem::take(out);
    *out = postcard::to_extend(value, taken).map_err(|source| StateError::Encode {
        table: table.to_owned(),
        source,
    })?;
    Ok(())
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], table: &str) -> Result<T, StateError> {
    postcard::from_bytes(bytes).map_err(|source| StateError::Decode {
        table: table.to_owned(),
        key_group: None,
        source,
    })
}

/// [`decode`]s the snapshot section of `key_group`, naming it on failure.
pub(crate) fn decode_group<T: DeserializeOwned>(
    bytes: &[u8],
    table: &str,
    key_group: KeyGroup,
) -> Result<T, StateError> {
    postcard::from_bytes(bytes).map_err(|source| StateError::Decode {
        table: table.to_owned(),
        key_group: Some(key_group),
        source,
    })
}

impl<K, V> FrozenTable for Frozen<FxHashMap<K, V>>
where
    K: StateKey,
    V: Serialize + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> StateKind {
        self.kind
    }
    fn encode_key_group(&self, key_group: KeyGroup) -> Result<Option<Vec<u8>>, StateError> {
        match self.group(key_group) {
            Some(map) if !map.is_empty() => {
                let entries: Vec<_> = map.iter().collect();
                encode(&entries, &self.name).map(Some)
            }
            _ => Ok(None),
        }
    }
}
