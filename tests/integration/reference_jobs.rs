//! The reference jobs, run through the real `weir` binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use weir::operators::sources::Generator;

/// A `weir` command whose default data directory (checkpoints) is a fresh
/// temporary directory, so that tests running in parallel never share one.
pub fn weir_command(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command.env("WEIR_DATA_DIR", data_dir);
    command
}

/// Runs `weir run …`; panics with its stderr if it fails.
pub fn weir_run(args: &[&str]) -> String {
    let data_dir = tempfile::tempdir().unwrap();
    let output = weir_command(data_dir.path())
        .arg("run")
        .args(args)
        .output()
        .expect("weir starts");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "weir run {args:?} failed: {stderr}"
    );
    stderr
}

/// All lines of the committed (visible) files in `dir`, sorted.
pub fn sorted_lines(dir: &Path) -> Vec<String> {
    weir::testing::committed_lines(dir).unwrap()
}

#[test]
fn keyed_sum_at_parallelism_four_equals_parallelism_one_and_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for p in ["1", "4"] {
        let out = dir.path().join(format!("p{p}"));
        weir_run(&[
            "keyed-sum",
            "--param",
            "events=1000000",
            "--param",
            "keys=1000",
            "-p",
            p,
            "--output",
            out.to_str().unwrap(),
        ]);
        outputs.push(sorted_lines(&out));
    }
    assert_eq!(outputs[0], outputs[1]);

    // Against the generator itself: every key's count and sum.
    let generator = Generator::new(1_000_000, 1000, 42);
    let mut expected: BTreeMap<u64, (u64, i64)> = BTreeMap::new();
    for seq in 0..1_000_000 {
        let e = generator.event(seq);
        let entry = expected.entry(e.key).or_default();
        entry.0 += 1;
        entry.1 += e.value;
    }
    let mut got = BTreeMap::new();
    for line in &outputs[1] {
        let fields: Vec<i64> = line.split(',').map(|f| f.parse().unwrap()).collect();
        got.insert(fields[0] as u64, (fields[1] as u64, fields[2]));
    }
    assert_eq!(got.len(), 1000);
    assert_eq!(got.values().map(|(count, _)| count).sum::<u64>(), 1_000_000);
    assert_eq!(got, expected);
}

#[test]
fn keyed_sum_updates_emit_one_record_per_event_ending_in_the_totals() {
    let dir = tempfile::tempdir().unwrap();
    let updates = dir.path().join("updates");
    let finals = dir.path().join("final");
    let common = ["--param", "events=20000", "--param", "keys=50", "-p", "3"];
    let mut args = vec![
        "keyed-sum",
        "--param",
        "emit=updates",
        "--output",
        updates.to_str().unwrap(),
    ];
    args.extend(common);
    weir_run(&args);
    let mut args = vec!["keyed-sum", "--output", finals.to_str().unwrap()];
    args.extend(common);
    weir_run(&args);

    let lines = sorted_lines(&updates);
    assert_eq!(lines.len(), 20_000);
    let mut last: BTreeMap<u64, (u64, i64)> = BTreeMap::new();
    for line in &lines {
        let f: Vec<i64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        let entry = last.entry(f[0] as u64).or_default();
        if f[1] as u64 > entry.0 {
            *entry = (f[1] as u64, f[2]);
        }
    }
    let totals: Vec<String> = last
        .iter()
        .map(|(k, (c, s))| format!("{k},{c},{s}"))
        .collect();
    let mut totals_sorted = totals.clone();
    totals_sorted.sort();
    assert_eq!(totals_sorted, sorted_lines(&finals));
}

#[test]
fn wordcount_counts_every_word() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("text.txt");
    let mut text = String::new();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..2000 {
        let words = [
            format!("w{}", i % 13),
            "The".into(),
            format!("x{}", i % 101),
        ];
        text.push_str(&format!("{}, {}; {}!\n", words[0], words[1], words[2]));
        for w in words {
            *expected.entry(w.to_lowercase()).or_default() += 1;
        }
    }
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out");
    weir_run(&[
        "wordcount",
        "--param",
        &format!("input={}", input.display()),
        "-p",
        "3",
        "--output",
        out.to_str().unwrap(),
    ]);
    let mut want: Vec<String> = expected.iter().map(|(w, c)| format!("{w},{c}")).collect();
    want.sort();
    assert_eq!(sorted_lines(&out), want);
}

#[test]
fn nexmark_queries_give_the_same_answer_at_any_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    for query in ["nexmark-q5", "nexmark-q7"] {
        let mut outputs = Vec::new();
        for p in ["1", "3"] {
            let out = dir.path().join(format!("{query}-{p}"));
            weir_run(&[
                query,
                "--param",
                "events=100000",
                "-p",
                p,
                "--output",
                out.to_str().unwrap(),
            ]);
            outputs.push(sorted_lines(&out));
        }
        // 100,000 events span 10 s of event time: at least two windows.
        assert!(outputs[0].len() >= 2, "{query}: {:?}", outputs[0]);
        assert_eq!(outputs[0], outputs[1], "{query}");
    }
}
