//! The SQL identity store (`sql`, `synapseSql`) against real databases: a Synapse-shaped
//! `user_threepids` table in SQLite and in the test PostgreSQL, a custom query, 10,000
//! entries in bulk, and a database that is not there.

use crate::lookup::agreeing_lookups;
use crate::support;
use crate::support::fake_homeserver::{federation_config, v2_token, FakeHomeserver};
use crate::support::services::{ensure_up, fresh_database, get, pg_connection, psql};
use crate::support::{numbered_users, synapse_sqlite, Mxisd, Response, TempDir, SYNAPSE_SCHEMA};
use mxisd::crypto::hash::lookup_hash;
use serde_json::{json, Value};

/// `synapseSql` over the SQLite file `db`, with `extra` sections.
fn sqlite_store(db: &str, extra: &str) -> String {
    format!(
        "synapseSql:\n  enabled: true\n  type: sqlite\n  connection: '{db}'\n{extra}{}",
        allow_loopback()
    )
}

fn allow_loopback() -> String {
    federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
}

fn post_v2(s: &Mxisd, token: &str, body: &Value) -> Response {
    Response::from(
        support::agent()
            .post(s.url("/_matrix/identity/v2/lookup"))
            .header("Authorization", &format!("Bearer {token}"))
            .send(body.to_string()),
    )
}

fn assert_finds_alice(s: &Mxisd, hs: &FakeHomeserver) {
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=email&address=Alice%40Example.org");
    assert_eq!(r.json()["mxid"], "@alice:example.org", "{}", r.text);
    let bulk = json!({"threepids": [["msisdn", "447700900001"], ["email", "nobody@example.org"]]});
    let r = s.post(support::V1_BULK_LOOKUP, &bulk.to_string());
    assert_eq!(
        r.json(),
        json!({"threepids": [["msisdn", "447700900001", "@alice:example.org"]]})
    );
    s.wait_hash_index();
    let token = v2_token(s, hs, "reader");
    let pepper = s.pepper(&token);
    let hash = lookup_hash("alice@example.org", "email", &pepper);
    let r = post_v2(
        s,
        &token,
        &json!({"algorithm": "sha256", "pepper": pepper, "addresses": [hash]}),
    );
    assert_eq!(r.json(), json!({"mappings": {hash: "@alice:example.org"}}));
}

fn alice_rows() -> Vec<(String, &'static str, String)> {
    vec![
        (
            "@alice:example.org".into(),
            "email",
            "alice@example.org".into(),
        ),
        ("@alice:example.org".into(), "msisdn", "447700900001".into()),
        ("@bob:example.org".into(), "email", "bob@example.org".into()),
    ]
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn synapse_sqlite_database() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let dir = TempDir::new();
    let db = synapse_sqlite(&dir, &alice_rows());
    let s = Mxisd::start(&sqlite_store(&db, ""));
    assert_finds_alice(&s, &hs);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn ma1sd_documented_settings_are_read_as_meant() {
    // ma1sd's docs: the type left out (mxisd's default, sqlite), `legacyRoomNames`, and a
    // listing query naming its columns in another order than (medium, address, id).
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let dir = TempDir::new();
    let db = synapse_sqlite(&dir, &alice_rows());
    let s = Mxisd::start(&format!(
        "synapseSql:\n  enabled: true\n  connection: '{db}'\n  legacyRoomNames: true\n  lookup:\n    query: 'select user_id as mxid, medium, address from user_threepids'\n{}",
        allow_loopback()
    ));
    assert_finds_alice(&s, &hs);
    assert!(!s.log().contains("legacyRoomNames"), "{}", s.log());
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn synapse_postgresql_database() {
    ensure_up();
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let name = format!("synapse_{}", std::process::id());
    psql(get("PG_DB"), &format!("DROP DATABASE IF EXISTS {name}"));
    psql(get("PG_DB"), &format!("CREATE DATABASE {name}"));
    psql(&name, SYNAPSE_SCHEMA);
    for (user, medium, address) in alice_rows() {
        psql(
            &name,
            &format!("INSERT INTO user_threepids VALUES ('{user}', '{medium}', '{address}', 0, 0)"),
        );
    }
    // mxisd's JDBC-style connection string.
    let connection = format!(
        "//127.0.0.1:{}/{name}?user={}",
        get("PG_PORT"),
        get("PG_USER")
    );
    let s = Mxisd::start(&format!(
        "synapseSql:\n  enabled: true\n  type: postgresql\n  connection: '{connection}'\n{}",
        allow_loopback()
    ));
    assert_finds_alice(&s, &hs);
    // An injection attempt is just an address that matches nothing.
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=email&address=x'%20OR%20'1'%3D'1");
    assert_eq!(r.json(), json!({}));
}

#[test]
fn a_custom_query_with_localparts() {
    let dir = TempDir::new();
    let path = dir.join("people.db");
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("CREATE TABLE people (login TEXT, mail TEXT); INSERT INTO people VALUES ('carol', 'carol@corp.example');").unwrap();
    let config = format!(
        "sql:\n  enabled: true\n  type: sqlite\n  connection: '{}'\n  identity:\n    type: localpart\n    query: \"SELECT login FROM people WHERE ? = 'email' AND mail = ?\"\n  lookup:\n    query: \"SELECT 'email', mail, login FROM people\"\n",
        path.display()
    );
    let s = Mxisd::start(&config);
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=email&address=carol%40corp.example");
    assert_eq!(r.json()["mxid"], "@carol:example.org", "{}", r.text);
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=msisdn&address=447700900001");
    assert_eq!(r.json(), json!({}));
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn ten_thousand_addresses_in_one_bulk() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let dir = TempDir::new();
    let db = synapse_sqlite(&dir, &numbered_users(10_000));
    let s = Mxisd::start(&sqlite_store(&db, ""));

    let asked: Vec<Value> = (0..10_000)
        .map(|i| json!(["email", format!("USER{i}@example.org")]))
        .collect();
    let r = s.post(
        support::V1_BULK_LOOKUP,
        &json!({ "threepids": asked }).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let found = r.json()["threepids"].as_array().unwrap().clone();
    assert_eq!(found.len(), 10_000);
    assert!(found.contains(&json!([
        "email",
        "USER4242@example.org",
        "@user4242:example.org"
    ])));

    s.wait_hash_index();
    let token = v2_token(&s, &hs, "bulk");
    let pepper = s.pepper(&token);
    let hashes: Vec<String> = (0..10_000)
        .map(|i| lookup_hash(&format!("user{i}@example.org"), "email", &pepper))
        .collect();
    let r = post_v2(
        &s,
        &token,
        &json!({"algorithm": "sha256", "pepper": pepper, "addresses": hashes}),
    );
    let mappings = r.json()["mappings"].as_object().unwrap().clone();
    assert_eq!(mappings.len(), 10_000);
    assert_eq!(mappings[&hashes[9999]], "@user9999:example.org");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_database_that_is_down_is_503_never_not_found() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    // Nothing listens on port 1: mxisd starts, lookups fail naming the store.
    let s = Mxisd::start(&format!(
        "synapseSql:\n  enabled: true\n  type: postgresql\n  connection: '//127.0.0.1:1/synapse?user=synapse'\n  timeout: 2\n{}",
        allow_loopback()
    ));
    let body = s
        .get("/_matrix/identity/api/v1/lookup?medium=email&address=alice%40example.org")
        .assert_error(503, "M_UNKNOWN");
    assert!(
        body["error"].as_str().unwrap().contains("synapseSql"),
        "{body}"
    );
    let bulk = json!({"threepids": [["email", "alice@example.org"]]});
    s.post(support::V1_BULK_LOOKUP, &bulk.to_string())
        .assert_error(503, "M_UNKNOWN");
    let token = v2_token(&s, &hs, "x");
    let pepper = s.pepper(&token);
    let body = json!({"algorithm": "sha256", "pepper": pepper, "addresses": [lookup_hash("alice@example.org", "email", &pepper)]});
    post_v2(&s, &token, &body).assert_error(503, "M_UNKNOWN");
    assert!(s.wait_for_log("identity store synapseSql"), "{}", s.log());
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_hash_index_picks_up_new_bindings_on_refresh() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let dir = TempDir::new();
    let db = synapse_sqlite(&dir, &alice_rows());
    let s = Mxisd::start(&sqlite_store(
        &db,
        "hashing:
  refreshInterval: 1
",
    ));
    s.wait_hash_index();
    let token = v2_token(&s, &hs, "reader");
    let pepper = s.pepper(&token);
    let hash = lookup_hash("gina@example.org", "email", &pepper);
    let ask = json!({"algorithm": "sha256", "pepper": pepper, "addresses": [hash]});
    assert_eq!(post_v2(&s, &token, &ask).json(), json!({"mappings": {}}));

    // Synapse adds a 3PID; within a refresh interval or two, hashed lookups find it.
    let writer = rusqlite::Connection::open(&db).unwrap();
    writer.execute("INSERT INTO user_threepids VALUES ('@gina:example.org', 'email', 'gina@example.org', 0, 0)", []).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if post_v2(&s, &token, &ask).json()
            == json!({"mappings": {hash.clone(): "@gina:example.org"}})
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not picked up by the refresh"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn hashed_lookups_answer_what_single_lookups_answer_with_default_and_custom_queries() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let dir = TempDir::new();

    // The default pair over Synapse's table, where older Synapses kept an address's case:
    // a lookup asks with the normalised address, which the database compares exactly.
    let mut rows = alice_rows();
    rows.push((
        "@olga:example.org".into(),
        "email",
        "Olga@Example.org".into(),
    ));
    let db = synapse_sqlite(&dir, &rows);
    let s = Mxisd::start(&sqlite_store(&db, ""));
    s.wait_hash_index();
    let token = v2_token(&s, &hs, "reader");
    let asked = [
        ("alice@example.org", "email"),
        ("447700900001", "msisdn"),
        ("olga@example.org", "email"),
        ("nobody@example.org", "email"),
    ];
    let found = agreeing_lookups(&s, &token, &asked);
    let alice = Some("@alice:example.org".to_owned());
    assert_eq!(found, [alice.clone(), alice, None, None]);

    // The operator's queries, over SQLite and PostgreSQL.
    let path = dir.join("people.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(PEOPLE)
        .unwrap();
    let pg = fresh_database("people");
    psql(&pg, PEOPLE);
    for (kind, connection) in [
        ("sqlite", path.display().to_string()),
        ("postgresql", pg_connection(&pg)),
    ] {
        let s = Mxisd::start(&format!(
            "sql:\n  enabled: true\n  type: {kind}\n  connection: '{connection}'\n{PEOPLE_QUERIES}{}",
            allow_loopback()
        ));
        s.wait_hash_index();
        let token = v2_token(&s, &hs, "reader");
        let asked = [
            ("lena@corp.example", "email"),
            ("447700900201", "msisdn"),
            ("max@corp.example", "email"),
            ("447700900202", "msisdn"),
            ("mia@corp.example", "email"),
            ("447700900203", "msisdn"),
            ("nils@corp.example", "email"),
        ];
        let found: Vec<bool> = agreeing_lookups(&s, &token, &asked)
            .iter()
            .map(Option::is_some)
            .collect();
        assert_eq!(
            found,
            [true, true, false, false, true, false, false],
            "{kind}"
        );
    }
}

/// An operator's table of people, some inactive, one address stored in capitals.
const PEOPLE: &str = "CREATE TABLE people (login TEXT, medium TEXT, address TEXT, active INTEGER);
INSERT INTO people VALUES
  ('lena', 'email', 'lena@corp.example', 1), ('lena', 'msisdn', '447700900201', 1),
  ('max', 'email', 'max@corp.example', 0), ('max', 'msisdn', '447700900202', 0),
  ('mia', 'email', 'mia@corp.example', 1), ('mia', 'msisdn', '447700900203', 1),
  ('nils', 'email', 'Nils@Corp.example', 1);";

/// The operator's queries: the lookup leaves out inactive accounts, the phone lookup also
/// mia; the listing names every row.
const PEOPLE_QUERIES: &str = "  identity:
    type: localpart
    query: \"SELECT login FROM people WHERE medium = ? AND address = ? AND active = 1\"
    medium:
      msisdn: \"SELECT login FROM people WHERE medium = ? AND address = ? AND active = 1 AND login <> 'mia'\"
  lookup:
    query: \"SELECT medium, address, login FROM people\"
";
