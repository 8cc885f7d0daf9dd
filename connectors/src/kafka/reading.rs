//! What an open [`KafkaSource`](super::KafkaSource) subtask does with what
//! its consumer returns: records decoded and emitted (or the bad-record
//! policy), partitions caught up, client errors ridden out or failed on.

use super::open::Running;
use super::source::{Settings, CONNECTOR};
use super::{KafkaRecord, OnBadRecord};
use crate::error::ConnectorError;
use crate::format::Format;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::Offset;
use std::time::Instant;
use weir_operators::prelude::*;
use weir_operators::Data;

impl Running {
    /// Partition `i` reached its end for now.
    pub(super) fn caught_up(&mut self, i: usize, now: Instant) {
        self.failing_since = None;
        self.watermarks.caught_up(&i, now);
        let part = &mut self.partitions[i];
        if let Some(stop) = part.stop_at {
            // Read committed: the end may be a transaction marker, which is
            // no record; the consumer's position is past it.
            let position = self.consumer.position().ok().and_then(|p| {
                p.find_partition(&part.topic, part.partition)
                    .map(|e| e.offset())
            });
            if matches!(position, Some(Offset::Offset(n)) if n >= stop) {
                part.done = true;
                self.watermarks.remove_split(&i);
            }
        }
    }

    /// Decodes and emits `message` of partition `i` (or applies the
    /// bad-record policy); 1 if a record went out.
    pub(super) fn take<K, V, KF: Format<K>, VF: Format<V>>(
        &mut self,
        settings: &Settings,
        key_format: &KF,
        value_format: &VF,
        i: usize,
        message: &BorrowedMessage<'_>,
        out: &mut Output<KafkaRecord<K, V>>,
    ) -> Result<usize, OperatorError>
    where
        K: Data,
        V: Data,
    {
        self.failing_since = None;
        let part = &mut self.partitions[i];
        let offset = message.offset();
        part.next_offset = offset + 1;
        if part.stop_at.is_some_and(|stop| part.next_offset >= stop) {
            part.done = true;
            self.watermarks.remove_split(&i);
        }
        let timestamp = message.timestamp().to_millis().unwrap_or(0);
        let decoded = key_format
            .decode(message.key())
            .map_err(|e| format!("key: {e}"))
            .and_then(|key| {
                let value = value_format
                    .decode(message.payload())
                    .map_err(|e| format!("value: {e}"))?;
                Ok((key, value))
            });
        let problem = match decoded {
            Ok((key, value)) => {
                self.watermarks.observe(&i, timestamp);
                out.collect(KafkaRecord {
                    topic: part.topic.clone(),
                    partition: part.partition,
                    offset,
                    timestamp,
                    key,
                    value,
                })?;
                return Ok(1);
            }
            Err(problem) => problem,
        };
        match &settings.on_bad_record {
            OnBadRecord::Fail => Err(ConnectorError::new(
                CONNECTOR,
                part.at(offset),
                format!(
                    "the record does not decode ({problem}); skip it or send it to a dead-letter topic with the source's bad-record policy"
                ),
            )
            .into()),
            OnBadRecord::Skip => {
                self.skipped += 1;
                tracing::warn!(
                    topic = %part.topic,
                    partition = part.partition,
                    offset,
                    skipped = self.skipped,
                    %problem,
                    "kafka source skipped a record that does not decode"
                );
                Ok(0)
            }
            OnBadRecord::DeadLetter(topic) => {
                let producer = self.dead_letters.as_ref().expect("created with the policy");
                let (partition, offset_text) = (part.partition.to_string(), offset.to_string());
                let headers = OwnedHeaders::new()
                    .insert(Header { key: "weir.topic", value: Some(part.topic.as_str()) })
                    .insert(Header { key: "weir.partition", value: Some(partition.as_str()) })
                    .insert(Header { key: "weir.offset", value: Some(offset_text.as_str()) })
                    .insert(Header { key: "weir.error", value: Some(problem.as_str()) });
                let mut record = BaseRecord::<[u8], [u8]>::to(topic).headers(headers);
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                if let Some(payload) = message.payload() {
                    record = record.payload(payload);
                }
                producer.send(record).map_err(|(e, _)| {
                    ConnectorError::new(
                        CONNECTOR,
                        format!("dead-letter topic '{topic}'"),
                        format!("writing the bad record at {} failed", part.at(offset)),
                    )
                    .caused_by(e)
                })?;
                self.skipped += 1;
                Ok(0)
            }
        }
    }

    /// A client error: transport trouble is ridden out for the connection's
    /// timeout; anything else, or trouble that lasts, fails the source.
    pub(super) fn client_error(
        &mut self,
        settings: &Settings,
        at: String,
        error: KafkaError,
    ) -> Result<(), ConnectorError> {
        let transient = matches!(
            error.rdkafka_error_code(),
            Some(
                rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure
                    | rdkafka::types::RDKafkaErrorCode::AllBrokersDown
                    | rdkafka::types::RDKafkaErrorCode::Resolve
                    | rdkafka::types::RDKafkaErrorCode::OperationTimedOut
                    | rdkafka::types::RDKafkaErrorCode::NetworkException
            )
        );
        if !transient {
            return Err(ConnectorError::new(CONNECTOR, at, "reading failed").caused_by(error));
        }
        let (since, _) = self.failing_since.get_or_insert((Instant::now(), error));
        if since.elapsed() >= settings.connection.timeout {
            let (_, error) = self.failing_since.take().expect("set above");
            return Err(settings.connection.unreachable(CONNECTOR, error));
        }
        Ok(())
    }
}
