//! Checkpoints on a real S3-compatible server (s3s-fs on 127.0.0.1).

use crate::recovery::{assert_same, clean_run, restartable_run, wait_for_a_checkpoint, Running};
use crate::reference_jobs::weir_command;

#[path = "../support/s3.rs"]
pub mod s3_server;

#[test]
fn checkpoints_on_s3_survive_kill_9_and_restore_exactly_once() {
    let Some(server) = s3_server::S3Server::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let clean = clean_run(dir.path(), "2");
    let out = dir.path().join("out");
    let list = restartable_run(&out, &format!("s3://{}/checkpoints", s3_server::BUCKET));
    let env = server.env();

    let running = Running::start(dir.path(), &list, &env);
    wait_for_a_checkpoint(&server.root().join(s3_server::BUCKET));
    running.kill_9();

    let output = weir_command(dir.path())
        .envs(env.iter().cloned())
        .arg("run")
        .args(&list)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_same(&out, &clean);
    let committed = std::fs::read_dir(
        server
            .root()
            .join(s3_server::BUCKET)
            .join("checkpoints/keyed-sum"),
    )
    .unwrap()
    .count();
    assert!(committed >= 1, "checkpoints are in the bucket");
}

#[test]
fn s3_checkpoint_dirs_with_bad_credentials_are_clear_errors() {
    let Some(server) = s3_server::S3Server::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut env = server.env();
    for (key, value) in &mut env {
        if key == "AWS_SECRET_ACCESS_KEY" {
            *value = "wrong".into();
        }
    }
    let output = weir_command(dir.path())
        .envs(env)
        .args([
            "run",
            "keyed-sum",
            "--param",
            "events=1000",
            "--checkpoint-dir",
        ])
        .arg(format!("s3://{}/x", s3_server::BUCKET))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.starts_with("error: ") && stderr.contains("listing keyed-sum"),
        "{stderr}"
    );
}
