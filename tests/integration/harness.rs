//! Test clusters of real processes: `weir coordinator` (one standalone, or
//! several over etcd) and `weir worker`s on 127.0.0.1 with ports picked at
//! run time, all killed when the test ends (pass or fail). Coordinators
//! keep their ports across restarts, as a restarted service would, and
//! write their logs to `{data_dir}/coordinator-{i}.log`.

use crate::reference_jobs::{weir_command, weir_run};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use weir::client::Client;
use weir::coordinator::api::LeaderAnswer;
use weir::coordinator::server::StepDown;
use weir::coordinator::JobStatus;
use weir::protocol::WorkerId;

/// Silence after which a test cluster's coordinator and workers give each
/// other up.
pub const TEST_HEARTBEAT_TIMEOUT: &str = "3s";

/// A free port on `host`.
pub fn free_port(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One coordinator process and how to start it again.
pub struct CoordinatorProcess {
    child: Option<Child>,
    /// Its API address.
    pub api: String,
    /// Its worker endpoint.
    pub worker_endpoint: String,
    /// Where its standard error goes.
    pub log: PathBuf,
    /// Its flags (addresses included) and environment.
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Prefix of its command line (`ip netns exec NAME`), if any.
    wrapper: Vec<String>,
}

impl CoordinatorProcess {
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited (crashed, or killed).
    pub fn has_exited(&mut self) -> bool {
        match &mut self.child {
            None => true,
            Some(child) => child.try_wait().ok().flatten().is_some(),
        }
    }
}

/// Coordinators and their workers; every process is killed on drop.
pub struct TestCluster {
    /// Every coordinator's API address, comma-separated (what workers and
    /// clients are given).
    pub api: String,
    /// The first coordinator's worker endpoint.
    pub worker_endpoint: String,
    pub data_dir: PathBuf,
    pub token: Option<String>,
    pub coordinators: Vec<CoordinatorProcess>,
    workers: Vec<Child>,
    /// Environment every worker started from now on gets (for example the
    /// S3 settings of checkpoint storage).
    pub env: Vec<(String, String)>,
}

impl TestCluster {
    /// Starts a standalone coordinator (with `extra` flags) and `workers`
    /// workers of `slots` slots each, and waits until they have all
    /// registered.
    pub fn start(data_dir: &Path, workers: usize, slots: u32, extra: &[&str]) -> Self {
        let mut cluster = Self::empty(data_dir, extra);
        cluster.add_coordinator(extra, &[], &[]);
        cluster.wait_for_leader();
        for _ in 0..workers {
            cluster.add_worker(slots);
        }
        cluster.wait_for_workers(workers);
        cluster
    }

    /// A cluster with no process yet; `extra` is searched for `--token`.
    pub fn empty(data_dir: &Path, extra: &[&str]) -> Self {
        let token = extra
            .iter()
            .position(|a| *a == "--token")
            .map(|i| extra[i + 1].to_owned());
        Self {
            api: String::new(),
            worker_endpoint: String::new(),
            data_dir: data_dir.to_owned(),
            token,
            coordinators: Vec::new(),
            workers: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Starts one more coordinator with `extra` flags and `env`, inside
    /// `wrapper` (e.g. `ip netns exec NAME`) when given; its addresses are
    /// fixed for its life, restarts included.
    pub fn add_coordinator(
        &mut self,
        extra: &[&str],
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> usize {
        // A port picked free can be taken by another test's process before
        // the coordinator binds it: pick again then.
        for _ in 0..3 {
            if let Some(index) = self.try_add_coordinator(extra, env, wrapper) {
                return index;
            }
        }
        panic!("coordinator did not start: its ports were taken three times");
    }

    fn try_add_coordinator(
        &mut self,
        extra: &[&str],
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Option<usize> {
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        // Inside a namespace, this one's loopback stands in for picking a
        // port (the namespace has nothing listening).
        let pick = |host: &str| {
            if wrapper.is_empty() {
                free_port(host)
            } else {
                free_port("127.0.0.1")
            }
        };
        let host = match extra.iter().position(|a| *a == "--listen") {
            Some(i) => {
                let listen = extra[i + 1];
                let (host, port) = listen.rsplit_once(':').unwrap();
                if port == "0" {
                    args[i + 1] = format!("{host}:{}", pick(host));
                }
                host.to_owned()
            }
            None => {
                args.extend([
                    "--listen".into(),
                    format!("127.0.0.1:{}", pick("127.0.0.1")),
                ]);
                "127.0.0.1".to_owned()
            }
        };
        if !extra.contains(&"--worker-listen") {
            args.extend(["--worker-listen".into(), format!("{host}:{}", pick(&host))]);
        }
        // The whole suite shares two cores: a 1 s heartbeat timeout can
        // expire on a starved but live process. Kills are detected at once
        // (the connection drops); only the partition tests wait for this.
        if !extra.contains(&"--heartbeat-timeout") {
            args.extend(["--heartbeat-timeout".into(), TEST_HEARTBEAT_TIMEOUT.into()]);
        }
        let index = self.coordinators.len();
        self.coordinators.push(CoordinatorProcess {
            child: None,
            api: String::new(),
            worker_endpoint: String::new(),
            log: self.data_dir.join(format!("coordinator-{index}.log")),
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
        });
        if let Err(problem) = self.spawn_coordinator(index) {
            if problem.contains("Address already in use") {
                self.coordinators.pop();
                return None;
            }
            panic!("coordinator {index} did not start: {problem}");
        }
        self.api = self
            .coordinators
            .iter()
            .map(|c| c.api.clone())
            .collect::<Vec<_>>()
            .join(",");
        self.worker_endpoint = self.coordinators[0].worker_endpoint.clone();
        Some(index)
    }

    /// Starts coordinator `index`; what it said instead of its address if
    /// it did not start.
    fn spawn_coordinator(&mut self, index: usize) -> Result<(), String> {
        let data_dir = self.data_dir.clone();
        let process = &mut self.coordinators[index];
        let mut command = match process.wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(env!("CARGO_BIN_EXE_weir"));
                command.env("WEIR_DATA_DIR", &data_dir);
                command
            }
            None => weir_command(&data_dir),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&process.log)
            .unwrap();
        let mut child = command
            .arg("coordinator")
            .args(&process.args)
            .env("WEIR_LOG", "info")
            .envs(process.env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("the coordinator starts");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // "weir coordinator listening on ADDR (workers: ADDR, …"
        let words: Vec<&str> = first.split_whitespace().collect();
        if !first.starts_with("weir coordinator listening on") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{first}{}",
                std::fs::read_to_string(&process.log).unwrap_or_default()
            ));
        }
        process.api = words[4].to_owned();
        process.worker_endpoint = words[6].trim_end_matches(',').to_owned();
        process.child = Some(child);
        Ok(())
    }

    /// Waits until coordinator `index` has exited (crashed); `what` names
    /// what should have made it.
    pub fn wait_for_exit(&mut self, index: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.coordinators[index].has_exited() {
            assert!(
                Instant::now() < deadline,
                "{what} never stopped coordinator {index}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs coordinator `index`.
    pub fn kill_coordinator(&mut self, index: usize) {
        if let Some(mut child) = self.coordinators[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts coordinator `index` again with the same flags and addresses
    /// (after it was killed, or crashed).
    pub fn restart_coordinator(&mut self, index: usize) {
        self.kill_coordinator(index);
        if let Err(problem) = self.spawn_coordinator(index) {
            panic!("coordinator {index} did not start again: {problem}");
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to coordinator `index`.
    pub fn signal_coordinator(&self, index: usize, signal: &str) {
        let pid = self.coordinators[index].pid().expect("it runs");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// What coordinator `index` says of the leadership.
    pub fn leader_answer(&self, index: usize) -> Option<LeaderAnswer> {
        let client = Client::new(&self.coordinators[index].api, self.token.clone()).ok()?;
        client.leaders().pop()?.1.ok()
    }

    /// The index of the coordinator that leads, if one does now (not
    /// asking `skip`, which may be paused).
    pub fn leader(&self, skip: Option<usize>) -> Option<usize> {
        (0..self.coordinators.len()).find(|&i| {
            Some(i) != skip
                && self.coordinators[i].child.is_some()
                && self.leader_answer(i).is_some_and(|a| a.leading)
        })
    }

    /// Waits until a coordinator leads; returns its index.
    pub fn wait_for_leader(&self) -> usize {
        self.wait_for_leader_other_than(None)
    }

    /// Waits until a coordinator other than `old` leads.
    pub fn wait_for_leader_other_than(&self, old: Option<usize>) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(leader) = self.leader(old) {
                return leader;
            }
            assert!(Instant::now() < deadline, "no coordinator took the lead");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until coordinator `index` stepped down; when and why.
    pub fn wait_for_step_down(&self, index: usize) -> StepDown {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(step_down) = self.leader_answer(index).and_then(|a| a.last_step_down) {
                return step_down;
            }
            assert!(
                Instant::now() < deadline,
                "coordinator {index} never stepped down"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn add_worker(&mut self, slots: u32) {
        let command = weir_command(&self.data_dir);
        self.spawn_worker(command, slots, &[]);
    }

    /// Starts a worker inside network namespace `netns`, with `extra` flags.
    pub fn add_worker_in(&mut self, netns: &str, slots: u32, extra: &[&str]) {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns, env!("CARGO_BIN_EXE_weir")])
            .env("WEIR_DATA_DIR", &self.data_dir);
        self.spawn_worker(command, slots, extra);
    }

    /// Starts a worker, with `extra` flags, in the background.
    pub fn add_worker_with(&mut self, slots: u32, extra: &[&str]) {
        let command = weir_command(&self.data_dir);
        self.spawn_worker(command, slots, extra);
    }

    fn spawn_worker(&mut self, mut command: Command, slots: u32, extra: &[&str]) {
        command
            .args(["worker", "--coordinator", &self.api, "--slots"])
            .arg(slots.to_string())
            .args(["--coordinator-timeout", TEST_HEARTBEAT_TIMEOUT])
            .args(extra)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(token) = &self.token {
            command.args(["--token", token]);
        }
        self.workers.push(command.spawn().expect("a worker starts"));
    }

    /// The index of the worker process with `pid`.
    pub fn worker_index(&self, pid: u32) -> usize {
        self.workers
            .iter()
            .position(|w| w.id() == pid)
            .expect("a worker of this cluster")
    }

    /// SIGKILLs worker process `index`.
    pub fn kill_worker(&mut self, index: usize) {
        let child = &mut self.workers[index];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts a new worker process in place of `index`.
    pub fn restart_worker(&mut self, index: usize, slots: u32) {
        self.add_worker(slots);
        let fresh = self.workers.pop().unwrap();
        let mut old = std::mem::replace(&mut self.workers[index], fresh);
        let _ = old.kill();
        let _ = old.wait();
    }

    /// Submits [`long_job`] at p=3 with 200 ms checkpoints into `out`,
    /// with `extra` flags; returns its id.
    pub fn submit_long_job(&self, out: &Path, extra: &[&str]) -> String {
        let out_arg = out.display().to_string();
        let mut submit = vec!["submit"];
        submit.extend(long_job());
        submit.extend([
            "-p",
            "3",
            "--checkpoint-interval",
            "200ms",
            "--output",
            &out_arg,
        ]);
        submit.extend(extra);
        let output = self.weir(&submit);
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout).trim().to_owned()
    }

    /// Submits `job` for a chaos test: p=3, 200 ms checkpoints, restarts
    /// without limit, exactly-once output into `out`; returns its id.
    pub fn submit_chaos_job(&self, job: &[&str], out: &Path) -> String {
        let out_arg = out.display().to_string();
        let mut submit = vec!["submit"];
        submit.extend(job);
        submit.extend([
            "-p",
            "3",
            "--checkpoint-interval",
            "200ms",
            "--max-restarts",
            "1000",
            "--output",
            &out_arg,
        ]);
        let output = self.weir(&submit);
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout).trim().to_owned()
    }

    /// Waits until job `id` satisfies `done` (failing if it ends first).
    pub fn wait_for(&self, id: &str, what: &str, done: impl Fn(&JobStatus) -> bool) -> JobStatus {
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match client.job(id) {
                Ok(status) if done(&status) => return status,
                Ok(status) => assert!(
                    Instant::now() < deadline && !status.state.is_terminal(),
                    "waiting until {what}: {status:?}"
                ),
                // A failover in progress.
                Err(error) if error.is_transient() => {
                    assert!(Instant::now() < deadline, "waiting until {what}: {error}")
                }
                Err(error) => panic!("waiting until {what}: {error}"),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILLs the worker process running slot 0 of a job; returns its id.
    pub fn kill_worker_of_slot_0(&mut self, status: &JobStatus) -> WorkerId {
        let victim = worker_of_slot(status, 0);
        self.kill_registered(victim);
        victim
    }

    /// SIGKILLs the process of registered worker `id`; returns its index.
    pub fn kill_registered(&mut self, id: WorkerId) -> usize {
        let workers = self.client().cluster().unwrap().workers;
        let name = &workers.iter().find(|w| w.id == id).unwrap().name;
        let index = self.worker_index(name.trim_start_matches("worker-").parse().unwrap());
        self.kill_worker(index);
        index
    }

    /// The registered workers of live processes of this cluster that run
    /// nothing of the job `status` describes (its spares, when they
    /// joined before it deployed).
    pub fn idle_workers(&self, status: &JobStatus) -> Vec<WorkerId> {
        let pids: Vec<u32> = self.workers.iter().map(|w| w.id()).collect();
        self.client()
            .cluster()
            .unwrap()
            .workers
            .into_iter()
            .filter(|w| status.placement.iter().all(|p| p.worker != w.id))
            .filter(|w| {
                w.name
                    .trim_start_matches("worker-")
                    .parse::<u32>()
                    .is_ok_and(|pid| pids.contains(&pid))
            })
            .map(|w| w.id)
            .collect()
    }

    pub fn client(&self) -> Client {
        Client::new(&self.api, self.token.clone()).unwrap()
    }

    pub fn wait_for_workers(&self, count: usize) {
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client.cluster().is_ok_and(|c| c.workers.len() == count) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{count} workers did not register");
    }

    /// Runs `weir ARGS… --coordinator API`.
    pub fn weir(&self, args: &[&str]) -> Output {
        let mut command = weir_command(&self.data_dir);
        command.args(args).args(["--coordinator", &self.api]);
        if let Some(token) = &self.token {
            command.args(["--token", token]);
        }
        command.output().expect("weir starts")
    }

    /// Submits a job and waits for it to finish; returns its id.
    pub fn submit_and_wait(&self, args: &[&str]) -> String {
        let mut submit = vec!["submit"];
        submit.extend_from_slice(args);
        let output = self.weir(&submit);
        assert!(
            output.status.success(),
            "submit failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        self.wait_finished(&id);
        id
    }

    /// Waits (`weir jobs wait`) until job `id` Finished; its final status.
    pub fn wait_finished(&self, id: &str) -> JobStatus {
        let output = self.weir(&["jobs", "wait", id, "--timeout", "180s", "--json"]);
        assert!(
            output.status.success(),
            "job {id} did not finish: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("jobs wait --json prints the status")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for child in self.workers.iter_mut().chain(
            self.coordinators
                .iter_mut()
                .filter_map(|c| c.child.as_mut()),
        ) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The worker running `slot` of a job (subtask `slot` of every operator).
pub fn worker_of_slot(status: &JobStatus, slot: u32) -> WorkerId {
    status
        .placement
        .iter()
        .find(|p| p.subtask == slot)
        .unwrap_or_else(|| panic!("slot {slot} is placed: {:?}", status.placement))
        .worker
}

/// keyed-sum emitting every update, 1,000,000 events at 200,000/s: long
/// enough (5 s) to lose workers while it runs.
pub fn long_job() -> Vec<&'static str> {
    let mut job = crate::recovery::JOB.to_vec();
    job[2] = "events=1000000";
    job
}

/// A clean `weir run` of [`long_job`] at p=3 into `dir/clean`.
pub fn clean_long_run(dir: &Path) -> PathBuf {
    clean_run_of(dir, "clean", &long_job())
}

/// A clean `weir run` of `job` at p=3, without checkpoints, into `dir/name`.
pub fn clean_run_of(dir: &Path, name: &str, job: &[&str]) -> PathBuf {
    let clean = dir.join(name);
    let clean_arg = clean.display().to_string();
    let mut run: Vec<&str> = job.to_vec();
    run.extend([
        "-p",
        "3",
        "--checkpoint-interval",
        "0",
        "--output",
        &clean_arg,
    ]);
    weir_run(&run);
    clean
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
