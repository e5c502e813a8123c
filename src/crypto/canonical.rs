//! Canonical JSON as the Matrix specification defines it (appendices, "Canonical JSON"):
//! object keys sorted by codepoint, no insignificant whitespace, UTF-8 left unescaped, only
//! `"` `\` and control characters escaped, and integers only (no fractions or exponents) in
//! the range [-(2^53)+1, 2^53-1].

use serde_json::{Map, Number, Value};
use std::fmt::Write;

const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

#[derive(Debug, PartialEq, Eq)]
pub enum CanonicalError {
    /// A number with a fraction, or an integer outside the interoperable range.
    UnrepresentableNumber(String),
}

impl std::fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CanonicalError::UnrepresentableNumber(n) => {
                write!(f, "{n} cannot be represented in canonical JSON")
            }
        }
    }
}

impl std::error::Error for CanonicalError {}

/// Encodes `value` as canonical JSON.
pub fn canonical_json(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map)?,
    }
    Ok(())
}

fn write_object(out: &mut String, map: &Map<String, Value>) -> Result<(), CanonicalError> {
    // Sorting UTF-8 bytes sorts by codepoint; the map may not be sorted if a dependency
    // turns on serde_json's `preserve_order`, so sort here rather than trust it.
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push('{');
    for (i, (key, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, item)?;
    }
    out.push('}');
    Ok(())
}

fn write_number(out: &mut String, n: &Number) -> Result<(), CanonicalError> {
    let integer = if let Some(i) = n.as_i64() {
        Some(i)
    } else if n.as_u64().is_some() {
        None // larger than i64::MAX, so out of range anyway
    } else {
        // Floats that hold an integer (1e10, -0.0) are written as that integer, as the
        // reference implementation does; anything with a fraction is refused.
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64)
            .map(|f| f as i64)
    };
    match integer {
        Some(i) if i.abs() <= MAX_SAFE_INTEGER => {
            let _ = write!(out, "{i}");
            Ok(())
        }
        _ => Err(CanonicalError::UnrepresentableNumber(n.to_string())),
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_appendix_examples() {
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(
            canonical_json(&parse(r#"{"本":2,"日":1}"#)).unwrap(),
            r#"{"日":1,"本":2}"#
        );
        assert_eq!(
            canonical_json(&parse(r#"{"a":-0,"b":1e10}"#)).unwrap(),
            r#"{"a":0,"b":10000000000}"#
        );
    }

    #[test]
    fn refuses_what_canonical_json_cannot_hold() {
        assert!(canonical_json(&json!({"a": 1.5})).is_err());
        assert!(canonical_json(&json!({"a": 9007199254740992_i64})).is_err());
        assert!(canonical_json(&json!({"a": u64::MAX})).is_err());
        assert_eq!(
            canonical_json(&json!([-9007199254740991_i64])).unwrap(),
            "[-9007199254740991]"
        );
    }

    #[test]
    fn numbers_at_the_edges() {
        let max = MAX_SAFE_INTEGER;
        assert_eq!(
            canonical_json(&json!([max, -max])).unwrap(),
            format!("[{max},-{max}]")
        );
        assert!(canonical_json(&json!(-max - 1)).is_err());
        // Floats holding an integer: within the range written as it, beyond refused.
        assert_eq!(
            canonical_json(&json!(9007199254740991.0)).unwrap(),
            "9007199254740991"
        );
        assert!(canonical_json(&json!(9007199254740992.0)).is_err());
        assert!(canonical_json(&json!(-9007199254740992.0)).is_err());
        assert_eq!(canonical_json(&json!(-2.0)).unwrap(), "-2");
        assert_eq!(
            canonical_json(&json!(0.5)).unwrap_err().to_string(),
            "0.5 cannot be represented in canonical JSON"
        );
    }

    #[test]
    fn strings_arrays_and_literals() {
        let value = json!({
            "s": "\"\\\u{08}\u{0c}\n\r\t\u{01}\u{1f} é/",
            "a": [null, true, false, [], {}],
            "b": {"z": 1, "y": [1, 2]},
        });
        assert_eq!(
            canonical_json(&value).unwrap(),
            r#"{"a":[null,true,false,[],{}],"b":{"y":[1,2],"z":1},"s":"\"\\\b\f\n\r\t\u0001\u001f é/"}"#
        );
    }
}
