//! Bind and unbind against the real binary: the signed association, the local binds store
//! seen at once by v1, bulk and hashed lookups, unbinding by session and by a homeserver's
//! X-Matrix signature (a loopback homeserver with a key of the test's own), several
//! instances on PostgreSQL.

use crate::support::fake_homeserver::{federation_config, v2_token, FakeHomeserver};
use crate::support::mail::{link_in, wait_for};
use crate::support::services::{fresh_database, get, pg_connection};
use crate::support::{self, Mxisd, Response, TempDir};
use ed25519_dalek::{SigningKey, VerifyingKey};
use mxisd::crypto::{b64, hash::lookup_hash, sign_json, verify_json};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const V1: &str = "/_matrix/identity/api/v1";
const V2: &str = "/_matrix/identity/v2";

fn config(extra: &str) -> String {
    format!(
        "binds:\n  local:\n    enabled: true\nthreepid:\n  medium:\n    email:\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: 0\n{}{extra}",
        get("SMTP_PORT"),
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    )
}

fn fresh_address() -> String {
    crate::support::mail::fresh_address("bind", "example.org")
}

/// A validated e-mail session on `s`: (sid, client_secret, address).
fn validated(s: &Mxisd) -> (String, String, String) {
    let email = fresh_address();
    let r = s.post(
        &format!("{V1}/validate/email/requestToken"),
        &json!({"client_secret": "bindsecret", "email": email, "send_attempt": 1}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.json()["sid"].as_str().unwrap().to_owned();
    let link = link_in(&wait_for(&email, 1)[0]);
    assert_eq!(
        s.get(link.trim_start_matches("https://example.org")).status,
        200
    );
    (sid, "bindsecret".into(), email)
}

fn with_token(s: &Mxisd, path: &str, token: &str, body: &Value) -> Response {
    Response::from(
        support::agent()
            .post(s.url(path))
            .header("Authorization", &format!("Bearer {token}"))
            .send(body.to_string()),
    )
}

/// What v1, bulk and v2 hashed lookups on `s` say of `email`.
fn lookups(s: &Mxisd, token: &str, email: &str) -> [Option<String>; 3] {
    let v1 = s
        .get(&format!("{V1}/lookup?medium=email&address={email}"))
        .json()["mxid"]
        .as_str()
        .map(str::to_owned);
    let bulk = s
        .post(
            &format!("{V1}/bulk_lookup"),
            &json!({"threepids": [["email", email]]}).to_string(),
        )
        .json()["threepids"][0][2]
        .as_str()
        .map(str::to_owned);
    let details = Response::from(
        support::agent()
            .get(s.url(&format!("{V2}/hash_details")))
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
    )
    .json();
    let pepper = details["lookup_pepper"].as_str().unwrap();
    let hash = lookup_hash(email, "email", pepper);
    let body = json!({"algorithm": "sha256", "pepper": pepper, "addresses": [hash]});
    let r = with_token(s, &format!("{V2}/lookup"), token, &body);
    assert_eq!(r.status, 200, "{}", r.text);
    let v2 = r.json()["mappings"][&hash].as_str().map(str::to_owned);
    [v1, bulk, v2]
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn bind_is_seen_by_every_lookup_at_once_and_unbind_by_session_removes_it() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Mxisd::start(&config(""));
    s.wait_hash_index();
    let token = v2_token(&s, &hs, "erin");
    let (sid, secret, email) = validated(&s);
    let mxid = "@erin:example.org";
    assert_eq!(lookups(&s, &token, &email), [None, None, None]);

    let r = s.post(
        &format!("{V1}/3pid/bind"),
        &json!({"sid": sid, "client_secret": secret, "mxid": mxid}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let association = r.json();
    assert_eq!(association["address"], email.to_lowercase());
    assert_eq!(association["mxid"], mxid);
    let ts = association["ts"].as_i64().unwrap();
    assert!(association["not_after"].as_i64().unwrap() > ts + 50 * 365 * 24 * 3600 * 1000);
    let key = s.get(&format!("{V2}/pubkey/ed25519:0")).json()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = VerifyingKey::from_bytes(&b64::decode(&key).unwrap().try_into().unwrap()).unwrap();
    verify_json(&association, "example.org", "ed25519:0", &key).unwrap();

    let found = Some(mxid.to_owned());
    assert_eq!(
        lookups(&s, &token, &email),
        [found.clone(), found.clone(), found]
    );

    // Unbinding with the session of another address is refused.
    let (other_sid, other_secret, _) = validated(&s);
    let unbind = |sid: &str, secret: &str| {
        s.post(
            &format!("{V1}/3pid/unbind"),
            &json!({"mxid": mxid, "threepid": {"medium": "email", "address": email}, "sid": sid, "client_secret": secret}).to_string(),
        )
    };
    unbind(&other_sid, &other_secret).assert_error(403, "M_UNAUTHORIZED");
    let r = unbind(&sid, &secret);
    assert_eq!((r.status, r.json()), (200, json!({})));
    assert!(r
        .header("Content-Type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(lookups(&s, &token, &email), [None, None, None]);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn v2_binds_only_the_callers_own_id_and_without_the_store_nothing_is_kept() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Mxisd::start(&config("").replace("binds:\n  local:\n    enabled: true\n", ""));
    s.wait_hash_index();
    let token = v2_token(&s, &hs, "frank");
    let me = format!("@frank:127.0.0.1:{}", hs.port);
    let (sid, secret, email) = validated(&s);
    with_token(
        &s,
        &format!("{V2}/3pid/bind"),
        &token,
        &json!({"sid": sid, "client_secret": secret, "mxid": "@someone:else.example"}),
    )
    .assert_error(403, "M_UNAUTHORIZED");
    let r = with_token(
        &s,
        &format!("{V2}/3pid/bind"),
        &token,
        &json!({"sid": sid, "client_secret": secret, "mxid": me}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["mxid"], me.as_str());
    assert!(r.json()["signatures"]["example.org"]["ed25519:0"].is_string());
    assert_eq!(
        lookups(&s, &token, &email),
        [None, None, None],
        "nothing kept"
    );
    // Unbind is then a no-op that succeeds.
    let r = s.post(
        &format!("{V1}/3pid/unbind"),
        &json!({"mxid": me, "threepid": {"medium": "email", "address": email}, "sid": sid, "client_secret": secret}).to_string(),
    );
    assert_eq!(r.status, 200);
    // An unvalidated session binds nothing.
    let r = s.post(
        &format!("{V1}/validate/email/requestToken"),
        &json!({"client_secret": "x", "email": fresh_address(), "send_attempt": 1}).to_string(),
    );
    let sid = r.json()["sid"].as_str().unwrap().to_owned();
    s.post(
        &format!("{V1}/3pid/bind"),
        &json!({"sid": sid, "client_secret": "x", "mxid": me}).to_string(),
    )
    .assert_error(400, "M_SESSION_NOT_VALIDATED");
    // An unknown sid, or a sid or secret that cannot be one: no session either way.
    for (sid, secret) in [("nope", "x"), ("../nope", "x"), (sid.as_str(), "x/y")] {
        s.post(
            &format!("{V1}/3pid/bind"),
            &json!({"sid": sid, "client_secret": secret, "mxid": me}).to_string(),
        )
        .assert_error(404, "M_NO_VALID_SESSION");
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn rebinding_replaces_and_the_other_instance_sees_binds_within_a_second() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let db = fresh_database("binds");
    let shared = TempDir::new();
    let keys = shared.join("keys");
    let text = format!(
        "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{}'\n{}",
        pg_connection(&db),
        config("")
    );
    let a = Mxisd::start_in(TempDir::new(), &keys, &text);
    let b = Mxisd::start_in(TempDir::new(), &keys, &text);
    a.wait_hash_index();
    b.wait_hash_index();
    let lb = crate::support::balancer::Balancer::start(&[a.addr, b.addr]);
    let token_b = v2_token(&b, &hs, "gina");
    let (sid, secret, email) = validated(&a);
    let bind = |mxid: &str| {
        let r = a.post(
            &format!("{V1}/3pid/bind"),
            &json!({"sid": sid, "client_secret": secret, "mxid": mxid}).to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        Instant::now()
    };
    let seen_by_b = |mxid: &str, since: Instant| loop {
        if lookups(&b, &token_b, &email)[2].as_deref() == Some(mxid) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(3),
            "B never saw {mxid}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let first = seen_by_b("@gina:example.org", bind("@gina:example.org"));
    assert!(first < Duration::from_secs(1), "{first:?}");
    // A rebind to another user replaces the bind, everywhere.
    let second = seen_by_b("@hal:example.org", bind("@hal:example.org"));
    assert!(second < Duration::from_secs(1), "{second:?}");
    let found = Some("@hal:example.org".to_owned());
    assert_eq!(lookups(&b, &token_b, &email)[..2], [found.clone(), found]);
    // Through the balancer, each request to either instance: the same answer.
    let v1 = lb.url(&format!("{V1}/lookup?medium=email&address={email}"));
    for _ in 0..4 {
        let r = Response::from(support::agent().get(&v1).call());
        assert_eq!(r.json()["mxid"], "@hal:example.org");
    }
    // An unbind on A reaches B's hash index too.
    let r = a.post(
        &format!("{V1}/3pid/unbind"),
        &json!({"mxid": "@hal:example.org", "threepid": {"medium": "email", "address": email}, "sid": sid, "client_secret": secret}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let since = Instant::now();
    while lookups(&b, &token_b, &email)[2].is_some() {
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "B still finds the unbound address"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A homeserver of the test's own: its name, its signing key, and the fake serving its
/// key answer (signed with that key).
struct SigningHomeserver {
    name: String,
    key: SigningKey,
    _fake: FakeHomeserver,
    _dir: TempDir,
}

impl SigningHomeserver {
    fn start(seed: u8) -> SigningHomeserver {
        let port = support::free_port();
        let name = format!("127.0.0.1:{port}");
        let key = SigningKey::from_bytes(&[seed; 32]);
        let mut answer = json!({
            "server_name": name,
            "verify_keys": {"ed25519:hs1": {"key": b64::encode(key.verifying_key().as_bytes())}},
            "old_verify_keys": {},
            "valid_until_ts": mxisd::now_ms() + 3_600_000,
        });
        sign_json(&mut answer, &name, "ed25519:hs1", &key).unwrap();
        let dir = TempDir::new();
        let file = dir.join("keys.json");
        std::fs::write(&file, answer.to_string()).unwrap();
        let fake =
            FakeHomeserver::start("127.0.0.1", port, &["--key-answer", file.to_str().unwrap()]);
        SigningHomeserver {
            name,
            key,
            _fake: fake,
            _dir: dir,
        }
    }

    /// The X-Matrix header Synapse sends for `content` (origin `origin`, signed with
    /// `key`, for `destination_is`, which the header names as `destination`).
    fn header(
        &self,
        origin: &str,
        key: &SigningKey,
        destination_is: &str,
        content: &Value,
    ) -> String {
        let mut signed = json!({
            "method": "POST",
            "uri": "/_matrix/identity/v2/3pid/unbind",
            "origin": origin,
            "destination_is": destination_is,
            "content": content,
        });
        sign_json(&mut signed, origin, "ed25519:hs1", key).unwrap();
        let sig = signed["signatures"][origin]["ed25519:hs1"]
            .as_str()
            .unwrap();
        // As Synapse writes it: the identity server named in the header too.
        format!("X-Matrix origin=\"{origin}\",key=\"ed25519:hs1\",sig=\"{sig}\",destination=\"{destination_is}\"")
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_homeserver_signed_unbind_is_accepted_and_forged_ones_are_not() {
    let hs = SigningHomeserver::start(7);
    let s = Mxisd::start(&config(""));
    let (sid, secret, email) = validated(&s);
    let mxid = format!("@ivy:{}", hs.name);
    let r = s.post(
        &format!("{V1}/3pid/bind"),
        &json!({"sid": sid, "client_secret": secret, "mxid": mxid}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let content = json!({"mxid": mxid, "threepid": {"medium": "email", "address": email}});
    let unbind = |header: &str| {
        Response::from(
            support::agent()
                .post(s.url(&format!("{V2}/3pid/unbind")))
                .header("Authorization", header)
                .send(content.to_string()),
        )
    };
    let v1 = |s: &Mxisd| {
        s.get(&format!("{V1}/lookup?medium=email&address={email}"))
            .json()["mxid"]
            .clone()
    };

    // Another key than the homeserver's.
    let stranger = SigningKey::from_bytes(&[9; 32]);
    unbind(&hs.header(&hs.name, &stranger, "example.org", &content))
        .assert_error(403, "M_FORBIDDEN");
    // Signed for another identity server.
    unbind(&hs.header(&hs.name, &hs.key, "evil.example", &content))
        .assert_error(403, "M_FORBIDDEN");
    // A homeserver that is not the user's.
    let stranger_hs = SigningHomeserver::start(8);
    unbind(&stranger_hs.header(&stranger_hs.name, &stranger_hs.key, "example.org", &content))
        .assert_error(403, "M_FORBIDDEN");
    // Signed for another body than the one sent (another address).
    let other = json!({"mxid": mxid, "threepid": {"medium": "email", "address": "someone-else@example.org"}});
    unbind(&hs.header(&hs.name, &hs.key, "example.org", &other)).assert_error(403, "M_FORBIDDEN");
    // No authorization at all.
    Response::from(
        support::agent()
            .post(s.url(&format!("{V2}/3pid/unbind")))
            .send(content.to_string()),
    )
    .assert_error(401, "M_UNAUTHORIZED");
    assert_eq!(v1(&s), mxid.as_str(), "still bound");

    let r = unbind(&hs.header(&hs.name, &hs.key, "example.org", &content));
    assert_eq!((r.status, r.json()), (200, json!({})), "{}", s.log());
    assert_eq!(v1(&s), Value::Null);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_unbind_notice_goes_to_the_address_when_the_operator_asks_for_it() {
    let s = Mxisd::start(&config(
        "session:\n  policy:\n    unbind:\n      notifications: true\n",
    ));
    let (sid, secret, email) = validated(&s);
    let mxid = "@jo:example.org";
    let body = json!({"sid": sid, "client_secret": secret, "mxid": mxid}).to_string();
    assert_eq!(s.post(&format!("{V1}/3pid/bind"), &body).status, 200);
    let r = s.post(
        &format!("{V1}/3pid/unbind"),
        &json!({"mxid": mxid, "threepid": {"medium": "email", "address": email}, "sid": sid, "client_secret": secret}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let mails = wait_for(&email, 2);
    assert_eq!(mails.len(), 2, "the validation mail, then the notice");
    let notice = &mails[1];
    assert!(
        notice.contains(&format!(
            "Subject: {} was removed from a Matrix account on Example.org",
            email.to_lowercase()
        )),
        "{notice}"
    );
    assert!(notice.contains("@jo:example.org"), "{notice}");
    // Unbinding what is not bound (again) sends nothing.
    let r = s.post(
        &format!("{V1}/3pid/unbind"),
        &json!({"mxid": mxid, "threepid": {"medium": "email", "address": email}, "sid": sid, "client_secret": secret}).to_string(),
    );
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        crate::support::mail::mails_to(&email).len(),
        2,
        "no second notice"
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_v1_lookup_answers_a_bind_made_here_as_it_was_signed_at_bind_time() {
    let pg = format!(
        "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{}'\n",
        pg_connection(&fresh_database("signed"))
    );
    for storage in [String::new(), pg] {
        // A store's user beside: its answers keep today's short validity, signed fresh.
        let s = Mxisd::start(&format!(
            "{storage}{}",
            config("memory:\n  enabled: true\n  identities:\n    - username: gwen\n      threepids:\n        - medium: email\n          address: gwen@example.org\n")
        ));
        looked_up_as_bound(&s);
    }
}

/// Binds an address on `s`, then checks a later v1 lookup answers the association as bound,
/// and a store's answer as signed afresh.
fn looked_up_as_bound(s: &Mxisd) {
    let (sid, secret, email) = validated(s);
    let r = s.post(
        &format!("{V1}/3pid/bind"),
        &json!({"sid": sid, "client_secret": secret, "mxid": "@hana:example.org"}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let bound = r.json();
    // Later than the bind, so a fresh signature would carry another `ts`.
    std::thread::sleep(Duration::from_millis(1100));
    let looked_up = s
        .get(&format!(
            "{V1}/lookup?medium=email&address={}",
            email.to_uppercase()
        ))
        .json();
    for field in ["medium", "address", "mxid", "ts", "not_before", "not_after"] {
        assert_eq!(looked_up[field], bound[field], "{field}: {looked_up}");
    }
    let key = s.get(&format!("{V2}/pubkey/ed25519:0")).json()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = VerifyingKey::from_bytes(&b64::decode(&key).unwrap().try_into().unwrap()).unwrap();
    verify_json(&looked_up, "example.org", "ed25519:0", &key).unwrap();

    let before = mxisd::now_ms();
    let store = s
        .get(&format!(
            "{V1}/lookup?medium=email&address=gwen%40example.org"
        ))
        .json();
    assert_eq!(store["mxid"], "@gwen:example.org", "{store}");
    let ts = store["ts"].as_i64().unwrap();
    assert!(ts >= before, "{store}");
    assert_eq!(store["not_after"].as_i64().unwrap(), ts + 300_000);
    verify_json(&store, "example.org", "ed25519:0", &key).unwrap();
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_unauthenticated_unbind_answers_the_same_whether_the_address_is_bound_or_not() {
    let s = Mxisd::start(&config(""));
    let (sid, secret, bound) = validated(&s);
    let mxid = "@kim:example.org";
    let body = json!({"sid": sid, "client_secret": secret, "mxid": mxid}).to_string();
    assert_eq!(s.post(&format!("{V1}/3pid/bind"), &body).status, 200);
    let unbound = fresh_address();
    let unbind = |address: &str, auth: &Value| {
        let mut body = json!({"mxid": mxid, "threepid": {"medium": "email", "address": address}});
        for (k, v) in auth.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = s.post(&format!("{V2}/3pid/unbind"), &body.to_string());
        (r.status, r.text)
    };
    // Neither a session nor a signature; then a session that does not exist.
    for auth in [json!({}), json!({"sid": "nope", "client_secret": "nope"})] {
        let answers = (unbind(&bound, &auth), unbind(&unbound, &auth));
        assert_eq!(answers.0, answers.1, "{auth}");
        assert!(answers.0 .0 == 401 || answers.0 .0 == 404, "{answers:?}");
    }
    let v1 = s.get(&format!("{V1}/lookup?medium=email&address={bound}"));
    assert_eq!(v1.json()["mxid"], mxid, "still bound");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_refused_key_fetch_tells_the_client_nothing_and_sends_nothing() {
    // Where the origin leads (hs3.example.net is 127.0.0.3 in the test dnsmasq): had the
    // guard let the key fetch through, it would land here.
    let (canary, port) = support::canary("127.0.0.3");
    let origin = format!("hs3.example.net:{port}");
    // No ipRangeWhitelist: loopback is refused.
    let s = Mxisd::start(&format!(
        "binds:\n  local:\n    enabled: true\n{}",
        federation_config("")
    ));
    let r = unbind_signed_as(&s, &origin);
    let body = r.assert_error(502, "M_UNKNOWN");
    assert_eq!(body["error"], "homeserver unreachable or refused by policy");
    for leak in ["127.0.0.3", "resolves", "loopback"] {
        assert!(!r.text.contains(leak), "{leak} in {}", r.text);
    }
    assert!(
        s.wait_for_log("127.0.0.3 is a loopback address, refused by the outbound address policy"),
        "{}",
        s.log()
    );
    assert!(
        support::untouched(&canary),
        "the key fetch reached 127.0.0.3"
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn with_local_binds_off_an_unbind_fetches_no_keys() {
    // An origin on an allowed address: with local binds off nothing can change, so no
    // caller may make mxisd fetch keys from a server of its choosing.
    let (canary, port) = support::canary("127.0.0.1");
    let origin = format!("127.0.0.1:{port}");
    let s = Mxisd::start(&federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n"));
    let r = unbind_signed_as(&s, &origin);
    assert_eq!((r.status, r.json()), (200, json!({})), "{}", r.text);
    assert!(support::untouched(&canary), "a key fetch reached {origin}");
}

/// An unbind of lee@example.org for `@lee:<origin>`, with an X-Matrix header of `origin`
/// whose signature is wrong: verifying it means fetching the origin's keys.
fn unbind_signed_as(s: &Mxisd, origin: &str) -> Response {
    let content = json!({"mxid": format!("@lee:{origin}"), "threepid": {"medium": "email", "address": "lee@example.org"}});
    Response::from(
        support::agent()
            .post(s.url(&format!("{V2}/3pid/unbind")))
            .header(
                "Authorization",
                &format!("X-Matrix origin=\"{origin}\",key=\"ed25519:a\",sig=\"c2ln\""),
            )
            .send(content.to_string()),
    )
}
