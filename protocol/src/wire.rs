//! The wire formats between processes, as pure encode/decode functions
//! (the sockets live in the runtime and the coordinator).
//!
//! Every frame is a 4-byte big-endian length followed by that many bytes.
//! - Control frames (worker ↔ coordinator) carry JSON: they are rare, and
//!   readable in a packet capture. This crate defines the messages and the
//!   framing; the runtime and the coordinator, which own a JSON library,
//!   encode them.
//! - Exchange frames (worker ↔ worker) carry [`ExchangeFrame`]s encoded
//!   with rkyv and validated (bytecheck) on receipt. A record batch
//!   travels as the bytes of its records, encoded by the edge's record
//!   codec (records are user types with serde impls, not rkyv ones).

use crate::cluster::{Deployment, DeploymentOutcome, DeploymentReport, SubtaskRestore, WorkerId};
use crate::control::{ControlCommand, WorkerEvent};
use crate::error::WireError;
use serde::{Deserialize, Serialize};

/// Version of both wire protocols; peers with another version are refused.
/// 3: state files name their format (`StateFile::format`) in acks and
/// restore points; records travel in records frames ([`RECORDS_FRAME`]).
/// 4: a records frame's records are a count and bitcode, not postcard.
/// 5: a channel can say it is idle ([`FrameBody::Idle`]).
pub const PROTOCOL_VERSION: u32 = 6;

/// Largest frame accepted, in bytes (a bigger length prefix is garbage).
pub const MAX_FRAME_LEN: usize = 64 << 20;

/// From a worker to the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToCoordinator {
    /// The first frame of a worker's connection.
    Register {
        /// Must equal [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The cluster's shared token, when the coordinator requires one.
        token: Option<String>,
        /// A name for logs (host and pid by default).
        name: String,
        /// Slots offered: each runs one subtask of every operator of a job.
        slots: u32,
        /// Where the worker serves data exchange to its peers.
        data_addr: String,
        /// Where it serves its metrics (`/metrics`), if it does.
        #[serde(default)]
        metrics_addr: Option<String>,
        /// The id an earlier leader gave this worker process, which keeps
        /// it when the new leader adopts its deployments.
        #[serde(default)]
        previous: Option<WorkerId>,
        /// The deployments it runs, and those that ended since it last
        /// registered: what a new leader adopts.
        #[serde(default)]
        deployments: Vec<DeploymentReport>,
    },
    /// The worker is alive.
    Heartbeat,
    /// A checkpoint event of a deployment's subtask.
    Event {
        /// The job's number.
        job_number: u32,
        /// The attempt it belongs to.
        attempt: u32,
        /// The deployment's region, for a job deployed region by region.
        #[serde(default)]
        region: Option<u32>,
        /// The event.
        event: WorkerEvent,
    },
    /// Every subtask of the worker's part of a deployment is running (its
    /// state restored).
    Started {
        /// The job's number.
        job_number: u32,
        /// The attempt.
        attempt: u32,
        /// The deployment's region, for a job deployed region by region.
        #[serde(default)]
        region: Option<u32>,
        /// For restored subtasks: which tier served their state.
        #[serde(default)]
        restored: Vec<SubtaskRestore>,
    },
    /// A spare finished copying its share of a checkpoint's files
    /// ([`ToWorker::CatchUp`]).
    CaughtUp {
        /// The job's number.
        job_number: u32,
        /// The checkpoint.
        epoch: u64,
        /// Bytes copied (files it held already are not counted).
        copied_bytes: u64,
        /// How long it took, in milliseconds.
        took_ms: u64,
        /// Why it stopped short, if it did.
        failure: Option<String>,
    },
    /// The figures of the worker's running subtasks (about once a second).
    TaskMetrics {
        /// One entry per running subtask.
        tasks: Vec<crate::cluster::TaskFigures>,
    },
    /// The worker's part of a deployment ended.
    Ended {
        /// The job's number.
        job_number: u32,
        /// The attempt.
        attempt: u32,
        /// The deployment's region, for a job deployed region by region.
        #[serde(default)]
        region: Option<u32>,
        /// How.
        outcome: DeploymentOutcome,
    },
}

/// From the coordinator to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToWorker {
    /// The coordinator is alive; a worker that hears nothing for its
    /// timeout stops its deployments (it may be cut off) and registers again.
    Heartbeat,
    /// Registration accepted.
    Registered {
        /// The worker's id from now on.
        worker: WorkerId,
        /// The leader's lease: a worker that loses its leader keeps its
        /// deployments running this long plus a margin, waiting for a new
        /// leader to adopt them (absent for a standalone coordinator).
        #[serde(default)]
        lease_ms: Option<u64>,
    },
    /// This coordinator is not the leader; the connection is closed after
    /// this frame.
    NotLeader {
        /// The leader's worker endpoint, when one is known.
        leader: Option<String>,
    },
    /// The connection is refused (bad frame, bad token, registered twice…);
    /// the coordinator closes it after this frame.
    Rejected {
        /// Why.
        reason: String,
    },
    /// Run your subtasks of this deployment.
    Deploy(Box<Deployment>),
    /// A checkpoint command for a deployment.
    Command {
        /// The job's number.
        job_number: u32,
        /// The job attempt it is for (every region of it takes it); other
        /// attempts ignore it.
        attempt: u32,
        /// The command.
        command: ControlCommand,
    },
    /// A worker with a free slot joined while job attempt `attempt` runs:
    /// it is a spare now, and replicas go to it first.
    SpareJoined {
        /// The job's number.
        job_number: u32,
        /// The job attempt.
        attempt: u32,
        /// The new spare.
        spare: crate::cluster::Peer,
    },
    /// You are a new spare of a running job: copy these files of its latest
    /// checkpoint from storage into your replicas, at a bounded rate, and
    /// say when done ([`ToCoordinator::CaughtUp`]).
    CatchUp {
        /// The job's number.
        job_number: u32,
        /// The job's id (its checkpoint directory).
        job_id: String,
        /// Checkpoint storage root URL.
        storage_url: String,
        /// The checkpoint.
        epoch: u64,
        /// The files, as its manifest names them.
        files: Vec<crate::StateFile>,
    },
    /// Stop your subtasks of this deployment.
    Cancel {
        /// The job's number.
        job_number: u32,
        /// The attempt to stop: a deployment of it, or every region of
        /// the job attempt it names.
        attempt: u32,
        /// Only this region's deployment (regional failover); `None`: every
        /// deployment of the attempt.
        #[serde(default)]
        region: Option<u32>,
    },
}

pub use exchange_frames::{ChannelKey, ExchangeFrame, FrameBody};

// rkyv derives archived and resolver types without docs; the lint is
// silenced for this module only (the types themselves are documented).
#[allow(missing_docs)]
mod exchange_frames {
    /// Identifies one channel of an edge between two subtasks, within one
    /// attempt of one job.
    #[derive(
        Debug, Clone, Copy, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
    )]
    pub struct ChannelKey {
        /// The coordinator's job number.
        pub job: u32,
        /// The attempt: frames of an older attempt are dropped.
        pub attempt: u32,
        /// Index of the edge in the job graph.
        pub edge: u32,
        /// Upstream subtask.
        pub from: u32,
        /// Downstream subtask.
        pub to: u32,
    }

    /// What one channel message carries besides records (which travel in
    /// records frames, see [`RECORDS_FRAME`](super::RECORDS_FRAME)).
    #[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub enum FrameBody {
        /// A watermark.
        Watermark(i64),
        /// The sender is idle: leave it out of the watermark until it
        /// sends again.
        Idle,
        /// A checkpoint barrier.
        Barrier(u64),
        /// No more records; barriers may follow.
        EndOfData,
        /// The channel is finished.
        EndOfStream,
        /// The barrier of a stop-with-savepoint; nothing follows.
        StopBarrier(u64),
    }

    /// A frame on a data-exchange connection between two workers.
    #[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub enum ExchangeFrame {
        /// The first frame from the worker that dialled.
        Hello {
            /// Must equal [`PROTOCOL_VERSION`].
            protocol: u32,
            /// The dialling worker.
            from: u32,
            /// The worker it meant to reach.
            to: u32,
        },
        /// One message of one channel; it uses one credit.
        Message {
            /// The channel.
            key: ChannelKey,
            /// The message.
            body: FrameBody,
        },
        /// The receiver of a channel can take `credits` more messages.
        Credit {
            /// The channel.
            key: ChannelKey,
            /// Messages granted.
            credits: u32,
        },
        /// Part of a checkpoint file pushed to this worker as a replica.
        Replica {
            /// The job id (checkpoint directory).
            job_id: String,
            /// The file's path in the job's checkpoint directory.
            path: String,
            /// Where this part starts.
            offset: u64,
            /// The file's whole size.
            total: u64,
            /// The bytes.
            bytes: Vec<u8>,
        },
    }
}

/// The length a frame header announces, checked against [`MAX_FRAME_LEN`].
pub fn frame_len(header: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(WireError::TooLong {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// `body` as a whole frame: its length, then itself; `TooLong` when the
/// body is beyond what a reader accepts.
pub fn frame(body: &[u8]) -> Result<Vec<u8>, WireError> {
    let header = frame_header(body.len())?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);
    Ok(frame)
}

/// A control message as a whole frame: its JSON after its length.
pub fn encode_control<T: serde::Serialize>(message: &T) -> Result<Vec<u8>, WireError> {
    frame(&serde_json::to_vec(message).expect("control messages serialize"))
}

/// A control message from a frame's body.
pub fn decode_control<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(body).map_err(|e| WireError::Malformed {
        what: "control frame",
        problem: e.to_string(),
    })
}

/// The body of an encoded exchange frame (aligned, as rkyv writes it).
pub type ExchangeBody = rkyv::util::AlignedVec;

/// An exchange frame's body, without its length header: a writer sends
/// the length and then the body, so the body is never copied into a frame.
pub fn encode_exchange_body(message: &ExchangeFrame) -> ExchangeBody {
    rkyv::to_bytes::<rkyv::rancor::Error>(message).expect("exchange frames serialize")
}

/// An exchange frame as a whole frame (header included).
pub fn encode_exchange(message: &ExchangeFrame) -> Result<Vec<u8>, WireError> {
    frame(&encode_exchange_body(message))
}

/// Set in a frame header when the frame is a batch of records outside
/// rkyv: `[len | RECORDS_FRAME][channel key: 5 × u32 big-endian][records]`.
/// The records are written from, and read into, their own buffer rather
/// than an archive. (Lengths stay far below 2^31:
/// [`MAX_FRAME_LEN`].)
pub const RECORDS_FRAME: u32 = 1 << 31;

/// Bytes of a channel key in a records frame.
pub const CHANNEL_KEY_LEN: usize = 20;

/// One frame for an exchange connection's writer.
#[derive(Debug)]
pub enum OutgoingFrame {
    /// An rkyv frame's body; its length goes before it.
    Encoded(ExchangeBody),
    /// A batch of records of one channel, encoded by the edge's codec.
    Records {
        /// The channel.
        key: ChannelKey,
        /// The encoded records.
        records: Vec<u8>,
    },
}

/// One frame read from an exchange connection.
#[derive(Debug, Clone, PartialEq)]
pub enum IncomingFrame {
    /// An rkyv frame, decoded.
    Frame(ExchangeFrame),
    /// A batch of records of one channel, as the edge's codec encoded it.
    Records {
        /// The channel.
        key: ChannelKey,
        /// The encoded records.
        records: Vec<u8>,
    },
}

/// The header of a frame of `len` bytes, checked against [`MAX_FRAME_LEN`]
/// (the reader refuses a longer one, so the writer does not send it).
pub fn frame_header(len: usize) -> Result<[u8; 4], WireError> {
    if len > MAX_FRAME_LEN {
        return Err(WireError::TooLong {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok((len as u32).to_be_bytes())
}

/// The header of a records frame: its length (flagged) and channel key.
pub fn records_header(
    key: &ChannelKey,
    records_len: usize,
) -> Result<[u8; 4 + CHANNEL_KEY_LEN], WireError> {
    let len = u32::from_be_bytes(frame_header(CHANNEL_KEY_LEN + records_len)?);
    let mut header = [0u8; 4 + CHANNEL_KEY_LEN];
    header[..4].copy_from_slice(&(len | RECORDS_FRAME).to_be_bytes());
    for (i, field) in channel_key_fields(key).iter().enumerate() {
        header[4 + 4 * i..8 + 4 * i].copy_from_slice(&field.to_be_bytes());
    }
    Ok(header)
}

/// The channel key of a records frame.
pub fn decode_channel_key(bytes: [u8; CHANNEL_KEY_LEN]) -> ChannelKey {
    let mut fields = [0u32; CHANNEL_KEY_LEN / 4];
    for (field, bytes) in fields.iter_mut().zip(bytes.chunks_exact(4)) {
        *field = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    channel_key_from_fields(fields)
}

/// A channel key's fields to and from their order on the wire, both made
/// from the one list given, so the two cannot disagree.
macro_rules! channel_key_order {
    ($($field:ident),+) => {
        fn channel_key_fields(key: &ChannelKey) -> [u32; CHANNEL_KEY_LEN / 4] {
            [$(key.$field),+]
        }

        fn channel_key_from_fields(fields: [u32; CHANNEL_KEY_LEN / 4]) -> ChannelKey {
            let [$($field),+] = fields;
            ChannelKey { $($field),+ }
        }
    };
}

channel_key_order!(job, attempt, edge, from, to);

/// An exchange frame from a frame's body, validated.
pub fn decode_exchange(body: &[u8]) -> Result<ExchangeFrame, WireError> {
    // rkyv reads archived data in place and needs it aligned; a buffer
    // from the allocator usually is, so copying is rarely needed.
    let copy;
    let aligned: &[u8] = if (body.as_ptr() as usize).is_multiple_of(16) {
        body
    } else {
        let mut buffer = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
        buffer.extend_from_slice(body);
        copy = buffer;
        &copy
    };
    rkyv::from_bytes::<ExchangeFrame, rkyv::rancor::Error>(aligned).map_err(|e| {
        WireError::Malformed {
            what: "exchange frame",
            problem: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frame: &[u8]) -> &[u8] {
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        &frame[4..]
    }

    #[test]
    fn exchange_frames_round_trip() {
        let key = ChannelKey {
            job: 3,
            attempt: 2,
            edge: 1,
            from: 0,
            to: 4,
        };
        for frame in [
            ExchangeFrame::Hello {
                protocol: PROTOCOL_VERSION,
                from: 1,
                to: 2,
            },
            ExchangeFrame::Message {
                key,
                body: FrameBody::Barrier(7),
            },
            ExchangeFrame::Message {
                key,
                body: FrameBody::Idle,
            },
            ExchangeFrame::Credit { key, credits: 8 },
        ] {
            let encoded = encode_exchange(&frame).unwrap();
            assert_eq!(decode_exchange(body(&encoded)).unwrap(), frame);
        }
    }

    #[test]
    fn garbage_and_oversized_frames_are_errors() {
        let err = decode_exchange(b"this is not an rkyv frame at all").unwrap_err();
        assert!(
            err.to_string().contains("malformed exchange frame"),
            "{err}"
        );
        let err = frame_len([0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
        // A writer refuses what a reader would.
        let err = frame(&vec![0; MAX_FRAME_LEN + 1]).unwrap_err();
        assert!(matches!(err, WireError::TooLong { .. }), "{err}");
        assert!(frame(&vec![0; MAX_FRAME_LEN]).is_ok());
    }

    #[test]
    fn control_frames_round_trip() {
        let message = ToCoordinator::Register {
            protocol: PROTOCOL_VERSION,
            token: None,
            name: "w".into(),
            slots: 2,
            data_addr: "127.0.0.1:1".into(),
            metrics_addr: Some("127.0.0.1:2".into()),
            previous: None,
            deployments: vec![],
        };
        // Control frames carry JSON (encoded at the edges, which own a
        // JSON library); the envelope is the same as exchange frames'.
        let encoded = frame(&serde_json::to_vec(&message).unwrap()).unwrap();
        let decoded: ToCoordinator = serde_json::from_slice(body(&encoded)).unwrap();
        assert_eq!(decoded, message);
    }
}
