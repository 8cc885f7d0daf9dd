//! Reading length-prefixed frames ([`wire::frame`](crate::wire::frame)) from a
//! blocking stream: the workers' control connection and the data exchange
//! both read them this way (the coordinator reads the same frames with
//! tokio-util's length-delimited codec); and writing and reading the data
//! exchange's frames, whose records frames
//! ([`RECORDS_FRAME`](crate::wire::RECORDS_FRAME)) carry their bytes
//! outside rkyv.

use crate::error::WireError;
use crate::wire::{
    decode_channel_key, decode_exchange, frame_header, frame_len, records_header, IncomingFrame,
    OutgoingFrame, CHANNEL_KEY_LEN, RECORDS_FRAME,
};
use std::io::{ErrorKind, Read, Write};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The bytes were not a valid frame.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The socket failed.
    #[error("socket error")]
    Io(#[source] std::io::Error),
}

/// Reads one frame's body; `Closed` when the stream ends cleanly before it.
pub fn read_frame(stream: &mut impl Read) -> Result<Vec<u8>, FrameReadError> {
    let header = read_header(stream)?;
    read_body(stream, frame_len(header)?)
}

/// Reads one exchange frame: a records frame's records straight into their
/// own buffer, any other frame decoded from its rkyv body.
pub fn read_exchange(stream: &mut impl Read) -> Result<IncomingFrame, FrameReadError> {
    let header = read_header(stream)?;
    let announced = u32::from_be_bytes(header);
    if announced & RECORDS_FRAME == 0 {
        let body = read_body(stream, frame_len(header)?)?;
        return Ok(IncomingFrame::Frame(decode_exchange(&body)?));
    }
    let len = frame_len((announced & !RECORDS_FRAME).to_be_bytes())?;
    if len < CHANNEL_KEY_LEN {
        return Err(WireError::Malformed {
            what: "records frame",
            problem: format!("{len} bytes cannot hold its {CHANNEL_KEY_LEN}-byte channel key"),
        }
        .into());
    }
    let mut key = [0u8; CHANNEL_KEY_LEN];
    let got = read_full(stream, &mut key)?;
    if got < key.len() {
        return Err(WireError::Truncated {
            expected: CHANNEL_KEY_LEN,
            got,
        }
        .into());
    }
    let records = read_body(stream, len - CHANNEL_KEY_LEN)?;
    Ok(IncomingFrame::Records {
        key: decode_channel_key(key),
        records,
    })
}

/// Writes one exchange frame: its header, then its body.
pub fn write_exchange(out: &mut impl Write, frame: &OutgoingFrame) -> std::io::Result<()> {
    match frame {
        OutgoingFrame::Encoded(body) => {
            let header = frame_header(body.len())
                .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
            out.write_all(&header)?;
            out.write_all(body)
        }
        OutgoingFrame::Records { key, records } => {
            let header = records_header(key, records.len())
                .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
            out.write_all(&header)?;
            out.write_all(records)
        }
    }
}

fn read_header(stream: &mut impl Read) -> Result<[u8; 4], FrameReadError> {
    let mut header = [0u8; 4];
    let got = read_full(stream, &mut header)?;
    if got == 0 {
        return Err(FrameReadError::Closed);
    }
    if got < header.len() {
        return Err(WireError::Truncated {
            expected: header.len(),
            got,
        }
        .into());
    }
    Ok(header)
}

fn read_body(stream: &mut impl Read, len: usize) -> Result<Vec<u8>, FrameReadError> {
    let mut body = vec![0u8; len];
    let got = read_full(stream, &mut body)?;
    if got < len {
        return Err(WireError::Truncated { expected: len, got }.into());
    }
    Ok(body)
}

/// Fills `buf` unless the stream ends first; returns the bytes read.
fn read_full(stream: &mut impl Read, buf: &mut [u8]) -> Result<usize, FrameReadError> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(FrameReadError::Io(e)),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_exchange_body, ChannelKey, ExchangeFrame};

    const KEY: ChannelKey = ChannelKey {
        job: 3,
        attempt: 2,
        edge: 1,
        from: 0,
        to: 4,
    };

    #[test]
    fn records_and_other_frames_round_trip() {
        let credit = ExchangeFrame::Credit {
            key: KEY,
            credits: 8,
        };
        let mut wire = Vec::new();
        for frame in [
            OutgoingFrame::Records {
                key: KEY,
                records: vec![1, 2, 3],
            },
            OutgoingFrame::Encoded(encode_exchange_body(&credit)),
            OutgoingFrame::Records {
                key: KEY,
                records: Vec::new(),
            },
        ] {
            write_exchange(&mut wire, &frame).unwrap();
        }
        let mut stream = wire.as_slice();
        assert_eq!(
            read_exchange(&mut stream).unwrap(),
            IncomingFrame::Records {
                key: KEY,
                records: vec![1, 2, 3]
            }
        );
        assert_eq!(
            read_exchange(&mut stream).unwrap(),
            IncomingFrame::Frame(credit)
        );
        assert_eq!(
            read_exchange(&mut stream).unwrap(),
            IncomingFrame::Records {
                key: KEY,
                records: Vec::new()
            }
        );
        assert!(matches!(
            read_exchange(&mut stream),
            Err(FrameReadError::Closed)
        ));
    }

    #[test]
    fn truncated_short_and_oversized_records_frames_are_errors() {
        let mut wire = Vec::new();
        let frame = OutgoingFrame::Records {
            key: KEY,
            records: vec![7; 100],
        };
        write_exchange(&mut wire, &frame).unwrap();
        wire.truncate(wire.len() - 10);
        let err = read_exchange(&mut wire.as_slice()).unwrap_err();
        assert!(
            matches!(err, FrameReadError::Wire(WireError::Truncated { .. })),
            "{err}"
        );

        let short = (10u32 | RECORDS_FRAME).to_be_bytes();
        let err = read_exchange(&mut short.as_slice()).unwrap_err();
        assert!(err.to_string().contains("channel key"), "{err}");

        let huge = (u32::MAX).to_be_bytes();
        let err = read_exchange(&mut huge.as_slice()).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }
}
