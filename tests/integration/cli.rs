//! The `weir` command line: summaries, stats files and clear errors.

use crate::reference_jobs::{weir_command, weir_run};

fn weir(args: &[&str]) -> (bool, String, String) {
    let data_dir = tempfile::tempdir().unwrap();
    let output = weir_command(data_dir.path())
        .args(args)
        .output()
        .expect("weir starts");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn run_prints_a_summary_and_writes_stats_json() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let summary = weir_run(&[
        "keyed-sum",
        "--param",
        "events=50000",
        "--param",
        "keys=10",
        "-p",
        "2",
        "--output",
        dir.path().join("out").to_str().unwrap(),
        "--stats",
        stats.to_str().unwrap(),
    ]);
    assert!(
        summary.contains("50000 events in, 10 records out"),
        "{summary}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stats).unwrap()).unwrap();
    assert_eq!(json["events_in"], 50_000);
    assert_eq!(json["records_out"], 10);
    assert!(json["elapsed_s"].as_f64().unwrap() > 0.0);
    assert!(json["events_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn without_output_records_go_to_stdout() {
    let (ok, stdout, _) = weir(&[
        "run",
        "keyed-sum",
        "--param",
        "events=100",
        "--param",
        "keys=3",
    ]);
    assert!(ok);
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("0,"));
}

#[test]
fn bad_job_names_and_parameters_are_one_line_errors() {
    let cases: [(&[&str], &str); 7] = [
        (&["run", "no-such-job"], "error: unknown job 'no-such-job'"),
        (
            &["run", "keyed-sum", "--param", "events=lots"],
            "must be a non-negative integer, got 'lots'",
        ),
        (
            &["run", "keyed-sum", "--param", "colour=blue"],
            "has no parameter 'colour'",
        ),
        (
            &["run", "keyed-sum", "--param", "keys"],
            "must have the form key=value",
        ),
        (&["run", "wordcount"], "needs parameter 'input'"),
        (
            &["run", "keyed-sum", "-p", "0"],
            "parallelism must be at least 1",
        ),
        (
            &["run", "keyed-sum", "-p", "4", "--max-parallelism", "2"],
            "has parallelism 4, above the max parallelism 2",
        ),
    ];
    for (args, expected) in cases {
        let (ok, _, stderr) = weir(args);
        assert!(!ok, "{args:?} should fail");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn jobs_available_lists_jobs_with_parameters_and_defaults() {
    let (ok, stdout, _) = weir(&["jobs", "available"]);
    assert!(ok);
    for needle in [
        "keyed-sum",
        "wordcount",
        "nexmark-q5",
        "nexmark-q7",
        "events=",
        "default 1000000",
        "required",
    ] {
        assert!(stdout.contains(needle), "missing {needle}: {stdout}");
    }
}

/// `--log-format json` writes one JSON object per line; with debug logs of
/// the runtime, a checkpoint can be followed through them: each task's
/// snapshot and each upload carry the job, the task and the epoch.
#[test]
fn json_logs_carry_the_job_the_task_and_the_epoch_of_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let output = weir_command(dir.path())
        .env("WEIR_LOG", "weir_runtime=debug")
        .args([
            "--log-format",
            "json",
            "run",
            "keyed-sum",
            "--param",
            "events=20000",
            "--param",
            "rate=20000",
            "-p",
            "2",
            "--checkpoint-interval",
            "200ms",
            "--checkpoint-dir",
            dir.path().join("checkpoints").to_str().unwrap(),
            "--output",
            dir.path().join("out").to_str().unwrap(),
        ])
        .output()
        .expect("weir starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // Besides the logs, standard error has the run's summary line.
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|line| !line.starts_with("keyed-sum: "))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let snapshot = lines
        .iter()
        .find(|l| l["fields"]["message"] == "barrier passed: snapshot taken")
        .unwrap_or_else(|| panic!("no snapshot event in {stderr}"));
    assert!(snapshot["fields"]["epoch"].as_u64().is_some(), "{snapshot}");
    assert_eq!(snapshot["span"]["name"], "task", "{snapshot}");
    assert!(
        snapshot["span"]["job"]
            .as_str()
            .is_some_and(|job| job.starts_with("keyed-sum")),
        "{snapshot}"
    );
    assert!(snapshot["span"]["task"].as_str().is_some(), "{snapshot}");
    let upload = lines
        .iter()
        .find(|l| l["fields"]["message"] == "snapshot written: acknowledging")
        .unwrap_or_else(|| panic!("no upload event in {stderr}"));
    assert_eq!(upload["span"]["name"], "checkpoint", "{upload}");
    assert!(upload["span"]["epoch"].as_u64().is_some(), "{upload}");
}
