//! The discovery and public-key endpoints, and the error shapes, over HTTP against the real
//! binary.

use crate::support;
use crate::support::{raw_exchange, Mxisd};
use ed25519_dalek::VerifyingKey;
use mxisd::crypto::{b64, verify_json, SigningKeys};
use serde_json::json;
use std::io::{Read, Write};

const V1: &str = "/_matrix/identity/api/v1";
const V2: &str = "/_matrix/identity/v2";

#[test]
fn versions_and_hello() {
    let s = Mxisd::start("");
    let r = s.get("/_matrix/identity/versions");
    assert_eq!(r.status, 200);
    let versions = r.json()["versions"].as_array().unwrap().clone();
    assert!(
        versions.contains(&json!("r0.3.0")) && versions.contains(&json!("v1.1")),
        "{versions:?}"
    );
    for prefix in [V1, V2] {
        let r = s.get(prefix);
        assert_eq!((r.status, r.json()), (200, json!({})), "{prefix}");
    }
}

#[test]
fn served_public_key_verifies_a_signature_made_with_the_key_file() {
    let s = Mxisd::start("");
    let served = s.get(&format!("{V2}/pubkey/ed25519:0"));
    assert_eq!(served.status, 200);
    let public = served.json()["public_key"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get(&format!("{V1}/pubkey/ed25519%3A0")).json()["public_key"],
        public.as_str()
    );

    // Sign with the key file the server created, verify with what it served.
    let keys = SigningKeys::load_or_create(&s.dir.join("keys")).unwrap();
    let mut doc = json!({"mxid": "@alice:example.org", "token": "abc"});
    keys.sign("example.org", &mut doc).unwrap();
    let bytes: [u8; 32] = b64::decode(&public).unwrap().try_into().unwrap();
    verify_json(
        &doc,
        "example.org",
        "ed25519:0",
        &VerifyingKey::from_bytes(&bytes).unwrap(),
    )
    .unwrap();

    s.get(&format!("{V2}/pubkey/ed25519:7"))
        .assert_error(404, "M_NOT_FOUND");
    s.get(&format!("{V2}/pubkey/curve:0"))
        .assert_error(404, "M_NOT_FOUND");
}

#[test]
fn pubkey_validity() {
    let s = Mxisd::start("");
    let public = s.get(&format!("{V2}/pubkey/ed25519:0")).json()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let encoded = public.replace('+', "%2B").replace('/', "%2F");
    for prefix in [V1, V2] {
        let r = s.get(&format!("{prefix}/pubkey/isvalid?public_key={encoded}"));
        assert_eq!((r.status, r.json()), (200, json!({"valid": true})));
        // An unencoded '+' arrives as a space: still our key.
        let r = s.get(&format!(
            "{prefix}/pubkey/isvalid?public_key={}",
            public.replace('/', "%2F")
        ));
        assert_eq!(r.json(), json!({"valid": true}), "{public}");
        let other = b64::encode(&[7u8; 32]);
        let r = s.get(&format!(
            "{prefix}/pubkey/isvalid?public_key={}",
            other.replace('+', "%2B").replace('/', "%2F")
        ));
        assert_eq!(r.json(), json!({"valid": false}));
        s.get(&format!("{prefix}/pubkey/isvalid"))
            .assert_error(400, "M_MISSING_PARAMS");
        s.get(&format!("{prefix}/pubkey/ephemeral/isvalid"))
            .assert_error(400, "M_MISSING_PARAMS");
        let r = s.get(&format!(
            "{prefix}/pubkey/ephemeral/isvalid?public_key={encoded}"
        ));
        assert_eq!((r.status, r.json()), (200, json!({"valid": false})));
    }
}

#[test]
fn unknown_paths_and_methods() {
    let s = Mxisd::start("");
    let body = s
        .get("/_matrix/identity/v2/nothing/here")
        .assert_error(404, "M_UNRECOGNIZED");
    assert_eq!(body["error"], "Unrecognized request");
    s.get("/").assert_error(404, "M_UNRECOGNIZED");
    let r = support::Response::from(
        support::agent()
            .delete(s.url(&format!("{V2}/pubkey/isvalid")))
            .call(),
    );
    r.assert_error(405, "M_UNRECOGNIZED");
    s.post(&format!("{V2}/pubkey/ed25519:0"), "{}")
        .assert_error(405, "M_UNRECOGNIZED");
}

#[test]
fn cors_on_every_answer_and_preflight() {
    let s = Mxisd::start("");
    for r in [s.get("/_matrix/identity/versions"), s.get("/nope")] {
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert!(r
            .header("access-control-allow-headers")
            .unwrap()
            .contains("Authorization"));
        assert!(r
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST"));
    }
    let r = support::Response::from(
        support::agent()
            .options(s.url(&format!("{V2}/lookup")))
            .call(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn json_body_errors() {
    let s = Mxisd::start("");
    let path = format!("{V1}/bulk_lookup");
    s.post(&path, "this is not json")
        .assert_error(400, "M_NOT_JSON");
    s.post(&path, "").assert_error(400, "M_NOT_JSON");
    s.post(&path, "[1,2]").assert_error(400, "M_BAD_JSON");
    s.post(&path, r#"{"threepids":"alice@example.org"}"#)
        .assert_error(400, "M_BAD_JSON");
    s.post(&path, r#"{"threepids":[["email"]]}"#)
        .assert_error(400, "M_BAD_JSON");
    let body = s
        .post(&path, r#"{"other":1}"#)
        .assert_error(400, "M_MISSING_PARAMS");
    assert!(
        body["error"].as_str().unwrap().contains("threepids"),
        "{body}"
    );
    // Well-formed: no identity store knows anyone yet.
    let r = s.post(
        &path,
        r#"{"threepids":[["email","alice@example.org"],["msisdn","447700900001"]]}"#,
    );
    assert_eq!((r.status, r.json()), (200, json!({"threepids": []})));
    let r = s.get(&format!(
        "{V1}/lookup?medium=email&address=alice%40example.org"
    ));
    assert_eq!((r.status, r.json()), (200, json!({})));
    s.get(&format!("{V1}/lookup?medium=email"))
        .assert_error(400, "M_MISSING_PARAMS");
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let s = Mxisd::start("");
    let mut conn = s.connect();
    for _ in 0..3 {
        conn.write_all(b"GET /_matrix/identity/versions HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"versions\""), "{answer}");
    }
}

#[test]
fn access_log_has_route_status_and_time_but_no_addresses() {
    let s = Mxisd::start("");
    s.get(&format!(
        "{V1}/lookup?medium=email&address=secret.person%40example.org"
    ));
    s.get(&format!("{V2}/pubkey/ed25519:0"));
    assert!(
        s.wait_for_log("GET /_matrix/identity/v2/pubkey/{keyId} 200"),
        "{}",
        s.log()
    );
    assert!(
        s.wait_for_log("GET /_matrix/identity/api/v1/lookup 200"),
        "{}",
        s.log()
    );
    let log = s.log();
    assert!(!log.contains("secret.person"), "{log}");
    assert!(!log.contains("medium=email"), "{log}");
}

#[test]
fn v1_can_be_turned_off() {
    let dir = support::TempDir::new();
    let keys = dir.join("keys");
    let config = dir.join("mxisd.yaml");
    let text = support::config_text(&dir, &keys, "").replace(
        "matrix:\n  domain: example.org\n",
        "matrix:\n  domain: example.org\n  v1: false\n",
    );
    std::fs::write(&config, text).unwrap();
    let s = Mxisd::spawn(dir, &config);
    s.get(&format!("{V1}/pubkey/ed25519:0"))
        .assert_error(404, "M_UNRECOGNIZED");
    s.get(&format!("{V1}/lookup?medium=email&address=a%40b.c"))
        .assert_error(404, "M_UNRECOGNIZED");
    assert_eq!(s.get(&format!("{V2}/pubkey/ed25519:0")).status, 200);
}

#[test]
fn malformed_requests_get_an_error_and_the_server_lives_on() {
    let s = Mxisd::start("");
    let answer = raw_exchange(&s, b"THIS IS NOT HTTP\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let huge_header = format!(
        "GET /_matrix/identity/versions HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let answer = raw_exchange(&s, huge_header.as_bytes());
    assert!(!answer.contains("200 OK"), "{answer}");
    assert_eq!(s.get("/_matrix/identity/versions").status, 200);
}
