//! [`EtcdPlane`]: several coordinators, one leader, elected with an etcd
//! lease and campaign (the `etcd-client` crate).
//!
//! Keys, under `/weir/{cluster-id}/`:
//!
//! ```text
//! election/…              etcd's election keys; the leader's value is its address
//! counters                the id counters
//! jobs/{number:010}       one record per job
//! ```
//!
//! The leader's **term** is the creation revision of its election key. Each
//! write is a transaction that compares that key's creation revision with
//! the term: once the key is gone (the lease expired or was revoked) or
//! another campaign's key leads, nothing the old leader writes lands.
//! Keep-alives go out every quarter lease; a leader whose renewals have not
//! been confirmed for half its lease steps down ([`LeaseClock`]).

use super::{
    parse_etcd_url, ControlPlane, ControlState, ControlStore, CoordinatorAddress, Counters,
    LeaderInfo, Leadership, LeaseClock, LeaseGuard, StoredJob,
};
use crate::error::CoordinatorError;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// How long to wait for etcd to answer one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Keys read per request when loading the control state.
const LOAD_PAGE: i64 = 200;

/// Control state and election in etcd.
pub struct EtcdPlane {
    endpoints: Vec<String>,
    prefix: String,
    lease: Duration,
    client: Client,
    runtime: Arc<Runtime>,
}

impl std::fmt::Debug for EtcdPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EtcdPlane({:?}, {})", self.endpoints, self.prefix)
    }
}

fn etcd_error<'a>(
    endpoints: &'a [String],
    op: &'static str,
) -> impl FnOnce(etcd_client::Error) -> CoordinatorError + 'a {
    move |source| CoordinatorError::ControlStore {
        store: format!("etcd {}", endpoints.join(",")),
        op,
        source: Box::new(source),
    }
}

fn timed_out(endpoints: &[String], op: &'static str, after: Duration) -> CoordinatorError {
    CoordinatorError::ControlStore {
        store: format!("etcd {}", endpoints.join(",")),
        op,
        source: format!("no answer within {after:?}").into(),
    }
}

/// Runs `request` on `runtime` with a deadline.
fn call<T>(
    runtime: &Runtime,
    endpoints: &[String],
    op: &'static str,
    after: Duration,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, CoordinatorError> {
    match runtime.block_on(async move { tokio::time::timeout(after, request).await }) {
        Ok(result) => result.map_err(etcd_error(endpoints, op)),
        Err(_) => Err(timed_out(endpoints, op, after)),
    }
}

/// Whether `name` may be used as a cluster id (a key segment).
fn valid_cluster_id(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl EtcdPlane {
    /// Connects to the etcd cluster of `url` (`etcd://HOST:PORT[,…]`) for
    /// the coordinators of `cluster_id`, with leases of `lease` (whole
    /// seconds, at least 2). An etcd that does not answer is an error, not
    /// a wait.
    pub fn connect(url: &str, cluster_id: &str, lease: Duration) -> Result<Self, CoordinatorError> {
        let endpoints = parse_etcd_url(url)?;
        if !valid_cluster_id(cluster_id) {
            return Err(CoordinatorError::BadHaUrl {
                url: url.to_owned(),
                problem: format!(
                    "the cluster id '{cluster_id}' must be letters, digits, '-', '_' or '.'"
                ),
            });
        }
        if lease.subsec_nanos() != 0 || lease.as_secs() < 2 {
            return Err(CoordinatorError::BadHaUrl {
                url: url.to_owned(),
                problem: format!(
                    "the lease must be a whole number of seconds, at least 2 (etcd counts leases in seconds), not {lease:?}"
                ),
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(|source| CoordinatorError::ControlStore {
                store: format!("etcd {}", endpoints.join(",")),
                op: "starting its client",
                source: Box::new(source),
            })?;
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(lease / 4, lease / 4);
        let mut client = call(
            &runtime,
            &endpoints,
            "connecting",
            REQUEST_TIMEOUT * 2,
            Client::connect(endpoints.clone(), Some(options)),
        )?;
        // The client connects lazily: ask for something to know etcd answers.
        call(
            &runtime,
            &endpoints,
            "reaching",
            REQUEST_TIMEOUT * 2,
            client.status(),
        )?;
        Ok(Self {
            endpoints,
            prefix: format!("/weir/{cluster_id}/"),
            lease,
            client,
            runtime: Arc::new(runtime),
        })
    }

    fn election(&self) -> String {
        format!("{}election", self.prefix)
    }

    fn call<T>(
        &self,
        op: &'static str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, CoordinatorError> {
        call(&self.runtime, &self.endpoints, op, REQUEST_TIMEOUT, request)
    }
}

/// Renews the lease every quarter lease until told to stop or the lease is
/// lost; then revokes it, so that a standby need not wait for it to expire.
async fn keep_alive(
    mut client: Client,
    lease_id: i64,
    lease: Duration,
    guard: Arc<LeaseGuard>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    lost: tokio::sync::watch::Sender<bool>,
) {
    let every = lease / 4;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stream = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if let Some(reason) = guard.lost() {
            tracing::warn!(%reason, "leadership lease lost");
            break;
        }
        if stream.is_none() {
            match tokio::time::timeout(every, client.lease_keep_alive(lease_id)).await {
                Ok(Ok(opened)) => stream = Some(opened),
                Ok(Err(error)) => {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "etcd refused to renew the lease"
                    );
                    continue;
                }
                Err(_) => {
                    tracing::warn!("etcd did not answer a lease renewal within {every:?}");
                    continue;
                }
            }
        }
        let Some((keeper, responses)) = stream.as_mut() else {
            continue;
        };
        let sent = Instant::now();
        let renewal = tokio::time::timeout(every, async {
            keeper.keep_alive().await?;
            responses.message().await
        })
        .await;
        match renewal {
            Ok(Ok(Some(answer))) if answer.ttl() > 0 => guard.renewed(sent),
            Ok(Ok(Some(_))) => {
                guard.lose("etcd says the lease has expired");
                break;
            }
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                tracing::warn!("a lease renewal was not confirmed; retrying");
                stream = None;
            }
        }
    }
    let _ = lost.send(true);
    let _ = tokio::time::timeout(every, client.lease_revoke(lease_id)).await;
}

impl ControlPlane for EtcdPlane {
    fn describe(&self) -> String {
        format!("etcd {} ({})", self.endpoints.join(","), self.prefix)
    }

    fn campaign(&self, me: &CoordinatorAddress) -> Result<Leadership, CoordinatorError> {
        let requested = Instant::now();
        let ttl = self.lease.as_secs() as i64;
        let mut client = self.client.clone();
        let grant = self.call("granting a lease", client.lease_grant(ttl, None))?;
        let lease_id = grant.id();
        let guard = Arc::new(LeaseGuard::new(LeaseClock::new(self.lease, requested)));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
        self.runtime.spawn(keep_alive(
            self.client.clone(),
            lease_id,
            self.lease,
            guard.clone(),
            stop_rx,
            lost_tx,
        ));
        let value = serde_json::to_vec(me).expect("addresses serialize");
        let name = self.election();
        let won = self.runtime.block_on(async {
            tokio::select! {
                won = client.campaign(name, value, lease_id) => Some(won),
                _ = lost_rx.changed() => None,
            }
        });
        let stop = move || {
            let _ = stop_tx.send(true);
        };
        let won = match won {
            Some(Ok(won)) => won,
            Some(Err(error)) => {
                stop();
                return Err(etcd_error(&self.endpoints, "campaigning")(error));
            }
            None => {
                stop();
                return Err(CoordinatorError::ControlStore {
                    store: self.describe(),
                    op: "campaigning",
                    source: guard
                        .lost()
                        .unwrap_or_else(|| "the lease was lost".into())
                        .into(),
                });
            }
        };
        let Some(key) = won.leader() else {
            stop();
            return Err(CoordinatorError::ControlStore {
                store: self.describe(),
                op: "campaigning",
                source: "etcd answered without a leader key".into(),
            });
        };
        let term = key.rev() as u64;
        Ok(Leadership {
            term,
            store: Arc::new(EtcdStore {
                client: self.client.clone(),
                runtime: self.runtime.clone(),
                endpoints: self.endpoints.clone(),
                prefix: self.prefix.clone(),
                leader_key: key.key().to_vec(),
                term,
                write_timeout: (self.lease / 2).min(REQUEST_TIMEOUT),
            }),
            guard,
            resign: Box::new(stop),
        })
    }

    fn leader(&self) -> Result<Option<LeaderInfo>, CoordinatorError> {
        let mut client = self.client.clone();
        let election = self.election();
        let asked =
            async move { tokio::time::timeout(REQUEST_TIMEOUT, client.leader(election)).await };
        let answer = match self.runtime.block_on(asked) {
            Ok(Ok(answer)) => answer,
            // etcd answers "election: no leader" as an error.
            Ok(Err(etcd_client::Error::GRpcStatus(status)))
                if status.message().contains("no leader") =>
            {
                return Ok(None)
            }
            Ok(Err(error)) => return Err(etcd_error(&self.endpoints, "finding the leader")(error)),
            Err(_) => {
                return Err(timed_out(
                    &self.endpoints,
                    "finding the leader",
                    REQUEST_TIMEOUT,
                ))
            }
        };
        let Some(kv) = answer.kv() else {
            return Ok(None);
        };
        let address: CoordinatorAddress = serde_json::from_slice(kv.value()).map_err(|source| {
            CoordinatorError::CorruptControlRecord {
                path: String::from_utf8_lossy(kv.key()).into_owned(),
                source,
            }
        })?;
        Ok(Some(LeaderInfo {
            address,
            term: kv.create_revision() as u64,
        }))
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.lease)
    }
}

/// The store of one leader's term: every write compares the election key.
struct EtcdStore {
    client: Client,
    runtime: Arc<Runtime>,
    endpoints: Vec<String>,
    prefix: String,
    leader_key: Vec<u8>,
    term: u64,
    write_timeout: Duration,
}

impl EtcdStore {
    fn guarded_put(
        &self,
        key: String,
        value: Vec<u8>,
        what: String,
    ) -> Result<(), CoordinatorError> {
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.leader_key.clone(),
                CompareOp::Equal,
                self.term as i64,
            )])
            .and_then([TxnOp::put(key, value, None)]);
        let mut client = self.client.clone();
        let answer = call(
            &self.runtime,
            &self.endpoints,
            "writing",
            self.write_timeout,
            client.txn(txn),
        )?;
        if !answer.succeeded() {
            return Err(CoordinatorError::Fenced {
                term: self.term,
                newer: None,
                what,
            });
        }
        Ok(())
    }
}

impl ControlStore for EtcdStore {
    fn term(&self) -> u64 {
        self.term
    }

    fn load(&self) -> Result<ControlState, CoordinatorError> {
        // Paged: one answer must stay below gRPC's message size however
        // many jobs the cluster ran.
        let mut end = self.prefix.clone().into_bytes();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let mut start = self.prefix.clone().into_bytes();
        let mut state = ControlState::default();
        loop {
            let mut client = self.client.clone();
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LOAD_PAGE);
            let answer = call(
                &self.runtime,
                &self.endpoints,
                "reading the control state",
                REQUEST_TIMEOUT,
                client.get(start.clone(), Some(options)),
            )?;
            for kv in answer.kvs() {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let Some(name) = key.strip_prefix(&self.prefix) else {
                    continue;
                };
                let corrupt = |source| CoordinatorError::CorruptControlRecord {
                    path: key.clone(),
                    source,
                };
                if name == "counters" {
                    state.counters = serde_json::from_slice(kv.value()).map_err(corrupt)?;
                } else if name.starts_with("jobs/") {
                    state
                        .jobs
                        .push(serde_json::from_slice(kv.value()).map_err(corrupt)?);
                }
            }
            match answer.kvs().last() {
                Some(last) if answer.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        state.jobs.sort_by_key(|j| j.number);
        Ok(state)
    }

    fn put_counters(&self, counters: &Counters) -> Result<(), CoordinatorError> {
        self.guarded_put(
            format!("{}counters", self.prefix),
            serde_json::to_vec(counters).expect("counters serialize"),
            "writing the id counters".into(),
        )
    }

    fn put_job(&self, job: &StoredJob) -> Result<(), CoordinatorError> {
        self.guarded_put(
            format!("{}jobs/{:010}", self.prefix, job.number),
            serde_json::to_vec(job).expect("job records serialize"),
            format!("writing job {}", job.number),
        )
    }
}
