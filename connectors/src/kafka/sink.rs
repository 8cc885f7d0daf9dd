//! [`KafkaSink`]: records into a topic, the key from a user function,
//! values as bytes, UTF-8 or JSON. As it is, at least once (an idempotent
//! producer flushed at every barrier); [`KafkaSink::exactly_once`] makes
//! it transactional.

use super::exactly_once::ExactlyOnceKafkaSink;
use super::KafkaConnection;
use crate::error::ConnectorError;
use crate::format::Format;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_operators::prelude::*;

pub(crate) const CONNECTOR: &str = "kafka sink";

/// Encodes a record's key or value (`None`: a null).
type Encoder<T> = Arc<dyn Fn(&T) -> Result<Option<Vec<u8>>, String> + Send + Sync>;
/// A record's Kafka timestamp, ms since the epoch.
type TimestampOf<T> = Arc<dyn Fn(&T) -> i64 + Send + Sync>;

/// Writes records of type `T` into a Kafka topic.
///
/// ```no_run
/// use weir_connectors::format::Utf8;
/// use weir_connectors::kafka::{KafkaConnection, KafkaSink};
/// use weir_operators::prelude::*;
///
/// // `key,value` lines keyed by their first field, committed with each
/// // checkpoint.
/// let totals = KafkaSink::new(KafkaConnection::new("127.0.0.1:9092"), "totals", Utf8)
///     .key(Utf8, |line: &String| line.split(',').next().unwrap_or("").to_owned())
///     .exactly_once();
/// let job = JobBuilder::new("copy");
/// job.source(FileLines::new("pairs.csv"))
///     .filter(|line: &String| line.contains(','))
///     .two_phase_sink(totals);
/// ```
///
/// As it is (`stream.sink(sink)`), at least once: each barrier waits until
/// the brokers acknowledged every record written before it, so a restore
/// loses nothing but may write again what followed the restored
/// checkpoint. [`exactly_once`](Self::exactly_once) (`stream.two_phase_sink(sink)`)
/// writes through Kafka transactions committed when their checkpoint
/// completes: a consumer reading with `isolation.level=read_committed`
/// sees every record once.
pub struct KafkaSink<T> {
    pub(crate) connection: KafkaConnection,
    pub(crate) topic: String,
    key: Option<Encoder<T>>,
    value: Encoder<T>,
    timestamp: Option<TimestampOf<T>>,
    /// Open at-least-once producer (after `open`).
    producer: Option<BaseProducer<DeliveryTracker>>,
}

impl<T> Clone for KafkaSink<T> {
    /// The settings; each clone opens its own producer.
    fn clone(&self) -> Self {
        Self {
            connection: self.connection.clone(),
            topic: self.topic.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
            timestamp: self.timestamp.clone(),
            producer: None,
        }
    }
}

impl<T: Data> KafkaSink<T> {
    /// Records into `topic`, each value written by `value_format`, with no
    /// key (librdkafka spreads them over the partitions).
    pub fn new<VF: Format<T>>(
        connection: KafkaConnection,
        topic: impl Into<String>,
        value_format: VF,
    ) -> Self {
        Self {
            connection,
            topic: topic.into(),
            key: None,
            value: Arc::new(move |record: &T| value_format.encode(record)),
            timestamp: None,
            producer: None,
        }
    }

    /// Keys each record by `key_of(record)`, written by `key_format`: the
    /// records of one key go to one partition, in order.
    pub fn key<K, KF: Format<K>>(
        mut self,
        key_format: KF,
        key_of: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> Self {
        self.key = Some(Arc::new(move |record: &T| {
            key_format.encode(&key_of(record))
        }));
        self
    }

    /// Gives each record the Kafka timestamp `timestamp_of(record)` (ms
    /// since the epoch; by default the time it is sent), for example its
    /// event time, which a [`KafkaSource`](super::KafkaSource) reads back
    /// as event time.
    pub fn timestamp(mut self, timestamp_of: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        self.timestamp = Some(Arc::new(timestamp_of));
        self
    }

    /// Transactional: exactly once for `read_committed` consumers (use
    /// with `two_phase_sink`).
    pub fn exactly_once(self) -> ExactlyOnceKafkaSink<T> {
        ExactlyOnceKafkaSink::new(self)
    }

    /// The topic, as "topic 'x'", for errors.
    pub(crate) fn at(&self) -> String {
        format!("topic '{}'", self.topic)
    }

    /// Sends `records` through `producer`, waiting for room when
    /// librdkafka's queue is full.
    pub(crate) fn send_all(
        &self,
        producer: &BaseProducer<DeliveryTracker>,
        records: &[T],
    ) -> Result<(), ConnectorError> {
        for record in records {
            let key = match &self.key {
                Some(key) => key(record).map_err(|e| self.bad_record("key", e))?,
                None => None,
            };
            let value = (self.value)(record).map_err(|e| self.bad_record("value", e))?;
            let mut message = BaseRecord::<[u8], [u8]>::to(&self.topic);
            if let Some(key) = &key {
                message = message.key(key);
            }
            if let Some(value) = &value {
                message = message.payload(value);
            }
            if let Some(timestamp_of) = &self.timestamp {
                message = message.timestamp(timestamp_of(record));
            }
            loop {
                match producer.send(message) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        message = back;
                        // Serves the delivery reports that free room (a
                        // poll blocks for its whole timeout, so a short one).
                        producer.poll(Duration::from_millis(1));
                    }
                    Err((e, _)) => {
                        return Err(ConnectorError::new(
                            CONNECTOR,
                            self.at(),
                            "the producer refused a record",
                        )
                        .caused_by(e))
                    }
                }
            }
        }
        producer.poll(Duration::ZERO);
        producer.context().failure(self)
    }

    /// Waits until the brokers acknowledged everything sent.
    pub(crate) fn flush_producer(
        &self,
        producer: &BaseProducer<DeliveryTracker>,
    ) -> Result<(), ConnectorError> {
        producer
            .flush(self.connection.request_timeout())
            .map_err(|e| {
                ConnectorError::new(
                    CONNECTOR,
                    self.at(),
                    format!(
                        "the brokers did not acknowledge every record within {:?}",
                        self.connection.request_timeout()
                    ),
                )
                .caused_by(e)
            })?;
        producer.context().failure(self)
    }

    /// A producer with `defaults` under the user's properties.
    pub(crate) fn producer(
        &self,
        defaults: &[(&str, &str)],
    ) -> Result<BaseProducer<DeliveryTracker>, ConnectorError> {
        self.producer_with(defaults, &[])
    }

    /// A producer with `defaults` under the user's properties and
    /// `overrides` over them.
    pub(crate) fn producer_with(
        &self,
        defaults: &[(&str, &str)],
        overrides: &[(&str, &str)],
    ) -> Result<BaseProducer<DeliveryTracker>, ConnectorError> {
        let mut config = self.connection.client_config(defaults);
        for (key, value) in overrides {
            config.set(*key, *value);
        }
        config
            .create_with_context(DeliveryTracker::default())
            .map_err(|e| {
                ConnectorError::new(CONNECTOR, self.connection.at(), "cannot create a producer")
                    .caused_by(e)
            })
    }

    fn bad_record(&self, part: &str, problem: String) -> ConnectorError {
        ConnectorError::new(
            CONNECTOR,
            self.at(),
            format!("cannot encode a record's {part}: {problem}"),
        )
    }
}

impl<T: Data> Sink<T> for KafkaSink<T> {
    const NAME: &'static str = "kafka-sink";

    fn open(&mut self, _info: &TaskInfo) -> Result<(), OperatorError> {
        // Idempotence: a retried send after a lost acknowledgement is not
        // written twice.
        self.producer = Some(self.producer(&[("enable.idempotence", "true")])?);
        Ok(())
    }

    fn write(&mut self, records: Vec<T>) -> Result<(), OperatorError> {
        let producer = self.open_producer()?;
        Ok(self.send_all(producer, &records)?)
    }

    fn flush(&mut self) -> Result<(), OperatorError> {
        let producer = self.open_producer()?;
        Ok(self.flush_producer(producer)?)
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        Sink::flush(self)
    }
}

impl<T: Data> KafkaSink<T> {
    fn open_producer(&self) -> Result<&BaseProducer<DeliveryTracker>, ConnectorError> {
        self.producer
            .as_ref()
            .ok_or_else(|| ConnectorError::new(CONNECTOR, self.at(), "used before open"))
    }
}

/// Keeps the first failed delivery librdkafka reports, so that the next
/// write or flush fails with it.
#[derive(Default)]
pub(crate) struct DeliveryTracker {
    failed: Mutex<Option<KafkaError>>,
}

impl DeliveryTracker {
    /// The first failed delivery since the last call, as an error.
    fn failure<T: Data>(&self, sink: &KafkaSink<T>) -> Result<(), ConnectorError> {
        let failed = self.failed.lock().map(|mut f| f.take()).unwrap_or(None);
        match failed {
            None => Ok(()),
            Some(e) => {
                Err(
                    ConnectorError::new(CONNECTOR, sink.at(), "the brokers did not take a record")
                        .caused_by(e),
                )
            }
        }
    }
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            if let Ok(mut failed) = self.failed.lock() {
                failed.get_or_insert_with(|| error.clone());
            }
        }
    }
}
