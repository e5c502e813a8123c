//! Body encodings that keep a mail within SMTP's line limit (RFC 5321 4.5.3.1.6: 998
//! octets before the CRLF; servers refuse longer ones, aiosmtpd with `500 Line too long`):
//! quoted-printable (RFC 2045 6.7) for what the templates fill, and base64 lines re-cut.
//! A value such as a join link holding a percent-encoded non-ASCII room name is one long
//! line; these make it several short ones that readers join again.

/// Longest line SMTP carries, in octets, without its CRLF.
pub const LINE_MAX: usize = 998;
/// Longest quoted-printable line (RFC 2045), soft break included.
const QP_MAX: usize = 76;

/// Whether any line of `lines` is longer than SMTP allows.
pub fn too_long<S: AsRef<str>>(lines: &[S]) -> bool {
    lines.iter().any(|l| l.as_ref().len() > LINE_MAX)
}

/// Quoted-printable encoding of a value (RFC 2045): `=`, controls, CR, LF and non-ASCII
/// bytes as `=XX`; spaces too where they would end a line (readers strip those).
pub fn quoted_printable(value: &str, at_line_end: bool) -> String {
    let bytes = value.as_bytes();
    let trailing = if at_line_end {
        bytes.len()
            - bytes
                .iter()
                .rev()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count()
    } else {
        bytes.len()
    };
    let mut out = String::with_capacity(value.len());
    for (i, &b) in bytes.iter().enumerate() {
        let space = (b == b' ' || b == b'\t') && i < trailing;
        if space || ((33..=126).contains(&b) && b != b'=') {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// A whole body (LF line breaks, filled as text) as quoted-printable lines of at most 76
/// octets: each line encoded, long ones cut by soft line breaks.
pub fn quoted_printable_body(text: &str) -> Vec<String> {
    text.split('\n')
        .flat_map(|line| soft_wrap(&quoted_printable(line, true)))
        .collect()
}

/// A quoted-printable line (a template's own text, values encoded) longer than 76 octets
/// cut by soft line breaks into lines of at most 76 (RFC 2045 6.7 rule 5: not only those
/// past SMTP's limit); shorter ones stay as written.
pub fn wrap_quoted_printable(line: &str) -> Vec<String> {
    soft_wrap(line)
}

/// An encoded line cut by soft line breaks (`=` at the end) into lines of at most 76
/// octets, never inside an `=XX`. A cut line that would start with `-` starts with `=2D`
/// instead, so that no cut can make a line that reads as a multipart delimiter.
fn soft_wrap(line: &str) -> Vec<String> {
    if line.len() <= QP_MAX {
        return vec![line.to_owned()];
    }
    let bytes = line.as_bytes();
    let hex = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_hexdigit);
    let mut out = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < line.len() {
        let len = if bytes[i] == b'=' && hex(i + 1) && hex(i + 2) {
            3
        } else {
            line[i..].chars().next().map_or(1, char::len_utf8)
        };
        let mut piece = &line[i..i + len];
        // Room for the `=` of the soft break.
        if !current.is_empty() && current.len() + piece.len() > QP_MAX - 1 {
            current.push('=');
            out.push(std::mem::take(&mut current));
        }
        if current.is_empty() && !out.is_empty() && piece == "-" {
            piece = "=2D";
        }
        current.push_str(piece);
        i += len;
    }
    out.push(current);
    out
}

/// A base64 line longer than SMTP allows, cut into lines of 76 (readers skip line breaks
/// in base64); shorter ones stay as written.
pub fn wrap_base64(line: &str) -> Vec<String> {
    if line.len() <= LINE_MAX || !line.is_ascii() {
        return vec![line.to_owned()];
    }
    line.as_bytes()
        .chunks(QP_MAX)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quoted-printable lines decoded back (soft breaks joined, `=XX` undone).
    fn decode(lines: &[String]) -> String {
        let mut bytes = Vec::new();
        for line in lines {
            let (text, soft) = match line.strip_suffix('=') {
                Some(t) => (t, true),
                None => (line.as_str(), false),
            };
            let b = text.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'=' {
                    bytes.push(u8::from_str_radix(&text[i + 1..i + 3], 16).expect("hex"));
                    i += 3;
                } else {
                    bytes.push(b[i]);
                    i += 1;
                }
            }
            if !soft {
                bytes.push(b'\n');
            }
        }
        bytes.pop();
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn a_long_non_ascii_line_becomes_short_lines_that_decode_to_it() {
        let text = format!(
            "Join: https://app.test/#/room?room_name={}\nsecond = line  ",
            crate::urlencoded::encode(&"日本語のルーム".repeat(40))
        );
        let lines = quoted_printable_body(&text);
        assert!(lines.iter().all(|l| l.len() <= 76), "{lines:?}");
        assert!(lines.iter().all(|l| l.is_ascii()));
        assert_eq!(decode(&lines), text);
    }

    #[test]
    fn a_cut_never_starts_a_line_with_a_dash() {
        let text = format!("{}--boundary-1 and more", "x".repeat(75));
        let lines = quoted_printable_body(&text);
        assert!(lines[1..].iter().all(|l| !l.starts_with('-')), "{lines:?}");
        assert_eq!(decode(&lines), text);
    }

    #[test]
    fn quoted_printable_lines_past_76_octets_get_soft_breaks() {
        let line = format!("{}=C3=A9{}", "a".repeat(73), "b".repeat(100));
        let lines = wrap_quoted_printable(&line);
        assert!(lines.iter().all(|l| l.len() <= 76), "{lines:?}");
        // The escape is never split by a soft break.
        assert!(lines[0].ends_with("aa="), "{lines:?}");
        assert!(lines[1].starts_with("=C3=A9b"), "{lines:?}");
        assert_eq!(wrap_quoted_printable(&"c".repeat(76)), ["c".repeat(76)]);
    }

    #[test]
    fn base64_lines_are_cut_only_when_too_long() {
        assert_eq!(wrap_base64("QUJD"), ["QUJD"]);
        let long = "QUJD".repeat(300);
        let lines = wrap_base64(&long);
        assert!(lines.iter().all(|l| l.len() == 76 || l.len() == 1200 % 76));
        assert_eq!(lines.concat(), long);
    }
}
