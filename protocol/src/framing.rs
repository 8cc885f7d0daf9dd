//! Reading length-prefixed frames ([`wire::frame`](crate::wire::frame)) from a
//! blocking stream: the workers' control connection and the data exchange
//! both read them this way. (The coordinator reads the same frames with
//! tokio-util's length-delimited codec.)

use crate::error::WireError;
use crate::wire::frame_len;
use std::io::{ErrorKind, Read};

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
    let len = frame_len(header)?;
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
