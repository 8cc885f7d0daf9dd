//! High availability over a real etcd: three coordinators, one leader.
//! The leader is SIGKILLed again and again, crashed at the dangerous
//! moments of a checkpoint, cut off from etcd, paused past its lease, and
//! deposed by hand; the job is never resubmitted, and its output always
//! equals a clean run's: every (key, count) update once, the same totals.
//!
//! Seeds are printed; rerun with `WEIR_TEST_SEED=<seed>`. A longer soak:
//! `WEIR_HA_CHAOS_KILLS=30 cargo test --test integration ha:: -- --nocapture`.

#[path = "../support/etcd.rs"]
pub mod etcd;

use crate::harness::{clean_long_run, clean_run_of, TestCluster};
use crate::partition::Netns;
use crate::recovery::{assert_same, Rng, JOB};
use etcd::Etcd;
use std::path::Path;
use std::time::{Duration, Instant};
use weir::protocol::time::now_ms;
use weir::protocol::{CheckpointManifest, JobState};

/// The leader's lease in these tests (the failover benchmark's too).
const LEASE: &str = "2s";

pub fn ha_flags<'a>(etcd: &'a str, cluster_id: &'a str) -> Vec<&'a str> {
    vec!["--ha", etcd, "--cluster-id", cluster_id, "--lease", LEASE]
}

/// etcd, `coordinators` coordinators (the first one leads; `first_env` is
/// its environment) and `workers` one-slot workers.
fn ha_cluster(
    dir: &Path,
    etcd: &Etcd,
    coordinators: usize,
    workers: usize,
    first_env: &[(&str, &str)],
) -> TestCluster {
    let url = etcd.url();
    let flags = ha_flags(&url, "test");
    let mut cluster = TestCluster::empty(dir, &[]);
    cluster.add_coordinator(&flags, first_env, &[]);
    assert_eq!(cluster.wait_for_leader(), 0);
    for _ in 1..coordinators {
        cluster.add_coordinator(&flags, &[], &[]);
    }
    for _ in 0..workers {
        cluster.add_worker(1);
    }
    cluster.wait_for_workers(workers);
    cluster
}

/// (epoch, leader term) of every complete checkpoint of `job`.
fn completed_checkpoints(dir: &Path, job: &str) -> Vec<(u64, u64)> {
    let job_dir = dir.join("checkpoints").join(job);
    weir::testing::complete_checkpoints(&job_dir)
        .unwrap()
        .iter()
        .map(|path| {
            let manifest: CheckpointManifest =
                serde_json::from_slice(&std::fs::read(path.join("manifest.json")).unwrap())
                    .unwrap();
            let term = manifest.leader_term.expect("manifests carry the term");
            (manifest.epoch.0, term)
        })
        .collect()
}

/// No checkpoint completed under `old` after `new` began: every epoch of
/// the old term is below every epoch of the new one.
fn assert_terms_ordered(checkpoints: &[(u64, u64)], old: u64, new: u64) {
    let last_old = checkpoints
        .iter()
        .filter(|(_, t)| *t == old)
        .map(|(e, _)| *e)
        .max();
    let first_new = checkpoints
        .iter()
        .filter(|(_, t)| *t >= new)
        .map(|(e, _)| *e)
        .min();
    let (Some(last_old), Some(first_new)) = (last_old, first_new) else {
        panic!("checkpoints of both term {old} and term {new} are kept: {checkpoints:?}");
    };
    assert!(
        last_old < first_new,
        "term {old} completed checkpoint {last_old} after term {new} completed {first_new}: {checkpoints:?}"
    );
}

fn term_of(cluster: &TestCluster, index: usize) -> u64 {
    cluster
        .leader_answer(index)
        .and_then(|a| a.leader)
        .expect("a leader")
        .term
}

#[test]
fn killing_the_leader_again_and_again_keeps_the_output_exactly_once() {
    let Some(etcd) = Etcd::start() else { return };
    let mut rng = Rng::from_env("ha_chaos");
    let kills: u64 = std::env::var("WEIR_HA_CHAOS_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    // Three coordinators; three one-slot workers for p=3 and a spare.
    let mut cluster = ha_cluster(dir.path(), &etcd, 3, 4, &[]);
    let out = dir.path().join("out");
    // At 100,000 events/s the job runs 4 s per kill plus 6 s: longer than
    // the kill loop (a new leader within ~2.5 s, then up to 1.5 s), so it
    // never ends early.
    let events = format!("events={}", 100_000 * (6 + 4 * kills));
    let mut job: Vec<&str> = JOB.to_vec();
    job[2] = &events;
    job[8] = "rate=100000";
    let id = cluster.submit_chaos_job(&job, &out);
    let client = cluster.client();
    let mut term = term_of(&cluster, 0);
    for kill in 1..=kills {
        let leader = cluster.wait_for_leader();
        std::thread::sleep(Duration::from_millis(rng.between(200, 1500)));
        let status = client.job(&id).unwrap();
        assert!(
            !status.state.is_terminal(),
            "the job ended early: {status:?}"
        );
        println!(
            "kill {kill}: leader coordinator {leader} (term {}), job {} attempt {} adopted {} checkpoint {:?}",
            status.leader_term, status.state, status.attempt, status.adopted, status.latest_checkpoint
        );
        cluster.kill_coordinator(leader);
        cluster.restart_coordinator(leader);
        let next = cluster.wait_for_leader();
        let next_term = term_of(&cluster, next);
        assert!(next_term > term, "terms rise: {term} then {next_term}");
        term = next_term;
    }
    let status = cluster.wait_finished(&id);
    println!(
        "finished: attempt {}, restarts {}, adopted {}, checkpoints {:?}",
        status.attempt, status.restarts, status.adopted, status.latest_checkpoint
    );
    assert_same(&out, &clean_run_of(dir.path(), "clean", &job));
}

/// Coordinator 0 leads with a crash hook armed at `point`; it aborts there,
/// a standby takes over, and the job ends exactly once.
fn crash_at(point: &str, extra: &[&str]) {
    let Some(etcd) = Etcd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ha_cluster(dir.path(), &etcd, 2, 3, &[("WEIR_TEST_CRASH_AT", point)]);
    let out = dir.path().join("out");
    let id = cluster.submit_long_job(&out, extra);
    cluster.wait_for_exit(0, &format!("the crash hook {point}"));
    let log = std::fs::read_to_string(&cluster.coordinators[0].log).unwrap();
    let name = point.split(':').next().unwrap();
    assert!(log.contains(&format!("crash hook {name} reached")), "{log}");
    assert_eq!(cluster.wait_for_leader(), 1);
    let status = cluster.wait_finished(&id);
    println!(
        "{point}: finished at attempt {} (adopted {}), restarts {}",
        status.attempt, status.adopted, status.restarts
    );
    assert_same(&out, &clean_long_run(dir.path()));
}

#[test]
fn a_crash_after_the_manifest_before_the_pointer_ends_exactly_once() {
    crash_at("after-manifest:3", &[]);
}

#[test]
fn a_crash_after_the_pointer_before_the_sinks_commit_ends_exactly_once() {
    crash_at("after-pointer:3", &[]);
}

#[test]
fn a_crash_during_retention_ends_exactly_once() {
    crash_at("during-retention:2", &["--retain", "1"]);
}

/// The leader alone is cut off from etcd (its namespace drops etcd's port):
/// its own lease clock deposes it before a standby's term begins, the
/// standby leads, and no checkpoint of the old term completes after the
/// new term's.
#[test]
fn a_leader_cut_off_from_etcd_steps_down_before_another_leads() {
    let Some(netns) = Netns::create("ha", 79) else {
        return;
    };
    let Some(etcd) = Etcd::start_on(&netns.host_ip) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = etcd.url();
    let token = ["--token", "ha-partition"];
    let mut cluster = TestCluster::empty(dir.path(), &token);
    let inner = format!("{}:0", netns.inner_ip);
    let mut flags = ha_flags(&url, "partition");
    flags.extend(token);
    let mut leader_flags = flags.clone();
    leader_flags.extend(["--listen", &inner]);
    cluster.add_coordinator(&leader_flags, &[], &["ip", "netns", "exec", &netns.name]);
    assert_eq!(cluster.wait_for_leader(), 0);
    cluster.add_coordinator(&flags, &[], &[]);
    cluster.add_coordinator(&flags, &[], &[]);
    for _ in 0..3 {
        cluster.add_worker(1);
    }
    cluster.wait_for_workers(3);
    let out = dir.path().join("out");
    // Every checkpoint kept: the terms of the old ones are compared.
    let id = cluster.submit_long_job(&out, &["--retain", "1000"]);
    cluster.wait_for(&id, "two checkpoints", |s| s.checkpoints_completed >= 2);
    let old_term = term_of(&cluster, 0);
    let etcd_port: u16 = etcd.endpoint.rsplit_once(':').unwrap().1.parse().unwrap();
    netns.cut_port(etcd_port);
    // Renewals sent before this moment may have been confirmed; none after.
    let cut_ms = now_ms();
    let step_down = cluster.wait_for_step_down(0);
    let after = step_down.at_ms.saturating_sub(cut_ms);
    println!(
        "stepped down {after} ms after the cut: {}",
        step_down.reason
    );
    assert_eq!(step_down.term, old_term);
    let new_leader = cluster.wait_for_leader_other_than(Some(0));
    let new_term = term_of(&cluster, new_leader);
    assert!(new_term > old_term);
    // Its own clock deposed the old leader before etcd let another win:
    // two leaders never overlapped (how soon is the benchmark's to say).
    let since = cluster
        .leader_answer(new_leader)
        .and_then(|a| a.leading_since_ms)
        .expect("the new leader says when its term began");
    assert!(
        step_down.at_ms <= since,
        "the old leader stepped down at {} ms, after term {new_term} began at {since} ms",
        step_down.at_ms
    );
    cluster.wait_finished(&id);
    netns.heal();
    assert_same(&out, &clean_long_run(dir.path()));
    assert_terms_ordered(&completed_checkpoints(dir.path(), &id), old_term, new_term);
    // Healed, the old leader is a standby that names the new one.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = cluster.leader_answer(0).expect("it answers");
        if !answer.leading && answer.leader.as_ref().is_some_and(|l| l.term == new_term) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old leader never followed: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGSTOP the leader until a standby leads and checkpoints; after
/// SIGCONT the old leader's writes are refused and it steps down.
#[test]
fn a_leader_paused_past_its_lease_is_refused_and_steps_down() {
    let Some(etcd) = Etcd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cluster = ha_cluster(dir.path(), &etcd, 3, 3, &[]);
    let out = dir.path().join("out");
    // Every checkpoint kept: the terms of the old ones are compared.
    let id = cluster.submit_long_job(&out, &["--retain", "1000"]);
    cluster.wait_for(&id, "two checkpoints", |s| s.checkpoints_completed >= 2);
    let old_term = term_of(&cluster, 0);
    cluster.signal_coordinator(0, "STOP");
    let new_leader = cluster.wait_for_leader_other_than(Some(0));
    let new_term = term_of(&cluster, new_leader);
    // Paused past its lease: the new leader has completed a checkpoint (or
    // the job) in its own term meanwhile.
    let before = cluster.client().job(&id).unwrap().latest_checkpoint;
    cluster.wait_for(&id, "a checkpoint of the new term", |s| {
        s.state.is_terminal() || (s.leader_term >= new_term && s.latest_checkpoint > before)
    });
    cluster.signal_coordinator(0, "CONT");
    let step_down = cluster.wait_for_step_down(0);
    println!("the paused leader stepped down: {}", step_down.reason);
    assert_eq!(step_down.term, old_term);
    let status = cluster.wait_finished(&id);
    assert_eq!(status.state, JobState::Finished);
    assert!(status.leader_term >= new_term);
    assert_same(&out, &clean_long_run(dir.path()));
    assert_terms_ordered(&completed_checkpoints(dir.path(), &id), old_term, new_term);
}

/// A second leader forced by hand (its election key deleted with etcdctl):
/// the old leader's next write is refused, it steps down, nothing commits
/// twice.
#[test]
fn a_second_leader_forced_by_hand_deposes_the_first() {
    let Some(etcd) = Etcd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cluster = ha_cluster(dir.path(), &etcd, 2, 3, &[]);
    let out = dir.path().join("out");
    // Every checkpoint kept: the terms of the old ones are compared.
    let id = cluster.submit_long_job(&out, &["--retain", "1000"]);
    cluster.wait_for(&id, "two checkpoints", |s| s.checkpoints_completed >= 2);
    let old_term = term_of(&cluster, 0);
    etcd.etcdctl(&["del", "--prefix", "/weir/test/election"]);
    let step_down = cluster.wait_for_step_down(0);
    println!("the deposed leader stepped down: {}", step_down.reason);
    assert!(step_down.reason.contains("refused"), "{}", step_down.reason);
    let new_term = term_of(&cluster, cluster.wait_for_leader_other_than(Some(0)));
    cluster.wait_finished(&id);
    assert_same(&out, &clean_long_run(dir.path()));
    assert_terms_ordered(&completed_checkpoints(dir.path(), &id), old_term, new_term);
}

/// etcd lost mid-run: the leader steps down with a clear log line, the
/// workers keep running, and once etcd is back a leader finishes the job
/// exactly once.
#[test]
fn losing_etcd_mid_run_steps_the_leader_down_and_corrupts_nothing() {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = ha_cluster(dir.path(), &etcd, 2, 3, &[]);
    let out = dir.path().join("out");
    let id = cluster.submit_long_job(&out, &[]);
    cluster.wait_for(&id, "two checkpoints", |s| s.checkpoints_completed >= 2);
    etcd.kill();
    let step_down = cluster.wait_for_step_down(0);
    println!("stepped down without etcd: {}", step_down.reason);
    let log = std::fs::read_to_string(&cluster.coordinators[0].log).unwrap();
    assert!(log.contains("stepping down"), "{log}");
    std::thread::sleep(Duration::from_millis(500));
    etcd.restart();
    let status = cluster.wait_finished(&id);
    println!(
        "finished after etcd came back: attempt {}, adopted {}, restarts {}",
        status.attempt, status.adopted, status.restarts
    );
    assert_same(&out, &clean_long_run(dir.path()));
}

/// The output of `child` once it exits; it is killed, and the test fails,
/// if it still runs after `patience` (a hang, not a slow machine).
fn output_within(
    mut child: std::process::Child,
    patience: Duration,
    what: &str,
) -> std::process::Output {
    let deadline = Instant::now() + patience;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {patience:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// etcd unreachable at start, or a malformed `--ha`: a clear error at once.
#[test]
fn an_unreachable_etcd_or_a_malformed_ha_url_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (ha, expected) in [
        ("etcd://127.0.0.1:1", "etcd"),
        ("http://127.0.0.1:2379", "must start with etcd://"),
        ("etcd://127.0.0.1", "has no port"),
    ] {
        let child = crate::reference_jobs::weir_command(dir.path())
            .args(["coordinator", "--listen", "127.0.0.1:0", "--ha", ha])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let output = output_within(child, Duration::from_secs(60), ha);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{ha}");
        assert!(stderr.contains(expected), "{ha}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}
