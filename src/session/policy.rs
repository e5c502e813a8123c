//! mxisd's validation policy (seed 004): is a 3PID *local* (an e-mail address on
//! `matrix.domain`: federation leads back here) or *remote* (any other address, every phone
//! number), and where may its session run: here (`toLocal`), on another identity server
//! (`toRemote`, the first server of the list its `server` label names), or here with the
//! other server offered once validated (both).

use crate::config::{Scope, ValidationPolicy, MATRIX_ORG_LABEL};
use crate::threepid::Medium;
use std::collections::BTreeMap;

/// Where a session runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Here only.
    Local,
    /// Here, then publishing on this remote server (a base URL) is offered.
    LocalOffer(String),
    /// On this remote server only: our own token only starts the remote session.
    Remote(String),
}

impl Route {
    /// The remote server, if any.
    pub fn remote(&self) -> Option<&str> {
        match self {
            Route::Local => None,
            Route::LocalOffer(s) | Route::Remote(s) => Some(s),
        }
    }
}

const AT: &str = "session.policy.validation";

/// Where a session for (medium, address) runs; else the refusal, naming the key.
/// `servers` is `matrix.identity.servers`: a `toRemote` whose label names no list offers
/// nothing. Phone numbers never go remote: their remote flow needs pages that SMS codes
/// never open.
pub fn route(
    policy: &ValidationPolicy,
    servers: &BTreeMap<String, Vec<String>>,
    medium: Medium,
    address: &str,
    domain: &str,
) -> Result<Route, String> {
    if !policy.enabled {
        return Err(format!("3PID sessions are disabled here ({AT}.enabled)"));
    }
    let local = is_local(medium, address, domain);
    let (scope, key): (&Scope, &str) = if local {
        (&policy.for_local, "forLocal")
    } else {
        (&policy.for_remote, "forRemote")
    };
    let which = if local { "this domain's" } else { "other" };
    if !scope.enabled {
        return Err(format!(
            "sessions for {which} 3PIDs are disabled here ({AT}.{key}.enabled)"
        ));
    }
    let remote = match (scope.to_remote, medium) {
        (true, Medium::Email) => remote_server(scope, servers),
        _ => None,
    };
    match (scope.to_local, remote) {
        (true, None) => Ok(Route::Local),
        (true, Some(server)) => Ok(Route::LocalOffer(server)),
        (false, Some(server)) => Ok(Route::Remote(server)),
        (false, None) if scope.to_remote && medium == Medium::Msisdn => Err(format!(
            "{which} 3PIDs are validated on another identity server ({AT}.{key}.toRemote), which this version does for e-mail addresses only"
        )),
        (false, None) if scope.to_remote => Err(format!(
            "{which} 3PIDs are validated on another identity server ({AT}.{key}.toRemote), and no server is configured for it ({AT}.{key}.toRemote.server names no list of matrix.identity.servers)"
        )),
        (false, None) => Err(format!(
            "sessions for {which} 3PIDs are not validated here ({AT}.{key}.toLocal)"
        )),
    }
}

fn is_local(medium: Medium, address: &str, domain: &str) -> bool {
    medium == Medium::Email
        && address
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain))
}

/// The first server of the list `toRemote.server` names (mxisd's `matrix-org` when
/// unset): only the first is used, as in mxisd.
fn remote_server(scope: &Scope, servers: &BTreeMap<String, Vec<String>>) -> Option<String> {
    let label = scope.remote_server.as_deref().unwrap_or(MATRIX_ORG_LABEL);
    servers.get(label).and_then(|list| list.first()).cloned()
}

/// The scopes whose `toRemote.server` names no list: said once at start.
pub fn unusable_labels(
    policy: &ValidationPolicy,
    servers: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    [("forLocal", &policy.for_local), ("forRemote", &policy.for_remote)]
        .into_iter()
        .filter(|(_, s)| policy.enabled && s.enabled && s.to_remote)
        .filter(|(_, s)| remote_server(s, servers).is_none())
        .map(|(key, s)| {
            format!(
                "{AT}.{key}.toRemote.server '{}' names no list of matrix.identity.servers: no remote session is offered for these 3PIDs",
                s.remote_server.as_deref().unwrap_or(MATRIX_ORG_LABEL)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(enabled: bool, to_local: bool, to_remote: bool) -> Scope {
        Scope {
            enabled,
            to_local,
            to_remote,
            remote_server: Some("remote".into()),
        }
    }

    fn policy(for_local: Scope, for_remote: Scope) -> ValidationPolicy {
        ValidationPolicy {
            enabled: true,
            for_local,
            for_remote,
        }
    }

    fn servers() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([(
            "remote".to_owned(),
            vec!["http://b.example".to_owned(), "http://c.example".to_owned()],
        )])
    }

    #[test]
    fn the_seed_examples() {
        let d = "example.org";
        let b = || "http://b.example".to_owned();
        let s = servers();
        // The default table: local here with the remote offered, remote forced elsewhere.
        let default = policy(scope(true, true, true), scope(true, false, true));
        assert_eq!(
            route(&default, &s, Medium::Email, "a@EXAMPLE.org", d),
            Ok(Route::LocalOffer(b()))
        );
        assert_eq!(
            route(&default, &s, Medium::Email, "a@gmail.com", d),
            Ok(Route::Remote(b()))
        );
        let e = route(&default, &s, Medium::Msisdn, "447700900001", d).unwrap_err();
        assert!(
            e.contains("forRemote.toRemote") && e.contains("e-mail"),
            "{e}"
        );
        // Local only: everything here.
        let local = policy(scope(true, true, false), scope(true, true, false));
        for (m, a) in [
            (Medium::Email, "a@gmail.com"),
            (Medium::Email, "a@example.org"),
            (Medium::Msisdn, "447700900001"),
        ] {
            assert_eq!(route(&local, &s, m, a, d), Ok(Route::Local));
        }
        // Everything remote: nothing here.
        let remote = policy(scope(true, false, true), scope(true, false, true));
        for a in ["a@example.org", "a@gmail.com"] {
            assert_eq!(
                route(&remote, &s, Medium::Email, a, d),
                Ok(Route::Remote(b()))
            );
        }
        // Sessions off.
        let off = ValidationPolicy {
            enabled: false,
            ..local
        };
        let e = route(&off, &s, Medium::Email, "a@example.org", d).unwrap_err();
        assert!(e.contains("session.policy.validation.enabled"), "{e}");
    }

    #[test]
    fn no_usable_server_offers_nothing() {
        let d = "example.org";
        let none = BTreeMap::new();
        let default = policy(scope(true, true, true), scope(true, false, true));
        assert_eq!(
            route(&default, &none, Medium::Email, "a@example.org", d),
            Ok(Route::Local)
        );
        let e = route(&default, &none, Medium::Email, "a@gmail.com", d).unwrap_err();
        assert!(e.contains("forRemote.toRemote.server"), "{e}");
        let said = unusable_labels(&default, &none);
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said[0].contains("'remote'"), "{said:?}");
        assert!(unusable_labels(&default, &servers()).is_empty());
        // Unset: mxisd's matrix-org label.
        let mut unset = scope(true, false, true);
        unset.remote_server = None;
        let m = BTreeMap::from([(
            MATRIX_ORG_LABEL.to_owned(),
            vec!["https://matrix.org".to_owned()],
        )]);
        assert_eq!(
            route(
                &policy(unset.clone(), unset),
                &m,
                Medium::Email,
                "a@x.org",
                d
            ),
            Ok(Route::Remote("https://matrix.org".into()))
        );
    }

    #[test]
    fn a_route_names_its_remote() {
        assert_eq!(Route::Local.remote(), None);
        assert_eq!(
            Route::LocalOffer("http://b.example".into()).remote(),
            Some("http://b.example")
        );
        assert_eq!(
            Route::Remote("http://c.example".into()).remote(),
            Some("http://c.example")
        );
    }

    #[test]
    fn a_scope_neither_here_nor_remote_says_so() {
        let d = "example.org";
        let nowhere = policy(scope(true, false, false), scope(true, false, false));
        for (m, a) in [
            (Medium::Email, "a@example.org"),
            (Medium::Msisdn, "447700900001"),
        ] {
            let e = route(&nowhere, &servers(), m, a, d).unwrap_err();
            assert!(e.contains("toLocal") && !e.contains("toRemote"), "{e}");
        }
        // A scope turned off names its own key.
        let off = policy(scope(false, true, false), scope(true, true, false));
        let e = route(&off, &servers(), Medium::Email, "a@example.org", d).unwrap_err();
        assert!(e.contains("forLocal.enabled"), "{e}");
        assert_eq!(
            route(&off, &servers(), Medium::Email, "a@gmail.com", d),
            Ok(Route::Local)
        );
    }

    #[test]
    fn only_scopes_that_would_go_remote_are_warned_of() {
        let none = BTreeMap::new();
        // Local only, or a scope turned off: no remote server is needed, nothing to say.
        let local = policy(scope(true, true, false), scope(false, false, true));
        assert_eq!(unusable_labels(&local, &none), Vec::<String>::new());
        // Sessions off altogether: nothing either.
        let off = ValidationPolicy {
            enabled: false,
            ..policy(scope(true, true, true), scope(true, false, true))
        };
        assert_eq!(unusable_labels(&off, &none), Vec::<String>::new());
        // Only the scope that goes remote.
        let one = policy(scope(true, true, false), scope(true, false, true));
        let said = unusable_labels(&one, &none);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with("session.policy.validation.forRemote.toRemote.server 'remote'"),
            "{said:?}"
        );
    }
}
