//! v2 accounts and terms over HTTP against the real binary, with homeservers played by
//! `tests/fakes/homeserver.py` over TLS (trusted through federation.tls.caFile) and names
//! resolved by the test dnsmasq.

use crate::support;
use crate::support::fake_homeserver::{federation_config, FakeHomeserver};
use crate::support::{canary, untouched, Mxisd, Response};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const V2: &str = "/_matrix/identity/v2";

fn register(s: &Mxisd, server: &str, token: &str) -> Response {
    let body = json!({"access_token": token, "token_type": "Bearer", "matrix_server_name": server, "expires_in": 3600});
    s.post(&format!("{V2}/account/register"), &body.to_string())
}

fn with_token(s: &Mxisd, method: &str, path: &str, token: &str, body: Option<&Value>) -> Response {
    let agent = support::agent();
    let url = s.url(path);
    let auth = format!("Bearer {token}");
    Response::from(match (method, body) {
        ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
        (_, Some(b)) => agent
            .post(&url)
            .header("Authorization", &auth)
            .send(b.to_string()),
        (_, None) => agent.post(&url).header("Authorization", &auth).send_empty(),
    })
}

/// mxisd trusting the test CA and resolver, loopback allowed (the fake homeserver is there).
fn mxisd_allowing_loopback(extra: &str) -> Mxisd {
    Mxisd::start(&federation_config(&format!(
        "  ipRangeWhitelist: ['127.0.0.0/8']\n{extra}"
    )))
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn register_use_and_logout() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let server = format!("127.0.0.1:{}", hs.port);
    let s = mxisd_allowing_loopback("");
    let r = register(&s, &server, &format!("user:@alice:{server}"));
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 22, "{token}");
    assert_eq!(
        r.json()["access_token"],
        token,
        "sydent's field for older clients"
    );

    let me = with_token(&s, "GET", &format!("{V2}/account"), &token, None);
    assert_eq!(
        (me.status, me.json()),
        (200, json!({"user_id": format!("@alice:{server}")}))
    );
    // Synapse sends the token as a query parameter too.
    let me = s.get(&format!("{V2}/account?access_token={token}"));
    assert_eq!(me.json()["user_id"], format!("@alice:{server}"));

    let out = with_token(&s, "POST", &format!("{V2}/account/logout"), &token, None);
    assert_eq!((out.status, out.json()), (200, json!({})));
    with_token(&s, "GET", &format!("{V2}/account"), &token, None)
        .assert_error(401, "M_UNAUTHORIZED");
    with_token(&s, "POST", &format!("{V2}/account/logout"), &token, None)
        .assert_error(401, "M_UNKNOWN_TOKEN");
    s.get(&format!("{V2}/account"))
        .assert_error(401, "M_UNAUTHORIZED");
    with_token(&s, "GET", &format!("{V2}/account"), "made-up", None)
        .assert_error(401, "M_UNAUTHORIZED");
    // Tokens are kept only as hashes.
    let db = std::fs::read(s.dir.join("mxisd.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(&token));
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn rejected_tokens_and_foreign_users() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let server = format!("127.0.0.1:{}", hs.port);
    let s = mxisd_allowing_loopback("");
    let body = register(&s, &server, "not-a-valid-token").assert_error(401, "M_UNAUTHORIZED");
    assert_eq!(
        body["error"], "The homeserver did not accept the OpenID token",
        "not which server answered, nor its status"
    );
    assert!(
        s.wait_for_log(&format!(
            "homeserver {server} rejected the OpenID token (HTTP 401)"
        )),
        "{}",
        s.log()
    );
    let body =
        register(&s, &server, "user:@mallory:evil.example.org").assert_error(401, "M_UNAUTHORIZED");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("@mallory:evil.example.org"),
        "{body}"
    );
    // What the homeserver answered is the operator's to read, not the client's.
    let body = register(&s, &server, "error").assert_error(502, "M_UNKNOWN");
    assert_eq!(body["error"], UPSTREAM);
    assert!(s.wait_for_log("userinfo answered HTTP 500"), "{}", s.log());
    register(&s, "not a server/", "x").assert_error(400, "M_INVALID_PARAM");
    s.post(&format!("{V2}/account/register"), r#"{"access_token":"x"}"#)
        .assert_error(400, "M_MISSING_PARAMS");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_allow_list_limits_who_registers() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let server = format!("127.0.0.1:{}", hs.port);
    let s = mxisd_allowing_loopback("account:\n  homeserverAllowList: ['matrix.example.org']\n");
    register(&s, &server, &format!("user:@alice:{server}")).assert_error(403, "M_UNAUTHORIZED");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn terms_must_be_accepted_and_a_new_version_asks_again() {
    let policy = |version: &str| {
        format!(
            "policy:\n  policies:\n    privacy:\n      version: '{version}'\n      terms:\n        en:\n          name: 'Privacy'\n          url: 'https://example.org/privacy-{version}-en.html'\n        fr:\n          name: 'Confidentialité'\n          url: 'https://example.org/privacy-{version}-fr.html'\n"
        )
    };
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let server = format!("127.0.0.1:{}", hs.port);
    let s = mxisd_allowing_loopback(&policy("1.0"));
    let terms = s.get(&format!("{V2}/terms")).json();
    assert_eq!(terms["policies"]["privacy"]["version"], "1.0");
    assert_eq!(
        terms["policies"]["privacy"]["fr"]["url"],
        "https://example.org/privacy-1.0-fr.html"
    );

    let token = register(&s, &server, &format!("user:@bob:{server}")).json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    with_token(&s, "GET", &format!("{V2}/account"), &token, None)
        .assert_error(403, "M_TERMS_NOT_SIGNED");
    let unknown = json!({"user_accepts": ["https://example.org/other.html"]});
    with_token(&s, "POST", &format!("{V2}/terms"), &token, Some(&unknown))
        .assert_error(400, "M_INVALID_PARAM");
    let accept = json!({"user_accepts": ["https://example.org/privacy-1.0-fr.html"]});
    let r = with_token(&s, "POST", &format!("{V2}/terms"), &token, Some(&accept));
    assert_eq!((r.status, r.json()), (200, json!({})));
    assert_eq!(
        with_token(&s, "GET", &format!("{V2}/account"), &token, None).status,
        200
    );

    // Same database, new policy version: its URLs are new, so the user is asked again.
    let dir = support::TempDir::new();
    let config = dir.join("mxisd.yaml");
    let old = std::fs::read_to_string(s.dir.join("mxisd.yaml")).unwrap();
    std::fs::write(&config, old.replace(&policy("1.0"), &policy("2.0"))).unwrap();
    let mut s = s;
    s.signal("TERM");
    s.wait_exit(Duration::from_secs(20)).unwrap();
    let s2 = Mxisd::spawn(dir, &config);
    with_token(&s2, "GET", &format!("{V2}/account"), &token, None)
        .assert_error(403, "M_TERMS_NOT_SIGNED");
    // Logout needs no accepted terms.
    assert_eq!(
        with_token(&s2, "POST", &format!("{V2}/account/logout"), &token, None).status,
        200
    );
}

/// What a client is told when the homeserver it named cannot be asked, whatever the why.
const UPSTREAM: &str = "homeserver unreachable or refused by policy";

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_address_policy_refuses_local_destinations_and_tells_the_client_nothing() {
    let (c3, p3) = canary("127.0.0.3");
    let (c1, p1) = canary("127.0.0.1");
    let (c6, p6) = canary("::1");
    let s = Mxisd::start(&federation_config(""));
    // hs3.example.net is 127.0.0.3 in the test dnsmasq: a name the client gives, resolved
    // here to a refused address.
    for (server, address, rule) in [
        (format!("hs3.example.net:{p3}"), "127.0.0.3", "loopback"),
        (format!("127.0.0.1:{p1}"), "127.0.0.1", "loopback"),
        (format!("[::1]:{p6}"), "::1", "loopback"),
    ] {
        let r = register(&s, &server, "user:@x:y");
        let body = r.assert_error(502, "M_UNKNOWN");
        assert_eq!(body["error"], UPSTREAM, "{server}");
        // Not what the name resolves to, nor that it resolved, nor which rule refused it.
        for leak in [address, "resolves", rule, "policy:", "ipRangeWhitelist"] {
            assert!(!r.text.contains(leak), "{server}: {leak} in {}", r.text);
        }
        // The operator's log has the address and the reason.
        assert!(
            s.wait_for_log(&format!(
                "{address} is a {rule} address, refused by the outbound address policy"
            )),
            "{server}: {}",
            s.log()
        );
    }
    assert!(
        s.log()
            .contains("outbound call to hs3.example.net refused: 127.0.0.3 is a loopback address"),
        "{}",
        s.log()
    );
    for (canary, what) in [(&c3, "127.0.0.3"), (&c1, "127.0.0.1"), (&c6, "::1")] {
        assert!(untouched(canary), "a connection reached {what}");
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_well_known_redirect_to_loopback_is_refused() {
    let target = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let redirect = format!(
        "https://127.0.0.1:{}/.well-known/matrix/server",
        target.port
    );
    let _wk = FakeHomeserver::start("127.0.0.2", 443, &["--redirect", &redirect]);
    // 127.0.0.2 (wk.example.net) is allowed, the loopback address it redirects to is not.
    let s = Mxisd::start(&federation_config("  ipRangeWhitelist: ['127.0.0.2/32']\n"));
    let body =
        register(&s, "wk.example.net", "user:@x:wk.example.net").assert_error(502, "M_UNKNOWN");
    assert_eq!(body["error"], UPSTREAM);
    assert!(
        s.wait_for_log("127.0.0.1 is a loopback address"),
        "{}",
        s.log()
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn srv_and_well_known_delegation_reach_the_homeserver() {
    // srv.example.net: SRV to hs3.example.net:18448. deleg.example.net: .well-known to it.
    let _hs = FakeHomeserver::start("127.0.0.3", 18448, &[]);
    let _wk = FakeHomeserver::start("127.0.0.4", 443, &["--well-known", "hs3.example.net:18448"]);
    let s = Mxisd::start(&federation_config(
        "  ipRangeWhitelist: ['127.0.0.3/32', '127.0.0.4/32']\n",
    ));
    for server in ["srv.example.net", "deleg.example.net"] {
        let r = register(&s, server, &format!("user:@carol:{server}"));
        assert_eq!(r.status, 200, "{server}: {}", r.text);
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_hanging_homeserver_times_out_while_other_requests_are_served() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let server = format!("127.0.0.1:{}", hs.port);
    let s = mxisd_allowing_loopback("");
    let started = Instant::now();
    let hanging = std::thread::scope(|scope| {
        let call = scope.spawn(|| register(&s, &server, "hang"));
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..5 {
            assert_eq!(s.get("/_matrix/identity/versions").status, 200);
        }
        call.join().unwrap()
    });
    let body = hanging.assert_error(504, "M_UNKNOWN");
    assert_eq!(body["error"], UPSTREAM);
    assert!(s.wait_for_log("did not answer in time"), "{}", s.log());
    // federation.timeout is 3 s: a loose bound, not a benchmark.
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn unreachable_and_untrusted_homeservers_are_told_apart_in_the_log_only() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let server = format!("127.0.0.1:{}", hs.port);
    let s = mxisd_allowing_loopback("");
    // Nothing listens on port 1.
    let body = register(&s, "127.0.0.1:1", "user:@x:127.0.0.1:1").assert_error(502, "M_UNKNOWN");
    assert_eq!(body["error"], UPSTREAM);
    assert!(
        s.wait_for_log("homeserver 127.0.0.1:1: unreachable"),
        "{}",
        s.log()
    );

    // Without the test CA, the fake homeserver's certificate is not trusted.
    let resolver = format!("127.0.0.1:{}", support::services::get("DNS_PORT"));
    let untrusting = Mxisd::start(&format!(
        "federation:\n  resolver: '{resolver}'\n  ipRangeWhitelist: ['127.0.0.0/8']\n"
    ));
    let body =
        register(&untrusting, &server, &format!("user:@x:{server}")).assert_error(502, "M_UNKNOWN");
    assert_eq!(body["error"], UPSTREAM);
    assert!(
        untrusting.wait_for_log("TLS failed"),
        "{}",
        untrusting.log()
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn tls_insecure_skips_certificate_checks_and_says_so() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let server = format!("127.0.0.1:{}", hs.port);
    let resolver = format!("127.0.0.1:{}", support::services::get("DNS_PORT"));
    // No caFile: the test CA is not trusted, but checks are off.
    let s = Mxisd::start(&format!(
        "federation:\n  resolver: '{resolver}'\n  ipRangeWhitelist: ['127.0.0.0/8']\n  tls:\n    insecure: true\n"
    ));
    assert!(
        s.wait_for_log("federation.tls.insecure is set"),
        "{}",
        s.log()
    );
    let r = register(&s, &server, &format!("user:@ivan:{server}"));
    assert_eq!(r.status, 200, "{}", r.text);
}

/// A self-signed certificate as operators make them (`openssl req -x509`, which marks it
/// `CA:TRUE`) for 127.0.0.1, in `dir`: (certificate, key).
fn self_signed(dir: &crate::support::TempDir, name: &str) -> (String, String) {
    let cert = dir.join(&format!("{name}.pem")).display().to_string();
    let key = dir.join(&format!("{name}.key")).display().to_string();
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-keyout", &key, "-out", &cert])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", &cert])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "openssl's default marks it CA:TRUE"
    );
    (cert, key)
}

/// `federation.tls.caFile` holding the homeserver's own self-signed certificate: that
/// certificate is trusted as the server's (pinned), another self-signed one is not.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_self_signed_certificate_in_the_ca_file_is_pinned() {
    let dir = crate::support::TempDir::new();
    let (cert, key) = self_signed(&dir, "pinned");
    let (other_cert, other_key) = self_signed(&dir, "other");
    let pinned = FakeHomeserver::start("127.0.0.1", 0, &["--cert", &cert, "--key", &key]);
    let other = FakeHomeserver::start(
        "127.0.0.1",
        0,
        &["--cert", &other_cert, "--key", &other_key],
    );
    let resolver = format!("127.0.0.1:{}", support::services::get("DNS_PORT"));
    let s = Mxisd::start(&format!(
        "federation:\n  resolver: '{resolver}'\n  ipRangeWhitelist: ['127.0.0.0/8']\n  tls:\n    caFile: '{cert}'\n"
    ));
    let server = format!("127.0.0.1:{}", pinned.port);
    let r = register(&s, &server, &format!("user:@pia:{server}"));
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    let server = format!("127.0.0.1:{}", other.port);
    let body = register(&s, &server, &format!("user:@pia:{server}")).assert_error(502, "M_UNKNOWN");
    assert_eq!(body["error"], UPSTREAM);
    assert!(s.wait_for_log("TLS failed"), "{}", s.log());
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_proxy_in_the_environment_does_not_carry_calls_past_the_address_policy() {
    // The proxy is on an allowed address, the destination (hs3.example.net, 127.0.0.3 in
    // the test dnsmasq) is not: through the proxy, the policy would only see the proxy.
    let (proxy, proxy_port) = canary("127.0.0.1");
    let (target, target_port) = canary("127.0.0.3");
    let proxy_url = format!("http://127.0.0.1:{proxy_port}");
    let vars: Vec<String> = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "ALL_PROXY"]
        .iter()
        .map(|v| format!("{v}={proxy_url}"))
        .collect();
    let mut wrapper = vec!["env"];
    wrapper.extend(vars.iter().map(String::as_str));
    let s = Mxisd::start_wrapped(
        &federation_config("  ipRangeWhitelist: ['127.0.0.1/32']\n"),
        &wrapper,
    );
    let r = register(&s, &format!("hs3.example.net:{target_port}"), "user:@x:y");
    r.assert_error(502, "M_UNKNOWN");
    assert!(
        s.wait_for_log("127.0.0.3 is a loopback address, refused by the outbound address policy"),
        "{}",
        s.log()
    );
    assert!(untouched(&proxy), "the call went to the proxy");
    assert!(untouched(&target), "a connection reached 127.0.0.3");
}
