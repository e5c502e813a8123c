//! Many clients at once on few workers, keep-alive and pipelining, over raw TCP against the
//! real binary: every request gets its own answer, in order, none is lost. This guards the
//! hand-off between tiny_http's connection threads and the worker pool (the patched queue
//! and the per-request turn-passing in vendor/tiny_http).

use crate::support::{Mxisd, V1_BULK_LOOKUP};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;

/// A bulk lookup whose body is `len` bytes or a little more: bodies over 1 KiB are read by
/// the worker from the connection, smaller ones arrive with the request.
fn bulk_request(len: usize) -> Vec<u8> {
    let mut threepids = vec![r#"["email","nobody@example.org"]"#.to_owned()];
    let mut i = 0;
    while threepids.iter().map(|t| t.len() + 1).sum::<usize>() < len {
        threepids.push(format!(r#"["email","padding{i}@example.org"]"#));
        i += 1;
    }
    let body = format!(r#"{{"threepids":[{}]}}"#, threepids.join(","));
    let head = format!(
        "POST {V1_BULK_LOOKUP} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    [head.into_bytes(), body.into_bytes()].concat()
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// Reads one response with a Content-Length body: (status, body).
fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, String) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').expect("header");
        assert!(
            !name.eq_ignore_ascii_case("transfer-encoding"),
            "unexpected chunked answer"
        );
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0; length.expect("Content-Length")];
    reader.read_exact(&mut body).expect("body");
    (status, String::from_utf8(body).expect("UTF-8 body"))
}

#[test]
fn many_keep_alive_clients_on_few_workers_all_get_their_answers() {
    let s = Mxisd::start("http:\n  workers: 3\n");
    let (small, large) = (bulk_request(100), bulk_request(3000));
    let clients: Vec<_> = (0..48)
        .map(|c| {
            let stream = s.connect();
            let (small, large) = (small.clone(), large.clone());
            thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                for i in 0..60 {
                    let kind = (c + i) % 3;
                    let request = match kind {
                        0 => get_request("/_matrix/identity/v2"),
                        1 => small.clone(),
                        _ => large.clone(),
                    };
                    writer.write_all(&request).unwrap();
                    let (status, body) = read_response(&mut reader);
                    assert_eq!(status, 200, "client {c} request {i}: {body}");
                    let expected = if kind == 0 {
                        "{}"
                    } else {
                        r#"{"threepids":[]}"#
                    };
                    assert_eq!(body, expected, "client {c} request {i}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Mxisd::start("http:\n  workers: 2\n");
    let stream = s.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    // All five in one write: the next request is already buffered when the first is served.
    let batch = [
        bulk_request(3000),
        get_request("/_matrix/identity/v2/no-such-endpoint"),
        bulk_request(100),
        get_request("/_matrix/identity/v2"),
        bulk_request(5000),
    ]
    .concat();
    writer.write_all(&batch).unwrap();
    let answers: Vec<(u16, String)> = (0..5).map(|_| read_response(&mut reader)).collect();
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, [200, 404, 200, 200, 200]);
    assert!(answers[1].1.contains("M_UNRECOGNIZED"), "{}", answers[1].1);
    assert_eq!(answers[3].1, "{}");
    for i in [0, 2, 4] {
        assert_eq!(answers[i].1, r#"{"threepids":[]}"#);
    }
}

#[test]
fn a_burst_of_new_connections_is_served_while_the_first_stay_open() {
    // Idle keep-alive connections are closed only after a minute here: a connection that
    // waits for another one to close would time out below.
    let s = Mxisd::start("http:\n  workers: 2\n  bodyTimeout: 60\n");
    // Connected all at once, as a client opening its pool does: the server accepts them in
    // one burst.
    let start = Arc::new(Barrier::new(24));
    let streams: Vec<TcpStream> = (0..24)
        .map(|_| {
            let (start, addr) = (start.clone(), s.addr);
            thread::spawn(move || {
                start.wait();
                TcpStream::connect(addr).unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let mut open = Vec::new();
    for (i, stream) in streams.into_iter().enumerate() {
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        writer
            .write_all(&get_request("/_matrix/identity/v2"))
            .unwrap();
        let (status, body) = read_response(&mut reader);
        assert_eq!((status, body.as_str()), (200, "{}"), "connection {i}");
        open.push(reader); // kept open, idle, as a client's keep-alive pool does
    }
}
