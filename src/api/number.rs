//! Numbers in request bodies as real clients send them. matrix-js-sdk (inside Element)
//! sends `send_attempt` as a string (`"1"`, from `sendAttempt.toString()`); sydent reads it
//! with `int(…)`, mxisd 1.4 with Gson, which both take a string of digits. One
//! `deserialize_with` for every such field, so they all agree on what a number is.

use serde::de::{self, Deserializer, Unexpected, Visitor};
use std::fmt;

/// A JSON integer, or a string of 1 to 18 ASCII digits (no sign, no spaces, no fraction:
/// always fits an `i64`). Anything else is a deserialization error, which the request
/// parser answers 400 M_BAD_JSON. The error never echoes the string (it may be long).
pub(super) fn int_or_digits<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(IntOrDigits)
}

struct IntOrDigits;

impl Visitor<'_> for IntOrDigits {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer or a string of digits")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        let digits = !v.is_empty() && v.len() <= 18 && v.bytes().all(|b| b.is_ascii_digit());
        let not_digits = || {
            E::invalid_value(
                Unexpected::Other("a string that is not 1 to 18 digits"),
                &self,
            )
        };
        if !digits {
            return Err(not_digits());
        }
        v.parse().map_err(|_| not_digits())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Body {
        #[serde(deserialize_with = "super::int_or_digits")]
        n: i64,
    }

    fn parse(json: &str) -> Result<i64, String> {
        // Both ways `Request::json` parses a body: from the bytes, and from a `Value`.
        let direct = serde_json::from_str::<Body>(json).map(|b| b.n);
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        let via_value = serde_json::from_value::<Body>(value).map(|b| b.n);
        assert_eq!(
            direct.as_ref().map_err(|_| ()),
            via_value.as_ref().map_err(|_| ()),
            "{json}"
        );
        direct.map_err(|e| e.to_string())
    }

    #[test]
    fn integers_and_strings_of_digits() {
        assert_eq!(parse(r#"{"n": 1}"#), Ok(1));
        assert_eq!(parse(r#"{"n": "1"}"#), Ok(1));
        assert_eq!(parse(r#"{"n": "007"}"#), Ok(7));
        assert_eq!(parse(r#"{"n": 0}"#), Ok(0));
        assert_eq!(parse(r#"{"n": -3}"#), Ok(-3));
        assert_eq!(
            parse(r#"{"n": "999999999999999999"}"#),
            Ok(999_999_999_999_999_999)
        );
        assert_eq!(parse(r#"{"n": 9223372036854775807}"#), Ok(i64::MAX));
    }

    #[test]
    fn anything_else_is_an_error() {
        for bad in [
            r#""""#,
            r#""abc""#,
            r#"" 1""#,
            r#""1 ""#,
            r#""+1""#,
            r#""-1""#,
            r#""1.0""#,
            r#""1e3""#,
            r#""٣""#,
            r#""1000000000000000000""#,
            "1.5",
            "1.0",
            "9223372036854775808",
            "true",
            "null",
            "[1]",
            r#"{"n": 1}"#,
        ] {
            let err = parse(&format!(r#"{{"n": {bad}}}"#)).unwrap_err();
            assert!(
                err.contains("an integer or a string of digits"),
                "{bad}: {err}"
            );
        }
        assert!(parse("{}").unwrap_err().contains("missing field `n`"));
    }

    #[test]
    fn the_error_does_not_echo_the_string() {
        let long = "x".repeat(5000);
        let err = parse(&format!(r#"{{"n": "{long}"}}"#)).unwrap_err();
        assert!(!err.contains("xxxx"), "{err}");
    }
}
