//! Names as the system resolves them, against the real binary: a homeserver named
//! `localhost:<port>` (RFC 6761: loopback, never asked of DNS), a name only in a hosts file
//! (`MXISD_HOSTS_FILE` stands for `/etc/hosts`), and `dns.overwrite.homeserver.federation`
//! sending a homeserver's calls where the operator says. Homeservers are played by
//! `tests/fakes/homeserver.py` over TLS (the test CA's certificate, which names
//! `localhost`, `*.example.net` and `127.0.0.1`); other names go to the test dnsmasq.

use crate::support::fake_homeserver::{federation_config, FakeHomeserver};
use crate::support::services::get;
use crate::support::{canary, untouched, Mxisd, Response, TempDir};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const V2: &str = "/_matrix/identity/v2";
const UPSTREAM: &str = "homeserver unreachable or refused by policy";
const LOOPBACK_ALLOWED: &str = "  ipRangeWhitelist: ['127.0.0.0/8']\n";

fn register(s: &Mxisd, server: &str, token: &str) -> Response {
    let body = json!({"access_token": token, "token_type": "Bearer", "matrix_server_name": server, "expires_in": 3600});
    s.post(&format!("{V2}/account/register"), &body.to_string())
}

/// Registers `@<localpart>:<server>` through `server`'s OpenID userinfo and asks who the
/// token it got is: the user, if the homeserver was reached.
fn registers_as(s: &Mxisd, server: &str, localpart: &str) -> String {
    let r = register(s, server, &format!("user:@{localpart}:{server}"));
    assert_eq!(r.status, 200, "{server}: {}\n{}", r.text, s.log());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let me = s.get(&format!("{V2}/account?access_token={token}"));
    me.json()["user_id"].as_str().unwrap_or_default().to_owned()
}

/// The queries the test dnsmasq has logged (`query[A] <name> from …` lines).
fn dns_log() -> String {
    let path = format!("{}/dns/dnsmasq.log", get("MXISD_TEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// mxisd reading `hosts` as its hosts file.
fn mxisd_with_hosts_file(hosts: &Path, extra: &str) -> Mxisd {
    let env = format!("MXISD_HOSTS_FILE={}", hosts.display());
    Mxisd::start_wrapped(extra, &["/usr/bin/env", &env])
}

/// A name of the test CA's `*.example.net` that no DNS record has, unique to this test.
fn unique_name(what: &str) -> String {
    format!(
        "{what}-{}-{}.example.net",
        std::process::id(),
        mxisd::now_ms()
    )
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_homeserver_named_localhost_registers_when_loopback_is_allowed() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Mxisd::start(&federation_config(LOOPBACK_ALLOWED));
    let server = format!("localhost:{}", hs.port);
    assert_eq!(
        registers_as(&s, &server, "alice"),
        format!("@alice:{server}")
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_homeserver_named_localhost_is_refused_without_the_allow_list() {
    let (c4, port) = canary("127.0.0.1");
    let s = Mxisd::start(&federation_config(""));
    let server = format!("localhost:{port}");
    let r = register(&s, &server, &format!("user:@alice:{server}"));
    let body = r.assert_error(502, "M_UNKNOWN");
    assert_eq!(body["error"], UPSTREAM);
    // The client is told nothing of what the name is; the operator's log says why.
    for leak in ["127.0.0.1", "loopback", "ipRangeWhitelist"] {
        assert!(!r.text.contains(leak), "{leak} in {}", r.text);
    }
    assert!(
        s.wait_for_log(
            "outbound call to localhost refused: 127.0.0.1 is a loopback address, refused by the outbound address policy (allow it in federation.ipRangeWhitelist)"
        ),
        "{}",
        s.log()
    );
    assert!(untouched(&c4), "a connection reached 127.0.0.1");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_name_only_in_the_hosts_file_resolves_and_follows_its_changes() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let dir = TempDir::new();
    let hosts = dir.join("hosts");
    let name = unique_name("airgap");
    std::fs::write(
        &hosts,
        format!("# an air-gapped site's hosts file\n127.0.0.1 localhost\n10.99.0.1 other.lan\n127.0.0.1\t{name} airgap-alias # the homeserver\n"),
    )
    .unwrap();
    let s = mxisd_with_hosts_file(&hosts, &federation_config(LOOPBACK_ALLOWED));
    assert!(
        s.log().contains(&format!(
            "hosts file {} (from MXISD_HOSTS_FILE)",
            hosts.display()
        )),
        "{}",
        s.log()
    );
    let server = format!("{name}:{}", hs.port);
    assert_eq!(registers_as(&s, &server, "bob"), format!("@bob:{server}"));
    let asked = |log: &str| log.matches(&format!("] {name} from")).count();
    assert_eq!(
        asked(&dns_log()),
        0,
        "the hosts file answered, DNS was not asked"
    );

    // The name leaves the file: within a second or so mxisd reads it again, and asks DNS,
    // which does not know it.
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let body = register(&s, &server, &format!("user:@bob:{server}")).assert_error(502, "M_UNKNOWN");
    assert_eq!(body["error"], UPSTREAM);
    assert!(
        s.wait_for_log(&format!(
            "account registration refused: homeserver {server}: DNS"
        )),
        "{}",
        s.log()
    );
    // DNS was asked only now (dnsmasq writes its log as it answers).
    let deadline = Instant::now() + Duration::from_secs(5);
    while asked(&dns_log()) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(asked(&dns_log()) > 0, "{name} never asked of DNS");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_name_from_the_hosts_file_is_still_checked_by_the_address_policy() {
    let (c4, port) = canary("127.0.0.1");
    let dir = TempDir::new();
    let hosts = dir.join("hosts");
    let name = unique_name("policy");
    std::fs::write(&hosts, format!("127.0.0.1 {name}\n")).unwrap();
    let s = mxisd_with_hosts_file(&hosts, &federation_config(""));
    let server = format!("{name}:{port}");
    let body = register(&s, &server, &format!("user:@eve:{server}")).assert_error(502, "M_UNKNOWN");
    assert_eq!(body["error"], UPSTREAM);
    assert!(
        s.wait_for_log(&format!(
            "outbound call to {name} refused: 127.0.0.1 is a loopback address"
        )),
        "{}",
        s.log()
    );
    assert!(untouched(&c4), "a connection reached 127.0.0.1");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_federation_override_sends_a_homeservers_calls_where_it_says() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    // Where the names themselves would lead: nowhere mxisd may or can go.
    let (c4, closed) = canary("127.0.0.1");
    let dns_only = unique_name("override");
    let by_port = format!("localhost:{closed}");
    // No ipRangeWhitelist: the operator's entries are not subject to the address policy.
    let s = Mxisd::start(&format!(
        "{}dns:\n  overwrite:\n    homeserver:\n      federation:\n        - name: '{dns_only}'\n          value: '127.0.0.1:{port}'\n        - name: '{by_port}'\n          value: 'https://localhost:{port}/'\n      client:\n        - name: '{dns_only}'\n          value: 'http://127.0.0.1:8008'\n",
        federation_config(""),
        port = hs.port,
    ));
    assert!(
        s.log().contains("`dns.overwrite.homeserver.client`")
            && s.log().contains("1 entry accepted, with no effect"),
        "{}",
        s.log()
    );
    assert_eq!(
        registers_as(&s, &dns_only, "carol"),
        format!("@carol:{dns_only}")
    );
    assert_eq!(
        registers_as(&s, &by_port, "dave"),
        format!("@dave:{by_port}")
    );
    assert!(untouched(&c4), "a call went to the port the name gives");
    // Names without an entry still follow the policy.
    let (c5, other) = canary("127.0.0.1");
    let server = format!("localhost:{other}");
    register(&s, &server, &format!("user:@x:{server}")).assert_error(502, "M_UNKNOWN");
    assert!(untouched(&c5));
}

/// A federation listener without TLS (Synapse's `http://127.0.0.1:8008` with the federation
/// resource) that answers one OpenID userinfo for `mxid`; the request line it got.
fn plain_userinfo(mxid: &str) -> (u16, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = json!({ "sub": mxid }).to_string();
    let served = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let head = String::from_utf8_lossy(&head).into_owned();
        head.lines().next().unwrap_or_default().to_owned()
    });
    (port, served)
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_federation_override_may_be_a_plain_http_listener() {
    let name = unique_name("plain");
    let (port, served) = plain_userinfo(&format!("@frank:{name}"));
    let s = Mxisd::start(&format!(
        "{}dns:\n  overwrite:\n    homeserver:\n      federation:\n        - name: '{name}'\n          value: 'http://127.0.0.1:{port}'\n",
        federation_config(""),
    ));
    let r = register(&s, &name, &format!("user:@frank:{name}"));
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    let line = served.join().unwrap();
    assert!(
        line.starts_with("GET /_matrix/federation/v1/openid/userinfo?access_token=user%3A%40frank"),
        "{line}"
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_onbind_follows_the_federation_override() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let name = unique_name("onbind");
    let dir = TempDir::new();
    let db = crate::support::synapse_sqlite(&dir, &[]);
    let s = Mxisd::start(&format!(
        "threepid:\n  medium:\n    email:\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {smtp}\n          tls: 0\nsynapseSql:\n  enabled: true\n  type: sqlite\n  connection: '{db}'\ninvite:\n  resolution:\n    timer: 1\n    period: seconds\n{fed}dns:\n  overwrite:\n    homeserver:\n      federation:\n        - name: '{name}'\n          value: '127.0.0.1:{port}'\n",
        smtp = get("SMTP_PORT"),
        fed = federation_config(""),
        port = hs.port,
    ));
    let address = crate::support::mail::fresh_address("invitee", "example.net");
    let invite = json!({
        "medium": "email", "address": address, "room_id": "!room:example.org",
        "sender": "@alice:example.org",
    });
    let r = s.post("/_matrix/identity/api/v1/store-invite", &invite.to_string());
    assert_eq!(r.status, 200, "{}", r.text);
    // The invitee appears in the store, on the homeserver only the override reaches.
    let mxid = format!("@found:{name}");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO user_threepids VALUES (?1, 'email', ?2, 0, 0)",
            rusqlite::params![mxid, address.to_lowercase()],
        )
        .unwrap();
    assert!(s.wait_for_log("onbind: 1 invites delivered"), "{}", s.log());
    let recorded = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .disable_verification(true)
                    .build(),
            )
            .build(),
    )
    .get(&format!("https://127.0.0.1:{}/recorded/onbind", hs.port))
    .call()
    .unwrap()
    .body_mut()
    .read_to_string()
    .unwrap();
    let recorded: serde_json::Value = serde_json::from_str(&recorded).unwrap();
    assert_eq!(recorded.as_array().map(Vec::len), Some(1), "{recorded}");
    assert_eq!(recorded[0]["body"]["mxid"], mxid.as_str());
}
