//! Percent-encoding, both ways: decoding of request paths and query strings
//! (`application/x-www-form-urlencoded`), encoding of what goes into outbound URLs and forms.

use std::borrow::Cow;

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`). `None` if the result is
/// not UTF-8 or an escape is broken. Borrows `s` when there is nothing to decode.
pub(crate) fn decode(s: &str, plus_is_space: bool) -> Option<Cow<'_, str>> {
    let escaped = s.contains('%') || (plus_is_space && s.contains('+'));
    if !escaped {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Percent-encodes everything but RFC 3986's unreserved characters: a query value or form
/// field goes through as it is.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The pairs of a query string, decoded; pairs that do not decode are dropped.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k, true)?.into_owned(), decode(v, true)?.into_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let q = parse_query("medium=email&address=alice%40example.org&x=a+b&flag&bad=%zz");
        assert_eq!(
            q,
            vec![
                ("medium".into(), "email".into()),
                ("address".into(), "alice@example.org".into()),
                ("x".into(), "a b".into()),
                ("flag".into(), String::new()),
            ]
        );
        assert_eq!(decode("ed25519%3A0", false).as_deref(), Some("ed25519:0"));
        assert_eq!(decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(decode("%", false), None);
    }

    #[test]
    fn encodes_what_decodes_back() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        let query = format!(
            "To={}&Body={}",
            encode("+44 7700 900001"),
            encode("code: 123")
        );
        assert_eq!(query, "To=%2B44%207700%20900001&Body=code%3A%20123");
        assert_eq!(
            parse_query(&query),
            vec![
                ("To".into(), "+44 7700 900001".into()),
                ("Body".into(), "code: 123".into())
            ]
        );
    }

    #[test]
    fn decodes_escapes_anywhere() {
        assert_eq!(decode("%41%42x%43", false).as_deref(), Some("ABxC"));
        assert_eq!(decode("a+%2B+b", true).as_deref(), Some("a + b"));
        assert_eq!(decode("%C3%A9", false).as_deref(), Some("é"));
        assert_eq!(
            decode("%41+b", false).as_deref(),
            Some("A+b"),
            "+ kept in paths"
        );
        assert_eq!(decode("%C3", false), None, "not UTF-8");
        assert_eq!(decode("%4", false), None, "a broken escape");
        assert_eq!(decode("x%4", false), None);
        // Nothing to decode: borrowed, not copied.
        assert!(matches!(decode("a+b", false), Some(Cow::Borrowed("a+b"))));
        assert!(matches!(
            decode("plain", true),
            Some(Cow::Borrowed("plain"))
        ));
        assert!(matches!(decode("a+b", true), Some(Cow::Owned(s)) if s == "a b"));
    }

    #[test]
    fn unreserved_characters_go_through() {
        assert_eq!(encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(encode("@:!*"), "%40%3A%21%2A");
        assert_eq!(encode(""), "");
        assert_eq!(
            parse_query("&a=1&&=2&b"),
            vec![
                ("a".into(), "1".into()),
                (String::new(), "2".into()),
                ("b".into(), String::new())
            ]
        );
        assert_eq!(parse_query("a=%zz&k%zz=1"), vec![]);
    }
}
