//! [`RocksDb`] as a [`SortedKv`]: reads and writes without the write-ahead
//! log, many changes at once as an ingested SST file, snapshots as RocksDB
//! checkpoints.

use super::checkpoint::{restore_range, RocksSnapshot};
use super::{options, rocks_error, RocksDb};
use crate::error::StateError;
use crate::serialized::{RawChange, RawEntry, SortedKv};
use crate::snapshot::{NativeFiles, NativeSnapshot};
use rocksdb::{Direction, IngestExternalFileOptions, IteratorMode, SstFileWriter, WriteBatch};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use weir_protocol::{Epoch, KeyGroupRange};

/// Changes from which [`SortedKv::apply`] writes an SST file instead of a batch.
const INGEST_AT: usize = 4096;

/// Names the SST files ingested by one process.
static NEXT_INGEST: AtomicU64 = AtomicU64::new(0);

impl SortedKv for RocksDb {
    fn backend(&self) -> &'static str {
        super::BACKEND
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db()
            .get(key)
            .map_err(rocks_error(self.dir(), "reading"))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.db()
            .put_opt(key, value, self.write_options())
            .map_err(rocks_error(self.dir(), "writing"))
    }

    fn delete(&self, key: &[u8]) -> Result<(), StateError> {
        self.db()
            .delete_opt(key, self.write_options())
            .map_err(rocks_error(self.dir(), "deleting"))
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<RawEntry>, StateError> {
        let mut entries = Vec::new();
        for entry in self
            .db()
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (key, value) = entry.map_err(rocks_error(self.dir(), "scanning"))?;
            if !key.starts_with(prefix) {
                break;
            }
            entries.push((key.to_vec(), value.to_vec()));
        }
        Ok(entries)
    }

    fn apply(&self, changes: Vec<RawChange>) -> Result<(), StateError> {
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
        self.db()
            .write_opt(batch, self.write_options())
            .map_err(rocks_error(self.dir(), "writing"))
    }

    fn cache_entries(&self) -> usize {
        self.cache_entries
    }

    fn snapshot(self: Arc<Self>, epoch: Epoch) -> Result<Box<dyn NativeSnapshot>, StateError> {
        Ok(Box::new(RocksSnapshot::take(&self, epoch)?))
    }

    fn checkpoint_complete(&self, epoch: Epoch) {
        self.incremental.confirm(epoch);
    }

    fn restore_range(&self, files: &NativeFiles, range: KeyGroupRange) -> Result<(), StateError> {
        restore_range(self, files, range)
    }
}

impl RocksDb {
    /// Writes many changes as one sorted SST file ingested into the
    /// database: no memtable insertion now, and no memtable to flush at the
    /// checkpoint that follows.
    fn ingest(&self, mut changes: Vec<RawChange>) -> Result<(), StateError> {
        changes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let path = self.dir().with_extension(format!(
            "ingest-{}.sst",
            NEXT_INGEST.fetch_add(1, Ordering::Relaxed)
        ));
        let options = options();
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
        let result = self
            .db()
            .ingest_external_file_opts(&ingest, vec![&path])
            .map_err(rocks_error(&path, "ingesting"));
        let _ = std::fs::remove_file(&path);
        result
    }
}
