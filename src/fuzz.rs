//! The fuzz targets' entry points (issue 25): one function per target, taking any bytes,
//! running the real code on them, and asserting what must hold of the output where that is
//! cheap (round trips, line lengths). The property is that none of them panics, whatever
//! the bytes. `tests/fuzz/` (cargo-fuzz, nightly) drives them for long runs; the test
//! `tests/fuzz_corpus.rs` replays the kept corpus through them on stable in `cargo test`.
//!
//! Each says whether the input reached the end of the path it drives (a route found, a
//! configuration accepted, a message filled, ...), so that the corpus test can tell a
//! corpus that exercises the code from one that only ever returns early.
//!
//! Not part of the server: nothing in `src/` calls this module.

use crate::config;
use crate::crypto::canonical::canonical_json as canonical;
use crate::federation::xmatrix;
use crate::http::{self, ApiError, Reply, Request, Router};
use crate::notify::lines::LINE_MAX;
use crate::notify::template::{self, Placeholders};
use crate::threepid::{self, Medium};
use serde::Deserialize;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

/// Largest body the request target reads (the server's default is 1 MiB; smaller here so
/// that a declared length is refused as often as it is read).
const FUZZ_MAX_BODY: usize = 64 * 1024;

/// At most this many pipelined requests per input.
const MAX_PIPELINED: usize = 8;

/// The HTTP path of a request before its handler: tiny_http's strict framing of the bytes
/// (head, body, pipelined requests after it), our router over every route of both API
/// versions, the client address (`X-Forwarded-For` from a trusted proxy), then what
/// handlers extract: the body as JSON (untyped and as the spec's request bodies), query
/// parameters, headers, an `X-Matrix` authorization; every error rendered as a reply.
/// Reached: a request was routed to a handler.
pub fn request(data: &[u8]) -> bool {
    let router = api_router();
    let trusted = trusted_proxies();
    let mut rest = data;
    let mut routed = false;
    for _ in 0..MAX_PIPELINED {
        let read = match tiny_http::read_request(rest, FUZZ_MAX_BODY) {
            Ok(read) => read,
            Err(Some(rejection)) => {
                render(ApiError::BadRequest(format!("{rejection:?}")));
                break;
            }
            Err(None) => break,
        };
        assert!(read.rest.len() < rest.len(), "a request read no bytes");
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        match http::route_read(router, trusted, &read, peer, extract) {
            Ok(extracted) => {
                routed = true;
                if let Err(error) = extracted {
                    render(error);
                }
            }
            Err(error) => render(error),
        }
        rest = read.rest;
    }
    routed
}

/// What handlers take from a request (`Request::json` into the spec's body shapes).
fn extract(pattern: &str, request: &Request) -> Result<(), ApiError> {
    let _ = request.query("sid");
    let _ = request.require_query("client_secret");
    let _ = request.param("keyId");
    if let Some(auth) = request.header("Authorization") {
        let _ = xmatrix::parse(auth);
    }
    let untyped = request.json::<Value>();
    if let Ok(value) = &untyped {
        assert!(value.is_object(), "{pattern}: a body that is not an object");
    }
    let typed = match pattern.rsplit('/').next().unwrap_or_default() {
        "bulk_lookup" => request.json::<BulkLookup>().map(drop),
        "lookup" => request.json::<HashedLookup>().map(drop),
        "requestToken" => request.json::<EmailRequest>().map(drop),
        "submitToken" => request.json::<SubmitToken>().map(drop),
        "bind" | "unbind" => request.json::<Bind>().map(drop),
        _ => untyped.map(drop),
    };
    if let Err(error) = &typed {
        assert!(
            matches!(
                error,
                ApiError::NotJson(_) | ApiError::BadJson(_) | ApiError::MissingParams(_)
            ),
            "{pattern}: JSON extraction gave {error:?}"
        );
    }
    typed
}

/// An error as the client gets it: status, errcode, message (a body serialised).
fn render(error: ApiError) {
    let reply = Reply::from(error);
    assert!((400..600).contains(&reply.status), "{}", reply.status);
}

#[derive(Deserialize)]
#[allow(dead_code)] // read by serde, for the shape
struct BulkLookup {
    threepids: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct HashedLookup {
    algorithm: String,
    pepper: String,
    addresses: Vec<String>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct EmailRequest {
    client_secret: String,
    email: String,
    send_attempt: Value,
    next_link: Option<String>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct SubmitToken {
    sid: String,
    client_secret: String,
    token: String,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Bind {
    sid: Option<String>,
    client_secret: Option<String>,
    mxid: String,
    threepid: Option<Value>,
}

/// Every route of both API versions, from the embedded defaults.
fn api_router() -> &'static Router<crate::app::App> {
    static ROUTER: OnceLock<Router<crate::app::App>> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let loaded = config::load_str("matrix:\n  domain: example.org\n", "fuzz")
            .unwrap_or_else(|e| panic!("the fuzz target's own config: {e}"));
        crate::api::router(&loaded.config)
    })
}

fn trusted_proxies() -> &'static [crate::cidr::Cidr] {
    static TRUSTED: OnceLock<Vec<crate::cidr::Cidr>> = OnceLock::new();
    TRUSTED.get_or_init(|| {
        ["127.0.0.1", "10.0.0.0/8", "::1"]
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect()
    })
}

/// The YAML loader and every section's validation, from a file's text; a configuration it
/// accepts must give the route table.
///
/// Reached: the configuration was accepted.
pub fn config(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(loaded) = config::load_str(text, "fuzz") else {
        return false;
    };
    let _ = crate::api::router(&loaded.config);
    true
}

/// Canonical JSON of any JSON value: the output is JSON that means the same, and is its own
/// canonical form.
///
/// Reached: the value had a canonical form.
pub fn canonical_json(data: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return false;
    };
    let Ok(text) = canonical(&value) else {
        return false;
    };
    let again: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("canonical JSON that does not parse ({e}): {text}"));
    assert_eq!(
        canonical(&again).as_deref(),
        Ok(text.as_str()),
        "canonical JSON is not its own canonical form"
    );
    assert!(
        same_json(&value, &again),
        "canonical JSON changed the value"
    );
    true
}

/// `a` and `b` hold the same values, numbers compared as canonical JSON writes them
/// (`1e10` is `10000000000`, `-0` is `0`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// The placeholders the notification templates use; the input's values fill them in order.
const PLACEHOLDERS: [&str; 8] = [
    "RECIPIENT_ADDRESS",
    "DOMAIN_PRETTY",
    "VALIDATION_LINK",
    "VALIDATION_TOKEN",
    "FROM_NAME",
    "FROM_EMAIL",
    "SENDER_NAME",
    "ROOM_NAME",
];

/// Template filling and MIME encoding (the notification path): the input is a template,
/// then NUL-separated values of `PLACEHOLDERS`. A filled e-mail is ready for SMTP: CRLF
/// line ends only, no line over 998 octets, and no header the template did not have but
/// those the generator adds (`GENERATED_HEADERS`): a value never adds a header line.
///
/// Reached: an e-mail was filled.
pub fn template(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let template = parts.next().unwrap_or_default();
    let mut values = Placeholders::new();
    for (name, value) in PLACEHOLDERS.iter().zip(parts) {
        values.set(name, value);
    }
    let _ = template::fill_text(template, &values);
    let _ = template::fill_html(template, &values);
    let Ok(message) = template::fill_email(template, &values, 1_765_000_000, "example.org") else {
        return false;
    };
    check_message(template, &message);
    true
}

/// The headers the generator may add to a template's own: `Date` and `Message-ID` when it
/// has none, the transfer encoding of a body it had to re-encode, and `Content-Type` with a
/// charset for a text it sends as UTF-8 without one declared (`mime.rs`).
const GENERATED_HEADERS: [&str; 4] = [
    "date",
    "message-id",
    "content-transfer-encoding",
    "content-type",
];

fn check_message(template: &str, message: &str) {
    let body = message
        .strip_suffix("\r\n")
        .unwrap_or_else(|| panic!("a message that does not end with CRLF"));
    let lines: Vec<&str> = body.split("\r\n").collect();
    for (n, line) in lines.iter().enumerate() {
        assert!(
            !line.contains(['\r', '\n']),
            "line {}: a bare CR or LF",
            n + 1
        );
        assert!(
            line.len() <= LINE_MAX,
            "line {}: {} octets",
            n + 1,
            line.len()
        );
    }
    let template_head: Vec<String> = template
        .lines()
        .take_while(|l| !l.trim_end_matches('\r').is_empty())
        .filter_map(header_name)
        .collect();
    for line in lines.iter().take_while(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let name = header_name(line).unwrap_or_else(|| panic!("not a header line: {line:?}"));
        assert!(
            GENERATED_HEADERS.contains(&name.as_str()) || template_head.contains(&name),
            "a header the template did not have: {line:?}"
        );
    }
}

/// The lower-case name of a header line, if it is one (not a continuation).
fn header_name(line: &str) -> Option<String> {
    if line.starts_with([' ', '\t']) {
        return None;
    }
    let (name, _) = line.split_once(':')?;
    Some(name.trim().to_ascii_lowercase())
}

/// 3PID address normalisation: the first byte picks how, the rest is the address. E-mail
/// normalisation is idempotent and keeps an `@`; an address to send to is plain ASCII
/// without spaces or controls; an msisdn is digits.
///
/// Reached: the address was a valid one.
pub fn address(data: &[u8]) -> bool {
    let Some((&how, rest)) = data.split_first() else {
        return false;
    };
    let text = String::from_utf8_lossy(rest);
    match how % 4 {
        0 => {
            let to = threepid::email_to_send_to(&text);
            if let Some(to) = &to {
                assert!(
                    to.bytes().all(|b| b.is_ascii_graphic()),
                    "an address to send to with a space, a control or non-ASCII: {to:?}"
                );
            }
            let email = threepid::email(&text);
            if let Some(email) = &email {
                assert!(email.contains('@'));
                assert_eq!(
                    threepid::email(email).as_ref(),
                    Some(email),
                    "not idempotent"
                );
            }
            email.is_some()
        }
        1 => {
            let region = region(&text);
            let _ = threepid::address(Medium::Email, &text, region);
            let digits = threepid::address(Medium::Msisdn, &text, region);
            if let Some(digits) = &digits {
                assert!(
                    is_digits(digits),
                    "an msisdn that is not digits: {digits:?}"
                );
                let _ = threepid::calling_code(digits);
            }
            digits.is_some()
        }
        2 => {
            let split = text.char_indices().nth(2).map_or(text.len(), |(i, _)| i);
            let (country, number) = text.split_at(split);
            let digits = threepid::msisdn_in(number, country);
            if let Some(digits) = &digits {
                assert!(
                    is_digits(digits),
                    "an msisdn that is not digits: {digits:?}"
                );
            }
            digits.is_some()
        }
        _ => {
            let code = threepid::calling_code(&text);
            crate::user_id::UserId::parse(&text).is_some() || code.is_some()
        }
    }
}

/// A region from the input's first two letters, as `threepid.msisdn.defaultRegion` gives one.
fn region(text: &str) -> Option<phonenumber::country::Id> {
    text.get(..2)?.to_ascii_uppercase().parse().ok()
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `Authorization: X-Matrix …` as a homeserver signs its requests: the parsed parts, and a
/// header written from them back parsed to the same parts when they can be written plainly.
///
/// Reached: the header had the parts.
pub fn xmatrix(data: &[u8]) -> bool {
    let Ok(header) = std::str::from_utf8(data) else {
        return false;
    };
    let Some(parsed) = xmatrix::parse(header) else {
        return false;
    };
    let plain = |v: &str| !v.is_empty() && !v.contains([',', '"', '=']) && v.trim() == v;
    let parts = [&parsed.origin, &parsed.key, &parsed.sig];
    if parts.iter().all(|v| plain(v)) && parsed.destination.as_deref().is_none_or(plain) {
        let mut again = format!(
            "X-Matrix origin={},key=\"{}\",sig=\"{}\"",
            parsed.origin, parsed.key, parsed.sig
        );
        if let Some(d) = &parsed.destination {
            again.push_str(&format!(",destination=\"{d}\""));
        }
        assert_eq!(xmatrix::parse(&again), Some(parsed), "{again:?}");
    }
    true
}
