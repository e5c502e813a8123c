//! The spec's opaque identifiers of a 3PID session (appendices, "Opaque Identifiers"):
//! the `Sid` we give a session and the `ClientSecret` the client chose for it. Both are 1 to
//! 255 of `[0-9a-zA-Z.=_-]`, the rule written once here; they are parsed where they come in
//! (a request, a state row) and carried typed to the state layer, which stores their text.

use crate::crypto::{constant_time_eq, random};
use std::fmt;

/// What the rule allows, as error messages say it.
pub const RULE: &str = "1 to 255 of [0-9a-zA-Z.=_-]";

/// Whether `id` is 1 to 255 of `[0-9a-zA-Z.=_-]`.
fn is_opaque_id(id: &str) -> bool {
    (1..=255).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'=' | b'_' | b'-'))
}

/// A session's id. Ours are 24 alphanumerics (143 bits): a sid names a session, and only
/// the client secret with it lets a client see or use the session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sid(String);

impl Sid {
    const LENGTH: usize = 24;

    /// A new random sid.
    pub fn generate() -> std::io::Result<Sid> {
        random::string_from(random::ALPHANUMERIC, Self::LENGTH).map(Sid)
    }

    /// A sid a client gives (or a state row holds); `None` if it cannot be one. Any opaque
    /// identifier is taken, not only the form we generate: a sid that is not ours is simply
    /// not found.
    pub fn parse(sid: &str) -> Option<Sid> {
        is_opaque_id(sid).then(|| Sid(sid.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The secret a client chose for a session: with the sid, it proves the client is the one
/// that asked. Two secrets compare in constant time (`==` is the only comparison there is),
/// so that timing tells nothing of a stored secret; it is never displayed nor logged.
#[derive(Clone, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// `None` unless `secret` is 1 to 255 of `[0-9a-zA-Z.=_-]`.
    pub fn parse(secret: &str) -> Option<ClientSecret> {
        is_opaque_id(secret).then(|| ClientSecret(secret.to_owned()))
    }

    /// The text, for what must carry it: the state's rows, the link in a validation mail.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for ClientSecret {
    fn eq(&self, other: &ClientSecret) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_secrets_follow_the_rule() {
        let longest = "a".repeat(255);
        for good in [
            "a",
            "Z",
            "9",
            ".",
            "=",
            "_",
            "-",
            "aZ09.=_-",
            longest.as_str(),
        ] {
            let secret = ClientSecret::parse(good).unwrap_or_else(|| panic!("{good:?}"));
            assert_eq!(secret.as_str(), good);
        }
        let too_long = "a".repeat(256);
        for bad in [
            "",
            too_long.as_str(),
            "a/b",
            "/",
            "a b",
            "a+b",
            "a:b",
            "é",
            "秘密",
            "a\u{0}",
            "a\n",
        ] {
            assert!(ClientSecret::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn client_secrets_compare_by_value_and_stay_out_of_logs() {
        let a = ClientSecret::parse("secret-1").unwrap();
        assert_eq!(a, ClientSecret::parse("secret-1").unwrap());
        assert_ne!(a, ClientSecret::parse("secret-2").unwrap());
        assert_ne!(a, ClientSecret::parse("secret-10").unwrap());
        assert_ne!(a, ClientSecret::parse("secret").unwrap());
        assert!(!format!("{a:?}").contains("secret-1"));
    }

    #[test]
    fn sids_are_opaque_ids_and_ours_are_24_alphanumerics() {
        let sid = Sid::generate().unwrap();
        assert_eq!(sid.as_str().len(), 24);
        assert!(sid.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(Sid::parse(sid.as_str()), Some(sid.clone()));
        assert_ne!(Sid::generate().unwrap(), sid);
        let longest = "s".repeat(255);
        for good in ["nope", "sid1", "a.b=c_d-e", longest.as_str()] {
            assert_eq!(
                Sid::parse(good).map(|s| s.to_string()).as_deref(),
                Some(good)
            );
        }
        let too_long = "s".repeat(256);
        for bad in ["", too_long.as_str(), "../x", "a b", "sid?x=1", "ß"] {
            assert_eq!(Sid::parse(bad), None, "{bad:?}");
        }
    }
}
