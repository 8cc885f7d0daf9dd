//! Typed keyed-state tables, each partitioned by key group.
//!
//! Every table keeps one map per owned key group behind an `Arc`. Taking a
//! snapshot ([`ErasedTable::freeze`]) clones those `Arc`s, which costs one
//! pointer per key group; the first write to a key group afterwards copies
//! that group's map (copy-on-write), so processing continues while the
//! frozen version is serialized elsewhere.
//!
//! Access takes the key group computed once per record by the caller (see
//! [`KeyedStateStore::key_group_of`](crate::KeyedStateStore::key_group_of)).

use crate::error::StateError;
use crate::store::{ErasedTable, FrozenTable, StateKey, StateKind, StateValue};
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;
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

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], table: &str) -> Result<T, StateError> {
    postcard::from_bytes(bytes).map_err(|source| StateError::Decode {
        table: table.to_owned(),
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

/// One value per key.
#[derive(Debug)]
pub struct ValueTable<K, V> {
    inner: ByKeyGroup<FxHashMap<K, V>>,
}

impl<K: StateKey, V: StateValue> ValueTable<K, V> {
    pub(crate) fn new(name: &str, range: KeyGroupRange) -> Self {
        Self {
            inner: ByKeyGroup::new(name, range),
        }
    }

    /// The value of `key`, if set.
    #[inline]
    pub fn get(&self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError> {
        Ok(self.inner.group(key_group)?.get(key).cloned())
    }

    /// Sets the value of `key`.
    #[inline]
    pub fn put(&mut self, key_group: KeyGroup, key: &K, value: V) -> Result<(), StateError> {
        self.inner.group_mut(key_group)?.insert(key.clone(), value);
        Ok(())
    }

    /// Removes the value of `key`, returning it.
    pub fn remove(&mut self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError> {
        Ok(self.inner.group_mut(key_group)?.remove(key))
    }

    /// Replaces the value of `key` by `f(old)` in one lookup; `None` from
    /// `f` removes it. Returns the new value.
    #[inline]
    pub fn update<F>(&mut self, key_group: KeyGroup, key: &K, f: F) -> Result<Option<V>, StateError>
    where
        F: FnOnce(Option<V>) -> Option<V>,
    {
        let group = self.inner.group_mut(key_group)?;
        match group.get_mut(key) {
            Some(slot) => match f(Some(slot.clone())) {
                Some(new) => {
                    *slot = new.clone();
                    Ok(Some(new))
                }
                None => {
                    group.remove(key);
                    Ok(None)
                }
            },
            None => {
                let new = f(None);
                if let Some(value) = &new {
                    group.insert(key.clone(), value.clone());
                }
                Ok(new)
            }
        }
    }

    /// Every key and value in one key group.
    pub fn iter_group(
        &self,
        key_group: KeyGroup,
    ) -> Result<impl Iterator<Item = (&K, &V)>, StateError> {
        Ok(self.inner.group(key_group)?.iter())
    }
}

impl<K: StateKey, V: StateValue> ErasedTable for ValueTable<K, V> {
    fn name(&self) -> &str {
        &self.inner.name
    }
    fn kind(&self) -> StateKind {
        StateKind::Value
    }
    fn entries(&self) -> usize {
        self.inner.groups().map(|g| g.len()).sum()
    }
    fn freeze(&self) -> Box<dyn FrozenTable> {
        Box::new(self.inner.freeze(StateKind::Value))
    }
    fn restore_key_group(&mut self, key_group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        let entries: Vec<(K, V)> = decode(bytes, &self.inner.name)?;
        self.inner.group_mut(key_group)?.extend(entries);
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A map from user keys to values, per key.
#[derive(Debug)]
pub struct MapTable<K, MK, MV> {
    inner: ByKeyGroup<FxHashMap<K, FxHashMap<MK, MV>>>,
}

impl<K: StateKey, MK: StateKey, MV: StateValue> MapTable<K, MK, MV> {
    pub(crate) fn new(name: &str, range: KeyGroupRange) -> Self {
        Self {
            inner: ByKeyGroup::new(name, range),
        }
    }

    /// The value under `user_key` in `key`'s map.
    pub fn get(
        &self,
        key_group: KeyGroup,
        key: &K,
        user_key: &MK,
    ) -> Result<Option<MV>, StateError> {
        Ok(self
            .inner
            .group(key_group)?
            .get(key)
            .and_then(|m| m.get(user_key))
            .cloned())
    }

    /// Sets `user_key` to `value` in `key`'s map.
    pub fn put(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        user_key: MK,
        value: MV,
    ) -> Result<(), StateError> {
        let group = self.inner.group_mut(key_group)?;
        match group.get_mut(key) {
            Some(map) => {
                map.insert(user_key, value);
            }
            None => {
                let mut map = FxHashMap::default();
                map.insert(user_key, value);
                group.insert(key.clone(), map);
            }
        }
        Ok(())
    }

    /// Removes `user_key` from `key`'s map, returning its value.
    pub fn remove(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        user_key: &MK,
    ) -> Result<Option<MV>, StateError> {
        let group = self.inner.group_mut(key_group)?;
        let Some(map) = group.get_mut(key) else {
            return Ok(None);
        };
        let removed = map.remove(user_key);
        if map.is_empty() {
            group.remove(key);
        }
        Ok(removed)
    }

    /// The entries of `key`'s map, in no particular order.
    pub fn entries(&self, key_group: KeyGroup, key: &K) -> Result<Vec<(MK, MV)>, StateError> {
        Ok(self
            .inner
            .group(key_group)?
            .get(key)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    /// Removes `key`'s whole map.
    pub fn clear(&mut self, key_group: KeyGroup, key: &K) -> Result<(), StateError> {
        self.inner.group_mut(key_group)?.remove(key);
        Ok(())
    }
}

impl<K: StateKey, MK: StateKey, MV: StateValue> ErasedTable for MapTable<K, MK, MV> {
    fn name(&self) -> &str {
        &self.inner.name
    }
    fn kind(&self) -> StateKind {
        StateKind::Map
    }
    fn entries(&self) -> usize {
        self.inner
            .groups()
            .flat_map(|g| g.values())
            .map(|m| m.len())
            .sum()
    }
    fn freeze(&self) -> Box<dyn FrozenTable> {
        Box::new(self.inner.freeze(StateKind::Map))
    }
    fn restore_key_group(&mut self, key_group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        let entries: Vec<(K, FxHashMap<MK, MV>)> = decode(bytes, &self.inner.name)?;
        self.inner.group_mut(key_group)?.extend(entries);
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A list of values per key, in insertion order.
#[derive(Debug)]
pub struct ListTable<K, V> {
    inner: ByKeyGroup<FxHashMap<K, Vec<V>>>,
}

impl<K: StateKey, V: StateValue> ListTable<K, V> {
    pub(crate) fn new(name: &str, range: KeyGroupRange) -> Self {
        Self {
            inner: ByKeyGroup::new(name, range),
        }
    }

    /// Appends `value` to `key`'s list.
    pub fn push(&mut self, key_group: KeyGroup, key: &K, value: V) -> Result<(), StateError> {
        let group = self.inner.group_mut(key_group)?;
        match group.get_mut(key) {
            Some(list) => list.push(value),
            None => {
                group.insert(key.clone(), vec![value]);
            }
        }
        Ok(())
    }

    /// `key`'s list (empty if none).
    pub fn get(&self, key_group: KeyGroup, key: &K) -> Result<Vec<V>, StateError> {
        Ok(self
            .inner
            .group(key_group)?
            .get(key)
            .cloned()
            .unwrap_or_default())
    }

    /// Replaces `key`'s list; an empty list removes it.
    pub fn replace(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        values: Vec<V>,
    ) -> Result<(), StateError> {
        let group = self.inner.group_mut(key_group)?;
        if values.is_empty() {
            group.remove(key);
        } else {
            group.insert(key.clone(), values);
        }
        Ok(())
    }

    /// Removes and returns `key`'s list.
    pub fn take(&mut self, key_group: KeyGroup, key: &K) -> Result<Vec<V>, StateError> {
        Ok(self
            .inner
            .group_mut(key_group)?
            .remove(key)
            .unwrap_or_default())
    }
}

impl<K: StateKey, V: StateValue> ErasedTable for ListTable<K, V> {
    fn name(&self) -> &str {
        &self.inner.name
    }
    fn kind(&self) -> StateKind {
        StateKind::List
    }
    fn entries(&self) -> usize {
        self.inner
            .groups()
            .flat_map(|g| g.values())
            .map(|l| l.len())
            .sum()
    }
    fn freeze(&self) -> Box<dyn FrozenTable> {
        Box::new(self.inner.freeze(StateKind::List))
    }
    fn restore_key_group(&mut self, key_group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        let entries: Vec<(K, Vec<V>)> = decode(bytes, &self.inner.name)?;
        self.inner.group_mut(key_group)?.extend(entries);
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
