//! Value, map and list tables as bytes in a [`SortedKv`].
//!
//! Keys are `[key group][table id][encoded key…]`, values their postcard
//! encoding. Value tables cache keys in memory and write changes back on
//! [`flush`](StoredTable::flush) (before every snapshot) or when the cache
//! is full; map and list tables read and write the store directly.

use super::{KvTable, RawChange, SortedKv};
use crate::codec::{decode_group, encode, encode_into};
use crate::error::StateError;
use crate::kinds::{ListStore, MapStore, StoredTable, ValueStore};
use crate::store::{StateKey, StateValue};
use rustc_hash::FxHashMap;
use std::marker::PhantomData;
use weir_protocol::KeyGroup;

struct Cached<V> {
    /// `None`: deleted.
    value: Option<V>,
    dirty: bool,
    key_group: KeyGroup,
}

/// A value table with a write-back cache.
pub(crate) struct SerializedValue<K, V> {
    table: KvTable,
    cache: FxHashMap<K, Cached<V>>,
}

impl<K: StateKey, V: StateValue> SerializedValue<K, V> {
    pub(crate) fn new(table: KvTable) -> Self {
        Self {
            table,
            cache: FxHashMap::default(),
        }
    }

    fn load(&mut self, key_group: KeyGroup, key: &K) -> Result<&mut Cached<V>, StateError> {
        self.table.check(key_group)?;
        if !self.cache.contains_key(key) {
            if self.cache.len() >= self.table.kv.cache_entries() {
                self.flush()?;
                self.cache.clear();
            }
            let stored = self.table.kv.get(&self.table.key(key_group, key)?)?;
            let value = match stored {
                Some(bytes) => Some(decode_group(&bytes, &self.table.name, key_group)?),
                None => None,
            };
            self.cache.insert(
                key.clone(),
                Cached {
                    value,
                    dirty: false,
                    key_group,
                },
            );
        }
        Ok(self.cache.get_mut(key).expect("just cached"))
    }
}

impl<K: StateKey, V: StateValue> StoredTable for SerializedValue<K, V> {
    fn name(&self) -> &str {
        &self.table.name
    }

    fn entries(&mut self) -> usize {
        let _ = self.flush();
        self.table.count()
    }

    /// Writes every changed key to the store (on the task thread, at every
    /// checkpoint).
    fn flush(&mut self) -> Result<(), StateError> {
        let mut changes: Vec<RawChange> = Vec::new();
        for (key, slot) in self.cache.iter_mut().filter(|(_, s)| s.dirty) {
            let mut key_bytes = Vec::with_capacity(32);
            key_bytes.extend_from_slice(&self.table.prefix(slot.key_group));
            encode_into(key, &mut key_bytes, &self.table.name)?;
            let value = match &slot.value {
                Some(value) => Some(encode(value, &self.table.name)?),
                None => None,
            };
            changes.push((key_bytes, value));
            slot.dirty = false;
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.table.kv.apply(changes)
    }
}

impl<K: StateKey, V: StateValue> ValueStore<K, V> for SerializedValue<K, V> {
    fn get(&mut self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError> {
        Ok(self.load(key_group, key)?.value.clone())
    }

    fn put(&mut self, key_group: KeyGroup, key: &K, value: V) -> Result<(), StateError> {
        let slot = self.load(key_group, key)?;
        slot.value = Some(value);
        slot.dirty = true;
        Ok(())
    }

    fn remove(&mut self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError> {
        let slot = self.load(key_group, key)?;
        let old = slot.value.take();
        slot.dirty = true;
        Ok(old)
    }

    fn update(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        f: &mut dyn FnMut(Option<V>) -> Option<V>,
    ) -> Result<Option<V>, StateError> {
        let slot = self.load(key_group, key)?;
        slot.value = f(slot.value.take());
        slot.dirty = true;
        Ok(slot.value.clone())
    }

    fn restore(&mut self, key_group: KeyGroup, entries: Vec<(K, V)>) -> Result<(), StateError> {
        for (key, value) in entries {
            self.put(key_group, &key, value)?;
        }
        Ok(())
    }
}

/// What a map table's entries are made of, for its marker field.
type MapEntryOf<K, MK, MV> = fn() -> (K, MK, MV);

/// A map table: one stored entry per (key, user key).
pub(crate) struct SerializedMap<K, MK, MV> {
    table: KvTable,
    _types: PhantomData<MapEntryOf<K, MK, MV>>,
}

impl<K: StateKey, MK: StateKey, MV: StateValue> SerializedMap<K, MK, MV> {
    pub(crate) fn new(table: KvTable) -> Self {
        Self {
            table,
            _types: PhantomData,
        }
    }

    /// `[key group][table][len(key) as u32][key]`: the prefix of one key's map.
    fn map_prefix(&self, key_group: KeyGroup, key: &K) -> Result<Vec<u8>, StateError> {
        self.table.check(key_group)?;
        let encoded = encode(key, &self.table.name)?;
        let mut bytes = self.table.prefix(key_group).to_vec();
        bytes.extend((encoded.len() as u32).to_be_bytes());
        bytes.extend(encoded);
        Ok(bytes)
    }

    fn entry_key(
        &self,
        key_group: KeyGroup,
        key: &K,
        user_key: &MK,
    ) -> Result<Vec<u8>, StateError> {
        let mut bytes = self.map_prefix(key_group, key)?;
        bytes.extend(encode(user_key, &self.table.name)?);
        Ok(bytes)
    }

    fn kv(&self) -> &dyn SortedKv {
        self.table.kv.as_ref()
    }
}

impl<K: StateKey, MK: StateKey, MV: StateValue> StoredTable for SerializedMap<K, MK, MV> {
    fn name(&self) -> &str {
        &self.table.name
    }
    fn entries(&mut self) -> usize {
        self.table.count()
    }
}

impl<K: StateKey, MK: StateKey, MV: StateValue> MapStore<K, MK, MV> for SerializedMap<K, MK, MV> {
    fn get(&self, key_group: KeyGroup, key: &K, user_key: &MK) -> Result<Option<MV>, StateError> {
        match self.kv().get(&self.entry_key(key_group, key, user_key)?)? {
            Some(bytes) => Ok(Some(decode_group(&bytes, &self.table.name, key_group)?)),
            None => Ok(None),
        }
    }

    fn put(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        user_key: MK,
        value: MV,
    ) -> Result<(), StateError> {
        let entry = self.entry_key(key_group, key, &user_key)?;
        self.kv().put(&entry, &encode(&value, &self.table.name)?)
    }

    fn remove(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        user_key: &MK,
    ) -> Result<Option<MV>, StateError> {
        let entry = self.entry_key(key_group, key, user_key)?;
        let old = match self.kv().get(&entry)? {
            Some(bytes) => Some(decode_group(&bytes, &self.table.name, key_group)?),
            None => None,
        };
        if old.is_some() {
            self.kv().delete(&entry)?;
        }
        Ok(old)
    }

    fn entries_of(&self, key_group: KeyGroup, key: &K) -> Result<Vec<(MK, MV)>, StateError> {
        let prefix = self.map_prefix(key_group, key)?;
        self.kv()
            .scan(&prefix)?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    decode_group(&k[prefix.len()..], &self.table.name, key_group)?,
                    decode_group(&v, &self.table.name, key_group)?,
                ))
            })
            .collect()
    }

    fn clear(&mut self, key_group: KeyGroup, key: &K) -> Result<(), StateError> {
        let prefix = self.map_prefix(key_group, key)?;
        for (k, _) in self.kv().scan(&prefix)? {
            self.kv().delete(&k)?;
        }
        Ok(())
    }

    fn restore(
        &mut self,
        key_group: KeyGroup,
        entries: Vec<(K, FxHashMap<MK, MV>)>,
    ) -> Result<(), StateError> {
        for (key, map) in entries {
            for (user_key, value) in map {
                self.put(key_group, &key, user_key, value)?;
            }
        }
        Ok(())
    }
}

/// A list table: the whole list of a key in one stored entry.
pub(crate) struct SerializedList<K, V> {
    table: KvTable,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: StateKey, V: StateValue> SerializedList<K, V> {
    pub(crate) fn new(table: KvTable) -> Self {
        Self {
            table,
            _types: PhantomData,
        }
    }
}

impl<K: StateKey, V: StateValue> StoredTable for SerializedList<K, V> {
    fn name(&self) -> &str {
        &self.table.name
    }
    fn entries(&mut self) -> usize {
        self.table.count()
    }
}

impl<K: StateKey, V: StateValue> ListStore<K, V> for SerializedList<K, V> {
    fn push(&mut self, key_group: KeyGroup, key: &K, value: V) -> Result<(), StateError> {
        let mut list = self.get(key_group, key)?;
        list.push(value);
        self.replace(key_group, key, list)
    }

    fn get(&self, key_group: KeyGroup, key: &K) -> Result<Vec<V>, StateError> {
        self.table.check(key_group)?;
        match self.table.kv.get(&self.table.key(key_group, key)?)? {
            Some(bytes) => decode_group(&bytes, &self.table.name, key_group),
            None => Ok(Vec::new()),
        }
    }

    fn replace(&mut self, key_group: KeyGroup, key: &K, values: Vec<V>) -> Result<(), StateError> {
        self.table.check(key_group)?;
        let encoded = self.table.key(key_group, key)?;
        if values.is_empty() {
            self.table.kv.delete(&encoded)
        } else {
            self.table
                .kv
                .put(&encoded, &encode(&values, &self.table.name)?)
        }
    }

    fn take(&mut self, key_group: KeyGroup, key: &K) -> Result<Vec<V>, StateError> {
        let list = self.get(key_group, key)?;
        self.replace(key_group, key, Vec::new())?;
        Ok(list)
    }

    fn restore(
        &mut self,
        key_group: KeyGroup,
        entries: Vec<(K, Vec<V>)>,
    ) -> Result<(), StateError> {
        for (key, values) in entries {
            self.replace(key_group, &key, values)?;
        }
        Ok(())
    }
}
