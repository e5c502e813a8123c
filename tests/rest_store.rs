//! The REST identity store against a loopback backend speaking mxisd's wire format.

use crate::support;
use crate::support::fake_homeserver::{
    federation_config, v2_token, FakeHomeserver, FakeRestBackend,
};
use crate::support::{Mxisd, Response};
use serde_json::json;

fn config(backend: &FakeRestBackend) -> String {
    format!(
        "rest:\n  enabled: true\n  host: 'http://127.0.0.1:{}'\n  timeout: 2\n{}",
        backend.port,
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    )
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn lookups_and_logins_through_the_backend() {
    let backend = FakeRestBackend::start(false);
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Mxisd::start(&config(&backend));
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=email&address=Erin%40example.org");
    assert_eq!(r.json()["mxid"], "@erin:example.org", "{}", r.text);
    let bulk = json!({"threepids": [["msisdn", "15551230000"], ["email", "nobody@example.org"]]});
    let r = s.post(support::V1_BULK_LOOKUP, &bulk.to_string());
    assert_eq!(
        r.json(),
        json!({"threepids": [["msisdn", "15551230000", "@erin:example.org"]]})
    );

    // It cannot list, so v2 answers it with the `none` algorithm.
    let token = v2_token(&s, &hs, "reader");
    let pepper = s
        .get(&format!(
            "/_matrix/identity/v2/hash_details?access_token={token}"
        ))
        .json()["lookup_pepper"]
        .clone();
    let body =
        json!({"algorithm": "none", "pepper": pepper, "addresses": ["erin@example.org email"]});
    let r = Response::from(
        support::agent()
            .post(s.url("/_matrix/identity/v2/lookup"))
            .header("Authorization", &format!("Bearer {token}"))
            .send(body.to_string()),
    );
    assert_eq!(
        r.json(),
        json!({"mappings": {"erin@example.org email": "@erin:example.org"}})
    );

    let login = |password: &str| {
        s.post(
            "/_matrix-internal/identity/v1/check_credentials",
            &json!({"user": {"id": "@erin:example.org", "password": password}}).to_string(),
        )
        .json()
    };
    let ok = login("erinpw");
    assert_eq!(ok["auth"]["success"], true);
    assert_eq!(ok["auth"]["id"]["value"], "@erin:example.org");
    assert_eq!(ok["auth"]["profile"]["display_name"], "Erin");
    assert_eq!(login("nope"), json!({"auth": {"success": false}}));
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_failing_backend_is_503() {
    let backend = FakeRestBackend::start(true);
    let s = Mxisd::start(&config(&backend));
    let body = s
        .get("/_matrix/identity/api/v1/lookup?medium=email&address=erin%40example.org")
        .assert_error(503, "M_UNKNOWN");
    assert!(body["error"].as_str().unwrap().contains("rest"), "{body}");
}

#[test]
fn endpoints_may_be_full_urls_and_bulk_may_be_disabled() {
    // As mxisd's docs allow: full URLs (so no `host`), and an empty bulk endpoint
    // ("disabled"), which the backend does not have: bulk lookups ask one by one.
    let backend = FakeRestBackend::start(false);
    let base = format!("http://127.0.0.1:{}/_mxisd/backend/api/v1", backend.port);
    let s = Mxisd::start(&format!(
        "rest:\n  enabled: true\n  timeout: 2\n  endpoints:\n    auth: '{base}/auth/login'\n    identity:\n      single: '{base}/identity/single'\n      bulk: ''\n"
    ));
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=email&address=erin%40example.org");
    assert_eq!(r.json()["mxid"], "@erin:example.org", "{}", r.text);
    let bulk = json!({"threepids": [["msisdn", "15551230000"], ["email", "erin@example.org"], ["email", "nobody@example.org"]]});
    let r = s.post(support::V1_BULK_LOOKUP, &bulk.to_string());
    assert_eq!(r.status, 200, "{}", r.text);
    let found = r.json()["threepids"].as_array().unwrap().clone();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.contains(&json!(["msisdn", "15551230000", "@erin:example.org"])));
    let ok = s
        .post(
            "/_matrix-internal/identity/v1/check_credentials",
            &json!({"user": {"id": "@erin:example.org", "password": "erinpw"}}).to_string(),
        )
        .json();
    assert_eq!(ok["auth"]["success"], true);
}
