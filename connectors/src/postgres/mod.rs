//! PostgreSQL: [`PostgresSink`] runs a statement (an `INSERT`, an upsert
//! with `ON CONFLICT … DO UPDATE`) once per record, with parameters from a
//! function of the record.
//!
//! - this module: the sink's settings and the at-least-once mode (rows
//!   committed as they come, one transaction per batch; replayed after a
//!   restore, so meant for upserts);
//! - `exactly_once`: rows held in the checkpoint and committed with it,
//!   skipped when replayed (an epoch marker per sink subtask);
//! - `database`: the blocking connection (tokio-postgres on a runtime of
//!   the subtask's own).

mod database;
mod exactly_once;

pub use self::exactly_once::{ExactlyOncePostgresSink, PendingRows};

use self::database::Database;
use crate::error::ConnectorError;
use std::sync::Arc;
use std::time::Duration;
pub use tokio_postgres::types::ToSql;
use weir_operators::prelude::*;

pub(crate) const CONNECTOR: &str = "postgres sink";

/// The parameters of one record's statement, `$1`, `$2`, … in order.
pub type SqlParams = Vec<Box<dyn ToSql + Send + Sync>>;

/// Writes records into PostgreSQL by running `statement` once per record.
///
/// ```no_run
/// use weir_connectors::postgres::{PostgresSink, SqlParams};
/// use weir_operators::prelude::*;
///
/// // (key, count, sum) rows; the newest count per key wins.
/// let totals = PostgresSink::new(
///     "postgresql://weir@127.0.0.1:5432/weir",
///     "INSERT INTO totals (key, count, sum) VALUES ($1, $2, $3)
///      ON CONFLICT (key) DO UPDATE SET count = EXCLUDED.count, sum = EXCLUDED.sum",
///     |(key, count, sum): &(String, i64, i64)| -> SqlParams {
///         vec![Box::new(key.clone()), Box::new(*count), Box::new(*sum)]
///     },
/// )
/// .exactly_once();
/// let job = JobBuilder::new("totals");
/// job.source(FromElements::new(vec![("a".to_owned(), 1i64, 7i64)]))
///     .two_phase_sink(totals);
/// ```
///
/// As it is (`stream.sink(sink)`), at least once: each batch is committed
/// as it comes, so what followed the restored checkpoint is written again
/// (harmless for an upsert). [`exactly_once`](Self::exactly_once)
/// (`stream.two_phase_sink(sink)`) commits each checkpoint's rows in one
/// transaction when the checkpoint completes.
pub struct PostgresSink<T> {
    pub(crate) url: String,
    pub(crate) statement: String,
    pub(crate) params_of: Arc<dyn Fn(&T) -> SqlParams + Send + Sync>,
    pub(crate) timeout: Duration,
    setup: Option<String>,
    database: Option<Database>,
}

impl<T> Clone for PostgresSink<T> {
    /// The settings; each clone opens its own connection.
    fn clone(&self) -> Self {
        Self {
            url: self.url.clone(),
            statement: self.statement.clone(),
            params_of: self.params_of.clone(),
            timeout: self.timeout,
            setup: self.setup.clone(),
            database: None,
        }
    }
}

impl<T: Data> PostgresSink<T> {
    /// Runs `statement` for each record, with `params_of(record)` as its
    /// parameters, on the database at `url`
    /// (`postgresql://user:password@host:port/database`, or
    /// `host=… user=… dbname=…`; TLS is not supported).
    pub fn new(
        url: impl Into<String>,
        statement: impl Into<String>,
        params_of: impl Fn(&T) -> SqlParams + Send + Sync + 'static,
    ) -> Self {
        Self {
            url: url.into(),
            statement: statement.into(),
            params_of: Arc::new(params_of),
            timeout: Duration::from_secs(30),
            setup: None,
            database: None,
        }
    }

    /// How long connecting and each statement may take before the sink
    /// fails (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// SQL each subtask runs when it opens, before any row (one subtask at
    /// a time): `CREATE TABLE IF NOT EXISTS …`.
    pub fn setup(mut self, statements: impl Into<String>) -> Self {
        self.setup = Some(statements.into());
        self
    }

    /// Exactly once: each checkpoint's rows in one transaction, committed
    /// when the checkpoint completes (use with `two_phase_sink`).
    pub fn exactly_once(self) -> ExactlyOncePostgresSink<T> {
        ExactlyOncePostgresSink::new(self)
    }

    /// A connection, the setup SQL run.
    pub(crate) fn connect(&self) -> Result<Database, ConnectorError> {
        let mut database = Database::connect(&self.url, self.timeout)?;
        if let Some(setup) = &self.setup {
            database.run_exclusive("running the setup SQL", "weir-sink-setup", setup)?;
        }
        Ok(database)
    }
}

impl<T: Data> Sink<T> for PostgresSink<T> {
    const NAME: &'static str = "postgres-sink";

    fn open(&mut self, _info: &TaskInfo) -> Result<(), OperatorError> {
        self.database = Some(self.connect()?);
        Ok(())
    }

    fn write(&mut self, records: Vec<T>) -> Result<(), OperatorError> {
        let params: Vec<SqlParams> = records.iter().map(|r| (self.params_of)(r)).collect();
        let database = self
            .database
            .as_mut()
            .ok_or_else(|| ConnectorError::new(CONNECTOR, "the database", "used before open"))?;
        database.write_rows(&self.statement, &params, None)?;
        crate::fault::crash_point("postgres-sink-after-write");
        Ok(())
    }
}
