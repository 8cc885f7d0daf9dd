//! The conformance suite every [`StateBackend`] passes.

use weir_protocol::key_group::key_group_of;
use weir_protocol::{Epoch, KeyGroupRange, StateFile};
use weir_state::{
    KeyedStateStore, MemoryBackend, RestoredDb, RocksDbBackend, StateBackend, StateError,
    StateScope, TimeDomain,
};

const MAX: u32 = 16;

fn scope(subtask: u32, parallelism: u32) -> StateScope {
    StateScope {
        job: "conformance".into(),
        operator: "op".into(),
        subtask,
        key_groups: KeyGroupRange::for_subtask(subtask, parallelism, MAX),
        max_parallelism: MAX,
    }
}

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

/// Every backend, with the directory its local files live in.
fn backends() -> Vec<(Box<dyn StateBackend>, Scratch)> {
    let dir = scratch();
    let rocks = RocksDbBackend::new(dir.path(), 1000);
    vec![(Box::new(MemoryBackend), scratch()), (Box::new(rocks), dir)]
}

/// A snapshot as written to checkpoint storage: its files and contents.
struct Written {
    key_groups: KeyGroupRange,
    files: Vec<(StateFile, Vec<u8>)>,
}

/// Checkpoint storage for these tests: path to contents.
type Storage = std::collections::HashMap<String, Vec<u8>>;

fn write_snapshot(store: &mut KeyedStateStore, epoch: u64) -> Written {
    let snapshot = store.snapshot(Epoch(epoch)).unwrap();
    write(&snapshot, store.key_groups(), &mut Storage::new())
}

fn write(
    snapshot: &weir_state::StoreSnapshot,
    key_groups: KeyGroupRange,
    contents: &mut Storage,
) -> Written {
    let files = snapshot
        .write("chk/0-0", &mut |path, bytes| {
            contents.insert(path.to_owned(), bytes);
            Ok(())
        })
        .unwrap();
    let files = files
        .into_iter()
        .map(|f| {
            let bytes = contents[&f.path].clone();
            (f, bytes)
        })
        .collect();
    Written { key_groups, files }
}

/// Restores what `store` owns from written snapshots, as the runtime does.
fn restore_into(store: &mut KeyedStateStore, written: &Written) {
    if written.files.iter().any(|(f, _)| f.rocksdb_name.is_some()) {
        let files = written
            .files
            .iter()
            .map(|(f, bytes)| (f.rocksdb_name.clone().unwrap(), bytes.clone()))
            .collect();
        store
            .restore_database(&RestoredDb {
                key_groups: written.key_groups,
                files,
                linked: Vec::new(),
            })
            .unwrap();
        return;
    }
    for (file, bytes) in &written.files {
        weir_state::snapshot::verify(bytes, file.crc32c, &file.path).unwrap();
        for span in &file.key_groups {
            if store.key_groups().contains(span.key_group) {
                let section = weir_state::snapshot::section(bytes, span, &file.path).unwrap();
                store.restore_key_group(span.key_group, section).unwrap();
            }
        }
    }
}

/// A key owned by `scope`.
fn owned_key(scope: &StateScope, from: u64) -> u64 {
    (from..)
        .find(|k| scope.key_groups.contains(key_group_of(k, MAX)))
        .unwrap()
}

#[test]
fn value_state_put_get_update_remove() {
    for (backend, _dir) in backends() {
        let mut store = backend.open_keyed(scope(0, 1)).unwrap();
        let id = store.value_table::<String, i64>("v").unwrap();
        let key = "a".to_string();
        let g = store.key_group_of(&key).unwrap();
        let t = store.table_mut(id).unwrap();
        assert_eq!(t.get(g, &key).unwrap(), None, "{}", backend.name());
        t.put(g, &key, 5).unwrap();
        assert_eq!(t.update(g, &key, |v| v.map(|v| v + 1)).unwrap(), Some(6));
        assert_eq!(t.get(g, &key).unwrap(), Some(6));
        assert_eq!(t.update(g, &key, |_| None).unwrap(), None);
        assert_eq!(t.get(g, &key).unwrap(), None);
        t.put(g, &key, 1).unwrap();
        assert_eq!(t.remove(g, &key).unwrap(), Some(1));
        assert_eq!(store.describe()[0].2, 0);
    }
}

#[test]
fn map_and_list_state() {
    for (backend, _dir) in backends() {
        let mut store = backend.open_keyed(scope(0, 1)).unwrap();
        let map = store.map_table::<u64, String, u32>("m").unwrap();
        let list = store.list_table::<u64, u32>("l").unwrap();
        let g = store.key_group_of(&1u64).unwrap();
        let m = store.table_mut(map).unwrap();
        m.put(g, &1, "x".into(), 1).unwrap();
        m.put(g, &1, "y".into(), 2).unwrap();
        assert_eq!(m.get(g, &1, &"y".into()).unwrap(), Some(2));
        let mut entries = m.entries(g, &1).unwrap();
        entries.sort();
        assert_eq!(entries, vec![("x".into(), 1), ("y".into(), 2)]);
        assert_eq!(m.remove(g, &1, &"x".into()).unwrap(), Some(1));
        m.clear(g, &1).unwrap();
        assert!(m.entries(g, &1).unwrap().is_empty());

        let l = store.table_mut(list).unwrap();
        l.push(g, &1, 3).unwrap();
        l.push(g, &1, 4).unwrap();
        assert_eq!(l.get(g, &1).unwrap(), vec![3, 4]);
        l.replace(g, &1, vec![9]).unwrap();
        assert_eq!(l.take(g, &1).unwrap(), vec![9]);
        assert!(l.get(g, &1).unwrap().is_empty());
    }
}

#[test]
fn timers_fire_in_order_once_and_can_be_deleted() {
    for (backend, _dir) in backends() {
        let mut store = backend.open_keyed(scope(0, 1)).unwrap();
        let id = store.timer_table::<u64>("timers").unwrap();
        let t = store.table_mut(id).unwrap();
        assert!(t.register(TimeDomain::EventTime, &1, 20).unwrap());
        assert!(
            !t.register(TimeDomain::EventTime, &1, 20).unwrap(),
            "duplicates collapse"
        );
        assert!(t.register(TimeDomain::EventTime, &2, 10).unwrap());
        assert!(t.register(TimeDomain::EventTime, &3, 30).unwrap());
        assert!(t.register(TimeDomain::ProcessingTime, &3, 5).unwrap());
        assert!(t.delete(TimeDomain::EventTime, &3, 30).unwrap());
        assert_eq!(t.next_timestamp(TimeDomain::EventTime), Some(10));
        let fired: Vec<_> = std::iter::from_fn(|| t.pop_due(TimeDomain::EventTime, 25).unwrap())
            .map(|timer| (timer.timestamp, timer.key))
            .collect();
        assert_eq!(fired, vec![(10, 2), (20, 1)]);
        assert_eq!(t.len(TimeDomain::EventTime), 0);
        assert_eq!(t.len(TimeDomain::ProcessingTime), 1);
    }
}

#[test]
fn stores_hold_only_their_key_groups_and_are_independent() {
    for (backend, _dir) in backends() {
        let s0 = scope(0, 2);
        let s1 = scope(1, 2);
        let mut a = backend.open_keyed(s0.clone()).unwrap();
        let mut b = backend.open_keyed(s1.clone()).unwrap();
        let ka = owned_key(&s0, 0);
        let kb = owned_key(&s1, 0);
        assert!(matches!(
            a.key_group_of(&kb),
            Err(StateError::KeyGroupNotOwned { .. })
        ));
        let ida = a.value_table::<u64, u64>("v").unwrap();
        let idb = b.value_table::<u64, u64>("v").unwrap();
        let ga = a.key_group_of(&ka).unwrap();
        let gb = key_group_of(&kb, MAX);
        let ta = a.table_mut(ida).unwrap();
        ta.put(ga, &ka, 1).unwrap();
        assert!(matches!(
            ta.put(gb, &kb, 1),
            Err(StateError::KeyGroupNotOwned { .. })
        ));
        let tb = b.table_mut(idb).unwrap();
        assert_eq!(tb.get(key_group_of(&ka, MAX), &ka).ok().flatten(), None);
    }
}

#[test]
fn registering_a_name_twice_returns_the_same_table_or_a_conflict() {
    for (backend, _dir) in backends() {
        let mut store = backend.open_keyed(scope(0, 1)).unwrap();
        let a = store.value_table::<u64, u64>("v").unwrap();
        let b = store.value_table::<u64, u64>("v").unwrap();
        let g = store.key_group_of(&1u64).unwrap();
        store.table_mut(a).unwrap().put(g, &1, 7).unwrap();
        assert_eq!(store.table_mut(b).unwrap().get(g, &1).unwrap(), Some(7));
        assert!(matches!(
            store.value_table::<u64, String>("v"),
            Err(StateError::Conflict { .. })
        ));
        assert!(matches!(
            store.list_table::<u64, u64>("v"),
            Err(StateError::Conflict { .. })
        ));
    }
}

/// Fills a store with every kind of state over `keys` keys.
fn fill(store: &mut weir_state::KeyedStateStore, keys: std::ops::Range<u64>) {
    let v = store.value_table::<u64, String>("v").unwrap();
    let m = store.map_table::<u64, u32, u64>("m").unwrap();
    let l = store.list_table::<u64, i32>("l").unwrap();
    let t = store.timer_table::<u64>("t").unwrap();
    for k in keys {
        let g = key_group_of(&k, MAX);
        store
            .table_mut(v)
            .unwrap()
            .put(g, &k, format!("value-{k}"))
            .unwrap();
        store.table_mut(m).unwrap().put(g, &k, 1, k * 10).unwrap();
        store.table_mut(m).unwrap().put(g, &k, 2, k * 20).unwrap();
        store.table_mut(l).unwrap().push(g, &k, k as i32).unwrap();
        store
            .table_mut(t)
            .unwrap()
            .register(TimeDomain::EventTime, &k, k as i64 + 100)
            .unwrap();
    }
}

/// One key's value, map entry 2 and list, as `fill` wrote them.
type KeyState = (u64, Option<String>, Option<u64>, Vec<i32>);

/// Reads every kind of state of `keys` back as comparable tuples.
fn read_back(
    store: &mut weir_state::KeyedStateStore,
    keys: impl Iterator<Item = u64>,
) -> Vec<KeyState> {
    let v = store.value_table::<u64, String>("v").unwrap();
    let m = store.map_table::<u64, u32, u64>("m").unwrap();
    let l = store.list_table::<u64, i32>("l").unwrap();
    keys.map(|k| {
        let g = key_group_of(&k, MAX);
        (
            k,
            store.table_mut(v).unwrap().get(g, &k).unwrap(),
            store.table_mut(m).unwrap().get(g, &k, &2).unwrap(),
            store.table_mut(l).unwrap().get(g, &k).unwrap(),
        )
    })
    .collect()
}

#[test]
fn snapshot_then_restore_gives_back_every_kind_of_state() {
    for (backend, _dir) in backends() {
        let mut store = backend.open_keyed(scope(0, 1)).unwrap();
        fill(&mut store, 0..200);
        let written = write_snapshot(&mut store, 1);

        let mut restored = backend.open_keyed(scope(0, 1)).unwrap();
        restore_into(&mut restored, &written);
        assert_eq!(
            read_back(&mut restored, 0..200),
            read_back(&mut store, 0..200),
            "{}",
            backend.name()
        );
        let t = restored.timer_table::<u64>("t").unwrap();
        let timers = restored.table_mut(t).unwrap();
        assert_eq!(timers.len(TimeDomain::EventTime), 200, "{}", backend.name());
        assert_eq!(timers.next_timestamp(TimeDomain::EventTime), Some(100));
    }
}

#[test]
fn a_snapshot_is_unaffected_by_later_writes() {
    for (backend, _dir) in backends() {
        let mut store = backend.open_keyed(scope(0, 1)).unwrap();
        fill(&mut store, 0..50);
        let snapshot = store.snapshot(Epoch(1)).unwrap();
        let before = read_back(&mut store, 0..50);
        // Change every kind of state after the snapshot, before writing it.
        fill(&mut store, 50..60);
        let v = store.value_table::<u64, String>("v").unwrap();
        for k in 0..50u64 {
            let g = key_group_of(&k, MAX);
            store
                .table_mut(v)
                .unwrap()
                .put(g, &k, "changed".into())
                .unwrap();
        }
        store.snapshot(Epoch(2)).unwrap();
        let written = write(&snapshot, store.key_groups(), &mut Storage::new());
        let mut restored = backend.open_keyed(scope(0, 1)).unwrap();
        restore_into(&mut restored, &written);
        assert_eq!(
            read_back(&mut restored, 0..50),
            before,
            "{}",
            backend.name()
        );
        let later = read_back(&mut restored, 50..60);
        assert_eq!(later.iter().filter(|r| r.1.is_some()).count(), 0);
    }
}

#[test]
fn restoring_a_subset_of_key_groups_rescales_state() {
    for (backend, _dir) in backends() {
        // Taken at parallelism 3, restored at parallelism 2.
        let mut written = Vec::new();
        for subtask in 0..3 {
            let s = scope(subtask, 3);
            let mut store = backend.open_keyed(s.clone()).unwrap();
            let keys: Vec<u64> = (0..300)
                .filter(|k| s.key_groups.contains(key_group_of(k, MAX)))
                .collect();
            for &k in &keys {
                fill(&mut store, k..k + 1);
            }
            written.push(write_snapshot(&mut store, 1));
        }
        let mut all = Vec::new();
        for subtask in 0..2 {
            let s = scope(subtask, 2);
            let mut store = backend.open_keyed(s.clone()).unwrap();
            for snapshot in &written {
                restore_into(&mut store, snapshot);
            }
            let keys: Vec<u64> = (0..300)
                .filter(|k| s.key_groups.contains(key_group_of(k, MAX)))
                .collect();
            all.extend(read_back(&mut store, keys.into_iter()));
        }
        all.sort();
        let expected: Vec<_> = (0..300u64)
            .map(|k| (k, Some(format!("value-{k}")), Some(k * 20), vec![k as i32]))
            .collect();
        assert_eq!(all, expected, "{}", backend.name());
    }
}

#[test]
fn heap_snapshots_restore_into_rocksdb() {
    let dir = scratch();
    let rocks = RocksDbBackend::new(dir.path(), 10);
    let mut heap = MemoryBackend.open_keyed(scope(0, 1)).unwrap();
    fill(&mut heap, 0..100);
    let written = write_snapshot(&mut heap, 1);
    let mut store = rocks.open_keyed(scope(0, 1)).unwrap();
    restore_into(&mut store, &written);
    // A cache of 10 keys: most reads and writes go to RocksDB itself.
    assert_eq!(read_back(&mut store, 0..100), read_back(&mut heap, 0..100));
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
    let mut restored = backend.open_keyed(scope(0, 1)).unwrap();
    restore_into(&mut restored, &third);
    assert_eq!(
        read_back(&mut restored, 0..510),
        read_back(&mut store, 0..510)
    );
}

#[test]
fn corrupt_snapshots_are_detected() {
    for (backend, _dir) in backends() {
        let mut store = backend.open_keyed(scope(0, 1)).unwrap();
        fill(&mut store, 0..10);
        let mut written = write_snapshot(&mut store, 1);
        let (file, bytes) = written
            .files
            .iter_mut()
            .max_by_key(|(_, b)| b.len())
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        let err =
            weir_state::snapshot::verify_checksum(bytes, file.crc32c, &file.path).unwrap_err();
        assert!(matches!(err, StateError::ChecksumMismatch { .. }), "{err}");
    }
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
    let mut restored = backend.open_keyed(scope(0, 1)).unwrap();
    restore_into(&mut restored, &written);
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
