//! Server name → where to reach its federation API. First the operator's word: an entry of
//! `dns.overwrite.homeserver.federation` for that server name is its base URL, its host
//! resolved by our names and *not* checked by the address policy (the operator wrote it, as
//! the configured backends of `ConfiguredClient`; a redirect from there is checked as
//! always). Else as the server-server specification says ("Resolving server names"):
//! 1. an IP literal, or a name with an explicit port: connect there directly;
//! 2. else `https://<name>/.well-known/matrix/server` may delegate to another name, which is
//!    then resolved by the same rules (literal, port, SRV, 8448) without a second well-known;
//! 3. else SRV `_matrix-fed._tcp.<name>`, then the deprecated `_matrix._tcp.<name>`;
//! 4. else `<name>:8448`.
//!
//! TLS and the Host header use the server (or delegated) name; SRV targets are pinned as the
//! addresses to connect to. A well-known that the address policy refuses is an error, not a
//! reason to try the next step.

use super::client::{checked, unbracketed, CallError, Client};
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
    unbracketed(host).parse::<IpAddr>().is_ok()
}

/// Resolves `server_name` to a destination.
pub fn resolve(client: &Client, server_name: &str) -> Result<Destination, CallError> {
    let (host, port) = parse_server_name(server_name)
        .ok_or_else(|| CallError::BadAnswer(format!("'{server_name}' is not a server name")))?;
    if let Some(base_url) = client.homeserver_override(server_name) {
        return configured(client, server_name, base_url);
    }
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

/// The base URL the operator configured for `server_name`, its host's addresses pinned
/// unchecked: the address policy guards names users give, not the operator's own.
fn configured(
    client: &Client,
    server_name: &str,
    base_url: &str,
) -> Result<Destination, CallError> {
    let (host, port) = url_host_port(base_url)
        .ok_or_else(|| CallError::BadAnswer(format!("'{base_url}' is not an http(s) URL")))?;
    let ips = match unbracketed(host).parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => client.names().host(host).map_err(|error| CallError::Name {
            host: host.to_owned(),
            error,
        })?,
    };
    log::debug!("homeserver {server_name}: {base_url} (dns.overwrite.homeserver.federation)");
    let addrs = ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    Ok(Destination {
        base_url: base_url.to_owned(),
        pin: Some((host.to_owned(), addrs)),
    })
}

/// The host (an IPv6 literal in its brackets) and port of an `http(s)://host[:port][/path]`
/// URL, the port defaulting to the scheme's.
fn url_host_port(url: &str) -> Option<(&str, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let end = v6.find(']')? + 2;
            (&authority[..end], authority[end..].strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0)?,
        None => default,
    };
    (!host.is_empty()).then_some((host, port))
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
        let targets = client.names().srv(service, host).unwrap_or_else(|e| {
            log::debug!("SRV {service}.{host}: {e}");
            Vec::new()
        });
        for (target, port) in targets {
            let ips = match client.names().host(&target) {
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

    #[test]
    fn configured_urls_give_host_and_port() {
        assert_eq!(
            url_host_port("https://hs.corp.example:8448"),
            Some(("hs.corp.example", 8448))
        );
        assert_eq!(url_host_port("http://10.0.0.5"), Some(("10.0.0.5", 80)));
        assert_eq!(
            url_host_port("https://hs.example/x"),
            Some(("hs.example", 443))
        );
        assert_eq!(url_host_port("https://[::1]:8448"), Some(("[::1]", 8448)));
        assert_eq!(url_host_port("https://[::1]"), Some(("[::1]", 443)));
        for bad in [
            "hs.example:8448",
            "ftp://hs",
            "https://",
            "https://h:0",
            "https://h:x",
        ] {
            assert_eq!(url_host_port(bad), None, "{bad}");
        }
    }
}
