//! A blocking connection to one broker speaking the Kafka protocol itself
//! (the `kafka-protocol` crate's codec), for the few admin requests
//! librdkafka does not offer: describing, listing and committing another
//! producer's transactions (see [`super::transactions`]).
//!
//! Plaintext only: the connection refuses a `security.protocol` other than
//! `plaintext`, naming it, rather than failing in the handshake.

use super::KafkaConnection;
use crate::error::{ClientError, ConnectorError};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const CONNECTOR: &str = "kafka sink";
/// Responses of these requests are small; anything larger is not Kafka.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// One broker, its supported API versions learnt at connect.
pub(crate) struct BrokerConnection {
    address: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    correlation_id: i32,
    /// API key → (min, max) version the broker supports.
    versions: HashMap<i16, (i16, i16)>,
}

impl BrokerConnection {
    /// Connects to `address` (`host:port`) with `connection`'s timeout on
    /// every read and write, and asks the broker which versions it speaks.
    pub(crate) fn connect(
        connection: &KafkaConnection,
        address: &str,
    ) -> Result<Self, ConnectorError> {
        if let Some(protocol) = connection.property_value("security.protocol") {
            if !protocol.eq_ignore_ascii_case("plaintext") {
                return Err(ConnectorError::new(
                    CONNECTOR,
                    connection.at(),
                    format!(
                        "committing a crashed run's transactions speaks to the brokers \
                         directly, which supports only security.protocol=plaintext, not '{protocol}'"
                    ),
                ));
            }
        }
        let timeout = connection.request_timeout();
        let failed = |problem: String, e: std::io::Error| {
            ConnectorError::new(CONNECTOR, format!("broker {address}"), problem).caused_by(e)
        };
        let sockets: Vec<_> = address
            .to_socket_addrs()
            .map_err(|e| failed("cannot resolve the address".into(), e))?
            .collect();
        // Every address the name has (localhost may be ::1 and 127.0.0.1).
        let mut last = None;
        let mut connected = None;
        for socket in &sockets {
            match TcpStream::connect_timeout(socket, timeout) {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (connected, last) {
            (Some(stream), _) => stream,
            (None, Some(e)) => return Err(failed(format!("cannot connect within {timeout:?}"), e)),
            (None, None) => {
                return Err(ConnectorError::new(
                    CONNECTOR,
                    format!("broker {address}"),
                    "no such address",
                ))
            }
        };
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| failed("cannot set up the socket".into(), e))?;
        let writer = stream
            .try_clone()
            .map_err(|e| failed("cannot set up the socket".into(), e))?;
        let mut broker = Self {
            address: address.to_owned(),
            reader: BufReader::new(stream),
            writer,
            correlation_id: 0,
            versions: HashMap::new(),
        };
        // Version 0 is the one every broker answers, whatever it speaks.
        let versions = broker.send(&ApiVersionsRequest::default(), 0)?;
        if versions.error_code != 0 {
            return Err(broker.error("ApiVersions", versions.error_code));
        }
        broker.versions = versions
            .api_keys
            .iter()
            .map(|v| (v.api_key, (v.min_version, v.max_version)))
            .collect();
        Ok(broker)
    }

    /// `host:port` of the broker.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` at `version`, which the broker must support.
    pub(crate) fn request<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ConnectorError> {
        let supported = self.versions.get(&R::KEY).copied();
        if !supported.is_some_and(|(min, max)| (min..=max).contains(&version)) {
            return Err(ConnectorError::new(
                CONNECTOR,
                format!("broker {}", self.address),
                format!(
                    "the broker does not speak {} version {version} (Kafka 3.0 or later is needed); it speaks {}",
                    api_name(R::KEY),
                    match supported {
                        Some((min, max)) => format!("versions {min} to {max}"),
                        None => "no version of it".into(),
                    }
                ),
            ));
        }
        self.send(request, version)
    }

    /// A broker's error `code` in answer to `api`.
    pub(crate) fn error(&self, api: &str, code: i16) -> ConnectorError {
        let problem = match kafka_protocol::ResponseError::try_from_code(code) {
            Some(error) => format!("{api} failed: {error}"),
            None => format!("{api} failed with error code {code}"),
        };
        ConnectorError::new(CONNECTOR, format!("broker {}", self.address), problem)
    }

    fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ConnectorError> {
        let key = ApiKey::try_from(R::KEY).map_err(|()| self.codec_problem("unknown API key"))?;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("weir")));
        let mut frame = vec![0u8; 4];
        header
            .encode(&mut frame, key.request_header_version(version))
            .and_then(|()| request.encode(&mut frame, version))
            .map_err(|e| self.codec_error("encoding a request", e))?;
        let length = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        self.writer
            .write_all(&frame)
            .map_err(|e| self.io_error("sending a request", e))?;

        let mut length = [0u8; 4];
        self.reader
            .read_exact(&mut length)
            .map_err(|e| self.io_error("reading a response", e))?;
        let length = u32::from_be_bytes(length) as usize;
        if length > MAX_RESPONSE_BYTES {
            return Err(self.codec_problem(&format!(
                "a response of {length} bytes is no Kafka response"
            )));
        }
        let mut body = vec![0u8; length];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| self.io_error("reading a response", e))?;
        let mut body: &[u8] = &body;
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(|e| self.codec_error("decoding a response header", e))?;
        if header.correlation_id != self.correlation_id {
            return Err(self.codec_problem(&format!(
                "answer {} to request {}",
                header.correlation_id, self.correlation_id
            )));
        }
        R::Response::decode(&mut body, version)
            .map_err(|e| self.codec_error(&format!("decoding {}", api_name(R::KEY)), e))
    }

    fn io_error(&self, doing: &str, e: std::io::Error) -> ConnectorError {
        ConnectorError::new(CONNECTOR, format!("broker {}", self.address), doing).caused_by(e)
    }

    fn codec_error(&self, doing: &str, e: impl Into<ClientError>) -> ConnectorError {
        ConnectorError::new(CONNECTOR, format!("broker {}", self.address), doing).caused_by(e)
    }

    fn codec_problem(&self, problem: &str) -> ConnectorError {
        ConnectorError::new(CONNECTOR, format!("broker {}", self.address), problem)
    }
}

fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(key) => format!("{key:?}"),
        Err(()) => format!("API {key}"),
    }
}

/// How long to wait before asking a busy coordinator again.
pub(crate) const RETRY_BACKOFF: Duration = Duration::from_millis(50);
