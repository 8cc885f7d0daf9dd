//! A real etcd for tests: Debian's `etcd` (package `etcd-server`) on
//! 127.0.0.1 with free ports and a temporary data directory, killed when
//! dropped.
//!
//! `.ci/run` installs it. Without it, tests that need etcd are skipped with
//! a message, except under CI (`CI` set), where its absence is a failure.

// Each support module brings its own copy (they are included by path
// into several test crates).
#[allow(clippy::duplicate_mod)]
#[path = "service.rs"]
mod service;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running etcd.
pub struct Etcd {
    child: Option<Child>,
    args: Vec<String>,
    /// `HOST:PORT` of its client endpoint.
    pub endpoint: String,
    _data: tempfile::TempDir,
}

fn free_port(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// Starts etcd on 127.0.0.1, or returns `None` (after saying why) when
    /// it is not installed outside CI.
    pub fn start() -> Option<Self> {
        Self::start_on("127.0.0.1")
    }

    /// Starts etcd serving clients on `host` (and 127.0.0.1 for peers).
    pub fn start_on(host: &str) -> Option<Self> {
        if !service::installed("etcd", "apt-get install etcd-server") {
            return None;
        }
        let data = tempfile::tempdir().unwrap();
        let client = free_port(host);
        let peer = free_port("127.0.0.1");
        let client_url = format!("http://{host}:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let args: Vec<String> = [
            "--name",
            "weir-test",
            "--data-dir",
            &data.path().display().to_string(),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("weir-test={peer_url}"),
            "--log-level",
            "error",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut etcd = Self {
            child: None,
            args,
            endpoint: format!("{host}:{client}"),
            _data: data,
        };
        etcd.spawn();
        Some(etcd)
    }

    fn spawn(&mut self) {
        self.child = Some(
            Command::new("etcd")
                .args(&self.args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("etcd starts"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.healthy() {
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs etcd (its data stays).
    #[allow(dead_code)]
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same data and ports.
    #[allow(dead_code)]
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// `--ha` for coordinators of this etcd.
    #[allow(dead_code)]
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoint)
    }

    /// Whether it answers its health endpoint.
    fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = TcpStream::connect(&self.endpoint) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.endpoint
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.contains("\"health\":\"true\"")
    }

    /// Runs `etcdctl` against this etcd; its standard output.
    #[allow(dead_code)]
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let output = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=http://{}", self.endpoint))
            .args(args)
            .output()
            .expect("etcdctl runs");
        assert!(
            output.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
