//! The header lines of a filled message: a value made one line (no header injection, no
//! control characters), tokens of structured and unstructured headers (only the
//! template's quotes and brackets are syntax), RFC 2047 encoded-words for non-ASCII text
//! and words too long for a line, and folding within 76 characters.

use super::error::TemplateError;
use super::placeholders::{pieces, Piece, Placeholders};
use crate::notify::lines as limit;

/// CRLF and bare CR become LF, so that the rest only knows one line break.
pub(super) fn normalize_newlines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// The lines of LF-only text; a final line break ends the last line, it opens none.
pub(super) fn split_lines(text: &str) -> Vec<&str> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\n').collect()
}

/// One header as the template wrote it.
pub(super) struct RawHeader<'a> {
    name: &'a str,
    /// Everything after the colon, continuation lines joined by LF.
    pub(super) value: String,
}

/// Header lines, continuation lines (starting with space or tab) joined to their header;
/// None if a line is neither a header nor a continuation.
pub(super) fn parse_headers<'a>(lines: &[&'a str]) -> Option<Vec<RawHeader<'a>>> {
    let mut headers: Vec<RawHeader<'a>> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut()?;
            last.value.push('\n');
            last.value.push_str(line);
            continue;
        }
        let (name, value) = line.split_once(':')?;
        // RFC 5322 field names: printable ASCII except the colon.
        if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b)) {
            return None;
        }
        headers.push(RawHeader {
            name,
            value: value.to_owned(),
        });
    }
    Some(headers)
}

pub(super) fn find_header<'h>(
    headers: &'h [RawHeader<'_>],
    name: &str,
) -> Option<&'h RawHeader<'h>> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name))
}

/// Headers with quoted strings and addresses: the rest are treated as unstructured text.
fn is_structured(name: &str) -> bool {
    const STRUCTURED: [&str; 15] = [
        "From",
        "To",
        "Cc",
        "Bcc",
        "Reply-To",
        "Sender",
        "Resent-From",
        "Resent-To",
        "Resent-Cc",
        "Resent-Bcc",
        "Resent-Sender",
        "Return-Path",
        "Disposition-Notification-To",
        "Content-Type",
        "Content-Disposition",
    ];
    STRUCTURED.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// One header, filled: `Name:value`, folded lines joined by LF.
pub(super) fn fill_header(
    header: &RawHeader<'_>,
    values: &Placeholders,
) -> Result<String, TemplateError> {
    let mut chars = Vec::new();
    for piece in pieces(&header.value, values) {
        match piece {
            Piece::Text(t) => chars.extend(t.chars().map(|c| HChar { c, literal: true })),
            Piece::Value { value, .. } => {
                chars.extend(one_line(value).chars().map(|c| HChar { c, literal: false }));
            }
        }
    }
    let structured = is_structured(header.name);
    let tokens = if structured {
        tokenize_structured(&chars)
    } else {
        tokenize_unstructured(&chars)
    };
    let name_len = header.name.len() + 1;
    let line = format!(
        "{}:{}",
        header.name,
        render_tokens(tokens, structured, name_len)
    );
    Ok(fold_encoded(&line, name_len))
}

/// A value as a mail carries it, in a header or a body part: each run of line breaks
/// becomes one space, so that a value can neither add a header nor stop the mail, nor
/// start lines of its own in a body (a display name is one line wherever it shows); a tab
/// becomes a space, and the other control characters (C0, DEL) are dropped: no header may
/// carry them (RFC 5322 2.2), encoded or not, and no reader needs them in a body.
pub(super) fn one_line(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut in_break = false;
    for c in value.chars() {
        if c == '\r' || c == '\n' {
            if !in_break {
                out.push(' ');
            }
            in_break = true;
            continue;
        }
        in_break = false;
        match c {
            '\t' => out.push(' '),
            c if c.is_ascii_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Folds the lines of a header that hold encoded-words to 76 characters where it can
/// (RFC 2047 section 2), at whitespace, and any line longer than SMTP allows; the first
/// text after `Name:` stays on its line. Other lines are left as the template wrote them.
fn fold_encoded(header: &str, name_len: usize) -> String {
    const MAX: usize = ENCODED_LINE_MAX;
    let mut out = String::with_capacity(header.len() + 16);
    for (n, line) in header.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        if line.len() <= MAX || (!line.contains("=?") && line.len() <= limit::LINE_MAX) {
            out.push_str(line);
            continue;
        }
        let keep = if n == 0 { name_len } else { 0 };
        let mut len = 0;
        for segment in segments(line) {
            let at_space = segment.starts_with([' ', '\t']);
            if at_space && len > keep && len + segment.len() > MAX {
                out.push('\n');
                len = 0;
            }
            out.push_str(segment);
            len += segment.len();
        }
    }
    out
}

/// `line` cut before each run of whitespace that follows text: each piece is
/// whitespace then text (the first may have no whitespace).
fn segments(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut previous_space = true;
    for (i, c) in line.char_indices() {
        let space = c == ' ' || c == '\t';
        if space && !previous_space {
            out.push(&line[start..i]);
            start = i;
        }
        previous_space = space;
    }
    out.push(&line[start..]);
    out
}

// ---------------------------------------------------------------------------------------
// Header values: quoting and RFC 2047 encoded-words

/// A character of a filled header value, and whether the template wrote it: only the
/// template's quotes and brackets are syntax, a value's are text.
#[derive(Clone, Copy)]
struct HChar {
    c: char,
    literal: bool,
}

#[derive(Debug)]
enum Token {
    Space(String),
    Word(String),
    /// A quoted string's content, unescaped; `closed` if the template closed it.
    Quoted {
        content: String,
        closed: bool,
    },
    /// `<...>`, an address: never encoded (RFC 2047 forbids encoded-words there).
    Angle(String),
    Special(char),
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n')
}

fn take_space(chars: &[HChar], i: &mut usize) -> Token {
    let mut s = String::new();
    while let Some(h) = chars.get(*i).filter(|h| is_space(h.c)) {
        s.push(h.c);
        *i += 1;
    }
    Token::Space(s)
}

/// Unstructured text (Subject and most headers): words between whitespace.
fn tokenize_unstructured(chars: &[HChar]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if is_space(chars[i].c) {
            tokens.push(take_space(chars, &mut i));
            continue;
        }
        let mut word = String::new();
        while let Some(h) = chars.get(i).filter(|h| !is_space(h.c)) {
            word.push(h.c);
            i += 1;
        }
        tokens.push(Token::Word(word));
    }
    tokens
}

/// Structured headers (addresses, parameters): the template's quoted strings, angle
/// addresses and separators are kept apart from words.
fn tokenize_structured(chars: &[HChar]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&HChar { c, literal }) = chars.get(i) {
        if is_space(c) {
            tokens.push(take_space(chars, &mut i));
        } else if literal && c == '"' {
            i += 1;
            tokens.push(take_quoted(chars, &mut i));
        } else if literal && c == '<' {
            let mut addr = String::new();
            while let Some(h) = chars.get(i) {
                addr.push(h.c);
                i += 1;
                if h.literal && h.c == '>' {
                    break;
                }
            }
            tokens.push(Token::Angle(addr));
        } else if literal && is_separator(c) {
            tokens.push(Token::Special(c));
            i += 1;
        } else {
            let mut word = String::new();
            while let Some(h) = chars.get(i).filter(|h| !ends_word(**h)) {
                word.push(h.c);
                i += 1;
            }
            tokens.push(Token::Word(word));
        }
    }
    tokens
}

fn is_separator(c: char) -> bool {
    matches!(c, ',' | ';' | '(' | ')' | '>')
}

fn ends_word(h: HChar) -> bool {
    is_space(h.c) || (h.literal && (h.c == '"' || h.c == '<' || is_separator(h.c)))
}

/// The content of a quoted string after its opening quote: the template's backslash
/// escapes undone, a value's characters taken as they are.
fn take_quoted(chars: &[HChar], i: &mut usize) -> Token {
    let mut content = String::new();
    while let Some(h) = chars.get(*i) {
        *i += 1;
        if h.literal && h.c == '\\' {
            if let Some(next) = chars.get(*i) {
                content.push(next.c);
                *i += 1;
            }
        } else if h.literal && h.c == '"' {
            return Token::Quoted {
                content,
                closed: true,
            };
        } else {
            content.push(h.c);
        }
    }
    Token::Quoted {
        content,
        closed: false,
    }
}

/// Text that must go as encoded-words: non-ASCII, ASCII that a reader would take for an
/// encoded-word, or a word too long for any line (encoded-words can be cut and folded).
fn needs_encoding(text: &str) -> bool {
    !text.is_ascii() || text.contains("=?") || text.len() > LONG_WORD
}

/// A word longer than this could not share a folded header line within SMTP's limit.
const LONG_WORD: usize = 900;

/// The text an encodable token stands for, or None if it goes as written.
fn encodable(token: &Token, structured: bool) -> Option<&str> {
    match token {
        // In address headers a word with `@` is an address: encoded-words may not
        // appear there, so a non-ASCII one goes as UTF-8 (RFC 6532).
        Token::Word(w) if needs_encoding(w) && !(structured && w.contains('@')) => Some(w),
        Token::Quoted { content, .. } if !content.is_ascii() || content.len() > LONG_WORD => {
            Some(content)
        }
        _ => None,
    }
}

/// Writes the tokens back; text needing encoded-words is gathered across whitespace,
/// because readers drop the whitespace between two encoded-words. `name_len`: what
/// precedes the value on its first line (`Name:`).
fn render_tokens(tokens: Vec<Token>, structured: bool, name_len: usize) -> String {
    // Where the next text starts on its line: the first encoded-word must fit what is
    // left of it, as no fold can come before it when nothing but `Name:` precedes it.
    let room = |out: &str| {
        let column = match out.rfind('\n') {
            Some(i) => out.len() - i - 1,
            None => name_len + out.len(),
        };
        ENCODED_LINE_MAX.saturating_sub(column)
    };
    let mut out = String::new();
    let mut pending: Option<String> = None;
    let mut space_after = String::new();
    for token in &tokens {
        if let Some(text) = encodable(token, structured) {
            match pending.as_mut() {
                Some(p) => {
                    p.push_str(&unfold(&space_after));
                    p.push_str(text);
                }
                None => pending = Some(text.to_owned()),
            }
            space_after.clear();
            continue;
        }
        if let Token::Space(s) = token {
            if pending.is_some() {
                space_after.push_str(s);
                continue;
            }
        }
        if let Some(p) = pending.take() {
            out.push_str(&encoded_words(&p, room(&out)));
            out.push_str(&space_after);
            space_after.clear();
        }
        render_plain(token, &mut out);
    }
    if let Some(p) = pending {
        out.push_str(&encoded_words(&p, room(&out)));
        out.push_str(&space_after);
    }
    out
}

fn render_plain(token: &Token, out: &mut String) {
    match token {
        Token::Space(s) | Token::Word(s) | Token::Angle(s) => out.push_str(s),
        Token::Special(c) => out.push(*c),
        Token::Quoted { content, closed } => {
            out.push('"');
            for c in content.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            if *closed {
                out.push('"');
            }
        }
    }
}

/// Whitespace taken into an encoded-word: a folding line break is not text.
fn unfold(space: &str) -> String {
    let s: String = space.chars().filter(|&c| c != '\n').collect();
    if s.is_empty() {
        " ".to_owned()
    } else {
        s
    }
}

/// Longest line of a header holding encoded-words (RFC 2047 section 2), CRLF not counted.
const ENCODED_LINE_MAX: usize = 76;

/// `text` as RFC 2047 `B` encoded-words of at most 75 characters, cut on character
/// boundaries, separated by spaces ([`fold_encoded`] puts each on its own line). The first
/// is shorter if it must fit the `room` left on its line (when a character fits there).
fn encoded_words(text: &str, room: usize) -> String {
    // 75 - len("=?UTF-8?B?" "?=") = 63, so 60 base64 characters: 45 bytes.
    const MAX_BYTES: usize = 45;
    const WRAPPING: usize = "=?UTF-8?B??=".len();
    let text: String = text.chars().filter(|&c| c != '\n').collect();
    let first_max = (room.saturating_sub(WRAPPING) / 4 * 3).min(MAX_BYTES);
    let fits = text
        .chars()
        .next()
        .is_some_and(|c| c.len_utf8() <= first_max);
    let mut max = if fits { first_max } else { MAX_BYTES };
    let mut words = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if i + c.len_utf8() - start > max {
            max = MAX_BYTES;
            words.push(&text[start..i]);
            start = i;
        }
    }
    words.push(&text[start..]);
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                crate::crypto::b64::encode_padded(w.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn non_ascii_name_becomes_an_encoded_word_without_quotes() {
        let mut v = values();
        v.set("FROM_NAME", "Zoë's Identität");
        let m = fill(VALIDATION, &v);
        let from = header(&m, "From");
        let (name, addr) = from.rsplit_once(' ').expect("name and address");
        assert!(
            name.starts_with("=?UTF-8?B?") && name.ends_with("?="),
            "{from}"
        );
        assert!(!from.contains('"'), "{from}");
        assert_eq!(addr, "<noreply@example.org>");
        assert_eq!(decode_words(name), "Zoë's Identität");
    }

    #[test]
    fn words_of_one_phrase_stay_one_encoded_text() {
        // Readers drop whitespace between encoded-words: it must be inside them.
        let mut v = values();
        v.set("FROM_NAME", "Zoë Müller");
        let template = "From: %FROM_NAME% <%FROM_EMAIL%>\nSubject: Hi %FROM_NAME% and co\n\nx\n";
        let m = fill(template, &v);
        let from = header(&m, "From");
        let (name, _) = from.rsplit_once(' ').expect("name and address");
        assert_eq!(decode_words(name), "Zoë Müller");
        let subject = header(&m, "Subject");
        let words: Vec<&str> = subject.split(' ').collect();
        assert_eq!(words[0], "Hi");
        assert_eq!(decode_words(words[1]), "Zoë Müller");
        assert_eq!(&words[2..], ["and", "co"]);
    }

    #[test]
    fn ascii_values_in_quotes_are_escaped() {
        let mut v = values();
        v.set("FROM_NAME", r#"Ann "Boss" \o/"#);
        let m = fill(VALIDATION, &v);
        assert_eq!(
            header(&m, "From"),
            r#""Ann \"Boss\" \\o/" <noreply@example.org>"#
        );
        // The template's own escapes survive.
        let m = fill("From: \"a \\\"%X%\\\"\" <b@c>\n\nx\n", &v);
        assert_eq!(header(&m, "From"), r#""a \"%X%\"" <b@c>"#);
    }

    #[test]
    fn line_breaks_in_header_values_become_spaces() {
        for bad in [
            "Eve\r\nBcc: x@evil.test",
            "Eve\nBcc: x@evil.test",
            "Eve\r\n\r\nBcc: x@evil.test",
        ] {
            let mut v = values();
            v.set("FROM_NAME", bad);
            let m = fill(VALIDATION, &v);
            assert_crlf_only(&m);
            assert!(!m.contains("\r\nBcc"), "{m}");
            assert_eq!(
                header(&m, "From"),
                "\"Eve Bcc: x@evil.test\" <noreply@example.org>"
            );
        }
        // A value that only goes into the body is one line there too.
        let mut v = values();
        v.set("VALIDATION_TOKEN", "a\nb");
        let m = fill(VALIDATION, &v);
        assert_eq!(m.matches("code a b.").count(), 1, "{m}");
        assert_crlf_only(&m);
    }

    #[test]
    fn long_non_ascii_values_are_cut_into_encoded_words() {
        // Every word non-ASCII: one encoded text, cut into several encoded-words.
        let long = ["Überprüfung für Zoë — 日本語のテキスト"; 5].join(" ");
        let mut v = values();
        v.set("DOMAIN_PRETTY", long.clone());
        let m = fill(VALIDATION, &v);
        assert_crlf_only(&m);
        let subject = folded_header(&m, "Subject");
        let lines: Vec<&str> = subject.split("\r\n").collect();
        assert!(lines.len() > 3, "{subject}");
        for line in &lines[1..] {
            assert!(line.starts_with(' '), "folded: {line:?}");
            assert!(line.len() <= 76, "{line:?}");
        }
        let words: Vec<&str> = subject.split_whitespace().collect();
        assert_eq!(&words[..4], ["Confirm", "your", "address", "for"]);
        for w in &words[4..] {
            assert!(w.len() <= 75, "{w}");
            assert!(w.starts_with("=?UTF-8?B?") && w.ends_with("?="), "{w}");
        }
        assert_eq!(decode_words(&words[4..].join(" ")), long);
    }

    #[test]
    fn a_first_encoded_word_fits_the_line_of_its_header_name() {
        let name = "日本語の部屋の名前はとても長いですが".repeat(4);
        let template = "Subject: %NAME% invited you\nX-A-Rather-Long-Header-Name: %NAME%\n\nx\n";
        let mut v = Placeholders::new();
        v.set("NAME", name.clone());
        let m = fill(template, &v);
        let head = m.split_once("\r\n\r\n").unwrap().0;
        for line in head.split("\r\n") {
            assert!(line.len() <= 76, "{} characters: {line}", line.len());
        }
        for w in head.split_whitespace().filter(|w| w.starts_with("=?")) {
            assert!(w.len() <= 75, "{w}");
        }
        let subject = folded_header(&m, "Subject");
        assert!(subject.starts_with("=?UTF-8?B?"), "{subject}");
        assert_eq!(
            decode_words(subject.trim_end_matches(" invited you").trim()),
            name
        );
    }

    #[test]
    fn control_characters_never_reach_a_header() {
        let template = "Subject: %NAME%\nX-Other: %OTHER%\n\nx\n";
        let mut v = Placeholders::new();
        v.set("NAME", "Tea\u{0}\u{7}\u{1b}[31m\tRoom\u{7f}")
            .set("OTHER", "Caf\u{e9}\u{1}\u{8}!");
        let m = fill(template, &v);
        let head = m.split_once("\r\n\r\n").unwrap().0;
        let controls = |t: &str| {
            t.chars()
                .any(|c| c.is_ascii_control() && c != '\r' && c != '\n')
        };
        assert!(!controls(head), "{head:?}");
        assert_eq!(header(&m, "Subject"), "Tea[31m Room");
        let other = folded_header(&m, "X-Other");
        assert_eq!(decode_words(other.trim()), "Café!");
    }

    #[test]
    fn ascii_words_between_non_ascii_ones_stay_plain() {
        let mixed = "Überprüfung der Adresse für Zoë — ".repeat(6) + "日本語";
        let mut v = values();
        v.set("DOMAIN_PRETTY", mixed.clone());
        let m = fill(VALIDATION, &v);
        let subject = folded_header(&m, "Subject");
        let unfolded = subject.replace("\r\n", "");
        assert!(unfolded.contains("?= der Adresse =?UTF-8?B?"), "{subject}");
        // RFC 2047: lines with encoded-words within 76 characters.
        for line in format!("Subject: {subject}").split("\r\n") {
            assert!(line.len() <= 76, "{line:?}");
        }
        for w in subject.split_whitespace() {
            assert!(w.len() <= 75, "{w}");
        }
        assert_eq!(
            decode_header(subject),
            format!("Confirm your address for {mixed}")
        );
    }

    #[test]
    fn non_ascii_addresses_stay_addresses() {
        let mut v = values();
        v.set("RECIPIENT_ADDRESS", "zoë@exämple.org");
        let m = fill(
            "To: %RECIPIENT_ADDRESS%\nCc: Zoë <%RECIPIENT_ADDRESS%>\n\nx\n",
            &v,
        );
        assert_eq!(header(&m, "To"), "zoë@exämple.org");
        let cc = header(&m, "Cc");
        assert!(cc.ends_with(" <zoë@exämple.org>"), "{cc}");
        assert_eq!(decode_words(cc.split(' ').next().expect("a name")), "Zoë");
    }

    #[test]
    fn ascii_lookalike_encoded_words_are_encoded() {
        let mut v = values();
        v.set("DOMAIN_PRETTY", "=?UTF-8?B?RXZl?=");
        let m = fill(VALIDATION, &v);
        let subject = header(&m, "Subject");
        let last = subject.rsplit(' ').next().expect("a word");
        assert_eq!(decode_words(last), "=?UTF-8?B?RXZl?=");
    }
}
