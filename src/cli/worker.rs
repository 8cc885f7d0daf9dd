//! `weir worker`: runs the subtasks a coordinator assigns.

use clap::Args;
use std::sync::Arc;
use std::time::Duration;
use weir_operators::job::JobRegistry;
use weir_runtime::worker::{run_worker, FindLeader, WorkerConfig};
use weir_runtime::CancelToken;

/// Finds the leader through the coordinators' REST APIs.
#[derive(Debug)]
struct Coordinators(crate::client::Client);

impl FindLeader for Coordinators {
    fn find(&self) -> Result<String, String> {
        self.0.leader_worker_endpoint()
    }
}

/// Arguments of `weir worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The coordinators' API addresses (`host:port[,host:port…]`): the
    /// worker registers with whichever leads, and follows the leader.
    #[arg(long, env = "WEIR_COORDINATOR")]
    pub coordinator: String,
    /// Slots offered: each runs one subtask of every operator of a job.
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// Where to serve data exchange to peer workers; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub data_listen: String,
    /// The cluster's shared token.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A name for the coordinator's logs [default: worker-PID].
    #[arg(long)]
    pub name: Option<String>,
    /// Interval between heartbeats.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = crate::cli::parse_duration)]
    pub heartbeat: Duration,
    /// Silence from the coordinator after which the worker stops its
    /// deployments (it may be cut off) and registers again.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::cli::parse_duration)]
    pub coordinator_timeout: Duration,
    /// How long deployments keep running without a leader (waiting for a
    /// new one to adopt them) before the worker stops them [default: the
    /// leader's lease + 3 s, or 10 s under a standalone coordinator].
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::parse_duration)]
    pub leaderless_timeout: Option<Duration>,
    /// How fast this worker copies checkpoint files when it joins a running
    /// job as a spare and catches up on its latest checkpoint (per second;
    /// `0`: unthrottled).
    #[arg(long, value_name = "SIZE", default_value = "100MiB")]
    pub catch_up_rate: bytesize::ByteSize,
    /// Where to serve `/metrics` (Prometheus text format; port 0 picks a
    /// free one) [default: not served]. Beyond loopback it requires the
    /// token, as scrapes do.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

/// Registers with the coordinator and serves until it goes away.
pub fn run(args: WorkerArgs, registry: &JobRegistry) -> Result<(), Box<dyn std::error::Error>> {
    let client = crate::client::Client::new(&args.coordinator, args.token.clone())?;
    let defaults = WorkerConfig::default();
    let metrics = defaults.metrics.clone();
    let metrics_addr = match &args.metrics_listen {
        Some(listen) => Some(
            crate::metrics_endpoint::serve(listen, args.token.clone(), metrics.clone())?
                .to_string(),
        ),
        None => None,
    };
    let config = WorkerConfig {
        coordinator: Arc::new(Coordinators(client)),
        slots: args.slots,
        data_listen: args.data_listen,
        token: args.token,
        name: args.name.unwrap_or(defaults.name),
        heartbeat: args.heartbeat,
        coordinator_timeout: args.coordinator_timeout,
        leaderless_timeout: args.leaderless_timeout,
        catch_up_rate: args.catch_up_rate.as_u64(),
        metrics,
        metrics_addr,
        ..defaults
    };
    let build = crate::cluster::registry_builder(registry.clone());
    run_worker(&config, build, &CancelToken::new())?;
    Ok(())
}
