//! The test services of `tests/services/` (slapd, PostgreSQL, dnsmasq, the SMTP sink): their
//! addresses, read from `tests/services/config.sh`, and a way to make sure they run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/services")
}

/// `KEY=value` lines of `config.sh`.
pub fn config() -> &'static HashMap<String, String> {
    static CONFIG: OnceLock<HashMap<String, String>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        std::fs::read_to_string(dir().join("config.sh"))
            .expect("tests/services/config.sh")
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    })
}

pub fn get(key: &str) -> &'static str {
    config()
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{key} missing from config.sh"))
}

pub fn port(key: &str) -> u16 {
    get(key).parse().unwrap()
}

/// Starts the services if they are not running (idempotent; tests/run.sh has usually done it).
pub fn ensure_up() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        let status = Command::new("bash")
            .arg(dir().join("up.sh"))
            .status()
            .expect("run up.sh");
        assert!(status.success(), "tests/services/up.sh failed");
    });
}

/// Runs `sql` with psql on database `db` of the test PostgreSQL; its output, without
/// decoration. Any error fails the test.
pub fn psql(db: &str, sql: &str) -> String {
    psql_on(get("PG_PORT"), get("PG_USER"), db, sql)
}

/// Runs `sql` with psql on the PostgreSQL at loopback `port`, as `user`, in `db`; its
/// unaligned output. Fails the test if psql does.
pub fn psql_on(port: &str, user: &str, db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", port, "-U", user, "-d", db])
        .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new, empty database on the test PostgreSQL, named after `prefix`; its name.
pub fn fresh_database(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    ensure_up();
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"));
    psql("postgres", &format!("CREATE DATABASE {name}"));
    name
}

/// A `key=value` connection string to database `db` of the test PostgreSQL.
pub fn pg_connection(db: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={} dbname={db}",
        get("PG_PORT"),
        get("PG_USER")
    )
}
