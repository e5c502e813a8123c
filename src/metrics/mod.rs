//! The process's metrics: counters, gauges and histograms kept in fixed sets of atomics,
//! rendered in Prometheus' text format (`text`) by the metrics listener
//! (`metrics_listener`), which adds what it reads from the state when scraped.
//!
//! Counting is cheap enough for every request: a relaxed atomic add (a few for a
//! histogram), no lock, no allocation. Labels come from fixed sets (a route's pattern, a
//! store kind, a connector), never from what a client sent, so the number of series is
//! bounded by the code.
//!
//! These are the one process-wide values of mxisd (`App` holds everything else): they are
//! written from every layer and only read by the listener, like the log.

pub mod http;
pub mod lookups;
pub mod text;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use text::{Kind, Text};

/// A connector that sends notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    Smtp,
    Twilio,
}

const CONNECTORS: [(Connector, &str); 2] =
    [(Connector::Smtp, "smtp"), (Connector::Twilio, "twilio")];

/// [connector][sent, failed]
static NOTIFICATIONS: [[AtomicU64; 2]; 2] = [const { [const { AtomicU64::new(0) }; 2] }; 2];

/// Counts one message handed to `connector`: sent (accepted by the relay or the SMS API),
/// or not.
pub fn notification(connector: Connector, sent: bool) {
    NOTIFICATIONS[connector as usize][usize::from(!sent)].fetch_add(1, Relaxed);
}

/// [unavailable, other]
static STATE_ERRORS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Counts an operation on our state database that failed: `unavailable` (not reached, no
/// answer in time, no free connection) or another error.
pub fn state_error(unavailable: bool) {
    STATE_ERRORS[usize::from(!unavailable)].fetch_add(1, Relaxed);
}

/// A backend a bulkhead guards (`gate::Bulkhead`): each identity store kind, the
/// PostgreSQL state, the other identity servers of lookups and of remote 3PID sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Ldap,
    Sql,
    SynapseSql,
    Rest,
    State,
    RemoteLookups,
    RemoteSessions,
    /// A store this list does not name (none in the server; a test's own).
    Other,
}

const BACKENDS: [(Backend, &str); 8] = [
    (Backend::Ldap, "ldap"),
    (Backend::Sql, "sql"),
    (Backend::SynapseSql, "synapseSql"),
    (Backend::Rest, "rest"),
    (Backend::State, "state"),
    (Backend::RemoteLookups, "remote_lookups"),
    (Backend::RemoteSessions, "remote_sessions"),
    (Backend::Other, "other"),
];

impl Backend {
    /// The identity store named `name` (its config section: `ldap`, `sql`, `synapseSql`,
    /// `rest`).
    pub fn store(name: &str) -> Backend {
        BACKENDS[..4]
            .iter()
            .find(|(_, label)| *label == name)
            .map_or(Backend::Other, |(backend, _)| *backend)
    }
}

static BACKEND_REFUSED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// Counts a call `backend`'s bulkhead refused (every place taken).
pub fn backend_refused(backend: Backend) {
    BACKEND_REFUSED[backend as usize].fetch_add(1, Relaxed);
}

static HASH_ENTRIES: AtomicU64 = AtomicU64::new(0);
/// When the hash index in use was built (ms since the epoch); 0 before the first.
static HASH_BUILT_MS: AtomicI64 = AtomicI64::new(0);

/// A hash index of `entries` hashes was just swapped in.
pub fn hash_index_built(entries: usize) {
    HASH_ENTRIES.store(entries as u64, Relaxed);
    HASH_BUILT_MS.store(crate::now_ms(), Relaxed);
}

/// Everything counted in this process, as Prometheus text families.
pub fn render(t: &mut Text) {
    http::render(t);
    lookups::render(t);
    t.family(
        "mxisd_notifications_total",
        Kind::Counter,
        "Messages handed to a connector (validation, unbind notice, invite), by connector and result.",
    );
    for (connector, name) in CONNECTORS {
        for (i, result) in ["sent", "failed"].into_iter().enumerate() {
            let n = NOTIFICATIONS[connector as usize][i].load(Relaxed);
            t.int(
                "mxisd_notifications_total",
                &[("connector", name), ("result", result)],
                n,
            );
        }
    }
    t.family(
        "mxisd_state_errors_total",
        Kind::Counter,
        "Operations on mxisd's own state database that failed, by kind (unavailable: not reached, no answer in time or no free connection).",
    );
    for (i, kind) in ["unavailable", "error"].into_iter().enumerate() {
        let n = STATE_ERRORS[i].load(Relaxed);
        t.int("mxisd_state_errors_total", &[("kind", kind)], n);
    }
    t.family(
        "mxisd_backend_refused_total",
        Kind::Counter,
        "Calls refused at once by a backend's bulkhead (http.backendWorkers: every place taken), by backend.",
    );
    for (backend, name) in BACKENDS {
        let n = BACKEND_REFUSED[backend as usize].load(Relaxed);
        t.int("mxisd_backend_refused_total", &[("backend", name)], n);
    }
    t.family(
        "mxisd_hash_index_entries",
        Kind::Gauge,
        "Hashes in the hash index of v2 lookups in use (0 before it is first built).",
    );
    t.int("mxisd_hash_index_entries", &[], HASH_ENTRIES.load(Relaxed));
    t.family(
        "mxisd_hash_index_age_seconds",
        Kind::Gauge,
        "Seconds since the hash index in use was built (NaN before it is first built).",
    );
    let built = HASH_BUILT_MS.load(Relaxed);
    let age = if built == 0 {
        f64::NAN
    } else {
        (crate::now_ms() - built).max(0) as f64 / 1e3
    };
    t.real("mxisd_hash_index_age_seconds", &[], age);
}
