//! Regional failover on a real cluster: a job of two unconnected chains
//! falls apart into one pipelined region per chain and subtask; killing a
//! worker restarts only the regions that ran on it.

use crate::harness::{text, worker_of_slot, TestCluster};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use weir::job::{JobOptions, JobParams};
use weir::protocol::regions::RegionMap;
use weir::protocol::JobState;

/// Events per chain: at 4,000 a second per chain, about 10 s of run.
const EVENTS: u64 = 40_000;

/// The committed lines of `chain`'s sink subtask `subtask`, in commit
/// (epoch) order.
fn committed_lines(out: &Path, chain: &str, subtask: u32) -> Vec<String> {
    let dir = out.join(chain);
    let prefix = format!("part-{subtask:05}-");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|name| {
            let body = std::fs::read_to_string(dir.join(name)).unwrap();
            body.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

/// Two one-slot workers run the job at p=2 (slot `i` runs subtask `i` of
/// both chains: two regions per slot) and a third is a spare. SIGKILL of
/// the worker of slot 0 restarts the two regions of slot 0 on the spare,
/// from the latest checkpoint; the two regions of slot 1 keep running and
/// keep their attempt, and their output has every event once, in order.
/// Overall, every event of each chain is in the output exactly once.
#[test]
fn a_worker_kill_restarts_only_the_regions_that_ran_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, 1, &[]);
    let out = dir.path().join("out");
    let out_arg = out.display().to_string();
    let events = format!("events={EVENTS}");
    let submitted = cluster.weir(&[
        "submit",
        "two-chains",
        "--param",
        &events,
        "--param",
        "rate=4000",
        "-p",
        "2",
        "--checkpoint-interval",
        "200ms",
        "--output",
        &out_arg,
    ]);
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    let id = text(&submitted.stdout).trim().to_owned();
    let graph = weir::jobs::registry()
        .build(
            "two-chains",
            &JobParams::split_pairs(std::slice::from_ref(&events)).unwrap(),
            &JobOptions {
                parallelism: 2,
                ..JobOptions::default()
            },
        )
        .unwrap()
        .graph()
        .clone();
    let regions = RegionMap::of(&graph);
    assert_eq!(regions.len(), 4, "one region per chain and subtask");

    let before = cluster.wait_for(&id, "two checkpoints", |s| s.checkpoints_completed >= 2);
    assert_eq!(before.regions, 4, "{before:?}");
    assert_eq!(before.region_attempts.len(), 4, "{before:?}");
    let victim = cluster.kill_worker_of_slot_0(&before);
    let lost = regions.regions_on(&before.placement, victim);
    assert_eq!(lost.len(), 2, "slot 0 runs a region of each chain");
    let after = cluster.wait_for(&id, "the lost regions run again", |s| {
        s.regional_restarts
            .last()
            .is_some_and(|r| r.recovery_ms.is_some())
    });
    let restart = after.regional_restarts.last().unwrap();
    eprintln!("regional restart: {restart:?}");
    assert_eq!(
        restart.regions.iter().copied().collect::<BTreeSet<_>>(),
        lost,
        "only the regions on the lost worker restart: {after:?}"
    );
    // The exception history has it too, with its regions, its recovery
    // and the two restored subtasks of its stateful operators' regions.
    let exceptions = cluster.client().exceptions(&id).unwrap();
    let [recorded] = exceptions.exceptions.as_slice() else {
        panic!("one restart: {exceptions:?}");
    };
    assert_eq!(
        recorded.scope,
        weir::coordinator::history::RestartScope::Regional
    );
    assert_eq!(recorded.regions, restart.regions, "{recorded:?}");
    assert_eq!(recorded.recovery_ms, restart.recovery_ms, "{recorded:?}");
    assert_eq!(recorded.attempt, before.attempt, "{recorded:?}");
    assert_eq!(after.state, JobState::Running, "{after:?}");
    assert_eq!(after.attempt, before.attempt, "the job keeps its attempt");
    assert_eq!(after.restarts, before.restarts, "no restart of the job");
    for (region, attempt) in &after.region_attempts {
        if lost.contains(region) {
            assert!(attempt > &before.region_attempts[region], "{after:?}");
        } else {
            assert_eq!(
                attempt, &before.region_attempts[region],
                "region {region} keeps its attempt"
            );
        }
    }
    let spare = worker_of_slot(&after, 0);
    assert!(
        spare != victim && spare != worker_of_slot(&before, 1),
        "slot 0 moved to the spare: {:?}",
        after.placement
    );
    assert_eq!(worker_of_slot(&after, 1), worker_of_slot(&before, 1));
    let status_text = text(&cluster.weir(&["jobs", "status", &id]).stdout);
    assert!(
        status_text.contains("the others kept running"),
        "{status_text}"
    );

    let done = cluster.wait_finished(&id);
    assert_eq!(done.attempt, before.attempt, "{done:?}");
    // Each chain's subtask `i` generates the `i`-th half of its events.
    let half = EVENTS / 2;
    for chain in ["left", "right"] {
        let survivor = committed_lines(&out, chain, 1);
        let expected: Vec<String> = (half..EVENTS).map(|seq| format!("{chain} {seq}")).collect();
        assert!(
            survivor == expected,
            "{chain}: the surviving region's output has every event once, in order ({} lines, {} expected)",
            survivor.len(),
            expected.len()
        );
        let mut all: BTreeMap<String, u32> = BTreeMap::new();
        for line in committed_lines(&out, chain, 0).into_iter().chain(survivor) {
            *all.entry(line).or_default() += 1;
        }
        assert_eq!(all.len() as u64, EVENTS, "{chain}: no event lost");
        assert!(
            all.values().all(|n| *n == 1),
            "{chain}: no event twice: {:?}",
            all.iter()
                .filter(|(_, n)| **n > 1)
                .take(5)
                .collect::<Vec<_>>()
        );
    }
}
