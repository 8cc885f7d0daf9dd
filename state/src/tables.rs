//! Typed keyed-state tables, each partitioned by key group.
//!
//! Every table keeps one map per owned key group. Access takes the key
//! group computed once per record by the caller (see
//! [`KeyedStateStore::key_group_of`](crate::KeyedStateStore::key_group_of)),
//! so a record touching several states hashes its key for grouping once.

use crate::error::StateError;
use crate::store::{ErasedTable, StateKey, StateKind, StateValue};
use rustc_hash::FxHashMap;
use std::any::Any;
use weir_protocol::{KeyGroup, KeyGroupRange};

/// One `M` per key group of a range.
#[derive(Debug)]
struct ByKeyGroup<M> {
    name: String,
    range: KeyGroupRange,
    groups: Vec<M>,
}

impl<M: Default> ByKeyGroup<M> {
    fn new(name: &str, range: KeyGroupRange) -> Self {
        Self {
            name: name.to_owned(),
            range,
            groups: (0..range.len()).map(|_| M::default()).collect(),
        }
    }

    #[inline]
    fn group(&self, key_group: KeyGroup) -> Result<&M, StateError> {
        match self
            .groups
            .get(usize::from(key_group.wrapping_sub(self.range.start)))
        {
            Some(m) if self.range.contains(key_group) => Ok(m),
            _ => Err(self.not_owned(key_group)),
        }
    }

    #[inline]
    fn group_mut(&mut self, key_group: KeyGroup) -> Result<&mut M, StateError> {
        if !self.range.contains(key_group) {
            return Err(self.not_owned(key_group));
        }
        Ok(&mut self.groups[usize::from(key_group - self.range.start)])
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
        self.inner.groups.iter().map(|g| g.len()).sum()
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
            .groups
            .iter()
            .flat_map(|g| g.values())
            .map(|m| m.len())
            .sum()
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
            .groups
            .iter()
            .flat_map(|g| g.values())
            .map(|l| l.len())
            .sum()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
