//! The outbound HTTP client. Each call resolves names through our DNS, refuses addresses
//! the address policy forbids (after every redirect too, since each hop is resolved here),
//! verifies certificates, and is bounded by the connect and total timeouts. Failures come
//! back classified, so that a client can be told *which* thing went wrong.

use super::address_policy::{AddressPolicy, Refused};
use super::dns::{Dns, DnsError};
use crate::config::FederationConfig;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ureq::config::Config as UreqConfig;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Largest answer body we read from another server.
const MAX_ANSWER_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct Client {
    dns: Dns,
    policy: AddressPolicy,
    tls: TlsConfig,
    connect_timeout: Duration,
    timeout: Duration,
}

/// Why an outbound call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The address policy refused where the name leads.
    Refused {
        host: String,
        refused: Refused,
    },
    Dns {
        host: String,
        error: DnsError,
    },
    Timeout,
    Tls(String),
    Unreachable(String),
    /// An answer we cannot use (not JSON, too large, a redirect loop, ...).
    BadAnswer(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Refused { host, refused } => write!(f, "{host} resolves to {refused}"),
            CallError::Dns { error, .. } => error.fmt(f),
            CallError::Timeout => f.write_str("did not answer in time"),
            CallError::Tls(why) => write!(f, "TLS failed: {why}"),
            CallError::Unreachable(why) => write!(f, "unreachable: {why}"),
            CallError::BadAnswer(why) => write!(f, "unusable answer: {why}"),
        }
    }
}

/// An answer: its status and body (at most [`MAX_ANSWER_BYTES`]).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Result<serde_json::Value, CallError> {
        serde_json::from_str(&self.body)
            .map_err(|e| CallError::BadAnswer(format!("not JSON ({e})")))
    }
}

impl Client {
    pub fn new(cfg: &FederationConfig) -> Result<Client, String> {
        let mut tls = TlsConfig::builder();
        if let Some(path) = &cfg.ca_file {
            tls = tls.root_certs(RootCerts::new_with_certs(&load_certs(path)?));
        }
        if cfg.tls_insecure {
            log::warn!("federation.tls.insecure is set: certificates of homeservers and identity servers are NOT checked; never do this in production");
            tls = tls.disable_verification(true);
        }
        Ok(Client {
            dns: Dns::new(cfg.resolver, cfg.connect_timeout),
            policy: AddressPolicy::new(cfg.ip_range_whitelist.clone()),
            tls: tls.build(),
            connect_timeout: cfg.connect_timeout,
            timeout: cfg.timeout,
        })
    }

    pub fn dns(&self) -> &Dns {
        &self.dns
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// GETs `url`. `pin` sends connections for its host to the given (already checked)
    /// addresses instead of resolving it: SRV targets keep the server name for TLS and Host.
    pub fn get(
        &self,
        url: &str,
        pin: Option<(String, Vec<SocketAddr>)>,
    ) -> Result<Answer, CallError> {
        let refusal = Arc::new(Mutex::new(None));
        let resolver = GuardedResolver {
            dns: self.dns.clone(),
            policy: self.policy.clone(),
            pin,
            refusal: refusal.clone(),
        };
        let config = UreqConfig::builder()
            .http_status_as_error(false)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_global(Some(self.timeout))
            .max_redirects(5)
            .user_agent(concat!("mxisd/", env!("CARGO_PKG_VERSION")))
            .tls_config(self.tls.clone())
            .build();
        let agent = ureq::Agent::with_parts(config, DefaultConnector::new(), resolver);
        let outcome = agent.get(url).call().and_then(|mut r| {
            let status = r.status().as_u16();
            let body = r
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER_BYTES)
                .read_to_string()?;
            Ok(Answer { status, body })
        });
        outcome.map_err(|e| {
            // A refusal or DNS failure in our resolver says more than ureq's wrapper error.
            match crate::lock(&refusal).take() {
                Some(cause) => cause,
                None => classify(e),
            }
        })
    }
}

fn classify(e: ureq::Error) -> CallError {
    match e {
        ureq::Error::Timeout(_) => CallError::Timeout,
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            CallError::Timeout
        }
        // rustls reports handshake and certificate failures through the stream as InvalidData.
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            CallError::Tls(io.to_string())
        }
        ureq::Error::Io(io) => CallError::Unreachable(io.to_string()),
        ureq::Error::ConnectionFailed => CallError::Unreachable("connection failed".into()),
        ureq::Error::Tls(why) => CallError::Tls(why.into()),
        ureq::Error::Rustls(why) => CallError::Tls(why.to_string()),
        other => CallError::BadAnswer(other.to_string()),
    }
}

fn load_certs(path: &std::path::Path) -> Result<Vec<Certificate<'static>>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("federation.tls.caFile {}: {e}", path.display()))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!(
            "federation.tls.caFile {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// ureq's resolver hook: our DNS, then the address policy.
#[derive(Debug)]
struct GuardedResolver {
    dns: Dns,
    policy: AddressPolicy,
    pin: Option<(String, Vec<SocketAddr>)>,
    refusal: Arc<Mutex<Option<CallError>>>,
}

impl GuardedResolver {
    fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, CallError> {
        if let Some((pinned, addrs)) = &self.pin {
            if pinned.eq_ignore_ascii_case(host) {
                return Ok(addrs.clone());
            }
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let ips = match literal.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.dns.host(host).map_err(|error| CallError::Dns {
                host: host.into(),
                error,
            })?,
        };
        checked(&self.policy, host, &ips)
            .map(|ok| ok.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}

/// The addresses the policy allows; refused if none is.
pub fn checked(
    policy: &AddressPolicy,
    host: &str,
    ips: &[IpAddr],
) -> Result<Vec<IpAddr>, CallError> {
    let mut first_refusal = None;
    let allowed: Vec<IpAddr> = ips
        .iter()
        .copied()
        .filter(|ip| match policy.check(*ip) {
            Ok(()) => true,
            Err(refused) => {
                first_refusal.get_or_insert(refused);
                false
            }
        })
        .collect();
    match (allowed.is_empty(), first_refusal) {
        (true, Some(refused)) => {
            log::warn!("outbound call to {host} refused: {refused}");
            Err(CallError::Refused {
                host: host.into(),
                refused,
            })
        }
        _ => Ok(allowed),
    }
}

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &UreqConfig,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        match self.addresses(host, port) {
            Ok(addrs) if !addrs.is_empty() => {
                let mut out = self.empty();
                for addr in addrs.into_iter().take(16) {
                    out.push(addr);
                }
                Ok(out)
            }
            Ok(_) => Err(ureq::Error::HostNotFound),
            Err(cause) => {
                *crate::lock(&self.refusal) = Some(cause);
                Err(ureq::Error::HostNotFound)
            }
        }
    }
}
