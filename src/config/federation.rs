//! `federation`: outbound calls to homeservers and other identity servers: DNS, timeouts,
//! the address policy's exceptions, TLS trust.

use super::check::Resolver;
use crate::cidr::Cidr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct FederationConfig {
    /// The DNS server asked for every outbound name; `None`: the system's (resolv.conf).
    pub resolver: Option<std::net::SocketAddr>,
    pub connect_timeout: Duration,
    /// Longest one outbound call may take, DNS included.
    pub timeout: Duration,
    /// Ranges exempt from the outbound address policy (air-gapped LANs).
    pub ip_range_whitelist: Vec<Cidr>,
    /// PEM bundle of the CAs trusted instead of the public roots; a self-signed certificate
    /// in it is also trusted as the peer's own (pinned).
    pub ca_file: Option<PathBuf>,
    /// No certificate checks at all: tests only.
    pub tls_insecure: bool,
}

impl Resolver<'_> {
    pub(super) fn federation(&mut self, f: raw::Federation) -> Result<FederationConfig, String> {
        let resolver = match self.non_empty("federation.resolver", f.resolver)? {
            None => None,
            Some(r) => Some(
                r.parse::<std::net::SocketAddr>()
                    .or_else(|_| r.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
                    .map_err(|_| {
                        self.at(
                            "federation.resolver",
                            format!("'{r}' is not an IP address[:port]"),
                        )
                    })?,
            ),
        };
        let connect_timeout =
            self.seconds("federation.connectTimeout", f.connect_timeout, 5, 300)?;
        let timeout = self.seconds("federation.timeout", f.timeout, 15, 300)?;
        let ip_range_whitelist = self.cidrs("federation.ipRangeWhitelist", f.ip_range_whitelist)?;
        let tls = f.tls.unwrap_or_default();
        let ca_file = self.pem_file("federation.tls.caFile", tls.ca_file)?;
        Ok(FederationConfig {
            resolver,
            connect_timeout,
            timeout,
            ip_range_whitelist,
            ca_file,
            tls_insecure: tls.insecure.unwrap_or(false),
        })
    }
}

/// `federation` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        /// Outbound calls to homeservers and other identity servers (new in this implementation).
        Federation {
            resolver: String = "resolver",
            connect_timeout: u64 = "connectTimeout",
            timeout: u64 = "timeout",
            ip_range_whitelist: Vec<String> = "ipRangeWhitelist",
            tls: FederationTls = "tls",
        }
    }
    section! {
        FederationTls {
            ca_file: String = "caFile",
            insecure: bool = "insecure",
        }
    }
}
