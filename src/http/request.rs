//! What a handler sees of a request: method, path parameters, query, headers, the body
//! (read whole by the connection thread, within `http.maxBodyBytes` and
//! `http.requestTimeout`) and the client address.

use super::router::Method;
use super::ApiError;
use crate::cidr::Cidr;
use crate::requester::Requester;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};

pub struct Request<'a> {
    pub method: Method,
    /// The client: the socket peer, or what a trusted proxy says in `X-Forwarded-For`.
    pub client: Requester,
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
    /// Borrowed from tiny_http's request: copying them cost two allocations per header.
    headers: &'a [tiny_http::Header],
    body: Vec<u8>,
}

impl<'a> Request<'a> {
    pub(crate) fn new(
        method: Method,
        client: Requester,
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

/// The client of a request from `peer` with these headers. Without `X-Forwarded-For` it is
/// the peer. With it (every instance of the header, in order), the peer must be a trusted
/// proxy; then the hops are walked from the right while they are trusted proxies too, and
/// the first that is not is the client. A hop may carry a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:80`); one that is still not an address makes the client unknown.
pub(crate) fn client_address(
    peer: IpAddr,
    headers: &[tiny_http::Header],
    trusted: &[Cidr],
) -> Requester {
    let mut forwarded = headers
        .iter()
        .filter(|h| h.field.equiv("X-Forwarded-For"))
        .map(|h| h.value.as_str())
        .peekable();
    if forwarded.peek().is_none() {
        return Requester::Ip(peer);
    }
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        warn_untrusted_forwarder(peer);
        return Requester::Unknown;
    }
    let hops: Vec<&str> = forwarded.flat_map(|value| value.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = hop_address(hop.trim()) else {
            return Requester::Unknown;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    Requester::Ip(client)
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:80`.
fn hop_address(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// A proxy that is not in `http.trustedProxies` (a same-host nginx, say) makes every client
/// unknown: say so, at most once a minute.
fn warn_untrusted_forwarder(peer: IpAddr) {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = crate::now_ms();
    let last = LAST.load(Ordering::Relaxed);
    if now - last >= 60_000
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        log::warn!(
            "X-Forwarded-For from {peer}, which is not in http.trustedProxies: such clients are treated as unknown (no address-based access); list your reverse proxy there"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> Vec<tiny_http::Header> {
        values
            .iter()
            .map(|v| tiny_http::Header::from_bytes("X-Forwarded-For", *v).unwrap())
            .collect()
    }

    fn client(peer: &str, values: &[&str], trusted: &[Cidr]) -> Requester {
        client_address(ip(peer), &xff(values), trusted)
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let chain = "203.0.113.7, 198.51.100.2, 10.0.0.3";
        assert_eq!(
            client("127.0.0.1", &[chain], &trusted),
            Requester::Ip(ip("198.51.100.2"))
        );
        assert_eq!(
            client("127.0.0.1", &[], &trusted),
            Requester::Ip(ip("127.0.0.1"))
        );
        assert_eq!(
            client("192.0.2.1", &[], &trusted),
            Requester::Ip(ip("192.0.2.1"))
        );
        assert_eq!(
            client("127.0.0.1", &["10.1.1.1"], &trusted),
            Requester::Ip(ip("10.1.1.1"))
        );
        // A peer that is not a trusted proxy but forwards: its own address grants nothing.
        assert_eq!(client("192.0.2.1", &[chain], &trusted), Requester::Unknown);
        assert_eq!(
            client("127.0.0.1", &["203.0.113.9"], &[]),
            Requester::Unknown
        );
    }

    #[test]
    fn every_forwarded_for_header_counts_and_ports_are_stripped() {
        let trusted: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        // The last header's hops are the nearest.
        assert_eq!(
            client("127.0.0.1", &["203.0.113.7", "10.0.0.3"], &trusted),
            Requester::Ip(ip("203.0.113.7"))
        );
        assert_eq!(
            client("127.0.0.1", &["1.2.3.4:5678"], &trusted),
            Requester::Ip(ip("1.2.3.4"))
        );
        assert_eq!(
            client("127.0.0.1", &["[2001:db8::1]:443"], &trusted),
            Requester::Ip(ip("2001:db8::1"))
        );
        assert_eq!(
            client("127.0.0.1", &["[2001:db8::1]"], &trusted),
            Requester::Ip(ip("2001:db8::1"))
        );
        assert_eq!(
            client("127.0.0.1", &["2001:db8::1"], &trusted),
            Requester::Ip(ip("2001:db8::1"))
        );
    }

    #[test]
    fn a_hop_that_is_not_an_address_makes_the_client_unknown() {
        let trusted: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap()];
        for value in [
            "unknown",
            "garbage",
            "",
            "1.2.3.4:",
            "203.0.113.7, unknown",
            "_hidden",
        ] {
            assert_eq!(
                client("127.0.0.1", &[value], &trusted),
                Requester::Unknown,
                "{value:?}"
            );
        }
        // An unknown hop beyond the first untrusted one does not matter.
        assert_eq!(
            client("127.0.0.1", &["unknown, 203.0.113.7"], &trusted),
            Requester::Ip(ip("203.0.113.7"))
        );
        let everything: Vec<Cidr> = vec!["0.0.0.0/0".parse().unwrap()];
        assert!(!Requester::Unknown.is_in(&everything));
        assert!(Requester::Ip(ip("192.0.2.1")).is_in(&everything));
    }
}
