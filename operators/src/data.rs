//! Records, batches and the messages that flow between tasks.

use crate::error::OperatorError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;
use std::fmt::Debug;
use std::hash::Hash;
use weir_protocol::Epoch;

/// Event time or processing time, in milliseconds since the Unix epoch (or
/// any origin the job chooses, used consistently).
pub type Timestamp = i64;

/// The watermark that ends event time: it fires every pending timer and window.
pub const MAX_WATERMARK: Timestamp = Timestamp::MAX;

/// A record type that can flow through a stream.
///
/// Implemented for every type that is cloneable, sendable, printable for
/// debugging and serializable (so it can cross process boundaries).
pub trait Data: Clone + Send + Sync + Debug + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Sync + Debug + Serialize + DeserializeOwned + 'static> Data for T {}

/// A type that can key a stream: hashed into a key group and used to index
/// keyed state.
pub trait Key: Data + Hash + Eq {}
impl<T: Data + Hash + Eq> Key for T {}

/// A batch of records of one type, with the type erased so that batches of
/// any stream can travel through the same channels.
pub struct Batch {
    records: Box<dyn Any + Send>,
    len: usize,
}

impl Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Batch({} records)", self.len)
    }
}

impl Batch {
    /// Wraps records into a batch.
    pub fn new<T: Data>(records: Vec<T>) -> Self {
        let len = records.len();
        Self {
            records: Box::new(records),
            len,
        }
    }

    /// Number of records in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A batch of `len` records still in the encoding of `codec`, as
    /// received from another worker: the task that takes the records
    /// decodes them, so decoding runs on the consumers' threads rather than
    /// on the connection's.
    pub fn encoded(bytes: Vec<u8>, len: usize, codec: BatchCodec) -> Self {
        Self {
            records: Box::new(Encoded { bytes, codec }),
            len,
        }
    }

    /// Decodes an [`encoded`](Self::encoded) batch; any other batch is
    /// returned as it is.
    pub fn decode(self) -> Result<Batch, OperatorError> {
        match self.records.downcast::<Encoded>() {
            Ok(encoded) => encoded.codec.decode(&encoded.bytes),
            Err(records) => Ok(Batch {
                records,
                len: self.len,
            }),
        }
    }

    /// The records, if they are of type `T`; the batch back otherwise.
    /// An encoded batch is decoded first (a batch that does not decode is
    /// returned as it is).
    pub fn into_records<T: Data>(self) -> Result<Vec<T>, Batch> {
        let len = self.len;
        let records = match self.records.downcast::<Encoded>() {
            Ok(encoded) => match encoded.codec.decode(&encoded.bytes) {
                Ok(batch) => batch.records,
                Err(_) => {
                    return Err(Batch {
                        records: encoded,
                        len,
                    })
                }
            },
            Err(records) => records,
        };
        records
            .downcast::<Vec<T>>()
            .map(|b| *b)
            .map_err(|records| Batch { records, len })
    }
}

/// Records as they came over the network, not decoded yet.
struct Encoded {
    bytes: Vec<u8>,
    codec: BatchCodec,
}

/// Encodes and decodes the batches of one edge for the network: made where
/// the edge's record type is known, used by a runtime that sees only
/// type-erased batches.
#[derive(Clone, Copy)]
pub struct BatchCodec {
    record_type: &'static str,
    encode: fn(&Batch, &'static str) -> Result<Vec<u8>, OperatorError>,
    decode: fn(&[u8], &'static str) -> Result<Batch, OperatorError>,
}

impl Debug for BatchCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchCodec({})", self.record_type)
    }
}

impl BatchCodec {
    /// The codec of batches of `T` (postcard, through `T`'s serde impls).
    pub fn of<T: Data>() -> Self {
        fn encode<T: Data>(
            batch: &Batch,
            record_type: &'static str,
        ) -> Result<Vec<u8>, OperatorError> {
            let records =
                batch
                    .records
                    .downcast_ref::<Vec<T>>()
                    .ok_or_else(|| OperatorError::Codec {
                        record_type,
                        problem: "the batch holds records of another type".into(),
                    })?;
            postcard::to_stdvec(records).map_err(|e| OperatorError::Codec {
                record_type,
                problem: e.to_string(),
            })
        }
        fn decode<T: Data>(
            bytes: &[u8],
            record_type: &'static str,
        ) -> Result<Batch, OperatorError> {
            let records: Vec<T> =
                postcard::from_bytes(bytes).map_err(|e| OperatorError::Codec {
                    record_type,
                    problem: e.to_string(),
                })?;
            Ok(Batch::new(records))
        }
        Self {
            record_type: std::any::type_name::<T>(),
            encode: encode::<T>,
            decode: decode::<T>,
        }
    }

    /// The batch's records as bytes.
    pub fn encode(&self, batch: &Batch) -> Result<Vec<u8>, OperatorError> {
        // A batch passed on still encoded (the same record type) is sent as is.
        if let Some(encoded) = batch.records.downcast_ref::<Encoded>() {
            return Ok(encoded.bytes.clone());
        }
        (self.encode)(batch, self.record_type)
    }

    /// A batch from bytes made by [`encode`](Self::encode).
    pub fn decode(&self, bytes: &[u8]) -> Result<Batch, OperatorError> {
        (self.decode)(bytes, self.record_type)
    }

    /// The number of records in bytes made by [`encode`](Self::encode),
    /// read from their length prefix without decoding them.
    pub fn encoded_len(&self, bytes: &[u8]) -> Result<usize, OperatorError> {
        // postcard writes a sequence's length first, as a LEB128 varint.
        let mut len: u64 = 0;
        for (i, byte) in bytes.iter().take(10).enumerate() {
            len |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(len as usize);
            }
        }
        Err(OperatorError::Codec {
            record_type: self.record_type,
            problem: "the batch has no valid length prefix".into(),
        })
    }
}

/// What a task receives on one input channel.
#[derive(Debug)]
pub enum Message {
    /// A batch of records.
    Data(Batch),
    /// No record with a timestamp at or below this one will follow on this channel.
    Watermark(Timestamp),
    /// Everything before this belongs to checkpoint `epoch`, nothing after.
    Barrier(Epoch),
    /// No more records follow on this channel; barriers still may (the
    /// final checkpoint).
    EndOfData,
    /// The channel is finished; nothing follows.
    EndOfStream,
    /// The barrier of a stop-with-savepoint: everything before it belongs
    /// to checkpoint `epoch`, and nothing follows on this channel. The
    /// receiver neither advances its watermark to the end nor emits final
    /// results: once aligned it snapshots, sends a stop barrier on, and
    /// ends when its commits are done.
    StopBarrier(Epoch),
}
