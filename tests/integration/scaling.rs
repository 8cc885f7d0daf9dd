//! Losing a worker without a spare: with `--allow-scale-down` the job goes
//! on at a lower parallelism and scales back up when a worker returns;
//! without it, the job fails naming the missing slots.

use crate::harness::{clean_long_run, TestCluster};
use crate::recovery::assert_same;
use weir::protocol::JobState;

/// Starts the long job on three one-slot workers with `extra` flags,
/// waits for two checkpoints and kills the worker of slot 0.
fn run_and_lose_a_worker(
    cluster: &mut TestCluster,
    out: &std::path::Path,
    extra: &[&str],
) -> String {
    let id = cluster.submit_long_job(out, extra);
    let status = cluster.wait_for(&id, "two checkpoints", |s| s.checkpoints_completed >= 2);
    cluster.kill_worker_of_slot_0(&status);
    id
}

#[test]
fn a_job_allowed_to_scale_down_goes_on_with_fewer_slots_and_scales_back_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, 1, &[]);
    let out = dir.path().join("out");
    let id = run_and_lose_a_worker(&mut cluster, &out, &["--allow-scale-down"]);
    let small = cluster.wait_for(&id, "running at parallelism 2", |s| {
        s.state == JobState::Running && s.running_parallelism == 2
    });
    // Scaling back up waits for a checkpoint of the small attempt.
    cluster.wait_for(&id, "a checkpoint at parallelism 2", |s| {
        s.checkpoints_completed > small.checkpoints_completed
    });
    cluster.add_worker(1);
    let full = cluster.wait_for(&id, "running at parallelism 3 again", |s| {
        s.state == JobState::Running && s.running_parallelism == 3 && s.attempt > small.attempt
    });
    assert_eq!(
        full.restarts, small.restarts,
        "a rescale is not a restart: {full:?}"
    );
    cluster.wait_finished(&id);
    assert_same(&out, &clean_long_run(dir.path()));
}

#[test]
fn without_scale_down_too_few_slots_fail_the_job_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, 1, &[]);
    let out = dir.path().join("out");
    let id = run_and_lose_a_worker(
        &mut cluster,
        &out,
        &["--max-restarts", "2", "--restart-backoff", "10ms"],
    );
    let output = cluster.weir(&["jobs", "wait", &id, "--timeout", "60s"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("ended Failed") && stderr.contains("needs 3 slots but only 2 are free"),
        "{stderr}"
    );
}
