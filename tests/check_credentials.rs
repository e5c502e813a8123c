//! The Synapse REST auth module's endpoint, `POST /_matrix-internal/identity/v1/
//! check_credentials`, against the static store and a real slapd: right and wrong
//! passwords, who may ask, and the rate limit.

use crate::support::services::{ensure_up, get};
use crate::support::{raw_exchange, status_line, Mxisd, Response};
use serde_json::{json, Value};

const PATH: &str = "/_matrix-internal/identity/v1/check_credentials";

fn check(s: &Mxisd, id: &str, password: &str) -> Response {
    s.post(
        PATH,
        &json!({"user": {"id": id, "password": password}}).to_string(),
    )
}

fn ldap_and_static(extra: &str) -> String {
    format!(
        "ldap:\n  enabled: true\n  connection:\n    host: '127.0.0.1'\n    port: {}\n    bindDn: '{}'\n    bindPassword: '{}'\n    baseDNs: ['ou=people,{}']\n    timeout: 2\n  attribute:\n    uid:\n      value: uid\nmemory:\n  enabled: true\n  identities:\n    - username: frank\n      password: frankpw\n      displayName: Frank\n      threepids:\n        - medium: email\n          address: frank@example.org\n    - username: nona\n      password: nonapw\n{extra}",
        get("LDAP_PORT"),
        get("LDAP_ADMIN_DN"),
        get("LDAP_ADMIN_PASSWORD"),
        get("LDAP_BASE"),
    )
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn ldap_bind_and_static_store_passwords() {
    ensure_up();
    let s = Mxisd::start(&ldap_and_static(""));
    let r = check(&s, "@alice:example.org", "alicepw");
    assert_eq!(r.status, 200, "{}", r.text);
    let auth = r.json()["auth"].clone();
    assert_eq!(auth["success"], true);
    assert_eq!(
        auth["id"],
        json!({"type": "mxid", "value": "@alice:example.org"})
    );
    assert_eq!(auth["profile"]["display_name"], "Alice Example");
    let pids = auth["profile"]["three_pids"].as_array().unwrap();
    assert!(
        pids.contains(&json!({"medium": "email", "address": "alice@example.org"})),
        "{auth}"
    );
    assert!(
        pids.contains(&json!({"medium": "msisdn", "address": "442079460001"})),
        "{auth}"
    );

    let failed = json!({"auth": {"success": false}});
    assert_eq!(check(&s, "@alice:example.org", "wrong").json(), failed);
    // An empty password would be an anonymous bind: never a login.
    assert_eq!(check(&s, "@alice:example.org", "").json(), failed);
    assert_eq!(check(&s, "@nobody:example.org", "x").json(), failed);
    assert_eq!(check(&s, "@alice:elsewhere.org", "alicepw").json(), failed);
    assert_eq!(check(&s, "@*:example.org", "alicepw").json(), failed);

    let frank = check(&s, "@frank:example.org", "frankpw").json();
    assert_eq!(frank["auth"]["success"], true);
    assert_eq!(
        frank["auth"]["profile"]["three_pids"],
        json!([{"medium": "email", "address": "frank@example.org"}])
    );
    assert_eq!(check(&s, "@frank:example.org", "frankpW").json(), failed);
    s.post(PATH, r#"{"user":{"id":"@frank:example.org"}}"#)
        .assert_error(400, "M_MISSING_PARAMS");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn only_allowed_addresses_may_ask() {
    ensure_up();
    let s = Mxisd::start(&ldap_and_static(
        "internal:\n  allowedCidr: ['10.0.0.0/8']\n",
    ));
    check(&s, "@alice:example.org", "alicepw").assert_error(403, "M_UNAUTHORIZED");
    assert!(
        s.wait_for_log("check_credentials refused to 127.0.0.1"),
        "{}",
        s.log()
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn attempts_are_limited_per_user() {
    ensure_up();
    let s = Mxisd::start(&ldap_and_static("internal:\n  rateLimit: 3\n"));
    for _ in 0..3 {
        assert_eq!(
            check(&s, "@frank:example.org", "guess").json()["auth"]["success"],
            false
        );
    }
    let body: Value =
        check(&s, "@frank:example.org", "frankpw").assert_error(429, "M_LIMIT_EXCEEDED");
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0);
    // Another user is not affected.
    assert_eq!(
        check(&s, "@alice:example.org", "alicepw").json()["auth"]["success"],
        true
    );
}

/// A password check for frank sent with these `X-Forwarded-For` headers: the status.
fn forwarded_check(s: &Mxisd, forwarded_for: &[&str]) -> String {
    let body = json!({"user": {"id": "@frank:example.org", "password": "frankpw"}}).to_string();
    let headers: String = forwarded_for
        .iter()
        .map(|v| format!("X-Forwarded-For: {v}\r\n"))
        .collect();
    let request = format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(s, request.as_bytes());
    status_line(&answer).to_owned()
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_local_proxy_not_listed_as_trusted_grants_its_clients_nothing() {
    ensure_up();
    // nginx on the same host, http.trustedProxies left empty: its clients are not loopback.
    let s = Mxisd::start(&ldap_and_static(""));
    assert!(forwarded_check(&s, &[]).starts_with("HTTP/1.1 200"));
    assert!(forwarded_check(&s, &["203.0.113.9"]).starts_with("HTTP/1.1 403"));
    assert!(forwarded_check(&s, &["127.0.0.1"]).starts_with("HTTP/1.1 403"));
    assert!(
        s.wait_for_log("X-Forwarded-For from 127.0.0.1, which is not in http.trustedProxies"),
        "{}",
        s.log()
    );
    assert!(
        s.wait_for_log("check_credentials refused to unknown"),
        "{}",
        s.log()
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn forwarded_addresses_fail_closed() {
    ensure_up();
    let s = Mxisd::start(&ldap_and_static("http:\n  trustedProxies: ['127.0.0.1']\n"));
    // Through the trusted proxy, a loopback client may ask; an internet client may not.
    assert!(forwarded_check(&s, &["127.0.0.1"]).starts_with("HTTP/1.1 200"));
    assert!(forwarded_check(&s, &["127.0.0.1:43210"]).starts_with("HTTP/1.1 200"));
    assert!(forwarded_check(&s, &["203.0.113.9"]).starts_with("HTTP/1.1 403"));
    // A hop with a port is that address; one that is no address is an unknown client.
    assert!(forwarded_check(&s, &["1.2.3.4:5678"]).starts_with("HTTP/1.1 403"));
    assert!(forwarded_check(&s, &["unknown"]).starts_with("HTTP/1.1 403"));
    assert!(forwarded_check(&s, &["127.0.0.1, unknown"]).starts_with("HTTP/1.1 403"));
    // Every header counts, the last nearest: the client is 203.0.113.9, not loopback.
    assert!(forwarded_check(&s, &["127.0.0.1", "203.0.113.9"]).starts_with("HTTP/1.1 403"));
    assert!(forwarded_check(&s, &["203.0.113.9", "127.0.0.1"]).starts_with("HTTP/1.1 403"));
}

/// The answer Synapse's module reads: `mxid` beside `id`, no `display_name` (never a
/// null) for a user without one; and a login by e-mail address, which the stores resolve.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn answers_carry_the_mxid_no_nulls_and_logins_by_address_work() {
    ensure_up();
    let s = Mxisd::start(&ldap_and_static("internal:\n  rateLimit: 2\n"));
    let nona = check(&s, "@nona:example.org", "nonapw").json();
    assert_eq!(
        nona,
        json!({"auth": {"success": true, "mxid": "@nona:example.org",
            "id": {"type": "mxid", "value": "@nona:example.org"},
            "profile": {"three_pids": []}}})
    );
    let by_address = |address: &str, password: &str| {
        s.post(
            PATH,
            &json!({"user": {"medium": "email", "address": address, "password": password}})
                .to_string(),
        )
    };
    let frank = by_address("Frank@Example.org", "frankpw").json();
    assert_eq!(frank["auth"]["mxid"], "@frank:example.org", "{frank}");
    assert_eq!(frank["auth"]["profile"]["display_name"], "Frank");
    let alice = by_address("alice@example.org", "alicepw").json();
    assert_eq!(alice["auth"]["mxid"], "@alice:example.org", "{alice}");
    // A user id typed with capitals is that user (the same limit too: alice's 2 are used).
    let capitals = check(&s, "@Alice:example.org", "alicepw").json();
    assert_eq!(capitals["auth"]["mxid"], "@alice:example.org", "{capitals}");
    check(&s, "@alice:example.org", "alicepw").assert_error(429, "M_LIMIT_EXCEEDED");
    let failed = json!({"auth": {"success": false}});
    assert_eq!(by_address("frank@example.org", "wrong").json(), failed);
    assert_eq!(by_address("nobody@example.org", "x").json(), failed);
    // A login by address counts as the user it names: frank has used his 2 checks.
    check(&s, "@frank:example.org", "frankpw").assert_error(429, "M_LIMIT_EXCEEDED");
    s.post(PATH, r#"{"user":{"medium":"email","password":"x"}}"#)
        .assert_error(400, "M_MISSING_PARAMS");
    s.post(
        PATH,
        r#"{"user":{"medium":"fax","address":"1","password":"x"}}"#,
    )
    .assert_error(400, "M_INVALID_PARAM");
}

/// Guesses at addresses no store knows are limited per address (its case folded), each
/// address on its own: one address guessed to its limit does not stop another.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn unknown_addresses_are_limited_each_on_its_own() {
    ensure_up();
    let s = Mxisd::start(&ldap_and_static("internal:\n  rateLimit: 2\n"));
    let by_address = |address: &str| {
        s.post(
            PATH,
            &json!({"user": {"medium": "email", "address": address, "password": "x"}}).to_string(),
        )
    };
    let failed = json!({"auth": {"success": false}});
    assert_eq!(by_address("ghost-a@example.org").json(), failed);
    assert_eq!(by_address("Ghost-A@Example.org").json(), failed);
    by_address("ghost-a@example.org").assert_error(429, "M_LIMIT_EXCEEDED");
    // Another unknown address has its own count.
    assert_eq!(by_address("ghost-b@example.org").json(), failed);
    assert_eq!(by_address("ghost-b@example.org").json(), failed);
    by_address("GHOST-B@example.org").assert_error(429, "M_LIMIT_EXCEEDED");
}
