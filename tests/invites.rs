//! Invites by e-mail against the real binary (first part: store-invite, the mail,
//! sign-ed25519, ephemeral keys): the mail arrives in the test SMTP sink, and its sign URL,
//! POSTed as matrix-js-sdk does, answers a signature that verifies with the ephemeral key.

use crate::support::fake_homeserver::{federation_config, v2_token, FakeHomeserver};
use crate::support::mail::wait_for;
use crate::support::services::get;
use crate::support::{self, Mxisd, Response};
use ed25519_dalek::VerifyingKey;
use mxisd::crypto::{b64, verify_json};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

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
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "invitee{}-{}-{}@example.net",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        mxisd::now_ms()
    )
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
