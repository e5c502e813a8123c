//! Request framing, strictly (RFC 9112 §6), over raw TCP against the real binary. Each
//! ambiguous request hides a second request after it: a server that read the first one
//! differently from a proxy would answer the hidden one (request smuggling; behind a proxy
//! that reuses connections, it would come from the proxy's trusted address). The hidden
//! request must never be answered: one answer, then the connection closes.

use crate::support::{raw_exchange, status_line, Mxisd, V1_BULK_LOOKUP};
use std::io::{Read, Write};
use std::time::Duration;

const CONFIG: &str = "http:\n  workers: 2\n  requestTimeout: 2\n  keepAliveTimeout: 2\n";
/// What each ambiguous request carries after it.
const HIDDEN: &str = "GET /_matrix/identity/v2 HTTP/1.1\r\nHost: hidden\r\n\r\n";

/// How many responses `answer` holds: status lines, wherever they start (responses follow
/// each other without a separator).
fn responses(answer: &str) -> usize {
    answer
        .match_indices("HTTP/1.1 ")
        .filter(|(i, m)| {
            let after = &answer.as_bytes()[i + m.len()..];
            after.len() > 3 && after[..3].iter().all(u8::is_ascii_digit) && after[3] == b' '
        })
        .count()
}

/// Sends `request`, then the hidden request, and asserts exactly one answer with `status`,
/// a JSON error, and the connection closed.
fn only_one_answer(s: &Mxisd, request: &str, status: u16) -> String {
    let answer = raw_exchange(s, format!("{request}{HIDDEN}").as_bytes());
    assert!(
        status_line(&answer).starts_with(&format!("HTTP/1.1 {status} ")),
        "{request:?} answered:\n{answer}"
    );
    assert_eq!(responses(&answer), 1, "{request:?} answered:\n{answer}");
    assert!(answer.contains("Connection: close"), "{answer}");
    assert!(answer.contains(r#""errcode":""#), "{answer}");
    answer
}

fn post(headers: &str, body: &str) -> String {
    format!("POST {V1_BULK_LOOKUP} HTTP/1.1\r\nHost: x\r\n{headers}\r\n{body}")
}

#[test]
fn ambiguous_body_lengths_are_refused_and_what_follows_is_never_read() {
    let s = Mxisd::start(CONFIG);
    let body = r#"{"threepids":[]}"#; // 16 bytes
    for headers in [
        "Content-Length: 4x\r\n",
        "Content-Length: +16\r\n",
        "Content-Length: 16, 16\r\n",
        "Content-Length: 16\r\nContent-Length: 17\r\n",
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 16\r\n",
        "Content-Length : 16\r\n",
        "X-Folded: a\r\n Content-Length: 16\r\n",
    ] {
        let answer = only_one_answer(&s, &post(headers, body), 400);
        assert!(answer.contains("Bad request"), "{answer}");
    }
    // A bare LF ends no line here, where another parser might end one.
    only_one_answer(
        &s,
        &format!("POST {V1_BULK_LOOKUP} HTTP/1.1\r\nHost: x\nContent-Length: 16\r\n\r\n{body}"),
        400,
    );
    // Equal repeated lengths are one length: answered, then the next request is too.
    let same = post("Content-Length: 16\r\nContent-Length: 16\r\n", body);
    let answer = raw_exchange(
        &s,
        format!("{same}GET /_matrix/identity/v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(responses(&answer), 2, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 200 ").count(), 2, "{answer}");
    assert!(s.wait_for_log("(refused) 400 M_UNKNOWN"), "{}", s.log());
    assert!(s.answers_within(Duration::from_secs(2)));
}

#[test]
fn chunked_bodies_are_decoded_strictly() {
    let s = Mxisd::start(CONFIG);
    let te = "Transfer-Encoding: chunked\r\n";
    // A chunk-size line over 32 bytes (endless digits, or a long extension).
    only_one_answer(&s, &post(te, &format!("{}\r\n", "0".repeat(33))), 400);
    only_one_answer(
        &s,
        &post(te, &format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(31))),
        400,
    );
    // Data longer than its chunk size, a size that is not hexadecimal.
    only_one_answer(&s, &post(te, "2\r\n{}}\r\n0\r\n\r\n"), 400);
    only_one_answer(&s, &post(te, "z\r\n"), 400);
    // A well-formed chunked body is read, extensions and trailers included.
    let body = r#"{"threepids":[]}"#;
    let chunked = format!(
        "3;ext=1\r\n{}\r\nd\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n",
        &body[..3],
        &body[3..]
    );
    let answer = raw_exchange(
        &s,
        post(&format!("{te}Connection: close\r\n"), &chunked).as_bytes(),
    );
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(body), "{answer}");
}

#[test]
fn after_a_body_too_large_nothing_more_is_read() {
    let s = Mxisd::start("http:\n  maxBodyBytes: 1024\n  requestTimeout: 2\n");
    // The declared body is over the limit; what the client sends anyway holds a request.
    let filler = "x".repeat(2000);
    let request = post("Content-Length: 4000\r\n", &format!("{filler}{HIDDEN}"));
    let answer = only_one_answer(&s, &request, 413);
    assert!(answer.contains("M_TOO_LARGE"), "{answer}");
    // Chunked, over the limit as it arrives.
    let chunked = format!("{:x}\r\n{filler}\r\n0\r\n\r\n", filler.len());
    only_one_answer(&s, &post("Transfer-Encoding: chunked\r\n", &chunked), 413);
}

#[test]
fn only_http_1_is_spoken() {
    let s = Mxisd::start(CONFIG);
    let answer = only_one_answer(
        &s,
        "GET /_matrix/identity/v2 HTTP/2.0\r\nHost: x\r\n\r\n",
        505,
    );
    assert!(answer.contains("Only HTTP/1.0 and HTTP/1.1"), "{answer}");
    // The HTTP/2 connection preface.
    only_one_answer(&s, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);
    only_one_answer(&s, "GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn expect_100_continue_is_answered_once_the_head_is_accepted() {
    let s = Mxisd::start(CONFIG);
    let body = r#"{"threepids":[]}"#;
    let mut conn = s.connect();
    let head = format!(
        "POST {V1_BULK_LOOKUP} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    conn.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(body), "{answer}");

    // Too large: refused at once, no 100 first.
    let answer = raw_exchange(
        &s,
        post("Expect: 100-continue\r\nContent-Length: 99999999\r\n", "").as_bytes(),
    );
    assert!(status_line(&answer).starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    // Any other expectation is 417.
    only_one_answer(
        &s,
        &post("Expect: 200-ok\r\nContent-Length: 16\r\n", body),
        417,
    );
}

#[test]
fn connection_upgrade_is_never_honoured() {
    let s = Mxisd::start(CONFIG);
    let upgrade = "GET /_matrix/identity/v2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let next = "GET /_matrix/identity/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(&s, format!("{upgrade}{next}").as_bytes());
    // Both answered as plain HTTP, in order, on the same connection.
    assert_eq!(responses(&answer), 2, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 200 ").count(), 2, "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("upgrade"), "{answer}");
    assert!(answer.contains(r#""versions""#), "{answer}");
}
