//! Heap storage of keyed state: one map per key group behind an `Arc`, so
//! that a snapshot shares them and the first write afterwards copies one
//! group (copy-on-write).
//!
//! - this module: [`ByKeyGroup`], the maps of a table, and [`Frozen`], them
//!   at a snapshot.
//! - `tables`: the value, map and list stores on it.

mod tables;

pub(crate) use tables::{HeapList, HeapMap, HeapValue};

use crate::codec::encode;
use crate::error::StateError;
use crate::store::{FrozenTable, StateKey, StateKind};
use rustc_hash::FxHashMap;
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

impl<K, V> ByKeyGroup<FxHashMap<K, V>> {
    /// Entries in every group, counting `entries_in(value)` per key.
    pub(crate) fn entries(&self, entries_in: impl Fn(&V) -> usize) -> usize {
        self.groups
            .iter()
            .flat_map(|g| g.values())
            .map(entries_in)
            .sum()
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
