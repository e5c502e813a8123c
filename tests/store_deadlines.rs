//! Every handshake and statement against an identity store has a deadline: a database or
//! directory that accepts connections and never answers, or a statement that runs too
//! long, makes lookups fail (503, naming the store) within the store's timeout. It never
//! holds up the start, and never holds a worker for good.

use crate::support::services::{ensure_up, get};
use crate::support::{Mxisd, Silent, V1_BULK_LOOKUP};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const ALICE: &str = "/_matrix/identity/api/v1/lookup?medium=email&address=alice%40example.org";

/// Asks for alice and expects 503 naming `store` within `within`.
fn fails_in_time(s: &Mxisd, store: &str, within: Duration) {
    let started = Instant::now();
    let body = s.get(ALICE).assert_error(503, "M_UNKNOWN");
    assert!(
        started.elapsed() < within,
        "answered after {:?}",
        started.elapsed()
    );
    assert!(body["error"].as_str().unwrap().contains(store), "{body}");
}

#[test]
fn a_database_that_never_answers_holds_up_neither_the_start_nor_a_worker() {
    let silent = Silent::start();
    // The first index build connects too: before, it ran ahead of the listener and the
    // start hung; the `postgres` crate bounds only the socket connect, not the startup.
    let started = Instant::now();
    let s = Mxisd::start(&format!(
        "synapseSql:\n  enabled: true\n  type: postgresql\n  connection: '//127.0.0.1:{}/synapse?user=synapse'\n  timeout: 1\n",
        silent.port
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    fails_in_time(&s, "synapseSql", Duration::from_secs(4));
    let bulk = json!({"threepids": [["email", "alice@example.org"]]});
    s.post(V1_BULK_LOOKUP, &bulk.to_string())
        .assert_error(503, "M_UNKNOWN");
    fails_in_time(&s, "synapseSql", Duration::from_secs(4));
    // One connect in flight at a time: the first is still waiting for its answer.
    assert_eq!(silent.accepted.load(Ordering::SeqCst), 1, "{}", s.log());
    assert!(s.wait_for_log("no connection within 1 s"), "{}", s.log());
    assert!(s.answers_within(Duration::from_secs(2)));
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_statement_that_runs_too_long_is_cancelled() {
    ensure_up();
    let connection = format!(
        "//127.0.0.1:{}/{}?user={}",
        get("PG_PORT"),
        get("PG_DB"),
        get("PG_USER")
    );
    let s = Mxisd::start(&format!(
        "sql:\n  enabled: true\n  type: postgresql\n  connection: '{connection}'\n  timeout: 1\n  identity:\n    query: \"SELECT CAST(pg_sleep(30) AS TEXT) WHERE CAST(? AS TEXT) <> CAST(? AS TEXT)\"\n  lookup:\n    query: \"SELECT 'email', 'bob@example.org', 'bob'\"\n"
    ));
    fails_in_time(&s, "sql", Duration::from_secs(5));
    assert!(s.wait_for_log("statement timeout"), "{}", s.log());
    assert!(s.answers_within(Duration::from_secs(2)));
}

/// An LDAP store at `port` with `connection` lines added, and a 1 s timeout.
fn ldap_at(port: u16, connection: &str) -> String {
    format!(
        "ldap:\n  enabled: true\n  connection:\n    host: '127.0.0.1'\n    port: {port}\n{connection}    baseDNs: ['ou=people,dc=example,dc=org']\n    timeout: 1\n"
    )
}

#[test]
fn a_directory_that_never_answers_is_503_in_time() {
    let silent = Silent::start();
    let bound = "    bindDn: 'cn=admin,dc=example,dc=org'\n    bindPassword: 'secret'\n";
    for connection in [bound, "", "    startTls: true\n"] {
        let s = Mxisd::start(&ldap_at(silent.port, connection));
        fails_in_time(&s, "ldap", Duration::from_secs(5));
        fails_in_time(&s, "ldap", Duration::from_secs(5));
        assert!(s.answers_within(Duration::from_secs(2)));
    }
}
