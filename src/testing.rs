//! A cluster of real processes for a job crate's own tests: one
//! coordinator and some workers of a binary that calls [`crate::cli::main`]
//! (in a test of that crate, `env!("CARGO_BIN_EXE_<name>")`), on
//! 127.0.0.1 with ports picked at run time. Every process is killed when
//! the [`ProcessCluster`] is dropped, whether the test passed or not.
//!
//! ```no_run
//! use std::time::Duration;
//! use weir::testing::ProcessCluster;
//!
//! let dir = std::env::temp_dir().join("my-job-test");
//! let mut cluster = ProcessCluster::start("target/debug/my-job", &dir, 2, 1)?;
//! let job = cluster.submit(&["my-job", "-p", "2", "--output", "/tmp/out"])?;
//! cluster.wait_for_checkpoint(&job, 1, Duration::from_secs(60))?;
//! cluster.kill_worker(0);
//! cluster.add_worker(1)?;
//! let status = cluster.wait_for_end(&job, Duration::from_secs(120))?;
//! assert_eq!(status.state, weir::protocol::JobState::Finished);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::client::Client;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weir_coordinator::JobStatus;

/// Why a test cluster could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum TestClusterError {
    /// A process could not be started.
    #[error("starting {what} ({binary})")]
    Spawn {
        /// Which process.
        what: &'static str,
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The coordinator did not announce its address.
    #[error("the coordinator did not start: {output}")]
    CoordinatorStart {
        /// What it printed instead.
        output: String,
    },
    /// A command of the binary failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its standard error.
        stderr: String,
    },
    /// The coordinator could not be asked.
    #[error("asking the coordinator")]
    Client(#[from] crate::client::ClientError),
    /// Waiting took too long.
    #[error("gave up after {waited:?} waiting for {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        waited: Duration,
    },
}

/// A coordinator and its workers, processes of one binary; all killed on drop.
pub struct ProcessCluster {
    binary: PathBuf,
    /// One client for every poll (each builds a runtime of its own).
    client: Client,
    data_dir: PathBuf,
    coordinator: Child,
    api: String,
    workers: Vec<Option<Child>>,
}

impl ProcessCluster {
    /// Starts `binary coordinator` (checkpoints and logs under `data_dir`)
    /// and `workers` workers of `slots` slots each, and waits until every
    /// worker registered.
    pub fn start(
        binary: impl AsRef<Path>,
        data_dir: &Path,
        workers: usize,
        slots: u32,
    ) -> Result<Self, TestClusterError> {
        let binary = binary.as_ref().to_owned();
        std::fs::create_dir_all(data_dir).map_err(|source| TestClusterError::Spawn {
            what: "the data directory",
            binary: data_dir.to_owned(),
            source,
        })?;
        let log = log_file(data_dir, "coordinator.log", &binary)?;
        let mut coordinator = Command::new(&binary)
            .args(["coordinator", "--listen", "127.0.0.1:0"])
            .args(["--worker-listen", "127.0.0.1:0"])
            .arg("--checkpoint-dir")
            .arg(data_dir.join("checkpoints"))
            .env("WEIR_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|source| TestClusterError::Spawn {
                what: "the coordinator",
                binary: binary.clone(),
                source,
            })?;
        // "weir coordinator listening on ADDR (workers: ADDR, …)"
        let mut first = String::new();
        if let Some(stdout) = coordinator.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut first);
        }
        let Some(api) = first
            .strip_prefix("weir coordinator listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
        else {
            let _ = coordinator.kill();
            let _ = coordinator.wait();
            let log = std::fs::read_to_string(data_dir.join("coordinator.log")).unwrap_or_default();
            return Err(TestClusterError::CoordinatorStart {
                output: format!("{first}{log}"),
            });
        };
        let client = Client::new(&api, None).map_err(|source| TestClusterError::Spawn {
            what: "a client",
            binary: binary.clone(),
            source,
        })?;
        let mut cluster = Self {
            client,
            binary,
            data_dir: data_dir.to_owned(),
            coordinator,
            api,
            workers: Vec::new(),
        };
        for _ in 0..workers {
            cluster.add_worker(slots)?;
        }
        Ok(cluster)
    }

    /// The coordinator's API address (what `--coordinator` takes).
    pub fn api(&self) -> &str {
        &self.api
    }

    /// A client of the coordinator's REST API.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Starts one more worker of `slots` slots and waits until it registered.
    pub fn add_worker(&mut self, slots: u32) -> Result<usize, TestClusterError> {
        let index = self.workers.len();
        let log = log_file(&self.data_dir, &format!("worker-{index}.log"), &self.binary)?;
        let child = Command::new(&self.binary)
            .args(["worker", "--coordinator", &self.api, "--slots"])
            .arg(slots.to_string())
            .env("WEIR_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| TestClusterError::Spawn {
                what: "a worker",
                binary: self.binary.clone(),
                source,
            })?;
        // Workers are named after their process (a count of workers would
        // also see one just killed and not yet gone).
        let name = format!("worker-{}", child.id());
        self.workers.push(Some(child));
        self.wait(&format!("worker {index} to register"), || {
            Ok(self
                .client
                .cluster()?
                .workers
                .iter()
                .any(|w| w.name == name))
        })?;
        Ok(index)
    }

    /// SIGKILLs worker `index` (a crash, as far as the cluster can tell).
    pub fn kill_worker(&mut self, index: usize) {
        if let Some(mut child) = self.workers.get_mut(index).and_then(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `binary ARGS… --coordinator API` and returns its standard output.
    pub fn command(&self, args: &[&str]) -> Result<String, TestClusterError> {
        let output = Command::new(&self.binary)
            .args(args)
            .args(["--coordinator", &self.api])
            .output()
            .map_err(|source| TestClusterError::Spawn {
                what: "a command",
                binary: self.binary.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(TestClusterError::Command {
                command: args.join(" "),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// `binary submit ARGS…`: submits a job; returns its id.
    pub fn submit(&self, args: &[&str]) -> Result<String, TestClusterError> {
        let mut full = vec!["submit"];
        full.extend_from_slice(args);
        self.command(&full)
    }

    /// The job's status.
    pub fn status(&self, job: &str) -> Result<JobStatus, TestClusterError> {
        Ok(self.client.job(job)?)
    }

    /// Waits until the job has completed at least `count` checkpoints in
    /// its current run.
    pub fn wait_for_checkpoint(
        &self,
        job: &str,
        count: u32,
        timeout: Duration,
    ) -> Result<JobStatus, TestClusterError> {
        self.wait_for(job, &format!("{count} checkpoints"), timeout, |s| {
            s.checkpoints_completed >= count
        })
    }

    /// Waits until the job ended (finished, failed or cancelled).
    pub fn wait_for_end(
        &self,
        job: &str,
        timeout: Duration,
    ) -> Result<JobStatus, TestClusterError> {
        self.wait_for(job, "its end", timeout, |s| s.state.is_terminal())
    }

    /// Waits until the job's status satisfies `done`.
    pub fn wait_for(
        &self,
        job: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&JobStatus) -> bool,
    ) -> Result<JobStatus, TestClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status(job)?;
            if done(&status) {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(TestClusterError::Timeout {
                    what: format!("job {job}: {what} (now {:?})", status.state),
                    waited: timeout,
                });
            }
            // Polling the REST API: a test has no event stream to wait on.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait(
        &self,
        what: &str,
        done: impl Fn() -> Result<bool, TestClusterError>,
    ) -> Result<(), TestClusterError> {
        let timeout = Duration::from_secs(60);
        let deadline = Instant::now() + timeout;
        while !done()? {
            if Instant::now() >= deadline {
                return Err(TestClusterError::Timeout {
                    what: what.to_owned(),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// Every line of the committed output files a file sink (`--output DIR`)
/// wrote into `dir`, sorted; hidden files are its uncommitted ones.
pub fn committed_lines(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())?;
        lines.extend(text.lines().map(str::to_owned));
    }
    lines.sort();
    Ok(lines)
}

/// The complete checkpoints (with a commit marker) in a job's local
/// checkpoint directory `job_dir`, oldest first.
pub fn complete_checkpoints(
    job_dir: &Path,
) -> Result<Vec<PathBuf>, weir_coordinator::CoordinatorError> {
    let catalog = weir_coordinator::CheckpointCatalog::open_job(&job_dir.display().to_string())?;
    Ok(catalog
        .list()?
        .into_iter()
        .filter(|e| e.status == weir_coordinator::CheckpointStatus::Complete)
        .map(|e| job_dir.join(weir_protocol::checkpoint::paths::checkpoint_name(e.epoch)))
        .collect())
}

fn log_file(dir: &Path, name: &str, binary: &Path) -> Result<std::fs::File, TestClusterError> {
    std::fs::File::create(dir.join(name)).map_err(|source| TestClusterError::Spawn {
        what: "a log file",
        binary: binary.to_owned(),
        source,
    })
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for index in 0..self.workers.len() {
            self.kill_worker(index);
        }
        let _ = self.coordinator.kill();
        let _ = self.coordinator.wait();
    }
}
