//! 3PIDs (third-party identifiers) in the one form lookups, hashes and stores compare: the spec's
//! "3PID Types" appendix.
//! - `email`: Unicode case folding of the whole address (`Strauß@Example.com` ≡
//!   `strauss@example.com`), as sydent does, after trimming.
//! - `msisdn`: E.164 digits without `+` (`447700900001`). Numbers from stores may be written
//!   any way (`+44 (0)20 7946 0001`, `020 7946 0001`): they are parsed with the configured
//!   default region.

use phonenumber::country::Id;
use std::fmt;

/// The kinds of 3PID the spec knows, parsed once where a medium comes in (a request, a
/// store's row, the config); anything else is not a 3PID this server can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Medium {
    Email,
    Msisdn,
}

impl Medium {
    pub fn parse(medium: &str) -> Option<Medium> {
        match medium {
            "email" => Some(Medium::Email),
            "msisdn" => Some(Medium::Msisdn),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Medium::Email => "email",
            Medium::Msisdn => "msisdn",
        }
    }
}

impl fmt::Display for Medium {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Normalises an address of `medium`; `None` if it is not a valid one.
pub fn address(medium: Medium, address: &str, default_region: Option<Id>) -> Option<String> {
    match medium {
        Medium::Email => email(address),
        Medium::Msisdn => msisdn(address, default_region),
    }
}

pub fn email(address: &str) -> Option<String> {
    let folded = caseless::default_case_fold_str(address.trim());
    let (local, domain) = folded.rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty() && !domain.contains(char::is_whitespace))
        .then_some(folded)
}

/// E.164 digits without `+`. Digits-only input (as the spec sends msisdns) is taken as
/// international already; anything else is parsed with `default_region`.
pub fn msisdn(number: &str, default_region: Option<Id>) -> Option<String> {
    let trimmed = number.trim();
    if !trimmed.is_empty() && trimmed.len() <= 15 && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Some(trimmed.to_owned());
    }
    let parsed = phonenumber::parse(default_region, trimmed).ok()?;
    let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
    Some(e164.trim_start_matches('+').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_case_folded() {
        assert_eq!(
            email(" Strauß@Example.COM ").as_deref(),
            Some("strauss@example.com")
        );
        assert_eq!(
            email("ALICE@example.org").as_deref(),
            Some("alice@example.org")
        );
        assert_eq!(email("no-at-sign"), None);
        assert_eq!(email("@example.org"), None);
    }

    #[test]
    fn phone_numbers_become_e164_digits() {
        assert_eq!(
            msisdn("447700900001", None).as_deref(),
            Some("447700900001")
        );
        assert_eq!(
            msisdn("+44 20 7946 0001", None).as_deref(),
            Some("442079460001")
        );
        assert_eq!(
            msisdn("+44 (0)20 7946 0001", None).as_deref(),
            Some("442079460001")
        );
        assert_eq!(
            msisdn("020 7946 0001", Some(Id::GB)).as_deref(),
            Some("442079460001")
        );
        assert_eq!(
            msisdn("+1 555-123-4567", None).as_deref(),
            Some("15551234567")
        );
        assert_eq!(msisdn("020 7946 0001", None), None);
        assert_eq!(msisdn("not a number", Some(Id::GB)), None);
    }
}
