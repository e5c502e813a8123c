//! 3PID validation sessions against the real binary: e-mail through the test SMTP sink,
//! the link's page and redirect, retries, wrong and expired tokens, the policy.

use crate::support::fake_homeserver::{federation_config, v2_token, FakeHomeserver};
use crate::support::mail::{link_in, param, wait_for, TlsSink};
use crate::support::services::get;
use crate::support::{self, Mxisd, Response};
use serde_json::{json, Value};

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
    crate::support::mail::fresh_address("sess", domain)
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
#[ignore = "needs root and the test services: bash tests/run.sh"]
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
    // A sid or secret that cannot be one names no session either, and the answer does not
    // say which of the two it was.
    for (sid, secret) in [("../x", "secret-1"), ("", "secret-1"), (&sid, "sécret-1")] {
        submit(sid, secret, &token).assert_error(404, "M_NO_VALID_SESSION");
    }
    s.get(&format!(
        "{V1}/3pid/getValidated3pid?sid={sid}&client_secret=secret%2F1"
    ))
    .assert_error(404, "M_NO_VALID_SESSION");

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
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn with_only_v1_served_the_mail_links_to_v1() {
    let dir = support::TempDir::new();
    let config = dir.join("mxisd.yaml");
    let text = support::config_text(&dir, &dir.join("keys"), &mail_config("")).replace(
        "matrix:\n  domain: example.org\n",
        "matrix:\n  domain: example.org\n  v2: false\n",
    );
    std::fs::write(&config, text).unwrap();
    let s = Mxisd::spawn(dir, &config);
    let email = fresh_address("example.org");
    assert_eq!(request_email(&s, V1, &email, "v1only", 1).status, 200);
    let link = link_in(&wait_for(&email, 1)[0]);
    assert!(
        link.starts_with("https://example.org/_matrix/identity/api/v1/validate/email/submitToken?"),
        "{link}"
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
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
#[ignore = "needs root and the test services: bash tests/run.sh"]
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
    let agent = support::agent_without_redirects();
    let hostile = format!("{path}&next_link=https%3A%2F%2Fevil.example%2F");
    let r = Response::from(agent.get(s.url(&hostile)).call());
    assert_eq!(r.status, 302, "{}", r.text);
    assert_eq!(
        r.header("Location"),
        Some("https://app.example.org/done?x=1")
    );
    assert!(r.text.contains("Address confirmed"), "{}", r.text);
}

/// A `next_link` with non-ASCII characters (an IRI) is kept as its URI: the link's redirect
/// carries it as `Location`, each such character percent-encoded as UTF-8.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_non_ascii_next_link_redirects_to_its_percent_encoded_uri() {
    let s = Mxisd::start(&mail_config(""));
    let email = fresh_address("example.org");
    let r = post(
        &s,
        &format!("{V1}/validate/email/requestToken"),
        &json!({"client_secret": "iri", "email": email, "send_attempt": 1, "next_link": "https://example.org/vérifié?x=ü"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let link = link_in(&wait_for(&email, 1)[0]);
    let agent = support::agent_without_redirects();
    let r = Response::from(
        agent
            .get(s.url(link.trim_start_matches("https://example.org")))
            .call(),
    );
    assert_eq!(r.status, 302, "{}\n{}", r.text, s.log());
    assert_eq!(
        r.header("Location"),
        Some("https://example.org/v%C3%A9rifi%C3%A9?x=%C3%BC"),
        "{}",
        s.log()
    );
    assert!(!s.log().contains("not written"), "{}", s.log());
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
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
    // The client secret: 1 to 255 of [0-9a-zA-Z.=_-], checked after the address and the
    // next_link (a request wrong in both is told of those first, as it always was).
    let longest = "=".repeat(255);
    let r = request_email(&s, V1, &fresh_address("example.org"), &longest, 1);
    assert_eq!(r.status, 200, "{}", r.text);
    for bad in ["bad secret!", "a/b", "sécret", "", &"a".repeat(256)] {
        let r = post(
            &s,
            &path,
            &json!({"client_secret": bad, "email": "a@example.org", "send_attempt": 1}),
        );
        r.assert_error(400, "M_INVALID_PARAM");
        assert_eq!(
            r.json()["error"],
            "client_secret must be 1 to 255 of [0-9a-zA-Z.=_-]",
            "{bad:?}"
        );
    }
    post(
        &s,
        &path,
        &json!({"client_secret": "a/b", "email": "not-an-address", "send_attempt": 1}),
    )
    .assert_error(400, "M_INVALID_EMAIL");
    let r = post(
        &s,
        &path,
        &json!({"client_secret": "a/b", "email": "a@example.org", "send_attempt": 1, "next_link": "ftp://x.example/"}),
    );
    r.assert_error(400, "M_INVALID_PARAM");
    assert!(r.text.contains("next_link"), "{}", r.text);
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
    let silent_port = support::free_port(); // nothing listens there
    let s = Mxisd::start(&format!(
        "threepid:\n  medium:\n    email:\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {silent_port}\n          tls: 0\n          timeout: 2\n"
    ));
    let r = request_email(&s, V1, "nobody@example.org", "x", 1);
    r.assert_error(500, "M_EMAIL_SEND_ERROR");
    assert!(s.wait_for_log("could not be sent"), "{}", s.log());
    // The retry with the same attempt tries again (nothing half-made answered it).
    request_email(&s, V1, "nobody@example.org", "x", 1).assert_error(500, "M_EMAIL_SEND_ERROR");
}

/// A mail server that sends its greeting one byte at a time, each within any per-read
/// timeout, and never ends it: the request fails when the SMTP `timeout` (2 s) is over,
/// however many reads that took.
#[test]
fn a_mail_server_trickling_its_greeting_is_given_up_at_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                use std::io::Write;
                // "220-" lines of 200 bytes (30 s each at this pace) forever: a reply that
                // never ends, and no line ends before the test does.
                let line = format!("220-{}\r\n", "x".repeat(194));
                for byte in line.as_bytes().iter().cycle() {
                    if conn.write_all(&[*byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(150));
                }
            });
        }
    });
    let s = Mxisd::start(&format!(
        "threepid:\n  medium:\n    email:\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {port}\n          tls: 0\n          timeout: 2\n"
    ));
    let started = std::time::Instant::now();
    request_email(&s, V1, "nobody@example.org", "x", 1).assert_error(500, "M_EMAIL_SEND_ERROR");
    let took = started.elapsed();
    // The deadline (2 s), not a per-read or per-line timeout that the trickle renews.
    let secs = std::time::Duration::from_secs;
    assert!(took >= secs(2) && took < secs(6), "{took:?}");
    assert!(
        s.wait_for_log("greeting: reading: the server took longer than the timeout"),
        "{}",
        s.log()
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_policy_decides_what_is_validated_here() {
    // No scopes written: everything here (mxisd 1.4, ma1sd).
    let s = Mxisd::start(&mail_config(""));
    let gmail = fresh_address("gmail.example");
    assert_eq!(request_email(&s, V1, &gmail, "a", 1).status, 200);
    drop(s);
    // The seed's default table: local addresses here, other ones only remotely, on the
    // first server of mxisd's `matrix-org` list: our mail starts it (remote_sessions.rs
    // walks the rest); nothing is asked of that server before the user opens our link.
    let s = Mxisd::start(&mail_config(
        "session:\n  policy:\n    validation:\n      forLocal:\n        enabled: true\n",
    ));
    assert_eq!(
        request_email(&s, V1, &fresh_address("example.org"), "a", 1).status,
        200
    );
    let gmail = fresh_address("gmail.example");
    assert_eq!(request_email(&s, V1, &gmail, "a", 1).status, 200);
    assert_eq!(wait_for(&gmail, 1).len(), 1);
    assert!(!s.log().contains("matrix.org"), "{}", s.log());
    drop(s);
    // A `toRemote.server` naming no list: nothing offered, so remote addresses are refused.
    let s = Mxisd::start(&mail_config(
        "session:\n  policy:\n    validation:\n      forRemote:\n        toRemote:\n          server: 'nosuch'\n",
    ));
    let body = request_email(&s, V1, &fresh_address("gmail.example"), "a", 1)
        .assert_error(403, "M_FORBIDDEN");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("forRemote.toRemote.server"),
        "{body}"
    );
    assert!(
        s.log().contains("toRemote.server 'nosuch' names no list"),
        "{}",
        s.log()
    );
    drop(s);
    // Local only (the seed's first example).
    let s = Mxisd::start(&mail_config("session:\n  policy:\n    validation:\n      enabled: true\n      forLocal:\n        enabled: true\n        toLocal: true\n        toRemote:\n          enabled: false\n      forRemote:\n        enabled: true\n        toLocal: true\n        toRemote:\n          enabled: false\n"));
    assert_eq!(
        request_email(&s, V1, &fresh_address("gmail.example"), "a", 1).status,
        200
    );
    drop(s);
    // Everything remote (the seed's second example): our mail starts the remote session;
    // a phone number cannot go remote (its code opens no page of ours).
    let s = Mxisd::start(&mail_config("session:\n  policy:\n    validation:\n      enabled: true\n      forLocal:\n        enabled: true\n        toLocal: false\n        toRemote:\n          enabled: true\n      forRemote:\n        enabled: true\n        toLocal: false\n        toRemote:\n          enabled: true\n"));
    let local = fresh_address("example.org");
    assert_eq!(request_email(&s, V1, &local, "a", 1).status, 200);
    assert_eq!(wait_for(&local, 1).len(), 1);
    let body = post(
        &s,
        &format!("{V1}/validate/msisdn/requestToken"),
        &json!({"client_secret": "a", "country": "GB", "phone_number": "07911 123457", "send_attempt": 1}),
    )
    .assert_error(403, "M_FORBIDDEN");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("forRemote.toRemote"),
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

fn request_sms(s: &Mxisd, number: &str, secret: &str, attempt: i64) -> Response {
    post(
        s,
        &format!("{V1}/validate/msisdn/requestToken"),
        &json!({"client_secret": secret, "country": "GB", "phone_number": number, "send_attempt": attempt}),
    )
}

fn submit_sms(s: &Mxisd, sid: &Value, secret: &str, code: &str) -> Response {
    post(
        s,
        &format!("{V1}/validate/msisdn/submitToken"),
        &json!({"sid": sid, "client_secret": secret, "token": code}),
    )
}

#[test]
fn sms_session_through_the_twilio_api() {
    let twilio = support::fake_homeserver::FakeTwilio::start(&["+447911000666"]);
    let s = Mxisd::start(&format!("threepid:\n  medium:\n{}", twilio.config()));
    let r = request_sms(&s, "07911 123456", "sms-1", 1);
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    let sid = r.json()["sid"].clone();
    let sent = twilio.messages();
    assert_eq!(sent.len(), 1);
    let (to, from, body) = &sent[0];
    assert_eq!(
        (to.as_str(), from.as_str()),
        ("+447911123456", "+15550001111")
    );
    let code = twilio.code(0);
    assert_eq!(code.len(), 6, "{body}");
    assert!(
        body.starts_with("Your Example.org verification code is "),
        "{body}"
    );
    // The same attempt: nothing sent.
    assert_eq!(
        request_sms(&s, "+44 7911 123456", "sms-1", 1).json()["sid"],
        sid
    );
    assert_eq!(twilio.messages().len(), 1);

    submit_sms(&s, &sid, "sms-1", "000000").assert_error(400, "M_TOKEN_INCORRECT");
    assert_eq!(
        submit_sms(&s, &sid, "sms-1", &code).json(),
        json!({"success": true})
    );
    let v = s
        .get(&format!(
            "{V1}/3pid/getValidated3pid?sid={}&client_secret=sms-1",
            sid.as_str().unwrap()
        ))
        .json();
    assert_eq!(
        (v["medium"].as_str(), v["address"].as_str()),
        (Some("msisdn"), Some("447911123456"))
    );

    // A number Twilio refuses: 500 M_SEND_ERROR, nothing kept.
    request_sms(&s, "07911 000666", "sms-2", 1).assert_error(500, "M_SEND_ERROR");
}

#[test]
fn five_wrong_codes_end_an_sms_session_and_a_resend_starts_a_fresh_count() {
    let twilio = support::fake_homeserver::FakeTwilio::start(&[]);
    let s = Mxisd::start(&format!("threepid:\n  medium:\n{}", twilio.config()));
    let sid = request_sms(&s, "07911 222333", "five", 1).json()["sid"].clone();
    let code = twilio.code(0);
    let wrong = if code == "111111" { "222222" } else { "111111" };
    for _ in 0..4 {
        submit_sms(&s, &sid, "five", wrong).assert_error(400, "M_TOKEN_INCORRECT");
    }
    submit_sms(&s, &sid, "five", wrong).assert_error(400, "M_TOKEN_INCORRECT");
    // The fifth wrong code ended it: even the right one is refused now.
    submit_sms(&s, &sid, "five", &code).assert_error(400, "M_NO_VALID_SESSION");
    // A resend (higher attempt) starts a fresh count, with a new code.
    assert_eq!(
        request_sms(&s, "07911 222333", "five", 2).json()["sid"],
        sid
    );
    let new_code = twilio.code(1);
    assert_eq!(
        submit_sms(&s, &sid, "five", &new_code).json(),
        json!({"success": true})
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_expired_session_is_refused_and_swept() {
    let s = Mxisd::start(&mail_config("session:\n  expiration: 1\n"));
    let email = fresh_address("example.org");
    let sid = request_email(&s, V1, &email, "e", 1).json()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = param(&link_in(&wait_for(&email, 1)[0]), "token");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    post(
        &s,
        &format!("{V1}/validate/email/submitToken"),
        &json!({"sid": sid, "client_secret": "e", "token": token}),
    )
    .assert_error(400, "M_SESSION_EXPIRED");
    s.get(&format!(
        "{V1}/3pid/getValidated3pid?sid={sid}&client_secret=e"
    ))
    .assert_error(400, "M_SESSION_EXPIRED");
    // A new request for the expired key is a new session.
    let again = request_email(&s, V1, &email, "e", 1).json()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(again, sid);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn mails_to_one_address_stop_at_its_burst_and_retries_cost_nothing() {
    let s = Mxisd::start(&mail_config(""));
    let email = fresh_address("example.org");
    let statuses: Vec<u16> = (1..=50)
        .map(|attempt| request_email(&s, V1, &email, "burst", attempt).status)
        .collect();
    assert_eq!(&statuses[..3], [200, 200, 200]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let limited = request_email(&s, V1, &email, "burst", 51);
    let body = limited.assert_error(429, "M_LIMIT_EXCEEDED");
    let wait = body["retry_after_ms"].as_u64().unwrap();
    assert!(wait > 1_000 && wait <= 60_000, "{body}");
    // A client's retry of an attempt that was sent costs nothing and still answers.
    assert_eq!(request_email(&s, V1, &email, "burst", 3).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(wait_for(&email, 3).len(), 3, "at most the burst of mails");
    assert_eq!(crate::support::mail::mails_to(&email).len(), 3);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn v1_request_token_only_from_the_allowed_networks_when_narrowed() {
    let s = Mxisd::start(&mail_config(
        "session:\n  v1:\n    allowedCidr: ['10.0.0.0/8']\n",
    ));
    request_email(&s, V1, &fresh_address("example.org"), "n", 1)
        .assert_error(403, "M_UNAUTHORIZED");
    let s = Mxisd::start(&mail_config(
        "session:\n  v1:\n    allowedCidr: ['127.0.0.0/8']\n",
    ));
    assert_eq!(
        request_email(&s, V1, &fresh_address("example.org"), "n", 1).status,
        200
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_mxisd_template_and_custom_pages_are_used_and_values_escaped() {
    let dir = support::TempDir::new();
    // A template as mxisd's are written: a whole message, mxisd's placeholders.
    let eml = dir.join("validate-local-template.eml");
    std::fs::write(
        &eml,
        "Subject: Your Matrix Validation Token\nFrom: \"%FROM_NAME%\" <%FROM_EMAIL%>\nTo: %RECIPIENT_ADDRESS%\nMIME-Version: 1.0\nContent-Type: multipart/alternative;\n  boundary=7REaIwWQCioQ6NaBlAQlg8ztbUQj6PKJ\n\n--7REaIwWQCioQ6NaBlAQlg8ztbUQj6PKJ\nContent-Type: text/plain; charset=UTF-8\nContent-Disposition: inline\n\nHello!\n\nValidate %RECIPIENT_ADDRESS% for %DOMAIN_PRETTY% with %VALIDATION_LINK%\n\n--7REaIwWQCioQ6NaBlAQlg8ztbUQj6PKJ\nContent-Type: text/html; charset=UTF-8\nContent-Disposition: inline\n\n<html><body><p>Validate for %DOMAIN_PRETTY% by <a href=\"%VALIDATION_LINK%\">clicking here</a> from %FROM_NAME%</p></body></html>\n\n--7REaIwWQCioQ6NaBlAQlg8ztbUQj6PKJ--\n",
    )
    .unwrap();
    let page = dir.join("success.html");
    std::fs::write(
        &page,
        "<html><body><p id=ok>Done for %RECIPIENT_ADDRESS%, next: %NEXT_URL%</p></body></html>\n",
    )
    .unwrap();
    let s = Mxisd::start(&format!(
        "threepid:\n  medium:\n    email:\n      identity:\n        from: 'identity@example.org'\n        name: 'Zoë <Identity> & Co'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: 0\n      generators:\n        template:\n          session:\n            validation:\n              local: '{}'\nview:\n  session:\n    onTokenSubmit:\n      success: '{}'\n",
        get("SMTP_PORT"),
        eml.display(),
        page.display()
    ));
    let email = fresh_address("example.org");
    let next = "https://app.example.org/?a=<script>alert(1)</script>";
    let r = post(
        &s,
        &format!("{V1}/validate/email/requestToken"),
        &json!({"client_secret": "m", "email": email, "send_attempt": 1, "next_link": next}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let mail = &wait_for(&email, 1)[0];
    assert!(
        mail.contains("Subject: Your Matrix Validation Token"),
        "{mail}"
    );
    // The display name: an encoded-word in the header, escaped in the HTML part.
    assert!(mail.contains("From: =?UTF-8?B?"), "{mail}");
    assert!(
        mail.contains("from Zoë &lt;Identity&gt; &amp; Co</p>"),
        "{mail}"
    );
    let link = link_in(mail);
    let agent = support::agent_without_redirects();
    let r = Response::from(
        agent
            .get(s.url(link.trim_start_matches("https://example.org")))
            .call(),
    );
    assert_eq!(r.status, 302);
    assert!(
        r.text
            .contains("next: https://app.example.org/?a=&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
        "{}",
        r.text
    );
}

/// A session's mail through `sink` with mxisd's `tls` mode; the requestToken's status.
fn send_over_tls(sink: &support::mail::TlsSink, tls: u8, ca: bool) -> u16 {
    let ca = if ca {
        format!("          caFile: '{}/tls/ca.pem'\n", get("MXISD_TEST_DIR"))
    } else {
        String::new()
    };
    let s = Mxisd::start(&format!(
        "threepid:\n  medium:\n    email:\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: {tls}\n          timeout: 5\n{ca}",
        sink.port
    ));
    request_email(&s, V1, &fresh_address("example.org"), "tls", 1).status
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn starttls_and_implicit_tls_check_the_certificate() {
    for implicit in [false, true] {
        let sink = TlsSink::start(implicit);
        let tls = if implicit { 3 } else { 2 };
        assert_eq!(
            send_over_tls(&sink, tls, true),
            200,
            "tls {tls} with the CA"
        );
        assert_eq!(sink_count_eventually(&sink, 1), 1);
        assert_eq!(
            send_over_tls(&sink, tls, false),
            500,
            "tls {tls} without the CA"
        );
        assert_eq!(sink.count(), 1, "nothing sent to an untrusted server");
    }
    // STARTTLS required by the server, and `tls: 1` (if offered) uses it.
    let sink = TlsSink::start(false);
    assert_eq!(send_over_tls(&sink, 1, true), 200);
    assert_eq!(sink_count_eventually(&sink, 1), 1);
}

fn sink_count_eventually(sink: &TlsSink, n: usize) -> usize {
    for _ in 0..100 {
        if sink.count() >= n {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sink.count()
}

/// Headless Chromium (Debian's) on `url`: the rendered DOM, and a screenshot saved at
/// `screenshot`, as a phone-sized window shows the page.
pub(crate) fn chromium(url: &str, screenshot: &std::path::Path) -> String {
    let profile = support::TempDir::new();
    let base = |c: &mut std::process::Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=412,915",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut shot = std::process::Command::new("chromium");
    base(&mut shot);
    let out = shot
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut dump = std::process::Command::new("chromium");
    base(&mut dump);
    let out = dump
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_link_page_renders_in_a_browser() {
    let s = Mxisd::start(&mail_config(""));
    let email = fresh_address("example.org");
    assert_eq!(request_email(&s, V1, &email, "browser", 1).status, 200);
    let link = link_in(&wait_for(&email, 1)[0]);
    let url = s.url(link.trim_start_matches("https://example.org"));
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let ok = chromium(&url, &shots.join("session-success.png"));
    assert!(ok.contains("<h1>Address confirmed</h1>"), "{ok}");
    assert!(ok.contains(&email.to_lowercase()), "{ok}");
    let bad = chromium(
        &url.replace("token=", "token=x"),
        &shots.join("session-failure.png"),
    );
    assert!(bad.contains("This link is not valid"), "{bad}");
    assert!(bad.contains("not the right one"), "{bad}");
    for name in ["session-success.png", "session-failure.png"] {
        let png = std::fs::read(shots.join(name)).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{name}: {} bytes",
            png.len()
        );
    }
}

#[test]
fn a_resend_that_sends_nothing_does_not_reset_the_count_of_wrong_codes() {
    let twilio = support::fake_homeserver::FakeTwilio::start(&[]);
    let s = Mxisd::start(&format!(
        "threepid:\n  medium:\n{}session:\n  rateLimit:\n    perAddress:\n      burst: 1\n      perMinute: 0\n",
        twilio.config()
    ));
    let r = request_sms(&s, "07911 123457", "brute", 1);
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    let sid = r.json()["sid"].clone();
    let code = twilio.code(0);
    let wrong = if code == "111111" { "222222" } else { "111111" };
    for _ in 0..5 {
        submit_sms(&s, &sid, "brute", wrong).assert_error(400, "M_TOKEN_INCORRECT");
    }
    // The resend is refused by the limit: nothing sent, and the session stays ended.
    request_sms(&s, "07911 123457", "brute", 2).assert_error(429, "M_LIMIT_EXCEEDED");
    assert_eq!(twilio.messages().len(), 1);
    submit_sms(&s, &sid, "brute", &code).assert_error(400, "M_NO_VALID_SESSION");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_login_is_never_sent_in_clear_unless_tls_is_off() {
    let with_login = |tls: u8| {
        Mxisd::start(&format!(
            "threepid:\n  medium:\n    email:\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: {tls}\n          login: someone\n          password: secret\n",
            get("SMTP_PORT")
        ))
    };
    // The test sink offers no STARTTLS (nor AUTH): with `tls: 1` the login is not sent.
    let s = with_login(1);
    request_email(&s, V1, &fresh_address("example.org"), "clear", 1)
        .assert_error(500, "M_EMAIL_SEND_ERROR");
    assert!(
        s.wait_for_log("not sending the login in clear"),
        "{}",
        s.log()
    );
}
