//! The Synapse REST auth module's endpoint, `POST /_matrix-internal/identity/v1/
//! check_credentials`, against the static store and a real slapd: right and wrong
//! passwords, who may ask, and the rate limit.

mod support;

use serde_json::{json, Value};
use support::services::{ensure_up, get};
use support::{Mxisd, Response};

const PATH: &str = "/_matrix-internal/identity/v1/check_credentials";

fn check(s: &Mxisd, id: &str, password: &str) -> Response {
    s.post(
        PATH,
        &json!({"user": {"id": id, "password": password}}).to_string(),
    )
}

fn ldap_and_static(extra: &str) -> String {
    format!(
        "ldap:\n  enabled: true\n  connection:\n    host: '127.0.0.1'\n    port: {}\n    bindDn: '{}'\n    bindPassword: '{}'\n    baseDNs: ['ou=people,{}']\n    timeout: 2\nmemory:\n  identities:\n    - username: frank\n      password: frankpw\n      displayName: Frank\n      threepids:\n        - medium: email\n          address: frank@example.org\n{extra}",
        get("LDAP_PORT"),
        get("LDAP_ADMIN_DN"),
        get("LDAP_ADMIN_PASSWORD"),
        get("LDAP_BASE"),
    )
}

#[test]
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
