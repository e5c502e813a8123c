//! Who asked: the address a request came from, as the HTTP layer worked it out (the socket
//! peer, or what a trusted proxy forwarded), or unknown. Handlers hand it to what decides by
//! address: `internal.allowedCidr`, rate limits, and (later) whether a lookup may go on to
//! other identity servers.

use crate::cidr::Cidr;
use std::fmt;
use std::net::IpAddr;

/// Who sent a request, as far as mxisd can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    /// The socket peer, or the address a trusted proxy forwarded for.
    Ip(IpAddr),
    /// Not known: a forwarded hop that is not an address, or `X-Forwarded-For` from a peer
    /// that is not a trusted proxy (its socket address is then some proxy's). Matches no
    /// CIDR, so it is granted nothing by address; one shared bucket for rate limits.
    Unknown,
}

impl Requester {
    /// Whether the client is in one of `cidrs`; an unknown client never is.
    pub fn is_in(&self, cidrs: &[Cidr]) -> bool {
        match self {
            Requester::Ip(ip) => cidrs.iter().any(|c| c.contains(*ip)),
            Requester::Unknown => false,
        }
    }
}

impl fmt::Display for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requester::Ip(ip) => ip.fmt(f),
            Requester::Unknown => f.write_str("unknown"),
        }
    }
}
