//! RocksDB storage of keyed-state tables.
//!
//! Keys are `[key group][table id][encoded key…]`, values their postcard
//! encoding. Value tables cache keys in memory and write changes back on
//! [`flush`](RocksValue::flush) (before every snapshot) or when the cache
//! is full; map and list tables read and write the database directly.

use super::{key_prefix, rocks_error, table_id, RocksDb};
use crate::by_key_group::{decode_group, encode, encode_into};
use crate::error::StateError;
use crate::store::{StateKey, StateValue};
use rocksdb::{Direction, IngestExternalFileOptions, IteratorMode, SstFileWriter, WriteBatch};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use weir_protocol::{KeyGroup, KeyGroupRange};

/// A database key and value.
pub(crate) type RawEntry = (Vec<u8>, Vec<u8>);

/// What every RocksDB table knows about where it lives.
#[derive(Debug)]
pub(crate) struct RocksTable {
    pub(crate) db: Arc<RocksDb>,
    pub(crate) name: String,
    pub(crate) id: u64,
    pub(crate) range: KeyGroupRange,
}

impl RocksTable {
    pub(crate) fn new(db: Arc<RocksDb>, name: &str, range: KeyGroupRange) -> Self {
        Self {
            db,
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

    /// `[key group][table][postcard(key)]`.
    pub(crate) fn key<K: StateKey>(
        &self,
        key_group: KeyGroup,
        key: &K,
    ) -> Result<Vec<u8>, StateError> {
        let mut bytes = key_prefix(key_group, self.id).to_vec();
        bytes.extend(encode(key, &self.name)?);
        Ok(bytes)
    }

    pub(crate) fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db
            .db()
            .get(key)
            .map_err(rocks_error(self.db.dir(), "reading"))
    }

    pub(crate) fn put_raw(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.db
            .db()
            .put_opt(key, value, self.db.write_options())
            .map_err(rocks_error(self.db.dir(), "writing"))
    }

    pub(crate) fn delete_raw(&self, key: &[u8]) -> Result<(), StateError> {
        self.db
            .db()
            .delete_opt(key, self.db.write_options())
            .map_err(rocks_error(self.db.dir(), "deleting"))
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub(crate) fn scan(&self, prefix: &[u8]) -> Result<Vec<RawEntry>, StateError> {
        let mut entries = Vec::new();
        for entry in self
            .db
            .db()
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (key, value) = entry.map_err(rocks_error(self.db.dir(), "scanning"))?;
            if !key.starts_with(prefix) {
                break;
            }
            entries.push((key.to_vec(), value.to_vec()));
        }
        Ok(entries)
    }

    /// Number of entries of this table in its key groups.
    pub(crate) fn count(&self) -> usize {
        self.range
            .iter()
            .map(|g| self.scan(&key_prefix(g, self.id)).map_or(0, |e| e.len()))
            .sum()
    }
}

struct Cached<V> {
    /// `None`: deleted.
    value: Option<V>,
    dirty: bool,
    key_group: KeyGroup,
}

/// Changed keys from which a flush writes an SST file instead of a batch.
const INGEST_AT: usize = 4096;

/// A value table in RocksDB with a write-back cache.
pub(crate) struct RocksValue<K, V> {
    table: RocksTable,
    cache: FxHashMap<K, Cached<V>>,
}

impl<K: StateKey, V: StateValue> RocksValue<K, V> {
    pub(crate) fn new(table: RocksTable) -> Self {
        Self {
            table,
            cache: FxHashMap::default(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.table.name
    }

    fn load(&mut self, key_group: KeyGroup, key: &K) -> Result<&mut Cached<V>, StateError> {
        self.table.check(key_group)?;
        if !self.cache.contains_key(key) {
            if self.cache.len() >= self.table.db.cache_entries() {
                self.flush()?;
                self.cache.clear();
            }
            let stored = self.table.get_raw(&self.table.key(key_group, key)?)?;
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

    pub(crate) fn get(&mut self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError> {
        Ok(self.load(key_group, key)?.value.clone())
    }

    pub(crate) fn put(&mut self, key_group: KeyGroup, key: &K, value: V) -> Result<(), StateError> {
        let slot = self.load(key_group, key)?;
        slot.value = Some(value);
        slot.dirty = true;
        Ok(())
    }

    pub(crate) fn remove(&mut self, key_group: KeyGroup, key: &K) -> Result<Option<V>, StateError> {
        let slot = self.load(key_group, key)?;
        let old = slot.value.take();
        slot.dirty = true;
        Ok(old)
    }

    pub(crate) fn update(
        &mut self,
        key_group: KeyGroup,
        key: &K,
        f: impl FnOnce(Option<V>) -> Option<V>,
    ) -> Result<Option<V>, StateError> {
        let slot = self.load(key_group, key)?;
        slot.value = f(slot.value.take());
        slot.dirty = true;
        Ok(slot.value.clone())
    }

    /// Writes every changed key to the database.
    pub(crate) fn flush(&mut self) -> Result<(), StateError> {
        // Runs on the task thread at every checkpoint.
        let mut changes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for (key, slot) in self.cache.iter_mut().filter(|(_, s)| s.dirty) {
            let mut key_bytes = Vec::with_capacity(32);
            key_bytes.extend_from_slice(&key_prefix(slot.key_group, self.table.id));
            encode_into(key, &mut key_bytes, &self.table.name)?;
            let value = match &slot.value {
                Some(value) => Some(encode(value, &self.table.name)?),
                None => None,
            };
            changes.push((key_bytes, value));
            slot.dirty = false;
        }
        if changes.len() >= INGEST_AT {
            return self.ingest(changes);
        }
        let mut batch = WriteBatch::default();
        for (key, value) in &changes {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.table
            .db
            .db()
            .write_opt(batch, self.table.db.write_options())
            .map_err(rocks_error(self.table.db.dir(), "writing"))
    }

    /// Writes many changes as one sorted SST file ingested into the
    /// database: no memtable insertion now, and no memtable to flush at the
    /// checkpoint that follows.
    fn ingest(&self, mut changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StateError> {
        changes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let db = &self.table.db;
        let path = db
            .dir()
            .with_extension(format!("ingest-{}.sst", self.table.id));
        let options = super::options();
        let mut writer = SstFileWriter::create(&options);
        writer.open(&path).map_err(rocks_error(&path, "creating"))?;
        for (key, value) in &changes {
            match value {
                Some(value) => writer.put(key, value),
                None => writer.delete(key),
            }
            .map_err(rocks_error(&path, "writing"))?;
        }
        writer.finish().map_err(rocks_error(&path, "finishing"))?;
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        let result = db
            .db()
            .ingest_external_file_opts(&ingest, vec![&path])
            .map_err(rocks_error(&path, "ingesting"));
        let _ = std::fs::remove_file(&path);
        result
    }

    pub(crate) fn restore_key_group(
        &mut self,
        key_group: KeyGroup,
        entries: Vec<(K, V)>,
    ) -> Result<(), StateError> {
        for (key, value) in entries {
            self.put(key_group, &key, value)?;
        }
        Ok(())
    }

    pub(crate) fn count(&mut self) -> usize {
        let _ = self.flush();
        self.table.count()
    }
}

/// A map table in RocksDB: one database entry per (key, user key).
pub(crate) struct RocksMap {
    pub(crate) table: RocksTable,
}

impl RocksMap {
    /// `[key group][table][len(key) as u32][key]`: the prefix of one key's map.
    fn map_prefix<K: StateKey>(&self, key_group: KeyGroup, key: &K) -> Result<Vec<u8>, StateError> {
        self.table.check(key_group)?;
        let encoded = encode(key, &self.table.name)?;
        let mut bytes = key_prefix(key_group, self.table.id).to_vec();
        bytes.extend((encoded.len() as u32).to_be_bytes());
        bytes.extend(encoded);
        Ok(bytes)
    }

    fn entry_key<K: StateKey, MK: StateKey>(
        &self,
        key_group: KeyGroup,
        key: &K,
        user_key: &MK,
    ) -> Result<Vec<u8>, StateError> {
        let mut bytes = self.map_prefix(key_group, key)?;
        bytes.extend(encode(user_key, &self.table.name)?);
        Ok(bytes)
    }

    pub(crate) fn get<K: StateKey, MK: StateKey, MV: StateValue>(
        &self,
        key_group: KeyGroup,
        key: &K,
        user_key: &MK,
    ) -> Result<Option<MV>, StateError> {
        match self
            .table
            .get_raw(&self.entry_key(key_group, key, user_key)?)?
        {
            Some(bytes) => Ok(Some(decode_group(&bytes, &self.table.name, key_group)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn put<K: StateKey, MK: StateKey, MV: StateValue>(
        &self,
        key_group: KeyGroup,
        key: &K,
        user_key: &MK,
        value: &MV,
    ) -> Result<(), StateError> {
        let entry = self.entry_key(key_group, key, user_key)?;
        self.table
            .put_raw(&entry, &encode(value, &self.table.name)?)
    }

    pub(crate) fn remove<K: StateKey, MK: StateKey, MV: StateValue>(
        &self,
        key_group: KeyGroup,
        key: &K,
        user_key: &MK,
    ) -> Result<Option<MV>, StateError> {
        let entry = self.entry_key(key_group, key, user_key)?;
        let old = match self.table.get_raw(&entry)? {
            Some(bytes) => Some(decode_group(&bytes, &self.table.name, key_group)?),
            None => None,
        };
        if old.is_some() {
            self.table.delete_raw(&entry)?;
        }
        Ok(old)
    }

    pub(crate) fn entries<K: StateKey, MK: StateKey, MV: StateValue>(
        &self,
        key_group: KeyGroup,
        key: &K,
    ) -> Result<Vec<(MK, MV)>, StateError> {
        let prefix = self.map_prefix(key_group, key)?;
        self.table
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

    pub(crate) fn clear<K: StateKey>(
        &self,
        key_group: KeyGroup,
        key: &K,
    ) -> Result<(), StateError> {
        let prefix = self.map_prefix(key_group, key)?;
        for (k, _) in self.table.scan(&prefix)? {
            self.table.delete_raw(&k)?;
        }
        Ok(())
    }
}

/// A list table in RocksDB: the whole list of a key in one entry.
pub(crate) struct RocksList {
    pub(crate) table: RocksTable,
}

impl RocksList {
    pub(crate) fn get<K: StateKey, V: StateValue>(
        &self,
        key_group: KeyGroup,
        key: &K,
    ) -> Result<Vec<V>, StateError> {
        self.table.check(key_group)?;
        match self.table.get_raw(&self.table.key(key_group, key)?)? {
            Some(bytes) => decode_group(&bytes, &self.table.name, key_group),
            None => Ok(Vec::new()),
        }
    }

    pub(crate) fn replace<K: StateKey, V: StateValue>(
        &self,
        key_group: KeyGroup,
        key: &K,
        values: &[V],
    ) -> Result<(), StateError> {
        self.table.check(key_group)?;
        let encoded = self.table.key(key_group, key)?;
        if values.is_empty() {
            self.table.delete_raw(&encoded)
        } else {
            self.table
                .put_raw(&encoded, &encode(values, &self.table.name)?)
        }
    }
}
