//! Request heads and bodies: size limits (declared, chunked, header lines), stalled and
//! idle clients, over HTTP against the real binary. None of these may crash the server or
//! take a worker. (Hostile floods and framing attacks: `http_hostile.rs`, `http_framing.rs`.)

use crate::support;
use crate::support::{raw_exchange, status_line, Mxisd, V1_BULK_LOOKUP};
use std::io::{Read, Write};
use std::time::Duration;

const LIMITS: &str =
    "http:\n  workers: 2\n  maxBodyBytes: 2048\n  requestTimeout: 1\n  keepAliveTimeout: 1\n";

/// A v1 bulk lookup of `body` sent chunked, `piece` bytes a chunk, closing after it.
fn chunked_bulk_lookup(body: &str, piece: usize) -> String {
    let mut request = format!("POST {V1_BULK_LOOKUP} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for chunk in body.as_bytes().chunks(piece) {
        let chunk = String::from_utf8_lossy(chunk);
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    request
}

#[test]
fn declared_huge_body_is_refused_without_allocating_it() {
    let s = Mxisd::start(LIMITS);
    // Before the vendored fix, tiny_http allocated the declared length when dropping the
    // unread body: a petabyte here aborted the process.
    let request = format!(
        "POST {V1_BULK_LOOKUP} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000000000\r\n\r\n{{\"threepids\":[]}}"
    );
    let mut conn = s.connect();
    conn.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(status_line(&answer).starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("M_TOO_LARGE"), "{answer}");
    drop(conn);
    // Refused by the connection thread, before any worker saw it, and logged.
    assert!(s.wait_for_log("(refused) 413 M_TOO_LARGE"), "{}", s.log());
    assert_eq!(s.get("/_matrix/identity/versions").status, 200);
    assert!(s.rss_kib() < 200 * 1024, "RSS {} KiB", s.rss_kib());
}

#[test]
fn body_over_the_limit_is_413_whether_declared_or_chunked() {
    let s = Mxisd::start(LIMITS);
    let big = format!("{{\"threepids\":[[\"email\",\"{}\"]]}}", "a".repeat(3000));
    let r = s.post(V1_BULK_LOOKUP, &big);
    r.assert_error(413, "M_TOO_LARGE");

    let answer = raw_exchange(&s, chunked_bulk_lookup(&big, 500).as_bytes());
    assert!(status_line(&answer).starts_with("HTTP/1.1 413"), "{answer}");

    // Just under the limit is read and answered.
    let fits = format!("{{\"threepids\":[[\"email\",\"{}\"]]}}", "a".repeat(1900));
    assert_eq!(s.post(V1_BULK_LOOKUP, &fits).status, 200);
}

#[test]
fn stalled_bodies_time_out_without_taking_a_worker() {
    // `bodyTimeout` is the older name of `requestTimeout`.
    let s = Mxisd::start("http:\n  workers: 2\n  bodyTimeout: 1\n");
    // More clients than workers announce 5000 bytes and send 100.
    let stalled: Vec<_> = (0..4)
        .map(|_| {
            let mut conn = s.connect();
            let head = format!(
                "POST {V1_BULK_LOOKUP} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
            );
            conn.write_all(head.as_bytes()).unwrap();
            conn.write_all(&[b' '; 100]).unwrap();
            conn
        })
        .collect();
    // Connection threads wait for the bodies; the workers serve others meanwhile.
    assert_eq!(s.get("/_matrix/identity/versions").status, 200);
    for mut conn in stalled {
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer);
        assert!(status_line(&answer).starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""errcode":"M_UNKNOWN""#), "{answer}");
        assert!(answer.contains("Connection: close"), "{answer}");
    }
    assert!(s.wait_for_log("(refused) 408 M_UNKNOWN"), "{}", s.log());
    assert_eq!(s.get("/_matrix/identity/versions").status, 200);
}

#[test]
fn idle_keep_alive_connections_are_closed_quietly() {
    let s = Mxisd::start("http:\n  requestTimeout: 10\n  keepAliveTimeout: 2\n");
    let get = b"GET /_matrix/identity/versions HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut conn = s.connect();
    conn.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    // Idle for less than the keep-alive timeout: the connection still serves.
    conn.write_all(get).unwrap();
    let mut first = [0u8; 1024];
    let n = conn.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(1000));
    conn.write_all(get).unwrap();
    // Then idle for longer: closed after keepAliveTimeout, without a word, well before the
    // client's own 8 s and the request timeout.
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn the_keep_alive_timeout_counts_from_the_answer() {
    // A lookup that takes 2 s (a database that never answers, timeout 2), then 1.5 s idle:
    // within keepAliveTimeout (3 s) of the answer, though 3.5 s after the request.
    let silent = support::Silent::start();
    let s = Mxisd::start(&format!(
        "http:\n  keepAliveTimeout: 3\nsynapseSql:\n  enabled: true\n  type: postgresql\n  connection: '//127.0.0.1:{}/synapse?user=synapse'\n  timeout: 2\n",
        silent.port
    ));
    let mut conn = s.connect();
    conn.write_all(b"GET /_matrix/identity/api/v1/lookup?medium=email&address=a%40b.org HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503"));
    std::thread::sleep(Duration::from_millis(1500));
    conn.write_all(
        b"GET /_matrix/identity/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer}");
}

/// A GET of the v2 status with one extra header line `X-Pad: <pad>`, closing after it.
fn get_with_header(pad: &str) -> String {
    format!(
        "GET /_matrix/identity/v2 HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\nConnection: close\r\n\r\n"
    )
}

#[test]
fn header_lines_and_header_counts_are_bounded() {
    let s = Mxisd::start(LIMITS);
    // A line is at most 16 KiB (CRLF not counted): "X-Pad: " is 7 bytes.
    let longest = "a".repeat(16 * 1024 - 7);
    let answer = raw_exchange(&s, get_with_header(&longest).as_bytes());
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer}");
    let too_long = "a".repeat(16 * 1024 + 1 - 7);
    let answer = raw_exchange(&s, get_with_header(&too_long).as_bytes());
    assert!(status_line(&answer).starts_with("HTTP/1.1 431"), "{answer}");
    assert!(answer.contains(r#""errcode":"M_UNKNOWN""#), "{answer}");
    let answer = raw_exchange(&s, get_with_header(&"a".repeat(40_000)).as_bytes());
    assert!(status_line(&answer).starts_with("HTTP/1.1 431"), "{answer}");
    // The request line has the same limit, and its own status.
    let long_path = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(16 * 1024));
    let answer = raw_exchange(&s, long_path.as_bytes());
    assert!(status_line(&answer).starts_with("HTTP/1.1 414"), "{answer}");

    let headers = |n: usize| {
        let lines: String = (0..n).map(|i| format!("X-H{i}: v\r\n")).collect();
        format!("GET /_matrix/identity/v2 HTTP/1.1\r\n{lines}Connection: close\r\n\r\n")
    };
    // 128 header lines at most, Connection included.
    let answer = raw_exchange(&s, headers(127).as_bytes());
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer}");
    let answer = raw_exchange(&s, headers(128).as_bytes());
    assert!(status_line(&answer).starts_with("HTTP/1.1 431"), "{answer}");
    // Lines each within the limit, 32 KiB in all: the head's total budget.
    let three = format!(
        "GET /_matrix/identity/v2 HTTP/1.1\r\nHost: x\r\nX-A: {a}\r\nX-B: {a}\r\nX-C: {a}\r\n\r\n",
        a = "a".repeat(11_000)
    );
    let answer = raw_exchange(&s, three.as_bytes());
    assert!(status_line(&answer).starts_with("HTTP/1.1 431"), "{answer}");
    assert!(
        answer.contains("Request header fields too large"),
        "{answer}"
    );
    assert_eq!(s.get("/_matrix/identity/versions").status, 200);
}

#[test]
fn a_request_arriving_in_small_pieces_is_served() {
    let s = Mxisd::start(LIMITS);
    let body = r#"{"threepids":[["email","nobody@example.org"]]}"#;
    let request = format!(
        "POST {V1_BULK_LOOKUP} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut conn = s.connect();
    conn.set_nodelay(true).unwrap();
    // Three bytes at a time: lines end in every position of a piece, CR and LF apart.
    for piece in request.as_bytes().chunks(3) {
        conn.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"threepids":[]}"#), "{answer}");
}

#[test]
fn a_chunked_body_larger_than_the_first_read_is_read_whole() {
    let s = Mxisd::start("http:\n  maxBodyBytes: 100000\n");
    let threepids: Vec<String> = (0..1500)
        .map(|i| format!(r#"["email","padding{i}@example.org"]"#))
        .collect();
    let body = format!(r#"{{"threepids":[{}]}}"#, threepids.join(","));
    assert!(body.len() > 40_000, "{}", body.len());
    let answer = raw_exchange(&s, chunked_bulk_lookup(&body, 7000).as_bytes());
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"threepids":[]}"#), "{answer}");
}
