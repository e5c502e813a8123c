//! What Element does, with the client library inside it: matrix-js-sdk from npm (installed
//! by tests/services/up.sh, pinned by tests/services/element/package-lock.json) run by node,
//! against a real Synapse and mxisd behind nginx. And the numbers real clients send in the
//! forms they send them (`send_attempt: "1"`, from the SDK's `sendAttempt.toString()`).

use crate::support::fake_homeserver::{federation_config, v2_token, FakeHomeserver, FakeTwilio};
use crate::support::mail::{link_in, wait_for};
use crate::support::services::{ensure_up, get};
use crate::support::{self, Mxisd, Response};
use crate::synapse::{client_api, identity_server_for_synapse, synapse_user};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const V1: &str = "/_matrix/identity/api/v1";
const V2: &str = "/_matrix/identity/v2";

/// Whether node runs here: without it the SDK test cannot run, and fails saying so.
fn node_present() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Element's "Settings → Discovery → share this e-mail" through matrix-js-sdk
/// (tests/services/element/flow.mjs): an OpenID token from Synapse registered with mxisd,
/// the terms agreed, a validation mail requested (`send_attempt` sent as a string), its
/// link followed, the address bound through Synapse and found by a hashed lookup, then
/// unbound through Synapse and found no more.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn element_shares_and_revokes_an_email_through_matrix_js_sdk() {
    assert!(
        node_present(),
        "node is not installed: matrix-js-sdk cannot run (install Node.js >= 20)"
    );
    ensure_up();
    let sdk_dir = get("ELEMENT_SDK_DIR");
    assert!(
        Path::new(sdk_dir)
            .join("node_modules/matrix-js-sdk/package.json")
            .is_file(),
        "matrix-js-sdk is not installed in {sdk_dir}: run tests/services/up.sh"
    );
    let (user_id, access_token) = synapse_user(&format!("element{}", std::process::id()));
    let policy = "policy:\n  policies:\n    privacy:\n      version: '1.0'\n      terms:\n        en:\n          name: 'Privacy'\n          url: 'https://example.org/privacy-en.html'\n";
    let (s, id_server, _nginx) =
        identity_server_for_synapse(&format!("binds:\n  local:\n    enabled: true\n{policy}"));
    let email = format!(
        "element-{}-{}@example.org",
        std::process::id(),
        mxisd::now_ms()
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/services/element/flow.mjs");
    let mut node = Command::new("node")
        .arg(&script)
        .env("SDK_DIR", sdk_dir)
        .env("HS_URL", client_api(""))
        .env("USER_ID", &user_id)
        .env("ACCESS_TOKEN", &access_token)
        .env("IS_URL", format!("https://{id_server}"))
        .env("EMAIL", &email)
        .env(
            "NODE_EXTRA_CA_CERTS",
            format!("{}/tls/ca.pem", get("MXISD_TEST_DIR")),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let mut stdin = node.stdin.take().unwrap();
    let stdout = BufReader::new(node.stdout.take().unwrap());
    // The SDK's own logging goes to stderr: drained aside, so that it never fills the pipe.
    let mut stderr_pipe = node.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr_pipe, &mut text).ok();
        text
    });
    // The script ends itself within 60 s (its own deadline): reading to its end is bounded.
    let mut steps: Vec<Value> = Vec::new();
    for line in stdout.lines() {
        let line = line.expect("read the flow's output");
        let step: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a line of the flow: {line}: {e}"));
        if step["step"] == "requestEmailToken" {
            // The user opens the mail and follows its link.
            let mails = wait_for(&email, 1);
            let link = mails.first().map(|m| link_in(m)).unwrap_or_default();
            writeln!(stdin, "{link}").expect("give the flow the link");
        }
        steps.push(step);
    }
    let status = node.wait().expect("wait for node");
    let stderr = stderr.join().unwrap_or_default();
    let shown = steps
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    println!("matrix-js-sdk flow:\n{shown}");
    let context = format!(
        "flow:\n{shown}\nnode's stderr:\n{stderr}\nmxisd:\n{}",
        s.log()
    );
    assert!(status.success(), "{context}");

    let expected = json!([
        {"step": "getOpenIdToken", "matrix_server_name": get("SYNAPSE_SERVER_NAME"), "expires_in": 3600},
        {"step": "registerWithIdentityServer", "token": "string"},
        {"step": "getTerms", "urls": ["https://example.org/privacy-en.html"]},
        {"step": "agreeToTerms"},
        {"step": "requestEmailToken", "sid": "string", "mail_to": email},
        {"step": "link", "status": 200},
        {"step": "bindThreePid", "id_server": id_server},
        {"step": "identityHashedLookup", "found": [{"address": email, "mxid": user_id}]},
        {"step": "unbindThreePid", "id_server_unbind_result": "success"},
        {"step": "identityHashedLookup", "found": []},
        {"step": "done"},
    ]);
    assert_eq!(Value::Array(steps), expected, "{context}");
}

/// An e-mail channel to the test sink, SMS through a fake Twilio, and homeservers on
/// loopback allowed (for v2 tokens from a fake homeserver).
fn clients_server(twilio: &FakeTwilio) -> Mxisd {
    Mxisd::start(&format!(
        "threepid:\n  medium:\n    email:\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: 0\n{}{}",
        get("SMTP_PORT"),
        twilio.config(),
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n"),
    ))
}

fn request_token(s: &Mxisd, path: &str, token: Option<&str>, body: &Value) -> Response {
    let mut request = support::agent().post(s.url(path));
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    Response::from(request.send(body.to_string()))
}

/// `send_attempt` as an integer or a string of digits, on e-mail and msisdn, v1 and v2;
/// both forms are the same number (a retry with the other form sends nothing). Anything
/// else is 400 M_BAD_JSON. And `expires_in` of an OpenID token as a string is accepted.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn send_attempt_as_a_string_of_digits_on_every_request_token() {
    let twilio = FakeTwilio::start(&[]);
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = clients_server(&twilio);
    let token = v2_token(&s, &hs, "erin");
    let email = |n: usize| {
        format!(
            "digits{}-{n}-{}@example.org",
            std::process::id(),
            mxisd::now_ms()
        )
    };
    let email_body = |address: &str, attempt: Value| json!({"client_secret": "digits", "email": address, "send_attempt": attempt});
    let sms_body = |number: &str, attempt: Value| json!({"client_secret": "digits", "country": "GB", "phone_number": number, "send_attempt": attempt});

    for (prefix, auth, n) in [(V1, None, 1), (V2, Some(token.as_str()), 2)] {
        let path = format!("{prefix}/validate/email/requestToken");
        let address = email(n);
        let r = request_token(&s, &path, auth, &email_body(&address, json!("1")));
        assert_eq!(r.status, 200, "{prefix}: {}\n{}", r.text, s.log());
        let sid = r.json()["sid"].clone();
        assert_eq!(wait_for(&address, 1).len(), 1);
        // The integer 1 is the same attempt: the same session, nothing sent.
        let r = request_token(&s, &path, auth, &email_body(&address, json!(1)));
        assert_eq!((r.status, r.json()["sid"].clone()), (200, sid.clone()));
        // "2" is a higher one: sent again.
        let r = request_token(&s, &path, auth, &email_body(&address, json!("2")));
        assert_eq!((r.status, r.json()["sid"].clone()), (200, sid));
        assert_eq!(wait_for(&address, 2).len(), 2);
        assert!(link_in(&wait_for(&address, 2)[1]).contains("submitToken"));

        let path = format!("{prefix}/validate/msisdn/requestToken");
        let sent = twilio.messages().len();
        let number = format!("07911 12345{n}");
        let r = request_token(&s, &path, auth, &sms_body(&number, json!("1")));
        assert_eq!(r.status, 200, "{prefix}: {}\n{}", r.text, s.log());
        assert_eq!(twilio.messages().len(), sent + 1);
    }

    let refused = email(9);
    let sent = twilio.messages().len();
    for bad in [
        json!(""),
        json!("abc"),
        json!("1.5"),
        json!(" 1"),
        json!("-1"),
        json!("+1"),
        json!("1e3"),
        json!("99999999999999999999"),
        json!(1.5),
        json!(true),
        json!(null),
        json!([1]),
        json!({"n": 1}),
    ] {
        for (prefix, auth) in [(V1, None), (V2, Some(token.as_str()))] {
            let path = format!("{prefix}/validate/email/requestToken");
            let err = request_token(&s, &path, auth, &email_body(&refused, bad.clone()))
                .assert_error(400, "M_BAD_JSON");
            assert!(
                err["error"]
                    .as_str()
                    .unwrap()
                    .contains("an integer or a string of digits"),
                "{bad}: {err}"
            );
            let path = format!("{prefix}/validate/msisdn/requestToken");
            request_token(&s, &path, auth, &sms_body("07911 123459", bad.clone()))
                .assert_error(400, "M_BAD_JSON");
        }
    }
    assert!(support::mail::mails_to(&refused).is_empty());
    assert_eq!(twilio.messages().len(), sent);

    // An OpenID token whose `expires_in` is a string: still registered.
    let name = format!("127.0.0.1:{}", hs.port);
    let body = json!({"access_token": format!("user:@frank:{name}"), "token_type": "Bearer", "matrix_server_name": name, "expires_in": "3600"});
    let r = s.post(&format!("{V2}/account/register"), &body.to_string());
    assert_eq!(r.status, 200, "{}", r.text);
}
