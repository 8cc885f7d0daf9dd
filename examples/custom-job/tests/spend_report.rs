//! `spend-report` run the two ways a user runs it: embedded (`custom-job
//! run`), and on a cluster of this crate's own binary (a coordinator and
//! two workers) with a worker killed mid-run. Both must write exactly the
//! lines a plain model of the job computes from the generated purchases.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use weir::operators::sources::Generator;
use weir::protocol::JobState;
use weir::testing::ProcessCluster;

const BINARY: &str = env!("CARGO_BIN_EXE_custom-job");

/// The job's output computed directly: per customer, the purchases and
/// cents of each window, the running total, and the average of the
/// windows that started within the history before it.
fn expected(events: u64, customers: u64, seed: u64, window: i64, history: i64) -> Vec<String> {
    let generator = Generator::new(events, customers, seed);
    let mut windows: BTreeMap<(u64, i64), (u64, u64)> = BTreeMap::new();
    for seq in 0..events {
        let event = generator.event(seq);
        let start = event.timestamp - event.timestamp.rem_euclid(window);
        let entry = windows.entry((event.key, start)).or_default();
        entry.0 += 1;
        entry.1 += event.value.unsigned_abs();
    }
    let mut lines = Vec::new();
    let mut lifetime: BTreeMap<u64, u64> = BTreeMap::new();
    for (&(customer, start), &(purchases, cents)) in &windows {
        let earlier: Vec<u64> = windows
            .range((customer, start - history)..(customer, start))
            .map(|(_, (_, cents))| *cents)
            .collect();
        let average = match earlier.len() as u64 {
            0 => 0,
            n => earlier.iter().sum::<u64>() / n,
        };
        let total = lifetime.entry(customer).or_default();
        *total += cents;
        let spike = if average > 0 && cents > 2 * average {
            "SPIKE"
        } else {
            "-"
        };
        lines.push(format!(
            "{customer},{start},{purchases},{cents},{total},{average},{spike}"
        ));
    }
    lines.sort();
    lines
}

fn committed_lines(dir: &Path) -> Vec<String> {
    weir::testing::committed_lines(dir).expect("the output directory reads")
}

/// `checkpoints dump` of this binary decodes this crate's state types: the
/// newest checkpoint in `job_dir` (the final one) holds each customer's
/// lifetime total, which is the total in their last report of `want`.
fn assert_dump_holds_the_totals(job_dir: &Path, want: &[String]) {
    let last = weir::testing::complete_checkpoints(job_dir)
        .unwrap()
        .pop()
        .expect("a complete checkpoint");
    let output = Command::new(BINARY)
        .args(["checkpoints", "dump"])
        .arg(&last)
        .args(["--operator", "spend-tracker", "--state", "lifetime-cents"])
        .args(["--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "checkpoints dump failed: {stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let dumped: BTreeMap<u64, u64> = rows
        .iter()
        .map(|r| (r["key"].as_u64().unwrap(), r["value"].as_u64().unwrap()))
        .collect();
    let mut totals = BTreeMap::new();
    for line in want {
        let fields: Vec<&str> = line.split(',').collect();
        let customer: u64 = fields[0].parse().unwrap();
        let start: i64 = fields[1].parse().unwrap();
        let entry = totals.entry(customer).or_insert((start, 0u64));
        if start >= entry.0 {
            *entry = (start, fields[4].parse().unwrap());
        }
    }
    let totals: BTreeMap<u64, u64> = totals.into_iter().map(|(c, (_, t))| (c, t)).collect();
    assert_eq!(dumped, totals);
}

#[test]
fn embedded_run_writes_what_the_model_computes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = Command::new(BINARY)
        .args(["run", "spend-report", "-p", "2"])
        .args(["--param", "events=30000", "--param", "customers=20"])
        .args(["--param", "window=500ms", "--param", "history=2s"])
        .args(["--checkpoint-interval", "50ms", "--output"])
        .arg(&out)
        .env("WEIR_DATA_DIR", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "custom-job run failed: {stderr}");
    let lines = committed_lines(&out);
    let want = expected(30_000, 20, 7, 500, 2000);
    assert!(want.len() > 100, "the model reports {} windows", want.len());
    assert_eq!(lines, want);

    assert_dump_holds_the_totals(&dir.path().join("checkpoints/spend-report"), &want);

    // The binary's `jobs available` lists this crate's job, and a
    // malformed parameter is a one-line error naming it.
    let output = Command::new(BINARY)
        .args(["run", "spend-report", "--param", "window=fast"])
        .env("WEIR_DATA_DIR", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("parameter 'window' of job 'spend-report' must be a duration"),
        "{stderr}"
    );
}

#[test]
fn a_cluster_of_this_binary_survives_a_killed_worker() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cluster = ProcessCluster::start(BINARY, &dir.path().join("cluster"), 2, 1).unwrap();
    let job = cluster
        .submit(&[
            "spend-report",
            "-p",
            "2",
            "--param",
            "events=120000",
            "--param",
            "customers=50",
            "--param",
            "rate=40000",
            "--checkpoint-interval",
            "100ms",
            "--output",
            out.to_str().unwrap(),
        ])
        .unwrap();
    cluster
        .wait_for_checkpoint(&job, 3, Duration::from_secs(60))
        .unwrap();
    cluster.kill_worker(0);
    cluster.add_worker(1).unwrap();
    let status = cluster
        .wait_for_end(&job, Duration::from_secs(180))
        .unwrap();
    assert_eq!(status.state, JobState::Finished, "{status:?}");
    assert!(
        status.restarts >= 1,
        "the kill restarted the job: {status:?}"
    );
    let want = expected(120_000, 50, 7, 1000, 5000);
    assert_eq!(committed_lines(&out), want);
    // Checkpoints a cluster wrote (under the job's id) decode too.
    assert_dump_holds_the_totals(&dir.path().join("cluster/checkpoints").join(&job), &want);
}
