//! Matrix user IDs (`@localpart:server`): parsed once where they come in (a request, a
//! homeserver's answer), and built in one place from a store's localpart.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId {
    full: String,
    /// Where the `:` between localpart and server is.
    colon: usize,
}

impl UserId {
    /// `@localpart:server` (the server may carry a port); `None` if it is not one.
    pub fn parse(id: &str) -> Option<UserId> {
        let rest = id.strip_prefix('@')?;
        let (localpart, server) = rest.split_once(':')?;
        let fine = |part: &str| !part.is_empty() && !part.contains(char::is_whitespace);
        (fine(localpart) && fine(server)).then(|| UserId {
            full: id.to_owned(),
            colon: 1 + localpart.len(),
        })
    }

    /// The user `localpart` of `server`, from a store: trimmed and lower-cased, as Matrix
    /// localparts are (so `Alice` in a directory is `@alice:example.org`).
    pub fn of(localpart: &str, server: &str) -> UserId {
        let localpart = localpart.trim().to_lowercase();
        UserId {
            full: format!("@{localpart}:{server}"),
            colon: 1 + localpart.len(),
        }
    }

    pub fn localpart(&self) -> &str {
        &self.full[1..self.colon]
    }

    pub fn server(&self) -> &str {
        &self.full[self.colon + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn into_string(self) -> String {
        self.full
    }
}

/// Stored (queue payloads) as its text; a stored text that is not a user ID does not parse.
impl serde::Serialize for UserId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> serde::Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<UserId, D::Error> {
        let text = String::deserialize(d)?;
        UserId::parse(&text).ok_or_else(|| serde::de::Error::custom("not a Matrix user ID"))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_parsed_once() {
        let id = UserId::parse("@alice:example.org:8448").unwrap();
        assert_eq!((id.localpart(), id.server()), ("alice", "example.org:8448"));
        for bad in [
            "alice:example.org",
            "@:example.org",
            "@alice:",
            "@alice",
            "@a b:x",
            "",
        ] {
            assert_eq!(UserId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn store_localparts_are_lower_cased() {
        let id = UserId::of(" Alice ", "example.org");
        assert_eq!(id.as_str(), "@alice:example.org");
        assert_eq!((id.localpart(), id.server()), ("alice", "example.org"));
    }
}
