//! Server name → where to reach its federation API, as the server-server specification says
//! ("Resolving server names"):
//! 1. an IP literal, or a name with an explicit port: connect there directly;
//! 2. else `https://<name>/.well-known/matrix/server` may delegate to another name, which is
//!    then resolved by the same rules (literal, port, SRV, 8448) without a second well-known;
//! 3. else SRV `_matrix-fed._tcp.<name>`, then the deprecated `_matrix._tcp.<name>`;
//! 4. else `<name>:8448`.
//!
//! TLS and the Host header use the server (or delegated) name; SRV targets are pinned as the
//! addresses to connect to. A well-known that the address policy refuses is an error, not a
//! reason to try the next step.

use super::client::{checked, CallError, Client};
use std::net::{IpAddr, SocketAddr};

const DEFAULT_PORT: u16 = 8448;

/// Where to send requests for a server: a base URL, and addresses pinned for its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub base_url: String,
    pub pin: Option<(String, Vec<SocketAddr>)>,
}

/// Splits `host[:port]` (IPv6 literals in brackets); `None` if it is not a server name.
pub fn parse_server_name(name: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = name.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')?
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)?,
            ),
        };
        (format!("[{v6}]"), port)
    } else {
        let (host, port) = match name.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|p| *p > 0)?)),
            None => (name, None),
        };
        let valid = !host.is_empty()
            && host.len() <= 255
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !valid {
            return None;
        }
        (host.to_ascii_lowercase(), port)
    };
    Some((host, port))
}

fn is_ip_literal(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
}

/// Resolves `server_name` to a destination.
pub fn resolve(client: &Client, server_name: &str) -> Result<Destination, CallError> {
    let (host, port) = parse_server_name(server_name)
        .ok_or_else(|| CallError::BadAnswer(format!("'{server_name}' is not a server name")))?;
    if is_ip_literal(&host) || port.is_some() {
        return Ok(direct(&host, port));
    }
    match well_known(client, &host)? {
        Some(delegated) => {
            let (dhost, dport) = parse_server_name(&delegated).ok_or_else(|| {
                CallError::BadAnswer(format!(
                    "{host}'s .well-known delegates to '{delegated}', not a server name"
                ))
            })?;
            if is_ip_literal(&dhost) || dport.is_some() {
                return Ok(direct(&dhost, dport));
            }
            by_srv(client, &dhost)
        }
        None => by_srv(client, &host),
    }
}

fn direct(host: &str, port: Option<u16>) -> Destination {
    Destination {
        base_url: format!("https://{host}:{}", port.unwrap_or(DEFAULT_PORT)),
        pin: None,
    }
}

/// The delegated name of `/.well-known/matrix/server`, if one is served.
fn well_known(client: &Client, host: &str) -> Result<Option<String>, CallError> {
    match client.get(&format!("https://{host}/.well-known/matrix/server"), None) {
        Ok(answer) if answer.status == 200 => Ok(answer.json().ok().and_then(|v| {
            v.get("m.server")
                .and_then(|s| s.as_str())
                .map(str::to_owned)
        })),
        Ok(_) => Ok(None),
        Err(refused @ CallError::Refused { .. }) => Err(refused),
        Err(e) => {
            log::debug!("no .well-known/matrix/server for {host}: {e}");
            Ok(None)
        }
    }
}

fn by_srv(client: &Client, host: &str) -> Result<Destination, CallError> {
    for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
        let targets = client.dns().srv(service, host).unwrap_or_else(|e| {
            log::debug!("SRV {service}.{host}: {e}");
            Vec::new()
        });
        for (target, port) in targets {
            let ips = match client.dns().host(&target) {
                Ok(ips) => ips,
                Err(e) => {
                    log::debug!("SRV target {target} of {host}: {e}");
                    continue;
                }
            };
            let allowed = checked(client.policy(), &target, &ips)?;
            let addrs = allowed
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect();
            return Ok(Destination {
                base_url: format!("https://{host}"),
                pin: Some((host.to_owned(), addrs)),
            });
        }
    }
    Ok(direct(host, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_parse_as_the_spec_writes_them() {
        assert_eq!(
            parse_server_name("example.org"),
            Some(("example.org".into(), None))
        );
        assert_eq!(
            parse_server_name("Matrix.Example.org:8449"),
            Some(("matrix.example.org".into(), Some(8449)))
        );
        assert_eq!(
            parse_server_name("1.2.3.4:443"),
            Some(("1.2.3.4".into(), Some(443)))
        );
        assert_eq!(
            parse_server_name("[::1]:8448"),
            Some(("[::1]".into(), Some(8448)))
        );
        assert_eq!(parse_server_name("[::1]"), Some(("[::1]".into(), None)));
        for bad in [
            "",
            "example.org:",
            "example.org:0",
            "ex ample.org",
            "a/b",
            "[::1",
            "[x]:1",
            "host:99999",
            "@a:b",
        ] {
            assert_eq!(parse_server_name(bad), None, "{bad}");
        }
    }
}
