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
    child: Option<Child>,
    /// While the server is down: what holds its port (see [`PortHolder`]).
    holder: Option<PortHolder>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    port: u16,
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
        let mut server = Self {
            child: None,
            holder: None,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            root,
        };
        server.restart();
        Some(server)
    }

    /// SIGKILLs the server: the outage begins. Its port stays held (every
    /// connection is closed at once), so that no other test's process
    /// takes it before [`restart`](Self::restart).
    #[allow(dead_code)]
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.holder = Some(PortHolder::hold(self.port));
        }
    }

    /// Starts the server (again) on its port and data, and waits until it
    /// listens.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.holder.take();
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers_http(self.port) {
            let child = self.child.as_mut().expect("just started");
            assert!(
                child.try_wait().unwrap().is_none(),
                "s3s-fs exited: another process took port {}",
                self.port
            );
            assert!(Instant::now() < deadline, "s3s-fs did not start answering");
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// Whether an HTTP server answers on `port` (a held port closes at once).
fn answers_http(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answer = [0u8; 5];
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .and_then(|()| stream.read_exact(&mut answer))
        .is_ok_and(|()| &answer == b"HTTP/")
}

/// Holds a port while its server is down: a listener that closes every
/// connection it accepts, so clients fail at once as they would against a
/// dead server, and the port stays reserved.
struct PortHolder {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PortHolder {
    fn hold(port: u16) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, is_bound) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                // The killed server's connections linger in TIME_WAIT.
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.set_reuseaddr(true).unwrap();
                socket
                    .bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
                    .unwrap();
                let listener = socket.listen(64).unwrap();
                bound.send(()).unwrap();
                tokio::pin!(stopped);
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => drop(accepted),
                    }
                }
            });
        });
        is_bound.recv().expect("the port holder binds the port");
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for PortHolder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.holder.take();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
