//! [`Client`]: the coordinator's REST API from the command line.

use serde::de::DeserializeOwned;
use std::time::Duration;
use weir_coordinator::api::ClusterInfo;
use weir_coordinator::JobStatus;
use weir_protocol::SubmitRequest;

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
    /// The answer was not what the API promises.
    #[error("unexpected answer from {url}: {problem}")]
    BadAnswer {
        /// The request's URL.
        url: String,
        /// What was wrong.
        problem: String,
    },
}

/// A client of one coordinator.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// A client of the coordinator at `address` (`host:port` or an
    /// `http://` URL), presenting `token` when given.
    pub fn new(address: &str, token: Option<String>) -> Result<Self, std::io::Error> {
        let base = if address.starts_with("http://") || address.starts_with("https://") {
            address.trim_end_matches('/').to_owned()
        } else {
            format!("http://{address}")
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self {
            base,
            token,
            http,
            runtime,
        })
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
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
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer {
            url,
            problem: e.to_string(),
        })
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

    /// Asks a job to stop.
    pub fn cancel(&self, id: &str) -> Result<JobStatus, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/jobs/{id}/cancel"),
            None,
        )
    }

    /// The worker endpoint and the workers.
    pub fn cluster(&self) -> Result<ClusterInfo, ClientError> {
        self.call(reqwest::Method::GET, "/v1/cluster", None)
    }
}
