//! `weir checkpoints list|show|verify|gc` on checkpoints `weir run` wrote.

use crate::recovery::{args, run_to_end};
use crate::reference_jobs::weir_command;
use std::path::Path;

fn weir(data_dir: &Path, list: &[&str]) -> (bool, String, String) {
    let output = weir_command(data_dir).args(list).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs W1 (200,000 events at 400,000/s, p=2) with a checkpoint every
/// 50 ms, retaining `retain`; returns the checkpoint directory and the
/// arguments of the run.
fn checkpointed_run(dir: &Path, retain: &str) -> (std::path::PathBuf, Vec<String>) {
    let checkpoints = dir.join("checkpoints");
    let mut run = args(&[
        "keyed-sum",
        "--param",
        "events=200000",
        "--param",
        "keys=50",
        "--param",
        "rate=400000",
        "-p",
        "2",
        "--checkpoint-interval",
        "50ms",
        "--retain",
    ]);
    run.push(retain.into());
    run.extend(["--checkpoint-dir".into(), checkpoints.display().to_string()]);
    run.extend(["--output".into(), dir.join("out").display().to_string()]);
    run_to_end(&run);
    (checkpoints, run)
}

/// The checkpoint directories of a job, oldest first.
fn checkpoint_dirs(job_root: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(job_root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("chk-"))
        .collect();
    dirs.sort();
    dirs
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn list_show_verify_and_gc_real_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoints, run) = checkpointed_run(dir.path(), "5");
    let job_root = checkpoints.join("keyed-sum");
    let root = job_root.to_str().unwrap();

    let (ok, out, _) = weir(dir.path(), &["checkpoints", "list", root, "--json"]);
    assert!(ok);
    let rows = json(&out);
    let rows = rows.as_array().unwrap();
    assert!(rows.len() >= 2, "{rows:?}");
    let epochs: Vec<u64> = rows.iter().map(|r| r["epoch"].as_u64().unwrap()).collect();
    assert!(
        epochs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {epochs:?}"
    );
    assert_eq!(rows[0]["status"], "complete");
    assert_eq!(rows[0]["is_final"], true);
    assert_eq!(rows[0]["subtasks"], 6);

    let newest = format!("{root}/chk-{:010}", epochs[0]);
    let (ok, out, _) = weir(dir.path(), &["checkpoints", "show", &newest, "--json"]);
    assert!(ok);
    let details = json(&out);
    let operators: Vec<&str> = details["manifest"]["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(operators, ["events", "running-sum", "file"]);
    assert!(
        details["state_sizes"]["running-sum/0"]["totals"]
            .as_u64()
            .unwrap()
            > 0
    );
    let (ok, table, _) = weir(dir.path(), &["checkpoints", "show", &newest]);
    assert!(
        ok && table.contains("running-sum") && table.contains("remaining"),
        "{table}"
    );

    let (ok, _, _) = weir(dir.path(), &["checkpoints", "verify", root]);
    assert!(ok);

    // gc keeps the two newest; each of them still verifies and restores.
    let (ok, out, _) = weir(dir.path(), &["checkpoints", "gc", root, "--keep", "2"]);
    assert!(ok, "{out}");
    let (_, out, _) = weir(dir.path(), &["checkpoints", "list", root, "--json"]);
    let left: Vec<u64> = json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(left, epochs[..2]);
    for epoch in &left {
        let checkpoint = format!("{root}/chk-{epoch:010}");
        let (ok, _, _) = weir(dir.path(), &["checkpoints", "verify", &checkpoint]);
        assert!(ok, "gc kept every file checkpoint {epoch} needs");
        // Into the output directory the checkpoint's commits belong to.
        let mut restore = run.clone();
        restore.extend(["--restore".into(), checkpoint]);
        run_to_end(&restore);
    }

    // Corrupt one file of the newest checkpoint: verify names it and fails.
    let victim = job_root.join(format!("chk-{:010}/1-1/keyed.state", epochs[0]));
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let (ok, out, err) = weir(dir.path(), &["checkpoints", "verify", &newest]);
    assert!(!ok);
    assert!(
        out.contains("1-1/keyed.state") && out.contains("checksum mismatch"),
        "{out}"
    );
    assert!(err.starts_with("error: 1 of"), "{err}");
}

#[test]
fn bad_locations_and_corrupt_manifests_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = weir(dir.path(), &["checkpoints", "show", "/nowhere/job/chk-12"]);
    assert!(
        !ok && err.lines().count() == 1 && err.contains("chk-NNNNNNNNNN"),
        "{err}"
    );
    let (ok, _, err) = weir(dir.path(), &["checkpoints", "list", "ftp://host/x/job"]);
    assert!(!ok && err.contains("unsupported scheme 'ftp'"), "{err}");
    // A typo is not "no checkpoints yet".
    let typo = dir.path().join("ck/no-such-job");
    let (ok, out, err) = weir(dir.path(), &["checkpoints", "list", typo.to_str().unwrap()]);
    assert!(
        !ok && out.is_empty() && err.contains("nothing is at"),
        "{err}"
    );
    // S3 without credentials names the settings, not an instance-metadata PUT.
    let output = weir_command(dir.path())
        .args(["checkpoints", "list", "s3://bucket/ck/job"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_METADATA_ENDPOINT")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{err}");
    assert!(
        err.contains("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{err}"
    );

    let chk = dir.path().join("ck/job/chk-0000000001");
    std::fs::create_dir_all(&chk).unwrap();
    std::fs::write(chk.join("manifest.json"), "{ not json").unwrap();
    std::fs::write(chk.join("COMMITTED"), "").unwrap();
    let (ok, _, err) = weir(dir.path(), &["checkpoints", "show", chk.to_str().unwrap()]);
    assert!(!ok && err.lines().count() == 1, "{err}");
    assert!(
        err.contains("manifest of checkpoint 1 of job 'job' is corrupt"),
        "{err}"
    );
}

/// The final checkpoint's `running-sum` state holds exactly the totals the
/// job wrote, for both backends.
#[test]
fn dump_decodes_keyed_state_into_the_totals_the_job_wrote() {
    for backend in ["memory", "rocksdb"] {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = dir.path().join("checkpoints");
        let out = dir.path().join("out");
        let mut run = args(&[
            "keyed-sum",
            "--param",
            "events=50000",
            "--param",
            "keys=40",
            "-p",
            "2",
            "--state-backend",
        ]);
        run.push(backend.into());
        run.extend(["--checkpoint-dir".into(), checkpoints.display().to_string()]);
        run.extend(["--output".into(), out.display().to_string()]);
        run_to_end(&run);
        let job_root = checkpoints.join("keyed-sum");
        let newest = checkpoint_dirs(&job_root).pop().unwrap();
        let (ok, text, err) = weir(
            dir.path(),
            &[
                "checkpoints",
                "dump",
                newest.to_str().unwrap(),
                "--operator",
                "running-sum",
                "--format",
                "json",
            ],
        );
        assert!(ok, "{err}");
        let mut dumped: Vec<String> = json(&text)
            .as_array()
            .unwrap()
            .iter()
            .filter(|row| row["state"] == "totals")
            .map(|row| format!("{},{},{}", row["key"], row["value"][0], row["value"][1]))
            .collect();
        dumped.sort();
        assert_eq!(
            dumped,
            crate::reference_jobs::sorted_lines(&out),
            "{backend}"
        );
    }
}

/// Arrow IPC and Parquet dumps read back with the arrow and parquet crates.
#[test]
fn dumps_in_arrow_and_parquet_read_back() {
    use arrow_array::{Array, StringArray, UInt16Array};

    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let mut run = args(&[
        "keyed-sum",
        "--param",
        "events=20000",
        "--param",
        "keys=30",
        "-p",
        "2",
    ]);
    run.extend(["--checkpoint-dir".into(), checkpoints.display().to_string()]);
    run.extend([
        "--output".into(),
        dir.path().join("out").display().to_string(),
    ]);
    run_to_end(&run);
    let newest = checkpoint_dirs(&checkpoints.join("keyed-sum"))
        .pop()
        .unwrap();
    let mut batches = Vec::new();
    for format in ["arrow", "parquet"] {
        let file = dir.path().join(format!("state.{format}"));
        let (ok, _, err) = weir(
            dir.path(),
            &[
                "checkpoints",
                "dump",
                newest.to_str().unwrap(),
                "--operator",
                "running-sum",
                "--format",
                format,
                "--out",
                file.to_str().unwrap(),
            ],
        );
        assert!(ok, "{err}");
        let reader = std::fs::File::open(&file).unwrap();
        let batch = if format == "arrow" {
            let mut reader = arrow_ipc::reader::FileReader::try_new(reader, None).unwrap();
            reader.next().unwrap().unwrap()
        } else {
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(reader)
                    .unwrap();
            builder.build().unwrap().next().unwrap().unwrap()
        };
        batches.push(batch);
    }
    assert_eq!(batches[0], batches[1]);
    let batch = &batches[0];
    assert_eq!(batch.num_rows(), 30);
    let states = batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert!((0..states.len()).all(|i| states.value(i) == "totals"));
    let key_groups = batch
        .column(1)
        .as_any()
        .downcast_ref::<UInt16Array>()
        .unwrap();
    assert!(key_groups.values().iter().all(|g| *g < 128));
    let values = batch
        .column(3)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let counts: u64 = (0..values.len())
        .map(|i| json(values.value(i))[0].as_u64().unwrap())
        .sum();
    assert_eq!(counts, 20_000);
}

#[test]
fn diff_reports_keys_added_removed_and_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoints, _) = checkpointed_run(dir.path(), "10");
    let all = checkpoint_dirs(&checkpoints.join("keyed-sum"));
    let (first, last) = (all.first().unwrap(), all.last().unwrap());
    let (ok, out, err) = weir(
        dir.path(),
        &[
            "checkpoints",
            "diff",
            first.to_str().unwrap(),
            last.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let diff = json(&out);
    let state = |name: &str| {
        diff["states"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["state"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {diff}"))
    };
    let totals = state("totals");
    assert_eq!(totals["entries_b"], 50);
    assert_eq!(totals["removed"], 0);
    assert!(totals["changed"].as_u64().unwrap() > 0, "{totals}");
    assert_eq!(
        totals["added"].as_u64().unwrap() + totals["entries_a"].as_u64().unwrap(),
        50
    );
    // The final checkpoint is taken after every timer fired.
    let timers = state("_timers");
    assert_eq!(timers["entries_b"], 0);
    assert_eq!(timers["removed"], timers["entries_a"]);
    assert_eq!(diff["sizes"][0]["operator"], "running-sum");
}
