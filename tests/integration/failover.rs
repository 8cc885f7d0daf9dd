//! The standalone coordinator outlives its process: SIGKILLed mid-job and
//! started again with the same flags, it resumes the job by itself (the
//! workers kept it running, and the new process adopts it), the output is
//! exactly once, a finished job is never run again, and a new job on the
//! same long-lived workers gets a new number and runs.

use crate::harness::{clean_long_run, TestCluster};
use crate::recovery::{assert_same, Rng};
use crate::reference_jobs::sorted_lines;
use std::time::Duration;
use weir::protocol::JobState;

#[test]
fn a_restarted_standalone_coordinator_resumes_its_job_exactly_once() {
    let mut rng = Rng::from_env("standalone_restart");
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, 1, &[]);
    let out = dir.path().join("out");
    let id = cluster.submit_long_job(&out, &[]);
    let before = cluster.wait_for(&id, "two checkpoints", |s| s.checkpoints_completed >= 2);
    cluster.kill_coordinator(0);
    let down = rng.between(50, 1500);
    println!(
        "coordinator SIGKILLed at attempt {}; down for {down} ms",
        before.attempt
    );
    std::thread::sleep(Duration::from_millis(down));
    cluster.restart_coordinator(0);
    let resumed = cluster.wait_finished(&id);
    println!(
        "resumed: attempt {} (adopted: {}), restarts {}, failure {:?}",
        resumed.attempt, resumed.adopted, resumed.restarts, resumed.failure
    );
    assert_eq!(
        resumed.number, before.number,
        "the same job, not a resubmission"
    );
    assert!(resumed.latest_checkpoint > before.latest_checkpoint);
    assert_same(&out, &clean_long_run(dir.path()));

    // Started again, it shows the finished job and does not run it again.
    cluster.restart_coordinator(0);
    let again = cluster.client().job(&id).unwrap();
    assert_eq!(again.state, JobState::Finished);
    assert_eq!(again.attempt, resumed.attempt);
    cluster.wait_for_workers(3);

    // A new job on the same long-lived workers: a new number, and it runs.
    let second_out = dir.path().join("second");
    let second = cluster.submit_and_wait(&[
        "keyed-sum",
        "-p",
        "3",
        "--param",
        "events=30000",
        "--param",
        "keys=300",
        "--output",
        second_out.to_str().unwrap(),
    ]);
    // By the time a second job ran to its end, the first was not run again.
    assert_eq!(cluster.client().job(&id).unwrap().attempt, resumed.attempt);
    let status = cluster.client().job(&second).unwrap();
    assert!(
        status.number > resumed.number,
        "job numbers never repeat: {status:?}"
    );
    assert_ne!(second, id);
    assert_eq!(status.records_out, 300, "{status:?}");
    assert_eq!(sorted_lines(&second_out).len(), 300);
}
