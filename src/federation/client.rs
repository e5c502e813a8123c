//! The outbound HTTP clients, both on one footing: certificates verified (against
//! `federation.tls.caFile` when set), connect and total timeouts, at most 1 MiB read,
//! failures classified so that a client can be told *which* thing went wrong.
//!
//! - [`Client`], the *guarded* one, for names users give (homeservers, other identity
//!   servers): names resolved by ours (`localhost`, the hosts file, then DNS: `names.rs`),
//!   every address checked by the address policy (after every redirect too, since each hop
//!   is resolved here). It also holds the operator's `dns.overwrite.homeserver.federation`
//!   entries, which discovery reads before anything else.
//! - [`ConfiguredClient`], for destinations the operator wrote in the config (a REST
//!   backend, later an SMS gateway): the system's resolver and no address policy, since
//!   such backends often live on private addresses.

use super::address_policy::{AddressPolicy, Refused};
use super::dns::Dns;
use super::hosts::HostsFile;
use super::names::{NameError, Names};
use super::tls::OwnTls;
use crate::config::FederationConfig;
use crate::crypto::b64;
use crate::urlencoded;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ureq::config::Config as UreqConfig;
use ureq::tls::TlsConfig;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{Connector, DefaultConnector, NextTimeout, TcpConnector};

/// Largest answer body we read from a server a user named.
const MAX_ANSWER_BYTES: u64 = 1 << 20;
/// Largest answer body we read from a configured backend (a bulk answer can be large).
const MAX_BACKEND_ANSWER_BYTES: u64 = 16 << 20;

/// The guarded client.
#[derive(Debug, Clone)]
pub struct Client {
    names: Names,
    policy: AddressPolicy,
    caller: Caller,
    /// `dns.overwrite.homeserver.federation`: server name → base URL of its federation API.
    homeservers: Arc<BTreeMap<String, String>>,
}

/// The client for the operator's own destinations.
#[derive(Debug, Clone)]
pub struct ConfiguredClient {
    caller: Caller,
}

/// What both clients share: TLS trust and timeouts, and how a call is made.
#[derive(Debug, Clone)]
struct Caller {
    tls: TlsConfig,
    /// With `federation.tls.caFile`: TLS by our rustls configuration (its CAs trusted, its
    /// certificates pinned) instead of ureq's.
    own_tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    timeout: Duration,
    max_answer: u64,
}

/// Why an outbound call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The address policy refused where the name leads.
    Refused {
        host: String,
        refused: Refused,
    },
    /// The name has no address (hosts file, DNS), or DNS failed.
    Name {
        host: String,
        error: NameError,
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
            CallError::Name { error, .. } => error.fmt(f),
            CallError::Timeout => f.write_str("did not answer in time"),
            CallError::Tls(why) => write!(f, "TLS failed: {why}"),
            CallError::Unreachable(why) => write!(f, "unreachable: {why}"),
            CallError::BadAnswer(why) => write!(f, "unusable answer: {why}"),
        }
    }
}

/// An answer: its status and body (at most [`MAX_ANSWER_BYTES`], or
/// [`MAX_BACKEND_ANSWER_BYTES`] from a configured backend).
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

    /// An answer we do not take, for the log: its status and the start of its body.
    pub fn refusal(&self) -> String {
        let start: String = self.body.chars().take(200).collect();
        format!("HTTP {}: {start}", self.status)
    }

    /// The answer's JSON object: every API we call answers one, so JSON of another shape is
    /// as unusable as no JSON.
    pub fn object(&self) -> Result<serde_json::Value, CallError> {
        let value = self.json()?;
        if !value.is_object() {
            return Err(CallError::BadAnswer("not a JSON object".into()));
        }
        Ok(value)
    }
}

impl Caller {
    /// `federation`'s TLS settings and connect timeout, `timeout` for a whole call, and
    /// answers of at most `max_answer` bytes.
    fn new(cfg: &FederationConfig, timeout: Duration, max_answer: u64) -> Result<Caller, String> {
        let own_tls = match (&cfg.ca_file, cfg.tls_insecure) {
            (Some(path), false) => Some(Arc::new(crate::tls::verifying(
                Some(path),
                "federation.tls.caFile",
            )?)),
            _ => None,
        };
        Ok(Caller {
            tls: TlsConfig::builder()
                .disable_verification(cfg.tls_insecure)
                .build(),
            own_tls,
            connect_timeout: cfg.connect_timeout,
            timeout,
            max_answer,
        })
    }

    fn config(&self) -> UreqConfig {
        UreqConfig::builder()
            .http_status_as_error(false)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_global(Some(self.timeout))
            .max_redirects(5)
            // ureq reads HTTP(S)_PROXY by default: a proxy would be the only address the
            // address policy sees, never the destination.
            .proxy(None)
            .user_agent(concat!("mxisd/", env!("CARGO_PKG_VERSION")))
            .tls_config(self.tls.clone())
            .build()
    }

    /// An agent resolving names with `resolver`, connecting through TCP and TLS.
    fn agent(&self, resolver: impl Resolver) -> ureq::Agent {
        match &self.own_tls {
            Some(tls) => ureq::Agent::with_parts(
                self.config(),
                ().chain(TcpConnector::default()).chain(OwnTls(tls.clone())),
                resolver,
            ),
            None => ureq::Agent::with_parts(self.config(), DefaultConnector::new(), resolver),
        }
    }

    /// GETs `url`, or sends it `json` (`POST` or `PUT`).
    fn send(
        &self,
        agent: &ureq::Agent,
        url: &str,
        json: Option<(&str, &serde_json::Value)>,
    ) -> Result<Answer, ureq::Error> {
        let answer = match json {
            None => agent.get(url).call(),
            Some(("PUT", body)) => agent
                .put(url)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
            Some((_, body)) => agent
                .post(url)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
        };
        self.read(answer)
    }

    /// GETs `url`, or POSTs it `json` (JSON text already written), with request `headers`.
    fn send_with_headers(
        &self,
        agent: &ureq::Agent,
        url: &str,
        headers: &[(&str, &str)],
        json: Option<String>,
    ) -> Result<Answer, ureq::Error> {
        let answer = match json {
            None => {
                let mut request = agent.get(url);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            Some(body) => {
                let mut request = agent.post(url).header("Content-Type", "application/json");
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.send(body)
            }
        };
        self.read(answer)
    }

    /// The status and body of an answer, the body read up to `max_answer`.
    fn read(
        &self,
        answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, ureq::Error> {
        answer.and_then(|mut r| {
            let status = r.status().as_u16();
            let body = r
                .body_mut()
                .with_config()
                .limit(self.max_answer)
                .read_to_string()?;
            Ok(Answer { status, body })
        })
    }
}

impl ConfiguredClient {
    /// A client for one configured destination, whose whole calls take at most `timeout`.
    pub fn new(cfg: &FederationConfig, timeout: Duration) -> Result<ConfiguredClient, String> {
        Ok(ConfiguredClient {
            caller: Caller::new(cfg, timeout, MAX_BACKEND_ANSWER_BYTES)?,
        })
    }

    /// The longest one call can take: its connect timeout, then its whole-call timeout.
    pub fn longest_call(&self) -> Duration {
        self.caller.connect_timeout + self.caller.timeout
    }

    /// POSTs `body` as JSON to `url`.
    pub fn post_json(&self, url: &str, body: &serde_json::Value) -> Result<Answer, CallError> {
        let agent = self.caller.agent(DefaultResolver::default());
        let started = Instant::now();
        let outcome = self
            .caller
            .send(&agent, url, Some(("POST", body)))
            .map_err(classify);
        log_call("POST", url, &outcome, started);
        outcome
    }

    /// GETs `url`, or POSTs `json` (JSON text already written) to it, with request
    /// `headers` (a peer's token).
    pub fn call(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        json: Option<&str>,
    ) -> Result<Answer, CallError> {
        let agent = self.caller.agent(DefaultResolver::default());
        let started = Instant::now();
        let outcome = self
            .caller
            .send_with_headers(&agent, url, headers, json.map(str::to_owned))
            .map_err(classify);
        log_call(
            if json.is_some() { "POST" } else { "GET" },
            url,
            &outcome,
            started,
        );
        outcome
    }

    /// POSTs `fields` as an HTML form to `url`, with HTTP basic authentication (APIs such as
    /// Twilio's).
    pub fn post_form(
        &self,
        url: &str,
        fields: &[(&str, &str)],
        basic: (&str, &str),
    ) -> Result<Answer, CallError> {
        let agent = self.caller.agent(DefaultResolver::default());
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencoded::encode(k), urlencoded::encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let auth = b64::encode_padded(format!("{}:{}", basic.0, basic.1).as_bytes());
        let started = Instant::now();
        let outcome = agent
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Authorization", &format!("Basic {auth}"))
            .send(body)
            .and_then(|mut r| {
                let status = r.status().as_u16();
                let body = r
                    .body_mut()
                    .with_config()
                    .limit(self.caller.max_answer)
                    .read_to_string()?;
                Ok(Answer { status, body })
            })
            .map_err(classify);
        log_call("POST", url, &outcome, started);
        outcome
    }
}

impl Client {
    pub fn new(cfg: &FederationConfig) -> Result<Client, String> {
        if cfg.tls_insecure {
            log::warn!("federation.tls.insecure is set: certificates of homeservers, identity servers and configured backends are NOT checked; never do this in production");
        }
        let hosts = HostsFile::system();
        if hosts.path() != std::path::Path::new(super::hosts::SYSTEM_HOSTS_FILE) {
            log::warn!(
                "outbound names: hosts file {} (from {}) instead of {}",
                hosts.path().display(),
                super::hosts::HOSTS_FILE_ENV,
                super::hosts::SYSTEM_HOSTS_FILE
            );
        }
        Ok(Client {
            names: Names::new(hosts, Dns::new(cfg.resolver, cfg.connect_timeout)),
            policy: AddressPolicy::new(cfg.ip_range_whitelist.clone()),
            caller: Caller::new(cfg, cfg.timeout, MAX_ANSWER_BYTES)?,
            homeservers: Arc::new(BTreeMap::new()),
        })
    }

    /// With the operator's `dns.overwrite.homeserver.federation` entries (server name →
    /// base URL), which homeserver discovery uses instead of resolving the name.
    pub fn with_homeserver_overrides(mut self, entries: BTreeMap<String, String>) -> Client {
        self.homeservers = Arc::new(entries);
        self
    }

    /// The base URL the operator configured for `server_name`'s federation API, if any.
    pub fn homeserver_override(&self, server_name: &str) -> Option<&str> {
        self.homeservers
            .get(&server_name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The resolver of outbound names: `localhost`, the hosts file, then DNS.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The DNS side alone.
    pub fn dns(&self) -> &Dns {
        self.names.dns()
    }

    /// The deadline of one connection attempt, and of one DNS query (`federation.connectTimeout`).
    pub fn connect_timeout(&self) -> Duration {
        self.caller.connect_timeout
    }

    /// The deadline of one whole call (`federation.timeout`).
    pub fn timeout(&self) -> Duration {
        self.caller.timeout
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
        self.call(url, pin, None)
    }

    /// Sends `body` to `url` with `method` (`POST` or `PUT`), `pin` as for `get`.
    pub fn send_json(
        &self,
        method: &str,
        url: &str,
        pin: Option<(String, Vec<SocketAddr>)>,
        body: &serde_json::Value,
    ) -> Result<Answer, CallError> {
        self.call(url, pin, Some((method, body)))
    }

    fn call(
        &self,
        url: &str,
        pin: Option<(String, Vec<SocketAddr>)>,
        json: Option<(&str, &serde_json::Value)>,
    ) -> Result<Answer, CallError> {
        let refusal = Arc::new(Mutex::new(None));
        let resolver = GuardedResolver {
            names: self.names.clone(),
            policy: self.policy.clone(),
            pin,
            refusal: refusal.clone(),
        };
        let agent = self.caller.agent(resolver);
        let started = Instant::now();
        let outcome = self.caller.send(&agent, url, json).map_err(|e| {
            // A refusal or DNS failure in our resolver says more than ureq's wrapper error.
            match crate::lock(&refusal).take() {
                Some(cause) => cause,
                None => classify(e),
            }
        });
        log_call(
            json.map_or("GET", |(method, _)| method),
            url,
            &outcome,
            started,
        );
        outcome
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

/// ureq's resolver hook: our names (`localhost`, the hosts file, DNS), then the address
/// policy.
#[derive(Debug)]
struct GuardedResolver {
    names: Names,
    policy: AddressPolicy,
    pin: Option<(String, Vec<SocketAddr>)>,
    refusal: Arc<Mutex<Option<CallError>>>,
}

impl GuardedResolver {
    fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, CallError> {
        if let Some((pinned, addrs)) = &self.pin {
            if unbracketed(pinned).eq_ignore_ascii_case(unbracketed(host)) {
                return Ok(addrs.clone());
            }
        }
        let ips = match unbracketed(host).parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.names.host(host).map_err(|error| CallError::Name {
                host: host.into(),
                error,
            })?,
        };
        checked(&self.policy, host, &ips)
            .map(|ok| ok.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}

/// A host as in a URL without the brackets of an IPv6 literal.
pub(super) fn unbracketed(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
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

impl Client {
    /// One call to a server a user's input led to (another identity server), with request
    /// `headers` and a whole-call deadline of at most `timeout` (DNS, connect and answer
    /// together; never more than `federation.timeout`): what is left of a request's budget.
    /// `body`: sent as JSON with POST; `None`: a GET.
    pub fn call_within(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<Answer, CallError> {
        if timeout.is_zero() {
            return Err(CallError::Timeout);
        }
        let mut caller = self.caller.clone();
        caller.timeout = caller.timeout.min(timeout);
        caller.connect_timeout = caller.connect_timeout.min(timeout);
        let refusal = Arc::new(Mutex::new(None));
        let resolver = GuardedResolver {
            // Two attempts per query: each takes half of what is left.
            names: self.names.with_timeout(timeout / 2),
            policy: self.policy.clone(),
            pin: None,
            refusal: refusal.clone(),
        };
        let agent = caller.agent(resolver);
        let started = Instant::now();
        let outcome = caller
            .send_with_headers(&agent, url, headers, body.map(|json| json.to_string()))
            .map_err(|e| match crate::lock(&refusal).take() {
                Some(cause) => cause,
                None => classify(e),
            });
        let method = if body.is_some() { "POST" } else { "GET" };
        log_call(method, url, &outcome, started);
        outcome
    }
}

/// `-vv`: one line per outbound call, with its method, its URL without the query (where
/// secrets such as access tokens would travel) nor credentials, its status or error, and
/// how long it took.
fn log_call(method: &str, url: &str, outcome: &Result<Answer, CallError>, started: Instant) {
    if !log::log_enabled!(log::Level::Trace) {
        return;
    }
    let result = match outcome {
        Ok(answer) => format!("HTTP {}", answer.status),
        Err(e) => format!("failed: {e}"),
    };
    log::trace!(
        "outbound {method} {}: {result} in {} ms",
        loggable_url(url),
        started.elapsed().as_millis()
    );
}

/// `url` without its query and fragment, and without `user:password@`.
fn loggable_url(url: &str) -> String {
    let bare = url.split(['?', '#']).next().unwrap_or_default();
    match bare.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => bare.to_owned(),
    }
}

#[cfg(test)]
mod log_tests {
    use super::loggable_url;

    #[test]
    fn logged_urls_keep_no_query_nor_credentials() {
        assert_eq!(
            loggable_url(
                "https://u:secret@id.example:8443/_matrix/identity/v2/lookup?access_token=abc#x"
            ),
            "https://id.example:8443/_matrix/identity/v2/lookup"
        );
        assert_eq!(
            loggable_url("http://127.0.0.1:5000/api?x=1"),
            "http://127.0.0.1:5000/api"
        );
        assert_eq!(loggable_url("https://host"), "https://host");
    }
}
