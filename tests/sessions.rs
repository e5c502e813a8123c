//! 3PID validation sessions against the real binary: e-mail through the test SMTP sink,
//! the link's page and redirect, retries, wrong and expired tokens, the policy.

use crate::support::fake_homeserver::{federation_config, v2_token, FakeHomeserver};
use crate::support::mail::{link_in, param, wait_for};
use crate::support::services::get;
use crate::support::{self, Mxisd, Response};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

const V1: &str = "/_matrix/identity/api/v1";
const V2: &str = "/_matrix/identity/v2";

/// The e-mail channel to the test sink, then `extra`.
fn mail_config(extra: &str) -> String {
    format!(
        "threepid:\n  medium:\n    email:\n      identity:\n        from: 'identity@example.org'\n        name: 'Example Identity'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: 0\n{extra}",
        get("SMTP_PORT")
    )
}

/// An address no other test (or earlier run) uses.
fn fresh_address(domain: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "sess{}-{}-{}@{domain}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        mxisd::now_ms()
    )
}

fn post(s: &Mxisd, path: &str, body: &Value) -> Response {
    s.post(path, &body.to_string())
}

fn request_email(s: &Mxisd, prefix: &str, email: &str, secret: &str, attempt: i64) -> Response {
    post(
        s,
        &format!("{prefix}/validate/email/requestToken"),
        &json!({"client_secret": secret, "email": email, "send_attempt": attempt}),
    )
}

#[test]
fn email_session_from_mail_to_validated_3pid() {
    let s = Mxisd::start(&mail_config(""));
    let email = fresh_address("example.org");
    let r = request_email(&s, V1, &email, "secret-1", 1);
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    let sid = r.json()["sid"].as_str().unwrap().to_owned();

    let mails = wait_for(&email, 1);
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(
        mail.contains("Subject: Confirm your e-mail address for Example.org"),
        "{mail}"
    );
    assert!(
        mail.contains("From: \"Example Identity\" <identity@example.org>"),
        "{mail}"
    );
    assert!(
        mail.contains("Message-ID: <") && mail.contains("Date: "),
        "{mail}"
    );
    let link = link_in(mail);
    assert!(
        link.starts_with("https://example.org/_matrix/identity/v2/validate/email/submitToken?"),
        "{link}"
    );
    assert_eq!(param(&link, "sid"), sid);
    let token = param(&link, "token");
    assert_eq!(token.len(), 32, "{token}");

    // Not yet validated.
    s.get(&format!(
        "{V1}/3pid/getValidated3pid?sid={sid}&client_secret=secret-1"
    ))
    .assert_error(400, "M_SESSION_NOT_VALIDATED");
    // Wrong token, wrong secret, unknown sid.
    let submit = |sid: &str, secret: &str, token: &str| {
        post(
            &s,
            &format!("{V1}/validate/email/submitToken"),
            &json!({"sid": sid, "client_secret": secret, "token": token}),
        )
    };
    submit(&sid, "secret-1", "wrong").assert_error(400, "M_TOKEN_INCORRECT");
    submit(&sid, "secret-2", &token).assert_error(404, "M_NO_VALID_SESSION");
    submit("nosuchsid", "secret-1", &token).assert_error(404, "M_NO_VALID_SESSION");

    let r = submit(&sid, "secret-1", &token);
    assert_eq!((r.status, r.json()), (200, json!({"success": true})));
    let v = s
        .get(&format!(
            "{V1}/3pid/getValidated3pid?sid={sid}&client_secret=secret-1"
        ))
        .json();
    assert_eq!(v["medium"], "email");
    assert_eq!(v["address"], email.to_lowercase());
    assert!(
        v["validated_at"].as_i64().unwrap() > mxisd::now_ms() - 60_000,
        "{v}"
    );
    s.get(&format!(
        "{V1}/3pid/getValidated3pid?sid={sid}&client_secret=other"
    ))
    .assert_error(404, "M_NO_VALID_SESSION");
}

#[test]
fn a_retry_with_the_same_send_attempt_sends_nothing_and_a_new_one_resends() {
    let s = Mxisd::start(&mail_config(""));
    let email = fresh_address("example.org");
    let sid = request_email(&s, V1, &email, "s", 1).json()["sid"].clone();
    assert_eq!(wait_for(&email, 1).len(), 1);
    // The same attempt (a client's retry): the same sid, no mail.
    assert_eq!(request_email(&s, V1, &email, "s", 1).json()["sid"], sid);
    assert_eq!(
        request_email(&s, V1, &email.to_uppercase(), "s", 0).json()["sid"],
        sid
    );
    // A higher attempt: the same session, a new mail; both links work until validated.
    assert_eq!(request_email(&s, V1, &email, "s", 2).json()["sid"], sid);
    let mails = wait_for(&email, 2);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        crate::support::mail::mails_to(&email).len(),
        2,
        "exactly two mails"
    );
    let first = param(&link_in(&mails[0]), "token");
    let second = param(&link_in(&mails[1]), "token");
    assert_ne!(first, second);
    let r = post(
        &s,
        &format!("{V1}/validate/email/submitToken"),
        &json!({"sid": sid, "client_secret": "s", "token": first}),
    );
    assert_eq!(r.status, 200, "the first token stays valid: {}", r.text);
    // Another secret is another session.
    assert_ne!(request_email(&s, V1, &email, "t", 1).json()["sid"], sid);
}

#[test]
fn the_link_shows_a_page_and_redirects_to_the_stored_next_link() {
    let s = Mxisd::start(&mail_config(""));
    let email = fresh_address("example.org");
    let r = post(
        &s,
        &format!("{V1}/validate/email/requestToken"),
        &json!({"client_secret": "p", "email": email, "send_attempt": 1, "next_link": "https://app.example.org/done?x=1"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let link = link_in(&wait_for(&email, 1)[0]);
    let path = link.trim_start_matches("https://example.org");

    // A wrong token: the failure page, 400, no redirect.
    let wrong = path.replace(&param(&link, "token"), "nottheone");
    let r = Response::from(support::agent().get(s.url(&wrong)).call());
    assert_eq!(r.status, 400);
    assert!(r.header("Content-Type").unwrap().starts_with("text/html"));
    assert!(r.text.contains("not the right one"), "{}", r.text);

    // The link from the mail, with a next_link of its own that must be ignored.
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build(),
    );
    let hostile = format!("{path}&next_link=https%3A%2F%2Fevil.example%2F");
    let r = Response::from(agent.get(s.url(&hostile)).call());
    assert_eq!(r.status, 302, "{}", r.text);
    assert_eq!(
        r.header("Location"),
        Some("https://app.example.org/done?x=1")
    );
    assert!(r.text.contains("Address confirmed"), "{}", r.text);
}

#[test]
fn v2_sessions_need_a_token_but_the_link_does_not() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Mxisd::start(&mail_config(&federation_config(
        "  ipRangeWhitelist: ['127.0.0.0/8']\n",
    )));
    let email = fresh_address("example.org");
    request_email(&s, V2, &email, "v", 1).assert_error(401, "M_UNAUTHORIZED");
    let token = v2_token(&s, &hs, "dave");
    let agent = support::agent();
    let r = Response::from(
        agent
            .post(s.url(&format!("{V2}/validate/email/requestToken")))
            .header("Authorization", &format!("Bearer {token}"))
            .send(json!({"client_secret": "v", "email": email, "send_attempt": 1}).to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let link = link_in(&wait_for(&email, 1)[0]);
    let r = Response::from(
        agent
            .get(s.url(link.trim_start_matches("https://example.org")))
            .call(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains(&email.to_lowercase()), "{}", r.text);
}

#[test]
fn bad_input_is_refused_with_the_spec_errors() {
    let s = Mxisd::start(&mail_config(""));
    let path = format!("{V1}/validate/email/requestToken");
    for bad in [
        "not-an-address",
        "a@b.c\r\nBcc: victim@example.org",
        "x@y.test@z.test",
        "<a@example.org>",
    ] {
        post(
            &s,
            &path,
            &json!({"client_secret": "c", "email": bad, "send_attempt": 1}),
        )
        .assert_error(400, "M_INVALID_EMAIL");
    }
    post(
        &s,
        &path,
        &json!({"client_secret": "bad secret!", "email": "a@example.org", "send_attempt": 1}),
    )
    .assert_error(400, "M_INVALID_PARAM");
    post(
        &s,
        &path,
        &json!({"client_secret": "c", "email": "a@example.org"}),
    )
    .assert_error(400, "M_MISSING_PARAMS");
    post(&s, &path, &json!({"client_secret": "c", "email": "a@example.org", "send_attempt": 1, "next_link": "https://x.example/\r\nSet-Cookie: a=b"}))
        .assert_error(400, "M_INVALID_PARAM");
    post(
        &s,
        &format!("{V1}/validate/msisdn/requestToken"),
        &json!({"client_secret": "c", "country": "GB", "phone_number": "12", "send_attempt": 1}),
    )
    .assert_error(400, "M_INVALID_ADDRESS");
}

#[test]
fn a_mail_that_cannot_be_sent_leaves_no_session() {
    let silent_port = support::pg_cluster::free_port(); // nothing listens there
    let s = Mxisd::start(&format!(
        "threepid:\n  medium:\n    email:\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {silent_port}\n          tls: 0\n          timeout: 2\n"
    ));
    let r = request_email(&s, V1, "nobody@example.org", "x", 1);
    r.assert_error(500, "M_EMAIL_SEND_ERROR");
    assert!(s.wait_for_log("could not be sent"), "{}", s.log());
    // The retry with the same attempt tries again (nothing half-made answered it).
    request_email(&s, V1, "nobody@example.org", "x", 1).assert_error(500, "M_EMAIL_SEND_ERROR");
}

#[test]
fn the_policy_decides_what_is_validated_here() {
    // No scopes written: everything here (mxisd 1.4, ma1sd).
    let s = Mxisd::start(&mail_config(""));
    let gmail = fresh_address("gmail.example");
    assert_eq!(request_email(&s, V1, &gmail, "a", 1).status, 200);
    drop(s);
    // The seed's default table: local addresses here, other ones only remotely.
    let s = Mxisd::start(&mail_config(
        "session:\n  policy:\n    validation:\n      forLocal:\n        enabled: true\n",
    ));
    assert_eq!(
        request_email(&s, V1, &fresh_address("example.org"), "a", 1).status,
        200
    );
    let body = request_email(&s, V1, &fresh_address("gmail.example"), "a", 1)
        .assert_error(403, "M_FORBIDDEN");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("forRemote.toRemote"),
        "{body}"
    );
    drop(s);
    // Local only (the seed's first example).
    let s = Mxisd::start(&mail_config("session:\n  policy:\n    validation:\n      enabled: true\n      forLocal:\n        enabled: true\n        toLocal: true\n        toRemote:\n          enabled: false\n      forRemote:\n        enabled: true\n        toLocal: true\n        toRemote:\n          enabled: false\n"));
    assert_eq!(
        request_email(&s, V1, &fresh_address("gmail.example"), "a", 1).status,
        200
    );
    drop(s);
    // Everything remote (the seed's second example).
    let s = Mxisd::start(&mail_config("session:\n  policy:\n    validation:\n      enabled: true\n      forLocal:\n        enabled: true\n        toLocal: false\n        toRemote:\n          enabled: true\n      forRemote:\n        enabled: true\n        toLocal: false\n        toRemote:\n          enabled: true\n"));
    let body = request_email(&s, V1, &fresh_address("example.org"), "a", 1)
        .assert_error(403, "M_FORBIDDEN");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("forLocal.toRemote"),
        "{body}"
    );
    drop(s);
    // Sessions off (the seed's third example).
    let s = Mxisd::start(&mail_config(
        "session:\n  policy:\n    validation:\n      enabled: false\n",
    ));
    let body = request_email(&s, V1, &fresh_address("example.org"), "a", 1)
        .assert_error(403, "M_FORBIDDEN");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("session.policy.validation.enabled"),
        "{body}"
    );
}
