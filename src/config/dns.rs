//! `dns`: mxisd's `dns.overwrite.homeserver.{client, federation}`, lists of `{name, value}`
//! where `name` is a homeserver's server name and `value` where to reach it instead of what
//! the name resolves to.
//!
//! - `federation`: the base URL of that homeserver's federation API (`https://host[:port]`,
//!   or `http://` for a listener without TLS; `host[:port]` alone means `https://`, port
//!   8448 when none), used for every call we make to it (OpenID userinfo, keys, onbind):
//!   how a homeserver that does not federate on 8448 is reached.
//! - `client`: mxisd used them for client-API calls (directory and profile proxies,
//!   registration) this version does not make: accepted, with one warning.

use super::check::Resolver;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct DnsConfig {
    /// `dns.overwrite.homeserver.federation`: server name (lower case) → base URL of its
    /// federation API, without a trailing `/`.
    pub homeserver_federation: BTreeMap<String, String>,
}

const FEDERATION: &str = "dns.overwrite.homeserver.federation";
const CLIENT: &str = "dns.overwrite.homeserver.client";
/// The federation port of the specification, for a `host` written without one.
const FEDERATION_PORT: u16 = 8448;

impl Resolver<'_> {
    pub(super) fn dns(&mut self, d: raw::Dns) -> Result<DnsConfig, String> {
        let homeserver = d.overwrite.and_then(|o| o.homeserver).unwrap_or_default();
        let client = self.entries(CLIENT, homeserver.client.unwrap_or_default())?;
        if !client.is_empty() {
            self.warnings.push(self.at(
                CLIENT,
                format!(
                    "{} entr{} accepted, with no effect: mxisd used them for calls to homeservers' client API (directory, profile, registration), which this version does not make",
                    client.len(),
                    if client.len() == 1 { "y" } else { "ies" }
                ),
            ));
        }
        let mut homeserver_federation = BTreeMap::new();
        for (i, (name, value)) in self
            .entries(FEDERATION, homeserver.federation.unwrap_or_default())?
            .into_iter()
            .enumerate()
        {
            let url = self.federation_url(&format!("{FEDERATION}[{i}].value"), &value)?;
            homeserver_federation.insert(name, url);
        }
        Ok(DnsConfig {
            homeserver_federation,
        })
    }

    /// The `{name, value}` entries of the list at `path`: both there, a server name, each
    /// name once.
    fn entries(&self, path: &str, list: Vec<raw::Entry>) -> Result<Vec<(String, String)>, String> {
        let mut out: Vec<(String, String)> = Vec::with_capacity(list.len());
        for (i, entry) in list.into_iter().enumerate() {
            let at = format!("{path}[{i}]");
            let name = self
                .non_empty(&format!("{at}.name"), entry.name)?
                .ok_or_else(|| {
                    self.required(&format!("{at}.name"), ": the homeserver's server name")
                })?
                .to_ascii_lowercase();
            if split_server_name(&name).is_none() {
                return Err(self.at(
                    path,
                    format!(
                        "entry {i}: '{name}' is not a server name (host[:port], no scheme or path)"
                    ),
                ));
            }
            let value = self
                .non_empty(&format!("{at}.value"), entry.value)?
                .ok_or_else(|| {
                    self.required(&format!("{at}.value"), ": where to reach the homeserver")
                })?;
            if out.iter().any(|(n, _)| *n == name) {
                return Err(self.at(path, format!("'{name}' is listed twice")));
            }
            out.push((name, value));
        }
        Ok(out)
    }

    /// A federation base URL: an http(s) URL as written (no trailing `/`), or `host[:port]`
    /// made `https://host:port`.
    fn federation_url(&self, path: &str, value: &str) -> Result<String, String> {
        let bad = |why: &str| self.at(path, format!("'{value}' {why}"));
        if value.contains(['?', '#', '@']) || value.contains(char::is_whitespace) {
            return Err(bad(
                "is not a base URL (no query, fragment, user or blanks)",
            ));
        }
        if let Some(rest) = value
            .strip_prefix("https://")
            .or_else(|| value.strip_prefix("http://"))
        {
            if split_server_name(rest.split('/').next().unwrap_or_default()).is_none() {
                return Err(bad("has no valid host[:port]"));
            }
            return Ok(value.trim_end_matches('/').to_owned());
        }
        match split_server_name(value) {
            Some((host, port)) => Ok(format!(
                "https://{host}:{}",
                port.unwrap_or(FEDERATION_PORT)
            )),
            None => Err(bad("is neither an http(s) URL nor host[:port]")),
        }
    }
}

/// `host[:port]` as a server name is written: letters, digits, `-` and `.`, or an IPv6
/// literal in brackets; a port in 1..=65535 if any. `None` if it is not one.
fn split_server_name(name: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = match name.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (&name[..v6.len() + 2], port)
        }
        None => {
            let (host, port) = match name.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (name, None),
            };
            let valid = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            valid.then_some((host, port))?
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0)?),
        None => None,
    };
    Some((host, port))
}

/// `dns` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        /// mxisd's DNS overrides.
        Dns {
            overwrite: Overwrite = "overwrite",
        }
    }
    section! {
        Overwrite {
            homeserver: Homeserver = "homeserver",
        }
    }
    section! {
        Homeserver {
            client: Vec<Entry> = "client",
            federation: Vec<Entry> = "federation",
        }
    }
    section! {
        /// One override: a homeserver's server name, and where to reach it.
        Entry {
            name: String = "name",
            value: String = "value",
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    fn dns(section: &str) -> Result<(super::DnsConfig, Vec<String>), String> {
        load_str(
            &format!("matrix:\n  domain: example.org\nmemory:\n  enabled: true\ndns:\n  overwrite:\n    homeserver:\n{section}"),
            "test.yaml",
        )
        .map(|l| (l.config.dns, l.warnings))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn federation_entries_are_base_urls_by_server_name() {
        let (c, warnings) = dns("      federation:\n        - name: Example.org\n          value: 'https://hs.internal:8449/'\n        - name: 'localhost:8448'\n          value: 'http://127.0.0.1:8008'\n        - name: other.example\n          value: 'hs.other.lan'\n        - name: v6.example\n          value: '[fd00::5]:8450'\n").unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let got: Vec<(&str, &str)> = c
            .homeserver_federation
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("example.org", "https://hs.internal:8449"),
                ("localhost:8448", "http://127.0.0.1:8008"),
                ("other.example", "https://hs.other.lan:8448"),
                ("v6.example", "https://[fd00::5]:8450"),
            ]
        );
        assert!(dns("").unwrap().0.homeserver_federation.is_empty());
    }

    #[test]
    fn client_entries_are_accepted_with_one_warning() {
        let (c, warnings) = dns("      client:\n        - name: example.org\n          value: 'http://localhost:8008'\n        - name: other.example\n          value: 'http://10.0.0.2:8008'\n").unwrap();
        assert!(c.homeserver_federation.is_empty());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("`dns.overwrite.homeserver.client` (line 8)")
                && warnings[0].contains("2 entries accepted, with no effect"),
            "{warnings:?}"
        );
    }

    #[test]
    fn bad_entries_name_their_key() {
        for (section, expected) in [
            (
                "      federation:\n        - value: 'https://hs'\n",
                "`dns.overwrite.homeserver.federation[0].name` is required",
            ),
            (
                "      federation:\n        - name: example.org\n",
                "`dns.overwrite.homeserver.federation[0].value` is required",
            ),
            (
                "      federation:\n        - name: 'https://example.org'\n          value: hs\n",
                "is not a server name",
            ),
            (
                "      federation:\n        - name: example.org\n          value: 'ftp://hs'\n",
                "is neither an http(s) URL nor host[:port]",
            ),
            (
                "      federation:\n        - name: example.org\n          value: 'https://hs:99999'\n",
                "has no valid host[:port]",
            ),
            (
                "      federation:\n        - name: example.org\n          value: 'https://hs/?x=1'\n",
                "is not a base URL",
            ),
            (
                "      federation:\n        - name: example.org\n          value: a\n        - name: EXAMPLE.org\n          value: b\n",
                "'example.org' is listed twice",
            ),
            (
                "      federation:\n        - name: example.org\n          value: a\n          port: 1\n",
                "unknown key `dns.overwrite.homeserver.federation[0].port`",
            ),
        ] {
            let e = dns(section).unwrap_err();
            assert!(e.contains(expected), "{section}: {e}");
        }
    }
}
