//! The MIME structure of a message, read from the template (never from a value): entities
//! and their Content-Type parameters, multiparts and their delimiters (a value cannot forge
//! one), each part filled as its type and transfer encoding require, and rewritten to
//! quoted-printable where its lines or its 7bit declaration call for it.

use super::error::TemplateError;
use super::headers::{fill_header, find_header, one_line, parse_headers, RawHeader};
use super::placeholders::{escape_html, pieces, Piece, Placeholders};
use crate::notify::lines as limit;

/// A filled entity (the message or one part): header lines (folded ones holding LF),
/// then body lines.
pub(super) struct Entity {
    pub(super) headers: Vec<String>,
    pub(super) body: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TransferEncoding {
    AsIs,
    QuotedPrintable,
    Base64,
}

/// The media type (lower case) and boundary parameter of a Content-Type value.
fn content_type(value: &str) -> (String, Option<String>) {
    let value: String = value.chars().filter(|&c| c != '\n').collect();
    let (media, params) = value.split_once(';').unwrap_or((&value, ""));
    let boundary = parameters(params)
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v)
        .filter(|b| !b.is_empty());
    (media.trim().to_ascii_lowercase(), boundary)
}

/// `name=value` parameters separated by `;`, values quoted or not.
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once('=') {
        let name = name.trim().trim_start_matches(';').trim().to_owned();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => unquote(quoted),
            None => {
                let end = after.find(';').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            }
        };
        out.push((name, value));
        rest = next.trim_start().trim_start_matches(';');
    }
    out
}

/// A quoted string after its opening quote: its content and the text after it.
fn unquote(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => value.extend(chars.next().map(|(_, c)| c)),
            '"' => return (value, &text[i + 1..]),
            _ => value.push(c),
        }
    }
    (value, "")
}

fn transfer_encoding(headers: &[RawHeader<'_>]) -> Option<TransferEncoding> {
    let value = find_header(headers, "Content-Transfer-Encoding")?;
    Some(match value.value.trim().to_ascii_lowercase().as_str() {
        "quoted-printable" => TransferEncoding::QuotedPrintable,
        "base64" => TransferEncoding::Base64,
        _ => TransferEncoding::AsIs,
    })
}

/// Fills one entity: its headers, then its body by its template's Content-Type (the
/// structure comes from the template, never from a value). `boundaries`: those of the
/// enclosing multiparts.
pub(super) fn fill_entity(
    headers: &[RawHeader<'_>],
    body: &[&str],
    values: &Placeholders,
    boundaries: &[String],
) -> Result<Entity, TemplateError> {
    let mut filled = headers
        .iter()
        .map(|h| fill_header(h, values))
        .collect::<Result<Vec<_>, _>>()?;
    let (media, boundary) = find_header(headers, "Content-Type")
        .map(|h| content_type(&h.value))
        .unwrap_or_else(|| ("text/plain".to_owned(), None));
    if let (true, Some(boundary)) = (media.starts_with("multipart/"), boundary) {
        if let Some(body) = fill_multipart(body, &boundary, values, boundaries)? {
            return Ok(Entity {
                headers: filled,
                body,
            });
        }
    }
    let encoding = transfer_encoding(headers);
    let as_is = matches!(encoding, None | Some(TransferEncoding::AsIs));
    // A message or a multipart may only be 7bit, 8bit or binary (RFC 2046 5.2.1): never
    // rewritten to quoted-printable; an embedded message's own parts are filled (and
    // rewritten where they must be) instead.
    let container = media.starts_with("multipart/") || media.starts_with("message/");
    let mut body = if as_is && media == "message/rfc822" && !body.is_empty() {
        fill_part(body, values, boundaries)?
    } else {
        fill_leaf(
            body,
            encoding.unwrap_or(TransferEncoding::AsIs),
            media == "text/html",
            values,
            boundaries,
        )
    };
    let non_ascii = body.iter().any(|l| !l.is_ascii());
    let seven_bit = declares_7bit(headers);
    if as_is && !container && (limit::too_long(&body) || (non_ascii && seven_bit)) {
        // A join link with a long non-ASCII room name is one line past SMTP's limit (and
        // a 7bit part cannot carry UTF-8): the part goes quoted-printable instead.
        body = limit::quoted_printable_body(&body.join("\n"));
        set_header(&mut filled, "Content-Transfer-Encoding", "quoted-printable");
        if non_ascii {
            declare_utf8(&mut filled, &media);
        }
    } else if non_ascii && (encoding.is_none() || (container && seven_bit)) {
        // Without the header a reader assumes 7bit, which our UTF-8 values would break.
        set_header(&mut filled, "Content-Transfer-Encoding", "8bit");
        if !container {
            declare_utf8(&mut filled, &media);
        }
    }
    Ok(Entity {
        headers: filled,
        body,
    })
}

/// A text entity whose body now holds UTF-8 says so: `charset=utf-8` added to its
/// Content-Type if it names no charset or us-ascii (also RFC 2045's default, when the
/// entity has no Content-Type at all). Another declared charset is the operator's and stays.
fn declare_utf8(filled: &mut Vec<String>, media: &str) {
    if !media.starts_with("text/") {
        return;
    }
    let Some(i) = filled.iter().position(|h| is_named(h, "Content-Type")) else {
        filled.push("Content-Type: text/plain; charset=utf-8".to_owned());
        return;
    };
    let value: String = filled[i]
        .split_once(':')
        .map_or("", |(_, v)| v)
        .chars()
        .filter(|&c| c != '\n')
        .collect();
    let (media_type, params) = value.split_once(';').unwrap_or((&value, ""));
    let params = parameters(params);
    let charset = |(n, _): &&(String, String)| n.eq_ignore_ascii_case("charset");
    if params
        .iter()
        .find(charset)
        .is_some_and(|(_, v)| !v.eq_ignore_ascii_case("us-ascii"))
    {
        return;
    }
    let mut header = format!("Content-Type: {}", media_type.trim());
    for (name, v) in params.iter().filter(|p| !charset(p)) {
        let token = !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c));
        if token {
            header.push_str(&format!("; {name}={v}"));
        } else {
            let quoted = v.replace('\\', "\\\\").replace('"', "\\\"");
            header.push_str(&format!("; {name}=\"{quoted}\""));
        }
    }
    header.push_str("; charset=utf-8");
    filled[i] = header;
}

/// Whether the entity declares `Content-Transfer-Encoding: 7bit`.
fn declares_7bit(headers: &[RawHeader<'_>]) -> bool {
    find_header(headers, "Content-Transfer-Encoding")
        .is_some_and(|h| h.value.trim().eq_ignore_ascii_case("7bit"))
}

/// Replaces the filled header `name` (every one of that name) by `name: value`, or adds it.
fn set_header(filled: &mut Vec<String>, name: &str, value: &str) {
    filled.retain(|h| !is_named(h, name));
    filled.push(format!("{name}: {value}"));
}

/// Whether the filled header line `header` is a `name` header.
fn is_named(header: &str, name: &str) -> bool {
    header
        .split_once(':')
        .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// Whether `line` is a delimiter of `boundary`: the closing one if `Some(true)`.
fn delimiter(line: &str, boundary: &str) -> Option<bool> {
    let rest = line.strip_prefix("--")?.strip_prefix(boundary)?;
    let (closing, rest) = match rest.strip_prefix("--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    rest.chars()
        .all(|c| c == ' ' || c == '\t')
        .then_some(closing)
}

/// A multipart body, each part filled; preamble, delimiters and epilogue as written.
/// None if the body has no delimiter at all (then it is filled as text).
fn fill_multipart(
    body: &[&str],
    boundary: &str,
    values: &Placeholders,
    enclosing: &[String],
) -> Result<Option<Vec<String>>, TemplateError> {
    let mut boundaries = enclosing.to_vec();
    boundaries.push(boundary.to_owned());
    let mut out = Vec::new();
    let mut part: Option<Vec<&str>> = None;
    let mut seen = false;
    let mut closed = false;
    for &line in body {
        if closed {
            out.push(line.to_owned());
            continue;
        }
        match delimiter(line, boundary) {
            Some(closing) => {
                seen = true;
                if let Some(lines) = part.take() {
                    out.extend(fill_part(&lines, values, &boundaries)?);
                }
                out.push(line.to_owned());
                closed = closing;
                if !closing {
                    part = Some(Vec::new());
                }
            }
            None => match part.as_mut() {
                Some(lines) => lines.push(line),
                None => out.push(line.to_owned()),
            },
        }
    }
    // A template that forgot the closing delimiter: its last part runs to the end.
    if let Some(lines) = part {
        out.extend(fill_part(&lines, values, &boundaries)?);
    }
    Ok(seen.then_some(out))
}

/// One body part: headers, a blank line, its body. A part without headers is text/plain
/// (RFC 2046) and is written with the blank line that says so.
fn fill_part(
    lines: &[&str],
    values: &Placeholders,
    boundaries: &[String],
) -> Result<Vec<String>, TemplateError> {
    let (headers, body) = match lines.iter().position(|l| l.is_empty()) {
        Some(blank) => match parse_headers(&lines[..blank]) {
            Some(headers) => (headers, &lines[blank + 1..]),
            None => (Vec::new(), lines),
        },
        None => match parse_headers(lines) {
            Some(headers) if !headers.is_empty() => (headers, &lines[lines.len()..]),
            _ => (Vec::new(), lines),
        },
    };
    let entity = fill_entity(&headers, body, values, boundaries)?;
    let mut out = entity.headers;
    out.push(String::new());
    out.extend(entity.body);
    Ok(out)
}

/// A body that is not multipart: values made one line (as in headers), HTML-escaped in
/// HTML, quoted-printable encoded in a quoted-printable part; a base64 part stays as
/// written (no value is filled there).
fn fill_leaf(
    lines: &[&str],
    encoding: TransferEncoding,
    html: bool,
    values: &Placeholders,
    boundaries: &[String],
) -> Vec<String> {
    if lines.is_empty() {
        return Vec::new();
    }
    if encoding == TransferEncoding::Base64 {
        return lines.iter().flat_map(|l| limit::wrap_base64(l)).collect();
    }
    let text = lines.join("\n");
    let pieces = pieces(&text, values);
    let mut out = String::with_capacity(text.len());
    for (i, piece) in pieces.iter().enumerate() {
        let value = match piece {
            Piece::Text(t) => {
                out.push_str(t);
                continue;
            }
            Piece::Value { value, .. } if html => escape_html(&one_line(value)),
            Piece::Value { value, .. } => one_line(value),
        };
        if encoding == TransferEncoding::QuotedPrintable {
            let at_line_end = match pieces.get(i + 1) {
                None => true,
                Some(Piece::Text(t)) => t.starts_with('\n'),
                Some(Piece::Value { .. }) => false,
            };
            out.push_str(&limit::quoted_printable(&value, at_line_end));
        } else {
            push_guarded(&mut out, &value, boundaries);
        }
    }
    let lines = out.split('\n');
    if encoding == TransferEncoding::QuotedPrintable {
        lines.flat_map(limit::wrap_quoted_printable).collect()
    } else {
        lines.map(str::to_owned).collect()
    }
}

/// Appends a value (one line); one that starts a line where it would read as a delimiter
/// of an enclosing multipart gets a leading space, so that a value cannot close its part
/// and forge another.
fn push_guarded(out: &mut String, value: &str, boundaries: &[String]) {
    let line_start = out.is_empty() || out.ends_with('\n');
    let forged = value
        .strip_prefix("--")
        .is_some_and(|rest| boundaries.iter().any(|b| rest.starts_with(b.as_str())));
    if line_start && forged {
        out.push(' ');
    }
    out.push_str(value);
}

#[cfg(test)]
mod tests {
    use super::super::fill_email;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn long_lines_in_8bit_and_7bit_parts_go_quoted_printable() {
        let template = "Subject: s\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\nJoin %LINK% now\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: 7bit\n\nHi %NAME%\n--b--\n";
        let mut v = values();
        let link = format!(
            "https://x.test/?n={}",
            crate::urlencoded::encode(&"日本語".repeat(100))
        );
        v.set("LINK", link.clone()).set("NAME", "Zoë");
        let m = fill(template, &v);
        assert!(m.split("\r\n").all(|l| l.len() <= 76), "{m}");
        assert_eq!(
            m.matches("Content-Transfer-Encoding: quoted-printable")
                .count(),
            2
        );
        assert!(!m.contains("8bit") && !m.contains("7bit"));
        assert!(m.contains("Hi Zo=C3=AB"), "{m}");
        // Short 8bit lines stay as they are.
        v.set("LINK", "https://x.test/");
        let m = fill(template, &v);
        assert!(m.contains("Content-Transfer-Encoding: 8bit\r\n\r\nJoin https://x.test/ now"));
        // A long ASCII word in a header is cut into encoded-words.
        v.set("DOMAIN_PRETTY", "x".repeat(3000));
        let m = fill(VALIDATION, &v);
        assert!(m.split("\r\n").all(|l| l.len() <= 998));
        // A header line too long to cut (an address) is an error, not a refused mail.
        let long = format!("To: <{}@example.org>\n\nx\n", "y".repeat(1000));
        assert!(matches!(
            fill_email(&long, &values(), 0, "example.org"),
            Err(TemplateError::LineTooLong { line: 1, .. })
        ));
    }

    #[test]
    fn markup_is_escaped_in_html_and_raw_in_text() {
        let mut v = values();
        v.set("RECIPIENT_ADDRESS", "<b>x</b>@example.com");
        let m = fill(VALIDATION, &v);
        let (text, html) = m.split_once("Content-Type: text/html").expect("two parts");
        assert!(text.contains("Confirm <b>x</b>@example.com on"));
        assert!(html.contains("<b>&lt;b&gt;x&lt;/b&gt;@example.com</b>"));
        assert!(!html.contains("<b>x</b>"));
    }

    #[test]
    fn quoted_printable_parts_get_encoded_values() {
        let template = "\
Subject: s
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 %NAME% end
Trailing %SPACE%
Lines %LINES%
";
        let mut v = Placeholders::new();
        v.set("NAME", "Zoë = 1")
            .set("SPACE", "a  ")
            .set("LINES", "1\r\n2");
        let m = fill(template, &v);
        assert!(
            m.contains("\r\n\r\nCaf=C3=A9 Zo=C3=AB =3D 1 end\r\n"),
            "{m}"
        );
        assert!(m.contains("\r\nTrailing a=20=20\r\n"), "{m}");
        // A value is one line here too: its line break a space (=20 before the break).
        assert!(m.contains("\r\nLines 1 2\r\n"), "{m}");
        // Declared encoding kept, nothing added.
        assert_eq!(m.matches("Content-Transfer-Encoding").count(), 1);
    }

    #[test]
    fn long_quoted_printable_lines_get_soft_breaks() {
        let template = "Subject: s\nContent-Transfer-Encoding: quoted-printable\n\n%LONG%\n";
        let mut v = Placeholders::new();
        v.set("LONG", "é".repeat(400));
        let m = fill(template, &v);
        let body = m.split_once("\r\n\r\n").expect("a body").1;
        let lines: Vec<&str> = body.trim_end().split("\r\n").collect();
        assert!(lines.len() > 1);
        let mut joined = String::new();
        for (i, line) in lines.iter().enumerate() {
            assert!(line.len() <= 76, "{line}");
            if i + 1 < lines.len() {
                joined.push_str(line.strip_suffix('=').expect("a soft break"));
            } else {
                joined.push_str(line);
            }
        }
        assert_eq!(joined, "=C3=A9".repeat(400));
    }

    #[test]
    fn base64_parts_are_left_alone() {
        let template = "\
Subject: s
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: text/plain
Content-Transfer-Encoding: base64

JURPTUFJTiU=
%DOMAIN%
--outer--
";
        let m = fill(template, &values());
        assert!(m.contains("\r\nJURPTUFJTiU=\r\n%DOMAIN%\r\n--outer--\r\n"));
    }

    #[test]
    fn nested_multiparts_are_filled_by_part_type() {
        let template = "\
Subject: s
Content-Type: multipart/mixed;
 boundary=\"outer\"

--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain

T %VALIDATION_LINK%
--inner
Content-Type: text/html; name=\"%DOMAIN%\"

H %VALIDATION_LINK%
--inner--
--outer
Content-Type: text/plain

%DOMAIN%
--outer--
";
        let m = fill(template, &values());
        assert_crlf_only(&m);
        assert!(m.contains("\r\nT https://id.example.org/submit?sid=1&token=abc\r\n"));
        assert!(m.contains("\r\nH https://id.example.org/submit?sid=1&amp;token=abc\r\n"));
        assert!(m.contains("Content-Type: text/html; name=\"example.org\"\r\n"));
        assert!(m.contains("\r\n\r\nexample.org\r\n--outer--\r\n"));
    }

    #[test]
    fn a_value_cannot_forge_a_delimiter() {
        let mut v = values();
        v.set(
            "VALIDATION_TOKEN",
            "x\n--b-42\nContent-Type: text/html\n\n<script>",
        );
        let m = fill(VALIDATION, &v);
        assert_eq!(m.matches("\r\n--b-42\r\n").count(), 2);
        // One line: nothing of it starts a line, in either part.
        assert_eq!(
            m.matches("code x --b-42 Content-Type: text/html <script>.")
                .count(),
            1,
            "{m}"
        );
        // A value that starts a line of the template and reads as a delimiter is moved off
        // the line start, in the text part and (escaped) in the HTML part.
        let template = "Subject: s\nContent-Type: multipart/alternative; boundary=b-42\n\n--b-42\nContent-Type: text/plain\n\n%NAME%\n--b-42\nContent-Type: text/html\n\n%NAME%\n--b-42--\n";
        let mut v = Placeholders::new();
        v.set("NAME", "--b-42--");
        let m = fill(template, &v);
        assert_eq!(m.matches("\r\n--b-42").count(), 3, "{m}");
        assert_eq!(m.matches("\r\n --b-42--\r\n").count(), 2, "{m}");
    }

    #[test]
    fn values_are_one_line_in_every_part() {
        let template = "Subject: s\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\nRoom %NAME%!\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nRoom %NAME%!\n--b\nContent-Type: text/html\n\n<p>Room %NAME%!</p>\n--b--\n";
        let mut v = Placeholders::new();
        v.set("NAME", "Tea\r\nBcc: x\n\n\tTime\u{0}\u{1b}[1m\u{7f}<b>");
        let m = fill(template, &v);
        assert_crlf_only(&m);
        assert_eq!(
            m.matches("\r\nRoom Tea Bcc: x  Time[1m<b>!\r\n").count(),
            2,
            "{m}"
        );
        assert!(
            m.contains("\r\nRoom Tea Bcc: x  Time[1m<b>!\r\n--b\r\nContent-Type: text/html"),
            "{m}"
        );
        assert!(
            m.contains("\r\n<p>Room Tea Bcc: x  Time[1m&lt;b&gt;!</p>\r\n"),
            "{m}"
        );
        assert!(!m.contains("\r\nBcc"), "{m}");
        assert!(
            !m.contains('\u{1b}') && !m.contains('\t') && !m.contains('\u{0}'),
            "{m}"
        );
    }

    #[test]
    fn single_part_non_ascii_body_gets_8bit() {
        let mut v = values();
        v.set("FROM_NAME", "Zoë");
        let m = fill("Subject: s\n\nHi %FROM_NAME%\n", &v);
        assert_eq!(header(&m, "Content-Transfer-Encoding"), "8bit");
        assert!(m.ends_with("\r\n\r\nHi Zoë\r\n"));
        let m = fill("Subject: s\n\nHi %FROM_EMAIL%\n", &v);
        assert!(!m.contains("Content-Transfer-Encoding"));
        let m = fill(
            "Subject: s\nContent-Transfer-Encoding: 8bit\n\nHi %FROM_NAME%\n",
            &v,
        );
        assert_eq!(m.matches("Content-Transfer-Encoding").count(), 1);
    }

    #[test]
    fn parts_rewritten_for_utf8_text_say_charset_utf8() {
        let long = "Zoë ".repeat(300);
        let mut v = Placeholders::new();
        v.set("LONG", long.clone()).set("SHORT", "Zoë");
        for (content_type, expected) in [
            ("", "Content-Type: text/plain; charset=utf-8"),
            (
                "Content-Type: text/plain\n",
                "Content-Type: text/plain; charset=utf-8",
            ),
            (
                "Content-Type: text/html; charset=\"US-ASCII\"; format=flowed\n",
                "Content-Type: text/html; format=flowed; charset=utf-8",
            ),
            (
                "Content-Type: text/plain; charset=iso-8859-1\n",
                "Content-Type: text/plain; charset=iso-8859-1",
            ),
        ] {
            for (value, cte) in [("%LONG%", "quoted-printable"), ("%SHORT%", "8bit")] {
                let template = format!("Subject: s\n{content_type}\n{value}\n");
                let m = fill(&template, &v);
                let head = m.split_once("\r\n\r\n").unwrap().0;
                assert!(head.contains(expected), "{head}");
                assert_eq!(head.matches("Content-Type").count(), 1, "{head}");
                assert!(head.contains(&format!("Content-Transfer-Encoding: {cte}")));
            }
        }
    }

    #[test]
    fn embedded_messages_and_multiparts_never_go_quoted_printable() {
        let template = "Subject: s\nContent-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: message/rfc822\nContent-Transfer-Encoding: 7bit\n\nSubject: inner\nContent-Type: text/plain\n\n%LONG%\n--o\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: text/plain\n\n%SHORT%\n--o\nContent-Type: multipart/related; boundary=none\n\n%SHORT%\n--o--\n";
        let mut v = Placeholders::new();
        v.set("LONG", "Zoë ".repeat(300)).set("SHORT", "Zoë");
        let m = fill(template, &v);
        let parts: Vec<&str> = m.split("--o").collect();
        let head = |p: &str| p.split_once("\r\n\r\n").unwrap().0.to_owned();
        // The long embedded message: its part stays 7bit, its text goes quoted-printable.
        assert!(
            head(parts[1]).ends_with("Content-Transfer-Encoding: 7bit"),
            "{m}"
        );
        let inner = parts[1].split_once("\r\n\r\n").unwrap().1;
        assert!(head(inner).contains("Content-Transfer-Encoding: quoted-printable"));
        assert!(head(inner).contains("charset=utf-8"), "{inner}");
        assert!(m.split("\r\n").all(|l| l.len() <= 76), "{m}");
        // The short one: 8bit inside, so 8bit outside.
        assert!(
            head(parts[2]).contains("Content-Transfer-Encoding: 8bit"),
            "{m}"
        );
        let inner = parts[2].split_once("\r\n\r\n").unwrap().1;
        assert!(
            head(inner).contains("Content-Transfer-Encoding: 8bit"),
            "{inner}"
        );
        // A multipart without delimiters: 8bit, never quoted-printable, no charset.
        assert!(
            head(parts[3]).ends_with("Content-Transfer-Encoding: 8bit"),
            "{m}"
        );
        assert!(!head(parts[3]).contains("charset"), "{m}");
        assert!(!m.contains("quoted-printable\r\n\r\nSubject"), "{m}");
    }

    #[test]
    fn boundaries_are_read_quoted_or_not() {
        assert_eq!(
            content_type(" Multipart/Alternative; charset=x; boundary=\"a b;\\\"c\""),
            (
                "multipart/alternative".to_owned(),
                Some("a b;\"c".to_owned())
            )
        );
        assert_eq!(
            content_type("multipart/mixed;\n\tBOUNDARY=xyz ; other=1"),
            ("multipart/mixed".to_owned(), Some("xyz".to_owned()))
        );
        assert_eq!(content_type("text/plain"), ("text/plain".to_owned(), None));
    }
}
