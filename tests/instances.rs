//! Several mxisd instances on one PostgreSQL, as an organisation runs them behind a load
//! balancer (Debian's nginx, configured by the README's example): they must answer as one
//! identity server. Also the state database's failures: not there at start, gone and back
//! mid-run, a server that accepts and never answers, and TLS to it.

use crate::support::balancer::Balancer;
use crate::support::fake_homeserver::{federation_config, FakeHomeserver};
use crate::support::pg_cluster::PgCluster;
use crate::support::services::{fresh_database, get, pg_connection};
use crate::support::tcp_proxy::TcpProxy;
use crate::support::{self, Mxisd, Response, Silent, TempDir};
use mxisd::crypto::hash::lookup_hash;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const V2: &str = "/_matrix/identity/v2";
const ISVALID: &str = "/_matrix/identity/api/v1/pubkey/ephemeral/isvalid?public_key=AAAA";

const TERMS: &str = "policy:\n  policies:\n    privacy:\n      version: '1'\n      terms:\n        en:\n          name: 'Privacy'\n          url: 'https://example.org/privacy-1.html'\n";
const STORE: &str = "memory:\n  enabled: true\n  identities:\n    - username: alice\n      threepids:\n        - medium: email\n          address: alice@example.org\n";

/// `storage` on PostgreSQL at `connection`, then `extra`.
fn on_postgres(connection: &str, extra: &str) -> String {
    format!("storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{connection}'\n      timeout: 2\n{extra}")
}

/// An instance in its own directory, with the signing key at `keys` (shared: one server).
fn instance(keys: &Path, config: &str) -> Mxisd {
    Mxisd::start_in(TempDir::new(), keys, config)
}

fn call(url: &str, token: &str, body: Option<&Value>) -> Response {
    let agent = support::agent();
    let auth = format!("Bearer {token}");
    Response::from(match body {
        None => agent.get(url).header("Authorization", &auth).call(),
        Some(b) => agent
            .post(url)
            .header("Authorization", &auth)
            .send(b.to_string()),
    })
}

/// The status of `GET /account` on each of `urls`.
fn account_statuses(urls: &[String], token: &str) -> Vec<u16> {
    urls.iter().map(|u| call(u, token, None).status).collect()
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn two_instances_behind_nginx_answer_as_one() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let hs_name = format!("127.0.0.1:{}", hs.port);
    let db = fresh_database("instances");
    let shared = TempDir::new();
    let keys = shared.join("keys");
    let config = on_postgres(
        &pg_connection(&db),
        &format!(
            "{TERMS}{STORE}{}",
            federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
        ),
    );
    let a = instance(&keys, &config);
    let b = instance(&keys, &config);
    a.wait_hash_index();
    b.wait_hash_index();
    let lb = Balancer::start(&[a.addr, b.addr]);
    // Twice through the balancer (round robin: once each), and each instance directly.
    let account = format!("{V2}/account");
    let everywhere = [
        lb.url(&account),
        lb.url(&account),
        a.url(&account),
        b.url(&account),
    ];

    let body = json!({"access_token": format!("user:@carol:{hs_name}"), "token_type": "Bearer", "matrix_server_name": hs_name, "expires_in": 3600});
    let r = Response::from(
        support::agent()
            .post(lb.url(&format!("{V2}/account/register")))
            .send(body.to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        account_statuses(&everywhere, &token),
        [403; 4],
        "terms not yet accepted"
    );

    let accept = json!({"user_accepts": ["https://example.org/privacy-1.html"]});
    let r = call(&lb.url(&format!("{V2}/terms")), &token, Some(&accept));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        account_statuses(&everywhere, &token),
        [200; 4],
        "the acceptance counts on both at once"
    );

    // One pepper, one key: the same hashed lookup answered alike by both.
    let peppers: Vec<String> = [a.url(""), b.url(""), lb.url(""), lb.url("")]
        .iter()
        .map(|base| {
            call(&format!("{base}{V2}/hash_details"), &token, None).json()["lookup_pepper"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(peppers.iter().all(|p| *p == peppers[0]), "{peppers:?}");
    let hash = lookup_hash("alice@example.org", "email", &peppers[0]);
    let lookup = json!({"algorithm": "sha256", "pepper": peppers[0], "addresses": [hash]});
    for _ in 0..2 {
        let r = call(&lb.url(&format!("{V2}/lookup")), &token, Some(&lookup));
        assert_eq!(
            (r.status, r.json()),
            (
                200,
                json!({"mappings": {hash.clone(): "@alice:example.org"}})
            )
        );
    }
    let key = |s: &str| {
        support::agent()
            .get(format!("{s}{V2}/pubkey/ed25519:0"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    };
    assert_eq!(key(&a.url("")), key(&b.url("")));

    let r = call(
        &lb.url(&format!("{V2}/account/logout")),
        &token,
        Some(&json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let done = Instant::now();
    for url in &everywhere {
        refused_after_the_bound(url, &token, done, "both instances");
    }
}

/// Asks `url` (`GET /account` with `token`, logged out on some instance before `done`) in a
/// loop: every request begun later than `state::TRUST_BOUND` after `done` must be refused
/// (401), each instance's cache notwithstanding; before that it may still pass. Requests
/// that fail otherwise (a 503 while a database connection hangs) are allowed; the loop
/// ends at the tenth 401 after the bound.
fn refused_after_the_bound(url: &str, token: &str, done: Instant, what: &str) {
    let bound = mxisd::state::TRUST_BOUND;
    let deadline = done + Duration::from_secs(20);
    let mut refusals = 0;
    let mut seen = Vec::new();
    while refusals < 10 {
        let started = Instant::now();
        assert!(started < deadline, "{what}: never refused: {seen:?}");
        let status = call(url, token, None).status;
        seen.push((started.duration_since(done).as_millis(), status));
        if started.duration_since(done) > bound {
            assert_ne!(
                status,
                200,
                "{what}: a token logged out {:?} ago was accepted: {seen:?}",
                started.duration_since(done)
            );
            refusals += usize::from(status == 401);
        }
    }
}

/// Two instances on one database, B's connections through `pg_port`; a user of both with
/// a token (accepted by B, so B's cache holds it). Returns (A, B, token, homeserver).
fn token_on_two_instances(db: &str, b_port: u16) -> (Mxisd, Mxisd, String, FakeHomeserver) {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let hs_name = format!("127.0.0.1:{}", hs.port);
    let shared = TempDir::new();
    let keys = shared.join("keys");
    let extra = federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n");
    let a = instance(&keys, &on_postgres(&pg_connection(db), &extra));
    let via = pg_connection(db).replace(
        &format!("port={}", get("PG_PORT")),
        &format!("port={b_port}"),
    );
    let b = instance(&keys, &on_postgres(&via, &extra));
    let body = json!({"access_token": format!("user:@dave:{hs_name}"), "token_type": "Bearer", "matrix_server_name": hs_name, "expires_in": 3600});
    let r = Response::from(
        support::agent()
            .post(a.url(&format!("{V2}/account/register")))
            .send(body.to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(
            call(&b.url(&format!("{V2}/account")), &token, None).status,
            200
        );
    }
    (a, b, token, hs)
}

fn logout(server: &Mxisd, token: &str) -> Instant {
    let r = call(
        &server.url(&format!("{V2}/account/logout")),
        token,
        Some(&json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    Instant::now()
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_logout_is_refused_by_another_instance_whose_listener_was_killed() {
    let db = fresh_database("listener_killed");
    let port: u16 = get("PG_PORT").parse().unwrap();
    let (a, b, token, _hs) = token_on_two_instances(&db, port);
    // Every instance's listening connection ends (the one that heartbeats).
    let killed = support::services::psql(
        &db,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'NOTIFY mxisd_heartbeat_%'",
    );
    assert_eq!(killed.trim(), "2", "one listener per instance");
    let done = logout(&a, &token);
    refused_after_the_bound(&b.url(&format!("{V2}/account")), &token, done, "B");
    assert!(
        b.wait_for_log("logout listener"),
        "the lost listener is logged\n{}",
        b.log()
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_logout_is_refused_by_another_instance_whose_listener_hears_nothing() {
    let db = fresh_database("listener_silent");
    let upstream: SocketAddr = format!("127.0.0.1:{}", get("PG_PORT")).parse().unwrap();
    let proxy = TcpProxy::start(upstream, b"LISTEN mxisd_logouts");
    let (a, b, token, _hs) = token_on_two_instances(&db, proxy.port);
    // B's listening connection goes silent, open: no error ever reaches B.
    proxy.freeze_marked();
    let done = logout(&a, &token);
    refused_after_the_bound(&b.url(&format!("{V2}/account")), &token, done, "B");
    // Until it is given up (the database timeout, 2 s) and B listens anew.
    assert!(
        b.wait_for_log("logout listener"),
        "the hung listener is logged\n{}",
        b.log()
    );
    assert_eq!(
        call(&b.url(&format!("{V2}/account")), &token, None).status,
        401
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn instances_starting_together_on_an_empty_database_migrate_once() {
    let db = fresh_database("migrate");
    let config = on_postgres(&pg_connection(&db), "");
    let starters: Vec<_> = (0..2)
        .map(|_| {
            let config = config.clone();
            std::thread::spawn(move || Mxisd::start(&config))
        })
        .collect();
    let servers: Vec<Mxisd> = starters.into_iter().map(|t| t.join().unwrap()).collect();
    let known = crate::state::MIGRATIONS.len();
    let applied: Vec<usize> = servers
        .iter()
        .map(|s| s.log().matches("applied migration").count())
        .collect();
    assert!(
        applied == [known, 0] || applied == [0, known],
        "{applied:?}\n{}\n{}",
        servers[0].log(),
        servers[1].log()
    );
    let names = support::services::psql(&db, "SELECT name FROM schema_migrations ORDER BY name");
    assert_eq!(names.lines().count(), known, "{names}");
    let pepper = support::services::psql(&db, "SELECT count(*) FROM hashing_metadata");
    assert_eq!(pepper.trim(), "1");
}

/// Polls `url` until it answers `status`, for at most `within`.
fn wait_for_status(url: &str, status: u16, within: Duration) -> u16 {
    let deadline = Instant::now() + within;
    loop {
        let got = Response::from(support::agent().get(url).call()).status;
        if got == status || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_state_database_that_goes_away_gives_503s_until_it_is_back() {
    let pg = PgCluster::start(false);
    let s = Mxisd::start(&on_postgres(&pg.connection(), ""));
    let url = s.url(ISVALID);
    assert_eq!(wait_for_status(&url, 200, Duration::ZERO), 200);

    pg.stop();
    let r = s.get(ISVALID);
    let body = r.assert_error(503, "M_UNKNOWN");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("state database (PostgreSQL)"),
        "{body}"
    );
    assert!(
        s.wait_for_log("state database (PostgreSQL) unavailable"),
        "{}",
        s.log()
    );

    // Something that accepts and never answers where the database was: every request
    // ends within the connect deadline (timeout: 2) plus the pool's wait.
    let silent = Silent::start_on(pg.port);
    let started = Instant::now();
    let answers: Vec<u16> = std::thread::scope(|scope| {
        let asks: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| s.get(ISVALID).status))
            .collect();
        asks.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers, [503; 4]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(
        s.answers_within(Duration::from_secs(1)),
        "the server itself stays responsive"
    );
    drop(silent);

    pg.start_again();
    assert_eq!(
        wait_for_status(&url, 200, Duration::from_secs(15)),
        200,
        "served again without a restart\n{}",
        s.log()
    );
}

#[test]
fn a_state_database_that_never_answers_ends_the_start_in_time() {
    let silent = Silent::start();
    let dir = TempDir::new();
    let config = dir.join("mxisd.yaml");
    let text = support::config_text(
        &dir,
        &dir.join("keys"),
        &on_postgres(
            &format!("host=127.0.0.1 port={} user=x dbname=x", silent.port),
            "",
        ),
    );
    std::fs::write(&config, text).unwrap();
    let started = Instant::now();
    let (code, _, err) = support::run(&["-c", config.to_str().unwrap()], None);
    assert_ne!(code, 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("storage (PostgreSQL database host=127.0.0.1")
            && err.contains("no connection within 2 s"),
        "{err}"
    );
    assert!(silent.accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn tls_to_postgresql_is_verified_with_the_ca_file() {
    let pg = PgCluster::start(true);
    pg.psql(support::SYNAPSE_SCHEMA);
    pg.psql("INSERT INTO user_threepids VALUES ('@dora:example.org', 'email', 'dora@example.org', 0, 0)");
    let ca = format!("{}/tls/ca.pem", get("MXISD_TEST_DIR"));
    let tls = |mode: &str, ca: Option<&str>| {
        let ca = ca.map(|c| format!("  caFile: '{c}'\n")).unwrap_or_default();
        format!("  mode: {mode}\n{ca}")
    };
    let indent = |t: &str, n: usize| {
        t.lines()
            .map(|l| format!("{}{l}\n", " ".repeat(n)))
            .collect::<String>()
    };
    let config = |state_tls: &str, store_tls: &str| {
        on_postgres(
            &pg.connection(),
            &format!(
                "      tls:\n{}sql:\n  enabled: true\n  type: postgresql\n  connection: '{}'\n  tls:\n{}",
                indent(state_tls, 6),
                pg.connection(),
                indent(store_tls, 2)
            ),
        )
    };
    let verified = tls("verify-full", Some(&ca));
    let s = Mxisd::start(&config(&verified, &verified));
    assert_eq!(s.get(ISVALID).status, 200);
    let r = s.get("/_matrix/identity/api/v1/lookup?medium=email&address=dora@example.org");
    assert_eq!(r.json()["mxid"], "@dora:example.org", "{}", r.text);
    let sessions = pg.psql("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'mxisd'");
    assert!(
        sessions.trim().parse::<u32>().unwrap() >= 2,
        "state and store both on TLS: {sessions}"
    );

    // Without the CA the certificate is not trusted: the start fails and says why.
    let dir = TempDir::new();
    let file = dir.join("mxisd.yaml");
    std::fs::write(
        &file,
        support::config_text(
            &dir,
            &dir.join("keys"),
            &config(&tls("verify-full", None), &verified),
        ),
    )
    .unwrap();
    let (code, _, err) = support::run(&["-c", file.to_str().unwrap()], None);
    assert_ne!(code, 0);
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    // With the CA but another host name than the certificate's: refused too.
    let wrong_name = pg.connection().replace(
        "host=127.0.0.1",
        "host=pg.wrong-name.test hostaddr=127.0.0.1",
    );
    let dir = TempDir::new();
    let file = dir.join("mxisd.yaml");
    let text = on_postgres(
        &wrong_name,
        &format!("      tls:\n{}", indent(&verified, 6)),
    );
    std::fs::write(&file, support::config_text(&dir, &dir.join("keys"), &text)).unwrap();
    let (code, _, err) = support::run(&["-c", file.to_str().unwrap()], None);
    assert_ne!(code, 0);
    assert!(err.contains("not valid for name"), "{err}");
    // `require` encrypts without checking.
    let s = Mxisd::start(&config(&tls("require", None), &tls("require", None)));
    assert_eq!(s.get(ISVALID).status, 200);
}

/// mxisd's JDBC-style strings with pgjdbc's TLS options (pgjdbc ≥ 42.2.5, as mxisd 1.4.6),
/// on a PostgreSQL with TLS: each means what it meant there, and none is downgraded.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn jdbc_tls_options_mean_what_pgjdbc_meant() {
    let pg = PgCluster::start(true);
    let ca = format!("{}/tls/ca.pem", get("MXISD_TEST_DIR"));
    let config = |host: &str, options: &str| {
        format!(
            "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      database: '//{host}:{}/mxisd?user=postgres&{options}'\n      timeout: 2\n",
            pg.port
        )
    };
    let on_tls = || {
        let n = pg.psql("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'mxisd'");
        n.trim().parse::<u32>().unwrap()
    };
    let wrong_name = "pg.wrong-name.test";
    for (host, options, says) in [
        // ssl=true: verify-full, here against the CA of sslrootcert.
        ("127.0.0.1", format!("ssl=true&sslrootcert={ca}"), None),
        // The old idiom for "encrypt only": no certificate check.
        (
            "127.0.0.1",
            "ssl=true&sslfactory=org.postgresql.ssl.NonValidatingFactory".to_owned(),
            None,
        ),
        // verify-ca: the CA checked, not the name.
        (
            wrong_name,
            format!("hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={ca}"),
            None,
        ),
        // JDBC's other options: ignored, with a warning.
        (
            "127.0.0.1",
            format!("ssl=true&sslrootcert={ca}&ApplicationName=matrix&loginTimeout=5"),
            Some("the option `ApplicationName` is not used by this version"),
        ),
    ] {
        let s = Mxisd::start(&config(host, &options));
        assert_eq!(s.get(ISVALID).status, 200, "{options}");
        assert!(on_tls() >= 1, "{options}: not on TLS");
        if let Some(warning) = says {
            assert!(s.log().contains(warning), "{}", s.log());
        }
    }
    // ssl=true checks the certificate and the name: without the CA, or under another
    // name, the start fails (check-config cannot know the server) and says why.
    for (host, options, why) in [
        ("127.0.0.1", "ssl=true".to_owned(), "UnknownIssuer"),
        (
            wrong_name,
            format!("hostaddr=127.0.0.1&ssl=true&sslrootcert={ca}"),
            "not valid for name",
        ),
    ] {
        let dir = TempDir::new();
        let file = dir.join("mxisd.yaml");
        let text = support::config_text(&dir, &dir.join("keys"), &config(host, &options));
        std::fs::write(&file, text).unwrap();
        let file = file.to_str().unwrap();
        let (code, _, err) = support::run(&["check-config", "-c", file], None);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = support::run(&["-c", file], None);
        assert_ne!(code, 0, "{options}");
        assert!(err.contains(why), "{options}: {err}");
    }
}

#[test]
fn the_readme_shows_the_nginx_example_the_balancer_test_uses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("etc/nginx/mxisd-instances.conf")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```nginx\n{example}```")),
        "README's \"Running several instances\" must quote etc/nginx/mxisd-instances.conf"
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_session_started_on_one_instance_validates_on_the_other() {
    let db = fresh_database("sessions");
    let shared = TempDir::new();
    let keys = shared.join("keys");
    let config = on_postgres(
        &pg_connection(&db),
        &format!(
            "threepid:\n  medium:\n    email:\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: {}\n          tls: 0\n",
            get("SMTP_PORT")
        ),
    );
    let a = instance(&keys, &config);
    let b = instance(&keys, &config);
    let lb = Balancer::start(&[a.addr, b.addr]);
    let email = format!(
        "two-instances-{}-{}@example.org",
        std::process::id(),
        mxisd::now_ms()
    );
    let request = json!({"client_secret": "both", "email": email, "send_attempt": 1});
    let path = "/_matrix/identity/api/v1/validate/email/requestToken";
    let r = a.post(path, &request.to_string());
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.json()["sid"].clone();
    // The retry lands on the other instance: the same session, no second mail.
    assert_eq!(b.post(path, &request.to_string()).json()["sid"], sid);
    let mails = crate::support::mail::wait_for(&email, 1);
    let link = crate::support::mail::link_in(&mails[0]);
    let r = b.get(link.trim_start_matches("https://example.org"));
    assert_eq!(
        r.status, 200,
        "validated through the other instance: {}",
        r.text
    );
    let check = format!(
        "/_matrix/identity/api/v1/3pid/getValidated3pid?sid={}&client_secret=both",
        sid.as_str().unwrap()
    );
    for url in [lb.url(&check), lb.url(&check), a.url(&check)] {
        let r = Response::from(support::agent().get(&url).call());
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["address"], email);
    }
    assert_eq!(crate::support::mail::mails_to(&email).len(), 1);
}
