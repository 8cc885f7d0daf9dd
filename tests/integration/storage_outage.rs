//! Outages of checkpoint storage: the real S3 server (s3s-fs) is SIGKILLed
//! mid-run and started again on the same data after [`OUTAGE`]. No job
//! dies of it, and the committed output equals a clean run's.

use crate::ha::etcd::Etcd;
use crate::ha::ha_flags;
use crate::harness::{clean_run_of, text, TestCluster};
use crate::recovery::{args, assert_same, wait_for_a_checkpoint};
use crate::reference_jobs::weir_command;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use weir::coordinator::history::{CheckpointOutcome, StorageWaitPhase};
use weir::coordinator::JobStatus;

use crate::s3::s3_server;

/// How long checkpoint storage is away.
const OUTAGE: Duration = Duration::from_secs(20);

/// keyed-sum emitting every update: `events` at `rate` per second.
fn job(events: u64, rate: u64) -> Vec<String> {
    args(&[
        "keyed-sum",
        "--param",
        &format!("events={events}"),
        "--param",
        "keys=1000",
        "--param",
        "emit=updates",
        "--param",
        &format!("rate={rate}"),
    ])
}

/// A clean run of the job (unthrottled: the rate changes no record).
fn clean(dir: &Path, events: u64) -> PathBuf {
    let list = job(events, 0);
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    clean_run_of(dir, "clean", &refs)
}

/// The checkpoint root in the bucket, and where its files are on disk.
fn checkpoint_root(server: &s3_server::S3Server) -> (String, PathBuf) {
    (
        format!("s3://{}/checkpoints", s3_server::BUCKET),
        server.root().join(s3_server::BUCKET).join("checkpoints"),
    )
}

/// The epochs with a commit marker under a job's directory on disk.
fn committed_epochs(job_dir: &Path) -> Vec<String> {
    let mut epochs: Vec<String> = std::fs::read_dir(job_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("COMMITTED").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    epochs.sort();
    epochs
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    // The conditions read a log file or list a directory: a tenth of a
    // second between looks keeps that cheap beside the job under test.
    while !done() {
        assert!(Instant::now() < deadline, "waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `weir run` in the background, its standard error kept in a file (a
/// pipe nobody reads would fill and stop it); killed on drop.
struct Run {
    child: Child,
    stderr: PathBuf,
}

impl Run {
    fn start(dir: &Path, list: &[String], env: &[(String, String)]) -> Self {
        let stderr = dir.join("run.stderr");
        let child = weir_command(dir)
            .envs(env.iter().cloned())
            .arg("run")
            .args(list)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("weir starts");
        Self { child, stderr }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the end; its standard error, asserting it succeeded.
    fn finish(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(180);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(&self.stderr).unwrap();
        let status = status.unwrap_or_else(|| panic!("weir run did not end: {stderr}"));
        assert!(status.success(), "weir run failed: {stderr}");
        stderr
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `weir run` of the job at p=3 with checkpoints in the bucket (and
/// `extra` flags) whose storage goes away once a checkpoint completed;
/// what it compares with afterwards.
struct OutageRun {
    server: s3_server::S3Server,
    dir: tempfile::TempDir,
    clean: PathBuf,
    run: Run,
    job_dir: PathBuf,
}

impl OutageRun {
    /// Starts the run and the outage; `None` without `s3s-fs` (outside CI).
    fn start(events: u64, rate: u64, extra: &[&str]) -> Option<Self> {
        let mut server = s3_server::S3Server::start()?;
        let dir = tempfile::tempdir().unwrap();
        let clean = clean(dir.path(), events);
        let (url, root) = checkpoint_root(&server);
        let mut list = job(events, rate);
        list.extend(args(&["-p", "3", "--checkpoint-dir", &url]));
        list.extend(args(extra));
        for (flag, name) in [("--output", "out"), ("--stats", "stats.json")] {
            list.extend([flag.into(), dir.path().join(name).display().to_string()]);
        }
        let run = Run::start(dir.path(), &list, &server.env());
        let job_dir = root.join("keyed-sum");
        wait_for_a_checkpoint(&job_dir);
        server.kill();
        Some(Self {
            server,
            dir,
            clean,
            run,
            job_dir,
        })
    }

    /// Waits for the end: its standard error and `--stats`, once its
    /// output was checked against the clean run's.
    fn finish(self) -> (String, serde_json::Value) {
        let stderr = self.run.finish();
        assert_same(&self.dir.path().join("out"), &self.clean);
        let stats = std::fs::read_to_string(self.dir.path().join("stats.json")).unwrap();
        let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
        println!("{stats}");
        (stderr, stats)
    }
}

/// Steady state, with the defaults (1 s checkpoints, 60 failures
/// tolerated): the job rides the outage out in place, checkpoints are
/// aborted naming storage, and they complete again once it is back.
#[test]
fn a_20s_storage_outage_in_steady_state_is_ridden_out_exactly_once() {
    // 30 s of input: the outage begins and ends while it flows.
    let Some(mut outage) = OutageRun::start(600_000, 20_000, &[]) else {
        return;
    };
    let before = committed_epochs(&outage.job_dir);
    std::thread::sleep(OUTAGE);
    assert!(outage.run.is_running(), "the job runs on after the outage");
    outage.server.restart();
    let back = Instant::now();
    wait_until("a checkpoint completed after the outage", || {
        committed_epochs(&outage.job_dir)
            .iter()
            .any(|e| !before.contains(e))
            || !outage.run.is_running()
    });
    println!(
        "{{\"first_checkpoint_after_outage_s\": {:.3}}}",
        back.elapsed().as_secs_f64()
    );
    let (stderr, stats) = outage.finish();
    assert_eq!(stats["restarts"], 0, "ridden out in place: {stderr}");
    assert!(
        stats["checkpoints_aborted"].as_u64().unwrap() >= 5,
        "{stats}"
    );
    assert!(
        stderr.contains("waiting for checkpoint storage"),
        "the log says what it waits for: {stderr}"
    );
}

/// The input ends during the outage: the final checkpoint fails again and
/// again and is retried until storage is back; the job then finishes,
/// without a restart.
#[test]
fn a_20s_storage_outage_across_the_end_of_the_input_retries_the_final_checkpoint() {
    // 3 s of input: it ends well within the outage.
    let extra = ["--checkpoint-interval", "200ms"];
    let Some(mut outage) = OutageRun::start(150_000, 50_000, &extra) else {
        return;
    };
    std::thread::sleep(OUTAGE);
    assert!(
        outage.run.is_running(),
        "the job waits for its final checkpoint instead of failing"
    );
    outage.server.restart();
    let (stderr, stats) = outage.finish();
    assert_eq!(stats["restarts"], 0, "no restart: {stderr}");
    let final_aborted = stderr.lines().any(|line| {
        line.contains("waiting for checkpoint storage") && line.contains("is_final=true")
    });
    assert!(final_aborted, "final checkpoints were aborted: {stderr}");
}

/// Past the tolerance the job fails over, and the restart waits for
/// storage; a failover caused by storage does not count against the
/// restarts (none are allowed here), so the job still finishes.
#[test]
fn past_the_tolerance_the_job_fails_over_and_its_restart_waits_for_storage() {
    // 15 s of input; the outage lasts until the restart is seen waiting
    // for storage (3 failed checkpoints and a failover in), however long
    // a loaded machine takes to get there.
    let extra = ["--tolerable-failed-checkpoints", "2", "--max-restarts", "0"];
    let Some(mut outage) = OutageRun::start(300_000, 20_000, &extra) else {
        return;
    };
    let restart_waits = |stderr: &str| {
        stderr.lines().any(|line| {
            line.contains("waiting for checkpoint storage") && line.contains("supervisor")
        })
    };
    wait_until("the restart waits for storage", || {
        restart_waits(&std::fs::read_to_string(&outage.run.stderr).unwrap_or_default())
            || !outage.run.is_running()
    });
    assert!(outage.run.is_running(), "the restart waits for storage");
    outage.server.restart();
    let (stderr, stats) = outage.finish();
    assert!(
        stats["restarts"].as_u64().unwrap() >= 1,
        "failed over: {stats}"
    );
    assert!(
        stderr.contains("more checkpoints failed in a row than tolerated"),
        "{stderr}"
    );
    assert!(
        restart_waits(&stderr),
        "the restart waited for storage: {stderr}"
    );
}

/// A cluster of one coordinator and four one-slot workers whose processes
/// read the S3 settings from their environment. The coordinator keeps its
/// records in etcd when given, else (standalone) in checkpoint storage.
fn s3_cluster(dir: &Path, server: &s3_server::S3Server, etcd: Option<&Etcd>) -> TestCluster {
    let (url, _) = checkpoint_root(server);
    let env: Vec<(String, String)> = server.env();
    let mut cluster = TestCluster::empty(dir, &[]);
    cluster.env = env.clone();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let etcd_url = etcd.map(Etcd::url);
    let mut flags = vec!["--checkpoint-dir", url.as_str()];
    if let Some(etcd_url) = &etcd_url {
        flags.extend(ha_flags(etcd_url, "outage"));
    }
    cluster.add_coordinator(&flags, &env_refs, &[]);
    cluster.wait_for_leader();
    for _ in 0..4 {
        cluster.add_worker(1);
    }
    cluster.wait_for_workers(4);
    cluster
}

/// Submits the job at p=3 with 200 ms checkpoints into `out`; its id.
fn submit(cluster: &TestCluster, events: u64, rate: u64, out: &Path) -> String {
    let mut submit = vec!["submit".to_owned()];
    submit.extend(job(events, rate));
    submit.extend(args(&["-p", "3", "--checkpoint-interval", "200ms"]));
    submit.extend(["--output".into(), out.display().to_string()]);
    let refs: Vec<&str> = submit.iter().map(String::as_str).collect();
    let output = cluster.weir(&refs);
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout).trim().to_owned()
}

fn waiting_in(status: &JobStatus, phase: StorageWaitPhase) -> bool {
    status
        .storage_wait
        .as_ref()
        .is_some_and(|w| w.phase == phase)
}

/// The restart waits for storage: to record itself (a standalone
/// coordinator keeps job records in checkpoint storage), or to restore.
fn restart_waits(status: &JobStatus) -> bool {
    waiting_in(status, StorageWaitPhase::JobRecord)
        || waiting_in(status, StorageWaitPhase::Restore)
        || waiting_in(status, StorageWaitPhase::Start)
}

/// In a standalone cluster, a worker is SIGKILLed during the outage: the
/// restart waits for storage (first to record itself: the coordinator's
/// records are in checkpoint storage too), then restores and finishes
/// exactly once.
#[test]
fn a_worker_killed_during_a_20s_storage_outage_restores_once_storage_is_back() {
    worker_killed_during_an_outage(None);
}

/// The same with the coordinator's records in etcd: the restart itself
/// waits for storage to choose its checkpoint.
#[test]
fn with_records_in_etcd_a_restart_during_a_storage_outage_waits_to_restore() {
    let Some(etcd) = Etcd::start() else { return };
    worker_killed_during_an_outage(Some(&etcd));
}

/// The job (30 s of input) on a cluster over the bucket, whose storage went
/// away once a checkpoint completed.
struct ClusterOutage {
    server: s3_server::S3Server,
    cluster: TestCluster,
    out: PathBuf,
    id: String,
    /// The job's status before the outage.
    running: JobStatus,
}

const CLUSTER_JOB: (u64, u64) = (600_000, 20_000);

impl ClusterOutage {
    fn start(dir: &Path, etcd: Option<&Etcd>) -> Option<Self> {
        let mut server = s3_server::S3Server::start()?;
        let cluster = s3_cluster(dir, &server, etcd);
        let out = dir.join("out");
        let id = submit(&cluster, CLUSTER_JOB.0, CLUSTER_JOB.1, &out);
        let running = cluster.wait_for(&id, "a checkpoint completed", |s| {
            s.latest_checkpoint.is_some()
        });
        server.kill();
        Some(Self {
            server,
            cluster,
            out,
            id,
            running,
        })
    }
}

fn worker_killed_during_an_outage(etcd: Option<&Etcd>) {
    let dir = tempfile::tempdir().unwrap();
    let clean = clean(dir.path(), CLUSTER_JOB.0);
    let Some(outage) = ClusterOutage::start(dir.path(), etcd) else {
        return;
    };
    let down = Instant::now();
    let ClusterOutage {
        mut server,
        mut cluster,
        out,
        id,
        running,
    } = outage;
    let failing = cluster.wait_for(&id, "checkpoints fail on storage", |s| {
        waiting_in(s, StorageWaitPhase::Checkpoints)
    });
    println!("while checkpoints fail: {:?}", failing.storage_wait);
    cluster.kill_worker_of_slot_0(&running);
    let waiting = if etcd.is_some() {
        cluster.wait_for(&id, "the restart waits to restore", |s| {
            waiting_in(s, StorageWaitPhase::Restore)
        })
    } else {
        cluster.wait_for(&id, "the restart waits for storage", restart_waits)
    };
    println!("while the restart waits: {:?}", waiting.storage_wait);
    let shown = cluster.weir(&["jobs", "status", &id]);
    let shown = text(&shown.stdout);
    assert!(
        shown.contains("waiting for checkpoint storage for"),
        "{shown}"
    );
    std::thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
    assert!(
        !cluster.client().job(&id).unwrap().state.is_terminal(),
        "the job outlives the outage"
    );
    server.restart();
    let status = cluster.wait_finished(&id);
    assert_same(&out, &clean);
    assert!(status.storage_wait.is_none(), "{:?}", status.storage_wait);
    let storage_aborts = status
        .checkpoint_history
        .iter()
        .filter(|c| c.outcome == CheckpointOutcome::Aborted && c.storage_unavailable)
        .count();
    assert!(storage_aborts >= 1, "{:?}", status.checkpoint_history);
    let history = text(
        &cluster
            .weir(&["jobs", "history", &id, "--last", "300"])
            .stdout,
    );
    assert!(history.contains("checkpoint storage: "), "{history}");
    println!(
        "restarts {}, checkpoints {} completed, {} aborted ({storage_aborts} on storage); last failure: {:?}",
        status.restarts, status.checkpoints_completed, status.checkpoints_aborted, status.failure
    );
    let log = std::fs::read_to_string(dir.path().join("coordinator-0.log")).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("attempt failed")) {
        println!("{line}");
    }
}

/// Storage that answers but holds none of the job's checkpoints (every one
/// deleted during an outage) is final: the job fails with a clear error
/// instead of starting over and committing its output twice.
#[test]
fn a_store_that_lost_every_checkpoint_fails_the_job_instead_of_starting_over() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ClusterOutage {
        mut server,
        mut cluster,
        out,
        id,
        running,
    }) = ClusterOutage::start(dir.path(), None)
    else {
        return;
    };
    // While storage is away no checkpoint can complete: delete them all.
    let (_, root) = checkpoint_root(&server);
    let job_dir = root.join(&id);
    for entry in std::fs::read_dir(&job_dir).unwrap().flatten() {
        std::fs::remove_dir_all(entry.path()).unwrap();
    }
    cluster.kill_worker_of_slot_0(&running);
    cluster.wait_for(&id, "the restart waits for storage", restart_waits);
    let committed_before = weir::testing::committed_lines(&out).unwrap();
    server.restart();
    let output = cluster.weir(&["jobs", "wait", &id, "--timeout", "120s", "--json"]);
    assert!(!output.status.success(), "the job must not finish");
    let status: JobStatus = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status.state, weir::protocol::JobState::Failed);
    let failure = status.failure.unwrap_or_default();
    assert!(
        failure.contains("no usable checkpoint") && failure.contains("twice"),
        "{failure}"
    );
    // Nothing was committed again.
    assert_eq!(
        weir::testing::committed_lines(&out).unwrap(),
        committed_before
    );
}
