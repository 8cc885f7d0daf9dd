//! The conformance suite every [`StateBackend`] passes: this crate's
//! backends run it from `tests/conformance.rs`, a backend outside the
//! crate enables the `conformance` feature and runs it the same way:
//!
//! ```ignore
//! // tests/conformance.rs of a crate with a backend `MyBackend`
//! weir_state::conformance_tests!(weir_state::conformance::Subject::new(MyBackend::new()));
//! ```
//!
//! Every test is also a public function taking the backend, for a suite
//! that wants to run them its own way. The helpers (a snapshot written to
//! memory and restored as the runtime restores it) are public too, for a
//! backend's own tests.

use crate::{
    KeyedStateStore, MemoryBackend, NativeFiles, StateBackend, StateError, StateScope,
    StoreSnapshot, TimeDomain,
};
use weir_protocol::key_group::key_group_of;
use weir_protocol::{Epoch, KeyGroupRange, StateFile, StateFileFormat};

/// Number of key groups of the suite's jobs.
pub const MAX: u32 = 16;

/// A backend under test, with whatever must outlive its stores (a scratch
/// directory, …), dropped after the backend.
pub struct Subject {
    backend: Box<dyn StateBackend>,
    _keep: Box<dyn std::any::Any>,
}

impl Subject {
    /// A backend that needs nothing else.
    pub fn new(backend: impl StateBackend + 'static) -> Self {
        Self::keeping(backend, ())
    }

    /// A backend, and what must live until it is dropped.
    pub fn keeping(backend: impl StateBackend + 'static, keep: impl std::any::Any) -> Self {
        Self {
            backend: Box::new(backend),
            _keep: Box::new(keep),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &dyn StateBackend {
        self.backend.as_ref()
    }
}

/// Defines one `#[test]` per test of the suite, each on a fresh [`Subject`]
/// made by the expression given.
#[macro_export]
macro_rules! conformance_tests {
    ($subject:expr) => {
        $crate::conformance_tests!(@each $subject; value_state_put_get_update_remove, map_and_list_state, timers_fire_in_order_once_and_can_be_deleted, stores_hold_only_their_key_groups_and_are_independent, registering_a_name_twice_returns_the_same_table_or_a_conflict, snapshot_then_restore_gives_back_every_kind_of_state, a_snapshot_is_unaffected_by_later_writes, restoring_a_subset_of_key_groups_rescales_state, corrupt_snapshots_are_detected, heap_snapshots_restore_into_this_backend);
    };
    (@each $subject:expr; $($test:ident),*) => {
        $(
            #[test]
            fn $test() {
                let subject: $crate::conformance::Subject = $subject;
                $crate::conformance::$test(subject.backend());
            }
        )*
    };
}

/// The scope of subtask `subtask` of `parallelism` in the suite's job.
pub fn scope(subtask: u32, parallelism: u32) -> StateScope {
    StateScope {
        job: "conformance".into(),
        operator: "op".into(),
        subtask,
        key_groups: KeyGroupRange::for_subtask(subtask, parallelism, MAX),
        max_parallelism: MAX,
    }
}

/// A snapshot as written to checkpoint storage: its files and contents.
pub struct Written {
    /// The key groups of the store it was taken of.
    pub key_groups: KeyGroupRange,
    /// Every file, with its contents.
    pub files: Vec<(StateFile, Vec<u8>)>,
}

/// Checkpoint storage for these tests: path to contents.
pub type Storage = std::collections::HashMap<String, Vec<u8>>;

/// Takes a snapshot of `store` and writes it.
pub fn write_snapshot(store: &mut KeyedStateStore, epoch: u64) -> Written {
    let snapshot = store.snapshot(Epoch(epoch)).unwrap();
    write(&snapshot, store.key_groups(), &mut Storage::new())
}

/// Writes `snapshot` into `contents` (which may hold files it references).
pub fn write(
    snapshot: &StoreSnapshot,
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

/// Opens `scope`'s store from written snapshots as the runtime restores
/// one: each file checked against its size and checksum, a backend's own
/// snapshots that overlap the scope through
/// [`StateBackend::open_keyed_from`] (their shared files handed over as
/// local copies, which the backend must leave unchanged), then the
/// key-group sections the scope owns.
pub fn restored(
    backend: &dyn StateBackend,
    scope: StateScope,
    written: &[&Written],
) -> KeyedStateStore {
    let copies = std::env::temp_dir().join(format!(
        "weir-conformance-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&copies).unwrap();
    let mut native = Vec::new();
    let mut local = Vec::new();
    for snapshot in written {
        let overlaps = snapshot.key_groups.start.max(scope.key_groups.start)
            < snapshot.key_groups.end.min(scope.key_groups.end);
        let mut files: Option<NativeFiles> = None;
        for (file, bytes) in &snapshot.files {
            crate::snapshot::check_file(bytes, file, &file.path).unwrap();
            let StateFileFormat::Native { backend, name } = &file.format else {
                continue;
            };
            let files = files.get_or_insert_with(|| NativeFiles::new(backend, snapshot.key_groups));
            assert_eq!(*backend, files.backend, "one snapshot, one backend");
            if weir_protocol::checkpoint::paths::is_shared(&file.path) {
                let copy = copies.join(format!("{}-{name}", local.len()));
                std::fs::write(&copy, bytes).unwrap();
                local.push((copy.clone(), file.crc32c));
                files.local.push((name.clone(), copy));
            } else {
                files.files.push((name.clone(), bytes.clone()));
            }
        }
        if let (true, Some(files)) = (overlaps, files) {
            native.push(files);
        }
    }
    let mut store = backend.open_keyed_from(scope, &native).unwrap();
    for (copy, crc32c) in &local {
        let bytes = std::fs::read(copy).unwrap();
        assert_eq!(
            crc32c::crc32c(&bytes),
            *crc32c,
            "{} changed a local copy",
            backend.name()
        );
    }
    let _ = std::fs::remove_dir_all(&copies);
    for snapshot in written {
        for (file, bytes) in &snapshot.files {
            if file.format != StateFileFormat::KeyGroupSections {
                continue;
            }
            for span in &file.key_groups {
                if store.key_groups().contains(span.key_group) {
                    let section = crate::snapshot::section(bytes, span, &file.path).unwrap();
                    store.restore_key_group(span.key_group, section).unwrap();
                }
            }
        }
    }
    store
}

/// A key owned by `scope`.
pub fn owned_key(scope: &StateScope, from: u64) -> u64 {
    (from..)
        .find(|k| scope.key_groups.contains(key_group_of(k, MAX)))
        .unwrap()
}

/// Fills a store with every kind of state over `keys` keys.
pub fn fill(store: &mut crate::KeyedStateStore, keys: std::ops::Range<u64>) {
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
pub type KeyState = (u64, Option<String>, Option<u64>, Vec<i32>);

/// Reads every kind of state of `keys` back as comparable tuples.
pub fn read_back(
    store: &mut crate::KeyedStateStore,
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

/// The suite's test: value state put get update remove.
pub fn value_state_put_get_update_remove(backend: &dyn StateBackend) {
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

/// The suite's test: map and list state.
pub fn map_and_list_state(backend: &dyn StateBackend) {
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

/// The suite's test: timers fire in order once and can be deleted.
pub fn timers_fire_in_order_once_and_can_be_deleted(backend: &dyn StateBackend) {
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

/// The suite's test: stores hold only their key groups and are independent.
pub fn stores_hold_only_their_key_groups_and_are_independent(backend: &dyn StateBackend) {
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

/// The suite's test: registering a name twice returns the same table or a conflict.
pub fn registering_a_name_twice_returns_the_same_table_or_a_conflict(backend: &dyn StateBackend) {
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

/// The suite's test: snapshot then restore gives back every kind of state.
pub fn snapshot_then_restore_gives_back_every_kind_of_state(backend: &dyn StateBackend) {
    let mut store = backend.open_keyed(scope(0, 1)).unwrap();
    fill(&mut store, 0..200);
    let written = write_snapshot(&mut store, 1);

    let mut restored = restored(backend, scope(0, 1), &[&written]);
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

/// The suite's test: a snapshot is unaffected by later writes.
pub fn a_snapshot_is_unaffected_by_later_writes(backend: &dyn StateBackend) {
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
    let mut restored = restored(backend, scope(0, 1), &[&written]);
    assert_eq!(
        read_back(&mut restored, 0..50),
        before,
        "{}",
        backend.name()
    );
    let later = read_back(&mut restored, 50..60);
    assert_eq!(later.iter().filter(|r| r.1.is_some()).count(), 0);
}

/// The suite's test: restoring a subset of key groups rescales state.
pub fn restoring_a_subset_of_key_groups_rescales_state(backend: &dyn StateBackend) {
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
        let mut store = restored(backend, s.clone(), &written.iter().collect::<Vec<_>>());
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

/// The suite's test: corrupt snapshots are detected.
pub fn corrupt_snapshots_are_detected(backend: &dyn StateBackend) {
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
    // As a restore reads every file: checked before anything uses it.
    let err = crate::snapshot::check_file(bytes, file, &file.path).unwrap_err();
    assert!(
        matches!(err, StateError::ChecksumMismatch { .. }),
        "{}: {err}",
        backend.name()
    );
    // A truncated file is caught by its size.
    bytes.truncate(last);
    let err = crate::snapshot::check_file(bytes, file, &file.path).unwrap_err();
    assert!(
        matches!(err, StateError::Corrupt { .. }),
        "{}: {err}",
        backend.name()
    );
}

/// The suite's test: snapshots of the heap (Weir's key-group sections)
/// restore into this backend.
pub fn heap_snapshots_restore_into_this_backend(backend: &dyn StateBackend) {
    let mut heap = MemoryBackend.open_keyed(scope(0, 1)).unwrap();
    fill(&mut heap, 0..100);
    let written = write_snapshot(&mut heap, 1);
    let mut store = restored(backend, scope(0, 1), &[&written]);
    assert_eq!(
        read_back(&mut store, 0..100),
        read_back(&mut heap, 0..100),
        "{}",
        backend.name()
    );
}
