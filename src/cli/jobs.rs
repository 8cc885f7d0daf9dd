//! `weir jobs …`: the jobs this binary can run, and the jobs a coordinator runs.

use crate::cli::checkpoints::table;
use crate::client::Client;
use clap::{Args, Subcommand};
use std::io::Write;
use std::time::{Duration, Instant};
use weir_coordinator::history::{StorageWait, StorageWaitPhase};
use weir_coordinator::JobStatus;
use weir_operators::job::JobRegistry;
use weir_protocol::cluster::RestoreTier;
use weir_protocol::JobState;

/// How long `weir jobs wait` waits out a coordinator that cannot be
/// reached or has no leader.
const TRANSIENT_PATIENCE: Duration = Duration::from_secs(60);

/// How long one status request of `jobs wait` waits on the coordinator.
const WAIT_PER_ASK: Duration = Duration::from_secs(10);

/// How to reach the coordinator.
#[derive(Debug, Args)]
pub struct Remote {
    /// The coordinators' API addresses (`host:port[,host:port…]`); requests
    /// go to the leader.
    #[arg(long, env = "WEIR_COORDINATOR")]
    pub coordinator: String,
    /// The cluster's shared token.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// JSON for scripts instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Subcommands of `weir jobs`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// The jobs compiled into this binary and their parameters.
    Available,
    /// The coordinator's jobs.
    List(Remote),
    /// One job's state, attempts, checkpoints and placement.
    Status {
        /// The job's id or number.
        job: String,
        /// The coordinator.
        #[command(flatten)]
        remote: Remote,
    },
    /// A job's newest checkpoints: completed and aborted, with causes
    /// (`--epoch N`: each subtask's part of checkpoint N).
    History(crate::cli::history::HistoryArgs),
    /// A job's restarts: causes, recovery times, restore tiers.
    Exceptions(crate::cli::exceptions::ExceptionsArgs),
    /// Ask a job to stop.
    Cancel {
        /// The job's id or number.
        job: String,
        /// The coordinator.
        #[command(flatten)]
        remote: Remote,
    },
    /// Take a savepoint of a running job (self-contained, kept until
    /// deleted); with `--stop`, end the job after it. Prints its location.
    Savepoint(crate::cli::savepoint::SavepointArgs),
    /// Wait until a job ends; exits non-zero unless it Finished.
    Wait {
        /// The job's id or number.
        job: String,
        /// The coordinator.
        #[command(flatten)]
        remote: Remote,
        /// Give up after this long (`0`: never).
        #[arg(long, value_name = "DURATION", default_value = "0", value_parser = crate::cli::parse_duration)]
        timeout: Duration,
    },
}

/// Runs a `weir jobs` subcommand.
pub fn run(command: JobsCommand, registry: &JobRegistry) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        JobsCommand::Available => available(registry),
        JobsCommand::List(remote) => {
            let jobs = client(&remote)?.jobs()?;
            if remote.json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
                return Ok(());
            }
            let mut rows = table(&[
                "#",
                "JOB ID",
                "JOB",
                "STATE",
                "ATTEMPT",
                "P",
                "RESTARTS",
                "CHECKPOINTS",
                "ELAPSED",
            ]);
            for job in &jobs {
                rows.add_row(vec![
                    job.number.to_string(),
                    job.job_id.clone(),
                    job.job.clone(),
                    job.state.to_string(),
                    job.attempt.to_string(),
                    job.parallelism.to_string(),
                    job.restarts.to_string(),
                    job.checkpoints_completed.to_string(),
                    format!("{:.1} s", job.elapsed_s),
                ]);
            }
            println!("{rows}");
            Ok(())
        }
        JobsCommand::Savepoint(args) => crate::cli::savepoint::run(args),
        JobsCommand::History(args) => crate::cli::history::run(args),
        JobsCommand::Exceptions(args) => crate::cli::exceptions::run(args),
        JobsCommand::Status { job, remote } => {
            let status = client(&remote)?.job(&job)?;
            print_status(&status, remote.json)
        }
        JobsCommand::Cancel { job, remote } => {
            let status = client(&remote)?.cancel(&job)?;
            if remote.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("cancelling {}", status.job_id);
            }
            Ok(())
        }
        JobsCommand::Wait {
            job,
            remote,
            timeout,
        } => {
            let client = client(&remote)?;
            let started = Instant::now();
            // A failover (no leader for a while) is waited out, up to a point.
            let mut failing_since: Option<Instant> = None;
            let status = loop {
                // Each ask waits on the coordinator for the job to end, a
                // bounded while, so a failover in between is noticed.
                let left = if timeout.is_zero() {
                    WAIT_PER_ASK
                } else {
                    timeout.saturating_sub(started.elapsed()).min(WAIT_PER_ASK)
                };
                let asked = Instant::now();
                let status = match client.job_when_ended(&job, left) {
                    Ok(status) => status,
                    Err(error)
                        if error.is_transient()
                            && failing_since.get_or_insert_with(Instant::now).elapsed()
                                < TRANSIENT_PATIENCE =>
                    {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                };
                failing_since = None;
                if status.state.is_terminal() {
                    break status;
                }
                // A coordinator that answered before the wait it was asked
                // for (an older one, that does not long-poll) is asked
                // again at a polite pace rather than in a tight loop.
                if asked.elapsed() + Duration::from_millis(100) < left {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if !timeout.is_zero() && started.elapsed() >= timeout {
                    return Err(format!(
                        "job '{}' is still {} after {timeout:?}",
                        status.job_id, status.state
                    )
                    .into());
                }
            };
            print_status(&status, remote.json)?;
            match status.state {
                JobState::Finished => Ok(()),
                state => Err(format!(
                    "job '{}' ended {state}{}",
                    status.job_id,
                    status
                        .failure
                        .as_deref()
                        .map(|f| format!(": {f}"))
                        .unwrap_or_default()
                )
                .into()),
            }
        }
    }
}

pub(crate) fn client(remote: &Remote) -> Result<Client, std::io::Error> {
    Client::new(&remote.coordinator, remote.token.clone())
}

fn print_status(status: &JobStatus, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    if json {
        println!("{}", serde_json::to_string_pretty(status)?);
        return Ok(());
    }
    let mut rows = table(&["", ""]);
    let durations = &status.checkpoint_durations_ms;
    let checkpoints = match durations.last() {
        Some(last) => format!(
            "{} completed, {} aborted (last {last:.1} ms, {} bytes)",
            status.checkpoints_completed,
            status.checkpoints_aborted,
            status.checkpoint_sizes.last().copied().unwrap_or(0)
        ),
        None => format!(
            "{} completed, {} aborted",
            status.checkpoints_completed, status.checkpoints_aborted
        ),
    };
    let checkpoints = if status.failed_checkpoints_in_a_row > 0 {
        format!(
            "{checkpoints}; {} failed in a row (fails over after {})",
            status.failed_checkpoints_in_a_row, status.tolerable_failed_checkpoints
        )
    } else {
        checkpoints
    };
    let mut placement: Vec<String> = Vec::new();
    for p in &status.placement {
        placement.push(format!("v{}/{}@{}", p.vertex, p.subtask, p.worker));
    }
    for (key, value) in [
        ("job id", status.job_id.clone()),
        ("job", format!("{} (#{})", status.job, status.number)),
        ("state", status.state.to_string()),
        ("attempt", status.attempt.to_string()),
        (
            "parallelism",
            if status.running_parallelism != status.parallelism && !status.state.is_terminal() {
                format!(
                    "{} (running at {} for lack of slots)",
                    status.parallelism, status.running_parallelism
                )
            } else {
                status.parallelism.to_string()
            },
        ),
        ("restarts", status.restarts.to_string()),
        (
            "storage",
            status
                .storage_wait
                .as_ref()
                .map_or("-".into(), storage_line),
        ),
        (
            "leader",
            if status.adopted {
                format!(
                    "term {} (adopted the running attempt after a failover)",
                    status.leader_term
                )
            } else {
                format!("term {}", status.leader_term)
            },
        ),
        (
            "latest checkpoint",
            status
                .latest_checkpoint
                .map_or("-".into(), |e| format!("{e}")),
        ),
        (
            "last savepoint",
            status.last_savepoint.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "last failure",
            status.failure.clone().unwrap_or_else(|| "-".into()),
        ),
        ("last worker loss", loss_line(status)),
        ("last restore", restore_line(status)),
        ("restored subtasks", restore_detail(status)),
        ("time to detect", detect_line(status)),
        (
            "time to recover",
            status.last_recovery_ms.map_or("-".into(), |ms| {
                format!("{ms:.0} ms (failure detected → every subtask running)")
            }),
        ),
        (
            "restored from",
            status
                .restored_from
                .map_or("-".into(), |e| format!("checkpoint {e}")),
        ),
        ("checkpoints", checkpoints),
        ("events in", status.events_in.to_string()),
        ("records out", status.records_out.to_string()),
        ("elapsed", format!("{:.3} s", status.elapsed_s)),
        ("placement", placement.join(" ")),
        ("regions", regions_line(status)),
        ("regional restarts", regional_restarts_line(status)),
        ("spare catch-up", catch_up_line(status)),
        (
            "spares",
            if status.spares.is_empty() {
                "-".into()
            } else {
                let spares: Vec<String> = status.spares.iter().map(|w| w.to_string()).collect();
                format!("{} (replicas go there first)", spares.join(" "))
            },
        ),
    ] {
        rows.add_row(vec![key.to_owned(), value]);
    }
    println!("{rows}");
    Ok(())
}

/// How many regions the job has, and what a failure restarts.
fn regions_line(status: &JobStatus) -> String {
    match status.regions {
        0 | 1 => "1 (connected: a failure restarts the whole job)".into(),
        n if status.region_attempts.is_empty() => {
            format!("{n} pipelined regions (without checkpoints a failure restarts them all)")
        }
        n => {
            let attempts: Vec<String> = status
                .region_attempts
                .iter()
                .map(|(region, attempt)| format!("r{region}@{attempt}"))
                .collect();
            format!(
                "{n} pipelined regions; a failure restarts only those that lost a task (region@attempt: {})",
                attempts.join(" ")
            )
        }
    }
}

/// The last regional failover: `2 (last: regions 0 1 from checkpoint 7 in 180 ms: cause)`.
fn regional_restarts_line(status: &JobStatus) -> String {
    let Some(last) = status.regional_restarts.last() else {
        return "-".into();
    };
    let regions: Vec<String> = last.regions.iter().map(u32::to_string).collect();
    let from = last
        .restored_from
        .map_or("from the start".into(), |e| format!("from checkpoint {e}"));
    let took = last.recovery_ms.map_or("still starting".into(), |ms| {
        format!("running again in {ms:.0} ms")
    });
    format!(
        "{} (last: regions {} {from}, {took}; the others kept running): {}",
        status.regional_restarts.len(),
        regions.join(" "),
        last.cause
    )
}

/// The last catch-up of a spare that joined: `w4 on checkpoint 7: 3 files, 48 MiB copied in 512 ms`.
fn catch_up_line(status: &JobStatus) -> String {
    let Some(last) = status.spare_catch_ups.last() else {
        return "-".into();
    };
    let share = format!(
        "{} on checkpoint {}: {} files, {}",
        last.worker,
        last.epoch,
        last.files,
        crate::cli::checkpoints::bytes(last.bytes)
    );
    match (&last.failure, last.copied_bytes, last.took_ms) {
        (Some(failure), _, _) => format!("{share}; failed: {failure}"),
        (None, Some(copied), Some(ms)) => format!(
            "{share}; {} copied in {ms} ms",
            crate::cli::checkpoints::bytes(copied)
        ),
        _ => format!("{share}; copying"),
    }
}

/// `waiting for checkpoint storage for 12.3 s (…): error`.
pub(crate) fn storage_line(wait: &StorageWait) -> String {
    let holding = match wait.phase {
        StorageWaitPhase::Checkpoints => "checkpoints fail; the job runs on",
        StorageWaitPhase::Restore => "the restart waits to choose and read its checkpoint",
        StorageWaitPhase::Start => "the attempt waits to list the checkpoints before it deploys",
        StorageWaitPhase::JobRecord => "the job's record waits to be written",
    };
    format!(
        "waiting for checkpoint storage for {:.1} s ({holding}): {}",
        wait.waited_s, wait.last_error
    )
}

fn restore_line(status: &JobStatus) -> String {
    if status.restored.is_empty() {
        return "-".into();
    }
    let count = |tier: RestoreTier| status.restored.iter().filter(|r| r.tier == tier).count();
    format!(
        "{} subtasks: {} from a local copy, {} from a peer replica, {} from the object store",
        status.restored.len(),
        count(RestoreTier::Local),
        count(RestoreTier::Peer),
        count(RestoreTier::ObjectStore)
    )
}

/// One line per restored subtask: where it runs, its slowest tier, how
/// long fetching its files took and the bytes from each tier, e.g.
/// `v1/0@w4: peer, 412 ms (peer 480.2 MiB)`.
fn restore_detail(status: &JobStatus) -> String {
    if status.restored.is_empty() {
        return "-".into();
    }
    let lines: Vec<String> = status
        .restored
        .iter()
        .map(|r| {
            let worker = status
                .placement
                .iter()
                .find(|p| p.vertex == r.vertex && p.subtask == r.subtask)
                .map_or("?".into(), |p| p.worker.to_string());
            let fetched: Vec<String> = [
                RestoreTier::Local,
                RestoreTier::Peer,
                RestoreTier::ObjectStore,
            ]
            .into_iter()
            .filter(|tier| r.bytes.of(*tier) > 0)
            .map(|tier| format!("{tier} {}", super::checkpoints::bytes(r.bytes.of(tier))))
            .collect();
            format!(
                "v{}/{}@{worker}: {}, {} ms ({})",
                r.vertex,
                r.subtask,
                r.tier,
                r.duration_ms,
                if fetched.is_empty() {
                    "no bytes".into()
                } else {
                    fetched.join(", ")
                }
            )
        })
        .collect();
    lines.join("\n")
}

fn loss_line(status: &JobStatus) -> String {
    match &status.last_loss {
        Some(loss) => format!("{} ({})", loss.worker, loss.cause),
        None => "-".into(),
    }
}

fn detect_line(status: &JobStatus) -> String {
    match &status.last_loss {
        Some(loss) if loss.cause.starts_with("no heartbeat") => {
            format!("{:.0} ms without a heartbeat", loss.silent_ms)
        }
        Some(loss) => format!(
            "at once: connection closed {:.0} ms after its last heartbeat",
            loss.silent_ms
        ),
        None => "-".into(),
    }
}

fn available(registry: &JobRegistry) -> Result<(), Box<dyn std::error::Error>> {
    let mut out = std::io::stdout().lock();
    for job in registry.jobs() {
        writeln!(out, "{}\n    {}", job.name, job.description)?;
        for param in job.params {
            let default = match param.default {
                Some(value) => format!("default {value}"),
                None => "required".into(),
            };
            writeln!(
                out,
                "    --param {}=…  {} ({default})",
                param.name, param.help
            )?;
        }
    }
    Ok(())
}
