//! The configuration: mxisd's YAML keys (so an existing `/etc/mxisd/mxisd.yaml` keeps
//! working), read into one typed tree with defaults, and checked with messages that name the
//! key path and line.
//!
//! Rules: a key that mxisd or ma1sd know but this version does not implement is accepted with
//! one warning; a key that neither knows is an error (typo protection); a missing required key
//! is named. Depends on nothing else in mxisd but the leaves `cidr` and `urlencoded`.
//!
//! Two layers, as sydent's `config/<section>.py`: each section has one file with its keys as
//! written (module `raw`, declared with `yaml::section!`), its typed, defaulted struct, and
//! the resolver from one to the other; `check.rs` holds the checks they share.

mod account;
mod binds;
mod check;
mod dns;
mod federation;
mod forward;
mod http;
mod internal;
mod invite;
mod ldap;
mod logging;
mod lookup;
mod matrix;
mod memory;
mod metrics;
mod notification;
mod postgresql;
mod rest;
mod root;
mod server;
mod session;
mod sql;
mod storage;
mod threepid;
mod yaml;

pub use account::{AccountConfig, PolicyConfig};
pub use binds::BindsConfig;
pub use dns::DnsConfig;
pub use federation::FederationConfig;
pub use forward::ForwardConfig;
pub use http::HttpConfig;
pub use internal::InternalConfig;
pub use invite::InviteConfig;
pub use ldap::LdapConfig;
pub use logging::LoggingConfig;
pub use lookup::{HashingConfig, LookupConfig, PeerConfig, RecursiveConfig};
pub use matrix::{MatrixConfig, MATRIX_ORG_LABEL};
pub use memory::{MemoryConfig, MemoryIdentity};
pub use metrics::{MetricsConfig, DEFAULT_METRICS_PORT};
pub use postgresql::{connection_text, with_causes, DbTls, PostgresConfig, TlsMode};
pub use rest::RestConfig;
pub use server::{KeyConfig, ServerConfig};
pub use session::{
    is_host_name, Limit, RemotePages, Scope, SessionConfig, SessionLimits, ValidationPolicy,
};
pub use sql::{SqlKind, SqlStoreConfig, SQL_DEFAULT_LIST_QUERY, SQL_DEFAULT_QUERY};
pub use storage::StorageConfig;
pub use threepid::{
    EmailConfig, MsisdnConfig, SmtpConfig, SmtpTls, Templates, ThreepidConfig, TwilioConfig,
};

use check::Resolver;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the config is looked for when `-c` is not given, in this order.
pub const DEFAULT_PATHS: [&str; 2] = ["/etc/mxisd/mxisd.yaml", "mxisd.yaml"];

#[derive(Debug, Clone)]
pub struct Config {
    pub matrix: MatrixConfig,
    pub server: ServerConfig,
    pub key: KeyConfig,
    pub storage: StorageConfig,
    pub http: HttpConfig,
    pub logging: LoggingConfig,
    pub federation: FederationConfig,
    pub account: AccountConfig,
    /// Terms every user must accept (ma1sd's `policy.policies`), by policy name.
    pub policies: Vec<PolicyConfig>,
    /// The static store (`memory`), when enabled.
    pub memory: Option<MemoryConfig>,
    pub lookup: LookupConfig,
    pub hashing: HashingConfig,
    /// SQL identity stores: `sql`, then `synapseSql`, when enabled.
    pub sql: Vec<SqlStoreConfig>,
    pub ldap: Option<LdapConfig>,
    pub rest: Option<RestConfig>,
    pub internal: InternalConfig,
    pub threepid: ThreepidConfig,
    pub session: SessionConfig,
    pub binds: BindsConfig,
    pub invite: InviteConfig,
    /// mxisd's `dns.overwrite` entries.
    pub dns: DnsConfig,
    /// `forward.servers`: the forwarders of lookups, resolved to base URLs.
    pub forward: ForwardConfig,
    /// `metrics`: the Prometheus listener.
    pub metrics: MetricsConfig,
}

/// A loaded configuration and the warnings it produced (to be logged once).
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub struct ConfigError {
    pub origin: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Picks the config file: the one given, else the first of [`DEFAULT_PATHS`] that exists.
pub fn find_file(given: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    DEFAULT_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| ConfigError {
            origin: "config".into(),
            message: format!(
                "no configuration file: tried {}; give one with -c FILE",
                DEFAULT_PATHS.join(" and ")
            ),
        })
}

pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        message: format!("cannot read: {e}"),
    })?;
    load_str(&text, &origin)
}

pub fn load_str(text: &str, origin: &str) -> Result<Loaded, ConfigError> {
    let error = |message: String| ConfigError {
        origin: origin.to_owned(),
        message,
    };
    let root: root::Root = if text.trim().is_empty() {
        root::Root::default()
    } else {
        yaml_serde::from_str(text).map_err(|e| error(yaml::describe_yaml_error(&e, text)))?
    };
    let mut warnings = Vec::new();
    let config = Resolver {
        text,
        warnings: &mut warnings,
    }
    .resolve(root)
    .map_err(error)?;
    Ok(Loaded { config, warnings })
}

impl Resolver<'_> {
    fn resolve(&mut self, root: root::Root) -> Result<Config, String> {
        self.unsupported("", &root.unsupported());
        let matrix = self.matrix(root.matrix.unwrap_or_default())?;
        let server = self.server(root.server.unwrap_or_default(), &matrix.domain)?;
        let key = self.key(root.key.unwrap_or_default())?;
        let storage = self.storage(root.storage.unwrap_or_default())?;
        let http = self.http(root.http.unwrap_or_default())?;
        let logging = self.logging(root.logging.unwrap_or_default())?;
        let federation = self.federation(root.federation.unwrap_or_default())?;
        let account = self.account(
            root.account.unwrap_or_default(),
            root.account_config,
            &matrix.domain,
        )?;
        // `auth` has one key, `rewrite`.
        if root.auth.is_some_and(|a| !a.unsupported().is_empty()) {
            return Err(self.refused(
                "auth.rewrite",
                "user ids would not be rewritten, so logins of the rewritten users would fail",
            ));
        }
        self.notification(root.notification)?;
        let policies = self.policies(root.policy.unwrap_or_default())?;
        let memory = self.memory(root.memory.unwrap_or_default())?;
        let lookup = self.lookup(root.lookup.unwrap_or_default())?;
        let hashing = self.hashing(root.hashing.unwrap_or_default())?;
        let mut sql = Vec::new();
        for (name, section) in [("sql", root.sql), ("synapseSql", root.synapse_sql)] {
            if let Some(store) = self.sql(name, section.unwrap_or_default())? {
                sql.push(store);
            }
        }
        let ldap = self.ldap("ldap", root.ldap.unwrap_or_default())?;
        let netiq = self.ldap("netiq", root.netiq.unwrap_or_default())?;
        let ldap = match (ldap, netiq) {
            (Some(_), Some(_)) => return Err(self.at(
                "netiq.enabled",
                "`netiq` is the LDAP store under another name, and `ldap` is enabled too: keep one",
            )),
            (ldap, netiq) => ldap.or(netiq),
        };
        let rest = self.rest(root.rest.unwrap_or_default())?;
        for (name, store) in [
            ("exec", root.exec),
            ("firebase", root.firebase),
            ("wordpress", root.wordpress),
        ] {
            if store.and_then(|s| s.enabled) == Some(true) {
                return Err(self.at(
                    &format!("{name}.enabled"),
                    format!("this version does not implement the {name} identity store: mxisd stops here rather than answer every lookup with nothing"),
                ));
            }
        }
        if memory.is_none() && sql.is_empty() && ldap.is_none() && rest.is_none() {
            self.warnings.push(
                "no identity store is enabled (memory, ldap, sql, synapseSql, rest): lookups find nobody".into(),
            );
        }
        let internal = self.internal(root.internal.unwrap_or_default())?;
        let invite_raw = root.invite.unwrap_or_default();
        let invite = self.invite(&invite_raw)?;
        let threepid = self.threepid(
            root.threepid.unwrap_or_default(),
            invite_raw.sender.and_then(|s| s.email),
            &matrix.domain,
        )?;
        let session = self.session(root.session.unwrap_or_default(), root.view)?;
        let binds = self.binds(root.binds.unwrap_or_default());
        let dns = self.dns(root.dns.unwrap_or_default())?;
        let forward = self.forward(root.forward.unwrap_or_default(), &matrix, &lookup)?;
        let metrics = self.metrics(root.metrics.unwrap_or_default(), &server)?;
        Ok(Config {
            matrix,
            server,
            key,
            storage,
            http,
            logging,
            federation,
            account,
            policies,
            memory,
            lookup,
            hashing,
            sql,
            ldap,
            rest,
            internal,
            threepid,
            session,
            binds,
            invite,
            dns,
            forward,
            metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use yaml::locate;

    fn load(text: &str) -> Result<Loaded, String> {
        load_str(text, "test.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_mxisd() {
        let c = load("matrix:\n  domain: example.org\n").unwrap().config;
        assert_eq!(c.server.name, "example.org");
        assert_eq!(c.server.port, 8090);
        assert_eq!(c.server.bind_address, "127.0.0.1");
        assert_eq!(c.server.public_url, "https://example.org");
        assert_eq!(c.http.workers, 16);
        assert_eq!(c.http.max_body_bytes, 1 << 20);
        assert_eq!(c.http.request_timeout, Duration::from_secs(10));
        assert_eq!(c.http.keep_alive_timeout, Duration::from_secs(15));
        assert_eq!(c.http.max_connections, None);
        assert!(c.matrix.v1 && c.matrix.v2);
        assert_eq!(
            c.matrix.identity_servers.get(MATRIX_ORG_LABEL),
            Some(&vec!["https://matrix.org".to_owned()])
        );
    }

    #[test]
    fn invite_resolution_recursion_is_mxisds() {
        let base = "matrix:\n  domain: example.org\n";
        assert!(load(base).unwrap().config.invite.resolution_recursive);
        let off = format!("{base}invite:\n  resolution:\n    recursive: false\n");
        let loaded = load(&off).unwrap();
        assert!(!loaded.config.invite.resolution_recursive);
        assert!(
            !loaded.warnings.iter().any(|w| w.contains("recursive")),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn identity_server_lists_are_base_urls() {
        let yaml = "matrix:\n  domain: example.org\n  identity:\n    servers:\n      lan: ['https://id.lan/', 'http://10.0.0.2:8090']\n";
        let c = load(yaml).unwrap().config;
        assert_eq!(
            c.matrix.identity_servers.len(),
            1,
            "the default list is replaced"
        );
        assert_eq!(
            c.matrix.identity_servers["lan"],
            vec![
                "https://id.lan".to_owned(),
                "http://10.0.0.2:8090".to_owned()
            ]
        );
        let bad =
            "matrix:\n  domain: example.org\n  identity:\n    servers:\n      lan: ['id.lan']\n";
        let e = load(bad).unwrap_err();
        assert!(
            e.contains("matrix.identity.servers.lan") && e.contains("not an http(s) URL"),
            "{e}"
        );
        let empty = "matrix:\n  domain: example.org\n  identity:\n    servers:\n      lan: []\n";
        assert!(load(empty).unwrap_err().contains("lists no server"));
    }

    #[test]
    fn the_request_timeout_has_an_older_name() {
        let http = |keys: &str| load(&format!("matrix:\n  domain: example.org\nhttp:\n{keys}"));
        let c = http("  bodyTimeout: 3\n  keepAliveTimeout: 4\n  maxConnections: 100\n");
        let c = c.unwrap().config.http;
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert_eq!(c.keep_alive_timeout, Duration::from_secs(4));
        assert_eq!(c.max_connections, Some(100));
        let c = http("  requestTimeout: 5\n  bodyTimeout: 5\n")
            .unwrap()
            .config
            .http;
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        let e = http("  requestTimeout: 5\n  bodyTimeout: 6\n").unwrap_err();
        assert!(
            e.contains("`http.requestTimeout` (line 4)") && e.contains("bodyTimeout"),
            "{e}"
        );
        let e = http("  keepAliveTimeout: 0\n").unwrap_err();
        assert!(e.contains("`http.keepAliveTimeout` (line 4)"), "{e}");
        let e = http("  maxConnections: 0\n").unwrap_err();
        assert!(e.contains("`http.maxConnections` (line 4)"), "{e}");
    }

    #[test]
    fn every_message_has_its_line() {
        // A section written twice, at the top level (the parser says no line).
        let e = load("matrix:\n  domain: example.org\nstorage:\n  backend: sqlite\nstorage:\n  backend: sqlite\n").unwrap_err();
        assert!(e.contains("duplicate field `storage` (line 5)"), "{e}");
        // A key that is required: the line of the section that lacks it.
        let e = load("matrix:\n  domain: example.org\nrest:\n  enabled: true\n").unwrap_err();
        assert!(
            e.contains(
                "`rest.host` is required for `rest.endpoints.auth`, a path (in `rest`, line 3)"
            ),
            "{e}"
        );
        // An entry of a list: the line of the list's section.
        let e = load("matrix:\n  domain: example.org\nmemory:\n  enabled: true\n  identities:\n    - password: x\n").unwrap_err();
        assert!(
            e.contains(
                "`memory.identities[0].username` is required (in `memory.identities`, line 5)"
            ),
            "{e}"
        );
        // A section not written at all: the line of the nearest one that is.
        let e = load("matrix:\n  domain: example.org\nldap:\n  enabled: true\n").unwrap_err();
        assert!(
            e.contains("`ldap.connection.host` is required (in `ldap`, line 3)"),
            "{e}"
        );
        let e = load("matrix:\n  v1: true\n").unwrap_err();
        assert!(
            e.contains("`matrix.domain` is required") && e.contains("line 1"),
            "{e}"
        );
    }

    #[test]
    fn mxisd_and_ma1sd_configs_start_as_documented() {
        let c = |extra: &str| load(&format!("matrix:\n  domain: example.org\n{extra}"));
        // Stores are off unless enabled, the static store included; with none, a warning.
        let loaded = c("memory:\n  identities: []\n").unwrap();
        assert!(loaded.config.memory.is_none());
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("no identity store is enabled")),
            "{:?}",
            loaded.warnings
        );
        // The SQL store's type defaults to sqlite; legacyRoomNames is accepted quietly.
        let loaded =
            c("synapseSql:\n  enabled: true\n  connection: /tmp/x.db\n  legacyRoomNames: true\n")
                .unwrap();
        assert_eq!(loaded.config.sql[0].kind, SqlKind::Sqlite);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        // LDAP: mxisd's defaults; its listing switch under both documented names.
        let ldap = "ldap:\n  enabled: true\n  connection:\n    host: h\n    baseDNs: ['dc=x']\n";
        let l = c(ldap).unwrap().config.ldap.unwrap();
        assert_eq!(l.uid_attribute, "saMAccountName");
        assert_eq!(
            l.threepid_attributes["email"],
            ["mailPrimaryAddress", "mail", "otherMailbox"]
        );
        assert!(l.listed);
        assert!(
            !c(&format!("{ldap}  lookup: false\n"))
                .unwrap()
                .config
                .ldap
                .unwrap()
                .listed
        );
        let e = c(&format!(
            "{ldap}  lookup: true\n  identity:\n    lookup: false\n"
        ))
        .unwrap_err();
        assert!(e.contains("keep one"), "{e}");
        // A caFile must hold certificates: checked here, not found empty at the first search.
        let e = c(&format!(
            "{ldap}    caFile: '{}'\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")
        ))
        .unwrap_err();
        assert!(
            e.contains("caFile") && e.contains("no PEM certificate"),
            "{e}"
        );
        // netiq is LDAP under another name; not both.
        let netiq = ldap.replace("ldap:", "netiq:");
        assert!(c(&netiq).unwrap().config.ldap.is_some());
        let e = c(&format!("{ldap}{netiq}")).unwrap_err();
        assert!(
            e.contains("`netiq.enabled`") && e.contains("keep one"),
            "{e}"
        );
        // REST: full URLs need no host; paths do.
        let rest = "rest:\n  enabled: true\n  endpoints:\n    auth: 'https://b.example/a'\n    identity:\n      single: 'https://b.example/s'\n      bulk: ''\n";
        let r = c(rest).unwrap().config.rest.unwrap();
        assert_eq!(
            (r.single_url.as_str(), r.bulk_url),
            ("https://b.example/s", None)
        );
        let e = c("rest:\n  enabled: true\n").unwrap_err();
        assert!(
            e.contains("`rest.host` is required for `rest.endpoints.auth`, a path"),
            "{e}"
        );
    }

    #[test]
    fn stores_this_version_lacks_stop_the_start() {
        let c = |extra: &str| load(&format!("matrix:\n  domain: example.org\n{extra}"));
        for store in ["exec", "firebase", "wordpress"] {
            let e = c(&format!("{store}:\n  enabled: true\n  other: keys\n")).unwrap_err();
            assert!(e.contains(&format!("`{store}.enabled` (line 4)")), "{e}");
            assert!(e.contains("does not implement"), "{e}");
            assert!(c(&format!("{store}:\n  enabled: false\n")).is_ok());
        }
        let e = c("sql:\n  enabled: true\n  type: mysql\n  connection: x\n").unwrap_err();
        assert!(
            e.contains("`sql.type` (line 5)") && e.contains("mysql"),
            "{e}"
        );
    }

    #[test]
    fn state_on_postgresql_reads_ma1sd_keys_and_ours() {
        let c = |extra: &str| {
            load(&format!(
                "matrix:\n  domain: example.org\nstorage:\n  backend: postgresql\n{extra}"
            ))
        };
        let e = c("").unwrap_err();
        assert!(
            e.contains("`storage.provider.postgresql.database` is required"),
            "{e}"
        );
        let cfg = c("  provider:\n    postgresql:\n      database: //db.example.org:5433/mxisd\n      username: mxisd\n      password: secret\n").unwrap().config;
        let StorageConfig::Postgresql(pg) = cfg.storage else {
            panic!("not postgresql")
        };
        assert_eq!(pg.connection, "postgresql://db.example.org:5433/mxisd");
        assert_eq!(
            (pg.username.as_deref(), pg.password.as_deref()),
            (Some("mxisd"), Some("secret"))
        );
        assert_eq!((pg.pool_size, pg.timeout.as_secs()), (8, 5));
        assert_eq!(pg.tls.mode, TlsMode::Disable);
        let cfg = c("  provider:\n    postgresql:\n      connection: 'host=db dbname=x sslmode=require'\n      poolSize: 3\n").unwrap().config;
        let StorageConfig::Postgresql(pg) = cfg.storage else {
            panic!("not postgresql")
        };
        assert_eq!((pg.pool_size, pg.tls.mode), (3, TlsMode::Require));
        let e = c(
            "  provider:\n    postgresql:\n      connection: host=db\n      tls:\n        mode: verify\n",
        )
        .unwrap_err();
        assert!(
            e.contains("`storage.provider.postgresql.tls.mode` (line 9)"),
            "{e}"
        );
        let e = c("  provider:\n    postgresql:\n      connection: host=db\n      tls:\n        caFile: /nonexistent.pem\n").unwrap_err();
        assert!(
            e.contains("caFile") && e.contains("not a readable file"),
            "{e}"
        );
        let e = c("  provider:\n    postgresql:\n      connection: x\n      database: y\n")
            .unwrap_err();
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn jdbc_options_mean_what_pgjdbc_meant() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/self-signed.pem");
        let state = |database: &str, tls: &str| {
            let text = format!("matrix:\n  domain: example.org\nstorage:\n  backend: postgresql\n  provider:\n    postgresql:\n      database: '{database}'\n{tls}");
            load(&text).map(|l| {
                let StorageConfig::Postgresql(pg) = l.config.storage else {
                    panic!("not postgresql")
                };
                (pg.connection, pg.tls.mode, pg.tls.ca_file, l.warnings)
            })
        };
        let ok = |database: &str| state(database, "").unwrap();
        // ssl=true is verify-full: never a silent downgrade.
        let (conn, mode, _, _) = ok("//db:5433/mxisd?user=u&password=p&ssl=true");
        assert_eq!(
            (conn.as_str(), mode),
            (
                "postgresql://db:5433/mxisd?user=u&password=p",
                TlsMode::VerifyFull
            )
        );
        assert_eq!(ok("jdbc:postgresql://db/x?ssl").1, TlsMode::VerifyFull);
        assert_eq!(ok("//db/x?ssl=false").1, TlsMode::Disable);
        // sslmode as written, before ssl (pgjdbc's order).
        assert_eq!(ok("//db/x?ssl=true&sslmode=require").1, TlsMode::Require);
        assert_eq!(ok("//db/x?sslmode=verify-ca").1, TlsMode::VerifyCa);
        // prefer: as pgjdbc meant it, and a warning that it may mean no TLS at all.
        let (_, mode, _, warnings) = ok("//db/x?sslmode=prefer");
        assert_eq!(mode, TlsMode::Prefer);
        assert!(
            warnings.iter().any(|w| w.contains("without TLS")),
            "{warnings:?}"
        );
        assert_eq!(
            ok("host=db dbname=x sslmode=verify-full").0,
            "host=db dbname=x"
        );
        // The non-validating factory: encrypted, not checked.
        let nv = "sslfactory=org.postgresql.ssl.NonValidatingFactory";
        assert_eq!(ok(&format!("//db/x?ssl=true&{nv}")).1, TlsMode::Require);
        assert_eq!(ok(&format!("//db/x?{nv}")).1, TlsMode::Require);
        let e = state(&format!("//db/x?sslmode=verify-full&{nv}"), "").unwrap_err();
        assert!(e.contains("keep one"), "{e}");
        // sslrootcert is the CA file.
        let (_, mode, ca_file, _) = ok(&format!("//db/x?ssl=true&sslrootcert={ca}"));
        assert_eq!(
            (mode, ca_file.unwrap().to_str().unwrap()),
            (TlsMode::VerifyFull, ca)
        );
        // Other JDBC options: ignored, one warning each.
        let (conn, mode, _, warnings) = ok("//db/x?ApplicationName=mxisd&connectTimeout=10&user=u");
        assert_eq!(
            (conn.as_str(), mode),
            ("postgresql://db/x?user=u", TlsMode::Disable)
        );
        let about = |key: &str| warnings.iter().filter(|w| w.contains(key)).count();
        assert_eq!(
            (about("ApplicationName"), about("connectTimeout")),
            (1, 1),
            "{warnings:?}"
        );
        assert!(
            warnings[0].contains("`ApplicationName`") && warnings[0].contains("line 7"),
            "{warnings:?}"
        );
        // What cannot be honoured is refused, naming the key.
        for bad in [
            "//db/x?ssl=maybe",
            "//db/x?sslmode=verify",
            "//db/x?sslfactory=com.example.Factory",
            "//db/x?sslcert=/c.pem",
            "//db/x?sslMode=verify-full",
            "//db/x?SSL=true",
            "//db/x?ssl=true&sslrootcert=/nonexistent.pem",
            "//db:port/x",
            "host=db hots=x",
        ] {
            let e = state(bad, "").unwrap_err();
            assert!(
                e.contains("storage.provider.postgresql.database` (line 7)"),
                "{bad}: {e}"
            );
        }
        // The tls subsection and the string must agree.
        let e = state("//db/x?ssl=true", "      tls:\n        mode: require\n").unwrap_err();
        assert!(
            e.contains("tls.mode` (line 9)") && e.contains("ssl=true"),
            "{e}"
        );
        let same = state("//db/x?ssl=true", "      tls:\n        mode: verify-full\n");
        assert_eq!(same.unwrap().1, TlsMode::VerifyFull);
    }

    #[test]
    fn mxisd_older_invite_sender_configures_the_smtp_connector() {
        let c = load("matrix:\n  domain: example.org\ninvite:\n  sender:\n    email:\n      host: smtp.example.org\n      port: 25\n      tls: 0\n      email: id@example.org\n      name: Example ID\n").unwrap().config;
        let smtp = c.threepid.email.smtp.expect("a connector");
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.tls),
            ("smtp.example.org", 25, SmtpTls::None)
        );
        assert_eq!(
            (
                c.threepid.email.from.as_str(),
                c.threepid.email.name.as_str()
            ),
            ("id@example.org", "Example ID")
        );
        // The newer keys win.
        let c = load("matrix:\n  domain: example.org\nthreepid:\n  medium:\n    email:\n      identity:\n        from: new@example.org\ninvite:\n  sender:\n    email:\n      host: smtp.example.org\n      email: old@example.org\n").unwrap().config;
        assert_eq!(c.threepid.email.from, "new@example.org");
        assert_eq!(c.threepid.email.smtp.unwrap().port, 587);
        // Its caFile must hold certificates (an empty one would trust nothing).
        let e = load(&format!(
            "matrix:\n  domain: example.org\nthreepid:\n  medium:\n    email:\n      connectors:\n        smtp:\n          host: smtp.example.org\n          caFile: '{}'\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")
        ))
        .unwrap_err();
        assert!(
            e.contains("caFile") && e.contains("no PEM certificate"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_name_path_and_line() {
        let e =
            load("matrix:\n  domain: example.org\nserver:\n  port: 8090\n  bindAdress: 0.0.0.0\n")
                .unwrap_err();
        assert!(
            e.contains("`server.bindAdress`") && e.contains("line 5"),
            "{e}"
        );
        let e = load("matrx:\n  domain: example.org\n").unwrap_err();
        assert!(e.contains("`matrx`") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let e = load("matrix:\n  domain: example.org\nserver:\n  port: eighty\n").unwrap_err();
        assert!(e.contains("server.port") && e.contains("line 4"), "{e}");
    }

    #[test]
    fn missing_domain_is_named() {
        let e = load("server:\n  port: 8090\n").unwrap_err();
        assert!(e.contains("`matrix.domain` is required"), "{e}");
        assert!(load("").unwrap_err().contains("matrix.domain"));
    }

    #[test]
    fn mxisd_sections_warn_once_each() {
        let text = "matrix:\n  domain: example.org\nhashing:\n  rotationPolicy: per_requests\nappsvc:\n  enabled: true\n  endpoint:\n    toHS: x\nmemory:\n  enabled: true\n";
        let w = load(text).unwrap().warnings;
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().any(|w| w.contains("`appsvc` (line 5)")), "{w:?}");
        assert!(
            w.iter()
                .any(|w| w.contains("`hashing.rotationPolicy` (line 4)")),
            "{w:?}"
        );
    }

    #[test]
    fn hostname_is_the_bind_address_and_public_url_is_templated() {
        let c = load("matrix:\n  domain: example.org\nserver:\n  name: id.example.org\n  hostname: 0.0.0.0\n  publicUrl: 'https://%SERVER_NAME%/'\n").unwrap().config;
        assert_eq!(c.server.bind_address, "0.0.0.0");
        assert_eq!(c.server.public_url, "https://id.example.org");
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let e = load("matrix:\n  domain: example.org\nhttp:\n  trustedProxies: ['10.0.0.0/40']\n")
            .unwrap_err();
        assert!(e.contains("`http.trustedProxies` (line 4)"), "{e}");
        let e = load("matrix:\n  domain: example.org\nstorage:\n  backend: mysql\n").unwrap_err();
        assert!(e.contains("`storage.backend` (line 4)"), "{e}");
        let e = load("matrix:\n  domain: https://example.org\n").unwrap_err();
        assert!(e.contains("matrix.domain"), "{e}");
    }

    #[test]
    fn locate_follows_indentation() {
        let text = "a:\n  b: 1\nc:\n  # b: no\n  d:\n    b: 2\n";
        assert_eq!(locate(text, "a.b"), Some(2));
        assert_eq!(locate(text, "c.d.b"), Some(6));
        assert_eq!(locate(text, "c.b"), None);
    }
}
