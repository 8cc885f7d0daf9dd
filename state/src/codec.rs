//! The postcard encoding of keys and values that snapshots and every
//! backend storing bytes use, and the JSON that shows them to people.

use crate::error::StateError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_protocol::KeyGroup;

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, table: &str) -> Result<Vec<u8>, StateError> {
    postcard::to_stdvec(value).map_err(|source| StateError::Encode {
        table: table.to_owned(),
        source,
    })
}

/// Appends the encoding of `value` to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    table: &str,
) -> Result<(), StateError> {
    let taken = std::mem::take(out);
    *out = postcard::to_extend(value, taken).map_err(|source| StateError::Encode {
        table: table.to_owned(),
        source,
    })?;
    Ok(())
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], table: &str) -> Result<T, StateError> {
    postcard::from_bytes(bytes).map_err(|source| StateError::Decode {
        table: table.to_owned(),
        key_group: None,
        source,
    })
}

/// [`decode`]s the snapshot section of `key_group`, naming it on failure.
pub(crate) fn decode_group<T: DeserializeOwned>(
    bytes: &[u8],
    table: &str,
    key_group: KeyGroup,
) -> Result<T, StateError> {
    postcard::from_bytes(bytes).map_err(|source| StateError::Decode {
        table: table.to_owned(),
        key_group: Some(key_group),
        source,
    })
}

pub(crate) fn to_json<T: Serialize>(
    value: &T,
    table: &str,
) -> Result<serde_json::Value, StateError> {
    serde_json::to_value(value).map_err(|e| StateError::Corrupt {
        path: table.to_owned(),
        problem: format!("cannot show a value as JSON: {e}"),
    })
}
