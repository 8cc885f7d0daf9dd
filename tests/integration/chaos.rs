//! Chaos: worker processes SIGKILLed at random moments while a cluster
//! runs keyed-sum into the transactional file sink; the output must equal
//! a clean run's, record for record.
//!
//! The seed is printed; rerun with `WEIR_TEST_SEED=<seed>`. A longer soak:
//! `WEIR_CHAOS_KILLS=50 cargo test --test integration chaos -- --nocapture`.

use crate::harness::TestCluster;
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
    let output = cluster.weir(&["jobs", "wait", &id, "--timeout", "300s", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    assert!(
        output.status.success(),
        "{}{status}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(status["state"], serde_json::json!(JobState::Finished));
    println!(
        "restarts: {}, last recovery: {} ms",
        status["restarts"], status["last_recovery_ms"]
    );
    assert_same(&out, &clean_run_with(dir.path(), &events));
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
