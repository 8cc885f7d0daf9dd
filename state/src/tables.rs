//! Typed keyed-state tables, each partitioned by key group, on whichever
//! storage their store's backend gives them (the store traits of `kinds`).
//!
//! On the heap, every table keeps one map per owned key group behind an
//! `Arc`. Taking a snapshot ([`ErasedTable::freeze`]) clones those `Arc`s,
//! which costs one pointer per key group; the first write to a key group
//! afterwards copies that group's map (copy-on-write), so processing
//! continues while the frozen version is serialized elsewhere. In a
//! [`SortedKv`](crate::serialized::SortedKv) the instance snapshots as a
//! whole.
//!
//! Access takes the key group computed once per record by the caller (see
//! [`KeyedStateStore::key_group_of`](crate::KeyedStateStore::key_group_of)).

use crate::codec::{decode, decode_group, to_json};
use crate::error::StateError;
use crate::heap::{HeapList, HeapMap, HeapValue};
use crate::kinds::{ListStore, MapStore, ValueStore};
use crate::serialized::tables::{SerializedList, SerializedMap, SerializedValue};
use crate::serialized::{split_map_key, KvTable};
use crate::store::{ErasedTable, FrozenTable, JsonEntry, StateKey, StateKind, StateValue};
use rustc_hash::FxHashMap;
use std::any::Any;
use weir_protocol::{KeyGroup, KeyGroupRange};

/// One value per key.
pub struct ValueTable<K, V> {
    store: ValueStorage<K, V>,
}

/// Value state is what most operators touch on every record: on the heap
/// its calls are static (and inlined, with the caller's closure). Through
/// the trait object the keyed-sum benchmark (W1 embedded-memory-plain-final)
/// ran at 22.5 M events/s, statically at 30.7 (medians of three best-of-3
/// runs). Other stores are reached through the trait object.
enum ValueStorage<K, V> {
    Heap(HeapValue<K, V>),
    Other(Box<dyn ValueStore<K, V>>),
}

impl<K: StateKey, V: StateValue> ValueTable<K, V> {
    pub(crate) fn new(name: &str, range: KeyGroupRange, home: Option<KvTable>) -> Self {
        let store = match home {
            None => ValueStorage::Heap(HeapValue::new(name, range)),
            Some(table) => ValueStorage::Other(Box::new(SerializedValue::new(table))),
        };
        Self { store }
    }

    fn store(&self) -> &dyn ValueStore<K, V> {
        match &self.store {
            ValueStorage::Heap(heap) => heap,
            ValueStorage::Other(other) => other.as_ref(),
        }
    }

    fn store_mut(&mut self) -> &mut dyn ValueStore<K, V> {
        match &mut self.store {
            ValueStorage::Heap(heap) => heap,
            ValueStorage::Other(other) => other.as_mut(),
        }
    }

    /// The value of `key`, if set.
    #[inline]
    pub fn get(&mut self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError> {
        match &mut self.store {
            ValueStorage::Heap(heap) => heap.get(key_group, key),
            ValueStorage::Other(other) => other.get(key_group, key),
        }
    }

    /// Sets the value of `key`.
    #[inline]
    pub fn put(&mut self, key_group: KeyGroup, key: &K, value: V) -> Result<(), StateError> {
        match &mut self.store {
            ValueStorage::Heap(heap) => heap.put(key_group, key, value),
            ValueStorage::Other(other) => other.put(key_group, key, value),
        }
    }

    /// Removes the value of `key`, returning it.
    pub fn remove(&mut self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError> {
        self.store_mut().remove(key_group, key)
    }

    /// Replaces the value of `key` by `f(old)` in one lookup; `None` from
    /// `f` removes it. Returns the new value.
    #[inline]
    pub fn update<F>(&mut self, key_group: KeyGroup, key: &K, f: F) -> Result<Option<V>, StateError>
    where
        F: FnOnce(Option<V>) -> Option<V>,
    {
        let other = match &mut self.store {
            ValueStorage::Heap(heap) => return heap.update_with(key_group, key, f),
            ValueStorage::Other(other) => other,
        };
        let mut f = Some(f);
        // Stores call it exactly once; `old` back is what a second call would mean.
        let mut once = |old: Option<V>| match f.take() {
            Some(f) => f(old),
            None => old,
        };
        other.update(key_group, key, &mut once)
    }
}

impl<K: StateKey, V: StateValue> ErasedTable for ValueTable<K, V> {
    fn name(&self) -> &str {
        self.store().name()
    }
    fn kind(&self) -> StateKind {
        StateKind::Value
    }
    fn entries(&mut self) -> usize {
        self.store_mut().entries()
    }
    fn freeze(&self) -> Option<Box<dyn FrozenTable>> {
        self.store().freeze(StateKind::Value)
    }
    fn flush(&mut self) -> Result<(), StateError> {
        self.store_mut().flush()
    }
    fn restore_key_group(&mut self, key_group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        let entries: Vec<(K, V)> = decode_group(bytes, self.name(), key_group)?;
        self.store_mut().restore(key_group, entries)
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
    store: Box<dyn MapStore<K, MK, MV>>,
}

impl<K: StateKey, MK: StateKey, MV: StateValue> MapTable<K, MK, MV> {
    pub(crate) fn new(name: &str, range: KeyGroupRange, home: Option<KvTable>) -> Self {
        let store: Box<dyn MapStore<K, MK, MV>> = match home {
            None => Box::new(HeapMap::new(name, range)),
            Some(table) => Box::new(SerializedMap::new(table)),
        };
        Self { store }
    }

    /// The value under `user_key` in `key`'s map.
    pub fn get(
        &self,
        key_group: KeyGroup,
        key: &K,
        user_key: &MK,
    ) -> Result<Option<MV>, StateError> {
        self.store.get(key_group, key, user_key)
    }

    /// Sets `user_key` to `value` in `key`'s map.
    pub fn put(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        user_key: MK,
        value: MV,
    ) -> Result<(), StateError> {
        self.store.put(key_group, key, user_key, value)
    }

    /// Removes `user_key` from `key`'s map, returning its value.
    pub fn remove(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        user_key: &MK,
    ) -> Result<Option<MV>, StateError> {
        self.store.remove(key_group, key, user_key)
    }

    /// The entries of `key`'s map, in no particular order.
    pub fn entries(&self, key_group: KeyGroup, key: &K) -> Result<Vec<(MK, MV)>, StateError> {
        self.store.entries_of(key_group, key)
    }

    /// Removes `key`'s whole map.
    pub fn clear(&mut self, key_group: KeyGroup, key: &K) -> Result<(), StateError> {
        self.store.clear(key_group, key)
    }
}

impl<K: StateKey, MK: StateKey, MV: StateValue> ErasedTable for MapTable<K, MK, MV> {
    fn name(&self) -> &str {
        self.store.name()
    }
    fn kind(&self) -> StateKind {
        StateKind::Map
    }
    fn entries(&mut self) -> usize {
        self.store.entries()
    }
    fn freeze(&self) -> Option<Box<dyn FrozenTable>> {
        self.store.freeze(StateKind::Map)
    }
    fn flush(&mut self) -> Result<(), StateError> {
        self.store.flush()
    }
    fn restore_key_group(&mut self, key_group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        let entries: Vec<(K, FxHashMap<MK, MV>)> = decode_group(bytes, self.name(), key_group)?;
        self.store.restore(key_group, entries)
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
        let (key, user_key) = split_map_key(key, self.name())?;
        let k: K = decode(key, self.name())?;
        let mk: MK = decode(user_key, self.name())?;
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
    store: Box<dyn ListStore<K, V>>,
}

impl<K: StateKey, V: StateValue> ListTable<K, V> {
    pub(crate) fn new(name: &str, range: KeyGroupRange, home: Option<KvTable>) -> Self {
        let store: Box<dyn ListStore<K, V>> = match home {
            None => Box::new(HeapList::new(name, range)),
            Some(table) => Box::new(SerializedList::new(table)),
        };
        Self { store }
    }

    /// Appends `value` to `key`'s list.
    pub fn push(&mut self, key_group: KeyGroup, key: &K, value: V) -> Result<(), StateError> {
        self.store.push(key_group, key, value)
    }

    /// `key`'s list (empty if none).
    pub fn get(&self, key_group: KeyGroup, key: &K) -> Result<Vec<V>, StateError> {
        self.store.get(key_group, key)
    }

    /// Replaces `key`'s list; an empty list removes it.
    pub fn replace(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        values: Vec<V>,
    ) -> Result<(), StateError> {
        self.store.replace(key_group, key, values)
    }

    /// Removes and returns `key`'s list.
    pub fn take(&mut self, key_group: KeyGroup, key: &K) -> Result<Vec<V>, StateError> {
        self.store.take(key_group, key)
    }
}

impl<K: StateKey, V: StateValue> ErasedTable for ListTable<K, V> {
    fn name(&self) -> &str {
        self.store.name()
    }
    fn kind(&self) -> StateKind {
        StateKind::List
    }
    fn entries(&mut self) -> usize {
        self.store.entries()
    }
    fn freeze(&self) -> Option<Box<dyn FrozenTable>> {
        self.store.freeze(StateKind::List)
    }
    fn flush(&mut self) -> Result<(), StateError> {
        self.store.flush()
    }
    fn restore_key_group(&mut self, key_group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        let entries: Vec<(K, Vec<V>)> = decode_group(bytes, self.name(), key_group)?;
        self.store.restore(key_group, entries)
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
