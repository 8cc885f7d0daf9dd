//! Chaos: worker processes SIGKILLed at random moments while a cluster
//! runs keyed-sum into the transactional file sink; the output must equal
//! a clean run's, record for record.
//!
//! The seed is printed; rerun with `WEIR_TEST_SEED=<seed>`. A longer soak:
//! `WEIR_CHAOS_KILLS=50 cargo test --test integration chaos -- --nocapture`.

use crate::harness::{worker_of_slot, TestCluster};
use crate::recovery::{assert_same, Rng, JOB};
use std::time::{Duration, Instant};
use weir::protocol::JobState;

#[test]
fn killing_random_workers_keeps_the_output_exactly_once() {
    let mut rng = Rng::from_env("chaos");
    let kills: u64 = std::env::var("WEIR_CHAOS_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    // Three workers for p=3 and one spare, one slot each.
    let mut cluster = TestCluster::start(dir.path(), 4, 1, &[]);
    let out = dir.path().join("out");
    // At 200,000 events/s the job runs 1.25 s per kill plus 2 s: longer
    // than the kill loop's longest (1.2 s per kill), so it never ends early.
    let events = format!("events={}", 400_000 + 250_000 * kills);
    let mut job: Vec<&str> = JOB.to_vec();
    job[2] = &events;
    let id = cluster.submit_chaos_job(&job, &out);
    let client = cluster.client();
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while killed < kills {
        assert!(Instant::now() < deadline, "the chaos loop took too long");
        std::thread::sleep(Duration::from_millis(rng.between(300, 1200)));
        let status = client.job(&id).unwrap();
        assert!(
            !status.state.is_terminal(),
            "the job ended early: {status:?}"
        );
        let victim = rng.between(0, 4) as usize;
        println!(
            "kill {}: worker process {victim} (job {} attempt {})",
            killed + 1,
            status.state,
            status.attempt
        );
        cluster.kill_worker(victim);
        cluster.restart_worker(victim, 1);
        killed += 1;
    }
    let status = wait_finished(&cluster, &id);
    println!(
        "restarts: {}, last recovery: {} ms",
        status["restarts"], status["last_recovery_ms"]
    );
    assert_same(&out, &clean_run_with(dir.path(), &events));
}

/// Five one-slot workers run the p=3 job, so two are spares: the job's
/// workers push their replicas to them first. Each round SIGKILLs a spare
/// of the running attempt (replaced by a fresh worker): the job does not
/// restart for it. Then it kills a worker of the job, whose slot moves to
/// a spare. The output is exactly once throughout.
#[test]
fn killing_a_spare_never_restarts_the_job() {
    let mut rng = Rng::from_env("chaos-spare");
    let rounds = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 5, 1, &[]);
    let out = dir.path().join("out");
    // At 200,000 events/s: 4 s per round and 3 s more, so that the job
    // never ends before the last kill.
    let events = format!("events={}", 600_000 + 800_000 * rounds);
    let mut job: Vec<&str> = JOB.to_vec();
    job[2] = &events;
    let id = cluster.submit_chaos_job(&job, &out);
    let client = cluster.client();
    for round in 1..=rounds {
        let checkpointed = client.job(&id).unwrap().checkpoints_completed;
        let running = cluster.wait_for(&id, "the attempt checkpoints", |s| {
            s.attempt == round
                && s.state == JobState::Running
                && s.checkpoints_completed > checkpointed
        });
        let live = cluster.idle_workers(&running);
        let Some(spare) = running.spares.iter().find(|w| live.contains(w)).copied() else {
            panic!("no live spare of attempt {round}: {running:?}");
        };
        std::thread::sleep(Duration::from_millis(rng.between(0, 500)));
        println!("round {round}: killing the spare {spare}");
        let index = cluster.kill_registered(spare);
        let deadline = Instant::now() + Duration::from_secs(30);
        while client
            .cluster()
            .unwrap()
            .workers
            .iter()
            .any(|w| w.id == spare)
        {
            assert!(Instant::now() < deadline, "the spare's loss went unseen");
            std::thread::sleep(Duration::from_millis(10));
        }
        let status = client.job(&id).unwrap();
        assert_eq!(
            (status.attempt, status.restarts, status.state),
            (round, round - 1, JobState::Running),
            "a spare's loss restarted the job: {status:?}"
        );
        cluster.restart_worker(index, 1);
        cluster.wait_for_workers(5);
        println!("round {round}: killing the worker of slot 0");
        let index = cluster.kill_registered(worker_of_slot(&status, 0));
        cluster.restart_worker(index, 1);
    }
    let status = wait_finished(&cluster, &id);
    assert_eq!(status["restarts"], serde_json::json!(rounds), "{status}");
    assert_same(&out, &clean_run_with(dir.path(), &events));
}

/// Waits for job `id` to finish (`weir jobs wait`); its final status.
fn wait_finished(cluster: &TestCluster, id: &str) -> serde_json::Value {
    let output = cluster.weir(&["jobs", "wait", id, "--timeout", "300s", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    assert!(
        output.status.success(),
        "{}{status}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(status["state"], serde_json::json!(JobState::Finished));
    status
}

/// A clean embedded run of the same job.
fn clean_run_with(dir: &std::path::Path, events: &str) -> std::path::PathBuf {
    let clean = dir.join("clean-events");
    std::fs::create_dir_all(&clean).unwrap();
    let mut list: Vec<&str> = JOB.to_vec();
    list[2] = events;
    // Without the rate limit: the updates do not depend on the pace.
    assert_eq!(list[8], "rate=200000");
    list.truncate(7);
    let out = clean.join("out").display().to_string();
    list.extend(["-p", "3", "--checkpoint-interval", "0", "--output", &out]);
    crate::reference_jobs::weir_run(&list);
    clean.join("out")
}
