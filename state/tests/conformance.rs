//! Every backend of this crate passes the conformance suite
//! (`weir_state::conformance`); RocksDB's incremental checkpoints and
//! ingested flushes have tests of their own here.

use weir_protocol::key_group::key_group_of;
use weir_protocol::Epoch;
use weir_state::conformance::{
    fill, read_back, restored, scope, write, write_snapshot, Storage, Subject, Written, MAX,
};
use weir_state::{KeyedStateStore, RocksDbBackend, StateBackend};

/// A directory for a backend's local files. Dropped (after the stores
/// that used it), it waits for the RocksDB instances closing in the
/// background: a test process that exits while one closes aborts in
/// RocksDB's teardown ("pthread lock: Invalid argument").
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        weir_state::rocks::finish_background_closes();
    }
}

fn scratch() -> Scratch {
    Scratch(tempfile::tempdir().unwrap())
}

/// RocksDB whose value tables cache `cache_entries` keys.
fn rocksdb(cache_entries: usize) -> Subject {
    let dir = scratch();
    let backend = RocksDbBackend::new(dir.path(), cache_entries);
    Subject::keeping(backend, dir)
}

mod memory {
    weir_state::conformance_tests!(weir_state::conformance::Subject::new(
        weir_state::MemoryBackend
    ));
}

mod rocks {
    weir_state::conformance_tests!(super::rocksdb(1000));
}

/// A cache of 10 keys: most reads and writes go to RocksDB itself.
mod rocks_small_cache {
    weir_state::conformance_tests!(super::rocksdb(10));
}

#[test]
fn rocksdb_snapshots_reuse_files_of_complete_checkpoints() {
    let dir = scratch();
    let backend = RocksDbBackend::new(dir.path(), 1000);
    let mut store = backend.open_keyed(scope(0, 1)).unwrap();
    let mut storage = Storage::new();
    let mut write_snapshot = |store: &mut KeyedStateStore, epoch| {
        let snapshot = store.snapshot(Epoch(epoch)).unwrap();
        write(&snapshot, store.key_groups(), &mut storage)
    };
    fill(&mut store, 0..500);
    let first = write_snapshot(&mut store, 1);
    let shared = |w: &Written| -> Vec<String> {
        w.files
            .iter()
            .filter(|(f, _)| f.path.starts_with("shared/"))
            .map(|(f, _)| f.path.clone())
            .collect()
    };
    assert!(!shared(&first).is_empty());
    // Until checkpoint 1 is complete, its files are uploaded again.
    let second = write_snapshot(&mut store, 2);
    assert!(shared(&second).iter().all(|p| !shared(&first).contains(p)));
    store.checkpoint_complete(Epoch(2));
    fill(&mut store, 500..510);
    let third = write_snapshot(&mut store, 3);
    let reused: Vec<_> = shared(&third)
        .into_iter()
        .filter(|p| shared(&second).contains(p))
        .collect();
    assert!(
        !reused.is_empty(),
        "checkpoint 3 references checkpoint 2's SSTs"
    );
    let mut restored = restored(&backend, scope(0, 1), &[&third]);
    assert_eq!(
        read_back(&mut restored, 0..510),
        read_back(&mut store, 0..510)
    );
}

#[test]
fn rocksdb_flushes_of_many_changes_ingest_files_and_restore() {
    // More changed keys than a write batch is used for: the flush writes an
    // SST file and ingests it; deletions must survive that path too.
    let dir = scratch();
    let backend = RocksDbBackend::new(dir.path(), 100_000);
    let mut store = backend.open_keyed(scope(0, 1)).unwrap();
    let v = store.value_table::<u64, u64>("v").unwrap();
    for k in 0..10_000u64 {
        let g = key_group_of(&k, MAX);
        store.table_mut(v).unwrap().put(g, &k, k * 3).unwrap();
    }
    write_snapshot(&mut store, 1);
    for k in (0..10_000u64).step_by(2) {
        let g = key_group_of(&k, MAX);
        store.table_mut(v).unwrap().remove(g, &k).unwrap();
    }
    let written = write_snapshot(&mut store, 2);
    let mut restored = restored(&backend, scope(0, 1), &[&written]);
    let v = restored.value_table::<u64, u64>("v").unwrap();
    for k in 0..10_000u64 {
        let g = key_group_of(&k, MAX);
        let expected = (k % 2 == 1).then_some(k * 3);
        assert_eq!(
            restored.table_mut(v).unwrap().get(g, &k).unwrap(),
            expected,
            "key {k}"
        );
    }
}
