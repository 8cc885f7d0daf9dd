//! The Kafka transactions of crashed runs: which to commit, which to abort,
//! decided by pure functions of what the transaction coordinator reports
//! ([`resume`], [`TransactionalIds::is_stale_share`]), and the admin
//! requests that report and act ([`TransactionAdmin`]).
//!
//! librdkafka can only commit a transaction its own producer began; after
//! a crash the producer is gone, so the restored run commits the
//! pre-committed transaction itself: it asks the coordinator for the
//! transaction's producer id and epoch (DescribeTransactions) and ends it
//! with those (EndTxn), as Flink's `KafkaSink` does by resuming a producer.

use super::broker::{BrokerConnection, RETRY_BACKOFF};
use super::KafkaConnection;
use crate::error::ConnectorError;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, EndTxnRequest, FindCoordinatorRequest, ListTransactionsRequest,
    MetadataRequest, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::time::Instant;

const CONNECTOR: &str = "kafka sink";

/// A transaction's state at its coordinator (Kafka's `TransactionState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TransactionState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
    Other(String),
}

impl TransactionState {
    pub(crate) fn parse(name: &str) -> Self {
        match name {
            "Empty" => Self::Empty,
            "Ongoing" => Self::Ongoing,
            "PrepareCommit" => Self::PrepareCommit,
            "PrepareAbort" => Self::PrepareAbort,
            "CompleteCommit" => Self::CompleteCommit,
            "CompleteAbort" => Self::CompleteAbort,
            "Dead" => Self::Dead,
            "PrepareEpochFence" => Self::PrepareEpochFence,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// What the coordinator says of a transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Described {
    /// Its current transaction's state and producer.
    Known {
        state: TransactionState,
        producer_id: i64,
        producer_epoch: i16,
    },
    /// The coordinator knows no such id.
    NotFound,
    /// The coordinator is loading, moved or busy; it may know later.
    Unavailable,
}

/// What to do with a transaction a completed checkpoint pre-committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Still open: end it with a commit as this producer.
    Commit {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// Committed, or the coordinator is committing it.
    Done,
    /// The coordinator is between states; ask again.
    AskAgain,
    /// Aborted or forgotten: its records are not in the topic.
    Lost(String),
}

/// Decides for a pre-committed transaction.
///
/// Its transactional id held this one transaction since it was
/// pre-committed: the sink reuses an id only once a completed checkpoint
/// no longer holds it (see `exactly_once.rs`), and only a run restored
/// from such a checkpoint asks. So an open transaction under the id is
/// the pre-committed one, and a commit under the id is its commit.
pub(crate) fn resume(described: &Described) -> Resume {
    let (state, producer_id, producer_epoch) = match described {
        Described::Known {
            state,
            producer_id,
            producer_epoch,
        } => (state, *producer_id, *producer_epoch),
        Described::NotFound => {
            return Resume::Lost(
                "the coordinator knows no such transactional id: it expired \
                 (transactional.id.expiration.ms) before the job was restored"
                    .into(),
            )
        }
        Described::Unavailable => return Resume::AskAgain,
    };
    match state {
        TransactionState::Ongoing => Resume::Commit {
            producer_id,
            producer_epoch,
        },
        TransactionState::PrepareCommit | TransactionState::CompleteCommit => Resume::Done,
        TransactionState::PrepareEpochFence => Resume::AskAgain,
        TransactionState::PrepareAbort | TransactionState::CompleteAbort => Resume::Lost(
            "the broker aborted it: transaction.timeout.ms passed before the restored job \
             committed it (raise it above the time a restore may take), or another job \
             uses the same transactional id prefix"
                .into(),
        ),
        TransactionState::Empty | TransactionState::Dead | TransactionState::Other(_) => {
            Resume::Lost(format!(
                "the coordinator holds it in state {:?}, not committed",
                state
            ))
        }
    }
}

/// The transactional ids of one sink: `{prefix}/{attempt}/{subtask}/{slot}`.
#[derive(Debug, Clone)]
pub(crate) struct TransactionalIds {
    prefix: String,
}

impl TransactionalIds {
    pub(crate) fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub(crate) fn id(&self, attempt: &str, subtask: u32, slot: usize) -> String {
        format!("{}/{attempt}/{subtask}/{slot}", self.prefix)
    }

    /// The attempt and subtask of one of this sink's ids: exactly three
    /// fields after the prefix, so that the ids of a sink whose prefix
    /// starts with this one's (`out` and `out/eu`) are not taken for ours.
    fn parse<'a>(&self, id: &'a str) -> Option<(&'a str, Option<u32>)> {
        let rest = id.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let fields: Vec<&str> = rest.split('/').collect();
        let [attempt, subtask, _slot] = fields[..] else {
            return None;
        };
        Some((attempt, subtask.parse().ok()))
    }

    /// Whether subtask `subtask` of `parallelism` aborts open transaction
    /// `id`: one of this sink's, of an earlier attempt, not held by the
    /// restored checkpoint, and of an old subtask that maps to this one
    /// (an id whose subtask cannot be read goes to subtask 0).
    pub(crate) fn is_stale_share(
        &self,
        id: &str,
        attempt: &str,
        owned: &[String],
        subtask: u32,
        parallelism: u32,
    ) -> bool {
        let Some((id_attempt, id_subtask)) = self.parse(id) else {
            return false;
        };
        if id_attempt == attempt || owned.iter().any(|o| o == id) {
            return false;
        }
        id_subtask.unwrap_or(0) % parallelism.max(1) == subtask
    }
}

/// Admin requests about transactions, each within the connection's timeout.
pub(crate) struct TransactionAdmin<'a> {
    connection: &'a KafkaConnection,
}

impl<'a> TransactionAdmin<'a> {
    pub(crate) fn new(connection: &'a KafkaConnection) -> Self {
        Self { connection }
    }

    /// Commits pre-committed transaction `id` whatever producer began it;
    /// nothing if it is committed already.
    pub(crate) fn commit_resumed(&self, id: &str) -> Result<(), ConnectorError> {
        let deadline = Instant::now() + self.connection.request_timeout();
        loop {
            let mut coordinator = self.coordinator(id, deadline)?;
            let described = self.describe(&mut coordinator, id)?;
            match resume(&described) {
                Resume::Done => return Ok(()),
                Resume::Lost(why) => {
                    return Err(ConnectorError::new(
                        CONNECTOR,
                        format!("transactional id '{id}'"),
                        format!("a completed checkpoint's transaction cannot be committed: {why}"),
                    ))
                }
                Resume::AskAgain => {}
                Resume::Commit {
                    producer_id,
                    producer_epoch,
                } => {
                    let request = EndTxnRequest::default()
                        .with_transactional_id(TransactionalId(StrBytes::from_string(
                            id.to_owned(),
                        )))
                        .with_producer_id(ProducerId(producer_id))
                        .with_producer_epoch(producer_epoch)
                        .with_committed(true);
                    let response = coordinator.request(&request, 3)?;
                    match ResponseError::try_from_code(response.error_code) {
                        None => {
                            tracing::info!(
                                transactional_id = id,
                                "committed a restored transaction"
                            );
                            return Ok(());
                        }
                        // Busy, moved, or the state changed under us: ask again.
                        Some(e) if is_transient(e) || e == ResponseError::InvalidTxnState => {}
                        Some(_) => return Err(coordinator.error("EndTxn", response.error_code)),
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(ConnectorError::new(
                    CONNECTOR,
                    format!("transactional id '{id}'"),
                    format!(
                        "its coordinator stayed busy for {:?}",
                        self.connection.request_timeout()
                    ),
                ));
            }
            std::thread::sleep(RETRY_BACKOFF);
        }
    }

    /// The ids of every open transaction, from every broker (each lists
    /// the ones it coordinates).
    pub(crate) fn list_open(&self) -> Result<Vec<String>, ConnectorError> {
        let mut bootstrap = self.bootstrap()?;
        let metadata =
            bootstrap.request(&MetadataRequest::default().with_topics(Some(Vec::new())), 9)?;
        let mut ids = Vec::new();
        let deadline = Instant::now() + self.connection.request_timeout();
        for broker in metadata.brokers {
            let address = format!("{}:{}", broker.host.as_str(), broker.port);
            let mut connection = BrokerConnection::connect(self.connection, &address)?;
            let request = ListTransactionsRequest::default()
                .with_state_filters(vec![StrBytes::from_static_str("Ongoing")]);
            loop {
                let response = connection.request(&request, 0)?;
                match ResponseError::try_from_code(response.error_code) {
                    None => {
                        ids.extend(
                            response
                                .transaction_states
                                .into_iter()
                                .map(|t| t.transactional_id.0.as_str().to_owned()),
                        );
                        break;
                    }
                    // A coordinator still loading its transactions.
                    Some(e) if is_transient(e) && Instant::now() < deadline => {
                        std::thread::sleep(RETRY_BACKOFF)
                    }
                    Some(_) => {
                        return Err(connection.error("ListTransactions", response.error_code))
                    }
                }
            }
        }
        Ok(ids)
    }

    fn bootstrap(&self) -> Result<BrokerConnection, ConnectorError> {
        let mut last = None;
        for address in self.connection.bootstrap_servers().split(',') {
            match BrokerConnection::connect(self.connection, address.trim()) {
                Ok(broker) => return Ok(broker),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            ConnectorError::new(CONNECTOR, self.connection.at(), "no bootstrap server given")
        }))
    }

    /// A connection to the coordinator of transactional id `id`.
    fn coordinator(&self, id: &str, deadline: Instant) -> Result<BrokerConnection, ConnectorError> {
        let mut bootstrap = self.bootstrap()?;
        loop {
            let request = FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(id.to_owned()))
                .with_key_type(1);
            let response = bootstrap.request(&request, 3)?;
            match ResponseError::try_from_code(response.error_code) {
                None => {
                    let address = format!("{}:{}", response.host.as_str(), response.port);
                    if address == bootstrap.address() {
                        return Ok(bootstrap);
                    }
                    return BrokerConnection::connect(self.connection, &address);
                }
                Some(e) if is_transient(e) && Instant::now() < deadline => {
                    std::thread::sleep(RETRY_BACKOFF)
                }
                Some(_) => return Err(bootstrap.error("FindCoordinator", response.error_code)),
            }
        }
    }

    /// What the coordinator of `id` says of it.
    fn describe(
        &self,
        coordinator: &mut BrokerConnection,
        id: &str,
    ) -> Result<Described, ConnectorError> {
        let request = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(id.to_owned()))]);
        let response = coordinator.request(&request, 0)?;
        let Some(state) = response.transaction_states.into_iter().next() else {
            return Err(coordinator.error("DescribeTransactions (no answer)", -1));
        };
        match ResponseError::try_from_code(state.error_code) {
            None => Ok(Described::Known {
                state: TransactionState::parse(state.transaction_state.as_str()),
                producer_id: state.producer_id.0,
                producer_epoch: state.producer_epoch,
            }),
            Some(ResponseError::TransactionalIdNotFound) => Ok(Described::NotFound),
            Some(e) if is_transient(e) => Ok(Described::Unavailable),
            Some(_) => Err(coordinator.error("DescribeTransactions", state.error_code)),
        }
    }
}

/// The coordinator is loading, moved or busy with this transaction.
fn is_transient(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::CoordinatorLoadInProgress
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::NotCoordinator
            | ResponseError::ConcurrentTransactions
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(state: &str) -> Described {
        Described::Known {
            state: TransactionState::parse(state),
            producer_id: 7,
            producer_epoch: 2,
        }
    }

    #[test]
    fn an_open_pre_committed_transaction_is_committed_as_its_producer() {
        assert_eq!(
            resume(&described("Ongoing")),
            Resume::Commit {
                producer_id: 7,
                producer_epoch: 2
            }
        );
    }

    #[test]
    fn a_committed_or_committing_transaction_needs_nothing() {
        assert_eq!(resume(&described("CompleteCommit")), Resume::Done);
        assert_eq!(resume(&described("PrepareCommit")), Resume::Done);
        assert_eq!(resume(&described("PrepareEpochFence")), Resume::AskAgain);
        assert_eq!(resume(&Described::Unavailable), Resume::AskAgain);
    }

    #[test]
    fn an_aborted_or_forgotten_transaction_is_lost_and_says_why() {
        let Resume::Lost(why) = resume(&described("CompleteAbort")) else {
            panic!("an aborted transaction must not count as committed");
        };
        assert!(why.contains("transaction.timeout.ms"), "{why}");
        let Resume::Lost(why) = resume(&Described::NotFound) else {
            panic!("an unknown id must not count as committed");
        };
        assert!(why.contains("transactional.id.expiration.ms"), "{why}");
        assert!(matches!(resume(&described("Empty")), Resume::Lost(_)));
    }

    #[test]
    fn each_stale_transaction_goes_to_one_new_subtask() {
        let ids = TransactionalIds::new("weir/job/sink");
        let old = |subtask: u32| ids.id("3-a1b2", subtask, 0);
        // Old subtasks 0..4 over 2 new ones: 0,2 → 0 and 1,3 → 1.
        for old_subtask in 0..4 {
            for new in 0..2 {
                assert_eq!(
                    ids.is_stale_share(&old(old_subtask), "4-c3d4", &[], new, 2),
                    old_subtask % 2 == new
                );
            }
        }
        // The current attempt's, a checkpoint's own, and other sinks' are kept.
        assert!(!ids.is_stale_share(&ids.id("4-c3d4", 0, 1), "4-c3d4", &[], 0, 1));
        assert!(!ids.is_stale_share(&old(0), "4-c3d4", &[old(0)], 0, 1));
        assert!(!ids.is_stale_share("weir/job/sink2/3-a1b2/0/0", "4-c3d4", &[], 0, 1));
        assert!(!ids.is_stale_share("weir/job/sinkx", "4-c3d4", &[], 0, 1));
        // Ids of a sink whose prefix extends this one's are not ours.
        assert!(!ids.is_stale_share("weir/job/sink/eu/3-a1b2/0/0", "4-c3d4", &[], 0, 1));
        // A mangled subtask number still gets aborted, by subtask 0.
        assert!(ids.is_stale_share("weir/job/sink/3-a1b2/x/0", "4-c3d4", &[], 0, 2));
        assert!(!ids.is_stale_share("weir/job/sink/3-a1b2/x/0", "4-c3d4", &[], 1, 2));
    }
}
