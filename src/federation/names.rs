//! Names as the system resolves them, without `getaddrinfo` (it has no deadline, and a
//! worker must never wait on it): `localhost` is loopback (RFC 6761), then the hosts file
//! (`hosts.rs`), then DNS through `domain` under the deadline of one query
//! (`federation.resolver` names the DNS server; `dns.rs`). SRV records are DNS's alone.
//!
//! What a name resolves to is not checked here: the address policy applies to every answer,
//! wherever it came from (the guarded client, `client.rs`).

use super::dns::{Dns, DnsError};
use super::hosts::{self, HostsFile};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The resolver of every outbound name: hosts file first, then DNS.
#[derive(Debug, Clone)]
pub struct Names {
    hosts: Arc<HostsFile>,
    dns: Dns,
}

/// Why a name gave no address, saying which source failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    BadName(String),
    /// Neither the hosts file nor DNS has an address for it.
    NotFound {
        name: String,
        hosts_file: String,
    },
    /// The DNS server did not answer (in time), or answered an error.
    Dns(String),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::BadName(n) => write!(f, "'{n}' is not a valid DNS name"),
            NameError::NotFound { name, hosts_file } => {
                write!(f, "DNS has no address for {name} (nor has {hosts_file})")
            }
            NameError::Dns(why) => write!(f, "DNS lookup failed: {why}"),
        }
    }
}

impl NameError {
    fn from_dns(error: DnsError, hosts_file: &HostsFile) -> NameError {
        match error {
            DnsError::BadName(n) => NameError::BadName(n),
            DnsError::NotFound(name) => NameError::NotFound {
                name,
                hosts_file: hosts_file.path().display().to_string(),
            },
            DnsError::Failed(why) => NameError::Dns(why),
        }
    }
}

impl Names {
    pub fn new(hosts: HostsFile, dns: Dns) -> Names {
        Names {
            hosts: Arc::new(hosts),
            dns,
        }
    }

    /// The same names with `timeout` per DNS attempt (what is left of a caller's budget).
    pub fn with_timeout(&self, timeout: Duration) -> Names {
        Names {
            hosts: self.hosts.clone(),
            dns: self.dns.with_timeout(timeout),
        }
    }

    /// The DNS side alone (SRV records; names a hosts file must not answer).
    pub fn dns(&self) -> &Dns {
        &self.dns
    }

    /// The addresses of `host`: loopback for `localhost` and its subdomains, else the hosts
    /// file's if it names it, else DNS's (A and AAAA).
    pub fn host(&self, host: &str) -> Result<Vec<IpAddr>, NameError> {
        if let Some(loopback) = hosts::special(host) {
            return Ok(loopback);
        }
        if let Some(found) = self.hosts.lookup(host) {
            log::debug!("{host}: {found:?} from {}", self.hosts.path().display());
            return Ok(found);
        }
        self.dns
            .host(host)
            .map_err(|e| NameError::from_dns(e, &self.hosts))
    }

    /// The targets of `<service>.<name>` SRV records, in RFC 2782 order (empty if none).
    pub fn srv(&self, service: &str, name: &str) -> Result<Vec<(String, u16)>, NameError> {
        self.dns
            .srv(service, name)
            .map_err(|e| NameError::from_dns(e, &self.hosts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Duration;

    /// A DNS "server" that never answers: a lookup that reaches it fails after the deadline.
    fn silent_dns() -> (UdpSocket, Dns) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = socket.local_addr().unwrap();
        (socket, Dns::new(Some(addr), Duration::from_millis(100)))
    }

    #[test]
    fn localhost_and_the_hosts_file_answer_before_dns() {
        let dir = std::env::temp_dir().join(format!(
            "mxisd-names-{}-{}",
            std::process::id(),
            crate::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hosts");
        std::fs::write(&path, "10.20.0.5 hs.corp.example\n10.9.9.9 localhost\n").unwrap();
        let (_socket, dns) = silent_dns();
        let names = Names::new(HostsFile::at(&path), dns);
        let loopback: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        // RFC 6761 wins over a hosts file that says otherwise.
        assert_eq!(names.host("localhost").unwrap(), loopback);
        assert_eq!(names.host("hs.localhost").unwrap(), loopback);
        assert_eq!(
            names.host("HS.corp.example").unwrap(),
            vec!["10.20.0.5".parse::<IpAddr>().unwrap()]
        );
        // Anything else goes to DNS, which here never answers: said as DNS's failure.
        let e = names.host("elsewhere.example").unwrap_err();
        assert!(matches!(e, NameError::Dns(_)), "{e:?}");
        assert!(e.to_string().starts_with("DNS lookup failed"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn messages_say_which_source_failed() {
        let e = NameError::NotFound {
            name: "hs.example".into(),
            hosts_file: "/etc/hosts".into(),
        };
        assert_eq!(
            e.to_string(),
            "DNS has no address for hs.example (nor has /etc/hosts)"
        );
    }
}
