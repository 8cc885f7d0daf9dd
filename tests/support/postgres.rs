//! A real PostgreSQL server for tests: a fresh cluster `initdb`ed into a
//! temporary directory (as the `postgres` user when the tests run as root,
//! since PostgreSQL refuses to run as root), on 127.0.0.1 with a port
//! picked at run time, `trust` authentication for user `weir`; stopped
//! and removed when dropped.
//!
//! `.ci/run` installs Debian's `postgresql`. Without it, tests that need a
//! server are skipped with a message, except under CI (`CI` set).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running server.
pub struct Postgres {
    child: Option<Child>,
    /// `postgresql://weir@127.0.0.1:{port}/weir`.
    pub url: String,
    _dir: tempfile::TempDir,
}

/// The directory of `initdb` and `postgres` (Debian keeps them out of PATH).
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    /// Starts a server, or returns `None` (after saying why) when
    /// PostgreSQL is not installed outside CI.
    pub fn start() -> Option<Self> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL is not installed; .ci/run installs it (apt-get install postgresql)"
            );
            eprintln!("skipping: PostgreSQL is not installed (apt-get install postgresql)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let as_root = running_as_root();
        let command = |program: &str| {
            let path = bin.join(program);
            if as_root {
                // setpriv execs the server itself (no parent in between),
                // so that the child this test holds is the server.
                let mut command = Command::new("setpriv");
                command
                    .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                    .arg(path);
                command
            } else {
                Command::new(path)
            }
        };
        if as_root {
            // The server's own user must reach and own its directory.
            let status = Command::new("chmod")
                .arg("755")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status()
                .unwrap();
            assert!(status.success(), "chown of the data directory");
        }
        let initdb = command("initdb")
            .args(["--auth=trust", "--username=weir", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("initdb runs");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = TcpListener::bind(("127.0.0.1", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = command("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", data.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("postgres starts");
        let stderr = child.stderr.take().expect("piped");
        let (ready, up) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ready to accept connections") {
                    let _ = ready.send(Ok(()));
                }
                seen.push(line);
            }
            let _ = ready.send(Err(seen.join("\n")));
        });
        match up.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(output)) => panic!("postgres exited before it was ready:\n{output}"),
            Err(_) => {
                let _ = child.kill();
                panic!("postgres was not ready within 60 s");
            }
        }
        let mut server = Self {
            child: Some(child),
            url: format!("postgresql://weir@127.0.0.1:{port}/postgres"),
            _dir: dir,
        };
        server.psql("CREATE DATABASE weir");
        server.url = format!("postgresql://weir@127.0.0.1:{port}/weir");
        Some(server)
    }

    /// Runs SQL with `psql` against the server's database; its output
    /// (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url,
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fast shutdown: the server ends its backends before it exits.
            let stopped = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if !stopped {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}
