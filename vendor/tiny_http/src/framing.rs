//! mxisd patch: reading one request strictly (RFC 9112): its lines, the size budget of its
//! head, and how its body is framed. Whatever two parsers could read differently is
//! refused, never guessed, so that nothing after a request can pass for another request
//! (request smuggling): a `Content-Length` that is not plain digits or is repeated with
//! other values, a `Transfer-Encoding` other than exactly `chunked`, both together, a line
//! ended by a bare LF, a folded header line, a space before a header's colon.
//!
//! This module only reads and decides; the connection thread (`client.rs`) answers.

use std::io::{BufRead, ErrorKind, Read};
use std::str::FromStr;

use ascii::AsciiString;

use crate::util::chunked;
use crate::{HTTPVersion, Header, HeaderField, Method};

/// Longest request line or header line, in bytes (without its CRLF).
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;
/// Most header lines in one request.
pub(crate) const MAX_HEADER_LINES: usize = 128;
/// Most bytes of a request head: request line, header lines and their line ends (and the
/// trailer lines of a chunked body).
pub(crate) const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Why the connection layer answered a request itself, before any handler saw it. The
/// server's `Rejecter` turns each into a response; the connection is then closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The server holds its `max_connections` already (503), or could not start a
    /// thread for this one.
    TooManyConnections,
    /// A malformed request line, header or body framing (400); says what.
    BadRequest(&'static str),
    /// A request line longer than the line limit (414).
    UriTooLong,
    /// Header lines over the line, count or total limit (431).
    HeadTooLarge,
    /// A body larger than `max_body_bytes` (413).
    BodyTooLarge,
    /// The head and body did not arrive within `request_timeout` (408).
    Timeout,
    /// An HTTP version other than 1.0 and 1.1 (505).
    VersionNotSupported,
    /// An `Expect` other than `100-continue` (417).
    ExpectationFailed,
}

/// Why no request was read.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The client went away (end of stream, reset): nothing to answer.
    Closed,
    /// Answer this, then close the connection.
    Reject(Rejection),
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Failure {
        Failure::Reject(r)
    }
}

/// A read failed: a deadline that passed is answered 408, anything else means the client
/// is gone.
impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        match e.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Failure::Reject(Rejection::Timeout),
            _ => Failure::Closed,
        }
    }
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Empty,
    Length(usize),
    Chunked,
}

/// A request head, checked.
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) version: HTTPVersion,
    pub(crate) headers: Vec<Header>,
    pub(crate) framing: Framing,
    /// The client waits for `100 Continue` before it sends the body.
    pub(crate) expects_continue: bool,
    /// Another request may follow on this connection.
    pub(crate) keep_alive: bool,
    /// What is left of `MAX_HEAD_BYTES` (for the trailer lines of a chunked body).
    pub(crate) budget_left: usize,
}

/// Why a line could not be read.
#[derive(Debug)]
pub(crate) enum LineError {
    TooLong,
    Malformed(&'static str),
    Failed(Failure),
}

impl From<std::io::Error> for LineError {
    fn from(e: std::io::Error) -> LineError {
        LineError::Failed(e.into())
    }
}

/// One line ended by CRLF, returned without it; at most `limit` bytes. A bare LF is
/// refused rather than taken as a line end, as another parser might not.
pub(crate) fn read_line<R: BufRead>(r: &mut R, limit: usize) -> Result<Vec<u8>, LineError> {
    let mut line = Vec::with_capacity(limit.min(126) + 2);
    loop {
        let available = match r.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if available.is_empty() {
            return Err(LineError::Failed(Failure::Closed));
        }
        let (taken, ended) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        line.extend_from_slice(&available[..taken]);
        r.consume(taken);
        if ended {
            line.pop(); // the LF
            if line.pop() != Some(b'\r') {
                return Err(LineError::Malformed("a line ended by a bare LF"));
            }
            if line.len() > limit {
                return Err(LineError::TooLong);
            }
            return Ok(line);
        }
        // Room for the line and the CR of its end.
        if line.len() > limit + 1 {
            return Err(LineError::TooLong);
        }
    }
}

/// Reads and checks a request head. Empty lines before the request line are skipped
/// (RFC 9112 §2.2), within the head's budget.
pub(crate) fn read_head<R: BufRead>(r: &mut R, max_body: usize) -> Result<Head, Failure> {
    let mut budget = MAX_HEAD_BYTES;
    let request_line = loop {
        let line = read_head_line(r, &mut budget).map_err(|e| match e {
            // Over the line limit rather than the budget: the request target is too long.
            LineError::TooLong if budget >= MAX_LINE_BYTES + 2 => Rejection::UriTooLong.into(),
            e => line_failure(e),
        })?;
        if !line.is_empty() {
            break line;
        }
    };
    let (method, path, version) = parse_request_line(&request_line)?;

    let mut headers = Vec::new();
    loop {
        let line = read_head_line(r, &mut budget).map_err(line_failure)?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADER_LINES {
            return Err(Rejection::HeadTooLarge.into());
        }
        headers.push(parse_header(&line)?);
    }

    let framing = framing(&version, &headers, max_body)?;
    let expects_continue = expects_continue(&version, &headers)?;
    let keep_alive = keep_alive(&version, &headers);
    Ok(Head {
        method,
        path,
        version,
        headers,
        framing,
        expects_continue,
        keep_alive,
        budget_left: budget,
    })
}

/// A line of the head (or of a chunked body's trailers): at most `MAX_LINE_BYTES`, and
/// counted with its CRLF against `budget`, what is left of `MAX_HEAD_BYTES`.
pub(crate) fn read_head_line<R: BufRead>(
    r: &mut R,
    budget: &mut usize,
) -> Result<Vec<u8>, LineError> {
    let room = budget.checked_sub(2).ok_or(LineError::TooLong)?;
    let line = read_line(r, MAX_LINE_BYTES.min(room))?;
    *budget -= line.len() + 2;
    Ok(line)
}

/// A header or trailer line that failed: too long is 431, malformed 400.
pub(crate) fn line_failure(e: LineError) -> Failure {
    match e {
        LineError::TooLong => Rejection::HeadTooLarge.into(),
        LineError::Malformed(why) => Rejection::BadRequest(why).into(),
        LineError::Failed(f) => f,
    }
}

/// Reads the body the head announced; `max` bounds a chunked one as it arrives (a declared
/// length over it was refused with the head).
pub(crate) fn read_body<R: BufRead>(
    r: &mut R,
    head: &Head,
    max: usize,
) -> Result<Vec<u8>, Failure> {
    match head.framing {
        Framing::Empty => Ok(Vec::new()),
        Framing::Length(length) => {
            // Grown as the bytes come, so a client declaring a large body and sending
            // nothing costs nothing.
            let mut body = Vec::with_capacity(length.min(64 * 1024));
            r.take(length as u64).read_to_end(&mut body)?;
            if body.len() < length {
                return Err(Failure::Closed);
            }
            Ok(body)
        }
        Framing::Chunked => chunked::read(r, max, head.budget_left),
    }
}

/// `method SP request-target SP HTTP-version`, with single spaces.
fn parse_request_line(line: &[u8]) -> Result<(Method, String, HTTPVersion), Rejection> {
    let malformed = Rejection::BadRequest("a malformed request line");
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(malformed);
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(malformed);
    }
    let version = match version {
        b"HTTP/1.1" => HTTPVersion(1, 1),
        b"HTTP/1.0" => HTTPVersion(1, 0),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(Rejection::VersionNotSupported)
        }
        _ => return Err(malformed),
    };
    // Both are ASCII, checked above.
    let method =
        Method::from_str(&String::from_utf8_lossy(method)).map_err(|_| malformed.clone())?;
    let target = String::from_utf8_lossy(target).into_owned();
    Ok((method, target, version))
}

/// `field-name ":" OWS field-value OWS`: no space before the colon, no folding, no
/// control characters, ASCII only.
pub(crate) fn parse_header(line: &[u8]) -> Result<Header, Rejection> {
    if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err(Rejection::BadRequest("a folded header line"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(Rejection::BadRequest("a header line without a colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Rejection::BadRequest("a malformed header name"));
    }
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    let value = &value[start..end];
    if !value
        .iter()
        .all(|&b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
    {
        return Err(Rejection::BadRequest(
            "a header value with control or non-ASCII characters",
        ));
    }
    let field = HeaderField::from_bytes(name)
        .map_err(|_| Rejection::BadRequest("a malformed header name"))?;
    let value = AsciiString::from_ascii(value)
        .map_err(|_| Rejection::BadRequest("a header value with non-ASCII characters"))?;
    Ok(Header { field, value })
}

/// A character of a token (RFC 9110 §5.6.2): method names and header names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn values<'h>(headers: &'h [Header], name: &'static str) -> impl Iterator<Item = &'h str> {
    headers
        .iter()
        .filter(move |h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// How the body is delimited (RFC 9112 §6), refusing every ambiguous case.
fn framing(
    version: &HTTPVersion,
    headers: &[Header],
    max_body: usize,
) -> Result<Framing, Rejection> {
    let mut length: Option<u64> = None;
    for value in values(headers, "Content-Length") {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Rejection::BadRequest(
                "a Content-Length that is not a number",
            ));
        }
        // Digits only: a value too large for u64 is simply too large.
        let n = value.parse::<u64>().unwrap_or(u64::MAX);
        if length.is_some_and(|previous| previous != n) {
            return Err(Rejection::BadRequest(
                "Content-Length headers that disagree",
            ));
        }
        length = Some(n);
    }
    let codings: Vec<&str> = values(headers, "Transfer-Encoding").collect();
    if !codings.is_empty() {
        if length.is_some() {
            return Err(Rejection::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if *version < HTTPVersion(1, 1) {
            return Err(Rejection::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if codings.len() != 1 || !codings[0].eq_ignore_ascii_case("chunked") {
            return Err(Rejection::BadRequest(
                "a Transfer-Encoding other than chunked",
            ));
        }
        return Ok(Framing::Chunked);
    }
    match length {
        None | Some(0) => Ok(Framing::Empty),
        Some(n) if n > max_body as u64 => Err(Rejection::BodyTooLarge),
        Some(n) => Ok(Framing::Length(n as usize)),
    }
}

/// Whether the client waits for `100 Continue`; any other expectation is refused. HTTP/1.0
/// has no interim responses (RFC 9110 §10.1.1).
fn expects_continue(version: &HTTPVersion, headers: &[Header]) -> Result<bool, Rejection> {
    let expect: Vec<&str> = values(headers, "Expect").collect();
    match expect[..] {
        [] => Ok(false),
        [v] if v.eq_ignore_ascii_case("100-continue") => Ok(*version >= HTTPVersion(1, 1)),
        _ => Err(Rejection::ExpectationFailed),
    }
}

/// Whether the connection stays open after this request. `Connection: upgrade` is not
/// honoured: the request is answered as HTTP and the connection stays HTTP.
fn keep_alive(version: &HTTPVersion, headers: &[Header]) -> bool {
    let mut tokens = values(headers, "Connection").flat_map(|v| v.split(',').map(str::trim));
    if *version >= HTTPVersion(1, 1) {
        !tokens.any(|t| t.eq_ignore_ascii_case("close"))
    } else {
        let tokens: Vec<&str> = tokens.collect();
        tokens.iter().any(|t| t.eq_ignore_ascii_case("keep-alive"))
            && !tokens.iter().any(|t| t.eq_ignore_ascii_case("close"))
    }
}

/// mxisd patch: one request read from `bytes` as a connection thread reads it from its
/// socket (`read_head`, then `read_body`, the same limits), for mxisd's fuzz targets and
/// the test that replays their corpus (`mxisd::fuzz::request`). Gives the request and the
/// bytes after it (a pipelined request); `Err(None)` when the bytes end before the request
/// does (a connection would wait, then close), `Err(Some(_))` what the server would refuse.
#[doc(hidden)]
pub fn read_request(bytes: &[u8], max_body: usize) -> Result<RequestRead<'_>, Option<Rejection>> {
    let mut cursor = std::io::Cursor::new(bytes);
    let read = read_head(&mut cursor, max_body)
        .and_then(|head| read_body(&mut cursor, &head, max_body).map(|body| (head, body)));
    match read {
        Ok((head, body)) => {
            let used = std::convert::TryFrom::try_from(cursor.position()).unwrap_or(bytes.len());
            let used: usize = used;
            Ok(RequestRead {
                method: head.method,
                path: head.path,
                headers: head.headers,
                body,
                rest: bytes.get(used..).unwrap_or_default(),
            })
        }
        Err(Failure::Closed) => Err(None),
        Err(Failure::Reject(rejection)) => Err(Some(rejection)),
    }
}

/// mxisd patch: what `read_request` read.
#[doc(hidden)]
pub struct RequestRead<'b> {
    pub method: Method,
    pub path: String,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
    /// The bytes after this request.
    pub rest: &'b [u8],
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn head(text: &str) -> Result<Head, Failure> {
        read_head(&mut BufReader::new(text.as_bytes()), 1000)
    }

    fn rejection(text: &str) -> Rejection {
        match head(text) {
            Err(Failure::Reject(r)) => r,
            Err(Failure::Closed) => panic!("closed: {:?}", text),
            Ok(_) => panic!("accepted: {:?}", text),
        }
    }

    fn bad(text: &str) {
        assert!(
            matches!(rejection(text), Rejection::BadRequest(_)),
            "{text:?}: {:?}",
            rejection(text)
        );
    }

    #[test]
    fn a_plain_request_is_read() {
        let h = head("POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nX-Tab:\tv  \r\n\r\n")
            .unwrap();
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.path, "/a?b");
        assert_eq!(h.framing, Framing::Length(12));
        assert!(h.keep_alive && !h.expects_continue);
        assert_eq!(h.headers[2].value.as_str(), "v");
        let h = head("\r\nGET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Empty);
        assert!(h.keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            !head("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            head("GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        bad("POST / HTTP/1.1\r\nContent-Length: 4x\r\n\r\n");
        bad("POST / HTTP/1.1\r\nContent-Length: +16\r\n\r\n");
        bad("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
        bad("POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n");
        bad("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n");
        bad("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        bad("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
        bad("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        bad("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n");
        bad("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        bad("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 05\r\n\r\n")
                .unwrap()
                .framing,
            Framing::Length(5)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n")
                .unwrap()
                .framing,
            Framing::Chunked
        );
    }

    #[test]
    fn malformed_lines_are_refused() {
        bad("GET / HTTP/1.1\nHost: x\r\n\r\n");
        bad("GET / HTTP/1.1\r\nHost: x\n\r\n");
        bad("GET  / HTTP/1.1\r\n\r\n");
        bad("GET / HTTP/1.1 \r\n\r\n");
        bad("GET /\x01 HTTP/1.1\r\n\r\n");
        bad("GET / HTTP/1.x\r\n\r\n");
        bad("GET / HTTP/1.1\r\nHost : x\r\n\r\n");
        bad("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n");
        bad("GET / HTTP/1.1\r\nNo colon\r\n\r\n");
        bad("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n");
        bad("GET / HTTP/1.1\r\nX: caf\u{e9}\r\n\r\n");
        assert_eq!(
            rejection("GET / HTTP/2.0\r\n\r\n"),
            Rejection::VersionNotSupported
        );
        assert_eq!(
            rejection("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Rejection::VersionNotSupported
        );
        assert_eq!(
            rejection("GET / HTTP/0.9\r\n\r\n"),
            Rejection::VersionNotSupported
        );
        assert_eq!(
            rejection("POST / HTTP/1.1\r\nExpect: something\r\n\r\n"),
            Rejection::ExpectationFailed
        );
        assert_eq!(
            rejection("POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n"),
            Rejection::BodyTooLarge
        );
        assert_eq!(
            rejection("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            Rejection::BodyTooLarge
        );
    }

    #[test]
    fn the_head_has_limits_per_line_in_count_and_in_total() {
        let long = "a".repeat(MAX_LINE_BYTES);
        assert!(head(&format!(
            "GET /{} HTTP/1.1\r\n\r\n",
            &long[..MAX_LINE_BYTES - 15]
        ))
        .is_ok());
        assert_eq!(
            rejection(&format!("GET /{long} HTTP/1.1\r\n\r\n")),
            Rejection::UriTooLong
        );
        let line = format!("X: {}\r\n", &long[..MAX_LINE_BYTES - 3]);
        assert!(head(&format!("GET / HTTP/1.1\r\n{line}\r\n")).is_ok());
        let over = format!("X: {}\r\n", &long[..MAX_LINE_BYTES - 2]);
        assert_eq!(
            rejection(&format!("GET / HTTP/1.1\r\n{over}\r\n")),
            Rejection::HeadTooLarge
        );
        let lines = "X: y\r\n".repeat(MAX_HEADER_LINES);
        assert!(head(&format!("GET / HTTP/1.1\r\n{lines}\r\n")).is_ok());
        assert_eq!(
            rejection(&format!("GET / HTTP/1.1\r\n{lines}X: y\r\n\r\n")),
            Rejection::HeadTooLarge
        );
        // Two lines under the line limit, together over the total.
        let half = format!("X: {}\r\n", &long[..MAX_HEAD_BYTES / 2 - 5]);
        assert_eq!(
            rejection(&format!("GET / HTTP/1.1\r\n{half}{half}\r\n")),
            Rejection::HeadTooLarge
        );
    }

    #[test]
    fn the_budget_counts_line_ends_and_never_runs_out_below_zero() {
        // Nothing but line ends before the request line: the budget, not a panic.
        let blank = "\r\n".repeat(MAX_HEAD_BYTES / 2 + 1);
        assert_eq!(
            rejection(&format!("{blank}GET / HTTP/1.1\r\n\r\n")),
            Rejection::HeadTooLarge
        );
        // Lines that fill the budget to its last bytes, then the empty line that ends the
        // head: 2 bytes more than are left.
        let request = "GET / HTTP/1.1\r\n";
        let first = format!("X: {}\r\n", "a".repeat(MAX_LINE_BYTES - 3));
        let left = MAX_HEAD_BYTES - request.len() - first.len();
        let second = format!("Y: {}\r\n", "b".repeat(left - 2 - 3));
        assert_eq!(
            rejection(&format!("{request}{first}{second}\r\n")),
            Rejection::HeadTooLarge
        );
        let fits = format!("Y: {}\r\n", "b".repeat(left - 4 - 3));
        assert!(head(&format!("{request}{first}{fits}\r\n")).is_ok());
    }

    #[test]
    fn an_unfinished_head_is_a_closed_connection() {
        assert!(matches!(head(""), Err(Failure::Closed)));
        assert!(matches!(
            head("GET / HTTP/1.1\r\nHost: x"),
            Err(Failure::Closed)
        ));
    }
}
