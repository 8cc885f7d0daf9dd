//! Metrics and the checkpoint and restart histories of a real cluster:
//! the coordinator's and every worker's `/metrics` are scraped and parsed
//! as the Prometheus text format, and their figures checked against what
//! the job did and what checkpoint storage holds.

use crate::harness::{text, TestCluster};
use prometheus_parse::{Scrape, Value};
use std::collections::BTreeSet;
use weir::job::{JobOptions, JobParams};
use weir::protocol::{JobGraph, JobState, VertexKind};

const EVENTS: u64 = 20_000;

fn parse(text: &str) -> Scrape {
    // No series twice: a scraper rejects the whole page for one.
    let mut seen = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let series = line.rsplit_once(' ').map_or(line, |(series, _)| series);
        assert!(seen.insert(series.to_owned()), "{series} twice in:\n{text}");
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the text format parses")
}

fn number(value: &Value) -> f64 {
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("not a number: {other:?}"),
    }
}

/// The sum of `metric`'s samples whose labels include every one of `labels`.
fn sum(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| number(&s.value))
        .sum()
}

/// The graph of keyed-sum at `parallelism` writing files into `out`.
fn keyed_sum_graph(parallelism: u32, out: &std::path::Path) -> JobGraph {
    weir::jobs::registry()
        .build(
            "keyed-sum",
            &JobParams::split_pairs(&[format!("events={EVENTS}")]).unwrap(),
            &JobOptions {
                parallelism,
                output: Some(out.to_owned()),
                ..JobOptions::default()
            },
        )
        .unwrap()
        .graph()
        .clone()
}

fn name_of(graph: &JobGraph, kind: VertexKind) -> String {
    graph
        .vertices
        .iter()
        .find(|v| v.kind == kind)
        .expect("the vertex")
        .name
        .clone()
}

/// Two workers serving `/metrics` run keyed-sum at p=2 to its end. The
/// records the workers counted equal those the job produced and wrote;
/// every task waited and worked some; heartbeats and replica pushes were
/// counted. The coordinator's checkpoint counts equal the job's, and the
/// size it reports for the last checkpoint is the one its manifest in
/// storage (`weir checkpoints show`) adds up to; the REST history has each
/// subtask's ack of it.
#[test]
fn scraped_metrics_count_what_the_job_did_and_what_storage_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 0, 1, &[]);
    for _ in 0..2 {
        cluster.add_worker_with(1, &["--metrics-listen", "127.0.0.1:0"]);
    }
    cluster.wait_for_workers(2);
    let out = dir.path().join("out");
    let id = cluster.submit_and_wait(&[
        "keyed-sum",
        "--param",
        &format!("events={EVENTS}"),
        "--param",
        "keys=100",
        "--param",
        "rate=10000",
        "-p",
        "2",
        "--checkpoint-interval",
        "200ms",
        "--output",
        &out.display().to_string(),
    ]);
    let client = cluster.client();
    let status = client.job(&id).unwrap();
    assert_eq!(status.state, JobState::Finished);
    assert_eq!(status.events_in, EVENTS);
    assert!(status.checkpoints_completed >= 3, "{status:?}");

    let graph = keyed_sum_graph(2, &out);
    let (source, sink) = (
        name_of(&graph, VertexKind::Source),
        name_of(&graph, VertexKind::Sink),
    );
    let workers = client.cluster().unwrap().workers;
    let (mut produced, mut written, mut replica_bytes) = (0.0, 0.0, 0.0);
    for worker in &workers {
        let address = worker.metrics_addr.as_deref().expect("a metrics address");
        let scrape = parse(&client.worker_metrics(address).unwrap());
        let job = [("job", id.as_str())];
        produced += sum(
            &scrape,
            "weir_task_records_out_total",
            &[job[0], ("operator", &source)],
        );
        written += sum(
            &scrape,
            "weir_task_records_in_total",
            &[job[0], ("operator", &sink)],
        );
        let worker_label = worker.id.0.to_string();
        let tasks: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "weir_task_busy_seconds_total")
            .collect();
        assert_eq!(
            tasks.len(),
            graph.vertices.len(),
            "one subtask of each operator on each worker"
        );
        for task in tasks {
            assert_eq!(task.labels.get("worker"), Some(worker_label.as_str()));
            let labels: Vec<(&str, &str)> = ["job", "operator", "subtask"]
                .iter()
                .map(|k| (*k, task.labels.get(k).unwrap()))
                .collect();
            let busy = number(&task.value);
            let idle = sum(&scrape, "weir_task_idle_seconds_total", &labels);
            assert!(
                busy > 0.0 && idle > 0.0,
                "{labels:?}: {busy} s busy, {idle} s idle"
            );
            // Rate-limited to a fraction of what it could do: mostly idle.
            assert!(
                idle > busy,
                "{labels:?}: {busy} s busy, {idle} s idle in a {} s job",
                status.elapsed_s
            );
            // Ended with its deployment.
            assert_eq!(sum(&scrape, "weir_task_running", &labels), 0.0);
        }
        assert!(sum(&scrape, "weir_worker_heartbeats_sent_total", &[]) > 0.0);
        replica_bytes += sum(&scrape, "weir_worker_replica_bytes_pushed_total", &[]);
    }
    assert_eq!(produced, EVENTS as f64, "records out of the sources");
    assert_eq!(written, status.records_out as f64, "records into the sinks");
    assert!(replica_bytes > 0.0, "replicas were pushed");

    let scrape = parse(&client.metrics().unwrap());
    let job = [("job", id.as_str())];
    assert_eq!(
        sum(&scrape, "weir_checkpoints_completed_total", &job),
        f64::from(status.checkpoints_completed)
    );
    assert_eq!(
        sum(&scrape, "weir_job_state", &[job[0], ("state", "Finished")]),
        1.0
    );
    assert!(sum(&scrape, "weir_worker_heartbeats_received_total", &[]) > 0.0);
    assert_eq!(sum(&scrape, "weir_workers_registered", &[]), 2.0);
    assert_eq!(
        sum(&scrape, "weir_job_records_in_total", &job),
        EVENTS as f64
    );
    assert_eq!(
        sum(&scrape, "weir_job_records_out_total", &job),
        status.records_out as f64
    );
    let epoch = sum(&scrape, "weir_checkpoint_last_epoch", &job) as u64;
    assert_eq!(Some(epoch), status.latest_checkpoint);
    let size = sum(&scrape, "weir_checkpoint_last_size_bytes", &job) as u64;
    let checkpoint = dir
        .path()
        .join("checkpoints")
        .join(&id)
        .join(format!("chk-{epoch:010}"));
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "checkpoints",
            "show",
            &checkpoint.display().to_string(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let details: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let manifest_size: u64 = details["manifest"]["operators"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["subtasks"].as_array().unwrap())
        .flat_map(|s| s["files"].as_array().unwrap())
        .map(|f| f["size"].as_u64().unwrap())
        .sum();
    assert!(size > 0);
    assert_eq!(
        size, manifest_size,
        "the size `weir checkpoints show` adds up"
    );
    let durations = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "weir_checkpoint_duration_seconds" && s.labels.get("job") == Some(&id)
        })
        .expect("the duration histogram");
    let Value::Histogram(buckets) = &durations.value else {
        panic!("{durations:?}");
    };
    let observed = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
    assert_eq!(observed, f64::from(status.checkpoints_completed));

    // The REST history: the last checkpoint first, each subtask's ack.
    let history = client.checkpoints(&id, 5).unwrap();
    assert_eq!(
        history.checkpoints.len(),
        (status.checkpoints_completed as usize + status.checkpoints_aborted as usize).min(5)
    );
    let last = &history.checkpoints[0];
    assert_eq!(last.epoch, epoch);
    assert_eq!(last.size_bytes, Some(size));
    let subtasks = graph.vertices.len() * 2;
    assert_eq!(last.subtasks.len(), subtasks, "{last:?}");
    assert_eq!(
        last.subtasks.iter().map(|s| s.size_bytes).sum::<u64>(),
        size
    );
    assert!(last
        .subtasks
        .iter()
        .all(|s| s.acked_after_ms <= last.duration_ms + 1.0));
    let exceptions = client.exceptions(&id).unwrap();
    assert!(exceptions.exceptions.is_empty(), "{exceptions:?}");
}

/// Three one-slot workers run keyed-sum at p=2, and the worker of slot 0
/// is SIGKILLed: the restart history names the loss with its recovery and
/// the tier each subtask restored from, and the coordinator's metrics count
/// the loss, the restart and the restored subtasks alike.
#[test]
fn a_restart_shows_in_the_exception_history_and_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, 1, &[]);
    let out = dir.path().join("out");
    let submitted = cluster.weir(&[
        "submit",
        "keyed-sum",
        "--param",
        "events=100000000",
        "--param",
        "keys=100",
        "--param",
        "rate=20000",
        "-p",
        "2",
        "--checkpoint-interval",
        "200ms",
        "--output",
        &out.display().to_string(),
    ]);
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    let id = text(&submitted.stdout).trim().to_owned();
    let before = cluster.wait_for(&id, "two checkpoints", |s| s.checkpoints_completed >= 2);
    let victim = cluster.kill_worker_of_slot_0(&before);
    let after = cluster.wait_for(&id, "the recovery", |s| {
        s.state == JobState::Running
            && s.last_loss
                .as_ref()
                .is_some_and(|l| l.recovered_at_ms.is_some())
    });
    let exceptions = cluster.client().exceptions(&id).unwrap();
    assert_eq!(exceptions.restarts, 1);
    let [restart] = exceptions.exceptions.as_slice() else {
        panic!("one restart: {exceptions:?}");
    };
    assert!(
        restart.cause.contains(&victim.to_string()),
        "the cause names the lost worker {victim}: {restart:?}"
    );
    assert!(restart.recovery_ms.is_some(), "{restart:?}");
    assert_eq!(restart.restored.len(), after.restored.len(), "{restart:?}");
    assert!(!restart.restored.is_empty());

    let scrape = parse(&cluster.client().metrics().unwrap());
    let job = [("job", id.as_str())];
    assert_eq!(sum(&scrape, "weir_workers_lost_total", &[]), 1.0);
    assert_eq!(
        sum(
            &scrape,
            "weir_job_restarts_total",
            &[job[0], ("scope", "global")]
        ),
        1.0
    );
    assert_eq!(sum(&scrape, "weir_job_recoveries_total", &job), 1.0);
    // While it runs, from the workers' reports (a second or so late).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sum(
        &parse(&cluster.client().metrics().unwrap()),
        "weir_job_records_in_total",
        &job,
    ) == 0.0
    {
        assert!(std::time::Instant::now() < deadline, "no records counted");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        sum(&scrape, "weir_restored_subtasks_total", &job),
        restart.restored.len() as f64
    );
    let _ = cluster.client().cancel(&id);
}
