//! Invites by e-mail against the real binary (first part: store-invite, the mail,
//! sign-ed25519, ephemeral keys): the mail arrives in the test SMTP sink, and its sign URL,
//! POSTed as matrix-js-sdk does, answers a signature that verifies with the ephemeral key.

use crate::support::fake_homeserver::{federation_config, v2_token, FakeHomeserver};
use crate::support::mail::wait_for;
use crate::support::services::get;
use crate::support::slapd::OwnSlapd;
use crate::support::{self, Mxisd, Response};
use ed25519_dalek::VerifyingKey;
use mxisd::crypto::{b64, verify_json};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const V1: &str = "/_matrix/identity/api/v1";
const V2: &str = "/_matrix/identity/v2";

fn config() -> String {
    format!(
        "memory:\n  enabled: true\n  identities:\n    - username: known\n      threepids:\n        - medium: email\n          address: known@example.org\nthreepid:\n  medium:\n    email:\n      identity:\n        from: 'identity@example.org'\n        name: 'Example Identity'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: 0\n{}",
        get("SMTP_PORT"),
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    )
}

fn fresh_address() -> String {
    crate::support::mail::fresh_address("invitee", "example.net")
}

fn invite_body(address: &str) -> Value {
    json!({
        "medium": "email", "address": address, "room_id": "!room:example.org",
        "sender": "@alice:example.org", "room_name": "Project <Tea> & Co",
        "sender_display_name": "Alice", "room_alias": "#tea:example.org",
    })
}

/// A query parameter of `url`, decoded.
fn param(url: &str, name: &str) -> String {
    let raw = support::mail::param(url, name);
    let mut out = Vec::new();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() + 1 => {
                out.push(u8::from_str_radix(&raw[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_invite_by_email_sends_a_mail_whose_sign_url_signs_with_the_ephemeral_key() {
    let s = Mxisd::start(&config());
    let address = fresh_address();
    let r = s.post(
        &format!("{V1}/store-invite"),
        &invite_body(&address).to_string(),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    let answer = r.json();
    let token = answer["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 32);
    assert_eq!(answer["display_name"], "inv...@exa...");
    let keys = answer["public_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[0]["key_validity_url"],
        "https://example.org/_matrix/identity/api/v1/pubkey/isvalid"
    );
    assert_eq!(
        keys[1]["key_validity_url"],
        "https://example.org/_matrix/identity/api/v1/pubkey/ephemeral/isvalid"
    );
    assert_eq!(answer["public_key"], keys[0]["public_key"]);
    let ephemeral = keys[1]["public_key"].as_str().unwrap().to_owned();
    let valid = s
        .get(&format!(
            "{V1}/pubkey/ephemeral/isvalid?public_key={ephemeral}"
        ))
        .json();
    assert_eq!(valid, json!({"valid": true}));

    // The mail: the room (escaped in HTML), the sender, and the join link with a sign URL.
    let mail = &wait_for(&address, 1)[0];
    assert!(
        mail.contains("Subject: Alice invited you to Project <Tea> & Co on Matrix"),
        "{mail}"
    );
    assert!(
        mail.contains("<strong>Project &lt;Tea&gt; &amp; Co</strong>"),
        "{mail}"
    );
    let join = mail
        .lines()
        .find(|l| l.starts_with("https://app.element.io/#/room/"))
        .unwrap_or_else(|| panic!("no join link in {mail}"));
    assert!(join.contains("%23tea%3Aexample.org"), "{join}");
    let sign_url = param(join, "signurl");
    assert!(
        sign_url.starts_with("https://example.org/_matrix/identity/api/v1/sign-ed25519?token="),
        "{sign_url}"
    );
    assert_eq!(param(&sign_url, "token"), token);

    // matrix-js-sdk POSTs the sign URL with the mxid added, no body, no access token.
    let path = sign_url.trim_start_matches("https://example.org");
    let r = s.post(&format!("{path}&mxid=%40bob%3Aexample.net"), "");
    assert_eq!(r.status, 200, "{}", r.text);
    let signed = r.json();
    assert_eq!(
        (signed["mxid"].as_str(), signed["sender"].as_str()),
        (Some("@bob:example.net"), Some("@alice:example.org"))
    );
    let key =
        VerifyingKey::from_bytes(&b64::decode(&ephemeral).unwrap().try_into().unwrap()).unwrap();
    verify_json(&signed, "example.org", "ed25519:0", &key).unwrap();
    // The same as JSON.
    let body = json!({"mxid": "@bob:example.net", "token": token, "private_key": param(&sign_url, "private_key")});
    let r = s.post(&format!("{V2}/sign-ed25519"), &body.to_string());
    verify_json(&r.json(), "example.org", "ed25519:0", &key).unwrap();
    // An unknown token.
    let body = json!({"mxid": "@bob:example.net", "token": "nope", "private_key": param(&sign_url, "private_key")});
    s.post(&format!("{V1}/sign-ed25519"), &body.to_string())
        .assert_error(404, "M_UNRECOGNIZED");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn store_invite_refuses_bound_addresses_other_media_and_foreign_senders() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Mxisd::start(&config());
    let body = s
        .post(
            &format!("{V1}/store-invite"),
            &invite_body("Known@Example.org").to_string(),
        )
        .assert_error(400, "M_THREEPID_IN_USE");
    assert_eq!(body["mxid"], "@known:example.org");
    let mut sms = invite_body("447911123456");
    sms["medium"] = json!("msisdn");
    s.post(&format!("{V1}/store-invite"), &sms.to_string())
        .assert_error(400, "M_UNRECOGNIZED");
    let token = v2_token(&s, &hs, "carla");
    let r = Response::from(
        support::agent()
            .post(s.url(&format!("{V2}/store-invite")))
            .header("Authorization", &format!("Bearer {token}"))
            .send(invite_body(&fresh_address()).to_string()),
    );
    r.assert_error(403, "M_UNAUTHORIZED");
}

/// What the fake homeserver received as onbind: (method, body).
fn recorded_onbinds(hs: &FakeHomeserver) -> Vec<(String, Value)> {
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .disable_verification(true)
                    .build(),
            )
            .build(),
    );
    let text = agent
        .get(&format!("https://127.0.0.1:{}/recorded/onbind", hs.port))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let list: Value = serde_json::from_str(&text).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["method"].as_str().unwrap().to_owned(), r["body"].clone()))
        .collect()
}

/// Invites `address` on `s`: the invite's token and ephemeral key.
fn store_invite(s: &Mxisd, address: &str) -> (String, String) {
    store_invite_of(s, &invite_body(address))
}

/// Stores the invite `body` on `s`: its token and ephemeral key.
fn store_invite_of(s: &Mxisd, body: &Value) -> (String, String) {
    let r = s.post(&format!("{V1}/store-invite"), &body.to_string());
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let ephemeral = r.json()["public_keys"][1]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    (token, ephemeral)
}

/// Invites `address`, then validates it and binds it to `mxid` on `s`; the invite's token
/// and ephemeral key.
fn invite_then_bind(s: &Mxisd, address: &str, mxid: &str) -> (String, String) {
    let invite = store_invite(s, address);
    // Two mails: the invite, then the validation link.
    validate_and_bind(s, address, mxid, 2);
    invite
}

/// Validates `address` through its mail (the `mails`th to it) and binds it to `mxid`.
fn validate_and_bind(s: &Mxisd, address: &str, mxid: &str, mails: usize) {
    let r = s.post(
        &format!("{V1}/validate/email/requestToken"),
        &json!({"client_secret": "inv", "email": address, "send_attempt": 1}).to_string(),
    );
    let sid = r.json()["sid"].as_str().unwrap().to_owned();
    let mails = wait_for(address, mails);
    let link = mails
        .iter()
        .find(|m| m.contains("submitToken?sid="))
        .map(|m| crate::support::mail::link_in(m))
        .expect("the validation mail");
    assert_eq!(
        s.get(link.trim_start_matches("https://example.org")).status,
        200
    );
    let r = s.post(
        &format!("{V1}/3pid/bind"),
        &json!({"sid": sid, "client_secret": "inv", "mxid": mxid}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

/// The onbind calls `hs` received, once there is one or `within` has passed.
fn wait_for_onbinds(hs: &FakeHomeserver, within: Duration) -> Vec<(String, Value)> {
    let deadline = Instant::now() + within;
    loop {
        let calls = recorded_onbinds(hs);
        if !calls.is_empty() || Instant::now() > deadline {
            return calls;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One invite of an onbind call: its token and room, Alice's, and `signed` for `mxid` by
/// the server's long-term key.
fn assert_invite(s: &Mxisd, invite: &Value, (token, room): (&str, &str), mxid: &str) {
    assert_eq!(invite["token"], token);
    assert_eq!(invite["room_id"], room);
    assert_eq!(invite["sender"], "@alice:example.org");
    assert_eq!(invite["signed"]["mxid"], mxid);
    verify_json(
        &invite["signed"],
        "example.org",
        "ed25519:0",
        &server_key(s),
    )
    .unwrap();
}

/// The server's long-term key `ed25519:0`.
fn server_key(s: &Mxisd) -> VerifyingKey {
    let key = s.get(&format!("{V2}/pubkey/ed25519:0")).json()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    VerifyingKey::from_bytes(&b64::decode(&key).unwrap().try_into().unwrap()).unwrap()
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn binding_an_invited_address_calls_onbind_on_the_invitees_homeserver() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Mxisd::start(&config());
    let address = fresh_address();
    let mxid = format!("@newcomer:127.0.0.1:{}", hs.port);
    let (token, ephemeral) = invite_then_bind(&s, &address, &mxid);

    let calls = wait_for_onbinds(&hs, Duration::from_secs(10));
    assert_eq!(calls.len(), 1, "{calls:?}\n{}", s.log());
    let (method, body) = &calls[0];
    assert_eq!(method, "POST");
    assert_eq!(body["address"], address.to_lowercase());
    assert_eq!(body["mxid"], mxid.as_str());
    assert_invite(
        &s,
        &body["invites"][0],
        (&token, "!room:example.org"),
        &mxid,
    );
    // Delivered: the invite and its ephemeral key have ended.
    assert!(s.wait_for_log("onbind: 1 invites delivered"), "{}", s.log());
    let valid = s
        .get(&format!(
            "{V1}/pubkey/ephemeral/isvalid?public_key={ephemeral}"
        ))
        .json();
    assert_eq!(valid, json!({"valid": false}));
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_homeserver_without_post_onbind_gets_a_put() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &["--onbind-post-status", "405"]);
    let s = Mxisd::start(&config());
    let address = fresh_address();
    let mxid = format!("@putter:127.0.0.1:{}", hs.port);
    invite_then_bind(&s, &address, &mxid);
    let calls = wait_for_onbinds(&hs, Duration::from_secs(10));
    assert_eq!(calls.len(), 1, "{calls:?}\n{}", s.log());
    assert_eq!(calls[0].0, "PUT");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_invitee_who_appears_in_an_identity_store_is_resolved() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let dir = support::TempDir::new();
    let db = support::synapse_sqlite(&dir, &[]);
    let s = Mxisd::start(&format!(
        "{}synapseSql:\n  enabled: true\n  type: sqlite\n  connection: '{db}'\ninvite:\n  resolution:\n    timer: 1\n    period: seconds\n",
        config()
    ));
    let address = fresh_address();
    let r = s.post(
        &format!("{V1}/store-invite"),
        &invite_body(&address).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    // The directory (here Synapse's table of 3PIDs) gains the invitee.
    let mxid = format!("@found:127.0.0.1:{}", hs.port);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO user_threepids VALUES (?1, 'email', ?2, 0, 0)",
            rusqlite::params![mxid, address.to_lowercase()],
        )
        .unwrap();
    let calls = wait_for_onbinds(&hs, Duration::from_secs(10));
    assert_eq!(calls.len(), 1, "{}", s.log());
    assert_eq!(calls[0].1["mxid"], mxid.as_str());
    assert_eq!(calls[0].1["invites"][0]["token"], token.as_str());
    // Once delivered, the next runs find nothing to do.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(recorded_onbinds(&hs).len(), 1);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_onbind_to_a_homeserver_that_is_down_arrives_after_a_restart_once_it_is_up() {
    let db = crate::support::services::fresh_database("onbind");
    let port = support::free_port(); // the homeserver, not up yet
    let text = format!(
        "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{}'\ninvite:\n  retry:\n    first: 1\n    max: 1\n{}",
        crate::support::services::pg_connection(&db),
        config()
    );
    let keys = support::TempDir::new();
    let mut first = Mxisd::start_in(support::TempDir::new(), &keys.join("keys"), &text);
    let address = fresh_address();
    let mxid = format!("@late:127.0.0.1:{port}");
    invite_then_bind(&first, &address, &mxid);
    assert!(first.wait_for_log("again in 1 s"), "{}", first.log());
    // This instance stops; another starts on the same database; the homeserver comes up.
    first.signal("TERM");
    first.wait_exit(Duration::from_secs(20)).unwrap();
    let second = Mxisd::start_in(support::TempDir::new(), &keys.join("keys"), &text);
    let hs = FakeHomeserver::start("127.0.0.1", port, &[]);
    let calls = wait_for_onbinds(&hs, Duration::from_secs(15));
    assert_eq!(calls.len(), 1, "{}", second.log());
    assert_eq!(calls[0].1["mxid"], mxid.as_str());
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(recorded_onbinds(&hs).len(), 1, "delivered once");
}

#[test]
fn a_public_url_left_unset_is_warned_about_at_start() {
    let s = Mxisd::start("");
    assert!(
        s.wait_for_log("server.publicUrl is not set: links in mails and invite key URLs use https://example.org"),
        "{}",
        s.log()
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_final_refusal_of_an_onbind_is_not_retried() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &["--onbind-refuse"]);
    let s = Mxisd::start(&format!(
        "{}invite:\n  retry:\n    first: 1\n    max: 1\n",
        config()
    ));
    let address = fresh_address();
    invite_then_bind(&s, &address, &format!("@refused:127.0.0.1:{}", hs.port));
    assert!(s.wait_for_log("are ended, not sent again"), "{}", s.log());
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(recorded_onbinds(&hs).len(), 1, "one attempt only");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn store_invite_is_limited_per_address_and_v1_by_network() {
    let s = Mxisd::start(&format!(
        "{}invite:\n  rateLimit:\n    perAddress:\n      burst: 1\n      perMinute: 0\n",
        config()
    ));
    let address = fresh_address();
    assert_eq!(
        s.post(
            &format!("{V1}/store-invite"),
            &invite_body(&address).to_string()
        )
        .status,
        200
    );
    let body = s
        .post(
            &format!("{V1}/store-invite"),
            &invite_body(&address).to_string(),
        )
        .assert_error(429, "M_LIMIT_EXCEEDED");
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0);
    let s = Mxisd::start(&format!(
        "{}invite:\n  v1:\n    allowedCidr: ['10.0.0.0/8']\n",
        config()
    ));
    s.post(
        &format!("{V1}/store-invite"),
        &invite_body(&fresh_address()).to_string(),
    )
    .assert_error(403, "M_UNAUTHORIZED");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_instance_killed_while_it_delivers_leaves_the_onbind_to_another() {
    let db = crate::support::services::fresh_database("onbind_kill");
    let port = support::free_port();
    // The invitee's homeserver accepts connections and never answers: the first instance
    // is still waiting for it (federation.timeout, 3 s) when it is killed.
    let silent = support::Silent::start_on(port);
    let text = format!(
        "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{}'\ninvite:\n  retry:\n    first: 1\n    max: 1\n{}",
        crate::support::services::pg_connection(&db),
        config()
    );
    let keys = support::TempDir::new();
    let first = Mxisd::start_in(support::TempDir::new(), &keys.join("keys"), &text);
    let address = fresh_address();
    let mxid = format!("@orphan:127.0.0.1:{port}");
    invite_then_bind(&first, &address, &mxid);
    // The first instance holds the onbind (its process id is in the claim) ...
    let holder = format!("/{}/", first.pid());
    let deadline = Instant::now() + Duration::from_secs(2);
    let claimed_by = loop {
        let by = crate::support::services::psql(
            &db,
            "SELECT claimed_by FROM delivery_queue WHERE kind = 'onbind' AND claimed_until IS NOT NULL",
        );
        if by.contains(&holder) || Instant::now() > deadline {
            break by;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        claimed_by.contains(&holder),
        "{claimed_by}\n{}",
        first.log()
    );
    // ... and dies before the homeserver answers; another instance runs.
    let second = Mxisd::start_in(support::TempDir::new(), &keys.join("keys"), &text);
    first.signal("KILL");
    drop(silent);
    let hs = FakeHomeserver::start("127.0.0.1", port, &[]);
    // The other instance takes it over once the dead one's lease runs out.
    let calls = wait_for_onbinds(&hs, Duration::from_secs(40));
    assert_eq!(calls.len(), 1, "{}", second.log());
    assert_eq!(calls[0].1["mxid"], mxid.as_str());
    assert!(second.wait_for_log("onbind: 1 invites delivered"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(recorded_onbinds(&hs).len(), 1, "delivered once");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_expired_invite_ends_its_key_and_is_never_delivered() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    // 0.1 minutes: 6 s.
    let s = Mxisd::start(&format!(
        "{}invite:\n  expiration:\n    after: 0.1\n",
        config()
    ));
    let address = fresh_address();
    let (token, ephemeral) = store_invite(&s, &address);
    let isvalid = format!("{V1}/pubkey/ephemeral/isvalid?public_key={ephemeral}");
    assert_eq!(s.get(&isvalid).json(), json!({"valid": true}));
    let mail = wait_for(&address, 1).remove(0);
    let join = mail
        .lines()
        .find(|l| l.starts_with("https://app.element.io/#/room/"))
        .unwrap_or_else(|| panic!("no join link in {mail}"));
    let sign_url = param(join, "signurl");
    let private_key = param(&sign_url, "private_key");
    let sign = |s: &Mxisd| {
        s.post(
            &format!("{V2}/sign-ed25519"),
            &json!({"mxid": "@late:example.org", "token": token, "private_key": private_key})
                .to_string(),
        )
    };
    assert_eq!(sign(&s).status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.get(&isvalid).json() != json!({"valid": false}) {
        assert!(Instant::now() < deadline, "the invite never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    sign(&s).assert_error(404, "M_UNRECOGNIZED");
    validate_and_bind(&s, &address, &format!("@late:127.0.0.1:{}", hs.port), 2);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(recorded_onbinds(&hs), vec![], "{}", s.log());
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_invitee_added_to_the_directory_is_resolved() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let dir = support::TempDir::new();
    let slapd = OwnSlapd::start(&dir, "3893");
    // Directory users carry their Matrix ID in employeeNumber (`uid.type: mxid`).
    let s = Mxisd::start(&format!(
        "ldap:\n  enabled: true\n  connection:\n    host: '127.0.0.1'\n    port: {}\n    bindDn: '{}'\n    bindPassword: '{}'\n    baseDNs: ['ou=people,{}']\n    timeout: 2\n  attribute:\n    uid:\n      type: mxid\n      value: employeeNumber\ninvite:\n  resolution:\n    timer: 1\n    period: seconds\n{}",
        slapd.port,
        get("LDAP_ADMIN_DN"),
        get("LDAP_ADMIN_PASSWORD"),
        get("LDAP_BASE"),
        config()
    ));
    let address = fresh_address();
    let (token, _) = store_invite(&s, &address);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(recorded_onbinds(&hs), vec![], "not in the directory yet");
    let mxid = format!("@carol:127.0.0.1:{}", hs.port);
    slapd.add(&format!(
        "dn: uid=carol,ou=people,{}\nobjectClass: inetOrgPerson\nuid: carol\ncn: Carol\nsn: Example\nmail: {address}\nemployeeNumber: {mxid}\n",
        get("LDAP_BASE")
    ));
    let calls = wait_for_onbinds(&hs, Duration::from_secs(10));
    assert_eq!(calls.len(), 1, "{}", s.log());
    assert_eq!(calls[0].1["mxid"], mxid.as_str());
    assert_invite(
        &s,
        &calls[0].1["invites"][0],
        (&token, "!room:example.org"),
        &mxid,
    );
}

/// mxisd's and ma1sd's table of pending invites, as ORMLite made it on SQLite.
const MXISD_INVITE_TABLE: &str =
    "CREATE TABLE `invite_3pid` (`id` VARCHAR , `token` VARCHAR NOT NULL , \
     `sender` VARCHAR NOT NULL , `medium` VARCHAR NOT NULL , `address` VARCHAR NOT NULL , \
     `roomId` VARCHAR NOT NULL , `properties` VARCHAR , PRIMARY KEY (`id`) )";

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn pending_invites_of_an_mxisd_database_are_imported_once_and_delivered() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let data = support::TempDir::new();
    let db = data.join("mxisd.db");
    let address = fresh_address();
    let token = format!("mxisd{}", mxisd::now_ms());
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute(MXISD_INVITE_TABLE, []).unwrap();
    let rows = [
        (&token, "email", address.to_uppercase()),
        (&format!("{token}sms"), "msisdn", "447911123456".to_owned()),
    ];
    for (t, medium, a) in rows {
        c.execute(
            "INSERT INTO invite_3pid VALUES (?1, ?2, '@alice:example.org', ?3, ?4, '!old:example.org', ?5)",
            rusqlite::params![
                format!("example.org{medium}{a}"),
                t,
                medium,
                a,
                r#"{"room_name":"Old room"}"#
            ],
        )
        .unwrap();
    }
    drop(c);
    let text = format!(
        "storage:\n  backend: sqlite\n  provider:\n    sqlite:\n      database: '{}'\n{}",
        db.display(),
        config()
    );
    let keys = support::TempDir::new();
    let mut s = Mxisd::start_in(support::TempDir::new(), &keys.join("keys"), &text);
    assert!(
        s.wait_for_log("imported 1 pending invites of mxisd"),
        "{}",
        s.log()
    );
    assert!(s
        .log()
        .contains("pending invite for a msisdn is not imported"));
    let mxid = format!("@old:127.0.0.1:{}", hs.port);
    validate_and_bind(&s, &address, &mxid, 1);
    let calls = wait_for_onbinds(&hs, Duration::from_secs(10));
    assert_eq!(calls.len(), 1, "{}", s.log());
    assert_invite(
        &s,
        &calls[0].1["invites"][0],
        (&token, "!old:example.org"),
        &mxid,
    );
    // A restart on the same database imports nothing again, not even a row added since.
    s.signal("TERM");
    s.wait_exit(Duration::from_secs(20)).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO invite_3pid VALUES ('late', 'latetoken', '@alice:example.org', 'email', 'late@example.net', '!old:example.org', NULL)",
            [],
        )
        .unwrap();
    let again = Mxisd::start_in(support::TempDir::new(), &keys.join("keys"), &text);
    assert!(again.wait_for_log("listening on"), "{}", again.log());
    assert!(!again.log().contains("imported"), "{}", again.log());
    let c = rusqlite::Connection::open(&db).unwrap();
    let (imports, live): (i64, i64) = c
        .query_row(
            "SELECT (SELECT count(*) FROM imports), (SELECT count(*) FROM invites WHERE ended_ts IS NULL OR token = 'latetoken')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((imports, live), (1, 0));
}

/// Room names whose join link (the name percent-encoded, 6 to 9 octets a character) was
/// one line past SMTP's 998 octets: the sink refused the mail (`500 Line too long`) and the
/// queue retried it until the invite expired. Each arrives, every raw line within the
/// limit, the whole name in the decoded mail and in the join link, whose sign URL signs;
/// a name past 255 characters is cut, with an ellipsis.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn invites_with_long_non_ascii_room_names_arrive_and_their_links_work() {
    use crate::support::mail::{assert_headers_fit, assert_lines_fit, decoded};
    let japanese = "日本語の部屋の名前はとても長いですがそれでも普通の名前です。".repeat(3)
        [..72 * 3]
        .to_owned();
    let russian: String = "Очень длинное название комнаты для проверки почты! "
        .repeat(2)
        .chars()
        .take(74)
        .collect();
    let long: String = "長い名前".repeat(100);
    assert_eq!(japanese.chars().count(), 72);
    assert_eq!(russian.chars().count(), 74);
    let s = Mxisd::start(&config());
    for (room_name, shown) in [
        (japanese.clone(), japanese.clone()),
        (russian.clone(), russian.clone()),
        (
            long.clone(),
            format!("{}…", long.chars().take(255).collect::<String>()),
        ),
        // A line break in a value that also goes into the Subject: one line there and in
        // the body (a space), kept in the join link (percent-encoded), the mail still sent.
        (
            "Tea\r\nBcc: eve@evil.test".to_owned(),
            "Tea\r\nBcc: eve@evil.test".to_owned(),
        ),
    ] {
        let address = fresh_address();
        let mut body = invite_body(&address);
        body["room_name"] = json!(room_name);
        body["sender_display_name"] = json!(room_name);
        let (token, ephemeral) = store_invite_of(&s, &body);
        let mails = wait_for(&address, 1);
        assert_eq!(mails.len(), 1, "no mail for {room_name}:\n{}", s.log());
        assert_lines_fit(&mails[0]);
        assert_headers_fit(&mails[0]);
        let head = mails[0].replace("\r\n", "\n");
        let head = head.split_once("\n\n").unwrap().0;
        assert!(!head.contains("\nBcc:"), "{head}");
        let mail = decoded(&mails[0]);
        let in_body = shown.replace("\r\n", " ");
        assert!(
            mail.contains(&format!("invited you to the room {in_body} on")),
            "{mail}"
        );
        assert!(
            mail.contains(&format!("<strong>{in_body}</strong>")),
            "{mail}"
        );
        let join = mail
            .lines()
            .find(|l| l.starts_with("https://app.element.io/#/room/"))
            .unwrap_or_else(|| panic!("no join link in {mail}"));
        assert_eq!(param(join, "room_name"), shown);
        assert_eq!(param(join, "inviter_name"), shown);
        assert_eq!(param(join, "email"), address);
        // The sign URL, followed as matrix-js-sdk does (POST, the mxid added).
        let sign_url = param(join, "signurl");
        assert_eq!(param(&sign_url, "token"), token);
        let path = sign_url.trim_start_matches("https://example.org");
        let r = s.post(&format!("{path}&mxid=%40bob%3Aexample.net"), "");
        assert_eq!(r.status, 200, "{}", r.text);
        let key = VerifyingKey::from_bytes(&b64::decode(&ephemeral).unwrap().try_into().unwrap())
            .unwrap();
        verify_json(&r.json(), "example.org", "ed25519:0", &key).unwrap();
    }
    assert!(!s.log().contains("invite-mail"), "{}", s.log());
}

/// Control characters in a room or sender name (other than line breaks, made spaces) never
/// reach a header of the invite mail, encoded or not; a tab becomes a space.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn control_characters_in_names_never_reach_the_invite_headers() {
    use crate::support::mail::assert_headers_fit;
    let s = Mxisd::start(&config());
    let address = fresh_address();
    let mut body = invite_body(&address);
    body["sender_display_name"] = json!("Al\u{7}ice\u{1b}[2J\tB");
    body["room_name"] = json!("Caf\u{e9}\u{0}\u{8} Ro\u{7f}om");
    store_invite_of(&s, &body);
    let mails = wait_for(&address, 1);
    assert_eq!(mails.len(), 1, "{}", s.log());
    assert_headers_fit(&mails[0]);
    let mail = mails[0].replace("\r\n", "\n");
    let head = mail.split_once("\n\n").unwrap().0;
    let subject = head
        .split("\nSubject: ")
        .nth(1)
        .or_else(|| head.strip_prefix("Subject: "))
        .unwrap();
    assert!(subject.starts_with("Alice[2J B invited you to"), "{head}");
    // The encoded room name, decoded, holds no control character either.
    let decoded: Vec<u8> = subject
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("=?UTF-8?B?")?.strip_suffix("?="))
        .flat_map(|b| b64::decode(b).unwrap())
        .collect();
    assert_eq!(String::from_utf8(decoded).unwrap(), "Café", "{head}");
    assert!(subject.contains("?= Room on"), "{head}");
}

/// What store-invite keeps is bounded: IDs to 255 bytes, the room's avatar URL to 1 KiB.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn store_invite_refuses_oversized_ids_and_avatar_urls() {
    let s = Mxisd::start(&config());
    for (field, value) in [
        ("room_id", format!("!{}:example.org", "r".repeat(250))),
        ("sender", format!("@{}:example.org", "s".repeat(250))),
        (
            "room_avatar_url",
            format!("mxc://example.org/{}", "a".repeat(1024)),
        ),
    ] {
        let mut body = invite_body(&fresh_address());
        body[field] = json!(value);
        s.post(&format!("{V1}/store-invite"), &body.to_string())
            .assert_error(400, "M_INVALID_PARAM");
    }
}

/// store-invite keeps only the fields it knows, display ones cut at store time: a 60 KiB
/// room name is not kept whole, a field it does not know is ignored (accepted, not
/// stored), null is absent; a known field that is not a string is a malformed request.
#[test]
fn store_invite_keeps_only_known_fields_bounded() {
    let s = Mxisd::start(&config());
    let address = fresh_address();
    let mut body = invite_body(&address);
    body["room_name"] = json!("名".repeat(20 * 1024));
    body["room_type"] = Value::Null;
    body["org.example.new_field"] = json!("n".repeat(10_000));
    let (token, _) = store_invite_of(&s, &body);
    let fields: String = rusqlite::Connection::open(s.dir.join("mxisd.db"))
        .unwrap()
        .query_row(
            "SELECT fields FROM invites WHERE token = ?1",
            [&token],
            |r| r.get(0),
        )
        .unwrap();
    assert!(fields.len() < 2048, "{} bytes kept", fields.len());
    let fields: Value = serde_json::from_str(&fields).unwrap();
    assert_eq!(
        fields["room_name"],
        format!("{}…", "名".repeat(255)),
        "{fields}"
    );
    assert_eq!(fields["room_alias"], "#tea:example.org");
    assert_eq!(fields["room_id"], "!room:example.org");
    assert!(fields.get("org.example.new_field").is_none(), "{fields}");
    assert!(fields.get("room_type").is_none(), "{fields}");
    for (field, value) in [
        ("room_avatar_url", json!(5)),
        ("room_avatar_url", json!({})),
        ("room_name", json!(["a"])),
        ("sender_display_name", json!(true)),
    ] {
        let mut body = invite_body(&fresh_address());
        body[field] = value;
        let e = s
            .post(&format!("{V1}/store-invite"), &body.to_string())
            .assert_error(400, "M_BAD_JSON");
        assert!(e["error"].as_str().unwrap().contains(field), "{e}");
    }
}

/// A mail no retry can send (here the operator's invite template has a header line too
/// long for SMTP that cannot be cut) ends its queue item at once, said in the log, instead
/// of being tried again until the invite expires.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_invite_mail_that_can_never_be_sent_is_not_retried() {
    let dir = support::TempDir::new();
    let template = dir.path().join("invite.eml");
    std::fs::write(
        &template,
        format!(
            "To: <{}@example.org>\nSubject: invite\n\n%JOIN_URL%\n",
            "x".repeat(1000)
        ),
    )
    .unwrap();
    let s = Mxisd::start(&config().replacen(
        "      connectors:\n",
        &format!(
            "      generators:\n        template:\n          invite: '{}'\n      connectors:\n",
            template.display()
        ),
        1,
    ));
    let address = fresh_address();
    let r = s.post(
        &format!("{V1}/store-invite"),
        &invite_body(&address).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(s.wait_for_log("(attempt 1)"), "{}", s.log());
    let log = s.log();
    assert!(
        log.contains("SMTP allows") && log.contains("not tried again"),
        "{log}"
    );
    assert!(!log.contains("again in"), "{log}");
    // The line is named by its number and length, never shown: it may hold a user's data.
    assert!(
        log.contains("line 1 of the message is 1018 octets"),
        "{log}"
    );
    assert!(!log.contains("xxxxxxxx"), "{log}");
}

/// A relay of the test's own that refuses recipients, by how their address starts: `gone`
/// 550 5.1.1 (for good); `later` 450 4.2.0, `auth` 530 5.7.0 (authentication required),
/// `relay` 550 5.7.1 (relaying denied, a policy), `full` 552 (RFC 5321: read as 452), all
/// worth a retry. With `pipelining` it offers PIPELINING, and answers the DATA that came
/// with a refused RCPT 554 (no valid recipients), as real relays do.
fn refusing_relay(pipelining: bool) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let _ = out.write_all(b"220 relay\r\n");
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    let rcpt = |start: &str| line.contains(&format!("<{start}"));
                    let reply: &[u8] = match line.get(..4).unwrap_or_default() {
                        "EHLO" if pipelining => b"250-relay\r\n250 PIPELINING\r\n",
                        "RCPT" if rcpt("gone") => b"550 5.1.1 no such user\r\n",
                        "RCPT" if rcpt("auth") => b"530 5.7.0 authentication required\r\n",
                        "RCPT" if rcpt("relay") => b"550 5.7.1 relaying denied\r\n",
                        "RCPT" if rcpt("full") => b"552 too many recipients\r\n",
                        "RCPT" => b"450 4.2.0 try later\r\n",
                        "DATA" => b"554 5.5.1 no valid recipients\r\n",
                        "QUIT" => b"221 bye\r\n",
                        _ => b"250 ok\r\n",
                    };
                    if out.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A 5xx to RCPT ends the invite mail's queue item at once (logged); a 4xx is retried, and
/// so are the 5xx an operator cures (530, 5.7.x, 552 to RCPT), with and without PIPELINING
/// (where the DATA sent along is refused too: the RCPT's refusal is the one that counts).
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_invite_mail_refused_for_good_is_not_retried_and_one_refused_for_now_is() {
    for pipelining in [false, true] {
        let port = refusing_relay(pipelining);
        let s = Mxisd::start(&config().replace(
            &format!("port: {}", get("SMTP_PORT")),
            &format!("port: {port}"),
        ));
        let retried = [
            ("later", "450 4.2.0"),
            ("auth", "530 5.7.0"),
            ("relay", "550 5.7.1"),
            ("full", "552 too many"),
        ];
        for start in ["gone"].into_iter().chain(retried.iter().map(|r| r.0)) {
            let r = s.post(
                &format!("{V1}/store-invite"),
                &invite_body(&format!("{start}@example.net")).to_string(),
            );
            assert_eq!(r.status, 200, "{}", r.text);
        }
        assert!(s.wait_for_log("not tried again"), "{}", s.log());
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.log().matches("; again in").count() < retried.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = s.log();
        let ended: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("not tried again"))
            .collect();
        assert_eq!(ended.len(), 1, "pipelining {pipelining}:\n{log}");
        assert!(ended[0].contains("550 5.1.1"), "{log}");
        for (_, reply) in retried {
            assert!(
                log.lines()
                    .any(|l| l.contains("; again in") && l.contains(reply)),
                "pipelining {pipelining}: {reply} not retried:\n{log}"
            );
        }
    }
}

/// mxisd's own database under a delivery test: SQLite (in the server's directory) or a
/// fresh PostgreSQL database. Rows are written as a build of mxisd wrote them, through SQL.
enum OwnDb {
    Sqlite,
    Postgres(String),
}

impl OwnDb {
    fn both() -> [OwnDb; 2] {
        [
            OwnDb::Sqlite,
            OwnDb::Postgres(crate::support::services::fresh_database("deliveries")),
        ]
    }

    /// mxisd on this database, with `config()`.
    fn start(&self) -> Mxisd {
        match self {
            OwnDb::Sqlite => Mxisd::start(&config()),
            OwnDb::Postgres(db) => Mxisd::start(&format!(
                "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{}'\n{}",
                crate::support::services::pg_connection(db),
                config()
            )),
        }
    }

    fn sqlite(s: &Mxisd) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(s.dir.join("mxisd.db")).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c
    }

    /// Runs the statements `sql` on `s`'s database.
    fn exec(&self, s: &Mxisd, sql: &str) {
        match self {
            OwnDb::Sqlite => OwnDb::sqlite(s).execute_batch(sql).unwrap(),
            OwnDb::Postgres(db) => {
                crate::support::services::psql(db, sql);
            }
        }
    }

    /// The rows of the query `sql` on `s`'s database, columns joined by `|`.
    fn rows(&self, s: &Mxisd, sql: &str) -> Vec<String> {
        match self {
            OwnDb::Sqlite => {
                use rusqlite::types::ValueRef;
                let c = OwnDb::sqlite(s);
                let mut statement = c.prepare(sql).unwrap();
                let columns = statement.column_count();
                let mut rows = statement.query([]).unwrap();
                let mut out = Vec::new();
                while let Some(row) = rows.next().unwrap() {
                    let cells: Vec<String> = (0..columns)
                        .map(|i| match row.get_ref(i).unwrap() {
                            ValueRef::Integer(n) => n.to_string(),
                            ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                            ValueRef::Null => String::new(),
                            other => panic!("{other:?}"),
                        })
                        .collect();
                    out.push(cells.join("|"));
                }
                out
            }
            OwnDb::Postgres(db) => crate::support::services::psql(db, sql)
                .lines()
                .map(str::to_owned)
                .collect(),
        }
    }

    /// Waits (at most 10 s) until the query `sql` answers `rows`; what it answered last.
    fn wait_rows(&self, s: &Mxisd, sql: &str, rows: &[&str]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.rows(s, sql);
            if now == rows || Instant::now() > deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// An invite row of `address` (lower case) with `token`, live for a day, as store-invite
/// writes it.
fn invite_row(address: &str, token: &str) -> String {
    let now = mxisd::now_ms();
    format!(
        "INSERT INTO invites (token, medium, address, room_id, sender, fields, \
         ephemeral_public_key, server_key_id, created_ts, expires_ts) \
         VALUES ('{token}', 'email', '{address}', '!legacy:example.org', '@alice:example.org', \
         '{{}}', 'key{token}', 'ed25519:0', {now}, {})",
        now + 86_400_000
    )
}

/// A delivery_queue row `id` of `kind` carrying `payload`, due now, never claimed.
fn queue_row(id: &str, kind: &str, payload: &str) -> String {
    let now = mxisd::now_ms();
    format!(
        "INSERT INTO delivery_queue (id, kind, payload, created_ts, next_attempt_ts) \
         VALUES ('{id}', '{kind}', '{payload}', {now}, {now})"
    )
}

/// Items queued by the build before typed deliveries, in the shape it wrote them (kind
/// strings, payloads as `json!` objects), are delivered by this one: the mail with its
/// placeholders, the onbind call to the bound mxid's homeserver. On SQLite and PostgreSQL.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn deliveries_queued_by_the_previous_build_are_delivered() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    for db in OwnDb::both() {
        let s = db.start();
        let (mailed, bound) = (
            fresh_address().to_lowercase(),
            fresh_address().to_lowercase(),
        );
        let (mail_token, onbind_token) = (
            format!("m{}", mxisd::now_ms()),
            format!("o{}", mxisd::now_ms()),
        );
        let mxid = format!("@legacy:127.0.0.1:{}", hs.port);
        let values = json!({
            "SENDER_ID": "@alice:example.org", "SENDER_NAME": "Alice",
            "SENDER_NAME_OR_ID": "Alice", "SENDER_AVATAR_URL": "",
            "INVITE_MEDIUM": "email", "INVITE_ADDRESS": mailed,
            "INVITE_ADDRESS_URL_ENCODED": mailed, "ROOM_ID": "!legacy:example.org",
            "ROOM_NAME": "Legacy room", "ROOM_NAME_OR_ID": "Legacy room", "ROOM_ALIAS": "",
            "ROOM_AVATAR_URL": "", "INVITE_TOKEN": mail_token, "EPHEMERAL_PRIVATE_KEY": "k",
            "SIGN_URL": "https://example.org/sign", "JOIN_URL": "https://app.element.io/#/room/legacy",
        });
        let mail = json!({ "address": mailed, "token": mail_token, "values": values });
        let onbind = json!({ "medium": "email", "address": bound, "mxid": mxid });
        db.exec(
            &s,
            &[
                invite_row(&mailed, &mail_token),
                invite_row(&bound, &onbind_token),
                queue_row("legacy-mail", "invite-mail", &mail.to_string()),
                queue_row("legacy-onbind", "onbind", &onbind.to_string()),
            ]
            .join(";\n"),
        );
        let mails = wait_for(&mailed, 1);
        assert_eq!(mails.len(), 1, "{}", s.log());
        assert!(
            mails[0].contains("Subject: Alice invited you to Legacy room on Matrix"),
            "{}",
            mails[0]
        );
        assert!(
            mails[0].contains("https://app.element.io/#/room/legacy"),
            "{}",
            mails[0]
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let call = loop {
            let calls = recorded_onbinds(&hs);
            if let Some(call) = calls
                .iter()
                .find(|(_, body)| body["address"] == bound.as_str())
            {
                break call.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no onbind for {bound}: {calls:?}\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(call.1["mxid"], mxid.as_str());
        assert_invite(
            &s,
            &call.1["invites"][0],
            (&onbind_token, "!legacy:example.org"),
            &mxid,
        );
        let left = db.wait_rows(&s, "SELECT id FROM delivery_queue", &[]);
        assert_eq!(left, Vec::<String>::new(), "{}", s.log());
    }
}

/// Instances of several builds share the queue during a rolling upgrade: an item of a kind
/// this build does not know (a newer build's) is never claimed nor ended, left for an
/// instance that knows it; an item of a kind it knows whose payload it cannot read is
/// ended, in the log, and nothing is sent for it (no mail to an empty address, no onbind
/// to an empty server). On SQLite and PostgreSQL.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_unknown_kind_is_left_queued_and_an_unreadable_payload_is_ended_in_the_log() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    for db in OwnDb::both() {
        let s = db.start();
        let address = fresh_address().to_lowercase();
        let token = format!("u{}", mxisd::now_ms());
        db.exec(
            &s,
            &[
                invite_row(&address, &token),
                queue_row(
                    "from-a-newer-build",
                    "invite-reminder",
                    &json!({ "token": token }).to_string(),
                ),
                // No mxid.
                queue_row(
                    "unreadable-onbind",
                    "onbind",
                    &json!({ "medium": "email", "address": address }).to_string(),
                ),
                // A placeholder that is not text.
                queue_row(
                    "unreadable-mail",
                    "invite-mail",
                    &json!({ "address": address, "token": token, "values": { "ROOM_NAME": 7 } })
                        .to_string(),
                ),
            ]
            .join(";\n"),
        );
        for ended in [
            "onbind unreadable-onbind (attempt 1): unreadable payload",
            "invite-mail unreadable-mail (attempt 1): unreadable payload",
        ] {
            assert!(s.wait_for_log(ended), "{ended}\n{}", s.log());
        }
        // Both delivery jobs ran after the items were queued; the unknown kind's item is
        // as it was queued: never claimed.
        let left = db.wait_rows(
            &s,
            "SELECT id, kind, attempts, COALESCE(claimed_by, 'unclaimed') FROM delivery_queue",
            &["from-a-newer-build|invite-reminder|0|unclaimed"],
        );
        assert_eq!(
            left,
            vec!["from-a-newer-build|invite-reminder|0|unclaimed"],
            "{}",
            s.log()
        );
        assert!(!s.log().contains("from-a-newer-build"), "{}", s.log());
        assert_eq!(
            crate::support::mail::mails_to(&address),
            Vec::<String>::new()
        );
        assert_eq!(recorded_onbinds(&hs), vec![], "{}", s.log());
    }
}
