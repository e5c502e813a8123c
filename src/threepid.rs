//! 3PIDs (third-party identifiers) in the one form lookups, hashes and stores compare: the spec's
//! "3PID Types" appendix.
//! - `email`: Unicode case folding of the whole address (`Strauß@Example.com` ≡
//!   `strauss@example.com`), as sydent does, after trimming.
//! - `msisdn`: E.164 digits without `+` (`447700900001`). Numbers from stores may be written
//!   any way (`+44 (0)20 7946 0001`, `020 7946 0001`): they are parsed with the configured
//!   default region.

use phonenumber::country::Id;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of 3PID the spec knows, parsed once where a medium comes in (a request, a
/// store's row, the config); anything else is not a 3PID this server can hold. Stored
/// (queue items) as `as_str` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// An e-mail address a user gave to be sent a token, normalised as `email` does; `None`
/// unless it is a plain ASCII `local@domain` a mail can go to (no display name, comment,
/// spaces, control characters or quotes: what would change the message's headers or
/// recipients; internationalised addresses would need SMTPUTF8 from every relay).
pub fn email_to_send_to(address: &str) -> Option<String> {
    let address = address.trim();
    let (local, domain) = address.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    (address.len() <= 500 && local_ok && domain_ok).then(|| email(address))?
}

/// A phone number as a user types it, in `country` (ISO 3166 alpha-2): E.164 digits
/// without `+`, if it is a valid number.
pub fn msisdn_in(number: &str, country: &str) -> Option<String> {
    let region: Id = country.trim().to_ascii_uppercase().parse().ok()?;
    let parsed = phonenumber::parse(Some(region), number.trim()).ok()?;
    phonenumber::is_valid(&parsed).then(|| {
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        e164.trim_start_matches('+').to_owned()
    })
}

/// The country calling code of an E.164 number (digits without `+`).
pub fn calling_code(e164: &str) -> Option<u16> {
    let parsed = phonenumber::parse(None, format!("+{e164}")).ok()?;
    Some(parsed.code().value())
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
    fn addresses_to_send_to_are_plain() {
        assert_eq!(
            email_to_send_to(" Alice@Example.org ").as_deref(),
            Some("alice@example.org")
        );
        for bad in [
            "x@y.test@z.test",
            "a b@example.org",
            "a@example.org\r\nBcc: x@y.z",
            "<a@example.org>",
            "Alice <a@example.org>",
            "a@localhost",
            "a@exa_mple.org",
            "\"a\"@example.org",
            "a@",
            "@example.org",
        ] {
            assert_eq!(email_to_send_to(bad), None, "{bad}");
        }
        assert_eq!(
            msisdn_in("07911 123456", "gb").as_deref(),
            Some("447911123456")
        );
        assert_eq!(msisdn_in("12", "GB"), None);
        assert_eq!(msisdn_in("07911 123456", "XX"), None);
    }

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

    #[test]
    fn media_by_name() {
        for medium in [Medium::Email, Medium::Msisdn] {
            assert_eq!(Medium::parse(medium.as_str()), Some(medium));
            assert_eq!(medium.to_string(), medium.as_str());
        }
        assert_eq!(Medium::Email.as_str(), "email");
        assert_eq!(Medium::Msisdn.as_str(), "msisdn");
        assert_eq!(Medium::parse("Email"), None);
        assert_eq!(
            address(Medium::Email, "A@B.example", None).as_deref(),
            Some("a@b.example")
        );
        assert_eq!(
            address(Medium::Msisdn, "020 7946 0001", Some(Id::GB)).as_deref(),
            Some("442079460001")
        );
        assert_eq!(calling_code("447700900001"), Some(44));
        assert_eq!(calling_code("15551234567"), Some(1));
        assert_eq!(calling_code("x"), None);
    }

    #[test]
    fn addresses_to_send_to_at_their_limits() {
        let local64 = "a".repeat(64);
        let at_limit = format!("{local64}@example.org");
        assert_eq!(
            email_to_send_to(&at_limit).as_deref(),
            Some(at_limit.as_str())
        );
        assert_eq!(
            email_to_send_to(&format!("a{at_limit}")),
            None,
            "65 before @"
        );
        // 500 characters in all, not one more.
        let domain = |len: usize| {
            let mut labels = vec!["b".repeat(60); (len - 4) / 61];
            labels.push("c".repeat(len - 4 - labels.len() * 61));
            labels.push("org".into());
            labels.join(".")
        };
        let long = format!("a@{}", domain(498));
        assert_eq!(long.len(), 500);
        assert_eq!(email_to_send_to(&long).as_deref(), Some(long.as_str()));
        assert_eq!(email_to_send_to(&format!("a@{}", domain(499))), None);
        for bad in [
            ".a@example.org",
            "a.@example.org",
            "a..b@example.org",
            "a@-example.org",
            "a@example-.org",
            "a@example..org",
            "a@.example.org",
        ] {
            assert_eq!(email_to_send_to(bad), None, "{bad}");
        }
        for good in ["a.b+c@ex-ample.org", "o'brien!#$%&*/=?^_`{|}~-@x.example"] {
            assert_eq!(email_to_send_to(good).as_deref(), Some(good), "{good}");
        }
        assert_eq!(email("a@exa mple.org"), None);
        assert_eq!(email("a@"), None);
    }

    #[test]
    fn digits_are_taken_as_international_up_to_fifteen() {
        assert_eq!(msisdn(" 123 ", None).as_deref(), Some("123"));
        let fifteen = "123456789012345";
        assert_eq!(msisdn(fifteen, None).as_deref(), Some(fifteen));
        // Sixteen digits are not an E.164 number: parsed (and refused) as one.
        assert_eq!(msisdn("1234567890123456", None), None);
        assert_eq!(msisdn("", None), None);
    }
}
