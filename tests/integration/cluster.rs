//! Multi-process clusters: a real `weir coordinator` and `weir worker`
//! processes on 127.0.0.1 with ports picked at run time, killed when the
//! test ends (pass or fail).

use crate::reference_jobs::{sorted_lines, weir_command, weir_run};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};
use weir::client::Client;
use weir::coordinator::JobStatus;
use weir::protocol::wire::{ToCoordinator, ToWorker, PROTOCOL_VERSION};
use weir::protocol::JobState;
use weir::protocol::WorkerId;
use weir::runtime::worker::{decode_control, encode_control};

/// Silence after which a test cluster's coordinator and workers give each
/// other up.
const TEST_HEARTBEAT_TIMEOUT: &str = "3s";

/// A coordinator and its workers; every process is killed on drop.
pub struct TestCluster {
    pub api: String,
    pub worker_endpoint: String,
    pub data_dir: PathBuf,
    pub token: Option<String>,
    coordinator: Child,
    workers: Vec<Child>,
}

impl TestCluster {
    /// Starts a coordinator (with `extra` flags) and `workers` workers of
    /// `slots` slots each, and waits until they have all registered.
    pub fn start(data_dir: &Path, workers: usize, slots: u32, extra: &[&str]) -> Self {
        let mut command = weir_command(data_dir);
        command.arg("coordinator");
        if !extra.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        // The whole suite shares two cores: a 1 s heartbeat timeout can
        // expire on a starved but live process. Kills are detected at once
        // (the connection drops); only the partition test waits for this.
        command.args(["--heartbeat-timeout", TEST_HEARTBEAT_TIMEOUT]);
        let mut coordinator = command
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the coordinator starts");
        let mut first = String::new();
        BufReader::new(coordinator.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // "weir coordinator listening on ADDR (workers: ADDR, …"
        let words: Vec<&str> = first.split_whitespace().collect();
        assert!(
            first.starts_with("weir coordinator listening on"),
            "{first}"
        );
        let token = extra
            .iter()
            .position(|a| *a == "--token")
            .map(|i| extra[i + 1].to_owned());
        let mut cluster = Self {
            api: words[4].to_owned(),
            worker_endpoint: words[6].trim_end_matches(',').to_owned(),
            data_dir: data_dir.to_owned(),
            token,
            coordinator,
            workers: Vec::new(),
        };
        for _ in 0..workers {
            cluster.add_worker(slots);
        }
        cluster.wait_for_workers(workers);
        cluster
    }

    pub fn add_worker(&mut self, slots: u32) {
        let command = weir_command(&self.data_dir);
        self.spawn_worker(command, slots, &[]);
    }

    /// Starts a worker inside network namespace `netns`, with `extra` flags.
    pub fn add_worker_in(&mut self, netns: &str, slots: u32, extra: &[&str]) {
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", netns, env!("CARGO_BIN_EXE_weir")])
            .env("WEIR_DATA_DIR", &self.data_dir);
        self.spawn_worker(command, slots, extra);
    }

    /// Starts a worker, with `extra` flags, in the background.
    pub fn add_worker_with(&mut self, slots: u32, extra: &[&str]) {
        let command = weir_command(&self.data_dir);
        self.spawn_worker(command, slots, extra);
    }

    fn spawn_worker(&mut self, mut command: std::process::Command, slots: u32, extra: &[&str]) {
        command
            .args(["worker", "--coordinator", &self.api, "--slots"])
            .arg(slots.to_string())
            .args(["--coordinator-timeout", TEST_HEARTBEAT_TIMEOUT])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(token) = &self.token {
            command.args(["--token", token]);
        }
        self.workers.push(command.spawn().expect("a worker starts"));
    }

    /// The index of the worker process with `pid`.
    pub fn worker_index(&self, pid: u32) -> usize {
        self.workers
            .iter()
            .position(|w| w.id() == pid)
            .expect("a worker of this cluster")
    }

    /// SIGKILLs worker process `index`.
    pub fn kill_worker(&mut self, index: usize) {
        let child = &mut self.workers[index];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts a new worker process in place of `index`.
    pub fn restart_worker(&mut self, index: usize, slots: u32) {
        self.add_worker(slots);
        let fresh = self.workers.pop().unwrap();
        let mut old = std::mem::replace(&mut self.workers[index], fresh);
        let _ = old.kill();
        let _ = old.wait();
    }

    /// Submits [`long_job`] at p=3 with 200 ms checkpoints into `out`,
    /// with `extra` flags; returns its id.
    pub fn submit_long_job(&self, out: &Path, extra: &[&str]) -> String {
        let out_arg = out.display().to_string();
        let mut submit = vec!["submit"];
        submit.extend(long_job());
        submit.extend([
            "-p",
            "3",
            "--checkpoint-interval",
            "200ms",
            "--output",
            &out_arg,
        ]);
        submit.extend(extra);
        let output = self.weir(&submit);
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout).trim().to_owned()
    }

    /// Waits until job `id` satisfies `done` (failing if it ends first).
    pub fn wait_for(&self, id: &str, what: &str, done: impl Fn(&JobStatus) -> bool) -> JobStatus {
        let client = self.client();
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
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILLs the worker process running slot 0 of a job; returns its id.
    pub fn kill_worker_of_slot_0(&mut self, status: &JobStatus) -> WorkerId {
        let victim = status
            .placement
            .iter()
            .find(|p| p.subtask == 0)
            .unwrap()
            .worker;
        let workers = self.client().cluster().unwrap().workers;
        let name = &workers.iter().find(|w| w.id == victim).unwrap().name;
        let index = self.worker_index(name.trim_start_matches("worker-").parse().unwrap());
        self.kill_worker(index);
        victim
    }

    pub fn client(&self) -> Client {
        Client::new(&self.api, self.token.clone()).unwrap()
    }

    pub fn wait_for_workers(&self, count: usize) {
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client.cluster().is_ok_and(|c| c.workers.len() == count) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{count} workers did not register");
    }

    /// Runs `weir ARGS… --coordinator API`.
    pub fn weir(&self, args: &[&str]) -> Output {
        let mut command = weir_command(&self.data_dir);
        command.args(args).args(["--coordinator", &self.api]);
        if let Some(token) = &self.token {
            command.args(["--token", token]);
        }
        command.output().expect("weir starts")
    }

    /// Submits a job and waits for it to finish; returns its id.
    pub fn submit_and_wait(&self, args: &[&str]) -> String {
        let mut submit = vec!["submit"];
        submit.extend_from_slice(args);
        let output = self.weir(&submit);
        assert!(
            output.status.success(),
            "submit failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        self.wait_finished(&id);
        id
    }

    /// Waits (`weir jobs wait`) until job `id` Finished.
    pub fn wait_finished(&self, id: &str) {
        let output = self.weir(&["jobs", "wait", id, "--timeout", "120s"]);
        assert!(
            output.status.success(),
            "job {id} did not finish: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for child in self
            .workers
            .iter_mut()
            .chain(std::iter::once(&mut self.coordinator))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// keyed-sum emitting every update, 1,000,000 events at 200,000/s: long
/// enough (5 s) to lose workers while it runs.
pub fn long_job() -> Vec<&'static str> {
    let mut job = crate::recovery::JOB.to_vec();
    job[2] = "events=1000000";
    job
}

/// A clean `weir run` of [`long_job`] at p=3 into `dir/clean`.
pub fn clean_long_run(dir: &Path) -> PathBuf {
    let clean = dir.join("clean");
    let clean_arg = clean.display().to_string();
    let mut run = long_job();
    run.extend([
        "-p",
        "3",
        "--checkpoint-interval",
        "0",
        "--output",
        &clean_arg,
    ]);
    weir_run(&run);
    clean
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The acceptance test of the distributed runtime: one coordinator and
/// three workers run keyed-sum and a Nexmark query to the same output as
/// `weir run`, with checkpoints across processes.
#[test]
fn three_workers_produce_the_same_output_as_weir_run() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(dir.path(), 3, 2, &[]);
    for (job, params) in [
        (
            "keyed-sum",
            vec!["--param", "events=300000", "--param", "keys=5000"],
        ),
        ("nexmark-q5", vec!["--param", "events=200000"]),
    ] {
        let distributed = dir.path().join(format!("{job}-cluster"));
        let embedded = dir.path().join(format!("{job}-embedded"));
        let mut args = vec![job, "-p", "3", "--checkpoint-interval", "100ms"];
        args.extend(&params);
        let out = distributed.display().to_string();
        let mut submit = args.clone();
        submit.extend(["--output", &out]);
        let id = cluster.submit_and_wait(&submit);
        let status = cluster.client().job(&id).unwrap();
        let workers: std::collections::BTreeSet<_> =
            status.placement.iter().map(|p| p.worker).collect();
        assert_eq!(
            workers.len(),
            3,
            "{job} ran on three workers: {:?}",
            status.placement
        );
        assert!(status.checkpoints_completed >= 1, "{job}: {status:?}");
        let out = embedded.display().to_string();
        let mut run = args.clone();
        run.extend(["--output", &out]);
        weir_run(&run);
        let (got, want) = (sorted_lines(&distributed), sorted_lines(&embedded));
        assert!(!want.is_empty());
        assert!(
            got == want,
            "{job}: {} lines from the cluster, {} from weir run",
            got.len(),
            want.len()
        );
        // Checkpoints written by three processes are complete and verify.
        let job_dir = cluster.data_dir.join("checkpoints").join(&id);
        let output = weir_command(dir.path())
            .args(["checkpoints", "verify", job_dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
}

/// Bad requests get a clear 4xx answer and the coordinator keeps serving.
#[test]
fn the_api_refuses_bad_requests_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(dir.path(), 1, 2, &[]);
    let refused = |args: &[&str], expected: &str| {
        let output = cluster.weir(args);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    };
    refused(&["submit", "nope"], "unknown job 'nope'");
    refused(
        &["submit", "keyed-sum", "--param", "events=12x"],
        "must be a non-negative integer",
    );
    refused(
        &["submit", "keyed-sum", "-p", "3"],
        "needs 3 slots (parallelism 3) but only 2 are free",
    );
    refused(&["jobs", "status", "no-such-job"], "no job 'no-such-job'");
    refused(
        &[
            "submit",
            "keyed-sum",
            "--restore",
            "/nowhere/keyed-sum/chk-0000000001",
        ],
        "not a complete checkpoint",
    );
    // Malformed JSON straight to the API.
    let mut stream = TcpStream::connect(&cluster.api).unwrap();
    let body = "{\"spec\": {\"job\": ";
    write!(
        stream,
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("malformed submit request"), "{answer}");
    // Still serving: a good job runs.
    let id = cluster.submit_and_wait(&["keyed-sum", "--param", "events=1000"]);
    let list = cluster.weir(&["jobs", "list", "--json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(jobs
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["job_id"] == id.as_str()));
    refused(&["jobs", "cancel", &id], "has already ended");
}

/// With a token, requests and workers without it (or with a wrong one)
/// are refused; listening beyond loopback without a token does not start.
#[test]
fn a_token_is_required_when_set_and_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(dir.path(), 1, 1, &["--token", "s3cret"]);
    let mut command = weir_command(dir.path());
    let output = command
        .args(["jobs", "list", "--coordinator", &cluster.api])
        .env_remove("WEIR_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("requires a token"),
        "{}",
        text(&output.stderr)
    );
    let output = weir_command(dir.path())
        .args([
            "jobs",
            "list",
            "--coordinator",
            &cluster.api,
            "--token",
            "wrong",
        ])
        .output()
        .unwrap();
    assert!(
        text(&output.stderr).contains("wrong token"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(
        register(&cluster.worker_endpoint, None),
        "this coordinator requires a token"
    );
    assert_eq!(
        register(&cluster.worker_endpoint, Some("wrong")),
        "wrong token"
    );
    cluster.submit_and_wait(&["keyed-sum", "--param", "events=1000"]);

    let output = weir_command(dir.path())
        .args(["coordinator", "--listen", "0.0.0.0:0"])
        .env_remove("WEIR_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("requires a shared token"),
        "{}",
        text(&output.stderr)
    );
}

fn read_answer(stream: &mut TcpStream) -> ToWorker {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).unwrap();
    decode_control(&body).unwrap()
}

fn registration(token: Option<&str>, data_addr: &str) -> Vec<u8> {
    encode_control(&ToCoordinator::Register {
        protocol: PROTOCOL_VERSION,
        token: token.map(str::to_owned),
        name: "test".into(),
        slots: 1,
        data_addr: data_addr.into(),
    })
}

/// Registers a fake worker; returns the rejection reason ("" if accepted).
fn register(endpoint: &str, token: Option<&str>) -> String {
    let mut stream = TcpStream::connect(endpoint).unwrap();
    stream
        .write_all(&registration(token, "127.0.0.1:1"))
        .unwrap();
    match read_answer(&mut stream) {
        ToWorker::Rejected { reason } => reason,
        _ => String::new(),
    }
}

/// Sends `bytes` (then closes the sending side) and returns the rejection.
fn send_raw(endpoint: &str, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(endpoint).unwrap();
    stream.write_all(bytes).unwrap();
    // The coordinator may already have refused and closed the connection.
    let _ = stream.shutdown(Shutdown::Write);
    match read_answer(&mut stream) {
        ToWorker::Rejected { reason } => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Garbage, truncated and out-of-protocol frames on the worker endpoint
/// are answered with a reason and that connection closed; a worker that
/// registers twice is refused; real workers and jobs are unaffected.
#[test]
fn the_worker_endpoint_refuses_bad_frames_and_double_registration() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(dir.path(), 2, 1, &[]);
    let endpoint = &cluster.worker_endpoint;
    let reason = send_raw(endpoint, b"\xff\xff\xff\xffgarbage");
    assert!(reason.contains("exceeds the limit"), "{reason}");
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(b"{\"heart");
    let reason = send_raw(endpoint, &truncated);
    assert_eq!(reason, "truncated frame: expected 100 bytes, got 7");
    let mut not_json = 9u32.to_be_bytes().to_vec();
    not_json.extend_from_slice(b"not json!");
    let reason = send_raw(endpoint, &not_json);
    assert!(reason.starts_with("malformed control frame"), "{reason}");
    let reason = send_raw(endpoint, &encode_control(&ToCoordinator::Heartbeat));
    assert_eq!(reason, "the first frame must be a registration");
    // Twice on one connection.
    let mut stream = TcpStream::connect(endpoint).unwrap();
    stream
        .write_all(&registration(None, "127.0.0.1:3"))
        .unwrap();
    assert!(matches!(
        read_answer(&mut stream),
        ToWorker::Registered { .. }
    ));
    stream
        .write_all(&registration(None, "127.0.0.1:3"))
        .unwrap();
    match read_answer(&mut stream) {
        ToWorker::Rejected { reason } => {
            assert!(reason.ends_with("is already registered"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // The same data address as a live worker.
    let live = cluster.client().cluster().unwrap().workers[0]
        .data_addr
        .clone();
    let mut stream = TcpStream::connect(endpoint).unwrap();
    stream.write_all(&registration(None, &live)).unwrap();
    match read_answer(&mut stream) {
        ToWorker::Rejected { reason } => {
            assert!(reason.contains("is already registered"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    cluster.wait_for_workers(2);
    let out = dir.path().join("out");
    cluster.submit_and_wait(&[
        "keyed-sum",
        "-p",
        "2",
        "--param",
        "events=20000",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(sorted_lines(&out).len(), 1000);
}

/// A cancelled job ends Cancelled and `jobs wait` says so with a failure exit.
#[test]
fn cancel_stops_a_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(dir.path(), 2, 1, &[]);
    let output = cluster.weir(&[
        "submit",
        "keyed-sum",
        "-p",
        "2",
        "--param",
        "events=100000000",
        "--param",
        "rate=50000",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let id = text(&output.stdout).trim().to_owned();
    let client = cluster.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.job(&id).unwrap().state != JobState::Running {
        assert!(Instant::now() < deadline, "the job never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = cluster.weir(&["jobs", "cancel", &id]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = cluster.weir(&["jobs", "wait", &id, "--timeout", "30s"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("ended Cancelled"),
        "{}",
        text(&output.stderr)
    );
    let states: Vec<String> = client
        .job(&id)
        .unwrap()
        .transitions
        .iter()
        .map(|t| t.state.to_string())
        .collect();
    assert_eq!(
        states,
        [
            "Created",
            "Scheduling",
            "Running",
            "Cancelling",
            "Cancelled"
        ]
    );
    // The slots are free again.
    cluster.submit_and_wait(&["keyed-sum", "-p", "2", "--param", "events=1000"]);
}

/// After a worker is SIGKILLed, its subtasks restart on the worker holding
/// a replica of their state and the others on their own workers: nothing
/// is read back from checkpoint storage, and the output is exactly once.
#[test]
fn a_lost_workers_subtasks_restore_from_peer_replicas() {
    use weir::protocol::cluster::RestoreTier;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, 2, &[]);
    let out = dir.path().join("out");
    let id = cluster.submit_long_job(&out, &[]);
    let status = cluster.wait_for(&id, "two checkpoints", |s| s.checkpoints_completed >= 2);
    let victim = cluster.kill_worker_of_slot_0(&status);
    let client = cluster.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    let recovered = loop {
        let status = client.job(&id).unwrap();
        if status.attempt >= 2 && status.state == JobState::Running {
            break status;
        }
        assert!(
            Instant::now() < deadline && !status.state.is_terminal(),
            "{status:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let loss = recovered.last_loss.clone().expect("the loss is reported");
    assert_eq!(loss.worker, victim);
    assert!(recovered.last_recovery_ms.is_some(), "{recovered:?}");
    let tiers: std::collections::BTreeSet<RestoreTier> =
        recovered.restored.iter().map(|r| r.tier).collect();
    assert!(
        tiers.contains(&RestoreTier::Peer) && tiers.contains(&RestoreTier::Local),
        "{:?}",
        recovered.restored
    );
    assert!(
        !tiers.contains(&RestoreTier::ObjectStore),
        "{:?}",
        recovered.restored
    );
    let status_text = text(&cluster.weir(&["jobs", "status", &id]).stdout);
    assert!(status_text.contains("from a peer replica"), "{status_text}");
    cluster.wait_finished(&id);
    crate::recovery::assert_same(&out, &clean_long_run(dir.path()));
}
