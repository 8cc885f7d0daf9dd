//! Multi-process clusters: a real `weir coordinator` and `weir worker`
//! processes (see [`crate::harness`]) run jobs like `weir run`, refuse bad
//! requests and frames, cancel, and restore a lost worker's subtasks from
//! peer replicas.

use crate::harness::{clean_long_run, long_job, text, worker_of_slot, TestCluster};
use crate::reference_jobs::{sorted_lines, weir_command, weir_run};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};
use weir::protocol::wire::{
    decode_control, encode_control, ToCoordinator, ToWorker, PROTOCOL_VERSION,
};
use weir::protocol::JobState;

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

/// The coordinator's next frame other than a heartbeat (a registered
/// connection gets those every 100 ms, and a loaded machine may read one
/// before the answer it waits for).
fn read_answer(stream: &mut TcpStream) -> ToWorker {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    loop {
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        stream.read_exact(&mut body).unwrap();
        match decode_control(&body).unwrap() {
            ToWorker::Heartbeat => continue,
            answer => return answer,
        }
    }
}

fn registration(token: Option<&str>, data_addr: &str) -> Vec<u8> {
    encode_control(&ToCoordinator::Register {
        protocol: PROTOCOL_VERSION,
        token: token.map(str::to_owned),
        name: "test".into(),
        slots: 1,
        data_addr: data_addr.into(),
        metrics_addr: None,
        previous: None,
        deployments: vec![],
    })
    .unwrap()
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
    let reason = send_raw(
        endpoint,
        &encode_control(&ToCoordinator::Heartbeat).unwrap(),
    );
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
    // Each restored subtask says what it fetched from where.
    for restored in &recovered.restored {
        assert_eq!(restored.bytes.object_store, 0, "{restored:?}");
        assert!(
            restored.bytes.of(restored.tier) > 0,
            "its slowest tier served bytes: {restored:?}"
        );
    }
    let status_text = text(&cluster.weir(&["jobs", "status", &id]).stdout);
    assert!(status_text.contains("from a peer replica"), "{status_text}");
    assert!(status_text.contains(": peer, "), "{status_text}");
    cluster.wait_finished(&id);
    crate::recovery::assert_same(&out, &clean_long_run(dir.path()));
}

/// Three one-slot workers run the job and a fourth is a spare, to which
/// the others push their replicas first. When the worker of slot 0 is
/// SIGKILLed, the survivors keep their slots and restore from their own
/// copies; only slot 0 moves, to the spare, which restores it from the
/// replica it holds. Nothing is read back from the object store.
#[test]
fn survivors_keep_their_slots_when_a_spare_takes_the_lost_one() {
    use weir::protocol::cluster::RestoreTier;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 4, 1, &[]);
    let out = dir.path().join("out");
    let id = cluster.submit_long_job(&out, &[]);
    let before = cluster.wait_for(&id, "two checkpoints", |s| s.checkpoints_completed >= 2);
    assert_eq!(before.regions, 1, "keyed-sum is one pipelined region");
    assert_eq!(before.spares.len(), 1, "{before:?}");
    let victim = cluster.kill_worker_of_slot_0(&before);
    let after = cluster.wait_for(&id, "the restart runs", |s| {
        s.attempt >= 2 && s.state == JobState::Running
    });
    for slot in 1..3 {
        assert_eq!(
            worker_of_slot(&after, slot),
            worker_of_slot(&before, slot),
            "slot {slot} stays: {:?}",
            after.placement
        );
    }
    let spare = worker_of_slot(&after, 0);
    assert_eq!(spare, before.spares[0], "slot 0 on the spare");
    assert!(
        spare != victim && (1..3).all(|slot| worker_of_slot(&before, slot) != spare),
        "slot 0 on the spare: {:?}",
        after.placement
    );
    assert!(!after.restored.is_empty(), "{after:?}");
    for restored in &after.restored {
        let expected = if restored.subtask == 0 {
            RestoreTier::Peer
        } else {
            RestoreTier::Local
        };
        assert_eq!(restored.tier, expected, "{:?}", after.restored);
    }
    cluster.wait_finished(&id);
    crate::recovery::assert_same(&out, &clean_long_run(dir.path()));
}

/// Three one-slot workers run the job at p=3, so it has no spare. A fourth
/// worker that registers while it runs becomes its spare: the others push
/// their replicas to it, and it catches up on the latest checkpoint's
/// files from storage in the background. When the worker of slot 0 is
/// SIGKILLed, slot 0 moves to it and restores from its copies, reading
/// nothing from the object store; the output equals a clean run's.
#[test]
fn a_spare_that_joins_a_running_job_catches_up_and_takes_a_lost_slot() {
    use weir::protocol::cluster::RestoreTier;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, 1, &[]);
    let mut job = long_job();
    job[2] = "events=2000000";
    job[8] = "rate=100000";
    let out = dir.path().join("out");
    let id = cluster.submit_chaos_job(&job, &out);
    let before = cluster.wait_for(&id, "two checkpoints", |s| s.checkpoints_completed >= 2);
    assert!(
        before.spares.is_empty(),
        "every worker runs the job: {before:?}"
    );
    cluster.add_worker(1);
    let joined = cluster.wait_for(&id, "the new worker caught up", |s| {
        s.spare_catch_ups.iter().any(|c| c.copied_bytes.is_some())
    });
    let catch_up = joined.spare_catch_ups[0].clone();
    eprintln!("catch-up: {catch_up:?}");
    assert_eq!(catch_up.failure, None, "{catch_up:?}");
    assert!(catch_up.files > 0 && catch_up.bytes > 0, "{catch_up:?}");
    assert_eq!(catch_up.copied_bytes, Some(catch_up.bytes), "{catch_up:?}");
    let spare = catch_up.worker;
    assert!(joined.spares.contains(&spare), "{joined:?}");
    // A checkpoint after the catch-up: its files were pushed to the spare.
    let ready = cluster.wait_for(&id, "a checkpoint after the catch-up", |s| {
        s.latest_checkpoint.is_some_and(|e| e > catch_up.epoch + 1)
    });
    cluster.kill_worker_of_slot_0(&ready);
    let after = cluster.wait_for(&id, "the restart runs", |s| {
        s.attempt > ready.attempt && s.state == JobState::Running
    });
    assert_eq!(worker_of_slot(&after, 0), spare, "{:?}", after.placement);
    let slot_0: Vec<_> = after.restored.iter().filter(|r| r.subtask == 0).collect();
    assert!(!slot_0.is_empty(), "{after:?}");
    for restored in slot_0 {
        assert_eq!(restored.tier, RestoreTier::Peer, "{:?}", after.restored);
        assert_eq!(restored.bytes.object_store, 0, "{restored:?}");
    }
    cluster.wait_finished(&id);
    crate::recovery::assert_same(
        &out,
        &crate::harness::clean_run_of(dir.path(), "clean", &job),
    );
}
