//! A blocking PostgreSQL connection: tokio-postgres on a current-thread
//! runtime of the subtask's own (sink calls are synchronous), every call
//! bounded by the sink's timeout.

use super::{SqlParams, CONNECTOR};
use crate::error::ConnectorError;
use std::future::Future;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls};

/// Where the rows of one checkpoint are marked as written: the row
/// `(job, sink, subtask)` of `table` holds the last epoch committed.
pub(crate) struct EpochMarker<'a> {
    pub(crate) table: &'a str,
    pub(crate) job: &'a str,
    pub(crate) sink: &'a str,
    pub(crate) subtask: u32,
    pub(crate) epoch: u64,
}

pub(crate) struct Database {
    runtime: tokio::runtime::Runtime,
    client: Client,
    /// "database weir at 127.0.0.1:5432", for errors (no password).
    at: String,
    timeout: Duration,
}

impl Database {
    pub(crate) fn connect(url: &str, timeout: Duration) -> Result<Self, ConnectorError> {
        let mut config: Config = url.parse().map_err(|e| {
            ConnectorError::new(
                CONNECTOR,
                "the database URL",
                "not a PostgreSQL connection string",
            )
            .caused_by(e)
        })?;
        config.connect_timeout(timeout);
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .zip(config.get_ports().iter().chain(std::iter::repeat(&5432u16)))
            .map(|(host, port)| match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let at = format!(
            "database {} at {}",
            config.get_dbname().unwrap_or("(default)"),
            hosts.join(",")
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                ConnectorError::new(CONNECTOR, at.clone(), "cannot start its I/O runtime")
                    .caused_by(e)
            })?;
        let connecting = async {
            match tokio::time::timeout(timeout, config.connect(NoTls)).await {
                Ok(connected) => connected.map_err(|e| failed(&at, "cannot connect", e)),
                Err(_) => Err(ConnectorError::new(
                    CONNECTOR,
                    at.clone(),
                    format!("no answer within {timeout:?}"),
                )),
            }
        };
        let (client, connection) = runtime.block_on(connecting)?;
        // Runs whenever a call blocks on the runtime; ends with the client.
        // Its error is the cause of the next call's "connection closed".
        let connection_at = at.clone();
        runtime.spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(
                    database = %connection_at,
                    error = &error as &dyn std::error::Error,
                    "the database connection failed"
                );
            }
        });
        Ok(Self {
            runtime,
            client,
            at,
            timeout,
        })
    }

    /// Runs `future` to its end within the timeout.
    fn block<R>(
        runtime: &tokio::runtime::Runtime,
        at: &str,
        timeout: Duration,
        doing: &str,
        future: impl Future<Output = Result<R, tokio_postgres::Error>>,
    ) -> Result<R, ConnectorError> {
        // The timer is made inside the runtime, which it needs.
        match runtime.block_on(async { tokio::time::timeout(timeout, future).await }) {
            Ok(result) => result.map_err(|e| failed(at, doing, e)),
            Err(_) => Err(ConnectorError::new(
                CONNECTOR,
                at.to_owned(),
                format!("{doing}: no answer within {timeout:?}"),
            )),
        }
    }

    /// Runs SQL `statements` (no parameters, `;`-separated) in one
    /// transaction, one session at a time per `lock` name: concurrent
    /// `CREATE TABLE IF NOT EXISTS` of one table can still collide in the
    /// catalog.
    pub(crate) fn run_exclusive(
        &mut self,
        doing: &str,
        lock: &str,
        statements: &str,
    ) -> Result<(), ConnectorError> {
        let client = &mut self.client;
        let running = async move {
            let transaction = client.transaction().await?;
            transaction
                .execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock])
                .await?;
            transaction.batch_execute(statements).await?;
            transaction.commit().await
        };
        Self::block(&self.runtime, &self.at, self.timeout, doing, running)
    }

    /// Runs `statement` once per entry of `rows`, in one transaction. With
    /// a `marker`: only if the marker's epoch is not committed yet, and
    /// the epoch is marked committed in the same transaction; `false` when
    /// it was committed before (a replayed epoch).
    pub(crate) fn write_rows(
        &mut self,
        statement: &str,
        rows: &[SqlParams],
        marker: Option<&EpochMarker<'_>>,
    ) -> Result<bool, ConnectorError> {
        let client = &mut self.client;
        let writing = async move {
            let transaction = client.transaction().await?;
            if let Some(m) = marker {
                let subtask = m.subtask as i32;
                let key: [&(dyn ToSql + Sync); 3] = [&m.job, &m.sink, &subtask];
                // The row exists before it is locked, so that two writers
                // of one subtask (a zombie and its replacement) serialize
                // on it rather than both inserting it.
                transaction
                    .execute(
                        &format!(
                            "INSERT INTO {} (job, sink, subtask, epoch) VALUES ($1, $2, $3, -1) \
                             ON CONFLICT (job, sink, subtask) DO NOTHING",
                            m.table
                        ),
                        &key,
                    )
                    .await?;
                let committed: i64 = transaction
                    .query_one(
                        &format!(
                            "SELECT epoch FROM {} WHERE job = $1 AND sink = $2 AND subtask = $3 FOR UPDATE",
                            m.table
                        ),
                        &key,
                    )
                    .await?
                    .try_get(0)?;
                if committed >= m.epoch as i64 {
                    transaction.rollback().await?;
                    return Ok(false);
                }
            }
            let prepared = transaction.prepare(statement).await?;
            // Sent back to back: tokio-postgres pipelines them.
            let transaction_ref = &transaction;
            let prepared = &prepared;
            let executes = rows.iter().map(|params| async move {
                let params: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p.as_ref() as _).collect();
                transaction_ref.execute(prepared, &params).await
            });
            futures::future::try_join_all(executes).await?;
            if let Some(m) = marker {
                let (subtask, epoch) = (m.subtask as i32, m.epoch as i64);
                transaction
                    .execute(
                        &format!(
                            "UPDATE {} SET epoch = $4 WHERE job = $1 AND sink = $2 AND subtask = $3",
                            m.table
                        ),
                        &[&m.job, &m.sink, &subtask, &epoch],
                    )
                    .await?;
            }
            transaction.commit().await?;
            Ok(true)
        };
        // The timeout grows with the rows: a large epoch is one transaction.
        let timeout = self.timeout * (1 + (rows.len() / 1000) as u32);
        Self::block(&self.runtime, &self.at, timeout, "writing rows", writing)
    }

    /// Runs one statement with parameters; the rows it changed.
    pub(crate) fn execute(
        &mut self,
        doing: &str,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, ConnectorError> {
        let client = &self.client;
        Self::block(
            &self.runtime,
            &self.at,
            self.timeout,
            doing,
            client.execute(statement, params),
        )
    }
}

/// A failed call, with the server's message when it sent one.
fn failed(at: &str, doing: &str, error: tokio_postgres::Error) -> ConnectorError {
    let problem = match error.as_db_error() {
        Some(db) => format!("{doing}: {} ({})", db.message(), db.code().code()),
        None => doing.to_owned(),
    };
    ConnectorError::new(CONNECTOR, at.to_owned(), problem).caused_by(error)
}
