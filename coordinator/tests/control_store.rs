//! The control-store conformance suite: every [`ControlPlane`] keeps the
//! contract of `weir_coordinator::control` (durable writes, fenced writes,
//! rising terms, records replaced by number). The etcd plane runs it
//! against a real etcd started by the test.

#[path = "../../tests/support/etcd.rs"]
mod etcd;

use std::time::{Duration, Instant};
use weir_coordinator::control::{
    ControlPlane, ControlStore, CoordinatorAddress, Counters, LeaderInfo, StoredJob,
};
use weir_coordinator::{CoordinatorError, DirPlane, EtcdPlane, MemoryPlane};
use weir_protocol::cluster::{JobSpec, RunSettings};

fn me(n: u16) -> CoordinatorAddress {
    CoordinatorAddress {
        api: format!("127.0.0.1:{}", 8000 + n),
        workers: format!("127.0.0.1:{}", 9000 + n),
    }
}

fn job(number: u32) -> StoredJob {
    StoredJob::new(
        number,
        format!("keyed-sum-{number}"),
        JobSpec {
            job: "keyed-sum".into(),
            params: vec![("events".into(), "100".into())],
            parallelism: 2,
            max_parallelism: 128,
            output: None,
        },
        RunSettings::default(),
    )
}

/// A view of the control state of `cluster_id` in `etcd`, with 2 s leases.
fn etcd_plane(url: &str, cluster_id: &str) -> EtcdPlane {
    EtcdPlane::connect(url, cluster_id, Duration::from_secs(2)).unwrap()
}

/// The numbers of the jobs `store` holds, in the order it loads them.
fn job_numbers(store: &dyn ControlStore) -> Vec<u32> {
    store
        .load()
        .unwrap()
        .jobs
        .iter()
        .map(|j| j.number)
        .collect()
}

fn fenced(result: Result<(), CoordinatorError>) -> bool {
    matches!(result, Err(CoordinatorError::Fenced { .. }))
}

/// Runs the contract against `first` and `second`: two views (processes)
/// of the same control state, which starts empty.
fn conformance(first_plane: &dyn ControlPlane, second_plane: &dyn ControlPlane) {
    let first = first_plane
        .campaign(&me(1))
        .expect("the first campaign wins");
    let store = &first.store;
    assert_eq!(store.term(), first.term);
    let empty = store.load().unwrap();
    assert_eq!(empty.counters, Counters::default());
    assert!(empty.jobs.is_empty());
    assert_eq!(
        first_plane.leader().unwrap(),
        Some(LeaderInfo {
            address: me(1),
            term: first.term
        })
    );

    // Writes are durable, and a put replaces the record of its number.
    let counters = Counters {
        jobs: 2,
        workers: 3,
    };
    let (one, two) = (job(1), job(2));
    store.put_counters(&counters).unwrap();
    store.put_job(&two).unwrap();
    store.put_job(&one).unwrap();
    let mut updated = one;
    updated.attempt = 4;
    updated.last_epoch = 17;
    store.put_job(&updated).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.counters, counters);
    assert_eq!(
        loaded.jobs,
        [updated.clone(), two.clone()],
        "by number, replaced"
    );

    // A later term sees everything; the earlier term's writes are refused.
    (first.resign)();
    let second = second_plane
        .campaign(&me(2))
        .expect("the second campaign wins");
    assert!(
        second.term > first.term,
        "terms rise: {} then {}",
        first.term,
        second.term
    );
    let taken_over = second.store.load().unwrap();
    assert_eq!(taken_over.counters, counters);
    assert_eq!(taken_over.jobs, [updated, two]);
    assert!(
        fenced(first.store.put_job(&job(9))),
        "a deposed leader's job write"
    );
    assert!(
        fenced(first.store.put_counters(&Counters {
            jobs: 99,
            workers: 99
        })),
        "a deposed leader's counter write"
    );
    let after = second.store.load().unwrap();
    assert_eq!(after.counters, counters, "a refused write changes nothing");
    assert_eq!(after.jobs.len(), 2);
    second.store.put_job(&job(3)).unwrap();
    // Many records load whole, in number order (etcd reads them in pages).
    for number in (10..460).rev() {
        second.store.put_job(&job(number)).unwrap();
    }
    let numbers = job_numbers(&*second.store);
    let expected: Vec<u32> = [1, 2, 3].into_iter().chain(10..460).collect();
    assert_eq!(numbers, expected);
    assert_eq!(
        first_plane.leader().unwrap().map(|l| l.address),
        Some(me(2)),
        "every view names the new leader"
    );
    (second.resign)();
}

#[test]
fn memory_plane_keeps_the_contract() {
    let plane = MemoryPlane::new();
    conformance(&plane, &plane.clone());
}

#[test]
fn standalone_directory_plane_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("control").display().to_string();
    let first = DirPlane::open(&location).unwrap();
    let second = DirPlane::open(&location).unwrap();
    conformance(&first, &second);
}

#[test]
fn etcd_plane_keeps_the_contract() {
    let Some(etcd) = etcd::Etcd::start() else {
        return;
    };
    let first = etcd_plane(&etcd.url(), "conformance");
    let second = etcd_plane(&etcd.url(), "conformance");
    conformance(&first, &second);
    // Another cluster id is another control state.
    let other = etcd_plane(&etcd.url(), "elsewhere");
    let leadership = other.campaign(&me(3)).unwrap();
    assert!(leadership.store.load().unwrap().jobs.is_empty());
    (leadership.resign)();
}

/// A leader whose election key is deleted by hand (a second leader forced)
/// still believes it leads, but etcd refuses its writes.
#[test]
fn a_second_leader_forced_by_hand_fences_the_first() {
    let Some(etcd) = etcd::Etcd::start() else {
        return;
    };
    let first_plane = etcd_plane(&etcd.url(), "forced");
    let second_plane = etcd_plane(&etcd.url(), "forced");
    let first = first_plane.campaign(&me(1)).unwrap();
    first.store.put_job(&job(1)).unwrap();
    etcd.etcdctl(&["del", "--prefix", "/weir/forced/election"]);
    let second = second_plane.campaign(&me(2)).unwrap();
    assert!(first.guard.leads(), "its lease is still renewed");
    assert!(fenced(first.store.put_job(&job(2))));
    second.store.put_job(&job(3)).unwrap();
    let numbers = job_numbers(&*second.store);
    assert_eq!(numbers, [1, 3]);
    (first.resign)();
    (second.resign)();
}

/// A standby campaigns until the leader's lease is gone: revoked at once
/// when the leader resigns.
#[test]
fn a_standby_wins_when_the_leader_resigns() {
    let Some(etcd) = etcd::Etcd::start() else {
        return;
    };
    // A lease far longer than the test waits: the standby winning at all
    // shows the resignation revoked it.
    let lease = Duration::from_secs(120);
    let leader_plane = EtcdPlane::connect(&etcd.url(), "standby", lease).unwrap();
    let leader = leader_plane.campaign(&me(1)).unwrap();
    let (won_tx, won_rx) = crossbeam_channel::bounded(1);
    let standby = std::thread::spawn({
        let url = etcd.url();
        move || {
            let plane = EtcdPlane::connect(&url, "standby", lease).unwrap();
            let won = plane.campaign(&me(2)).unwrap();
            let _ = won_tx.send(won.term);
            (won.resign)();
        }
    });
    // The standby's campaign key is there: it waits behind the leader's.
    let deadline = Instant::now() + Duration::from_secs(30);
    while etcd
        .etcdctl(&["get", "--prefix", "--keys-only", "/weir/standby/election"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the standby never campaigned");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        leader_plane.leader().unwrap().map(|l| l.address),
        Some(me(1)),
        "the standby waits"
    );
    (leader.resign)();
    let term = won_rx
        .recv_timeout(lease / 4)
        .expect("a resignation hands over without waiting for the lease");
    assert!(term > leader.term);
    standby.join().unwrap();
}

#[test]
fn an_unreachable_or_malformed_etcd_is_a_clear_error() {
    // An answer, not a hang (the wait is a generous bound, not a timing).
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(
            EtcdPlane::connect("etcd://127.0.0.1:1", "x", Duration::from_secs(2))
                .map(|_| ())
                .unwrap_err()
                .to_string(),
        );
    });
    let error = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("connecting to nothing ends in an error, not a hang");
    assert!(
        error.contains("etcd 127.0.0.1:1") || error.contains("etcd http://127.0.0.1:1"),
        "{error}"
    );
    for (url, problem) in [
        ("localhost:2379", "must start with etcd://"),
        ("etcd://localhost", "has no port"),
    ] {
        let error = EtcdPlane::connect(url, "x", Duration::from_secs(2))
            .unwrap_err()
            .to_string();
        assert!(error.contains(problem), "{url}: {error}");
    }
    let error = EtcdPlane::connect("etcd://127.0.0.1:2379", "x", Duration::from_millis(1500))
        .unwrap_err()
        .to_string();
    assert!(error.contains("whole number of seconds"), "{error}");
    let error = EtcdPlane::connect("etcd://127.0.0.1:2379", "a/b", Duration::from_secs(2))
        .unwrap_err()
        .to_string();
    assert!(error.contains("cluster id"), "{error}");
}
