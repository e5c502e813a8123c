//! Lookups over HTTP against the real binary, answered by the static (`memory`) store:
//! signed v1 answers, bulk, v2 hashed and plain lookups, and their errors.

use crate::support;
use crate::support::fake_homeserver::{federation_config, v2_token, FakeHomeserver};
use crate::support::{Mxisd, Response};
use ed25519_dalek::VerifyingKey;
use mxisd::crypto::{b64, hash::lookup_hash, verify_json};
use serde_json::{json, Value};

const STORE: &str = "\
memory:
  enabled: true
  identities:
    - username: alice
      password: alicepw
      displayName: Alice
      threepids:
        - medium: email
          address: Alice@Example.org
        - medium: msisdn
          address: '020 7946 0001'
    - username: bob
      threepids:
        - medium: email
          address: 'Strauß@example.org'
lookup:
  defaultRegion: GB
  maxAddresses: 3
";

fn server() -> Mxisd {
    Mxisd::start(&format!(
        "{STORE}{}",
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    ))
}

fn public_key(s: &Mxisd) -> VerifyingKey {
    let key = s.get("/_matrix/identity/v2/pubkey/ed25519:0").json()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    VerifyingKey::from_bytes(&b64::decode(&key).unwrap().try_into().unwrap()).unwrap()
}

fn post_v2(s: &Mxisd, token: &str, path: &str, body: &Value) -> Response {
    Response::from(
        support::agent()
            .post(s.url(path))
            .header("Authorization", &format!("Bearer {token}"))
            .send(body.to_string()),
    )
}

/// The Matrix ID a v1 lookup, a v2 `none` and a v2 `sha256` lookup each find for every
/// (address, medium) of `asked`, asserting the three agree (a hashed lookup answers what a
/// single lookup answers); `s` must have its hash index built.
pub(crate) fn agreeing_lookups(
    s: &Mxisd,
    token: &str,
    asked: &[(&str, &str)],
) -> Vec<Option<String>> {
    let pepper = s.pepper(token);
    let v2 = |algorithm: &str, addresses: &[String]| {
        let body = json!({"algorithm": algorithm, "pepper": pepper, "addresses": addresses});
        let r = post_v2(s, token, "/_matrix/identity/v2/lookup", &body);
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["mappings"].clone()
    };
    let plain: Vec<String> = asked.iter().map(|(a, m)| format!("{a} {m}")).collect();
    let hashes: Vec<String> = asked
        .iter()
        .map(|(a, m)| lookup_hash(a, m, &pepper))
        .collect();
    let (by_none, by_sha256) = (v2("none", &plain), v2("sha256", &hashes));
    let mxid = |v: &Value| v.as_str().map(str::to_owned);
    asked
        .iter()
        .enumerate()
        .map(|(i, (address, medium))| {
            // Addresses of letters, digits and `@.+-`: `@` and `+` encoded.
            let address_q = address.replace('@', "%40").replace('+', "%2B");
            let path =
                format!("/_matrix/identity/api/v1/lookup?medium={medium}&address={address_q}");
            let single = mxid(&s.get(&path).json()["mxid"]);
            let (none, sha256) = (mxid(&by_none[&plain[i]]), mxid(&by_sha256[&hashes[i]]));
            let all = format!("{address}: v1 {single:?}, none {none:?}, sha256 {sha256:?}");
            assert_eq!(single, none, "{all}");
            assert_eq!(single, sha256, "{all}");
            single
        })
        .collect()
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn v1_lookup_answers_signed_associations() {
    let s = server();
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=email&address=ALICE%40example.ORG");
    assert_eq!(r.status, 200);
    let a = r.json();
    assert_eq!(a["mxid"], "@alice:example.org");
    assert_eq!(a["address"], "ALICE@example.ORG");
    assert_eq!(a["medium"], "email");
    let ts = a["ts"].as_i64().unwrap();
    assert_eq!(a["not_before"].as_i64().unwrap(), ts - 60_000);
    assert_eq!(a["not_after"].as_i64().unwrap(), ts + 300_000);
    verify_json(&a, "example.org", "ed25519:0", &public_key(&s)).unwrap();

    // Phone numbers from the store are E.164; Unicode case folding makes ß match ss.
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=msisdn&address=442079460001");
    assert_eq!(r.json()["mxid"], "@alice:example.org");
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=email&address=STRAUSS%40example.org");
    assert_eq!(r.json()["mxid"], "@bob:example.org");
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=email&address=nobody%40example.org");
    assert_eq!((r.status, r.json()), (200, json!({})));
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn v1_bulk_lookup_answers_what_it_finds_as_asked() {
    let s = server();
    let asked = json!({"threepids": [["email", "alice@EXAMPLE.org"], ["msisdn", "442079460001"], ["email", "nobody@example.org"]]});
    let r = s.post(support::V1_BULK_LOOKUP, &asked.to_string());
    assert_eq!(r.status, 200, "{}", r.text);
    let mut found = r.json()["threepids"].as_array().unwrap().clone();
    found.sort_by_key(|t| t[1].as_str().unwrap().to_owned());
    assert_eq!(
        found,
        vec![
            json!(["msisdn", "442079460001", "@alice:example.org"]),
            json!(["email", "alice@EXAMPLE.org", "@alice:example.org"]),
        ]
    );
    let four = json!({"threepids": [["email","a@b.c"],["email","b@b.c"],["email","c@b.c"],["email","d@b.c"]]});
    s.post(support::V1_BULK_LOOKUP, &four.to_string())
        .assert_error(400, "M_TOO_LARGE");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn v2_hashed_and_plain_lookups() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = server();
    s.wait_hash_index();
    s.get("/_matrix/identity/v2/hash_details")
        .assert_error(401, "M_UNAUTHORIZED");
    let token = v2_token(&s, &hs, "carol");
    let details = Response::from(
        support::agent()
            .get(s.url("/_matrix/identity/v2/hash_details"))
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
    )
    .json();
    let pepper = details["lookup_pepper"].as_str().unwrap().to_owned();
    assert_eq!(pepper.len(), 20);
    assert_eq!(details["algorithms"], json!(["sha256", "none"]));

    let alice = lookup_hash("alice@example.org", "email", &pepper);
    let phone = lookup_hash("442079460001", "msisdn", &pepper);
    let nobody = lookup_hash("nobody@example.org", "email", &pepper);
    let body =
        json!({"algorithm": "sha256", "pepper": pepper, "addresses": [alice, phone, nobody]});
    let r = post_v2(&s, &token, "/_matrix/identity/v2/lookup", &body);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"mappings": {alice.clone(): "@alice:example.org", phone: "@alice:example.org"}})
    );

    let body = json!({"algorithm": "none", "pepper": pepper, "addresses": ["strauss@example.org email", "x@y.z email"]});
    let r = post_v2(&s, &token, "/_matrix/identity/v2/lookup", &body);
    assert_eq!(
        r.json(),
        json!({"mappings": {"strauss@example.org email": "@bob:example.org"}})
    );

    let wrong = json!({"algorithm": "sha256", "pepper": "nope", "addresses": [alice]});
    let err = post_v2(&s, &token, "/_matrix/identity/v2/lookup", &wrong)
        .assert_error(400, "M_INVALID_PEPPER");
    assert_eq!(err["lookup_pepper"], pepper.as_str());
    assert_eq!(err["algorithm"], "sha256");
    let bad = json!({"algorithm": "md5", "pepper": pepper, "addresses": [alice]});
    post_v2(&s, &token, "/_matrix/identity/v2/lookup", &bad).assert_error(400, "M_INVALID_PARAM");
    let many = json!({"algorithm": "sha256", "pepper": pepper, "addresses": ["a", "b", "c", "d"]});
    post_v2(&s, &token, "/_matrix/identity/v2/lookup", &many).assert_error(400, "M_TOO_LARGE");
    let missing = json!({"algorithm": "sha256", "addresses": [alice]});
    post_v2(&s, &token, "/_matrix/identity/v2/lookup", &missing)
        .assert_error(400, "M_MISSING_PARAMS");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_pepper_survives_restarts() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let mut first = server();
    let token = v2_token(&first, &hs, "dave");
    let details = |s: &Mxisd| {
        Response::from(
            support::agent()
                .get(s.url(&format!(
                    "/_matrix/identity/v2/hash_details?access_token={token}"
                )))
                .call(),
        )
        .json()["lookup_pepper"]
            .clone()
    };
    let pepper = details(&first);
    first.signal("TERM");
    first.wait_exit(std::time::Duration::from_secs(20)).unwrap();
    let config = first.dir.join("mxisd.yaml");
    let again = Mxisd::spawn(support::TempDir::new(), &config);
    assert_eq!(details(&again), pepper);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_none_algorithm_can_be_turned_off() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Mxisd::start(&format!(
        "{STORE}hashing:\n  algorithms: ['sha256']\n{}",
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    ));
    let token = v2_token(&s, &hs, "erin");
    let details = s
        .get(&format!(
            "/_matrix/identity/v2/hash_details?access_token={token}"
        ))
        .json();
    assert_eq!(details["algorithms"], json!(["sha256"]));
    let body = json!({"algorithm": "none", "pepper": details["lookup_pepper"], "addresses": ["alice@example.org email"]});
    post_v2(&s, &token, "/_matrix/identity/v2/lookup", &body).assert_error(400, "M_INVALID_PARAM");
}

#[test]
fn the_bulk_lookup_can_be_turned_off() {
    let s = Mxisd::start(&STORE.replace("lookup:\n", "lookup:\n  bulk:\n    enabled: false\n"));
    let bulk = json!({"threepids": [["email", "alice@example.org"]]});
    s.post(support::V1_BULK_LOOKUP, &bulk.to_string())
        .assert_error(404, "M_UNRECOGNIZED");
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=email&address=alice%40example.org");
    assert_eq!(r.json()["mxid"], "@alice:example.org");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn hashing_can_be_turned_off() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Mxisd::start(&format!(
        "{STORE}hashing:\n  enabled: false\n{}",
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    ));
    assert!(s.wait_for_log("no hash index"), "{}", s.log());
    let token = v2_token(&s, &hs, "frank");
    let details = s
        .get(&format!(
            "/_matrix/identity/v2/hash_details?access_token={token}"
        ))
        .json();
    assert_eq!(details["algorithms"], json!(["none"]));
    let pepper = details["lookup_pepper"].as_str().unwrap();
    let hashed = json!({"algorithm": "sha256", "pepper": pepper, "addresses": [lookup_hash("alice@example.org", "email", pepper)]});
    post_v2(&s, &token, "/_matrix/identity/v2/lookup", &hashed)
        .assert_error(400, "M_INVALID_PARAM");
    let plain =
        json!({"algorithm": "none", "pepper": pepper, "addresses": ["alice@example.org email"]});
    assert_eq!(
        post_v2(&s, &token, "/_matrix/identity/v2/lookup", &plain).json(),
        json!({"mappings": {"alice@example.org email": "@alice:example.org"}})
    );
    assert!(!s.log().contains("hash index ready"), "{}", s.log());
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_static_store_may_stay_out_of_the_hash_index() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Mxisd::start(&format!(
        "{}{}",
        STORE.replace(
            "  enabled: true\n",
            "  enabled: true\n  hashEnabled: false\n"
        ),
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    ));
    s.wait_hash_index();
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=email&address=alice%40example.org");
    assert_eq!(r.json()["mxid"], "@alice:example.org");
    let token = v2_token(&s, &hs, "grace");
    let pepper = s.pepper(&token);
    let body = json!({"algorithm": "sha256", "pepper": pepper, "addresses": [lookup_hash("alice@example.org", "email", &pepper)]});
    assert_eq!(
        post_v2(&s, &token, "/_matrix/identity/v2/lookup", &body).json(),
        json!({"mappings": {}})
    );
}
