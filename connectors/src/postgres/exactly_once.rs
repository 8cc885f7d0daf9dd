//! [`ExactlyOncePostgresSink`]: each checkpoint's rows committed in one
//! transaction when the checkpoint completes, a replayed epoch skipped.
//!
//! The rows of an epoch wait in the sink and, from the barrier on, in the
//! checkpoint itself (the pending "transaction" is the rows), so nothing
//! reaches the database before its checkpoint completes. The commit then
//! writes them in one transaction that also sets the epoch marker of the
//! subtask that wrote them, the row `(job, sink, subtask)` of the marker
//! table; a commit whose epoch the marker already holds is skipped. So a
//! restored run re-committing a completed checkpoint's rows after a crash
//! (the commit may or may not have reached the database) writes them once.
//!
//! Why not `PREPARE TRANSACTION`: it needs `max_prepared_transactions`
//! above its default of 0, and a prepared transaction whose job never
//! comes back holds its locks forever (PostgreSQL has no timeout for it).
//! Epoch markers need nothing of the server and leave nothing open; the
//! price is a checkpoint holding one interval's rows.

use super::database::{Database, EpochMarker};
use super::{PostgresSink, SqlParams, CONNECTOR};
use crate::error::ConnectorError;
use crate::fault::crash_point;
use serde::{Deserialize, Serialize};
use weir_operators::prelude::*;

/// The rows one subtask wrote in one epoch: what a checkpoint holds for
/// the sink until they are committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingRows<T> {
    /// The subtask that wrote them (its epoch marker guards them).
    pub subtask: u32,
    /// The records, in order.
    pub rows: Vec<T>,
}

/// A [`PostgresSink`] committing each checkpoint's rows once (see
/// [`PostgresSink::exactly_once`]).
pub struct ExactlyOncePostgresSink<T> {
    sink: PostgresSink<T>,
    marker_table: String,
    sink_id: Option<String>,
    open: Option<Open<T>>,
}

struct Open<T> {
    database: Database,
    job: String,
    sink_id: String,
    subtask: u32,
    checkpointing: bool,
    /// Written since the last barrier.
    buffer: Vec<T>,
}

impl<T> Clone for ExactlyOncePostgresSink<T> {
    /// The settings; each clone opens its own connection.
    fn clone(&self) -> Self {
        Self {
            sink: self.sink.clone(),
            marker_table: self.marker_table.clone(),
            sink_id: self.sink_id.clone(),
            open: None,
        }
    }
}

impl<T: Data> ExactlyOncePostgresSink<T> {
    pub(crate) fn new(sink: PostgresSink<T>) -> Self {
        Self {
            sink,
            marker_table: "weir_sink_epochs".into(),
            sink_id: None,
            open: None,
        }
    }

    /// The table of epoch markers (default `weir_sink_epochs`, created if
    /// missing): a name, optionally schema-qualified.
    pub fn marker_table(mut self, table: impl Into<String>) -> Self {
        self.marker_table = table.into();
        self
    }

    /// Names the sink in the marker table (default the sink's uid, or its
    /// name). Markers are per (job name, sink id): two jobs running at once
    /// under one name, or two sinks of a job with one id, need different
    /// ids, or each resets the other's markers.
    pub fn sink_id(mut self, id: impl Into<String>) -> Self {
        self.sink_id = Some(id.into());
        self
    }

    fn open_state(&mut self) -> Result<(&PostgresSink<T>, &str, &mut Open<T>), ConnectorError> {
        match &mut self.open {
            Some(open) => Ok((&self.sink, &self.marker_table, open)),
            None => Err(ConnectorError::new(
                CONNECTOR,
                "the database",
                "used before open",
            )),
        }
    }
}

/// Whether `table` is a plain identifier, optionally schema-qualified
/// (it is spliced into SQL).
fn is_table_name(table: &str) -> bool {
    let is_identifier = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<&str> = table.split('.').collect();
    parts.len() <= 2 && parts.iter().all(|p| is_identifier(p))
}

impl<T: Data> TwoPhaseSink<T> for ExactlyOncePostgresSink<T> {
    type Pending = PendingRows<T>;
    const NAME: &'static str = "postgres-sink";

    fn open(&mut self, info: &TaskInfo) -> Result<(), OperatorError> {
        if !is_table_name(&self.marker_table) {
            return Err(ConnectorError::new(
                CONNECTOR,
                format!("marker table '{}'", self.marker_table),
                "not a table name (letters, digits and _, optionally schema.table)",
            )
            .into());
        }
        let mut database = self.sink.connect()?;
        let table = &self.marker_table;
        database.run_exclusive(
            "creating the marker table",
            table,
            &format!(
                "CREATE TABLE IF NOT EXISTS {table} (job text NOT NULL, sink text NOT NULL, \
                 subtask integer NOT NULL, epoch bigint NOT NULL, PRIMARY KEY (job, sink, subtask))"
            ),
        )?;
        let sink_id = self
            .sink_id
            .clone()
            .unwrap_or_else(|| info.state_id.clone());
        // Epochs after the restored checkpoint (or any, on a fresh start)
        // were never committed in this run's history: a marker beyond it
        // is another run's (a fresh start of the same job, an older
        // lineage), and would make this run skip its own epochs.
        let restored_epoch = info.restored.as_ref().map_or(-1, |r| r.epoch.0 as i64);
        database.execute(
            "resetting epoch markers",
            &format!("UPDATE {table} SET epoch = $3 WHERE job = $1 AND sink = $2 AND epoch > $3"),
            &[&info.job, &sink_id, &restored_epoch],
        )?;
        self.open = Some(Open {
            database,
            job: info.job.clone(),
            sink_id,
            subtask: info.subtask,
            checkpointing: info.checkpointing,
            buffer: Vec::new(),
        });
        Ok(())
    }

    fn write(&mut self, records: Vec<T>) -> Result<(), OperatorError> {
        let (sink, _, open) = self.open_state()?;
        if open.checkpointing {
            open.buffer.extend(records);
        } else {
            // No checkpoints, no replay: straight in.
            let rows: Vec<SqlParams> = records.iter().map(|r| (sink.params_of)(r)).collect();
            open.database.write_rows(&sink.statement, &rows, None)?;
        }
        Ok(())
    }

    fn pre_commit(&mut self, _epoch: Epoch) -> Result<Option<PendingRows<T>>, OperatorError> {
        let (_, _, open) = self.open_state()?;
        if open.buffer.is_empty() {
            return Ok(None);
        }
        Ok(Some(PendingRows {
            subtask: open.subtask,
            rows: std::mem::take(&mut open.buffer),
        }))
    }

    fn commit(&mut self, epoch: Epoch, pending: &PendingRows<T>) -> Result<(), OperatorError> {
        let (sink, table, open) = self.open_state()?;
        let rows: Vec<SqlParams> = pending.rows.iter().map(|r| (sink.params_of)(r)).collect();
        let marker = EpochMarker {
            table,
            job: &open.job,
            sink: &open.sink_id,
            subtask: pending.subtask,
            epoch: epoch.0,
        };
        crash_point("postgres-sink-before-commit");
        let written = open
            .database
            .write_rows(&sink.statement, &rows, Some(&marker))?;
        crash_point("postgres-sink-after-commit");
        if !written {
            tracing::info!(
                epoch = epoch.0,
                subtask = pending.subtask,
                "rows of this epoch were committed before; skipped"
            );
        }
        Ok(())
    }

    fn abort_stale(
        &mut self,
        _info: &TaskInfo,
        _owned: &[PendingRows<T>],
    ) -> Result<(), OperatorError> {
        // Nothing reaches the database before its commit: nothing to abort.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::is_table_name;

    #[test]
    fn only_plain_table_names_are_spliced_into_sql() {
        assert!(is_table_name("weir_sink_epochs"));
        assert!(is_table_name("ops.Epochs_2"));
        assert!(!is_table_name("epochs; DROP TABLE x"));
        assert!(!is_table_name("a.b.c"));
        assert!(!is_table_name("1table"));
        assert!(!is_table_name(""));
    }
}
