//! Detection and recovery benchmark: a `weir coordinator` and three
//! `weir worker` processes (two slots each) run keyed-sum at p=3 with
//! RocksDB state of a given size and 1 s checkpoints; once a checkpoint
//! holds all of the state, the worker running slot 0 is SIGKILLed. Prints,
//! per configuration, one JSON line with the time from the kill to its
//! detection and to every subtask running again, and which tier served
//! each restored subtask.
//!
//! Configurations: state of about 100 MB and 1 GB, each restored with
//! `--replicas 1` (the lost subtasks move to the worker holding their peer
//! replica; the others reuse their local copies) and `--replicas 0` (the
//! lost subtasks download from the object store, a local `file://`
//! directory here). The `spare-…` configurations run three one-slot
//! workers at p=2 with 20,000 keys, so the third worker is a spare: every
//! replica goes to it, and the lost slot moves there while the survivor
//! stays in its slot. The `late-spare-…` configurations start with two
//! one-slot workers at p=2 (no spare) and add a third once the state is
//! checkpointed: it catches up on the latest checkpoint from storage
//! (`catch_up_ms`, `catch_up_bytes`), and after the next checkpoint slot 0
//! is killed and moves to it.
//!
//! Environment: `RECOVERY_ONLY` (a substring of the configuration names,
//! e.g. `100MB`), `RECOVERY_RUNS` (default 1), `RECOVERY_TRACE` (set: the
//! job's state transitions after the kill and its restored subtasks, on
//! stderr).

#[path = "support/cluster.rs"]
mod cluster;

use cluster::ProcessCluster;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weir::protocol::cluster::{BackendKind, RestoreTier, RunSettings};
use weir::protocol::{JobState, SubmitRequest};

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where a configuration runs: worker processes, slots each, parallelism,
/// and whether a one-slot spare joins once the state is checkpointed.
#[derive(Clone, Copy)]
struct Layout {
    workers: usize,
    slots: u32,
    parallelism: u32,
    late_spare: bool,
}

fn request(layout: Layout, keys: u64, state_bytes: u64, replicas: u32) -> SubmitRequest {
    let params = [
        ("events", "1000000000000".to_owned()),
        ("keys", keys.to_string()),
        ("state_bytes", state_bytes.to_string()),
        ("rate", "1500000".to_owned()),
    ];
    let settings = RunSettings {
        checkpoint_interval_ms: 1000,
        state_backend: BackendKind::Rocksdb,
        replicas,
        ..RunSettings::default()
    };
    cluster::keyed_sum(&params, layout.parallelism, settings)
}

fn run_once(layout: Layout, keys: u64, state_bytes: u64, replicas: u32) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut cluster = ProcessCluster::start(dir.path(), layout.workers, layout.slots);
    let client = cluster.client();
    let id = client
        .submit(&request(layout, keys, state_bytes, replicas))
        .expect("the job is accepted")
        .job_id;
    // Wait until a checkpoint holds (nearly) all the state: about 95% of
    // the keys are touched after 3 events per key.
    let target = keys * state_bytes * 9 / 10;
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        let status = client.job(&id).expect("status");
        assert!(!status.state.is_terminal(), "{status:?}");
        assert!(
            Instant::now() < deadline,
            "the state never reached {target} bytes"
        );
        if status.checkpoint_sizes.last().is_some_and(|s| *s >= target) {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let state = *status.checkpoint_sizes.last().expect("a checkpoint");
    let mut caught_up = String::new();
    let status = if layout.late_spare {
        cluster.add_worker(1);
        let status = loop {
            let status = client.job(&id).expect("status");
            assert!(Instant::now() < deadline, "no catch-up: {status:?}");
            let done = status
                .spare_catch_ups
                .iter()
                .rev()
                .find(|c| c.took_ms.is_some());
            if let Some(done) = done {
                assert_eq!(done.failure, None, "{done:?}");
                // The next checkpoint went to the spare as a push.
                if status.latest_checkpoint.is_some_and(|e| e > done.epoch) {
                    break status;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let ms: u64 = status
            .spare_catch_ups
            .iter()
            .filter_map(|c| c.took_ms)
            .sum();
        let bytes: u64 = status
            .spare_catch_ups
            .iter()
            .filter_map(|c| c.copied_bytes)
            .sum();
        caught_up = format!(",\"catch_up_ms\":{ms},\"catch_up_bytes\":{bytes}");
        status
    } else {
        status
    };
    let victim = status
        .placement
        .iter()
        .find(|p| p.subtask == 0)
        .expect("slot 0")
        .worker;
    let pid = cluster.pid_of(victim);
    let killed_at = wall_ms();
    cluster.kill(pid);
    let status = loop {
        let status = client.job(&id).expect("status");
        assert!(!status.state.is_terminal(), "{status:?}");
        assert!(Instant::now() < deadline, "no recovery: {status:?}");
        if status.state == JobState::Running
            && status
                .last_loss
                .as_ref()
                .is_some_and(|l| l.recovered_at_ms.is_some())
        {
            break status;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let loss = status.last_loss.clone().expect("the loss");
    if std::env::var("RECOVERY_TRACE").is_ok() {
        for t in &status.transitions {
            let after_kill = t.at_ms as i64 - killed_at as i64;
            eprintln!("transition: {} at {after_kill:+} ms", t.state);
        }
        eprintln!("restored: {:?}", status.restored);
    }
    let count = |tier: RestoreTier| status.restored.iter().filter(|r| r.tier == tier).count();
    let fetched =
        |tier: RestoreTier| -> u64 { status.restored.iter().map(|r| r.bytes.of(tier)).sum() };
    let slowest = status
        .restored
        .iter()
        .map(|r| r.duration_ms)
        .max()
        .unwrap_or(0);
    // Survivors reopen their own copies while the lost slots restore from
    // a peer's, in parallel: both figures say what an in-place rollback of
    // a survivor's still-open instance could save.
    let slowest_of = |tier: RestoreTier| {
        status
            .restored
            .iter()
            .filter(|r| r.tier == tier)
            .map(|r| r.duration_ms)
            .max()
            .unwrap_or(0)
    };
    let per_tier = format!(
        ",\"slowest_local_restore_ms\":{},\"slowest_peer_restore_ms\":{}",
        slowest_of(RestoreTier::Local),
        slowest_of(RestoreTier::Peer)
    );
    let _ = client.cancel(&id);
    format!(
        "\"state_bytes\":{state},\"detect_ms\":{},\"running_again_ms\":{},\"coordinator_recovery_ms\":{:.1},\"restored_local\":{},\"restored_peer\":{},\"restored_object_store\":{},\"slowest_restore_ms\":{slowest},\"bytes_local\":{},\"bytes_peer\":{},\"bytes_object_store\":{}",
        loss.detected_at_ms.saturating_sub(killed_at),
        loss.recovered_at_ms.unwrap_or(0).saturating_sub(killed_at),
        loss.recovery_ms.unwrap_or(0.0),
        count(RestoreTier::Local),
        count(RestoreTier::Peer),
        count(RestoreTier::ObjectStore),
        fetched(RestoreTier::Local),
        fetched(RestoreTier::Peer),
        fetched(RestoreTier::ObjectStore)
    ) + &per_tier
        + &caught_up
}

fn main() {
    let only = std::env::var("RECOVERY_ONLY").unwrap_or_default();
    let runs: usize = std::env::var("RECOVERY_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let (spread, spare, late) = (
        Layout {
            workers: 3,
            slots: 2,
            parallelism: 3,
            late_spare: false,
        },
        Layout {
            workers: 3,
            slots: 1,
            parallelism: 2,
            late_spare: false,
        },
        Layout {
            workers: 2,
            slots: 1,
            parallelism: 2,
            late_spare: true,
        },
    );
    let configs = [
        ("", spread, "100MB", 200_000u64, 500u64),
        ("", spread, "1GB", 1_000_000, 1000),
        ("spare-", spare, "100MB", 20_000, 5_000),
        ("spare-", spare, "1GB", 20_000, 50_000),
        ("late-spare-", late, "1GB", 20_000, 50_000),
    ];
    for (prefix, layout, size, keys, state_bytes) in configs {
        for (tier, replicas) in [("replica", 1u32), ("object-store", 0)] {
            // Without replicas a spare has nothing to catch up on.
            if layout.late_spare && replicas == 0 {
                continue;
            }
            let name = format!("{prefix}{size}-{tier}");
            if !name.contains(&only) {
                continue;
            }
            for run in 0..runs {
                let figures = run_once(layout, keys, state_bytes, replicas);
                println!("{{\"bench\":\"recovery\",\"config\":\"{name}\",\"run\":{run},\"workers\":{},\"slots\":{},\"parallelism\":{},\"replicas\":{replicas},{figures}}}", layout.workers, layout.slots, layout.parallelism);
            }
        }
    }
}
