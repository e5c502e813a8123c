//! MSC4004 between two real mxisd instances on loopback, A and B, each the other's peer
//! (`lookup.peers`, one shared token): B pushes A the hashes of its addresses under A's
//! pepper, and A's hashed lookup answers `third_party_mappings` naming B for an address
//! only B holds, which B then answers under its own pepper; our own mappings win; pushes
//! that are not a configured peer's are refused; a pepper rotation on A (`hashing.pepper`)
//! keeps the previous pepper answered for its grace period, and B's pushes follow the new.

use crate::support::fake_homeserver::{federation_config, v2_token, FakeHomeserver};
use crate::support::services::{fresh_database, pg_connection};
use crate::support::{self, free_port, Mxisd, Response, TempDir};
use mxisd::crypto::hash::lookup_hash;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TOKEN: &str = "the-secret-a-and-b-share";

const A_STORE: &str = "\
memory:
  enabled: true
  identities:
    - username: alice
      threepids:
        - medium: email
          address: alice@a.example.net
    - username: shared-a
      threepids:
        - medium: email
          address: shared@both.example.net
";

const B_STORE: &str = "\
memory:
  enabled: true
  identities:
    - username: carol
      threepids:
        - medium: email
          address: carol@b.example.net
    - username: shared-b
      threepids:
        - medium: email
          address: shared@both.example.net
";

fn name(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// A server on `port` with `store`, whose peer is the server on `peer`, and `extra`.
fn start(port: u16, store: &str, peer: u16, extra: &str) -> Mxisd {
    start_with(port, store, peer, "", extra)
}

/// As `start`, with `peer_keys` (YAML lines) added to the peer's entry.
fn start_with(port: u16, store: &str, peer: u16, peer_keys: &str, extra: &str) -> Mxisd {
    start_as(port, port, store, peer, peer_keys, extra)
}

/// As `start_with`, one instance of the server whose public URL is on port `public`.
fn start_as(port: u16, public: u16, store: &str, peer: u16, peer_keys: &str, extra: &str) -> Mxisd {
    let entry = format!("{}{peer_keys}", peer_entry(peer, TOKEN));
    start_peered(port, public, store, &entry, extra)
}

/// The `lookup.peers` entry of the server on `port`, sharing `token`.
fn peer_entry(port: u16, token: &str) -> String {
    format!(
        "    - name: '{}'\n      url: 'http://{}'\n      token: '{token}'\n      timeout: 5\n",
        name(port),
        name(port)
    )
}

/// A server on `port` (public URL on `public`) with `store` and the `lookup.peers` entries
/// `entries`.
fn start_peered(port: u16, public: u16, store: &str, entries: &str, extra: &str) -> Mxisd {
    let dir = TempDir::new();
    let keys = dir.join("keys");
    let peers = format!("lookup:\n  peers:\n{entries}hashing:\n  refreshInterval: 1\n");
    let extra = format!(
        "{store}{peers}{extra}{}",
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    );
    let text = support::config_text(&dir, &keys, &extra).replacen(
        "server:\n  port: 0\n",
        &format!(
            "server:\n  port: {port}\n  publicUrl: 'http://{}'\n",
            name(public)
        ),
        1,
    );
    let path = dir.join("mxisd.yaml");
    std::fs::write(&path, text).unwrap();
    Mxisd::spawn(dir, &path)
}

/// A client of `s`: its token and `s`'s hash details.
struct Client {
    token: String,
}

impl Client {
    fn of(s: &Mxisd, hs: &FakeHomeserver) -> Client {
        Client {
            token: v2_token(s, hs, "client"),
        }
    }

    fn details(&self, s: &Mxisd) -> Value {
        let r = s.get(&format!(
            "/_matrix/identity/v2/hash_details?access_token={}",
            self.token
        ));
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    }

    /// `s`'s current lookup pepper.
    fn pepper(&self, s: &Mxisd) -> String {
        self.details(s)["lookup_pepper"]
            .as_str()
            .expect("a lookup_pepper")
            .to_owned()
    }

    fn lookup(&self, s: &Mxisd, pepper: &str, hashes: &[&str]) -> Response {
        Response::from(
            support::agent()
                .post(s.url("/_matrix/identity/v2/lookup"))
                .header("Authorization", &format!("Bearer {}", self.token))
                .header("Content-Type", "application/json")
                .send(
                    json!({"algorithm": "sha256", "pepper": pepper, "addresses": hashes})
                        .to_string(),
                ),
        )
    }
}

/// Asks until `check` holds of the answer (pushes come on the peers' own time), at most 30 s.
fn until(what: &str, s: &Mxisd, mut ask: impl FnMut() -> Value, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = ask();
    while !check(&last) {
        assert!(
            Instant::now() < deadline,
            "{what}: last answer {last}; log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
        last = ask();
    }
}

fn push(s: &Mxisd, token: Option<&str>, body: &Value) -> Response {
    let mut request = support::agent()
        .post(s.url("/_matrix/identity/v2/lookups"))
        .header("Content-Type", "application/json");
    if let Some(t) = token {
        request = request.header("Authorization", &format!("Bearer {t}"));
    }
    Response::from(request.send(body.to_string()))
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_peer_pushes_its_hashes_and_lookups_name_it() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let (pa, pb) = (free_port(), free_port());
    let b = start(pb, B_STORE, pa, "");
    let a = start(pa, A_STORE, pb, "");
    a.wait_hash_index();
    let on_a = Client::of(&a, &hs);
    let pepper_a = on_a.pepper(&a);
    let carol_a = lookup_hash("carol@b.example.net", "email", &pepper_a);
    let shared_a = lookup_hash("shared@both.example.net", "email", &pepper_a);
    let alice_a = lookup_hash("alice@a.example.net", "email", &pepper_a);
    let nobody_a = lookup_hash("nobody@nowhere.example.net", "email", &pepper_a);

    // B pushed: an address only B holds points to B; one both hold is A's own.
    let ask = || {
        on_a.lookup(&a, &pepper_a, &[&carol_a, &shared_a, &alice_a, &nobody_a])
            .json()
    };
    until("A names B for carol", &a, ask, |v| {
        v["third_party_mappings"] != json!({})
    });
    assert_eq!(
        ask(),
        json!({
            "mappings": {
                alice_a.clone(): "@alice:example.org",
                shared_a.clone(): "@shared-a:example.org",
            },
            "third_party_mappings": {name(pb): [carol_a.clone()]},
        })
    );

    // The client asks B with B's pepper, and finds carol.
    let on_b = Client::of(&b, &hs);
    let pepper_b = on_b.pepper(&b);
    assert_ne!(pepper_a, pepper_b);
    let carol_b = lookup_hash("carol@b.example.net", "email", &pepper_b);
    let r = on_b.lookup(&b, &pepper_b, &[&carol_b]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["mappings"], json!({carol_b: "@carol:example.org"}));
    // And A pushed B its own: B names A for alice.
    let alice_b = lookup_hash("alice@a.example.net", "email", &pepper_b);
    until(
        "B names A for alice",
        &b,
        || on_b.lookup(&b, &pepper_b, &[&alice_b]).json(),
        |v| v["third_party_mappings"] == json!({name(pa): [alice_b.clone()]}),
    );

    // A peer's token opens hash_details (it needs the pepper to push); others do not.
    let r = a.get(&format!(
        "/_matrix/identity/v2/hash_details?access_token={TOKEN}"
    ));
    assert_eq!(r.json()["lookup_pepper"], pepper_a.as_str(), "{}", r.text);
    a.get("/_matrix/identity/v2/hash_details?access_token=not-a-peer-token-at-all")
        .assert_error(401, "M_UNAUTHORIZED");

    // Pushes that are not a configured peer's, for itself, under our pepper: refused.
    let forged = lookup_hash("mallory@evil.example.net", "email", &pepper_a);
    let body = |server: &str, pepper: &str| json!({"algorithm": "sha256", "pepper": pepper, "mappings": {server: [forged]}});
    push(&a, None, &body(&name(pb), &pepper_a)).assert_error(401, "M_UNAUTHORIZED");
    push(
        &a,
        Some("a-server-nobody-configured"),
        &body(&name(pb), &pepper_a),
    )
    .assert_error(403, "M_UNAUTHORIZED");
    push(&a, Some(&on_a.token), &body(&name(pb), &pepper_a)).assert_error(403, "M_UNAUTHORIZED");
    push(&a, Some(TOKEN), &body("evil.example.net", &pepper_a)).assert_error(403, "M_UNAUTHORIZED");
    let err = push(&a, Some(TOKEN), &body(&name(pb), "not-our-pepper"))
        .assert_error(400, "M_INVALID_PEPPER");
    assert_eq!(err["lookup_pepper"], pepper_a.as_str());
    push(
        &a,
        Some(TOKEN),
        &json!({"algorithm": "sha256", "pepper": pepper_a, "mappings": {name(pb): ["short"]}}),
    )
    .assert_error(400, "M_INVALID_PARAM");
    let r = on_a.lookup(&a, &pepper_a, &[&forged]);
    assert_eq!(
        r.json(),
        json!({"mappings": {}, "third_party_mappings": {}}),
        "nothing refused was stored"
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_rotation_answers_the_previous_pepper_during_its_grace_and_pushes_follow() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let (pa, pb) = (free_port(), free_port());
    let _b = start(pb, B_STORE, pa, "");
    let mut a = start(pa, A_STORE, pb, "");
    let on_a = Client::of(&a, &hs);
    let old = on_a.pepper(&a);
    let carol_old = lookup_hash("carol@b.example.net", "email", &old);
    let alice_old = lookup_hash("alice@a.example.net", "email", &old);
    until(
        "B pushed under A's first pepper",
        &a,
        || on_a.lookup(&a, &old, &[&carol_old]).json(),
        |v| v["third_party_mappings"] != json!({}),
    );

    // A's operator rotates the pepper: A restarts with `hashing.pepper`.
    let config = a.dir.join("mxisd.yaml");
    let rotate = |grace: u64| {
        let text = std::fs::read_to_string(&config).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with("  previousPepperGrace:") && !l.starts_with("  pepper:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let rotated = kept.replacen(
            "hashing:\n",
            &format!("hashing:\n  previousPepperGrace: {grace}\n  pepper: 'the-new-pepper-of-a'\n"),
            1,
        );
        std::fs::write(&config, rotated).unwrap();
    };
    rotate(3600);
    a.signal("TERM");
    a.wait_exit(Duration::from_secs(20)).unwrap();
    let again = Mxisd::spawn(TempDir::new(), &config);
    again.wait_hash_index();
    let details = on_a.details(&again);
    assert_eq!(details["lookup_pepper"], "the-new-pepper-of-a");
    assert_eq!(details["alt_lookup_peppers"], json!([old]));

    // Under the previous pepper, A still answers its own addresses and B's push.
    let r = on_a.lookup(&again, &old, &[&alice_old, &carol_old]);
    assert_eq!(
        r.json(),
        json!({
            "mappings": {alice_old.clone(): "@alice:example.org"},
            "third_party_mappings": {name(pb): [carol_old.clone()]},
        }),
        "{}",
        r.text
    );
    // B's pushes follow the new pepper.
    let carol_new = lookup_hash("carol@b.example.net", "email", "the-new-pepper-of-a");
    until(
        "B pushed under A's new pepper",
        &again,
        || {
            on_a.lookup(&again, "the-new-pepper-of-a", &[&carol_new])
                .json()
        },
        |v| v["third_party_mappings"] == json!({name(pb): [carol_new.clone()]}),
    );
    on_a.lookup(&again, "neither-pepper", &[&carol_new])
        .assert_error(400, "M_INVALID_PEPPER");

    // Once the grace period is over (1 s after the rotation), the previous pepper is no
    // longer offered, and refused.
    let mut again = again;
    again.signal("TERM");
    again.wait_exit(Duration::from_secs(20)).unwrap();
    rotate(1);
    let last = Mxisd::spawn(TempDir::new(), &config);
    last.wait_hash_index();
    until(
        "the previous pepper no longer offered",
        &last,
        || on_a.details(&last),
        |d| d.get("alt_lookup_peppers").is_none(),
    );
    assert_eq!(on_a.details(&last)["lookup_pepper"], "the-new-pepper-of-a");
    let err = on_a
        .lookup(&last, &old, &[&alice_old])
        .assert_error(400, "M_INVALID_PEPPER");
    assert_eq!(err["lookup_pepper"], "the-new-pepper-of-a");
    drop(a);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_peer_that_stops_pushing_expires() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let (pa, pb) = (free_port(), free_port());
    let mut b = start(pb, B_STORE, pa, "");
    let a = start_with(pa, A_STORE, pb, "      expireAfter: 3\n", "");
    a.wait_hash_index();
    let on_a = Client::of(&a, &hs);
    let pepper = on_a.pepper(&a);
    let carol = lookup_hash("carol@b.example.net", "email", &pepper);
    until(
        "B pushed",
        &a,
        || on_a.lookup(&a, &pepper, &[&carol]).json(),
        |v| v["third_party_mappings"] == json!({name(pb): [carol.clone()]}),
    );
    // B stops: 3 s after its last push, A no longer names it, and forgets its hashes.
    b.signal("KILL");
    b.wait_exit(Duration::from_secs(20)).unwrap();
    until(
        "B's push expired",
        &a,
        || on_a.lookup(&a, &pepper, &[&carol]).json(),
        |v| v["third_party_mappings"] == json!({}),
    );
    assert!(
        a.wait_for_log(&format!("peer {}: its 2 hashes expired", name(pb))),
        "{}",
        a.log()
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn instances_on_postgresql_serve_what_a_peer_pushed_to_one_of_them() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let (pa, pa2, pb) = (free_port(), free_port(), free_port());
    let db = fresh_database("peer_lookups");
    let storage = format!(
        "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{}'\n      timeout: 2\n",
        pg_connection(&db)
    );
    let _b = start(pb, B_STORE, pa, "");
    // A is two instances on one database: B pushes to the first, a client asks the second.
    let a1 = start_as(pa, pa, A_STORE, pb, "", &storage);
    let a2 = start_as(pa2, pa, A_STORE, pb, "", &storage);
    a2.wait_hash_index();
    let on_a = Client::of(&a2, &hs);
    let pepper = on_a.pepper(&a2);
    assert_eq!(on_a.details(&a1)["lookup_pepper"], pepper.as_str());
    let carol = lookup_hash("carol@b.example.net", "email", &pepper);
    let alice = lookup_hash("alice@a.example.net", "email", &pepper);
    until(
        "the second instance names B",
        &a2,
        || on_a.lookup(&a2, &pepper, &[&carol, &alice]).json(),
        |v| v["third_party_mappings"] == json!({name(pb): [carol.clone()]}),
    );
    assert_eq!(
        on_a.lookup(&a2, &pepper, &[&carol, &alice]).json()["mappings"],
        json!({alice: "@alice:example.org"})
    );
    // The log is written by its own thread, after the answer: waited for.
    assert!(
        a1.wait_for_log("hashes pushed under our current pepper"),
        "{}",
        a1.log()
    );
    assert!(
        !a2.log().contains("hashes pushed under our"),
        "{}",
        a2.log()
    );
}

/// A memory store of `n` users, `user<i>@many.example.net` → `@user<i>:example.org`.
fn many_users(n: usize) -> String {
    let mut store = String::from("memory:\n  enabled: true\n  identities:\n");
    for i in 0..n {
        store.push_str(&format!(
            "    - username: user{i}\n      threepids:\n        - medium: email\n          address: user{i}@many.example.net\n"
        ));
    }
    store
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_push_too_large_for_one_request_goes_in_parts() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let (pa, pb) = (free_port(), free_port());
    // B pushes A parts of 100 hashes (about 4.6 KB each); A takes bodies of 6,000 bytes at
    // most, which the 250 hashes whole (11.5 KB) would be over.
    let _b = start_with(pb, &many_users(250), pa, "      hashesPerPush: 100\n", "");
    let a = start(pa, A_STORE, pb, "http:\n  maxBodyBytes: 6000\n");
    a.wait_hash_index();
    let on_a = Client::of(&a, &hs);
    let pepper = on_a.pepper(&a);
    let mut hashes: Vec<String> = [0, 99, 100, 199, 200, 249]
        .iter()
        .map(|i| lookup_hash(&format!("user{i}@many.example.net"), "email", &pepper))
        .collect();
    hashes.sort(); // as the answer lists them
    let refs: Vec<&str> = hashes.iter().map(String::as_str).collect();
    until(
        "A names B for users of each part",
        &a,
        || on_a.lookup(&a, &pepper, &refs).json(),
        |v| v["third_party_mappings"] == json!({name(pb): hashes.clone()}),
    );
    assert!(
        a.wait_for_log(&format!(
            "peer {}: 250 hashes pushed in 3 parts under our current pepper",
            name(pb)
        )),
        "{}",
        a.log()
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_parts_of_a_push_replace_the_last_push_only_once_all_came_in_order() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    // A's peer is a server that is not running: the pushes here are the test's own, made
    // with its token, on PostgreSQL (the parts' rows are locked there).
    let (pa, pb) = (free_port(), free_port());
    let db = fresh_database("peer_parts");
    let storage = format!(
        "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{}'\n",
        pg_connection(&db)
    );
    let a = start(pa, A_STORE, pb, &storage);
    a.wait_hash_index();
    let on_a = Client::of(&a, &hs);
    let pepper = on_a.pepper(&a);
    let h: Vec<String> = (0..4)
        .map(|i| lookup_hash(&format!("p{i}@b.example.net"), "email", &pepper))
        .collect();
    let body = |hashes: &[&String], part: Option<(&str, u32, bool)>| {
        let mut b =
            json!({"algorithm": "sha256", "pepper": pepper, "mappings": {name(pb): hashes}});
        if let Some((push, number, last)) = part {
            b["mxisd.push_part"] = json!({"push": push, "number": number, "last": last});
        }
        b
    };
    let named = || {
        let v = on_a
            .lookup(&a, &pepper, &[&h[0], &h[1], &h[2], &h[3]])
            .json();
        let mut list: Vec<String> = v["third_party_mappings"][name(pb)]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        list.sort();
        list
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let ok = |r: Response| assert_eq!((r.status, r.json()), (200, json!({})), "{}", a.log());

    // A whole push, then the first part of another: until its last part, the whole one stays.
    ok(push(&a, Some(TOKEN), &body(&[&h[0]], None)));
    assert_eq!(named(), vec![h[0].clone()]);
    ok(push(
        &a,
        Some(TOKEN),
        &body(&[&h[1]], Some(("x", 0, false))),
    ));
    assert_eq!(named(), vec![h[0].clone()]);
    // A part skipped, or of another push: refused, and the push under way goes on.
    push(&a, Some(TOKEN), &body(&[&h[3]], Some(("x", 2, true))))
        .assert_error(400, "M_INVALID_PARAM");
    push(&a, Some(TOKEN), &body(&[&h[3]], Some(("y", 1, true))))
        .assert_error(400, "M_INVALID_PARAM");
    push(&a, Some(TOKEN), &body(&[&h[3]], Some(("../x", 1, true))))
        .assert_error(400, "M_INVALID_PARAM");
    assert_eq!(named(), vec![h[0].clone()]);
    ok(push(
        &a,
        Some(TOKEN),
        &body(&[&h[2], &h[1]], Some(("x", 1, true))),
    ));
    assert_eq!(named(), sorted(vec![h[1].clone(), h[2].clone()]));
    assert!(
        a.wait_for_log(&format!("peer {}: 2 hashes pushed in 2 parts", name(pb))),
        "{}",
        a.log()
    );

    // A first part starts a push over: the parts of the one before it are dropped.
    ok(push(
        &a,
        Some(TOKEN),
        &body(&[&h[0]], Some(("z", 0, false))),
    ));
    ok(push(
        &a,
        Some(TOKEN),
        &body(&[&h[3]], Some(("w", 0, false))),
    ));
    push(&a, Some(TOKEN), &body(&[&h[0]], Some(("z", 1, true))))
        .assert_error(400, "M_INVALID_PARAM");
    ok(push(&a, Some(TOKEN), &body(&[], Some(("w", 1, true)))));
    assert_eq!(named(), vec![h[3].clone()]);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_server_with_two_peers_pushes_each_under_its_own_pepper() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let other = "the-secret-a-and-c-share";
    let b = start(pb, B_STORE, pa, "");
    let c = start_peered(pc, pc, B_STORE, &peer_entry(pa, other), "");
    let entries = format!("{}{}", peer_entry(pb, TOKEN), peer_entry(pc, other));
    let _a = start_peered(pa, pa, A_STORE, &entries, "");
    for (s, port) in [(&b, pb), (&c, pc)] {
        let client = Client::of(s, &hs);
        let pepper = client.pepper(s);
        let alice = lookup_hash("alice@a.example.net", "email", &pepper);
        until(
            &format!("the server on {port} names A for alice"),
            s,
            || client.lookup(s, &pepper, &[&alice]).json(),
            |v| v["third_party_mappings"] == json!({name(pa): [alice.clone()]}),
        );
    }
}
