//! Savepoints: stop a running job with one, restore it into a changed
//! version of the job at another parallelism, from a copy of the savepoint
//! alone; and the clear errors of restoring state that does not fit.

use crate::harness::{clean_run_of, long_job, text, TestCluster};
use crate::recovery::assert_same;
use crate::reference_jobs::{sorted_lines, weir_command};
use std::path::{Path, PathBuf};
use weir::embedded::{EmbeddedCluster, EmbeddedError};
use weir::job::{JobContext, JobDefinition, JobError, JobRegistry, ParamKind, ParamSpec};
use weir::operators::Dataflow;
use weir::prelude::*;
use weir::protocol::cluster::{BackendKind, JobSpec, RestoreFrom, RunSettings};
use weir::protocol::{CheckpointManifest, JobState, SubmitRequest};
use weir::testing::complete_checkpoints;

/// Copies directory `from` (recursively) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Submits [`long_job`] at parallelism `p` (200 ms checkpoints, output
/// into `out`) as `job_id`, with `extra` flags, and waits for `checkpoints`
/// completed checkpoints.
fn submit_long_job(
    cluster: &TestCluster,
    p: &str,
    job_id: &str,
    out: &Path,
    extra: &[&str],
    checkpoints: u32,
) {
    let out_arg = out.display().to_string();
    let mut submit = vec!["submit"];
    submit.extend(long_job());
    submit.extend([
        "-p",
        p,
        "--checkpoint-interval",
        "200ms",
        "--job-id",
        job_id,
    ]);
    submit.extend(["--output", &out_arg]);
    submit.extend(extra);
    let output = cluster.weir(&submit);
    assert!(output.status.success(), "{}", text(&output.stderr));
    cluster.wait_for(job_id, "checkpoints", |s| {
        s.checkpoints_completed >= checkpoints
    });
}

/// A local savepoint's directory from its `file://` location.
fn local(location: &str) -> PathBuf {
    PathBuf::from(location.strip_prefix("file://").unwrap_or(location))
}

/// The upgrade users rely on: keyed-sum (emitting every update) is stopped
/// with a savepoint at parallelism 2, the savepoint is copied elsewhere and
/// the job's checkpoints deleted, and its second version (one operator
/// more) resumes from the copy at parallelism 3. Together the two runs
/// wrote the updates of one uninterrupted run: every (key, count) once and
/// the same totals.
#[test]
fn a_stopped_job_resumes_from_a_copied_savepoint_into_a_changed_job_at_another_parallelism() {
    upgrade_through_a_savepoint("memory");
}

/// The same with RocksDB, whose incremental checkpoints share files
/// between checkpoints: the savepoint holds its own copies.
#[test]
fn a_rocksdb_savepoint_holds_its_own_copies_of_shared_files() {
    upgrade_through_a_savepoint("rocksdb");
}

fn upgrade_through_a_savepoint(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let job = long_job();
    let clean = clean_run_of(dir.path(), "clean", &job);
    let cluster = TestCluster::start(dir.path(), 2, 3, &[]);
    let out = dir.path().join("out");
    let out_arg = out.display().to_string();

    submit_long_job(
        &cluster,
        "2",
        "ks-v1",
        &out,
        &["--state-backend", backend],
        2,
    );

    let output = cluster.weir(&["jobs", "savepoint", "ks-v1", "--stop"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let location = text(&output.stdout).trim().to_owned();
    let status = cluster.client().job("ks-v1").unwrap();
    assert_eq!(status.state, JobState::Finished, "{status:?}");
    assert_eq!(status.last_savepoint.as_deref(), Some(location.as_str()));
    let stopped_at = status.events_in;
    assert!(stopped_at < 1_000_000, "stopped before the end: {status:?}");
    let first = sorted_lines(&out);
    assert!(
        !first.is_empty() && first.len() < 1_000_000,
        "{}",
        first.len()
    );

    // Self-contained: every file it references is under its directory,
    // also those its checkpoint shared with others.
    let savepoint = local(&location);
    let name = savepoint.file_name().unwrap().to_str().unwrap().to_owned();
    let original: CheckpointManifest = serde_json::from_slice(
        &std::fs::read(
            cluster
                .data_dir
                .join("checkpoints/ks-v1")
                .join(&name)
                .join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let shared = original
        .files()
        .filter(|f| f.path.starts_with("shared/"))
        .count();
    assert_eq!(
        shared > 0,
        backend == "rocksdb",
        "{backend}: {shared} shared files"
    );
    let manifest: CheckpointManifest =
        serde_json::from_slice(&std::fs::read(savepoint.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest.savepoint);
    for file in manifest.files() {
        assert!(file.path.starts_with(&format!("{name}/")), "{}", file.path);
    }
    let checkpoints = |args: &[&str]| {
        let output = weir_command(dir.path())
            .arg("checkpoints")
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        output
    };
    checkpoints(&["verify", &location]);
    let listing = checkpoints(&[
        "list",
        savepoint.parent().unwrap().to_str().unwrap(),
        "--json",
    ]);
    assert!(
        text(&listing.stdout).contains("\"savepoint\": true"),
        "{}",
        text(&listing.stdout)
    );

    // Alone: a copy elsewhere, the job's checkpoints and the original gone.
    let copy = dir.path().join("kept/anything").join(&name);
    copy_dir(&savepoint, &copy);
    std::fs::remove_dir_all(cluster.data_dir.join("checkpoints/ks-v1")).unwrap();
    std::fs::remove_dir_all(&savepoint).unwrap();

    let copy_arg = copy.display().to_string();
    let mut submit = vec!["submit"];
    submit.extend(&job);
    submit.extend([
        "--param",
        "validate=on",
        "-p",
        "3",
        "--checkpoint-interval",
        "200ms",
    ]);
    submit.extend([
        "--job-id",
        "ks-v2",
        "--restore",
        &copy_arg,
        "--output",
        &out_arg,
    ]);
    submit.extend(["--state-backend", backend]);
    let id = cluster.submit_and_wait(&submit[1..]);
    let status = cluster.client().job(&id).unwrap();
    assert_eq!(status.restored_from, Some(manifest.epoch.0), "{status:?}");
    assert_eq!(status.running_parallelism, 3);
    assert_same(&out, &clean);
}

/// A savepoint without `--stop` leaves the job running; a stop whose
/// savepoint cannot be written does not stop it either: the job resumes
/// from its last checkpoint and its output is that of a clean run.
#[test]
fn a_failed_stop_resumes_the_job_and_a_plain_savepoint_leaves_it_running() {
    let dir = tempfile::tempdir().unwrap();
    let job = long_job();
    let clean = clean_run_of(dir.path(), "clean", &job);
    let cluster = TestCluster::start(dir.path(), 1, 2, &[]);
    let out = dir.path().join("out");
    submit_long_job(&cluster, "2", "ks", &out, &[], 1);

    let output = cluster.weir(&["jobs", "savepoint", "ks"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let location = text(&output.stdout).trim().to_owned();
    assert!(local(&location).join("COMMITTED").exists(), "{location}");
    let status = cluster.client().job("ks").unwrap();
    assert!(!status.state.is_terminal(), "still running: {status:?}");

    // `{dir}/ks` is a file: the copy fails after the sources stopped.
    let blocked = dir.path().join("blocked");
    std::fs::create_dir_all(&blocked).unwrap();
    std::fs::write(blocked.join("ks"), "not a directory").unwrap();
    let blocked_arg = blocked.display().to_string();
    let output = cluster.weir(&["jobs", "savepoint", "ks", "--stop", "--dir", &blocked_arg]);
    assert!(
        !output.status.success(),
        "the savepoint could not be written"
    );
    assert!(
        text(&output.stderr).contains("writing the savepoint"),
        "{}",
        text(&output.stderr)
    );
    let status = cluster.wait_finished("ks");
    assert!(
        status.restarts >= 1,
        "resumed from its checkpoint: {status:?}"
    );
    assert!(status.last_savepoint.as_deref() == Some(location.as_str()));
    assert_same(&out, &clean);
}

/// The coordinator crashes during a stop-with-savepoint and starts again:
/// with the stop in flight (its barrier sent) the job resumes from its
/// latest checkpoint; with the stop recorded (savepoint written, no sink
/// told to commit) the job stays stopped, its workers' part is cancelled,
/// and restoring the savepoint commits what its sinks had pending. Either
/// way the output is that of one clean run.
#[test]
fn a_coordinator_crash_during_a_stop_resumes_the_job_or_keeps_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let clean = clean_run_of(dir.path(), "clean", &long_job());
    for point in ["after-stop-trigger", "after-stop-recorded"] {
        let run = dir.path().join(point);
        std::fs::create_dir_all(&run).unwrap();
        let mut cluster = TestCluster::empty(&run, &[]);
        cluster.add_coordinator(&[], &[(weir::coordinator::crash::VARIABLE, point)], &[]);
        cluster.wait_for_leader();
        cluster.add_worker(3);
        cluster.add_worker(3);
        cluster.wait_for_workers(2);
        let out = run.join("out");
        submit_long_job(&cluster, "2", "ks", &out, &[], 2);
        let output = cluster.weir(&["jobs", "savepoint", "ks", "--stop"]);
        assert!(!output.status.success(), "{point}: the coordinator crashed");
        cluster.wait_for_exit(0, &format!("the crash hook {point}"));
        cluster.restart_coordinator(0);
        let status = cluster.wait_for("ks", "its end", |s| s.state.is_terminal());
        assert_eq!(status.state, JobState::Finished, "{point}: {status:?}");
        if point == "after-stop-recorded" {
            let location = status.last_savepoint.clone().expect("the stop's savepoint");
            assert!(sorted_lines(&out).len() < 1_000_000);
            // Ended at once; its workers come back and their part of it is
            // cancelled.
            cluster.wait_for_workers(2);
            let mut submit = vec!["submit"];
            submit.extend(long_job());
            submit.extend(["-p", "2", "--job-id", "ks-resumed", "--restore", &location]);
            let out_arg = out.display().to_string();
            submit.extend(["--output", &out_arg]);
            cluster.submit_and_wait(&submit[1..]);
        }
        assert_same(&out, &clean);
    }
}

/// Saved state with no operator to go to is refused, naming the operator,
/// unless it may be dropped; so is a changed number of key groups.
#[test]
fn state_that_does_not_fit_the_job_is_refused_with_the_operator_named() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(dir.path(), 1, 2, &[]);
    let id = cluster.submit_and_wait(&[
        "keyed-sum",
        "--param",
        "events=20000",
        "--checkpoint-interval",
        "50ms",
    ]);
    let job_dir = cluster.data_dir.join("checkpoints").join(&id);
    let newest = complete_checkpoints(&job_dir)
        .unwrap()
        .pop()
        .expect("a complete checkpoint");
    let checkpoint = newest.display().to_string();
    let refused = |args: &[&str], expected: &str| {
        let output = cluster.weir(args);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    // Nexmark q5 has no operator with uid 'events'.
    refused(
        &["submit", "nexmark-q5", "--restore", &checkpoint],
        "holds state of operator 'events' (uid 'events'), which the job does not have",
    );
    refused(
        &["submit", "nexmark-q5", "--restore", &checkpoint],
        "--allow-non-restored-state",
    );
    refused(
        &[
            "submit",
            "keyed-sum",
            "--max-parallelism",
            "64",
            "--restore",
            &checkpoint,
        ],
        "key groups",
    );
    let output = cluster.weir(&[
        "submit",
        "nexmark-q5",
        "--param",
        "events=1000",
        "--restore",
        &checkpoint,
        "--allow-non-restored-state",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let warnings = text(&output.stderr);
    assert!(
        warnings.contains("warning: the state of operator 'events' (uid 'events') is dropped"),
        "{warnings}"
    );
    let id = text(&output.stdout).trim().to_owned();
    cluster.wait_finished(&id);
}

/// Counts events per key in a value state of type `V` (v1: `u64`, v2:
/// `bool`, which cannot read what v1 saved).
#[derive(Debug, Clone)]
struct Counter<V> {
    count: Option<ValueState<u64, V>>,
    next: fn(Option<V>) -> V,
}

impl<V: weir::state::StateValue> KeyedProcessFunction for Counter<V> {
    type Key = u64;
    type In = GeneratedEvent;
    type Out = u64;

    fn open(&mut self, state: &mut StateRegistry<'_, u64>) -> Result<(), OperatorError> {
        self.count = Some(state.value("count")?);
        Ok(())
    }

    fn process(
        &mut self,
        _event: GeneratedEvent,
        ctx: &mut KeyedContext<'_, u64, u64>,
    ) -> Result<(), OperatorError> {
        let count = self.count.expect("opened");
        let next = self.next;
        count.update(ctx, |old| Some(next(old)))?;
        Ok(())
    }
}

fn build_counter<V: weir::state::StateValue>(
    ctx: &JobContext,
    next: fn(Option<V>) -> V,
) -> Result<Dataflow, JobError> {
    let job = ctx.builder();
    job.source(Generator::new(ctx.params.uint("events"), 50, 3).with_rate(20_000))
        .uid("events")
        .key_by(|e| e.key)
        .process(Counter { count: None, next })
        .uid("counter")
        .discard()
        .uid("sink");
    ctx.finish(job)
}

const EVENTS: &[ParamSpec] = &[ParamSpec {
    name: "events",
    kind: ParamKind::UInt,
    default: Some("20000"),
    help: "events",
}];

const COUNTER_V1: JobDefinition = JobDefinition {
    name: "counter-v1",
    description: "counts per key in a u64",
    params: EVENTS,
    build: |ctx| build_counter::<u64>(ctx, |old| old.unwrap_or(200) + 1),
};

const COUNTER_V2: JobDefinition = JobDefinition {
    name: "counter-v2",
    description: "the same state name, now a bool",
    params: EVENTS,
    build: |ctx| build_counter::<bool>(ctx, |old| !old.unwrap_or(false)),
};

fn request(job: &str, job_id: &str, backend: BackendKind, restore: RestoreFrom) -> SubmitRequest {
    SubmitRequest {
        spec: JobSpec {
            job: job.into(),
            params: Vec::new(),
            parallelism: 2,
            max_parallelism: 128,
            output: None,
        },
        settings: RunSettings {
            job_id: Some(job_id.into()),
            checkpoint_interval_ms: 50,
            restore,
            state_backend: backend,
            retain: 1000,
            max_restarts: 0,
            ..RunSettings::default()
        },
    }
}

/// A state whose declared type no longer reads what was saved fails the
/// job with the operator, the state and the key group named, not a panic.
#[test]
fn a_state_whose_type_changed_fails_naming_operator_state_and_key_group() {
    // Heap state is decoded as it is restored; RocksDB's as keys are read.
    for backend in [BackendKind::Memory, BackendKind::Rocksdb] {
        type_change_fails_the_job(backend);
    }
}

fn type_change_fails_the_job(backend: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = JobRegistry::new();
    registry.register(COUNTER_V1);
    registry.register(COUNTER_V2);
    let root = dir.path().join("checkpoints");
    let cluster = EmbeddedCluster::start(registry, root.display().to_string(), 2).unwrap();
    cluster
        .run(request(
            "counter-v1",
            "counter",
            backend,
            RestoreFrom::Nothing,
        ))
        .unwrap();
    // An early checkpoint: input remains, so RocksDB reads the keys.
    let checkpoint = complete_checkpoints(&root.join("counter"))
        .unwrap()
        .remove(0);
    let error = cluster
        .run(request(
            "counter-v2",
            "counter-3",
            backend,
            RestoreFrom::Checkpoint(checkpoint.display().to_string()),
        ))
        .unwrap_err();
    let EmbeddedError::Ended { state, cause, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(*state, JobState::Failed);
    let cause = cause.clone().unwrap_or_default();
    for part in [
        "operator 'process'",
        "state 'count'",
        "of key group",
        "does not read what was saved",
    ] {
        assert!(
            cause.contains(part),
            "{backend:?}: {part} missing from: {cause}"
        );
    }
    cluster.stop();
}
