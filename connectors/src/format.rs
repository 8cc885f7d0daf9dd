//! How a record's key or value is read from (and written as) bytes:
//! [`Bytes`], [`Utf8`] or [`Json`] into a serde type.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;

/// Reads a `T` from a Kafka key or value and writes one back.
pub trait Format<T>: Clone + Send + Sync + 'static {
    /// Decodes `bytes` (`None`: the key or value was null).
    fn decode(&self, bytes: Option<&[u8]>) -> Result<T, String>;
    /// Encodes `value` (`None`: write a null).
    fn encode(&self, value: &T) -> Result<Option<Vec<u8>>, String>;
}

/// The bytes as they are; a null is empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bytes;

impl Format<Vec<u8>> for Bytes {
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Vec<u8>, String> {
        Ok(bytes.unwrap_or_default().to_vec())
    }

    fn encode(&self, value: &Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(value.clone()))
    }
}

/// UTF-8 text; a null is empty, bytes that are not UTF-8 are an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8;

impl Format<String> for Utf8 {
    fn decode(&self, bytes: Option<&[u8]>) -> Result<String, String> {
        match bytes {
            None => Ok(String::new()),
            Some(bytes) => std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|e| format!("not UTF-8: {e}")),
        }
    }

    fn encode(&self, value: &String) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(value.as_bytes().to_vec()))
    }
}

/// JSON into (and from) a serde type; a null is an error.
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// JSON as `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Json<{}>", std::any::type_name::<T>())
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Format<T> for Json<T> {
    fn decode(&self, bytes: Option<&[u8]>) -> Result<T, String> {
        let bytes = bytes.ok_or("null where JSON was expected")?;
        serde_json::from_slice(bytes)
            .map_err(|e| format!("not JSON of {}: {e}", std::any::type_name::<T>()))
    }

    fn encode(&self, value: &T) -> Result<Option<Vec<u8>>, String> {
        serde_json::to_vec(value)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_round_trips_and_names_what_is_wrong() {
        assert_eq!(Bytes.decode(None).unwrap(), Vec::<u8>::new());
        assert_eq!(Utf8.decode(Some(b"k1")).unwrap(), "k1");
        assert!(Utf8
            .decode(Some(&[0xff, 0xfe]))
            .unwrap_err()
            .contains("not UTF-8"));
        let json = Json::<(String, u64)>::new();
        let bytes = json.encode(&("a".into(), 3)).unwrap();
        assert_eq!(json.decode(bytes.as_deref()).unwrap(), ("a".to_owned(), 3));
        assert!(json.decode(Some(b"{")).unwrap_err().contains("not JSON"));
        assert!(json.decode(None).unwrap_err().contains("null"));
    }
}
