//! The conformance suite every [`StateBackend`] passes.

use weir_protocol::key_group::key_group_of;
use weir_protocol::KeyGroupRange;
use weir_state::{MemoryBackend, StateBackend, StateError, StateScope, TimeDomain};

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

fn backends() -> Vec<Box<dyn StateBackend>> {
    vec![Box::new(MemoryBackend)]
}

/// A key owned by `scope`.
fn owned_key(scope: &StateScope, from: u64) -> u64 {
    (from..)
        .find(|k| scope.key_groups.contains(key_group_of(k, MAX)))
        .unwrap()
}

#[test]
fn value_state_put_get_update_remove() {
    for backend in backends() {
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
    for backend in backends() {
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
    for backend in backends() {
        let mut store = backend.open_keyed(scope(0, 1)).unwrap();
        let id = store.timer_table::<u64>("timers").unwrap();
        let t = store.table_mut(id).unwrap();
        assert!(t.register(TimeDomain::EventTime, &1, 20));
        assert!(
            !t.register(TimeDomain::EventTime, &1, 20),
            "duplicates collapse"
        );
        assert!(t.register(TimeDomain::EventTime, &2, 10));
        assert!(t.register(TimeDomain::EventTime, &3, 30));
        assert!(t.register(TimeDomain::ProcessingTime, &3, 5));
        assert!(t.delete(TimeDomain::EventTime, &3, 30));
        assert_eq!(t.next_timestamp(TimeDomain::EventTime), Some(10));
        let fired: Vec<_> = std::iter::from_fn(|| t.pop_due(TimeDomain::EventTime, 25))
            .map(|timer| (timer.timestamp, timer.key))
            .collect();
        assert_eq!(fired, vec![(10, 2), (20, 1)]);
        assert_eq!(t.len(TimeDomain::EventTime), 0);
        assert_eq!(t.len(TimeDomain::ProcessingTime), 1);
    }
}

#[test]
fn stores_hold_only_their_key_groups_and_are_independent() {
    for backend in backends() {
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
    for backend in backends() {
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
