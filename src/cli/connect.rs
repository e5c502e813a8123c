//! `check-config --connect`: every backend the configuration names, tried once with its own
//! deadline, the way the server would use it: LDAP (bind, one search of each base DN),
//! each SQL store (its lookup query with a dummy address), the REST backend (its single
//! lookup endpoint), PostgreSQL state (connect, schema version), SMTP (EHLO, STARTTLS and
//! AUTH as configured; no mail), Twilio (skipped: no call is free of charge), and the other
//! identity servers `forward.servers` and the session policy's `toRemote` name (which of
//! v1 and v2 answer). Nothing is written anywhere.

use crate::config::{Config, StorageConfig};
use crate::federation::remote_session::{self, RemoteError};
use crate::federation::{Client, ConfiguredClient};
use crate::notify::smtp::Smtp;
use crate::stores::{ldap::LdapStore, rest::RestStore, sql::SqlStore, IdentityStore, StoreError};
use crate::threepid::Medium;
use std::time::{Duration, Instant};

/// An address no store holds: the lookup query runs, and finds nobody.
const DUMMY_ADDRESS: &str = "check-config@mxisd.invalid";

/// One backend tried: what it is, and what was done or why it failed.
pub struct Outcome {
    pub what: String,
    pub result: Result<String, String>,
    pub took: Duration,
}

impl Outcome {
    /// Not tried, and why: neither a success nor a failure.
    pub fn skipped(&self) -> bool {
        self.took.is_zero() && self.result.as_ref().is_ok_and(|r| r.starts_with("skipped"))
    }
}

fn timed(what: String, check: impl FnOnce() -> Result<String, String>) -> Outcome {
    let started = Instant::now();
    let result = check();
    Outcome {
        what,
        result,
        // At least 1 µs: zero marks what was skipped.
        took: started.elapsed().max(Duration::from_micros(1)),
    }
}

/// Every configured backend, tried in turn.
pub fn check_all(config: &Config) -> Vec<Outcome> {
    let mut out = Vec::new();
    let domain = &config.matrix.domain;
    let region = config.lookup.default_region;
    if let Some(ldap) = &config.ldap {
        out.push(timed(format!("ldap {}", ldap.url), || {
            let store = LdapStore::new(ldap.clone(), domain, region, 1)?;
            store.check().map_err(|e| ldap_hint(e.reason))
        }));
    }
    for sql in &config.sql {
        out.push(timed(format!("{} ({:?})", sql.name, sql.kind), || {
            let store = SqlStore::open(sql.clone(), domain, region, 1)?;
            dummy_lookup(&store)
        }));
    }
    if let Some(rest) = &config.rest {
        out.push(timed(format!("rest {}", rest.single_url), || {
            let client = ConfiguredClient::new(&config.federation, rest.timeout)?;
            let store = RestStore::new(rest.clone(), domain, region, client);
            dummy_lookup(&store)
        }));
    }
    if let StorageConfig::Postgresql(pg) = &config.storage {
        out.push(timed(
            format!("state: {}", config.storage.describe()),
            || postgres_state(pg),
        ));
    }
    if let Some(smtp) = &config.threepid.email.smtp {
        out.push(timed(format!("smtp {}:{}", smtp.host, smtp.port), || {
            Smtp::new(smtp, &config.threepid.email.from)?.check()
        }));
    }
    if let Some(twilio) = &config.threepid.msisdn.twilio {
        out.push(Outcome {
            what: format!("twilio {}", twilio.base_url),
            result: Ok("skipped: no call made (an SMS, even to test, costs money)".into()),
            took: Duration::ZERO,
        });
    }
    out.extend(identity_servers(config));
    out
}

/// A store's lookup query with an address nobody has.
fn dummy_lookup(store: &dyn IdentityStore) -> Result<String, String> {
    match store.find(Medium::Email, DUMMY_ADDRESS) {
        Ok(None) => Ok(format!(
            "lookup of {DUMMY_ADDRESS} ran: not found, as expected"
        )),
        Ok(Some(mxid)) => Ok(format!("lookup of {DUMMY_ADDRESS} ran: found {mxid} (!)")),
        Err(StoreError { reason, .. }) => Err(reason),
    }
}

/// Connect, and read the schema version: the newest migration applied.
fn postgres_state(pg: &crate::config::PostgresConfig) -> Result<String, String> {
    let target = crate::state::pg_target(pg)?;
    let mut client = target.connect().map_err(|e| format!("connecting: {e}"))?;
    let latest = crate::state::latest_migration();
    let has_table = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .and_then(|row| row.try_get::<_, bool>(0))
        .map_err(|e| crate::pg::with_causes(&e))?;
    if !has_table {
        return Ok(format!(
            "connected; no schema yet (the first start creates it, up to {latest})"
        ));
    }
    let newest: Option<String> = client
        .query_one("SELECT max(name) FROM schema_migrations", &[])
        .and_then(|row| row.try_get(0))
        .map_err(|e| crate::pg::with_causes(&e))?;
    let newest = newest.unwrap_or_default();
    match newest.as_str().cmp(latest) {
        std::cmp::Ordering::Equal => Ok(format!("connected; schema {newest} (current)")),
        std::cmp::Ordering::Less => Ok(format!(
            "connected; schema {newest}: the start brings it to {latest}"
        )),
        std::cmp::Ordering::Greater => Err(format!(
            "schema {newest} is newer than this build's {latest}: a newer mxisd uses this database"
        )),
    }
}

/// Why a server is checked: a forwarder, or the session policy's remote.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Forward,
    RemoteSessions,
}

/// The servers of `forward.servers` and of the session policy's `toRemote.server`, each
/// asked which API versions it serves, within `federation.timeout` per call.
fn identity_servers(config: &Config) -> Vec<Outcome> {
    let mut servers: Vec<(String, Role)> = config
        .forward
        .servers
        .iter()
        .map(|s| (s.clone(), Role::Forward))
        .collect();
    let policy = &config.session.policy;
    for scope in [&policy.for_local, &policy.for_remote] {
        let label = scope.remote_server.as_deref().filter(|_| scope.to_remote);
        let urls = label.and_then(|l| config.matrix.identity_servers.get(l));
        for url in urls.into_iter().flatten() {
            let entry = (url.clone(), Role::RemoteSessions);
            if !servers.contains(&entry) {
                servers.push(entry);
            }
        }
    }
    if servers.is_empty() {
        return Vec::new();
    }
    let client = match Client::new(&config.federation) {
        Ok(client) => client,
        Err(e) => {
            return vec![Outcome {
                what: "identity servers".into(),
                result: Err(e),
                took: Duration::from_micros(1),
            }]
        }
    };
    let tokens = &config.lookup.recursive.access_tokens;
    servers
        .into_iter()
        .map(|(base, role)| {
            let why = match role {
                Role::Forward => "forward.servers",
                Role::RemoteSessions => "session policy toRemote",
            };
            timed(format!("identity server {base} ({why})"), || {
                let has_token = tokens.contains_key(&base);
                versions(&client, &base, role, has_token)
            })
        })
        .collect()
}

/// Which of v1 and v2 `base` answers, and whether that is enough for `role`.
fn versions(client: &Client, base: &str, role: Role, has_token: bool) -> Result<String, String> {
    let v1 = remote_session::v1_available(client, base);
    let v2 = client
        .get(&format!("{base}/_matrix/identity/v2"), None)
        .map(|a| a.status == 200 && a.json().is_ok_and(|v| v.is_object()));
    let v1_ok = v1.is_ok();
    let v2_ok = matches!(v2, Ok(true));
    let answers = match (v1_ok, v2_ok) {
        (true, true) => "v1 and v2 answer",
        (true, false) => "v1 answers, v2 does not",
        (false, true) => "v2 answers, v1 does not",
        (false, false) => {
            // Unreachable, or neither API: say the first reason.
            let why = match (v1, v2) {
                (Err(RemoteError::Call(e)), _) => e.to_string(),
                (_, Err(e)) => e.to_string(),
                (Err(e), _) => e.to_string(),
                (Ok(()), Ok(_)) => "no identity API".into(),
            };
            return Err(format!("neither v1 nor v2 answers: {why}"));
        }
    };
    match role {
        Role::RemoteSessions if !v1_ok => Err(format!(
            "{answers}: remote sessions need v1 (over v2 a server binds only its own account's user)"
        )),
        Role::Forward if !v1_ok && !has_token => Err(format!(
            "{answers}, and lookup.recursive.accessTokens has no token for it: forwarded lookups find nobody there"
        )),
        Role::Forward if has_token && !v2_ok => Err(format!(
            "{answers}, but lookup.recursive.accessTokens gives it a token: lookups there go over v2"
        )),
        _ => Ok(answers.into()),
    }
}

/// An LDAP failure with what the operator most likely has to change (the result codes
/// of RFC 4511 that LDAP set-ups meet first).
fn ldap_hint(reason: String) -> String {
    let hint = if reason.contains("rc=49") {
        "the directory refused ldap.connection.bindDn with ldap.connection.bindPassword: wrong password, or no such DN"
    } else if reason.contains("rc=32") {
        "no such entry: check ldap.connection.baseDNs (and that bindDn may read it)"
    } else if reason.contains("rc=50") {
        "bindDn may not read this base DN (access control)"
    } else if reason.contains("rc=13") || reason.contains("rc=8") {
        "the directory wants TLS: set ldap.connection.tls or ldap.connection.startTls"
    } else if reason.contains("Connection refused") {
        "nothing listens there: check ldap.connection.host and port"
    } else if reason.contains("timed out") || reason.contains("elapsed") {
        "no answer within ldap.connection.timeout: a firewall, or the wrong host"
    } else {
        return reason;
    };
    format!("{reason} ({hint})")
}
