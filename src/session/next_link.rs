//! Where the page of a validation link may send the user on: a requestToken's `next_link`.
//! Checked when the client gives it (requestToken) and again at the redirect (a link
//! stored before the operator set or changed `session.nextLink.allowedHosts`).
//!
//! Without an allow-list, any http(s) URL (today's behaviour, mxisd's). With one, the
//! URL's host must be one of it: compared ASCII case-insensitively, exactly (no wildcard,
//! no parent domain), the port ignored. The host is read as a browser reads it, and a link
//! whose host could be read two ways is refused: user info (`https://good@evil/`), a
//! backslash (a browser's `/`: `https://evil\@good/`), percent-encoded or other characters
//! outside a host name's letters, digits, `-` and `.` (or an IPv6 literal), a port that is
//! not digits. An empty list accepts no `next_link` at all.

use crate::config::is_host_name;
use std::fmt;

/// The longest `next_link` kept.
pub const MAX_LEN: usize = 2048;

/// Why a `next_link` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an http(s) URL of at most `MAX_LEN` characters without control characters.
    Malformed,
    /// `session.nextLink.allowedHosts` is empty: no `next_link` is accepted.
    NoneAccepted,
    /// Its host (as read, or `None`: no host could be read safely) is not in the list.
    NotAllowed(Option<String>),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Malformed => write!(
                f,
                "next_link must be an http(s) URL of at most {MAX_LEN} characters (non-ASCII ones percent-encoded)"
            ),
            Refusal::NoneAccepted => f.write_str("next_link is not accepted by this server"),
            Refusal::NotAllowed(Some(host)) => write!(
                f,
                "next_link's host '{}' is not one this server redirects to",
                host.chars().take(255).collect::<String>()
            ),
            Refusal::NotAllowed(None) => {
                f.write_str("next_link has no host this server can read safely")
            }
        }
    }
}

/// Whether `link` (a URI: `as_uri` applied) may be a `next_link` under `allowed` (the
/// configured hosts, lower case; `None`: any host).
pub fn check(link: &str, allowed: Option<&[String]>) -> Result<(), Refusal> {
    if link.len() > MAX_LEN || link.chars().any(char::is_control) || !is_http(link) {
        return Err(Refusal::Malformed);
    }
    let Some(allowed) = allowed else {
        return Ok(());
    };
    if allowed.is_empty() {
        return Err(Refusal::NoneAccepted);
    }
    match host(link) {
        Some(h) if allowed.iter().any(|a| a.eq_ignore_ascii_case(h)) => Ok(()),
        Some(h) => Err(Refusal::NotAllowed(Some(h.to_owned()))),
        None => Err(Refusal::NotAllowed(None)),
    }
}

/// An http or https URL (any case of the scheme).
pub fn is_http(link: &str) -> bool {
    scheme_rest(link).is_some()
}

/// What follows `http://` or `https://`.
fn scheme_rest(link: &str) -> Option<&str> {
    ["https://", "http://"].iter().find_map(|scheme| {
        link.get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .map(|_| &link[scheme.len()..])
    })
}

/// The host of an http(s) URL, when it can be read only one way: the authority ends at the
/// first `/`, `\`, `?` or `#` (a browser ends it at a backslash too); no user info; a port,
/// if any, of digits; a host of letters, digits, `-` and `.`, or a bracketed IPv6 literal.
fn host(link: &str) -> Option<&str> {
    let rest = scheme_rest(link)?;
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        (&authority[..=close], &authority[close + 1..])
    } else {
        match authority.find(':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        }
    };
    let port_ok = match port.strip_prefix(':') {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
        None => port.is_empty(),
    };
    (port_ok && is_host_name(host)).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(hosts: &[&str]) -> Vec<String> {
        hosts.iter().map(|h| h.to_string()).collect()
    }

    #[test]
    fn without_a_list_any_http_link_as_today() {
        assert_eq!(check("https://anywhere.example/x", None), Ok(()));
        assert_eq!(check("HTTP://anywhere.example", None), Ok(()));
        for bad in [
            "javascript:alert(1)",
            "file:///etc/passwd",
            "data:text/html,<b>x</b>",
            "ftp://example.org/",
            "//evil.example/",
            "https://a.example/\r\nSet-Cookie: x",
        ] {
            assert_eq!(check(bad, None), Err(Refusal::Malformed), "{bad}");
        }
        let long = format!("https://a.example/{}", "x".repeat(MAX_LEN));
        assert_eq!(check(&long, None), Err(Refusal::Malformed));
        // The longest kept: exactly MAX_LEN.
        let longest = format!("https://a.example/{}", "x".repeat(MAX_LEN - 18));
        assert_eq!(longest.len(), MAX_LEN);
        assert_eq!(check(&longest, None), Ok(()));
        assert_eq!(check(&format!("{longest}x"), None), Err(Refusal::Malformed));
    }

    #[test]
    fn listed_hosts_case_insensitive_port_ignored() {
        let allowed = list(&["app.example.org", "[::1]"]);
        let allowed = Some(allowed.as_slice());
        for ok in [
            "https://app.example.org",
            "https://APP.Example.ORG/after?x=1#y",
            "http://app.example.org:8443/",
            "https://app.example.org?next",
            "https://app.example.org#frag",
            "https://[::1]:8080/x",
        ] {
            assert_eq!(check(ok, allowed), Ok(()), "{ok}");
        }
    }

    #[test]
    fn other_hosts_and_ambiguous_links_refused() {
        let allowed = list(&["app.example.org"]);
        let allowed = Some(allowed.as_slice());
        let not = |h: &str| Err(Refusal::NotAllowed(Some(h.to_owned())));
        assert_eq!(check("https://evil.example/", allowed), not("evil.example"));
        // Exact: neither a sub-domain nor a parent, nor a name ending the same way.
        assert_eq!(
            check("https://x.app.example.org/", allowed),
            not("x.app.example.org")
        );
        assert_eq!(check("https://example.org/", allowed), not("example.org"));
        assert_eq!(
            check("https://evilapp.example.org/", allowed),
            not("evilapp.example.org")
        );
        assert_eq!(
            check("https://app.example.org.evil.example/", allowed),
            not("app.example.org.evil.example")
        );
        // A browser ends the authority at a backslash: this goes to evil.example.
        assert_eq!(
            check("https://evil.example\\@app.example.org/", allowed),
            not("evil.example")
        );
        for unreadable in [
            "https://app.example.org@evil.example/",
            "https://user:pw@app.example.org/",
            "https://app%2Eexample.org/",
            "https://app.example.org:evil/",
            "https:///evil.example/",
            "https://\\evil.example/",
            "https://[::1/",
        ] {
            assert_eq!(
                check(unreadable, allowed),
                Err(Refusal::NotAllowed(None)),
                "{unreadable}"
            );
        }
        assert_eq!(
            check("javascript:alert(1)", allowed),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn an_empty_list_accepts_none() {
        assert_eq!(
            check("https://app.example.org/", Some(&[])),
            Err(Refusal::NoneAccepted)
        );
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            Refusal::Malformed.to_string(),
            "next_link must be an http(s) URL of at most 2048 characters (non-ASCII ones percent-encoded)"
        );
        assert_eq!(
            Refusal::NoneAccepted.to_string(),
            "next_link is not accepted by this server"
        );
        assert_eq!(
            Refusal::NotAllowed(Some("evil.example".into())).to_string(),
            "next_link's host 'evil.example' is not one this server redirects to"
        );
        // A long host is cut in the message.
        let said = Refusal::NotAllowed(Some("a".repeat(300))).to_string();
        assert!(said.contains(&format!("'{}'", "a".repeat(255))), "{said}");
        assert!(!said.contains(&"a".repeat(256)), "{said}");
        assert_eq!(
            Refusal::NotAllowed(None).to_string(),
            "next_link has no host this server can read safely"
        );
    }
}
