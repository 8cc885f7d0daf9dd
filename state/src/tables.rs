//! Typed keyed-state tables, each partitioned by key group, stored on the
//! heap or in RocksDB.
//!
//! On the heap, every table keeps one map per owned key group behind an
//! `Arc`. Taking a snapshot ([`ErasedTable::freeze`]) clones those `Arc`s,
//! which costs one pointer per key group; the first write to a key group
//! afterwards copies that group's map (copy-on-write), so processing
//! continues while the frozen version is serialized elsewhere. In RocksDB
//! (see [`crate::rocks`]) the instance snapshots as a whole.
//!
//! Access takes the key group computed once per record by the caller (see
//! [`KeyedStateStore::key_group_of`](crate::KeyedStateStore::key_group_of)).

use crate::by_key_group::{decode, decode_group, ByKeyGroup};
use crate::error::StateError;
use crate::rocks::tables::{RocksList, RocksMap, RocksTable, RocksValue};
use crate::store::{to_json, ErasedTable, FrozenTable, JsonEntry, StateKey, StateKind, StateValue};
use rustc_hash::FxHashMap;
use std::any::Any;
use weir_protocol::{KeyGroup, KeyGroupRange};

/// One value per key.
pub struct ValueTable<K, V> {
    storage: ValueStorage<K, V>,
}

enum ValueStorage<K, V> {
    Heap(ByKeyGroup<FxHashMap<K, V>>),
    Rocks(RocksValue<K, V>),
}

impl<K: StateKey, V: StateValue> ValueTable<K, V> {
    pub(crate) fn new(name: &str, range: KeyGroupRange) -> Self {
        Self {
            storage: ValueStorage::Heap(ByKeyGroup::new(name, range)),
        }
    }

    pub(crate) fn in_rocksdb(table: RocksTable) -> Self {
        Self {
            storage: ValueStorage::Rocks(RocksValue::new(table)),
        }
    }

    /// The value of `key`, if set.
    #[inline]
    pub fn get(&mut self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError> {
        match &mut self.storage {
            ValueStorage::Heap(heap) => Ok(heap.group(key_group)?.get(key).cloned()),
            ValueStorage::Rocks(rocks) => rocks.get(key_group, key),
        }
    }

    /// Sets the value of `key`.
    #[inline]
    pub fn put(&mut self, key_group: KeyGroup, key: &K, value: V) -> Result<(), StateError> {
        match &mut self.storage {
            ValueStorage::Heap(heap) => {
                heap.group_mut(key_group)?.insert(key.clone(), value);
                Ok(())
            }
            ValueStorage::Rocks(rocks) => rocks.put(key_group, key, value),
        }
    }

    /// Removes the value of `key`, returning it.
    pub fn remove(&mut self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError> {
        match &mut self.storage {
            ValueStorage::Heap(heap) => Ok(heap.group_mut(key_group)?.remove(key)),
            ValueStorage::Rocks(rocks) => rocks.remove(key_group, key),
        }
    }

    /// Replaces the value of `key` by `f(old)` in one lookup; `None` from
    /// `f` removes it. Returns the new value.
    #[inline]
    pub fn update<F>(&mut self, key_group: KeyGroup, key: &K, f: F) -> Result<Option<V>, StateError>
    where
        F: FnOnce(Option<V>) -> Option<V>,
    {
        let heap = match &mut self.storage {
            ValueStorage::Heap(heap) => heap,
            ValueStorage::Rocks(rocks) => return rocks.update(key_group, key, f),
        };
        let group = heap.group_mut(key_group)?;
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

impl<K: StateKey, V: StateValue> ErasedTable for ValueTable<K, V> {
    fn name(&self) -> &str {
        match &self.storage {
            ValueStorage::Heap(heap) => &heap.name,
            ValueStorage::Rocks(rocks) => rocks.name(),
        }
    }
    fn kind(&self) -> StateKind {
        StateKind::Value
    }
    fn entries(&mut self) -> usize {
        match &mut self.storage {
            ValueStorage::Heap(heap) => heap.groups().map(|g| g.len()).sum(),
            ValueStorage::Rocks(rocks) => rocks.count(),
        }
    }
    fn freeze(&self) -> Option<Box<dyn FrozenTable>> {
        match &self.storage {
            ValueStorage::Heap(heap) => Some(Box::new(heap.freeze(StateKind::Value))),
            ValueStorage::Rocks(_) => None,
        }
    }
    fn flush(&mut self) -> Result<(), StateError> {
        match &mut self.storage {
            ValueStorage::Heap(_) => Ok(()),
            ValueStorage::Rocks(rocks) => rocks.flush(),
        }
    }
    fn restore_key_group(&mut self, key_group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        let entries: Vec<(K, V)> = decode_group(bytes, self.name(), key_group)?;
        match &mut self.storage {
            ValueStorage::Heap(heap) => {
                heap.group_mut(key_group)?.extend(entries);
                Ok(())
            }
            ValueStorage::Rocks(rocks) => rocks.restore_key_group(key_group, entries),
        }
    }
    fn decode_section(&self, bytes: &[u8]) -> Result<Vec<JsonEntry>, StateError> {
        let entries: Vec<(K, V)> = decode(bytes, self.name())?;
        entries
            .iter()
            .map(|(k, v)| Ok((to_json(k, self.name())?, to_json(v, self.name())?)))
            .collect()
    }
    fn decode_raw(&self, key: &[u8], value: &[u8]) -> Result<JsonEntry, StateError> {
        let (k, v): (K, V) = (decode(key, self.name())?, decode(value, self.name())?);
        Ok((to_json(&k, self.name())?, to_json(&v, self.name())?))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A map from user keys to values, per key.
pub struct MapTable<K, MK, MV> {
    storage: MapStorage<K, MK, MV>,
}

enum MapStorage<K, MK, MV> {
    Heap(ByKeyGroup<FxHashMap<K, FxHashMap<MK, MV>>>),
    Rocks(RocksMap),
}

impl<K: StateKey, MK: StateKey, MV: StateValue> MapTable<K, MK, MV> {
    pub(crate) fn new(name: &str, range: KeyGroupRange) -> Self {
        Self {
            storage: MapStorage::Heap(ByKeyGroup::new(name, range)),
        }
    }

    pub(crate) fn in_rocksdb(table: RocksTable) -> Self {
        Self {
            storage: MapStorage::Rocks(RocksMap { table }),
        }
    }

    /// The value under `user_key` in `key`'s map.
    pub fn get(
        &self,
        key_group: KeyGroup,
        key: &K,
        user_key: &MK,
    ) -> Result<Option<MV>, StateError> {
        match &self.storage {
            MapStorage::Heap(heap) => Ok(heap
                .group(key_group)?
                .get(key)
                .and_then(|m| m.get(user_key))
                .cloned()),
            MapStorage::Rocks(rocks) => rocks.get(key_group, key, user_key),
        }
    }

    /// Sets `user_key` to `value` in `key`'s map.
    pub fn put(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        user_key: MK,
        value: MV,
    ) -> Result<(), StateError> {
        let heap = match &mut self.storage {
            MapStorage::Heap(heap) => heap,
            MapStorage::Rocks(rocks) => return rocks.put(key_group, key, &user_key, &value),
        };
        let group = heap.group_mut(key_group)?;
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
        let heap = match &mut self.storage {
            MapStorage::Heap(heap) => heap,
            MapStorage::Rocks(rocks) => return rocks.remove(key_group, key, user_key),
        };
        let group = heap.group_mut(key_group)?;
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
        match &self.storage {
            MapStorage::Heap(heap) => Ok(heap
                .group(key_group)?
                .get(key)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()),
            MapStorage::Rocks(rocks) => rocks.entries(key_group, key),
        }
    }

    /// Removes `key`'s whole map.
    pub fn clear(&mut self, key_group: KeyGroup, key: &K) -> Result<(), StateError> {
        match &mut self.storage {
            MapStorage::Heap(heap) => {
                heap.group_mut(key_group)?.remove(key);
                Ok(())
            }
            MapStorage::Rocks(rocks) => rocks.clear(key_group, key),
        }
    }
}

impl<K: StateKey, MK: StateKey, MV: StateValue> ErasedTable for MapTable<K, MK, MV> {
    fn name(&self) -> &str {
        match &self.storage {
            MapStorage::Heap(heap) => &heap.name,
            MapStorage::Rocks(rocks) => &rocks.table.name,
        }
    }
    fn kind(&self) -> StateKind {
        StateKind::Map
    }
    fn entries(&mut self) -> usize {
        match &self.storage {
            MapStorage::Heap(heap) => heap
                .groups()
                .flat_map(|g| g.values())
                .map(|m| m.len())
                .sum(),
            MapStorage::Rocks(rocks) => rocks.table.count(),
        }
    }
    fn freeze(&self) -> Option<Box<dyn FrozenTable>> {
        match &self.storage {
            MapStorage::Heap(heap) => Some(Box::new(heap.freeze(StateKind::Map))),
            MapStorage::Rocks(_) => None,
        }
    }
    fn flush(&mut self) -> Result<(), StateError> {
        Ok(())
    }
    fn restore_key_group(&mut self, key_group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        let entries: Vec<(K, FxHashMap<MK, MV>)> = decode_group(bytes, self.name(), key_group)?;
        match &mut self.storage {
            MapStorage::Heap(heap) => heap.group_mut(key_group)?.extend(entries),
            MapStorage::Rocks(rocks) => {
                for (key, map) in entries {
                    for (user_key, value) in map {
                        rocks.put(key_group, &key, &user_key, &value)?;
                    }
                }
            }
        }
        Ok(())
    }
    fn decode_section(&self, bytes: &[u8]) -> Result<Vec<JsonEntry>, StateError> {
        let entries: Vec<(K, FxHashMap<MK, MV>)> = decode(bytes, self.name())?;
        let mut rows = Vec::new();
        for (k, map) in &entries {
            for (mk, mv) in map {
                rows.push((to_json(&(k, mk), self.name())?, to_json(mv, self.name())?));
            }
        }
        Ok(rows)
    }
    fn decode_raw(&self, key: &[u8], value: &[u8]) -> Result<JsonEntry, StateError> {
        let corrupt = || StateError::Corrupt {
            path: self.name().to_owned(),
            problem: "a map entry's key is too short".into(),
        };
        let len = key.get(..4).ok_or_else(corrupt)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let k: K = decode(key.get(4..4 + len).ok_or_else(corrupt)?, self.name())?;
        let mk: MK = decode(&key[4 + len..], self.name())?;
        let mv: MV = decode(value, self.name())?;
        Ok((to_json(&(k, mk), self.name())?, to_json(&mv, self.name())?))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A list of values per key, in insertion order.
pub struct ListTable<K, V> {
    storage: ListStorage<K, V>,
}

enum ListStorage<K, V> {
    Heap(ByKeyGroup<FxHashMap<K, Vec<V>>>),
    Rocks(RocksList),
}

impl<K: StateKey, V: StateValue> ListTable<K, V> {
    pub(crate) fn new(name: &str, range: KeyGroupRange) -> Self {
        Self {
            storage: ListStorage::Heap(ByKeyGroup::new(name, range)),
        }
    }

    pub(crate) fn in_rocksdb(table: RocksTable) -> Self {
        Self {
            storage: ListStorage::Rocks(RocksList { table }),
        }
    }

    /// Appends `value` to `key`'s list.
    pub fn push(&mut self, key_group: KeyGroup, key: &K, value: V) -> Result<(), StateError> {
        match &mut self.storage {
            ListStorage::Heap(heap) => {
                let group = heap.group_mut(key_group)?;
                match group.get_mut(key) {
                    Some(list) => list.push(value),
                    None => {
                        group.insert(key.clone(), vec![value]);
                    }
                }
                Ok(())
            }
            ListStorage::Rocks(rocks) => {
                let mut list: Vec<V> = rocks.get(key_group, key)?;
                list.push(value);
                rocks.replace(key_group, key, &list)
            }
        }
    }

    /// `key`'s list (empty if none).
    pub fn get(&self, key_group: KeyGroup, key: &K) -> Result<Vec<V>, StateError> {
        match &self.storage {
            ListStorage::Heap(heap) => {
                Ok(heap.group(key_group)?.get(key).cloned().unwrap_or_default())
            }
            ListStorage::Rocks(rocks) => rocks.get(key_group, key),
        }
    }

    /// Replaces `key`'s list; an empty list removes it.
    pub fn replace(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        values: Vec<V>,
    ) -> Result<(), StateError> {
        match &mut self.storage {
            ListStorage::Heap(heap) => {
                let group = heap.group_mut(key_group)?;
                if values.is_empty() {
                    group.remove(key);
                } else {
                    group.insert(key.clone(), values);
                }
                Ok(())
            }
            ListStorage::Rocks(rocks) => rocks.replace(key_group, key, &values),
        }
    }

    /// Removes and returns `key`'s list.
    pub fn take(&mut self, key_group: KeyGroup, key: &K) -> Result<Vec<V>, StateError> {
        match &mut self.storage {
            ListStorage::Heap(heap) => {
                Ok(heap.group_mut(key_group)?.remove(key).unwrap_or_default())
            }
            ListStorage::Rocks(rocks) => {
                let list = rocks.get(key_group, key)?;
                rocks.replace::<K, V>(key_group, key, &[])?;
                Ok(list)
            }
        }
    }
}

impl<K: StateKey, V: StateValue> ErasedTable for ListTable<K, V> {
    fn name(&self) -> &str {
        match &self.storage {
            ListStorage::Heap(heap) => &heap.name,
            ListStorage::Rocks(rocks) => &rocks.table.name,
        }
    }
    fn kind(&self) -> StateKind {
        StateKind::List
    }
    fn entries(&mut self) -> usize {
        match &self.storage {
            ListStorage::Heap(heap) => heap
                .groups()
                .flat_map(|g| g.values())
                .map(|l| l.len())
                .sum(),
            ListStorage::Rocks(rocks) => rocks.table.count(),
        }
    }
    fn freeze(&self) -> Option<Box<dyn FrozenTable>> {
        match &self.storage {
            ListStorage::Heap(heap) => Some(Box::new(heap.freeze(StateKind::List))),
            ListStorage::Rocks(_) => None,
        }
    }
    fn flush(&mut self) -> Result<(), StateError> {
        Ok(())
    }
    fn restore_key_group(&mut self, key_group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        let entries: Vec<(K, Vec<V>)> = decode_group(bytes, self.name(), key_group)?;
        match &mut self.storage {
            ListStorage::Heap(heap) => heap.group_mut(key_group)?.extend(entries),
            ListStorage::Rocks(rocks) => {
                for (key, values) in entries {
                    rocks.replace(key_group, &key, &values)?;
                }
            }
        }
        Ok(())
    }
    fn decode_section(&self, bytes: &[u8]) -> Result<Vec<JsonEntry>, StateError> {
        let entries: Vec<(K, Vec<V>)> = decode(bytes, self.name())?;
        entries
            .iter()
            .map(|(k, v)| Ok((to_json(k, self.name())?, to_json(v, self.name())?)))
            .collect()
    }
    fn decode_raw(&self, key: &[u8], value: &[u8]) -> Result<JsonEntry, StateError> {
        let (k, v): (K, Vec<V>) = (decode(key, self.name())?, decode(value, self.name())?);
        Ok((to_json(&k, self.name())?, to_json(&v, self.name())?))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
