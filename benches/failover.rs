//! Failover benchmark: etcd, three `weir coordinator`s with a 2 s lease and
//! three one-slot `weir worker`s run keyed-sum at p=3 (1 s checkpoints,
//! records dropped at the sink); the leader is SIGKILLed. Prints one JSON
//! line per run with the times from the kill to a new leader, to every
//! task running again (adopted or restarted), and to the first checkpoint
//! completed after the kill, and how many tasks were restarted; then one
//! line with the best and median of each.
//!
//! Needs Debian's `etcd` (package `etcd-server`). Environment:
//! `FAILOVER_RUNS` (default 3).

#[path = "../tests/support/etcd.rs"]
mod etcd;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weir::client::Client;
use weir::coordinator::JobStatus;
use weir::protocol::cluster::{JobSpec, RunSettings};
use weir::protocol::{JobState, SubmitRequest};

const LEASE: &str = "2s";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("an address")
        .port()
}

struct Coordinator {
    child: Option<Child>,
    api: String,
    args: Vec<String>,
}

fn spawn_coordinator(data_dir: &Path, args: &[String]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .env("WEIR_DATA_DIR", data_dir)
        .arg("coordinator")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the coordinator starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut first)
        .expect("the coordinator prints its address");
    assert!(first.starts_with("weir coordinator listening"), "{first}");
    child
}

fn leading(api: &str) -> Option<u64> {
    let client = Client::new(api, None).ok()?;
    let (_, answer) = client.leaders().pop()?;
    let answer = answer.ok()?;
    answer.leader.filter(|_| answer.leading).map(|l| l.term)
}

fn request() -> SubmitRequest {
    SubmitRequest {
        spec: JobSpec {
            job: "keyed-sum".into(),
            params: [
                ("events", "1000000000000"),
                ("keys", "10000"),
                ("rate", "300000"),
                ("sink", "discard"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            parallelism: 3,
            max_parallelism: 128,
            output: None,
        },
        settings: RunSettings {
            checkpoint_interval_ms: 1000,
            ..RunSettings::default()
        },
    }
}

fn ms(since: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(since).as_secs_f64() * 1000.0
}

struct Run {
    new_leader_ms: f64,
    running_ms: f64,
    checkpoint_ms: f64,
    restarted_tasks: usize,
    adopted: bool,
}

fn run_once(run: usize) -> Run {
    let etcd = etcd::Etcd::start().expect("etcd is installed (apt-get install etcd-server)");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut coordinators: Vec<Coordinator> = (0..3)
        .map(|_| {
            let args: Vec<String> = [
                "--ha".to_owned(),
                etcd.url(),
                "--lease".into(),
                LEASE.into(),
                "--listen".into(),
                format!("127.0.0.1:{}", free_port()),
                "--worker-listen".into(),
                format!("127.0.0.1:{}", free_port()),
            ]
            .to_vec();
            let api = args[5].clone();
            Coordinator {
                child: None,
                api,
                args,
            }
        })
        .collect();
    for (i, c) in coordinators.iter_mut().enumerate() {
        c.child = Some(spawn_coordinator(dir.path(), &c.args));
        if i == 0 {
            while leading(&c.api).is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let apis = coordinators
        .iter()
        .map(|c| c.api.clone())
        .collect::<Vec<_>>()
        .join(",");
    let mut workers: Vec<Child> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_weir"))
                .env("WEIR_DATA_DIR", dir.path())
                .args(["worker", "--coordinator", &apis, "--slots", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("a worker starts")
        })
        .collect();
    let client = Client::new(&apis, None).expect("a client");
    while client.cluster().map_or(true, |c| c.workers.len() < 3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let id = client.submit(&request()).expect("accepted").job_id;
    let settled = |s: &JobStatus| s.state == JobState::Running && s.checkpoints_completed >= 3;
    while !client.job(&id).is_ok_and(|s| settled(&s)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = client.job(&id).expect("status");
    let old_term = before.leader_term;
    let leader = coordinators
        .iter()
        .position(|c| leading(&c.api) == Some(old_term))
        .expect("a leader");
    let killed = Instant::now();
    if let Some(mut child) = coordinators[leader].child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let others: Vec<String> = coordinators
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, c)| c.api.clone())
        .collect();
    let new_leader_at = loop {
        if others
            .iter()
            .any(|api| leading(api).is_some_and(|t| t > old_term))
        {
            break Instant::now();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let survivors = Client::new(&others.join(","), None).expect("a client");
    let mut running_at = None;
    let mut checkpoint_at = None;
    let mut last = before.clone();
    let deadline = killed + Duration::from_secs(60);
    while running_at.is_none() || checkpoint_at.is_none() {
        assert!(Instant::now() < deadline, "no recovery: {last:?}");
        if let Ok(status) = survivors.job(&id) {
            if status.leader_term > old_term {
                let now = Instant::now();
                if running_at.is_none() && status.state == JobState::Running {
                    running_at = Some(now);
                }
                if checkpoint_at.is_none() && status.latest_checkpoint > before.latest_checkpoint {
                    checkpoint_at = Some(now);
                }
                last = status;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let restarted_tasks = if last.attempt == before.attempt {
        0
    } else {
        last.placement.len()
    };
    for child in workers
        .iter_mut()
        .chain(coordinators.iter_mut().filter_map(|c| c.child.as_mut()))
    {
        let _ = child.kill();
        let _ = child.wait();
    }
    let result = Run {
        new_leader_ms: ms(killed, new_leader_at),
        running_ms: ms(killed, running_at.expect("set")),
        checkpoint_ms: ms(killed, checkpoint_at.expect("set")),
        restarted_tasks,
        adopted: last.adopted,
    };
    println!(
        "{}",
        serde_json::json!({
            "bench": "failover",
            "run": run,
            "lease_ms": 2000,
            "kill_to_new_leader_ms": result.new_leader_ms,
            "kill_to_every_task_running_ms": result.running_ms,
            "kill_to_first_checkpoint_ms": result.checkpoint_ms,
            "restarted_tasks": result.restarted_tasks,
            "adopted": result.adopted,
            "attempt_before": before.attempt,
            "attempt_after": last.attempt,
        })
    );
    result
}

fn summary(values: &mut [f64]) -> serde_json::Value {
    values.sort_by(f64::total_cmp);
    serde_json::json!({ "best": values[0], "median": values[values.len() / 2] })
}

fn main() {
    let runs: usize = std::env::var("FAILOVER_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let results: Vec<Run> = (0..runs).map(run_once).collect();
    let pick = |f: fn(&Run) -> f64| {
        let mut values: Vec<f64> = results.iter().map(f).collect();
        summary(&mut values)
    };
    println!(
        "{}",
        serde_json::json!({
            "bench": "failover-summary",
            "runs": runs,
            "kill_to_new_leader_ms": pick(|r| r.new_leader_ms),
            "kill_to_every_task_running_ms": pick(|r| r.running_ms),
            "kill_to_first_checkpoint_ms": pick(|r| r.checkpoint_ms),
            "restarted_tasks_total": results.iter().map(|r| r.restarted_tasks).sum::<usize>(),
            "adopted_runs": results.iter().filter(|r| r.adopted).count(),
        })
    );
}
