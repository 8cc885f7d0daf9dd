//! Value, map and list tables as Rust objects, one hash map per key group.

use super::ByKeyGroup;
use crate::error::StateError;
use crate::kinds::{ListStore, MapStore, StoredTable, ValueStore};
use crate::store::{FrozenTable, StateKey, StateKind, StateValue};
use rustc_hash::FxHashMap;
use weir_protocol::{KeyGroup, KeyGroupRange};

/// One value per key.
pub(crate) struct HeapValue<K, V>(ByKeyGroup<FxHashMap<K, V>>);

/// A map per key.
pub(crate) struct HeapMap<K, MK, MV>(ByKeyGroup<FxHashMap<K, FxHashMap<MK, MV>>>);

/// A list per key.
pub(crate) struct HeapList<K, V>(ByKeyGroup<FxHashMap<K, Vec<V>>>);

impl<K: StateKey, V: StateValue> HeapValue<K, V> {
    pub(crate) fn new(name: &str, range: KeyGroupRange) -> Self {
        Self(ByKeyGroup::new(name, range))
    }

    /// [`ValueStore::update`] with `f` inlined: the per-record path of
    /// heap state, which `ValueTable` calls without dynamic dispatch.
    #[inline]
    pub(crate) fn update_with(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        f: impl FnOnce(Option<V>) -> Option<V>,
    ) -> Result<Option<V>, StateError> {
        let group = self.0.group_mut(key_group)?;
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
}

impl<K: StateKey, MK: StateKey, MV: StateValue> HeapMap<K, MK, MV> {
    pub(crate) fn new(name: &str, range: KeyGroupRange) -> Self {
        Self(ByKeyGroup::new(name, range))
    }
}

impl<K: StateKey, V: StateValue> HeapList<K, V> {
    pub(crate) fn new(name: &str, range: KeyGroupRange) -> Self {
        Self(ByKeyGroup::new(name, range))
    }
}

impl<K: StateKey, V: StateValue> StoredTable for HeapValue<K, V> {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn entries(&mut self) -> usize {
        self.0.entries(|_| 1)
    }
    fn freeze(&self, kind: StateKind) -> Option<Box<dyn FrozenTable>> {
        Some(Box::new(self.0.freeze(kind)))
    }
}

impl<K: StateKey, V: StateValue> ValueStore<K, V> for HeapValue<K, V> {
    #[inline]
    fn get(&mut self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError> {
        Ok(self.0.group(key_group)?.get(key).cloned())
    }

    #[inline]
    fn put(&mut self, key_group: KeyGroup, key: &K, value: V) -> Result<(), StateError> {
        self.0.group_mut(key_group)?.insert(key.clone(), value);
        Ok(())
    }

    fn remove(&mut self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError> {
        Ok(self.0.group_mut(key_group)?.remove(key))
    }

    #[inline]
    fn update(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        f: &mut dyn FnMut(Option<V>) -> Option<V>,
    ) -> Result<Option<V>, StateError> {
        self.update_with(key_group, key, f)
    }

    fn restore(&mut self, key_group: KeyGroup, entries: Vec<(K, V)>) -> Result<(), StateError> {
        self.0.group_mut(key_group)?.extend(entries);
        Ok(())
    }
}

impl<K: StateKey, MK: StateKey, MV: StateValue> StoredTable for HeapMap<K, MK, MV> {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn entries(&mut self) -> usize {
        self.0.entries(FxHashMap::len)
    }
    fn freeze(&self, kind: StateKind) -> Option<Box<dyn FrozenTable>> {
        Some(Box::new(self.0.freeze(kind)))
    }
}

impl<K: StateKey, MK: StateKey, MV: StateValue> MapStore<K, MK, MV> for HeapMap<K, MK, MV> {
    fn get(&self, key_group: KeyGroup, key: &K, user_key: &MK) -> Result<Option<MV>, StateError> {
        Ok(self
            .0
            .group(key_group)?
            .get(key)
            .and_then(|m| m.get(user_key))
            .cloned())
    }

    fn put(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        user_key: MK,
        value: MV,
    ) -> Result<(), StateError> {
        let group = self.0.group_mut(key_group)?;
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

    fn remove(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        user_key: &MK,
    ) -> Result<Option<MV>, StateError> {
        let group = self.0.group_mut(key_group)?;
        let Some(map) = group.get_mut(key) else {
            return Ok(None);
        };
        let removed = map.remove(user_key);
        if map.is_empty() {
            group.remove(key);
        }
        Ok(removed)
    }

    fn entries_of(&self, key_group: KeyGroup, key: &K) -> Result<Vec<(MK, MV)>, StateError> {
        Ok(self
            .0
            .group(key_group)?
            .get(key)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    fn clear(&mut self, key_group: KeyGroup, key: &K) -> Result<(), StateError> {
        self.0.group_mut(key_group)?.remove(key);
        Ok(())
    }

    fn restore(
        &mut self,
        key_group: KeyGroup,
        entries: Vec<(K, FxHashMap<MK, MV>)>,
    ) -> Result<(), StateError> {
        self.0.group_mut(key_group)?.extend(entries);
        Ok(())
    }
}

impl<K: StateKey, V: StateValue> StoredTable for HeapList<K, V> {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn entries(&mut self) -> usize {
        self.0.entries(Vec::len)
    }
    fn freeze(&self, kind: StateKind) -> Option<Box<dyn FrozenTable>> {
        Some(Box::new(self.0.freeze(kind)))
    }
}

impl<K: StateKey, V: StateValue> ListStore<K, V> for HeapList<K, V> {
    fn push(&mut self, key_group: KeyGroup, key: &K, value: V) -> Result<(), StateError> {
        let group = self.0.group_mut(key_group)?;
        match group.get_mut(key) {
            Some(list) => list.push(value),
            None => {
                group.insert(key.clone(), vec![value]);
            }
        }
        Ok(())
    }

    fn get(&self, key_group: KeyGroup, key: &K) -> Result<Vec<V>, StateError> {
        Ok(self
            .0
            .group(key_group)?
            .get(key)
            .cloned()
            .unwrap_or_default())
    }

    fn replace(&mut self, key_group: KeyGroup, key: &K, values: Vec<V>) -> Result<(), StateError> {
        let group = self.0.group_mut(key_group)?;
        if values.is_empty() {
            group.remove(key);
        } else {
            group.insert(key.clone(), values);
        }
        Ok(())
    }

    fn take(&mut self, key_group: KeyGroup, key: &K) -> Result<Vec<V>, StateError> {
        Ok(self.0.group_mut(key_group)?.remove(key).unwrap_or_default())
    }

    fn restore(
        &mut self,
        key_group: KeyGroup,
        entries: Vec<(K, Vec<V>)>,
    ) -> Result<(), StateError> {
        self.0.group_mut(key_group)?.extend(entries);
        Ok(())
    }
}
