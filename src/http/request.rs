//! What a handler sees of a request: method, path parameters, query, headers, the body
//! (already read, within `http.maxBodyBytes` and `http.bodyTimeout`) and the client address.

use super::router::Method;
use super::ApiError;
use crate::cidr::Cidr;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub struct Request<'a> {
    pub method: Method,
    /// The client: the socket peer, or what a trusted proxy says in `X-Forwarded-For`.
    pub client: IpAddr,
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
    /// Borrowed from tiny_http's request: copying them cost two allocations per header.
    headers: &'a [tiny_http::Header],
    body: Vec<u8>,
}

impl<'a> Request<'a> {
    pub fn new(
        method: Method,
        client: IpAddr,
        params: Vec<(String, String)>,
        query: Vec<(String, String)>,
        headers: &'a [tiny_http::Header],
        body: Vec<u8>,
    ) -> Request<'a> {
        Request {
            method,
            client,
            params,
            query,
            headers,
            body,
        }
    }

    /// A `{name}` segment of the route's path.
    pub fn param(&self, name: &str) -> &str {
        lookup(&self.params, name).unwrap_or_default()
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        lookup(&self.query, name)
    }

    /// A query parameter that must be there and not be empty.
    pub fn require_query(&self, name: &str) -> Result<&str, ApiError> {
        self.query(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::MissingParams(name.to_owned()))
    }

    /// A header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as a JSON object of type `T`: M_NOT_JSON if it is not JSON, M_MISSING_PARAMS
    /// naming an absent field, M_BAD_JSON for any other mismatch.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        // One pass for the usual well-formed object; the errors are worked out below.
        if self.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            if let Ok(parsed) = serde_json::from_slice::<T>(&self.body) {
                return Ok(parsed);
            }
        }
        let value: Value =
            serde_json::from_slice(&self.body).map_err(|e| ApiError::NotJson(e.to_string()))?;
        if !value.is_object() {
            return Err(ApiError::BadJson("the body must be a JSON object".into()));
        }
        serde_json::from_value(value).map_err(|e| {
            let text = e.to_string();
            match text
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
            {
                Some(field) => ApiError::MissingParams(field.to_owned()),
                None => ApiError::BadJson(text),
            }
        })
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Reads the body: refuses a declared length over `max` before reading anything, stops
/// reading past `max`, and gives up when the whole body takes longer than `timeout` (each
/// socket read is also bounded by the same timeout, set on the connection).
pub fn read_body(
    raw: &mut tiny_http::Request,
    max: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    if raw.body_length().is_some_and(|len| len > max) {
        return Err(ApiError::BodyTooLarge(max));
    }
    let started = Instant::now();
    // With a Content-Length, the body is read in place: a chunk buffer zeroed for every
    // request cost more than the rest of a small request's reading.
    let declared = raw.body_length();
    let mut body = vec![0; declared.unwrap_or(16 * 1024).min(max + 1)];
    let mut filled = 0;
    let reader = raw.as_reader();
    loop {
        if started.elapsed() > timeout {
            return Err(ApiError::BodyTimeout);
        }
        if filled == body.len() {
            if declared.is_some() {
                break; // all of it: tiny_http reads no further than the declared length
            }
            // Chunked: the length comes as it goes; one byte past `max` tells it is over.
            body.resize((body.len() * 2).min(max + 1), 0);
        }
        match reader.read(&mut body[filled..]) {
            Ok(0) => break,
            Ok(n) if filled + n > max => return Err(ApiError::BodyTooLarge(max)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(ApiError::BodyTimeout)
            }
            Err(e) => {
                log::debug!("reading a request body failed: {e}");
                return Err(ApiError::BadJson(
                    "the request body could not be read".into(),
                ));
            }
        }
    }
    body.truncate(filled);
    Ok(body)
}

/// The client address: the peer, unless the peer is a trusted proxy, in which case the
/// rightmost `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for entry in forwarded_for.unwrap_or_default().rsplit(',') {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let xff = Some("203.0.113.7, 198.51.100.2, 10.0.0.3");
        assert_eq!(
            client_address(ip("127.0.0.1"), xff, &trusted),
            ip("198.51.100.2")
        );
        assert_eq!(
            client_address(ip("192.0.2.1"), xff, &trusted),
            ip("192.0.2.1")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), None, &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), Some("garbage"), &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), Some("10.1.1.1"), &trusted),
            ip("10.1.1.1")
        );
        assert_eq!(client_address(ip("127.0.0.1"), xff, &[]), ip("127.0.0.1"));
    }
}
