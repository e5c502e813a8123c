//! Federated lookups between two real mxisd instances on loopback: A asks B (behind Debian's
//! nginx with TLS from the test CA, which A trusts) for addresses only B knows, through DNS
//! discovery (SRV, then the base domain), forwarders and v2 sha256 with a token; the
//! recursion policy (allowedCidr, directly and behind a trusted proxy); loop protection; a
//! remote that hangs; bulk and v2 `none` lookups answering what single lookups answer.
//!
//! The names are served by a dnsmasq of the tests' own on this checkout's
//! `tests/services/dnsmasq.conf`; its SRV records name fixed ports, so these tests take
//! [`FIXED_PORTS`] in turn.

use crate::support::balancer::Balancer;
use crate::support::fake_homeserver::{v2_token, FakeHomeserver};
use crate::support::own_dns::OwnDns;
use crate::support::{self, services, Mxisd, Response, Silent, TempDir};
use ed25519_dalek::VerifyingKey;
use mxisd::crypto::{b64, hash::lookup_hash, verify_json};
use serde_json::{json, Value};
use std::sync::{Mutex, MutexGuard};

/// The ports the SRV records of dnsmasq.conf name: B's nginx, and the server that hangs.
const B_TLS_PORT: u16 = 18453;
const HANG_PORT: u16 = 18454;
/// The tests of this module hold it: they listen on the fixed ports above.
static FIXED_PORTS: Mutex<()> = Mutex::new(());

/// B's base URL as its SRV record names it (the forwarders use it too).
fn b_url() -> String {
    format!("https://idb.example.net:{B_TLS_PORT}")
}

const B_STORE: &str = "\
memory:
  enabled: true
  identities:
    - username: carol
      threepids:
        - medium: email
          address: carol@srvb.example.net
    - username: dan
      threepids:
        - medium: email
          address: dan@baseb.example.net
    - username: erin
      threepids:
        - medium: email
          address: erin@elsewhere.example.net
        - medium: msisdn
          address: '+44 20 7946 0002'
";

const A_STORE: &str = "\
memory:
  enabled: true
  identities:
    - username: alice
      threepids:
        - medium: email
          address: alice@a.example.net
";

fn lock() -> MutexGuard<'static, ()> {
    FIXED_PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// `federation`: the own dnsmasq, loopback allowed, the test CA trusted.
fn federation(dns: &OwnDns) -> String {
    format!(
        "federation:\n  resolver: '127.0.0.1:{}'\n  ipRangeWhitelist: ['127.0.0.0/8']\n  connectTimeout: 2\n  timeout: 3\n  tls:\n    caFile: '{}/tls/ca.pem'\n",
        dns.port,
        services::get("MXISD_TEST_DIR")
    )
}

/// A server whose `matrix.identity.servers` are `servers` (YAML lines under it), with `extra`.
fn start_with_servers(servers: &str, extra: &str) -> Mxisd {
    let dir = TempDir::new();
    let keys = dir.join("keys");
    let text = support::config_text(&dir, &keys, extra).replacen(
        "matrix:\n  domain: example.org\n",
        &format!("matrix:\n  domain: example.org\n  identity:\n    servers:\n{servers}"),
        1,
    );
    let path = dir.join("mxisd.yaml");
    std::fs::write(&path, text).unwrap();
    Mxisd::spawn(dir, &path)
}

/// B, and nginx with TLS in front of it where its SRV record says.
struct B {
    server: Mxisd,
    _tls: Balancer,
}

fn start_b(dns: &OwnDns) -> B {
    let server = Mxisd::start(&format!("{B_STORE}{}", federation(dns)));
    let tls = Balancer::start_on(B_TLS_PORT, &[server.addr], true);
    B { server, _tls: tls }
}

/// A with its own store, recursion within a 3 s budget, and `extra`.
fn start_a(dns: &OwnDns, servers: &str, lookup: &str, extra: &str) -> Mxisd {
    start_with_servers(
        servers,
        &format!(
            "{A_STORE}{}lookup:\n  recursive:\n    timeout: 3\n{lookup}{extra}",
            federation(dns)
        ),
    )
}

fn v1(s: &Mxisd, medium: &str, address: &str) -> Value {
    v1_from(s, medium, address, &[])
}

fn v1_from(s: &Mxisd, medium: &str, address: &str, headers: &[(&str, &str)]) -> Value {
    let mut request = support::agent().get(s.url(&format!(
        "/_matrix/identity/api/v1/lookup?medium={medium}&address={}",
        address.replace('@', "%40").replace('+', "%2B").replace(' ', "%20")
    )));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = Response::from(request.call());
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// The v1 lookups `s` logged, once at least `expected` are (the log is written after the
/// answer), or after 10 s.
fn logged_lookups(s: &Mxisd, expected: usize) -> usize {
    let count = || {
        s.log()
            .matches("/_matrix/identity/api/v1/lookup 200")
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count() < expected && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    count()
}

fn mxid(answer: &Value) -> Option<String> {
    answer["mxid"].as_str().map(str::to_owned)
}

fn public_key(s: &Mxisd) -> VerifyingKey {
    let key = s.get("/_matrix/identity/v2/pubkey/ed25519:0").json()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    VerifyingKey::from_bytes(&b64::decode(&key).unwrap().try_into().unwrap()).unwrap()
}

/// SRV `_matrix-identity._tcp.srvb.example.net` names B: A finds B's user, and answers an
/// association signed by A's own key, keeping B's validity.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_address_only_b_knows_is_found_through_srv_and_signed_by_a() {
    services::ensure_up();
    let _ports = lock();
    let dns = OwnDns::start();
    let b = start_b(&dns);
    let a = start_a(&dns, "      none: ['https://none.example.net']\n", "", "");
    assert_eq!(
        mxid(&v1(&a, "email", "alice@a.example.net")).as_deref(),
        Some("@alice:example.org")
    );
    let answer = v1(&a, "email", "carol@srvb.example.net");
    assert_eq!(
        mxid(&answer).as_deref(),
        Some("@carol:example.org"),
        "{answer}\n{}",
        a.log()
    );
    assert_eq!(answer["address"], "carol@srvb.example.net");
    verify_json(&answer, "example.org", "ed25519:0", &public_key(&a)).unwrap();
    // B's key differs from A's: only A's signature is on the answer.
    assert!(verify_json(&answer, "example.org", "ed25519:0", &public_key(&b.server)).is_err());
    assert!(answer["not_before"].as_i64() < answer["not_after"].as_i64());
    // Asked again within cacheTime: the same association, B's ts kept.
    let again = v1(&a, "email", "carol@srvb.example.net");
    assert_eq!(again["ts"], answer["ts"]);
    assert_eq!(again["not_after"], answer["not_after"]);
    // Not known to B either: a miss.
    assert_eq!(v1(&a, "email", "nobody@srvb.example.net"), json!({}));
}

/// No SRV record for baseb.example.net: A asks https://baseb.example.net (nginx on
/// 127.0.0.6:443 with the test certificate).
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn without_srv_the_base_domain_is_asked_over_https() {
    services::ensure_up();
    let _ports = lock();
    let dns = OwnDns::start();
    let b = start_b(&dns);
    let _base = Balancer::start_at("127.0.0.6", 443, &[b.server.addr], true);
    let a = start_a(&dns, "      none: ['https://none.example.net']\n", "", "");
    let answer = v1(&a, "email", "dan@baseb.example.net");
    assert_eq!(
        mxid(&answer).as_deref(),
        Some("@dan:example.org"),
        "{}",
        a.log()
    );
    verify_json(&answer, "example.org", "ed25519:0", &public_key(&a)).unwrap();
}

/// elsewhere.example.net has neither SRV nor an address; phone numbers have no domain: the
/// forwarder (`forward.servers: [b]`) answers both.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_forwarder_answers_what_discovery_cannot() {
    services::ensure_up();
    let _ports = lock();
    let dns = OwnDns::start();
    let _b = start_b(&dns);
    let a = start_a(
        &dns,
        &format!("      b: ['{}']\n", b_url()),
        "",
        "forward:\n  servers: ['b']\n",
    );
    assert_eq!(
        mxid(&v1(&a, "email", "erin@elsewhere.example.net")).as_deref(),
        Some("@erin:example.org"),
        "{}",
        a.log()
    );
    assert_eq!(
        mxid(&v1(&a, "msisdn", "442079460002")).as_deref(),
        Some("@erin:example.org")
    );
    assert_eq!(v1(&a, "msisdn", "442079460003"), json!({}));
    // Without forwarders, nobody is asked about them.
    let plain = start_a(&dns, "      b: ['https://none.example.net']\n", "", "");
    assert_eq!(v1(&plain, "email", "erin@elsewhere.example.net"), json!({}));
}

/// With an access token of A's at B, A asks B over v2 with sha256 under B's pepper: B never
/// sees the address in clear, and A still answers it.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_v2_forward_with_a_token_sends_hashes_only() {
    services::ensure_up();
    let _ports = lock();
    let dns = OwnDns::start();
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let b = start_b(&dns);
    b.server.wait_hash_index();
    let token = v2_token(&b.server, &hs, "operator-of-a");
    let a = start_a(
        &dns,
        &format!("      b: ['{}']\n", b_url()),
        &format!("    accessTokens:\n      '{}': '{token}'\n", b_url()),
        "forward:\n  servers: ['b']\n",
    );
    // B's access log names every request it answers.
    let b_log_before = b.server.log().len();
    assert_eq!(
        mxid(&v1(&a, "email", "erin@elsewhere.example.net")).as_deref(),
        Some("@erin:example.org"),
        "{}",
        a.log()
    );
    assert!(
        b.server.wait_for_log("/_matrix/identity/v2/lookup 200"),
        "{}",
        b.server.log()
    );
    let b_log = b.server.log()[b_log_before..].to_owned();
    assert!(!b_log.contains("erin@"), "{b_log}");
    assert!(!b_log.contains("elsewhere.example.net"), "{b_log}");
    assert!(b_log.contains("/v2/lookup"), "{b_log}");
    assert!(!b_log.contains("/api/v1/lookup"), "{b_log}");
    // A asked with B's pepper: B's hash of the address is what went out.
    let pepper = b.server.pepper(&token);
    let hashed = lookup_hash("erin@elsewhere.example.net", "email", &pepper);
    let body = json!({"algorithm": "sha256", "pepper": pepper, "addresses": [hashed]});
    let r = Response::from(
        support::agent()
            .post(b.server.url("/_matrix/identity/v2/lookup"))
            .header("Authorization", &format!("Bearer {token}"))
            .send(body.to_string()),
    );
    assert_eq!(r.json()["mappings"][&hashed], "@erin:example.org");
    let b_skipped = format!("identity server {} skipped", b_url());
    assert!(!a.log().contains(&b_skipped), "{}", a.log());
}

/// Only requesters in `lookup.recursive.allowedCidr` recurse: not loopback when the list
/// leaves it out, not a client behind a trusted proxy whose forwarded address is outside.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn requesters_outside_allowed_cidr_get_local_answers_only() {
    services::ensure_up();
    let _ports = lock();
    let dns = OwnDns::start();
    let _b = start_b(&dns);
    let closed = start_a(
        &dns,
        "      none: ['https://none.example.net']\n",
        "    allowedCidr: ['10.0.0.0/8']\n",
        "",
    );
    assert_eq!(v1(&closed, "email", "carol@srvb.example.net"), json!({}));
    assert_eq!(
        mxid(&v1(&closed, "email", "alice@a.example.net")).as_deref(),
        Some("@alice:example.org")
    );
    let proxied = start_a(
        &dns,
        "      none: ['https://none.example.net']\n",
        "",
        "http:\n  trustedProxies: ['127.0.0.1']\n",
    );
    let outside = [("X-Forwarded-For", "203.0.113.7")];
    assert_eq!(
        v1_from(&proxied, "email", "carol@srvb.example.net", &outside),
        json!({})
    );
    let inside = [("X-Forwarded-For", "10.1.2.3")];
    assert_eq!(
        mxid(&v1_from(
            &proxied,
            "email",
            "carol@srvb.example.net",
            &inside
        ))
        .as_deref(),
        Some("@carol:example.org")
    );
    // Our forwarded mark: answered from local stores only, even for an allowed requester.
    let marked = [("X-Mxisd-Lookup-Forwarded", "1")];
    assert_eq!(
        v1_from(&proxied, "email", "dan@srvb.example.net", &marked),
        json!({})
    );
    assert_eq!(
        mxid(&v1_from(&proxied, "email", "alice@a.example.net", &marked)).as_deref(),
        Some("@alice:example.org")
    );
}

/// A forwards to B and B to A, each trusting what it is asked through (B behind nginx):
/// the forwarded mark stops the loop, and the miss is answered.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn two_servers_forwarding_to_each_other_answer_a_miss() {
    services::ensure_up();
    let _ports = lock();
    let dns = OwnDns::start();
    let a = start_a(
        &dns,
        &format!("      b: ['{}']\n", b_url()),
        "",
        "forward:\n  servers: ['b']\nhttp:\n  trustedProxies: ['127.0.0.1']\n",
    );
    let b = start_with_servers(
        &format!("      a: ['http://{}']\n", a.addr),
        &format!(
            "{B_STORE}{}forward:\n  servers: ['a']\nhttp:\n  trustedProxies: ['127.0.0.1']\n",
            federation(&dns)
        ),
    );
    let _tls = Balancer::start_on(B_TLS_PORT, &[b.addr], true);
    assert_eq!(v1(&a, "email", "zoe@nowhere.example.net"), json!({}));
    assert_eq!(v1(&b, "email", "yves@nowhere.example.net"), json!({}));
    // Each asked the other once, and the other answered from its own store only.
    assert_eq!(logged_lookups(&a, 2), 2, "{}", a.log());
    assert_eq!(logged_lookups(&b, 2), 2, "{}", b.log());
    // The loop broken, forwarding still finds what the other knows.
    assert_eq!(
        mxid(&v1(&a, "email", "erin@elsewhere.example.net")).as_deref(),
        Some("@erin:example.org")
    );
}

/// An identity server that accepts and never answers: the lookup answers (a miss) within
/// the budget, and a local lookup is answered meanwhile.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_remote_that_hangs_holds_only_its_own_lookup() {
    services::ensure_up();
    let _ports = lock();
    let dns = OwnDns::start();
    let hang = Silent::start_on(HANG_PORT);
    let a = std::sync::Arc::new(start_a(
        &dns,
        "      none: ['https://none.example.net']\n",
        "",
        "",
    ));
    let asking = {
        let a = a.clone();
        std::thread::spawn(move || v1(&a, "email", "x@hang.example.net"))
    };
    while hang.accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(!asking.is_finished(), "{}", a.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        mxid(&v1(&a, "email", "alice@a.example.net")).as_deref(),
        Some("@alice:example.org")
    );
    assert!(
        !asking.is_finished(),
        "the hanging lookup ended before the local one"
    );
    assert_eq!(asking.join().unwrap(), json!({}));
    assert!(
        a.wait_for_log("identity server https://idhang.example.net:18454 skipped"),
        "{}",
        a.log()
    );
}

/// A v1 bulk lookup and a v2 `none` lookup answer what single v1 lookups answer, remote
/// steps included (local, SRV, forwarder, and a miss).
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn bulk_and_none_lookups_answer_what_single_lookups_answer() {
    services::ensure_up();
    let _ports = lock();
    let dns = OwnDns::start();
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let _b = start_b(&dns);
    let asked = [
        ("email", "alice@a.example.net"),
        ("email", "carol@srvb.example.net"),
        ("email", "erin@elsewhere.example.net"),
        ("msisdn", "442079460002"),
        ("email", "nobody@srvb.example.net"),
    ];
    let start = || {
        start_a(
            &dns,
            &format!("      b: ['{}']\n", b_url()),
            "",
            "forward:\n  servers: ['b']\n",
        )
    };
    // Each kind on a fresh A, so that no answer comes from another's cache.
    let single_a = start();
    let single: Vec<Option<String>> = asked
        .iter()
        .map(|(m, a)| mxid(&v1(&single_a, m, a)))
        .collect();
    assert_eq!(
        single,
        [
            Some("@alice:example.org".to_owned()),
            Some("@carol:example.org".to_owned()),
            Some("@erin:example.org".to_owned()),
            Some("@erin:example.org".to_owned()),
            None
        ]
    );
    let bulk_a = start();
    let r = bulk_a.post(
        support::V1_BULK_LOOKUP,
        &json!({ "threepids": asked }).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let rows = r.json()["threepids"].as_array().unwrap().clone();
    let bulk: Vec<Option<String>> = asked
        .iter()
        .map(|(m, a)| {
            rows.iter()
                .find(|row| row[0] == *m && row[1] == *a)
                .map(|row| row[2].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(bulk, single, "{}", bulk_a.log());
    let none_a = start();
    none_a.wait_hash_index();
    let token = v2_token(&none_a, &hs, "user-of-a");
    let addresses: Vec<String> = asked.iter().map(|(m, a)| format!("{a} {m}")).collect();
    let body =
        json!({"algorithm": "none", "pepper": none_a.pepper(&token), "addresses": addresses});
    let r = Response::from(
        support::agent()
            .post(none_a.url("/_matrix/identity/v2/lookup"))
            .header("Authorization", &format!("Bearer {token}"))
            .send(body.to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let mappings = r.json()["mappings"].clone();
    let none: Vec<Option<String>> = addresses
        .iter()
        .map(|a| mappings[a].as_str().map(str::to_owned))
        .collect();
    assert_eq!(none, single);
    // sha256 stays local: only alice, whom A's own store knows.
    let pepper = none_a.pepper(&token);
    let hashes: Vec<String> = asked
        .iter()
        .map(|(m, a)| lookup_hash(a, m, &pepper))
        .collect();
    let body = json!({"algorithm": "sha256", "pepper": pepper, "addresses": hashes});
    let r = Response::from(
        support::agent()
            .post(none_a.url("/_matrix/identity/v2/lookup"))
            .header("Authorization", &format!("Bearer {token}"))
            .send(body.to_string()),
    );
    let mappings = r.json()["mappings"].clone();
    assert_eq!(mappings.as_object().unwrap().len(), 1, "{mappings}");
    assert_eq!(mappings[&hashes[0]], "@alice:example.org");
}
