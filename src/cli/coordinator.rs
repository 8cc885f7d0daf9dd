//! `weir coordinator`: the control plane, serving the REST API and workers.
//! Standalone by default (its control state in checkpoint storage, so a
//! coordinator started again with the same flags resumes every job); with
//! `--ha etcd://…`, one of several coordinators, one of which leads.

use clap::Args;
use std::sync::Arc;
use std::time::Duration;
use weir_coordinator::{ControlPlane, Coordinator, CoordinatorConfig, DirPlane, EtcdPlane};
use weir_operators::job::JobRegistry;
use weir_state::storage::default_checkpoint_dir;

/// Arguments of `weir coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Address of the REST API; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8040")]
    pub listen: String,
    /// Address of the worker endpoint [default: the API's host, any port].
    #[arg(long)]
    pub worker_listen: Option<String>,
    /// Where checkpoints go: a `file://` URL, a directory or `s3://…`
    /// [default: $WEIR_DATA_DIR/checkpoints, else ~/.local/share/weir/checkpoints].
    #[arg(long, value_name = "URL")]
    pub checkpoint_dir: Option<String>,
    /// Shared token clients and workers must present; required beyond loopback.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A worker silent for this long is declared lost (a dropped connection is at once).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::cli::parse_duration)]
    pub heartbeat_timeout: Duration,
    /// Interval of the coordinator's heartbeats to workers.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = crate::cli::parse_duration)]
    pub heartbeat_interval: Duration,
    /// High availability: elect a leader among the coordinators started
    /// with the same etcd and `--cluster-id` (`etcd://HOST:PORT[,HOST:PORT…]`).
    #[arg(long, value_name = "URL")]
    pub ha: Option<String>,
    /// Which cluster this coordinator belongs to (with `--ha`).
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub cluster_id: String,
    /// The leader's etcd lease (whole seconds): a leader that cannot renew
    /// it within half of it steps down; a standby takes over when it expires.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::cli::parse_duration)]
    pub lease: Duration,
    /// Where a standalone coordinator keeps its control state (jobs,
    /// counters) [default: CHECKPOINT_DIR/.weir-control].
    #[arg(long, value_name = "URL", conflicts_with = "ha")]
    pub control_dir: Option<String>,
    /// How long a new leader waits for the workers of a running attempt to
    /// report it before restarting the attempt instead of adopting it.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::cli::parse_duration)]
    pub adopt_within: Duration,
}

/// Starts the coordinator, prints where it listens (first line of
/// stdout), and serves until the process is stopped.
pub fn run(
    args: CoordinatorArgs,
    registry: &JobRegistry,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = CoordinatorConfig {
        listen: args.listen,
        worker_listen: args.worker_listen,
        checkpoint_dir: args
            .checkpoint_dir
            .unwrap_or_else(|| default_checkpoint_dir().display().to_string()),
        token: args.token,
        heartbeat_timeout: args.heartbeat_timeout,
        heartbeat_interval: args.heartbeat_interval,
        adopt_within: args.adopt_within,
    };
    let plane: Arc<dyn ControlPlane> = match &args.ha {
        Some(url) => Arc::new(EtcdPlane::connect(url, &args.cluster_id, args.lease)?),
        None => {
            let dir = args.control_dir.unwrap_or_else(|| {
                format!(
                    "{}/{}",
                    config.checkpoint_dir.trim_end_matches('/'),
                    weir_coordinator::control::dir::DEFAULT_DIR
                )
            });
            Arc::new(DirPlane::open(&dir)?)
        }
    };
    let catalog = Arc::new(crate::cluster::RegistryCatalog(registry.clone()));
    let coordinator = Coordinator::start(&config, catalog, plane.clone())?;
    println!(
        "weir coordinator listening on {} (workers: {}, checkpoints: {}, control: {})",
        coordinator.api_addr(),
        coordinator.worker_addr(),
        config.checkpoint_dir,
        plane.describe()
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    loop {
        std::thread::park();
    }
}
