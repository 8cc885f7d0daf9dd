//! Losing a worker without a spare: with `--allow-scale-down` the job goes
//! on at a lower parallelism and scales back up when a worker returns;
//! without it, the job fails naming the missing slots.

use crate::cluster::TestCluster;
use crate::recovery::{assert_same, JOB};
use std::time::{Duration, Instant};
use weir::coordinator::JobStatus;
use weir::protocol::JobState;

fn wait_for(
    cluster: &TestCluster,
    id: &str,
    what: &str,
    done: impl Fn(&JobStatus) -> bool,
) -> JobStatus {
    let client = cluster.client();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = client.job(id).unwrap();
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline && !status.state.is_terminal(),
            "waiting until {what}: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts keyed-sum (5 s at p=3) with `extra` flags on three one-slot
/// workers, waits for two checkpoints and kills the worker of slot 0.
fn run_and_lose_a_worker(
    cluster: &mut TestCluster,
    out: &std::path::Path,
    extra: &[&str],
) -> String {
    let out_arg = out.display().to_string();
    let mut submit: Vec<&str> = vec!["submit"];
    submit.extend(JOB);
    submit[3] = "events=1000000";
    submit.extend([
        "-p",
        "3",
        "--checkpoint-interval",
        "200ms",
        "--output",
        &out_arg,
    ]);
    submit.extend(extra);
    let output = cluster.weir(&submit);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let status = wait_for(cluster, &id, "two checkpoints", |s| {
        s.checkpoints_completed >= 2
    });
    let victim = status
        .placement
        .iter()
        .find(|p| p.subtask == 0)
        .unwrap()
        .worker;
    let workers = cluster.client().cluster().unwrap().workers;
    let name = &workers.iter().find(|w| w.id == victim).unwrap().name;
    let index = cluster.worker_index(name.trim_start_matches("worker-").parse().unwrap());
    cluster.kill_worker(index);
    id
}

#[test]
fn a_job_allowed_to_scale_down_goes_on_with_fewer_slots_and_scales_back_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, 1, &[]);
    let out = dir.path().join("out");
    let id = run_and_lose_a_worker(&mut cluster, &out, &["--allow-scale-down"]);
    let small = wait_for(&cluster, &id, "running at parallelism 2", |s| {
        s.state == JobState::Running && s.running_parallelism == 2
    });
    // Scaling back up waits for a checkpoint of the small attempt.
    wait_for(&cluster, &id, "a checkpoint at parallelism 2", |s| {
        s.checkpoints_completed > small.checkpoints_completed
    });
    cluster.add_worker(1);
    let full = wait_for(&cluster, &id, "running at parallelism 3 again", |s| {
        s.state == JobState::Running && s.running_parallelism == 3 && s.attempt > small.attempt
    });
    assert_eq!(full.restarts, small.restarts, "a rescale is not a restart");
    let output = cluster.weir(&["jobs", "wait", &id, "--timeout", "120s"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let clean = dir.path().join("clean");
    let clean_arg = clean.display().to_string();
    let mut run: Vec<&str> = JOB.to_vec();
    run[2] = "events=1000000";
    run.extend([
        "-p",
        "3",
        "--checkpoint-interval",
        "0",
        "--output",
        &clean_arg,
    ]);
    crate::reference_jobs::weir_run(&run);
    assert_same(&out, &clean);
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
