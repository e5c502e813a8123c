//! mxisd's validation policy (seed 004): is a 3PID *local* (an e-mail address on
//! `matrix.domain`: federation leads back here) or *remote* (any other address, every phone
//! number), and may its session run here? Remote sessions (on another identity server) come
//! with federation: until then a policy that asks for one refuses, naming its key.

use crate::config::{Scope, ValidationPolicy};
use crate::threepid::Medium;

/// Whether a session for (medium, address) may run here; else the refusal, naming the key.
pub fn allows(
    policy: &ValidationPolicy,
    medium: Medium,
    address: &str,
    domain: &str,
) -> Result<(), String> {
    const AT: &str = "session.policy.validation";
    if !policy.enabled {
        return Err(format!("3PID sessions are disabled here ({AT}.enabled)"));
    }
    let local = medium == Medium::Email
        && address
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain));
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
    if scope.to_local {
        return Ok(());
    }
    if scope.to_remote {
        return Err(format!(
            "{which} 3PIDs are validated on another identity server ({AT}.{key}.toRemote), which this version cannot do yet"
        ));
    }
    Err(format!(
        "sessions for {which} 3PIDs are not validated here ({AT}.{key}.toLocal)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(enabled: bool, to_local: bool, to_remote: bool) -> Scope {
        Scope {
            enabled,
            to_local,
            to_remote,
            remote_server: None,
        }
    }

    fn policy(for_local: Scope, for_remote: Scope) -> ValidationPolicy {
        ValidationPolicy {
            enabled: true,
            for_local,
            for_remote,
        }
    }

    #[test]
    fn the_seed_examples() {
        let d = "example.org";
        // The default table: local here, remote forced elsewhere.
        let default = policy(scope(true, true, true), scope(true, false, true));
        assert!(allows(&default, Medium::Email, "a@example.org", d).is_ok());
        let e = allows(&default, Medium::Email, "a@gmail.com", d).unwrap_err();
        assert!(e.contains("forRemote.toRemote"), "{e}");
        assert!(allows(&default, Medium::Msisdn, "447700900001", d).is_err());
        // Local only: everything here.
        let local = policy(scope(true, true, false), scope(true, true, false));
        for (m, a) in [
            (Medium::Email, "a@gmail.com"),
            (Medium::Msisdn, "447700900001"),
        ] {
            assert!(allows(&local, m, a, d).is_ok());
        }
        // Everything remote: nothing here.
        let remote = policy(scope(true, false, true), scope(true, false, true));
        let e = allows(&remote, Medium::Email, "a@EXAMPLE.org", d).unwrap_err();
        assert!(e.contains("forLocal.toRemote"), "{e}");
        // Sessions off.
        let off = ValidationPolicy {
            enabled: false,
            ..local
        };
        let e = allows(&off, Medium::Email, "a@example.org", d).unwrap_err();
        assert!(e.contains("session.policy.validation.enabled"), "{e}");
    }
}
