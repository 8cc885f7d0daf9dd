//! A coordinator and worker processes for benchmarks.

// Each benchmark compiles this module and uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use weir::client::Client;
use weir::coordinator::JobStatus;
use weir::protocol::cluster::{JobSpec, RunSettings};
use weir::protocol::SubmitRequest;

/// A coordinator and workers as separate processes, killed on drop.
pub struct ProcessCluster {
    api: String,
    data_dir: std::path::PathBuf,
    children: Vec<Child>,
}

impl ProcessCluster {
    pub fn start(data_dir: &Path, workers: usize, slots: u32) -> Self {
        let weir = env!("CARGO_BIN_EXE_weir");
        let mut coordinator = Command::new(weir)
            .env("WEIR_DATA_DIR", data_dir)
            .args(["coordinator", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the coordinator starts");
        let mut first = String::new();
        BufReader::new(coordinator.stdout.take().expect("piped"))
            .read_line(&mut first)
            .expect("the coordinator prints its address");
        let api = first
            .split_whitespace()
            .nth(4)
            .expect("an address")
            .to_owned();
        let mut cluster = Self {
            api,
            data_dir: data_dir.to_owned(),
            children: vec![coordinator],
        };
        for _ in 0..workers {
            cluster.spawn_worker(slots);
        }
        cluster.wait_for_workers(workers);
        cluster
    }

    fn spawn_worker(&mut self, slots: u32) {
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .env("WEIR_DATA_DIR", &self.data_dir)
            .args([
                "worker",
                "--coordinator",
                &self.api,
                "--slots",
                &slots.to_string(),
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("a worker starts");
        self.children.push(child);
    }

    fn wait_for_workers(&self, workers: usize) {
        let client = self.client();
        while client.cluster().map_or(true, |c| c.workers.len() < workers) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts one more worker with `slots` and waits until it registered.
    pub fn add_worker(&mut self, slots: u32) {
        let registered = self.client().cluster().map_or(0, |c| c.workers.len());
        self.spawn_worker(slots);
        self.wait_for_workers(registered + 1);
    }

    /// Scrapes the coordinator's and every worker's `/metrics` every
    /// `period` (as Prometheus would, much more often) until the returned
    /// guard drops; counts the scrapes.
    pub fn scrape_every(&self, period: Duration) -> Scraper {
        let client = self.client();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::spawn(move || {
            let mut scrapes = 0u64;
            let workers: Vec<String> = client
                .cluster()
                .expect("cluster info")
                .workers
                .into_iter()
                .filter_map(|w| w.metrics_addr)
                .collect();
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(period)
            {
                client.metrics().expect("the coordinator's metrics");
                for worker in &workers {
                    client.worker_metrics(worker).expect("a worker's metrics");
                }
                scrapes += 1;
            }
            scrapes
        });
        Scraper {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A client of the coordinator.
    pub fn client(&self) -> Client {
        Client::new(&self.api, None).expect("a client")
    }

    /// The pid of the worker process registered as `worker`.
    pub fn pid_of(&self, worker: weir::protocol::WorkerId) -> u32 {
        let workers = self.client().cluster().expect("cluster info").workers;
        let name = &workers
            .iter()
            .find(|w| w.id == worker)
            .expect("a live worker")
            .name;
        name.trim_start_matches("worker-")
            .parse()
            .expect("worker-PID")
    }

    /// SIGKILLs the worker process `pid`.
    pub fn kill(&mut self, pid: u32) {
        if let Some(child) = self.children.iter_mut().find(|c| c.id() == pid) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Submits a job and waits for it to finish.
    pub fn run(&self, request: &SubmitRequest) -> JobStatus {
        let client = Client::new(&self.api, None).expect("a client");
        let id = client.submit(request).expect("W1 is accepted").job_id;
        loop {
            // The coordinator answers when the job ends (or after a
            // minute): no polling beside the job being measured.
            let status = client
                .job_when_ended(&id, Duration::from_secs(60))
                .expect("status");
            if status.state.is_terminal() {
                assert_eq!(
                    status.state,
                    weir::protocol::JobState::Finished,
                    "{status:?}"
                );
                return status;
            }
        }
    }
}

/// Scrapes a cluster's metrics while it lives ([`ProcessCluster::scrape_every`]).
pub struct Scraper {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Scraper {
    /// Stops scraping; how many rounds of scrapes there were.
    pub fn finish(mut self) -> u64 {
        self.stop.take();
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("the scraper"))
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A submission of keyed-sum with `params`, its records dropped at the sink.
pub fn keyed_sum(
    params: &[(&str, String)],
    parallelism: u32,
    settings: RunSettings,
) -> SubmitRequest {
    let mut params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    params.push(("sink".into(), "discard".into()));
    SubmitRequest {
        spec: JobSpec {
            job: "keyed-sum".into(),
            params,
            parallelism,
            max_parallelism: 128,
            output: None,
        },
        settings,
    }
}
