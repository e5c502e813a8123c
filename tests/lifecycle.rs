//! Start and stop: SIGTERM/SIGINT let requests in flight finish and exit 0; a panicking
//! handler answers 500 and its worker serves on.

use crate::support;
use crate::support::{Mxisd, TempDir, V1_BULK_LOOKUP};
use mxisd::http::{ApiError, Method, Reply, Request, Server};
use mxisd::{api, app::App, config};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn sigterm_and_sigint_stop_with_exit_code_zero() {
    for signal in ["TERM", "INT"] {
        let mut s = Mxisd::start("");
        assert_eq!(s.get("/_matrix/identity/versions").status, 200);
        s.signal(signal);
        let status = s.wait_exit(Duration::from_secs(20)).expect("exited");
        assert_eq!(status.code(), Some(0), "SIG{signal}; log:\n{}", s.log());
        assert!(s.wait_for_log("stopped"), "{}", s.log());
        assert!(!s.log().contains("ERROR"), "{}", s.log());
    }
}

#[test]
fn a_request_in_flight_finishes_after_sigterm() {
    let mut s = Mxisd::start("http:\n  requestTimeout: 20\n");
    let body = format!(
        "{{\"threepids\":[[\"email\",\"{}@example.org\"]]}}",
        "a".repeat(2000)
    );
    let (first, rest) = body.split_at(1000);
    let mut conn = s.connect();
    let head = format!(
        "POST {V1_BULK_LOOKUP} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(first.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300)); // its connection thread reads the body
    s.signal("TERM");
    assert!(
        s.wait_for_log("finishing requests in flight"),
        "{}",
        s.log()
    );
    // New connections are refused once the signal is handled.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(s.addr).is_err(),
        "still accepting after SIGTERM"
    );
    conn.write_all(rest.as_bytes()).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("{\"threepids\":[]}"), "{answer}");
    let status = s.wait_exit(Duration::from_secs(20)).expect("exited");
    assert_eq!(status.code(), Some(0), "{}", s.log());
}

fn panics(_: &App, _: &Request) -> Result<Reply, ApiError> {
    panic!("deliberate test panic");
}

#[test]
fn a_panicking_handler_answers_500_and_the_worker_survives() {
    let dir = TempDir::new();
    let text = support::config_text(&dir, &dir.join("keys"), "http:\n  workers: 1\n");
    let config = config::load_str(&text, "test").unwrap().config;
    let mut router = api::router(&config);
    router.add(Method::Get, "/test/panic", panics);
    let app = Arc::new(App::open(config).unwrap());
    let server = Server::start(&app.config, app.clone(), router).unwrap();
    let agent = support::agent();
    let url = |p: &str| format!("http://{}{p}", server.local_addr());
    for _ in 0..3 {
        let r = support::Response::from(agent.get(url("/test/panic")).call());
        r.assert_error(500, "M_UNKNOWN");
        // The single worker is still there.
        let r = support::Response::from(agent.get(url("/_matrix/identity/versions")).call());
        assert_eq!(r.status, 200);
    }
    server.shutdown();
}
