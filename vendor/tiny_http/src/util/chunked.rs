//! mxisd patch: the decoder of chunked request bodies (RFC 9112 §7.1), replacing the
//! `chunked_transfer` crate's on the request side. That decoder buffered a chunk-size line
//! without bound (a client sending endless digits grew memory until the process died) and
//! had no limit on the body. Here a chunk-size line is at most `MAX_SIZE_LINE_BYTES`, the
//! body at most `max` bytes (refused as soon as a chunk size says it would be more), and the
//! trailer lines share what is left of the head's budget. Every read is under the
//! request's deadline, set on the reader.

use std::io::{BufRead, Read};

use crate::framing::{
    line_failure, parse_header, read_head_line, read_line, Failure, LineError, Rejection,
};

/// Longest chunk-size line (size and extensions, without CRLF).
pub(crate) const MAX_SIZE_LINE_BYTES: usize = 32;

/// Reads a chunked body of at most `max` bytes; `budget` bounds its trailer lines.
pub(crate) fn read<R: BufRead>(r: &mut R, max: usize, budget: usize) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r, MAX_SIZE_LINE_BYTES)
            .map_err(|e| malformed(e, "a chunk-size line too long"))?;
        let size = chunk_size(&line)?;
        if size == 0 {
            break;
        }
        if size > max - body.len() {
            return Err(Rejection::BodyTooLarge.into());
        }
        let before = body.len();
        r.take(size as u64).read_to_end(&mut body)?;
        if body.len() - before < size {
            return Err(Failure::Closed);
        }
        // The CRLF after the data: anything before it is data beyond the chunk's size.
        read_line(r, 0).map_err(|e| malformed(e, "chunk data longer than its size"))?;
    }
    skip_trailers(r, budget)?;
    Ok(body)
}

/// A line error inside a chunked body: all of them are malformed framing (400).
fn malformed(e: LineError, too_long: &'static str) -> Failure {
    match e {
        LineError::TooLong => Rejection::BadRequest(too_long).into(),
        LineError::Malformed(why) => Rejection::BadRequest(why).into(),
        LineError::Failed(f) => f,
    }
}

/// `chunk-size [ chunk-ext ]`: hexadecimal digits, then optionally `;` (after optional
/// whitespace) and extensions, which are ignored.
fn chunk_size(line: &[u8]) -> Result<usize, Rejection> {
    let malformed = Rejection::BadRequest("a malformed chunk size");
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    // 15 digits fit in 60 bits; any real size is far below `max` anyway.
    if digits == 0 || digits > 15 {
        return Err(malformed);
    }
    let extensions = &line[digits..];
    let first = extensions.iter().find(|&&b| b != b' ' && b != b'\t');
    if (!extensions.is_empty() && first != Some(&b';'))
        || !extensions
            .iter()
            .all(|&b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
    {
        return Err(malformed);
    }
    let digits = std::str::from_utf8(&line[..digits]).map_err(|_| malformed.clone())?;
    usize::from_str_radix(digits, 16).map_err(|_| malformed)
}

/// Trailer lines end the body; they are read within the head's budget and dropped.
fn skip_trailers<R: BufRead>(r: &mut R, mut budget: usize) -> Result<(), Failure> {
    loop {
        let line = read_head_line(r, &mut budget).map_err(line_failure)?;
        if line.is_empty() {
            return Ok(());
        }
        parse_header(&line)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn decode(text: &str, max: usize) -> Result<Vec<u8>, Failure> {
        read(&mut BufReader::new(text.as_bytes()), max, 100)
    }

    fn rejection(text: &str, max: usize) -> Rejection {
        match decode(text, max) {
            Err(Failure::Reject(r)) => r,
            other => panic!("{:?}: {:?}", text, other),
        }
    }

    #[test]
    fn chunks_and_trailers_are_read() {
        assert_eq!(
            decode("3\r\nabc\r\n1;name=v\r\nd\r\n0\r\n\r\n", 10).unwrap(),
            b"abcd"
        );
        assert_eq!(
            decode("A\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n", 10).unwrap(),
            b"0123456789"
        );
        assert_eq!(decode("0\r\n\r\n", 10).unwrap(), b"");
    }

    #[test]
    fn a_body_over_max_is_refused_before_it_is_read() {
        assert_eq!(
            rejection("6\r\nabcdef\r\n5\r\n", 10),
            Rejection::BodyTooLarge
        );
        assert_eq!(
            rejection("fffffffffffffff\r\n", 10),
            Rejection::BodyTooLarge
        );
    }

    #[test]
    fn malformed_chunks_are_refused() {
        let endless = format!("{}\r\n", "1".repeat(MAX_SIZE_LINE_BYTES + 1));
        assert!(matches!(rejection(&endless, 10), Rejection::BadRequest(_)));
        assert!(matches!(
            rejection("1111111111111111\r\n", usize::MAX),
            Rejection::BadRequest(_)
        ));
        assert!(matches!(rejection("x\r\n", 10), Rejection::BadRequest(_)));
        assert!(matches!(rejection("-1\r\n", 10), Rejection::BadRequest(_)));
        assert!(matches!(
            rejection("3 \r\nabc\r\n0\r\n\r\n", 10),
            Rejection::BadRequest(_)
        ));
        assert_eq!(decode("3 ;x\r\nabc\r\n0\r\n\r\n", 10).unwrap(), b"abc");
        assert!(matches!(
            rejection("3 x\r\nabc\r\n", 10),
            Rejection::BadRequest(_)
        ));
        assert!(matches!(
            rejection("3\nabc\r\n0\r\n\r\n", 10),
            Rejection::BadRequest(_)
        ));
        assert!(matches!(
            rejection("3\r\nabcd\r\n0\r\n\r\n", 10),
            Rejection::BadRequest(_)
        ));
        assert!(matches!(
            rejection("0\r\n folded\r\n\r\n", 10),
            Rejection::BadRequest(_)
        ));
        assert_eq!(
            rejection(&format!("0\r\nX: {}\r\n\r\n", "a".repeat(200)), 10),
            Rejection::HeadTooLarge
        );
    }

    #[test]
    fn an_unfinished_body_is_a_closed_connection() {
        assert!(matches!(decode("5\r\nab", 10), Err(Failure::Closed)));
        assert!(matches!(decode("5\r\nabcde\r\n", 10), Err(Failure::Closed)));
    }
}
