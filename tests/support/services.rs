//! The test services of `tests/services/` (slapd, PostgreSQL, dnsmasq, the SMTP sink): their
//! addresses, read from `tests/services/config.sh`, and a check that they run.

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

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

/// Checks that the services answer (once per test binary); fails the test, naming the script
/// that starts them, if not. Never starts or installs anything: `cargo test` runs without
/// them, and the tests that need them are ignored there: each carries
/// `#[ignore = "needs root and the test services: bash tests/run.sh"]`, the same text everywhere.
pub fn ensure_up() {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    let up = UP.get_or_init(|| {
        let ca = Path::new(get("MXISD_TEST_DIR")).join("tls/ca.pem");
        if !ca.is_file() {
            return Err(format!("no test CA at {}", ca.display()));
        }
        let ports = [
            "LDAP_PORT",
            "PG_PORT",
            "DNS_PORT",
            "SMTP_PORT",
            "SYNAPSE_CLIENT_PORT",
        ];
        for key in ports {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port(key)));
            if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                return Err(format!("nothing answers on {addr} ({key}): {e}"));
            }
        }
        Ok(())
    });
    if let Err(why) = up {
        panic!(
            "the test services are not running ({why}): start them with \
             `bash tests/services/up.sh` (as root it installs what is missing), \
             or run the whole suite with `bash tests/run.sh`"
        );
    }
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
