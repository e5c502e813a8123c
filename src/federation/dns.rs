//! DNS through one configurable server (`federation.resolver`, else the system's
//! resolv.conf), for every outbound name: SRV records and host addresses.
//!
//! `domain`'s stub resolver is asynchronous; `StubResolver::run_with_conf` runs one lookup on
//! a current-thread runtime and blocks until it is done. The async block below is the only
//! one in mxisd.

use domain::base::name::{Name, RelativeName, UncertainName};
use domain::resolv::stub::conf::{ResolvConf, ServerConf, Transport};
use domain::resolv::StubResolver;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Dns {
    conf: ResolvConf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    BadName(String),
    /// The name does not exist or has no address.
    NotFound(String),
    /// The DNS server did not answer (in time).
    Failed(String),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::BadName(n) => write!(f, "'{n}' is not a valid DNS name"),
            DnsError::NotFound(n) => write!(f, "DNS has no address for {n}"),
            DnsError::Failed(why) => write!(f, "DNS lookup failed: {why}"),
        }
    }
}

enum Query {
    Srv(RelativeName<Vec<u8>>, Name<Vec<u8>>),
    Host(Name<Vec<u8>>),
}

enum Answer {
    Srv(Vec<(String, u16)>),
    Host(Vec<IpAddr>),
}

impl Dns {
    /// `server`: the DNS server to ask, or `None` for the system's. `timeout`: per attempt.
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Dns {
        let mut conf = match server {
            Some(addr) => {
                let mut conf = ResolvConf::new();
                conf.servers.push(ServerConf::new(addr, Transport::UdpTcp));
                conf
            }
            None => ResolvConf::default(),
        };
        conf.options.timeout = timeout;
        conf.options.attempts = 2;
        conf.finalize();
        Dns { conf }
    }

    /// The targets of `<service>.<name>` SRV records, in RFC 2782 order (empty if none).
    pub fn srv(&self, service: &str, name: &str) -> Result<Vec<(String, u16)>, DnsError> {
        let service = match UncertainName::<Vec<u8>>::from_str(service) {
            Ok(UncertainName::Relative(r)) => r,
            _ => return Err(DnsError::BadName(service.into())),
        };
        match self.run(Query::Srv(service, parse_name(name)?))? {
            Answer::Srv(found) => Ok(found),
            Answer::Host(_) => Ok(Vec::new()),
        }
    }

    /// The addresses of `host` (A and AAAA).
    pub fn host(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        match self.run(Query::Host(parse_name(host)?))? {
            Answer::Host(found) if !found.is_empty() => Ok(found),
            _ => Err(DnsError::NotFound(host.to_owned())),
        }
    }

    fn run(&self, query: Query) -> Result<Answer, DnsError> {
        let result: Result<Answer, std::io::Error> =
            StubResolver::run_with_conf(self.conf.clone(), move |resolver| async move {
                match query {
                    Query::Srv(service, name) => {
                        // Port 0 marks the "no SRV record" fallback entry of `domain`.
                        let found = resolver
                            .lookup_srv(service, name, 0)
                            .await
                            .map_err(std::io::Error::other)?;
                        let targets = found
                            .map(|f| f.into_srvs().collect::<Vec<_>>())
                            .unwrap_or_default();
                        Ok(Answer::Srv(
                            targets
                                .into_iter()
                                .filter(|srv| srv.port() != 0)
                                .map(|srv| {
                                    (
                                        srv.target().to_string().trim_end_matches('.').to_owned(),
                                        srv.port(),
                                    )
                                })
                                .collect(),
                        ))
                    }
                    Query::Host(name) => match resolver.lookup_host(name).await {
                        Ok(found) => Ok(Answer::Host(found.iter().collect())),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            Ok(Answer::Host(Vec::new()))
                        }
                        Err(e) => Err(e),
                    },
                }
            });
        result.map_err(|e| DnsError::Failed(e.to_string()))
    }
}

fn parse_name(name: &str) -> Result<Name<Vec<u8>>, DnsError> {
    match UncertainName::<Vec<u8>>::from_str(name) {
        Ok(UncertainName::Absolute(n)) => Ok(n),
        Ok(UncertainName::Relative(r)) => r
            .into_absolute()
            .map_err(|_| DnsError::BadName(name.into())),
        Err(_) => Err(DnsError::BadName(name.into())),
    }
}

/// One SRV record as the DNS answered it, with its time to live: identity server
/// discovery orders the records itself (RFC 2782) and keeps them for their TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Without the final dot; `.` (service not offered) is left out.
    pub target: String,
    pub ttl: Duration,
}

impl Dns {
    /// The same resolver, each query attempt bounded by `timeout` (two attempts): for calls
    /// that must fit in what is left of a request's budget.
    pub fn with_timeout(&self, timeout: Duration) -> Dns {
        let mut conf = self.conf.clone();
        conf.options.timeout = timeout.max(Duration::from_millis(10));
        Dns { conf }
    }

    /// The SRV records of `<service>.<name>` with their TTLs, unordered (empty when the name
    /// has none or does not exist). The error is text: why the DNS could not answer.
    pub fn srv_records(&self, service: &str, name: &str) -> Result<Vec<SrvRecord>, String> {
        use domain::base::iana::{Rcode, Rtype};
        use domain::base::name::ParsedName;
        use domain::rdata::Srv;
        let qname = parse_name(&format!("{service}.{name}")).map_err(|e| e.to_string())?;
        let result: Result<Vec<SrvRecord>, std::io::Error> =
            StubResolver::run_with_conf(self.conf.clone(), move |resolver| async move {
                let answer = resolver.query((qname, Rtype::SRV)).await?;
                let message = answer.into_message();
                if message.header().rcode() == Rcode::NXDOMAIN {
                    return Ok(Vec::new());
                }
                let section = message.answer().map_err(std::io::Error::other)?;
                let mut found = Vec::new();
                for record in section.limit_to::<Srv<ParsedName<_>>>() {
                    let record = record.map_err(std::io::Error::other)?;
                    let srv = record.data();
                    let target = srv.target().to_string();
                    let target = target.trim_end_matches('.');
                    if target.is_empty() {
                        continue;
                    }
                    found.push(SrvRecord {
                        priority: srv.priority(),
                        weight: srv.weight(),
                        port: srv.port(),
                        target: target.to_owned(),
                        ttl: Duration::from_secs(u64::from(record.ttl().as_secs())),
                    });
                }
                Ok(found)
            });
        result.map_err(|e| e.to_string())
    }
}
