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
//!   Content-Transfer-Encoding rewritten, `lines.rs`). In headers a value's line breaks
//!   become spaces (no header injection, and the mail still goes, as sydent does);
//!   non-ASCII text and words too long for a line become RFC 2047 encoded-words, folded.
//!   The result is ready for SMTP: CRLF line endings, no line over 998 octets, with
//!   `Date` and `Message-ID`.
//! - SMS (`.txt`): plain text, values as they are ([`fill_text`]).
//! - Web pages (`.html`): every value HTML-escaped ([`fill_html`]).

use super::lines as limit;
use std::fmt;

/// Placeholder values by name (without the % signs), in the order given.
#[derive(Debug, Clone, Default)]
pub struct Placeholders(Vec<(String, String)>);

impl Placeholders {
    pub fn new() -> Placeholders {
        Placeholders(Vec::new())
    }

    /// Every (name, value), in the order set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Sets `name` to `value`, replacing an earlier value of the same name.
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> &mut Placeholders {
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// A line of the filled message is longer than SMTP allows and cannot be cut (a
    /// template's own header line, an address): its number (from 1) and length in octets.
    /// Never its text, which may hold a user's data.
    LineTooLong { line: usize, octets: usize },
    /// The template is not a message: no blank line between headers and body, or no headers.
    NotAMessage,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::LineTooLong { line, octets } => write!(
                f,
                "line {line} of the message is {octets} octets, longer than SMTP allows (998), and cannot be cut"
            ),
            TemplateError::NotAMessage => f.write_str(
                "the e-mail template is not a whole message (headers, a blank line, the body)",
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

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

/// HTML escaping of one value, safe in element content and in quoted attribute values.
pub fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Placeholders

/// A template cut at its placeholders: literal text, or a known placeholder's value.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Value { name: &'a str, value: &'a str },
}

/// Cuts `template` at the placeholders `values` knows. One pass over the template, so a
/// value that itself looks like `%NAME%` is never expanded.
fn pieces<'a>(template: &'a str, values: &'a Placeholders) -> Vec<Piece<'a>> {
    let bytes = template.as_bytes();
    let mut out = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        let name_end = i
            + 1
            + bytes[i + 1..]
                .iter()
                .take_while(|b| is_name_byte(**b))
                .count();
        let closed = name_end > i + 1 && bytes.get(name_end) == Some(&b'%');
        if !closed {
            i = name_end.max(i + 1);
            continue;
        }
        // Names are ASCII, so these are character boundaries.
        let name = &template[i + 1..name_end];
        match values.get(name) {
            Some(value) => {
                if text_start < i {
                    out.push(Piece::Text(&template[text_start..i]));
                }
                out.push(Piece::Value { name, value });
                i = name_end + 1;
                text_start = i;
            }
            // The closing `%` may open the next placeholder: `%UNKNOWN%DOMAIN%`.
            None => i = name_end,
        }
    }
    if text_start < template.len() {
        out.push(Piece::Text(&template[text_start..]));
    }
    out
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'
}

// ---------------------------------------------------------------------------------------
// Lines and headers

/// CRLF and bare CR become LF, so that the rest only knows one line break.
fn normalize_newlines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// The lines of LF-only text; a final line break ends the last line, it opens none.
fn split_lines(text: &str) -> Vec<&str> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\n').collect()
}

/// One header as the template wrote it.
struct RawHeader<'a> {
    name: &'a str,
    /// Everything after the colon, continuation lines joined by LF.
    value: String,
}

/// Header lines, continuation lines (starting with space or tab) joined to their header;
/// None if a line is neither a header nor a continuation.
fn parse_headers<'a>(lines: &[&'a str]) -> Option<Vec<RawHeader<'a>>> {
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

fn find_header<'h>(headers: &'h [RawHeader<'_>], name: &str) -> Option<&'h RawHeader<'h>> {
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
fn fill_header(header: &RawHeader<'_>, values: &Placeholders) -> Result<String, TemplateError> {
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

/// A value that goes into a header: each run of line breaks becomes one space, so that a
/// value can neither add a header nor stop the mail; a tab becomes a space, and the other
/// control characters (C0, DEL) are dropped: no header may carry them (RFC 5322 2.2),
/// encoded or not.
fn one_line(value: &str) -> String {
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

// ---------------------------------------------------------------------------------------
// MIME entities

/// A filled entity (the message or one part): header lines (folded ones holding LF),
/// then body lines.
struct Entity {
    headers: Vec<String>,
    body: Vec<String>,
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
fn fill_entity(
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

/// A body that is not multipart: values HTML-escaped in HTML, quoted-printable encoded in
/// a quoted-printable part; a base64 part stays as written.
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
            Piece::Value { value, .. } if html => escape_html(value),
            Piece::Value { value, .. } => value.to_string(),
        };
        if encoding == TransferEncoding::QuotedPrintable {
            let at_line_end = match pieces.get(i + 1) {
                None => true,
                Some(Piece::Text(t)) => t.starts_with('\n'),
                Some(Piece::Value { .. }) => false,
            };
            out.push_str(&limit::quoted_printable(&value, at_line_end));
        } else {
            push_guarded(&mut out, &normalize_newlines(&value), boundaries);
        }
    }
    let lines = out.split('\n');
    if encoding == TransferEncoding::QuotedPrintable {
        lines.flat_map(limit::wrap_quoted_printable).collect()
    } else {
        lines.map(str::to_owned).collect()
    }
}

/// Appends a value that may hold line breaks; a line of it that would read as a
/// delimiter of an enclosing multipart gets a leading space, so that a value cannot
/// close its part and forge another.
fn push_guarded(out: &mut String, value: &str, boundaries: &[String]) {
    for (i, line) in value.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let line_start = out.is_empty() || out.ends_with('\n');
        let forged = line
            .strip_prefix("--")
            .is_some_and(|rest| boundaries.iter().any(|b| rest.starts_with(b.as_str())));
        if line_start && forged {
            out.push(' ');
        }
        out.push_str(line);
    }
}

// ---------------------------------------------------------------------------------------
// Date and Message-ID

/// An RFC 5322 date in UTC: `Thu, 01 Jan 1970 00:00:00 +0000`.
fn rfc5322_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = (days + 4).rem_euclid(7) as usize;
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        DAYS[weekday],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Year, month (1-12) and day of the proleptic Gregorian calendar, from days since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`: years counted from March, so the
/// leap day ends the year).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The random left-hand side of a Message-ID; without randomness, the time in
/// nanoseconds (unique enough for one server, and never worth failing a mail for).
fn message_id_local_part() -> String {
    use crate::crypto::random;
    random::string_from(random::ALPHANUMERIC, 24).unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_string()
    })
}

/// The right-hand side of a Message-ID: the configured domain, without anything that
/// could end the header or the brackets.
fn message_id_right(domain: &str) -> String {
    let clean: String = domain
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '@' | '"' | '\\'))
        .collect();
    if clean.is_empty() {
        "localhost".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALIDATION: &str = "\
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

    fn values() -> Placeholders {
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

    fn fill(template: &str, values: &Placeholders) -> String {
        fill_email(template, values, 1_796_117_204, "example.org").expect("a message")
    }

    /// The decoded text of the encoded-words in `text` (joined, whitespace between
    /// them dropped, as readers do).
    fn decode_words(text: &str) -> String {
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
    fn folded_header<'m>(message: &'m str, name: &str) -> &'m str {
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
    fn decode_header(value: &str) -> String {
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

    fn header<'m>(message: &'m str, name: &str) -> &'m str {
        let prefix = format!("{name}:");
        message
            .split("\r\n")
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::trim)
            .expect("the header")
    }

    fn assert_crlf_only(message: &str) {
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

    #[test]
    fn placeholders_set_replaces_and_get_finds() {
        let mut p = Placeholders::new();
        p.set("A", "1").set("B", "2").set("A", "3");
        assert_eq!(p.get("A"), Some("3"));
        assert_eq!(p.get("B"), Some("2"));
        assert_eq!(p.get("C"), None);
        assert_eq!(p.0.len(), 2);
    }

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
        // A value that only goes into the body may hold line breaks.
        let mut v = values();
        v.set("VALIDATION_TOKEN", "a\nb");
        let m = fill(VALIDATION, &v);
        assert!(m.contains("code a\r\nb."));
        assert_crlf_only(&m);
    }

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
        assert!(m.contains("\r\nLines 1=0D=0A2\r\n"), "{m}");
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
        assert!(m.contains("\r\n --b-42\r\n"));
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
    fn message_id_domain_cannot_break_the_header() {
        let m = fill_email("Subject: s\n\nx\n", &values(), 0, "ex ample.org>\r\nBcc: e")
            .expect("a message");
        assert_crlf_only(&m);
        assert!(!m.contains("\r\nBcc"));
        assert!(header(&m, "Message-ID").ends_with("@example.orgBcc:e>"));
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
    fn unknown_placeholders_and_lone_percents_stay() {
        let v = values();
        assert_eq!(
            fill_text("100% sure, %UNKNOWN% %lower% %% %DOMAIN% 50%", &v),
            "100% sure, %UNKNOWN% %lower% %% example.org 50%"
        );
        assert_eq!(fill_text("%UNKNOWN%DOMAIN%", &v), "%UNKNOWNexample.org");
        assert_eq!(fill_text("%DOMAIN%%DOMAIN%", &v), "example.orgexample.org");
        assert_eq!(fill_text("%", &v), "%");
        assert_eq!(fill_text("%DOMAIN", &v), "%DOMAIN");
        let m = fill("Subject: 100% %NOPE%\n\n%NOPE% 5%\n", &v);
        assert_eq!(header(&m, "Subject"), "100% %NOPE%");
        assert!(m.ends_with("\r\n\r\n%NOPE% 5%\r\n"));
    }

    #[test]
    fn values_are_never_expanded_again() {
        let mut v = values();
        v.set("FROM_NAME", "%DOMAIN%");
        assert_eq!(
            fill_text("%FROM_NAME% %DOMAIN%", &v),
            "%DOMAIN% example.org"
        );
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

    #[test]
    fn dates_are_rfc_5322() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_796_117_204),
            "Tue, 01 Dec 2026 09:26:44 +0000"
        );
        assert_eq!(rfc5322_date(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(4_107_542_400),
            "Mon, 01 Mar 2100 00:00:00 +0000"
        );
    }

    #[test]
    fn errors_say_what_went_wrong() {
        let e = TemplateError::LineTooLong {
            line: 3,
            octets: 1200,
        };
        assert!(e.to_string().contains("998"));
        assert!(e.to_string().contains("line 3") && e.to_string().contains("1200 octets"));
        assert!(TemplateError::NotAMessage
            .to_string()
            .contains("blank line"));
    }
}
