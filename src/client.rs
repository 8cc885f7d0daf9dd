//! [`Client`]: the coordinators' REST API from the command line. It takes
//! a list of coordinators and follows the leader: a standby's redirect is
//! followed to the leader it names, an unreachable coordinator is skipped
//! for the next, and while no leader is elected (a failover) it asks again
//! for a few seconds.

use serde::de::DeserializeOwned;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weir_coordinator::api::history::{CheckpointHistory, ExceptionHistory};
use weir_coordinator::api::{ClusterInfo, LeaderAnswer};
use weir_coordinator::savepoint::{SavepointDone, SavepointOptions};
use weir_coordinator::JobStatus;
use weir_protocol::SubmitRequest;

/// How long a request waits for a leader to be elected.
const LEADER_PATIENCE: Duration = Duration::from_secs(5);

/// How long asking one coordinator who leads may take: a paused or cut-off
/// coordinator must not hold up finding the one that answers.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a savepoint request may take before the client gives up.
const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(900);

/// Why a request to the coordinator failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The coordinator could not be reached.
    #[error("cannot reach the coordinator at {url}")]
    Unreachable {
        /// The request's URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The coordinator answered with an error.
    #[error("the coordinator refused ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// No coordinator leads (a failover in progress, or none is up).
    #[error("no coordinator leads: {message}")]
    NoLeader {
        /// What the coordinators said.
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from {url}: {problem}")]
    BadAnswer {
        /// The request's URL.
        url: String,
        /// What was wrong.
        problem: String,
    },
}

impl ClientError {
    /// Whether asking again later may succeed (no leader, or unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::NoLeader { .. }
        )
    }
}

/// A client of a set of coordinators.
pub struct Client {
    bases: Vec<String>,
    /// The base that answered last (the leader, usually).
    current: Mutex<String>,
    token: Option<String>,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({:?})", self.bases)
    }
}

fn base_url(address: &str) -> String {
    let address = address.trim();
    if address.starts_with("http://") || address.starts_with("https://") {
        address.trim_end_matches('/').to_owned()
    } else {
        format!("http://{address}")
    }
}

/// What one coordinator answered.
enum Answer {
    Done(reqwest::StatusCode, Vec<u8>),
    /// A standby: try the leader it names (if any).
    Standby {
        leader: Option<String>,
        message: String,
    },
}

impl Client {
    /// A client of the coordinators at `addresses` (`host:port` or
    /// `http://` URLs, separated by commas), presenting `token` when given.
    pub fn new(addresses: &str, token: Option<String>) -> Result<Self, std::io::Error> {
        let bases: Vec<String> = addresses
            .split(',')
            .filter(|a| !a.trim().is_empty())
            .map(base_url)
            .collect();
        if bases.is_empty() {
            return Err(std::io::Error::other(format!(
                "no coordinator address in '{addresses}'"
            )));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self {
            current: Mutex::new(bases[0].clone()),
            bases,
            token,
            http,
            runtime,
        })
    }

    fn current(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One request to `base`; `timeout` replaces the client's default.
    fn send(
        &self,
        base: &str,
        method: &reqwest::Method,
        path: &str,
        body: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<Answer, ClientError> {
        let url = format!("{base}{path}");
        let mut request = self.http.request(method.clone(), &url);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let (status, bytes) = self
            .runtime
            .block_on(async {
                let response = request.send().await?;
                let status = response.status();
                Ok::<_, reqwest::Error>((status, response.bytes().await?))
            })
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        if status == reqwest::StatusCode::TEMPORARY_REDIRECT
            || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
        {
            let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Ok(Answer::Standby {
                leader: answer["leader"].as_str().map(base_url),
                message: answer["error"]
                    .as_str()
                    .map_or_else(|| format!("{status} from {base}"), str::to_owned),
            });
        }
        Ok(Answer::Done(status, bytes.to_vec()))
    }

    /// One pass over the coordinators: the leader's answer, or why none.
    fn ask(
        &self,
        method: &reqwest::Method,
        path: &str,
        body: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), ClientError> {
        let current = self.current();
        let mut queue: Vec<String> = std::iter::once(current.clone())
            .chain(self.bases.iter().filter(|b| **b != current).cloned())
            .collect();
        let mut asked: Vec<String> = Vec::new();
        let mut unreachable = None;
        let mut standby = None;
        while let Some(base) = (!queue.is_empty()).then(|| queue.remove(0)) {
            if asked.contains(&base) {
                continue;
            }
            asked.push(base.clone());
            match self.send(&base, method, path, body, timeout) {
                Ok(Answer::Done(status, bytes)) => {
                    *self.current.lock().unwrap_or_else(|p| p.into_inner()) = base;
                    return Ok((status, bytes));
                }
                Ok(Answer::Standby { leader, message }) => {
                    if let Some(leader) = leader {
                        queue.insert(0, leader);
                    }
                    standby = Some(message);
                }
                // A request that may have reached the coordinator is not
                // sent to another one: a submission must not run twice.
                Err(ClientError::Unreachable { url, source })
                    if *method != reqwest::Method::GET && !source.is_connect() =>
                {
                    return Err(ClientError::Unreachable { url, source })
                }
                Err(error) => unreachable = Some(error),
            }
        }
        match (standby, unreachable) {
            (Some(message), _) => Err(ClientError::NoLeader { message }),
            (None, Some(error)) => Err(error),
            (None, None) => Err(ClientError::NoLeader {
                message: "no coordinator answered".into(),
            }),
        }
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        self.call_within(method, path, body, None)
    }

    /// [`call`](Self::call) with its own timeout instead of the default.
    fn call_within<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<T, ClientError> {
        let (url, bytes) = self.call_raw(method, path, body, timeout)?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer {
            url,
            problem: e.to_string(),
        })
    }

    /// The leader's successful answer (its URL and body), or why none.
    fn call_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<(String, Vec<u8>), ClientError> {
        let started = Instant::now();
        let (status, bytes) = loop {
            match self.ask(&method, path, body.as_deref(), timeout) {
                Ok(answer) => break answer,
                // A failover: a leader is elected within a lease or so.
                Err(ClientError::NoLeader { .. }) if started.elapsed() < LEADER_PATIENCE => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => return Err(error),
            }
        };
        let url = format!("{}{path}", self.current());
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ClientError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        Ok((url, bytes))
    }

    /// Submits a job; returns its status.
    pub fn submit(&self, request: &SubmitRequest) -> Result<JobStatus, ClientError> {
        let body = serde_json::to_vec(request).expect("requests serialize");
        self.call(reqwest::Method::POST, "/v1/jobs", Some(body))
    }

    /// Every job.
    pub fn jobs(&self) -> Result<Vec<JobStatus>, ClientError> {
        self.call(reqwest::Method::GET, "/v1/jobs", None)
    }

    /// One job, by id or number.
    pub fn job(&self, id: &str) -> Result<JobStatus, ClientError> {
        self.call(reqwest::Method::GET, &format!("/v1/jobs/{id}"), None)
    }

    /// One job's status once it has ended, or once `patience` (at most a
    /// minute) passed: the coordinator answers when the job ends, so a
    /// waiting client asks once instead of polling.
    pub fn job_when_ended(&self, id: &str, patience: Duration) -> Result<JobStatus, ClientError> {
        let wait_ms = patience.as_millis() as u64;
        self.call_within(
            reqwest::Method::GET,
            &format!("/v1/jobs/{id}?wait_ms={wait_ms}"),
            None,
            // The answer may take the whole wait.
            Some(patience + Duration::from_secs(10)),
        )
    }

    /// Asks a job to stop.
    pub fn cancel(&self, id: &str) -> Result<JobStatus, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/jobs/{id}/cancel"),
            None,
        )
    }

    /// Takes a savepoint of a job (and stops it, with `options.stop`);
    /// returns once it is written.
    pub fn savepoint(
        &self,
        id: &str,
        options: &SavepointOptions,
    ) -> Result<SavepointDone, ClientError> {
        let body = serde_json::to_vec(options).expect("requests serialize");
        // The answer comes once the savepoint is written (and, with `stop`,
        // the job ended): a checkpoint and a copy of its files.
        self.call_within(
            reqwest::Method::POST,
            &format!("/v1/jobs/{id}/savepoint"),
            Some(body),
            Some(SAVEPOINT_TIMEOUT),
        )
    }

    /// A job's newest `limit` checkpoints, with each subtask's part.
    pub fn checkpoints(&self, id: &str, limit: usize) -> Result<CheckpointHistory, ClientError> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/jobs/{id}/checkpoints?limit={limit}"),
            None,
        )
    }

    /// A job's restarts, with their causes and restore tiers.
    pub fn exceptions(&self, id: &str) -> Result<ExceptionHistory, ClientError> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/jobs/{id}/exceptions"),
            None,
        )
    }

    /// The leader's metrics, in the Prometheus text format.
    pub fn metrics(&self) -> Result<String, ClientError> {
        let (url, bytes) = self.call_raw(reqwest::Method::GET, "/metrics", None, None)?;
        String::from_utf8(bytes).map_err(|e| ClientError::BadAnswer {
            url,
            problem: e.to_string(),
        })
    }

    /// A worker's metrics from its `/metrics` endpoint at `address`
    /// (`host:port`, as `GET /v1/cluster` lists it), with the token.
    pub fn worker_metrics(&self, address: &str) -> Result<String, ClientError> {
        let base = base_url(address);
        let url = format!("{base}/metrics");
        match self.send(&base, &reqwest::Method::GET, "/metrics", None, None)? {
            Answer::Done(status, bytes) if status.is_success() => {
                String::from_utf8(bytes).map_err(|e| ClientError::BadAnswer {
                    url,
                    problem: e.to_string(),
                })
            }
            Answer::Done(status, bytes) => Err(ClientError::Refused {
                status: status.as_u16(),
                message: String::from_utf8_lossy(&bytes).trim().to_owned(),
            }),
            Answer::Standby { message, .. } => Err(ClientError::BadAnswer {
                url,
                problem: message,
            }),
        }
    }

    /// The worker endpoint and the workers.
    pub fn cluster(&self) -> Result<ClusterInfo, ClientError> {
        self.call(reqwest::Method::GET, "/v1/cluster", None)
    }

    /// What each coordinator says about the leadership, in the order given.
    pub fn leaders(&self) -> Vec<(String, Result<LeaderAnswer, ClientError>)> {
        self.bases
            .iter()
            .map(|base| {
                let answer = match self.send(
                    base,
                    &reqwest::Method::GET,
                    "/v1/leader",
                    None,
                    Some(PROBE_TIMEOUT),
                ) {
                    Ok(Answer::Done(status, bytes)) if status.is_success() => {
                        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer {
                            url: format!("{base}/v1/leader"),
                            problem: e.to_string(),
                        })
                    }
                    Ok(Answer::Done(status, bytes)) => Err(ClientError::Refused {
                        status: status.as_u16(),
                        message: String::from_utf8_lossy(&bytes).into_owned(),
                    }),
                    Ok(Answer::Standby { message, .. }) => Err(ClientError::NoLeader { message }),
                    Err(error) => Err(error),
                };
                (base.clone(), answer)
            })
            .collect()
    }

    /// The leader's worker endpoint, as the first coordinator that knows
    /// the leader says.
    pub fn leader_worker_endpoint(&self) -> Result<String, String> {
        let mut problems = Vec::new();
        for (base, answer) in self.leaders() {
            match answer {
                Ok(LeaderAnswer {
                    leader: Some(leader),
                    ..
                }) => return Ok(leader.address.workers),
                Ok(LeaderAnswer { problem, .. }) => problems.push(format!(
                    "{base}: {}",
                    problem.unwrap_or_else(|| "no leader elected yet".into())
                )),
                Err(error) => problems.push(format!("{base}: {}", crate::cli::error_chain(&error))),
            }
        }
        Err(problems.join("; "))
    }
}
