//! The v2 front door end to end with a real Synapse (from PyPI, started by tests/services):
//! a user registered on Synapse asks it for an OpenID token, registers that token with
//! mxisd, which verifies it over federation (TLS, checked against the test CA), and uses
//! the mxisd token.

use crate::support;
use crate::support::fake_homeserver::federation_config;
use crate::support::services::{ensure_up, get};
use crate::support::{Mxisd, Response};
use serde_json::{json, Value};
use std::process::Command;

pub(crate) fn client_api(path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", get("SYNAPSE_CLIENT_PORT"))
}

/// A new Synapse user (shared-secret registration) and its client access token.
pub(crate) fn synapse_user(localpart: &str) -> (String, String) {
    let out = Command::new(format!(
        "{}/bin/register_new_matrix_user",
        get("SYNAPSE_VENV")
    ))
    .args([
        "-u",
        localpart,
        "-p",
        "correct horse",
        "--no-admin",
        "-k",
        get("SYNAPSE_SHARED_SECRET"),
    ])
    .arg(client_api(""))
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": localpart},
        "password": "correct horse",
    });
    let r = Response::from(
        support::agent()
            .post(client_api("/_matrix/client/v3/login"))
            .send(login.to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    (
        body["user_id"].as_str().unwrap().to_owned(),
        body["access_token"].as_str().unwrap().to_owned(),
    )
}

fn openid_token(user_id: &str, access_token: &str) -> Value {
    let path = format!(
        "/_matrix/client/v3/user/{}/openid/request_token",
        user_id.replace('@', "%40").replace(':', "%3A")
    );
    let r = Response::from(
        support::agent()
            .post(client_api(&path))
            .header("Authorization", &format!("Bearer {access_token}"))
            .send("{}"),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_synapse_user_registers_and_uses_mxisd() {
    ensure_up();
    let localpart = format!("alice{}", std::process::id());
    let (user_id, access_token) = synapse_user(&localpart);
    assert_eq!(
        user_id,
        format!("@{localpart}:{}", get("SYNAPSE_SERVER_NAME"))
    );
    let openid = openid_token(&user_id, &access_token);
    assert_eq!(openid["matrix_server_name"], get("SYNAPSE_SERVER_NAME"));

    let allow = format!(
        "  ipRangeWhitelist: ['{}/32']\n",
        get("SYNAPSE_FEDERATION_ADDR")
    );
    let s = Mxisd::start(&federation_config(&allow));
    let r = s.post("/_matrix/identity/v2/account/register", &openid.to_string());
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let me = Response::from(
        support::agent()
            .get(s.url("/_matrix/identity/v2/account"))
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
    );
    assert_eq!((me.status, me.json()), (200, json!({ "user_id": user_id })));

    // Synapse itself rejects a token it never issued.
    let mut forged = openid.clone();
    forged["access_token"] = json!("forged-openid-token");
    s.post("/_matrix/identity/v2/account/register", &forged.to_string())
        .assert_error(401, "M_UNAUTHORIZED");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn without_the_allow_list_synapse_on_loopback_is_refused() {
    ensure_up();
    let s = Mxisd::start(&federation_config(""));
    let body = json!({"access_token": "x", "token_type": "Bearer", "matrix_server_name": get("SYNAPSE_SERVER_NAME"), "expires_in": 3600});
    let err = s
        .post("/_matrix/identity/v2/account/register", &body.to_string())
        .assert_error(502, "M_UNKNOWN");
    // The client learns nothing of where the name leads; the operator's log does.
    assert_eq!(err["error"], "homeserver unreachable or refused by policy");
    assert!(s.wait_for_log("is a loopback address"), "{}", s.log());
}

/// mxisd as Synapse reaches identity servers: behind nginx over TLS (the test CA's
/// certificate for `localhost`), its public URL that address; mail to the test sink, and
/// loopback homeservers allowed. `extra` comes first in the config. The server, the name
/// Synapse knows it by (`id_server`), and nginx.
pub(crate) fn identity_server_for_synapse(
    extra: &str,
) -> (Mxisd, String, support::balancer::Balancer) {
    let front = support::free_port();
    let id_server = format!("localhost:{front}");
    let dir = support::TempDir::new();
    let config = dir.join("mxisd.yaml");
    let extra = format!(
        "{extra}threepid:\n  medium:\n    email:\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: 0\n{}",
        get("SMTP_PORT"),
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    );
    let text = support::config_text(&dir, &dir.join("keys"), &extra).replace(
        "server:\n  port: 0\n",
        &format!("server:\n  port: 0\n  publicUrl: 'https://{id_server}'\n"),
    );
    std::fs::write(&config, text).unwrap();
    let s = Mxisd::spawn(dir, &config);
    let nginx = support::balancer::Balancer::start_on(front, &[s.addr], true);
    (s, id_server, nginx)
}

/// A Synapse user binds an address through the homeserver with mxisd (behind nginx over
/// TLS, as homeservers reach identity servers) as `id_server`, then unbinds it: Synapse's
/// unbind reaches mxisd signed with X-Matrix, and is accepted.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn synapse_binds_and_unbinds_through_mxisd() {
    ensure_up();
    let (user_id, access_token) = synapse_user(&format!("una{}", std::process::id()));
    let (s, id_server, _nginx) =
        identity_server_for_synapse("binds:\n  local:\n    enabled: true\n");

    // The client's identity-server token, from an OpenID token of the homeserver.
    let openid = openid_token(&user_id, &access_token);
    let r = s.post("/_matrix/identity/v2/account/register", &openid.to_string());
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    let id_token = r.json()["token"].as_str().unwrap().to_owned();
    // The client validates an address with mxisd.
    let email = format!("una-{}-{}@example.org", std::process::id(), mxisd::now_ms());
    let r = Response::from(
        support::agent()
            .post(s.url("/_matrix/identity/v2/validate/email/requestToken"))
            .header("Authorization", &format!("Bearer {id_token}"))
            .send(
                json!({"client_secret": "synapse-bind", "email": email, "send_attempt": 1})
                    .to_string(),
            ),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.json()["sid"].as_str().unwrap().to_owned();
    let link = support::mail::link_in(&support::mail::wait_for(&email, 1)[0]);
    assert_eq!(
        s.get(link.trim_start_matches(&format!("https://{id_server}")))
            .status,
        200
    );

    // Synapse binds it with mxisd.
    let synapse = |path: &str, body: Value| {
        Response::from(
            support::agent()
                .post(client_api(path))
                .header("Authorization", &format!("Bearer {access_token}"))
                .send(body.to_string()),
        )
    };
    let r = synapse(
        "/_matrix/client/v3/account/3pid/bind",
        json!({"client_secret": "synapse-bind", "sid": sid, "id_server": id_server, "id_access_token": id_token}),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    let lookup = format!("/_matrix/identity/api/v1/lookup?medium=email&address={email}");
    assert_eq!(s.get(&lookup).json()["mxid"], user_id.as_str());

    // Synapse unbinds it: its request is signed with X-Matrix and accepted.
    let r = synapse(
        "/_matrix/client/v3/account/3pid/unbind",
        json!({"medium": "email", "address": email, "id_server": id_server}),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    assert_eq!(
        r.json()["id_server_unbind_result"],
        "success",
        "{}",
        s.log()
    );
    assert_eq!(s.get(&lookup).json(), json!({}));
}

/// A Synapse user invites an address by e-mail with mxisd as identity server; the invitee
/// (another Synapse user) validates and binds that address through Synapse; mxisd's onbind
/// reaches Synapse, which checks the invite's keys with mxisd and invites the user.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_invite_by_email_reaches_the_invitee_through_synapse() {
    ensure_up();
    let (alice, alice_token) = synapse_user(&format!("inviter{}", std::process::id()));
    let (bob, bob_token) = synapse_user(&format!("invitee{}", std::process::id()));
    let (s, id_server, _nginx) = identity_server_for_synapse("");
    let id_token = |user: &str, token: &str| {
        let openid = openid_token(user, token);
        let r = s.post("/_matrix/identity/v2/account/register", &openid.to_string());
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["token"].as_str().unwrap().to_owned()
    };
    let client = |token: &str, path: &str, body: Value| {
        Response::from(
            support::agent()
                .post(client_api(path))
                .header("Authorization", &format!("Bearer {token}"))
                .send(body.to_string()),
        )
    };

    let r = client(
        &alice_token,
        "/_matrix/client/v3/createRoom",
        json!({"name": "Tea room"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let room = r.json()["room_id"].as_str().unwrap().to_owned();
    let email = format!("bob-{}-{}@example.org", std::process::id(), mxisd::now_ms());
    let alice_id = id_token(&alice, &alice_token);
    let r = client(
        &alice_token,
        &format!(
            "/_matrix/client/v3/rooms/{}/invite",
            room.replace('!', "%21").replace(':', "%3A")
        ),
        json!({"id_server": id_server, "id_access_token": alice_id, "medium": "email", "address": email}),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    let mail = &support::mail::wait_for(&email, 1)[0];
    assert!(mail.contains("Tea room"), "{mail}");

    // Bob validates the address with mxisd and binds it through Synapse.
    let bob_id = id_token(&bob, &bob_token);
    let r = Response::from(
        support::agent()
            .post(s.url("/_matrix/identity/v2/validate/email/requestToken"))
            .header("Authorization", &format!("Bearer {bob_id}"))
            .send(
                json!({"client_secret": "bob-secret", "email": email, "send_attempt": 1})
                    .to_string(),
            ),
    );
    let sid = r.json()["sid"].as_str().unwrap().to_owned();
    let mails = support::mail::wait_for(&email, 2);
    let link = mails
        .iter()
        .find(|m| m.contains("submitToken?sid="))
        .map(|m| support::mail::link_in(m))
        .unwrap();
    assert_eq!(
        s.get(link.trim_start_matches(&format!("https://{id_server}")))
            .status,
        200
    );
    let r = client(
        &bob_token,
        "/_matrix/client/v3/account/3pid/bind",
        json!({"client_secret": "bob-secret", "sid": sid, "id_server": id_server, "id_access_token": bob_id}),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());

    // Synapse got the onbind and invited Bob.
    let state = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
        room.replace('!', "%21").replace(':', "%3A"),
        bob.replace('@', "%40").replace(':', "%3A")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = Response::from(
            support::agent()
                .get(client_api(&state))
                .header("Authorization", &format!("Bearer {alice_token}"))
                .call(),
        );
        if r.status == 200 && r.json()["membership"] == "invite" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Bob was never invited: {} {}\n{}",
            r.status,
            r.text,
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
