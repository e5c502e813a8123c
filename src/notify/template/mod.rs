//! mxisd's `template` generator: fills the operator's template files.
//!
//! Three kinds of template, all with placeholders written `%NAME%` (`NAME` is
//! `[A-Z0-9_]+`; an unknown name and a lone `%` stay as they are; values are never
//! expanded again):
//!
//! - E-mail (`.eml`): a whole RFC 5322 message, headers, a blank line, the body; usually
//!   `multipart/alternative` with a text/plain and a text/html part. [`fill_email`] reads
//!   its MIME structure from the template (never from the values) and fills each part as
//!   its type and transfer encoding require: HTML-escaped in text/html, quoted-printable
//!   encoded in quoted-printable parts, base64 parts untouched. A part declared 7bit or 8bit
//!   (or not at all) whose filled body has a line longer than SMTP allows, or a 7bit part
//!   that is no longer ASCII, is sent quoted-printable instead (its
//!   Content-Transfer-Encoding rewritten, `lines.rs`). A value is one line wherever it
//!   goes, header or body part: its line breaks and tabs become spaces, other control
//!   characters are dropped (no header injection, no lines of its own in a body, and the
//!   mail still goes, as sydent does); in headers non-ASCII text and words too long for a
//!   line become RFC 2047 encoded-words, folded.
//!   The result is ready for SMTP: CRLF line endings, no line over 998 octets, with
//!   `Date` and `Message-ID`.
//! - SMS (`.txt`): plain text, values as they are ([`fill_text`]).
//! - Web pages (`.html`): every value HTML-escaped ([`fill_html`]).
//!
//! By concern, the arrows running one way (mod → mime → headers → placeholders; dates and
//! error are leaves): the `%NAME%` placeholders and HTML escaping (`placeholders.rs`), header
//! lines with RFC 2047 encoded-words and folding (`headers.rs`), the MIME structure and
//! transfer encodings (`mime.rs`), `Date` and `Message-ID` (`dates.rs`), [`TemplateError`]
//! (`error.rs`).

mod dates;
mod error;
mod headers;
mod mime;
mod placeholders;

pub use error::TemplateError;
pub use placeholders::{escape_html, Placeholders};

use super::lines as limit;
use dates::{message_id_local_part, message_id_right, rfc5322_date};
use headers::{find_header, normalize_newlines, parse_headers, split_lines};
use mime::fill_entity;
use placeholders::{pieces, Piece};

/// The operator's template file at `path`, else the built-in one.
pub fn read_or_builtin(path: Option<&std::path::Path>, builtin: &str) -> Result<String, String> {
    match path {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("template {}: {e}", path.display()))
        }
        None => Ok(builtin.to_owned()),
    }
}

/// Fills an e-mail template into a message ready for SMTP (CRLF line endings throughout,
/// no bare LF). `now_unix` is the time for a `Date` header; `message_id_domain` the
/// right-hand side of a `Message-ID`. Both headers are added only when the template has
/// none.
pub fn fill_email(
    template: &str,
    values: &Placeholders,
    now_unix: i64,
    message_id_domain: &str,
) -> Result<String, TemplateError> {
    let text = normalize_newlines(template);
    let lines = split_lines(&text);
    let blank = lines
        .iter()
        .position(|l| l.is_empty())
        .ok_or(TemplateError::NotAMessage)?;
    if blank == 0 {
        return Err(TemplateError::NotAMessage);
    }
    let headers = parse_headers(&lines[..blank]).ok_or(TemplateError::NotAMessage)?;
    let entity = fill_entity(&headers, &lines[blank + 1..], values, &[])?;

    let mut out = entity.headers;
    if find_header(&headers, "Date").is_none() {
        out.push(format!("Date: {}", rfc5322_date(now_unix)));
    }
    if find_header(&headers, "Message-ID").is_none() {
        out.push(format!(
            "Message-ID: <{}@{}>",
            message_id_local_part(),
            message_id_right(message_id_domain)
        ));
    }
    out.push(String::new());
    out.extend(entity.body);
    // Internally every line break is a bare LF (template, values and our folding alike);
    // the one conversion here is what guarantees CRLF everywhere.
    let mut message = out.join("\n");
    message.push('\n');
    // What nothing above could cut (the template's own long header lines, an address) is
    // an error here rather than a refusal by the server after every retry.
    if let Some((n, long)) = message
        .split('\n')
        .enumerate()
        .find(|(_, l)| l.len() > limit::LINE_MAX)
    {
        return Err(TemplateError::LineTooLong {
            line: n + 1,
            octets: long.len(),
        });
    }
    Ok(message.replace('\n', "\r\n"))
}

/// SMS text: placeholders replaced as they are.
pub fn fill_text(template: &str, values: &Placeholders) -> String {
    pieces(template, values)
        .iter()
        .map(|p| match p {
            Piece::Text(t) => *t,
            Piece::Value { value, .. } => *value,
        })
        .collect()
}

/// An HTML page: every value HTML-escaped (& < > " ').
pub fn fill_html(template: &str, values: &Placeholders) -> String {
    let mut out = String::with_capacity(template.len());
    for piece in pieces(template, values) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Value { value, .. } => out.push_str(&escape_html(value)),
        }
    }
    out
}

/// What the unit tests of this folder share: a validation template, its values, and readers
/// of the filled message.
#[cfg(test)]
mod test_support {
    use super::*;

    pub(super) const VALIDATION: &str = "\
Subject: Confirm your address for %DOMAIN_PRETTY%
From: \"%FROM_NAME%\" <%FROM_EMAIL%>
To: %RECIPIENT_ADDRESS%
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=\"b-42\"

This is a multi-part message in MIME format.
--b-42
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit

Hello,

Confirm %RECIPIENT_ADDRESS% on %DOMAIN_PRETTY%: %VALIDATION_LINK%
Or enter the code %VALIDATION_TOKEN%.

--b-42
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: 8bit

<p>Confirm <b>%RECIPIENT_ADDRESS%</b> on %DOMAIN_PRETTY%:
<a href=\"%VALIDATION_LINK%\">confirm</a></p>

--b-42--
";

    pub(super) fn values() -> Placeholders {
        let mut p = Placeholders::new();
        p.set("DOMAIN", "example.org")
            .set("DOMAIN_PRETTY", "Example.org")
            .set("FROM_NAME", "Example Identity")
            .set("FROM_EMAIL", "noreply@example.org")
            .set("RECIPIENT_ADDRESS", "alice@example.com")
            .set(
                "VALIDATION_LINK",
                "https://id.example.org/submit?sid=1&token=abc",
            )
            .set("VALIDATION_TOKEN", "abc");
        p
    }

    pub(super) fn fill(template: &str, values: &Placeholders) -> String {
        fill_email(template, values, 1_796_117_204, "example.org").expect("a message")
    }

    /// The decoded text of the encoded-words in `text` (joined, whitespace between
    /// them dropped, as readers do).
    pub(super) fn decode_words(text: &str) -> String {
        let mut bytes = Vec::new();
        for word in text.split_whitespace() {
            let b64 = word
                .strip_prefix("=?UTF-8?B?")
                .and_then(|w| w.strip_suffix("?="))
                .expect("an encoded-word");
            bytes.extend(crate::crypto::b64::decode(b64).expect("base64"));
        }
        String::from_utf8(bytes).expect("UTF-8")
    }

    /// A header's value with its continuation lines, CRLF kept.
    pub(super) fn folded_header<'m>(message: &'m str, name: &str) -> &'m str {
        let prefix = format!("{name}: ");
        let start = match message.strip_prefix(&prefix) {
            Some(_) => prefix.len(),
            None => message.find(&format!("\r\n{prefix}")).expect("the header") + prefix.len() + 2,
        };
        let rest = &message[start..];
        let mut end = 0;
        while let Some(i) = rest[end..].find("\r\n") {
            end += i;
            if !rest[end + 2..].starts_with([' ', '\t']) {
                break;
            }
            end += 2;
        }
        &rest[..end]
    }

    /// A header value as a reader shows it (RFC 2047 section 6.2): whitespace between two
    /// encoded-words dropped, elsewhere one space (our test texts have single spaces).
    pub(super) fn decode_header(value: &str) -> String {
        let mut out = String::new();
        let mut previous_encoded = false;
        for (i, word) in value.split_whitespace().enumerate() {
            let encoded = word.starts_with("=?UTF-8?B?");
            if i > 0 && !(encoded && previous_encoded) {
                out.push(' ');
            }
            out.push_str(&if encoded {
                decode_words(word)
            } else {
                word.to_owned()
            });
            previous_encoded = encoded;
        }
        out
    }

    pub(super) fn header<'m>(message: &'m str, name: &str) -> &'m str {
        let prefix = format!("{name}:");
        message
            .split("\r\n")
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::trim)
            .expect("the header")
    }

    pub(super) fn assert_crlf_only(message: &str) {
        let bytes = message.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' => assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i}"),
                b'\r' => assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
                _ => {}
            }
        }
        assert!(message.ends_with("\r\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn validation_template_is_filled_everywhere() {
        let m = fill(VALIDATION, &values());
        assert_crlf_only(&m);
        assert_eq!(
            header(&m, "Subject"),
            "Confirm your address for Example.org"
        );
        assert_eq!(
            header(&m, "From"),
            "\"Example Identity\" <noreply@example.org>"
        );
        assert_eq!(header(&m, "To"), "alice@example.com");
        assert!(m.contains(
            "\r\n\r\nHello,\r\n\r\nConfirm alice@example.com on Example.org: \
             https://id.example.org/submit?sid=1&token=abc\r\nOr enter the code abc.\r\n"
        ));
        assert!(m.contains(
            "<p>Confirm <b>alice@example.com</b> on Example.org:\r\n\
             <a href=\"https://id.example.org/submit?sid=1&amp;token=abc\">confirm</a></p>"
        ));
        // Structure as written: preamble, delimiters, closing delimiter.
        assert!(m.contains("\r\n\r\nThis is a multi-part message in MIME format.\r\n--b-42\r\n"));
        assert_eq!(m.matches("\r\n--b-42\r\n").count(), 2);
        assert!(m.ends_with("\r\n--b-42--\r\n"));
        assert!(!m.contains('%'));
        // All ASCII: no transfer encoding added, none needed.
        assert_eq!(m.matches("Content-Transfer-Encoding").count(), 2);
    }

    #[test]
    fn date_and_message_id_are_added_only_when_absent() {
        let m = fill(VALIDATION, &values());
        assert_eq!(header(&m, "Date"), "Tue, 01 Dec 2026 09:26:44 +0000");
        let id = header(&m, "Message-ID");
        let (left, right) = id
            .strip_prefix('<')
            .and_then(|i| i.strip_suffix('>'))
            .and_then(|i| i.split_once('@'))
            .expect("<left@right>");
        assert_eq!(left.len(), 24);
        assert!(left.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(right, "example.org");
        // The headers come before the blank line that ends them.
        let head = m.split_once("\r\n\r\n").expect("headers").0;
        assert!(head.contains("\r\nDate: ") && head.contains("\r\nMessage-ID: "));

        let own = "date: Mon, 1 Jan 2024 00:00:00 +0000\nMESSAGE-ID: <a@b>\nSubject: s\n\nx\n";
        let m = fill(own, &values());
        assert_eq!(m.matches("ate:").count(), 1);
        assert_eq!(m.to_ascii_lowercase().matches("message-id:").count(), 1);
        assert!(m.starts_with("date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMESSAGE-ID: <a@b>\r\n"));
    }

    #[test]
    fn lf_templates_become_crlf() {
        let template = "Subject: %DOMAIN%\nDate: x\nMessage-ID: <a@b>\nX-Folded: a\n\tb %DOMAIN%\n\nline 1\n\nline 3";
        let lf = fill(template, &values());
        assert_crlf_only(&lf);
        assert_eq!(
            lf,
            "Subject: example.org\r\nDate: x\r\nMessage-ID: <a@b>\r\nX-Folded: a\r\n\tb example.org\r\n\r\nline 1\r\n\r\nline 3\r\n"
        );
        let crlf = fill(&template.replace('\n', "\r\n"), &values());
        assert_eq!(lf, crlf);
    }

    #[test]
    fn not_a_message_is_refused() {
        for t in [
            "",
            "Subject: no body",
            "\nbody only",
            "Hello %NAME%,\n\nplain text\n",
            " continuation first\n\nx",
        ] {
            assert_eq!(
                fill_email(t, &values(), 0, "example.org"),
                Err(TemplateError::NotAMessage),
                "{t:?}"
            );
        }
    }

    #[test]
    fn sms_text_takes_values_as_they_are() {
        let mut v = values();
        v.set("VALIDATION_TOKEN", "<&>");
        assert_eq!(
            fill_text("Your %DOMAIN_PRETTY% code is %VALIDATION_TOKEN%", &v),
            "Your Example.org code is <&>"
        );
    }

    #[test]
    fn html_pages_escape_every_value() {
        let mut v = Placeholders::new();
        v.set("NEXT_URL", "https://x.test/?a=1&b=\"2\"")
            .set("NAME", "<script>alert('x')</script>");
        assert_eq!(
            fill_html("<a href=\"%NEXT_URL%\">%NAME%</a> 100%", &v),
            "<a href=\"https://x.test/?a=1&amp;b=&quot;2&quot;\">\
             &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</a> 100%"
        );
        assert_eq!(
            escape_html("a&b<c>d\"e'f"),
            "a&amp;b&lt;c&gt;d&quot;e&#39;f"
        );
        assert_eq!(escape_html("plain ünïcode"), "plain ünïcode");
    }
}
