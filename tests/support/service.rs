//! Whether a server a test needs is installed: `.ci/run` installs them all,
//! so under CI (`CI` set) a missing one is a failure; elsewhere the test is
//! skipped with a message saying how to install it.

use std::process::{Command, Stdio};

/// Whether `binary --version` runs; `install` says how to get it.
pub fn installed(binary: &str, install: &str) -> bool {
    let found = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{binary} is not installed; .ci/run installs it ({install})"
        );
        eprintln!("skipping: {binary} is not installed ({install})");
    }
    found
}
