//! A real S3-compatible server for tests: `s3s-fs` on 127.0.0.1 with a
//! free port and a temporary root, stopped when dropped.
//!
//! `.ci/run` installs it (`cargo install s3s-fs@0.14.1 --features binary
//! --locked`). Without it, tests that need S3 are skipped with a message,
//! except under CI (`CI` set), where its absence is a failure.

// Each support module brings its own copy (they are included by path
// into several test crates).
#[allow(clippy::duplicate_mod)]
#[path = "service.rs"]
mod service;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Credentials the test server checks signatures against.
pub const ACCESS_KEY: &str = "weir-test-access";
/// The matching secret.
pub const SECRET_KEY: &str = "weir-test-secret";
/// The bucket the server starts with.
pub const BUCKET: &str = "weir-test";

/// A running `s3s-fs`.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    root: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server, or returns `None` (after saying why) when `s3s-fs`
    /// is not installed outside CI.
    pub fn start() -> Option<Self> {
        if !service::installed(
            "s3s-fs",
            "cargo install s3s-fs@0.14.1 --features binary --locked",
        ) {
            return None;
        }
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        let server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    /// The directory holding the server's buckets.
    #[allow(dead_code)]
    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }

    /// The settings of a client of this server, as `object_store` keys.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", self.endpoint.clone()),
            ("aws_region", "us-east-1".into()),
            ("aws_access_key_id", ACCESS_KEY.into()),
            ("aws_secret_access_key", SECRET_KEY.into()),
            ("aws_allow_http", "true".into()),
        ]
    }

    /// The same settings as the AWS environment variables a process reads.
    #[allow(dead_code)]
    pub fn env(&self) -> Vec<(String, String)> {
        self.options()
            .into_iter()
            .map(|(k, v)| (k.to_uppercase(), v))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
