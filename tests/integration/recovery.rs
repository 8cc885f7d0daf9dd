//! Exactly-once recovery: crashed and restored runs against clean runs.
//!
//! Every test prints its random seed; rerun one with `WEIR_TEST_SEED=<seed>`.

use crate::reference_jobs::{sorted_lines, weir_command, weir_run};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A small deterministic generator (SplitMix64) for test choices.
pub struct Rng(u64);

impl Rng {
    pub fn from_env(test: &str) -> Self {
        let seed = std::env::var("WEIR_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("{test}: seed {seed} (rerun with WEIR_TEST_SEED={seed})");
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

/// A `weir run` in the background, killed with SIGKILL when dropped.
pub struct Running(Child);

impl Running {
    pub fn start(data_dir: &Path, args: &[String], env: &[(String, String)]) -> Self {
        let child = weir_command(data_dir)
            .envs(env.iter().cloned())
            .arg("run")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("weir starts");
        Self(child)
    }

    pub fn kill_9(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub fn run_to_end(list: &[String]) -> String {
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    weir_run(&refs)
}

/// What `emit=updates` output must match between runs: every (key, count)
/// exactly once (no update lost or doubled), and each key's final total.
/// The sums along the way depend on how the sources' events interleave.
struct ExactlyOnceView {
    counts: Vec<(u64, u64)>,
    totals: BTreeMap<u64, (u64, i64)>,
}

fn exactly_once_view(dir: &Path) -> ExactlyOnceView {
    let mut counts = Vec::new();
    let mut totals: BTreeMap<u64, (u64, i64)> = BTreeMap::new();
    for line in sorted_lines(dir) {
        let f: Vec<i64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        let (key, count, sum) = (f[0] as u64, f[1] as u64, f[2]);
        counts.push((key, count));
        let total = totals.entry(key).or_default();
        if count > total.0 {
            *total = (count, sum);
        }
    }
    counts.sort_unstable();
    ExactlyOnceView { counts, totals }
}

/// Asserts the `emit=updates` output in `got` is the one in `clean`: every
/// (key, count) once and the same totals.
pub fn assert_same(got: &Path, clean: &Path) {
    let (got, clean) = (exactly_once_view(got), exactly_once_view(clean));
    assert_eq!(got.counts.len(), clean.counts.len(), "number of updates");
    assert!(
        got.counts == clean.counts,
        "some (key, count) updates are missing or doubled"
    );
    assert_eq!(got.totals, clean.totals);
}

pub fn wait_for_a_checkpoint(root: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let found = walk(root).iter().any(|p| p.ends_with("COMMITTED"));
        if found {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no checkpoint completed under {}", root.display());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

pub const JOB: [&str; 9] = [
    "keyed-sum",
    "--param",
    "events=400000",
    "--param",
    "keys=200",
    "--param",
    "emit=updates",
    "--param",
    "rate=200000",
];

/// Starts `list` `rounds` times and SIGKILLs it at a random moment once a
/// checkpoint exists, so every round after the first restores from one.
fn crash_repeatedly(
    rng: &mut Rng,
    data_dir: &Path,
    list: &[String],
    checkpoints: &Path,
    rounds: u32,
) {
    for round in 0..rounds {
        let running = Running::start(data_dir, list, &[]);
        wait_for_a_checkpoint(checkpoints);
        let after = rng.between(100, 800);
        std::thread::sleep(Duration::from_millis(after));
        println!("round {round}: SIGKILL {after} ms after a checkpoint exists");
        running.kill_9();
    }
}

/// W1 at p=2 with checkpoints every 100 ms, resuming from the latest.
pub fn restartable_run(out: &Path, checkpoints: &str) -> Vec<String> {
    let mut list = args(&JOB);
    list.extend(args(&[
        "-p",
        "2",
        "--checkpoint-interval",
        "100ms",
        "--restore",
        "latest",
    ]));
    list.extend(["--output".into(), out.display().to_string()]);
    list.extend(["--checkpoint-dir".into(), checkpoints.to_owned()]);
    list
}

pub fn clean_run(dir: &Path, parallelism: &str) -> PathBuf {
    let out = dir.join("clean");
    let mut list = args(&JOB);
    list.extend(args(&[
        "-p",
        parallelism,
        "--checkpoint-interval",
        "0",
        "--output",
    ]));
    list.push(out.display().to_string());
    run_to_end(&list);
    out
}

#[test]
fn kill_9_at_random_moments_then_restore_latest_equals_a_clean_run() {
    let mut rng = Rng::from_env("kill_9");
    let dir = tempfile::tempdir().unwrap();
    let clean = clean_run(dir.path(), "2");
    let (out, checkpoints) = (dir.path().join("out"), dir.path().join("checkpoints"));
    let list = restartable_run(&out, checkpoints.to_str().unwrap());
    crash_repeatedly(&mut rng, dir.path(), &list, &checkpoints, 4);
    run_to_end(&list);
    assert_same(&out, &clean);
    let hidden: Vec<_> = walk(&out)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "uncommitted files left: {hidden:?}");
}

#[test]
fn a_panic_at_a_random_record_recovers_by_itself() {
    let mut rng = Rng::from_env("panic");
    let dir = tempfile::tempdir().unwrap();
    let clean = clean_run(dir.path(), "2");
    let (out, stats) = (dir.path().join("out"), dir.path().join("stats.json"));
    let fail_at = rng.between(1, 400_000);
    println!("panicking at event {fail_at}");
    let mut list = args(&JOB);
    list.extend(args(&["-p", "2", "--checkpoint-interval", "100ms"]));
    list.push(format!("--param=fail_at={fail_at}"));
    list.extend(["--output".into(), out.display().to_string()]);
    list.extend(["--stats".into(), stats.display().to_string()]);
    run_to_end(&list);
    assert_same(&out, &clean);
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stats).unwrap()).unwrap();
    assert_eq!(stats["restarts"], 1);
}

#[test]
fn a_checkpoint_taken_at_parallelism_three_restores_at_two() {
    let dir = tempfile::tempdir().unwrap();
    let clean = clean_run(dir.path(), "1");
    let (out, checkpoints) = (dir.path().join("out"), dir.path().join("checkpoints"));
    let mut common = args(&JOB);
    common.extend(args(&["--checkpoint-interval", "100ms"]));
    common.extend(["--output".into(), out.display().to_string()]);
    common.extend(["--checkpoint-dir".into(), checkpoints.display().to_string()]);
    let mut first = common.clone();
    first.extend(args(&["-p", "3"]));
    let running = Running::start(dir.path(), &first, &[]);
    wait_for_a_checkpoint(&checkpoints);
    running.kill_9();

    let stats = dir.path().join("stats.json");
    let mut second = common.clone();
    second.extend(args(&["-p", "2", "--restore", "latest", "--stats"]));
    second.push(stats.display().to_string());
    run_to_end(&second);
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stats).unwrap()).unwrap();
    assert!(stats["restored_from"].is_u64(), "{stats}");
    assert_same(&out, &clean);
}

#[test]
fn a_corrupt_checkpoint_file_falls_back_to_the_checkpoint_before() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let job = |extra: &[&str]| {
        let mut list = args(&[
            "keyed-sum",
            "--param",
            "events=300000",
            "--param",
            "keys=100",
            "--param",
            "rate=600000",
            "-p",
            "2",
            "--checkpoint-interval",
            "50ms",
        ]);
        list.extend(["--checkpoint-dir".into(), checkpoints.display().to_string()]);
        list.extend(args(extra));
        list
    };
    let first_out = dir.path().join("first");
    run_to_end(&job(&["--output", first_out.to_str().unwrap()]));

    // Corrupt the newest checkpoint's state file of subtask 1-0.
    let job_dir = checkpoints.join("keyed-sum");
    let mut epochs: Vec<String> = std::fs::read_dir(&job_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    epochs.sort();
    assert!(
        epochs.len() >= 2,
        "need two retained checkpoints: {epochs:?}"
    );
    let newest = epochs.last().unwrap().clone();
    let victim = job_dir.join(&newest).join("1-0/keyed.state");
    let mut bytes = std::fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();

    // The output directory as of the checkpoint before the corrupt one (the
    // sink resumes from it): the files committed up to that checkpoint.
    let previous: u64 = epochs[epochs.len() - 2]["chk-".len()..].parse().unwrap();
    let (second_out, stats) = (dir.path().join("second"), dir.path().join("stats.json"));
    std::fs::create_dir_all(&second_out).unwrap();
    for entry in std::fs::read_dir(&first_out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let epoch: u64 = name.rsplit('-').next().unwrap().parse().unwrap();
        if epoch <= previous {
            std::fs::copy(first_out.join(&name), second_out.join(&name)).unwrap();
        }
    }
    let stderr = run_to_end(&job(&[
        "--restore",
        "latest",
        "--output",
        second_out.to_str().unwrap(),
        "--stats",
        stats.to_str().unwrap(),
    ]));
    assert!(
        stderr.contains(&format!("{newest}/1-0/keyed.state"))
            && stderr.contains("checksum mismatch"),
        "the warning names the file: {stderr}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stats).unwrap()).unwrap();
    assert_eq!(stats["restored_from"], previous);
    assert_eq!(sorted_lines(&second_out), sorted_lines(&first_out));
}

#[test]
fn rocksdb_state_survives_kill_9_exactly_once() {
    let mut rng = Rng::from_env("rocksdb_kill_9");
    let dir = tempfile::tempdir().unwrap();
    let clean = clean_run(dir.path(), "2");
    let (out, checkpoints) = (dir.path().join("out"), dir.path().join("checkpoints"));
    let mut list = restartable_run(&out, checkpoints.to_str().unwrap());
    list.extend(args(&["--state-backend", "rocksdb"]));
    crash_repeatedly(&mut rng, dir.path(), &list, &checkpoints, 2);
    run_to_end(&list);
    assert_same(&out, &clean);
    let shared = walk(&checkpoints.join("keyed-sum/shared"));
    assert!(
        !shared.is_empty(),
        "RocksDB SSTs are shared between checkpoints"
    );
}

#[test]
fn retention_keeps_k_checkpoints_and_every_file_they_reference() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let mut list = args(&JOB);
    list.extend(args(&[
        "-p",
        "2",
        "--checkpoint-interval",
        "100ms",
        "--retain",
        "2",
    ]));
    list.extend(args(&["--state-backend", "rocksdb"]));
    list.extend([
        "--output".into(),
        dir.path().join("out").display().to_string(),
    ]);
    list.extend(["--checkpoint-dir".into(), checkpoints.display().to_string()]);
    run_to_end(&list);

    let job_dir = checkpoints.join("keyed-sum");
    let mut complete = Vec::new();
    for entry in std::fs::read_dir(&job_dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("chk-") {
            assert!(
                entry.path().join("COMMITTED").exists(),
                "{name} is left incomplete"
            );
            complete.push(entry.path());
        }
    }
    assert_eq!(complete.len(), 2, "two checkpoints retained: {complete:?}");
    let mut referenced = std::collections::BTreeSet::new();
    for checkpoint in &complete {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(checkpoint.join("manifest.json")).unwrap())
                .unwrap();
        for operator in manifest["operators"].as_array().unwrap() {
            for subtask in operator["subtasks"].as_array().unwrap() {
                for file in subtask["files"].as_array().unwrap() {
                    let path = job_dir.join(file["path"].as_str().unwrap());
                    assert!(
                        path.exists(),
                        "a retained checkpoint lost {}",
                        path.display()
                    );
                    referenced.insert(path);
                }
            }
        }
    }
    let shared: std::collections::BTreeSet<_> = walk(&job_dir.join("shared")).into_iter().collect();
    assert!(!shared.is_empty());
    let garbage: Vec<_> = shared.difference(&referenced).collect();
    assert!(
        garbage.is_empty(),
        "unreferenced shared files remain: {garbage:?}"
    );
}

/// A run that fails before its first checkpoint restarts from the
/// beginning, never from an earlier run's checkpoint of the same job id.
#[test]
fn a_restart_never_resumes_from_an_earlier_runs_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints").display().to_string();
    let out = dir.path().join("out");
    let clean = clean_run(dir.path(), "2");
    // The second run fails after 100 ms, before its first (1 s) checkpoint.
    for fail_at in ["0", "20000"] {
        let mut list = args(&JOB);
        let fail_at = format!("fail_at={fail_at}");
        list.extend(args(&[
            "--param",
            &fail_at,
            "-p",
            "2",
            "--checkpoint-dir",
            &checkpoints,
        ]));
        list.extend(["--output".into(), out.display().to_string()]);
        run_to_end(&list);
    }
    assert_same(&out, &clean);
}
