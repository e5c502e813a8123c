//! The configuration: mxisd's YAML keys (so an existing `/etc/mxisd/mxisd.yaml` keeps
//! working), read into one typed tree with defaults, and checked with messages that name the
//! key path and line.
//!
//! Rules: a key that mxisd or ma1sd know but this version does not implement is accepted with
//! one warning; a key that neither knows is an error (typo protection); a missing required key
//! is named. Depends on nothing else in mxisd but `cidr`.

mod raw;

use crate::cidr::Cidr;
use log::LevelFilter;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// The static store's identities (`memory.identities`), when enabled.
    pub memory: Vec<MemoryIdentity>,
    pub lookup: LookupConfig,
    pub hashing: HashingConfig,
    /// SQL identity stores: `sql`, then `synapseSql`, when enabled.
    pub sql: Vec<SqlStoreConfig>,
    pub ldap: Option<LdapConfig>,
    pub rest: Option<RestConfig>,
    pub internal: InternalConfig,
}

#[derive(Debug, Clone)]
pub struct RestConfig {
    /// Base URL of the backend (`https://backend.example.org`).
    pub host: String,
    pub timeout: Duration,
    pub auth_path: String,
    pub single_path: String,
    pub bulk_path: String,
}

#[derive(Debug, Clone)]
pub struct InternalConfig {
    /// Clients allowed to call `/_matrix-internal/` (default: loopback).
    pub allowed: Vec<Cidr>,
    /// Password checks allowed per user id per minute.
    pub rate_limit: u32,
}

#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    pub start_tls: bool,
    pub ca_file: Option<PathBuf>,
    pub bind_dn: String,
    pub bind_password: String,
    pub base_dns: Vec<String>,
    pub timeout: Duration,
    pub active_directory: bool,
    pub default_domain: Option<String>,
    /// Added to every search (e.g. group membership).
    pub filter: String,
    /// The attribute holding the user id, and whether it is a full Matrix ID.
    pub uid_attribute: String,
    pub uid_is_mxid: bool,
    pub name_attribute: String,
    /// Attributes holding each medium's addresses.
    pub threepid_attributes: std::collections::BTreeMap<String, Vec<String>>,
    /// Added to lookup searches.
    pub identity_filter: String,
    /// Per-medium lookup filter templates; `token` stands for the escaped address.
    pub identity_medium_filters: std::collections::BTreeMap<String, String>,
    pub identity_token: String,
    /// Added to authentication searches.
    pub auth_filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlKind {
    Sqlite,
    Postgresql,
}

#[derive(Debug, Clone)]
pub struct SqlStoreConfig {
    /// `sql` or `synapseSql`: the name in logs and errors.
    pub name: &'static str,
    pub kind: SqlKind,
    /// SQLite: the file. PostgreSQL: mxisd's `//host[:port]/db?user=…&password=…`, a
    /// `postgresql://` URL, or `key=value` pairs.
    pub connection: String,
    /// Connect and statement timeout.
    pub timeout: Duration,
    /// The query column holds full Matrix IDs (`true`) or localparts.
    pub mxid_column: bool,
    /// Finds one 3PID: parameters medium, address (`?` placeholders).
    pub query: String,
    /// Per-medium replacements of `query`.
    pub medium_queries: std::collections::BTreeMap<String, String>,
    /// Lists every binding for the hash index: columns medium, address, id.
    pub list_query: String,
}

/// mxisd's default: Synapse's table of 3PIDs.
pub const SQL_DEFAULT_QUERY: &str =
    "SELECT user_id AS uid FROM user_threepids WHERE medium = ? AND address = ?";
pub const SQL_DEFAULT_LIST_QUERY: &str = "SELECT medium, address, user_id FROM user_threepids";

#[derive(Debug, Clone)]
pub struct MemoryIdentity {
    pub username: String,
    pub password: Option<String>,
    pub display_name: Option<String>,
    /// (medium, address) as written; stores normalise them.
    pub threepids: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct LookupConfig {
    pub bulk_enabled: bool,
    /// Most addresses in one bulk or v2 lookup.
    pub max_addresses: usize,
    /// Region of phone numbers written without a country code in stores (`GB`, `FR`).
    pub default_region: Option<phonenumber::country::Id>,
}

#[derive(Debug, Clone)]
pub struct HashingConfig {
    /// Off: v2 lookups take only the `none` algorithm.
    pub enabled: bool,
    pub pepper_length: usize,
    /// The algorithms offered by `hash_details`, of `none` and `sha256`.
    pub algorithms: Vec<String>,
    /// How often the hash index is rebuilt from the stores.
    pub refresh_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct FederationConfig {
    /// The DNS server asked for every outbound name; `None`: the system's (resolv.conf).
    pub resolver: Option<std::net::SocketAddr>,
    pub connect_timeout: Duration,
    /// Longest one outbound call may take, DNS included.
    pub timeout: Duration,
    /// Ranges exempt from the outbound address policy (air-gapped LANs).
    pub ip_range_whitelist: Vec<Cidr>,
    /// PEM bundle of the CAs trusted instead of the public roots.
    pub ca_file: Option<PathBuf>,
    /// No certificate checks at all: tests only.
    pub tls_insecure: bool,
}

#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// Homeserver names allowed to register; empty: any.
    pub homeserver_allow_list: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    pub name: String,
    pub version: String,
    /// (language, document name, URL)
    pub terms: Vec<(String, String, String)>,
}

#[derive(Debug, Clone)]
pub struct MatrixConfig {
    /// The Matrix domain of the homeserver(s) this server is authoritative for.
    pub domain: String,
    /// Serve the unauthenticated `/_matrix/identity/api/v1` paths.
    pub v1: bool,
    /// Serve the `/_matrix/identity/v2` paths.
    pub v2: bool,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The name signatures are made as (`signatures.<name>`).
    pub name: String,
    pub port: u16,
    pub bind_address: String,
    /// Base URL clients reach us at, without a trailing slash.
    pub public_url: String,
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub sqlite_database: PathBuf,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub workers: usize,
    pub max_body_bytes: usize,
    /// Longest a client may take to send a whole request (head and body), or to read a
    /// whole response.
    pub request_timeout: Duration,
    /// Longest an idle keep-alive connection stays open.
    pub keep_alive_timeout: Duration,
    /// Most connections open at once; `None`: worked out from the open-files limit at start.
    pub max_connections: Option<usize>,
    pub trusted_proxies: Vec<Cidr>,
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub app: LevelFilter,
    pub root: LevelFilter,
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
    let root: raw::Root = if text.trim().is_empty() {
        raw::Root::default()
    } else {
        yaml_serde::from_str(text).map_err(|e| error(describe_yaml_error(&e)))?
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

/// serde_yaml-style messages already carry the key path and position ("server.port: invalid
/// type: ... at line 3 column 9"); unknown keys are said in our words.
fn describe_yaml_error(e: &yaml_serde::Error) -> String {
    let text = e.to_string();
    match text.split_once("unknown field `") {
        Some((path, rest)) => {
            let key = rest.split('`').next().unwrap_or_default();
            let path = path.trim().trim_end_matches(':');
            let full = if path.is_empty() || path == "." {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            };
            let position = e
                .location()
                .map(|l| format!(" (line {})", l.line()))
                .unwrap_or_default();
            format!("unknown key `{full}`{position}: neither mxisd nor ma1sd has this key; check its spelling and indentation")
        }
        None => text,
    }
}

struct Resolver<'a> {
    text: &'a str,
    warnings: &'a mut Vec<String>,
}

impl Resolver<'_> {
    fn resolve(&mut self, root: raw::Root) -> Result<Config, String> {
        self.unsupported("", &root.unsupported());
        let matrix = self.matrix(root.matrix.unwrap_or_default())?;
        let server = self.server(root.server.unwrap_or_default(), &matrix.domain)?;
        let key = KeyConfig {
            path: PathBuf::from(
                self.non_empty("key.path", root.key.and_then(|k| k.path))?
                    .unwrap_or_else(|| "/var/lib/mxisd/keys".into()),
            ),
        };
        let storage = self.storage(root.storage.unwrap_or_default())?;
        let http = self.http(root.http.unwrap_or_default())?;
        let logging = self.logging(root.logging.unwrap_or_default())?;
        let federation = self.federation(root.federation.unwrap_or_default())?;
        let account = AccountConfig {
            homeserver_allow_list: root
                .account
                .and_then(|a| a.homeserver_allow_list)
                .unwrap_or_default(),
        };
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
        let ldap = self.ldap(root.ldap.unwrap_or_default())?;
        let rest = self.rest(root.rest.unwrap_or_default())?;
        let internal = self.internal(root.internal.unwrap_or_default())?;
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
        })
    }

    fn unsupported(&mut self, section: &str, keys: &[&str]) {
        for key in keys {
            let path = if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            };
            let line = locate(self.text, &path)
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            self.warnings.push(format!(
                "`{path}`{line} is recognised (mxisd/ma1sd), not supported by this version: ignored"
            ));
        }
    }

    /// A number of seconds at `path` in `1..=max`, `default` when absent.
    fn seconds(
        &self,
        path: &str,
        value: Option<u64>,
        default: u64,
        max: u64,
    ) -> Result<Duration, String> {
        match value.unwrap_or(default) {
            s if (1..=max).contains(&s) => Ok(Duration::from_secs(s)),
            s => Err(self.at(path, format!("{s} s is outside 1..={max}"))),
        }
    }

    /// An error about a key that is present: its path and, where we find it, its line.
    fn at(&self, path: &str, message: impl fmt::Display) -> String {
        match locate(self.text, path) {
            Some(line) => format!("`{path}` (line {line}): {message}"),
            None => format!("`{path}`: {message}"),
        }
    }

    /// A list of CIDR ranges; an entry that is not one is an error at `path`.
    fn cidrs(&self, path: &str, list: Option<Vec<String>>) -> Result<Vec<Cidr>, String> {
        list.unwrap_or_default()
            .iter()
            .map(|c| c.parse::<Cidr>().map_err(|e| self.at(path, e)))
            .collect()
    }

    fn non_empty(&self, path: &str, value: Option<String>) -> Result<Option<String>, String> {
        match value {
            Some(v) if v.trim().is_empty() => Err(self.at(path, "is empty")),
            other => Ok(other.map(|v| v.trim().to_owned())),
        }
    }

    fn matrix(&mut self, m: raw::Matrix) -> Result<MatrixConfig, String> {
        self.unsupported("matrix", &m.unsupported());
        let domain = self.non_empty("matrix.domain", m.domain)?.ok_or(
            "`matrix.domain` is required: the domain of your Matrix IDs (e.g. example.org for @alice:example.org)",
        )?;
        if domain.contains('/') || domain.contains('@') || domain.contains(char::is_whitespace) {
            return Err(self.at(
                "matrix.domain",
                format!("'{domain}' is not a domain name (no scheme, path or user)"),
            ));
        }
        Ok(MatrixConfig {
            domain,
            v1: m.v1.unwrap_or(true),
            v2: m.v2.unwrap_or(true),
        })
    }

    fn server(&mut self, s: raw::Server, domain: &str) -> Result<ServerConfig, String> {
        let name = self
            .non_empty("server.name", s.name)?
            .unwrap_or_else(|| domain.to_owned());
        let bind = self.non_empty("server.bindAddress", s.bind_address)?;
        let hostname = self.non_empty("server.hostname", s.hostname)?;
        let bind_address = match (bind, hostname) {
            (Some(b), Some(h)) if b != h => {
                return Err(self.at(
                    "server.bindAddress",
                    format!("'{b}' differs from `server.hostname` '{h}'; keep one of them"),
                ))
            }
            (Some(b), _) | (None, Some(b)) => b,
            (None, None) => "127.0.0.1".into(),
        };
        let public_url = self
            .non_empty("server.publicUrl", s.public_url)?
            .map(|u| u.replace("%SERVER_NAME%", &name))
            .unwrap_or_else(|| format!("https://{name}"));
        if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
            return Err(self.at(
                "server.publicUrl",
                format!("'{public_url}' is not an http(s) URL"),
            ));
        }
        Ok(ServerConfig {
            name,
            port: s.port.unwrap_or(8090),
            bind_address,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }

    fn storage(&mut self, s: raw::Storage) -> Result<StorageConfig, String> {
        match self.non_empty("storage.backend", s.backend)?.as_deref() {
            None | Some("sqlite") => {}
            Some(other) => {
                return Err(self.at(
                    "storage.backend",
                    format!("'{other}' is not supported by this version; use sqlite"),
                ))
            }
        }
        let provider = s.provider.unwrap_or_default();
        self.unsupported("storage.provider", &provider.unsupported());
        let database = self
            .non_empty(
                "storage.provider.sqlite.database",
                provider.sqlite.and_then(|s| s.database),
            )?
            .unwrap_or_else(|| "/var/lib/mxisd/mxisd.db".into());
        Ok(StorageConfig {
            sqlite_database: PathBuf::from(database),
        })
    }

    fn http(&mut self, h: raw::Http) -> Result<HttpConfig, String> {
        let workers = h.workers.unwrap_or(16);
        if !(1..=1024).contains(&workers) {
            return Err(self.at("http.workers", format!("{workers} is outside 1..=1024")));
        }
        let max_body_bytes = h.max_body_bytes.unwrap_or(1 << 20);
        if max_body_bytes < 1024 {
            return Err(self.at("http.maxBodyBytes", "must be at least 1024"));
        }
        // `bodyTimeout` is the older name of `requestTimeout`.
        let request_timeout = match (h.request_timeout, h.body_timeout) {
            (Some(a), Some(b)) if a != b => {
                return Err(self.at(
                    "http.requestTimeout",
                    format!("{a} s, but its older name http.bodyTimeout says {b} s: keep one"),
                ))
            }
            (Some(t), _) => self.seconds("http.requestTimeout", Some(t), 10, 600)?,
            (None, t) => self.seconds("http.bodyTimeout", t, 10, 600)?,
        };
        let keep_alive_timeout =
            self.seconds("http.keepAliveTimeout", h.keep_alive_timeout, 15, 600)?;
        let max_connections = match h.max_connections {
            Some(n) if !(1..=1_000_000).contains(&n) => {
                return Err(self.at("http.maxConnections", format!("{n} is outside 1..=1000000")))
            }
            n => n,
        };
        let trusted_proxies = self.cidrs("http.trustedProxies", h.trusted_proxies)?;
        Ok(HttpConfig {
            workers,
            max_body_bytes,
            request_timeout,
            keep_alive_timeout,
            max_connections,
            trusted_proxies,
        })
    }

    fn logging(&mut self, l: raw::Logging) -> Result<LoggingConfig, String> {
        if l.requests == Some(true) {
            self.warnings.push(
                "`logging.requests` is recognised (ma1sd), not supported: request bodies carry tokens and addresses and are never logged".into(),
            );
        }
        let level = |path: &str, value: Option<String>, default: LevelFilter| match value {
            None => Ok(default),
            Some(v) => v.trim().parse::<LevelFilter>().map_err(|_| {
                self.at(
                    path,
                    format!("'{v}' is not a level (error, warn, info, debug, trace, off)"),
                )
            }),
        };
        Ok(LoggingConfig {
            app: level("logging.app", l.app, LevelFilter::Info)?,
            root: level("logging.root", l.root, LevelFilter::Warn)?,
        })
    }
}

impl Resolver<'_> {
    fn federation(&mut self, f: raw::Federation) -> Result<FederationConfig, String> {
        let resolver = match self.non_empty("federation.resolver", f.resolver)? {
            None => None,
            Some(r) => Some(
                r.parse::<std::net::SocketAddr>()
                    .or_else(|_| r.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
                    .map_err(|_| {
                        self.at(
                            "federation.resolver",
                            format!("'{r}' is not an IP address[:port]"),
                        )
                    })?,
            ),
        };
        let connect_timeout =
            self.seconds("federation.connectTimeout", f.connect_timeout, 5, 300)?;
        let timeout = self.seconds("federation.timeout", f.timeout, 15, 300)?;
        let ip_range_whitelist = self.cidrs("federation.ipRangeWhitelist", f.ip_range_whitelist)?;
        let tls = f.tls.unwrap_or_default();
        let ca_file = self
            .non_empty("federation.tls.caFile", tls.ca_file)?
            .map(PathBuf::from);
        if let Some(ca) = &ca_file {
            if !ca.is_file() {
                return Err(self.at(
                    "federation.tls.caFile",
                    format!("{} is not a readable file", ca.display()),
                ));
            }
        }
        Ok(FederationConfig {
            resolver,
            connect_timeout,
            timeout,
            ip_range_whitelist,
            ca_file,
            tls_insecure: tls.insecure.unwrap_or(false),
        })
    }

    fn policies(&mut self, p: raw::Policy) -> Result<Vec<PolicyConfig>, String> {
        let mut policies = Vec::new();
        for (name, doc) in p.policies.unwrap_or_default() {
            let path = format!("policy.policies.{name}");
            for key in doc.unsupported() {
                self.unsupported(&path, &[key]);
            }
            let version = self
                .non_empty(&format!("{path}.version"), doc.version)?
                .ok_or_else(|| format!("`{path}.version` is required"))?;
            let mut terms = Vec::new();
            for (lang, t) in doc.terms.unwrap_or_default() {
                let at = format!("{path}.terms.{lang}");
                let url = self
                    .non_empty(&format!("{at}.url"), t.url)?
                    .ok_or_else(|| format!("`{at}.url` is required"))?;
                let title = t.name.unwrap_or_else(|| name.clone());
                terms.push((lang, title, url));
            }
            if terms.is_empty() {
                return Err(format!(
                    "`{path}.terms` needs at least one language with a name and url"
                ));
            }
            policies.push(PolicyConfig {
                name,
                version,
                terms,
            });
        }
        Ok(policies)
    }
}

impl Resolver<'_> {
    fn memory(&mut self, m: raw::Memory) -> Result<Vec<MemoryIdentity>, String> {
        if m.enabled == Some(false) {
            return Ok(Vec::new());
        }
        let mut identities = Vec::new();
        for (i, id) in m.identities.unwrap_or_default().into_iter().enumerate() {
            let at = format!("memory.identities[{i}]");
            if !id.unsupported().is_empty() {
                self.unsupported(&at, &id.unsupported());
            }
            let username = id
                .username
                .filter(|u| !u.trim().is_empty())
                .ok_or(format!("`{at}.username` is required"))?;
            let threepids = id
                .threepids
                .unwrap_or_default()
                .into_iter()
                .map(|t| match (t.medium, t.address) {
                    (Some(m), Some(a)) => Ok((m, a)),
                    _ => Err(format!(
                        "`{at}.threepids` entries need a medium and an address"
                    )),
                })
                .collect::<Result<_, _>>()?;
            identities.push(MemoryIdentity {
                username: username.trim().to_owned(),
                password: id.password,
                display_name: id.display_name,
                threepids,
            });
        }
        Ok(identities)
    }

    fn sql(&mut self, name: &'static str, s: raw::Sql) -> Result<Option<SqlStoreConfig>, String> {
        if s.enabled != Some(true) {
            return Ok(None);
        }
        self.unsupported(name, &s.unsupported());
        let kind = match self.non_empty(&format!("{name}.type"), s.kind)?.as_deref() {
            Some("sqlite") => SqlKind::Sqlite,
            Some("postgresql") => SqlKind::Postgresql,
            Some(other) => {
                return Err(self.at(
                    &format!("{name}.type"),
                    format!("'{other}' is not sqlite or postgresql"),
                ))
            }
            None => return Err(format!("`{name}.type` is required (sqlite or postgresql)")),
        };
        let connection = self
            .non_empty(&format!("{name}.connection"), s.connection)?
            .ok_or_else(|| format!("`{name}.connection` is required"))?;
        let timeout = self.seconds(&format!("{name}.timeout"), s.timeout, 10, 300)?;
        let identity = s.identity.unwrap_or_default();
        if identity.enabled == Some(false) {
            return Ok(None); // the store serves no lookups
        }
        let mxid_column = match identity.kind.as_deref() {
            None | Some("mxid") => true,
            Some("localpart") | Some("uid") => false,
            Some(other) => {
                return Err(self.at(
                    &format!("{name}.identity.type"),
                    format!("'{other}' is not mxid or localpart"),
                ))
            }
        };
        Ok(Some(SqlStoreConfig {
            name,
            kind,
            connection,
            timeout,
            mxid_column,
            query: identity.query.unwrap_or_else(|| SQL_DEFAULT_QUERY.into()),
            medium_queries: identity.medium.unwrap_or_default(),
            list_query: s
                .lookup
                .and_then(|l| l.query)
                .unwrap_or_else(|| SQL_DEFAULT_LIST_QUERY.into()),
        }))
    }

    fn ldap(&mut self, l: raw::Ldap) -> Result<Option<LdapConfig>, String> {
        if l.enabled != Some(true) {
            return Ok(None);
        }
        self.unsupported("ldap", &l.unsupported());
        let c = l.connection.unwrap_or_default();
        let host = self
            .non_empty("ldap.connection.host", c.host)?
            .ok_or("`ldap.connection.host` is required")?;
        let tls = c.tls.unwrap_or(false);
        let start_tls = c.start_tls.unwrap_or(false);
        if tls && start_tls {
            return Err(self.at(
                "ldap.connection.startTls",
                "cannot be used with tls (LDAPS): pick one",
            ));
        }
        let port = c.port.unwrap_or(if tls { 636 } else { 389 });
        let url = format!("{}://{host}:{port}", if tls { "ldaps" } else { "ldap" });
        let mut base_dns = c.base_dns.unwrap_or_default();
        base_dns.extend(c.base_dn);
        base_dns.retain(|b| !b.trim().is_empty());
        if base_dns.is_empty() {
            return Err("`ldap.connection.baseDNs` needs at least one base DN".into());
        }
        let ca_file = self
            .non_empty("ldap.connection.caFile", c.ca_file)?
            .map(PathBuf::from);
        if let Some(ca) = ca_file.as_ref().filter(|p| !p.is_file()) {
            return Err(self.at(
                "ldap.connection.caFile",
                format!("{} is not a readable file", ca.display()),
            ));
        }
        let timeout = self.seconds("ldap.connection.timeout", c.timeout, 5, 300)?;
        let active_directory = l.active_directory.unwrap_or(false);
        let attribute = l.attribute.unwrap_or_default();
        let uid = attribute.uid.unwrap_or_default();
        let uid_is_mxid = match uid.kind.as_deref() {
            None | Some("uid") => false,
            Some("mxid") => true,
            Some(other) => {
                return Err(self.at(
                    "ldap.attribute.uid.type",
                    format!("'{other}' is not uid or mxid"),
                ))
            }
        };
        let default_uid = if active_directory {
            "sAMAccountName"
        } else {
            "uid"
        };
        let mut threepid_attributes = std::collections::BTreeMap::new();
        threepid_attributes.insert(
            "email".to_owned(),
            vec!["mail".to_owned(), "otherMailbox".to_owned()],
        );
        threepid_attributes.insert(
            "msisdn".to_owned(),
            [
                "telephoneNumber",
                "mobile",
                "homePhone",
                "otherTelephone",
                "otherMobile",
                "otherHomePhone",
            ]
            .map(str::to_owned)
            .to_vec(),
        );
        threepid_attributes.extend(attribute.threepid.unwrap_or_default());
        let identity = l.identity.unwrap_or_default();
        self.unsupported("ldap.identity", &identity.unsupported());
        Ok(Some(LdapConfig {
            url,
            start_tls,
            ca_file,
            bind_dn: c.bind_dn.unwrap_or_default(),
            bind_password: c.bind_password.unwrap_or_default(),
            base_dns,
            timeout,
            active_directory,
            default_domain: l.default_domain.filter(|d| !d.trim().is_empty()),
            filter: l.filter.unwrap_or_default(),
            uid_attribute: uid.value.unwrap_or_else(|| default_uid.into()),
            uid_is_mxid,
            name_attribute: attribute.name.unwrap_or_else(|| "displayName".into()),
            threepid_attributes,
            identity_filter: identity.filter.unwrap_or_default(),
            identity_medium_filters: identity.medium.unwrap_or_default(),
            identity_token: identity.token.unwrap_or_else(|| "%3pid".into()),
            auth_filter: l.auth.and_then(|a| a.filter).unwrap_or_default(),
        }))
    }

    fn rest(&mut self, r: raw::Rest) -> Result<Option<RestConfig>, String> {
        if r.enabled != Some(true) {
            return Ok(None);
        }
        let host = self
            .non_empty("rest.host", r.host)?
            .ok_or("`rest.host` is required")?;
        if !(host.starts_with("http://") || host.starts_with("https://")) {
            return Err(self.at("rest.host", format!("'{host}' is not an http(s) URL")));
        }
        let timeout = self.seconds("rest.timeout", r.timeout, 10, 300)?;
        let endpoints = r.endpoints.unwrap_or_default();
        self.unsupported("rest.endpoints", &endpoints.unsupported());
        let identity = endpoints.identity.unwrap_or_default();
        const BASE: &str = "/_mxisd/backend/api/v1";
        Ok(Some(RestConfig {
            host: host.trim_end_matches('/').to_owned(),
            timeout,
            auth_path: endpoints
                .auth
                .unwrap_or_else(|| format!("{BASE}/auth/login")),
            single_path: identity
                .single
                .unwrap_or_else(|| format!("{BASE}/identity/single")),
            bulk_path: identity
                .bulk
                .unwrap_or_else(|| format!("{BASE}/identity/bulk")),
        }))
    }

    fn internal(&mut self, i: raw::Internal) -> Result<InternalConfig, String> {
        self.unsupported("internal", &i.unsupported());
        let allowed = match i.allowed_cidr {
            Some(list) => self.cidrs("internal.allowedCidr", Some(list))?,
            None => vec!["127.0.0.0/8".parse()?, "::1/128".parse()?],
        };
        Ok(InternalConfig {
            allowed,
            rate_limit: i.rate_limit.unwrap_or(10).max(1),
        })
    }

    fn lookup(&mut self, l: raw::Lookup) -> Result<LookupConfig, String> {
        self.unsupported("lookup", &l.unsupported());
        let max_addresses = l.max_addresses.unwrap_or(10_000);
        if max_addresses == 0 {
            return Err(self.at("lookup.maxAddresses", "must be at least 1"));
        }
        let default_region = match self.non_empty("lookup.defaultRegion", l.default_region)? {
            None => None,
            Some(r) => Some(
                r.to_ascii_uppercase()
                    .parse::<phonenumber::country::Id>()
                    .map_err(|_| {
                        self.at(
                            "lookup.defaultRegion",
                            format!("'{r}' is not a two-letter region code (GB, FR, US, ...)"),
                        )
                    })?,
            ),
        };
        Ok(LookupConfig {
            bulk_enabled: l.bulk.and_then(|b| b.enabled).unwrap_or(true),
            max_addresses,
            default_region,
        })
    }

    fn hashing(&mut self, h: raw::Hashing) -> Result<HashingConfig, String> {
        self.unsupported("hashing", &h.unsupported());
        let enabled = h.enabled.unwrap_or(true);
        let pepper_length = h.pepper_length.unwrap_or(20);
        if !(8..=128).contains(&pepper_length) {
            return Err(self.at(
                "hashing.pepperLength",
                format!("{pepper_length} is outside 8..=128"),
            ));
        }
        let mut algorithms = h
            .algorithms
            .unwrap_or_else(|| vec!["sha256".into(), "none".into()]);
        for a in &algorithms {
            if a != "sha256" && a != "none" {
                return Err(self.at(
                    "hashing.algorithms",
                    format!("'{a}' is not one of sha256, none"),
                ));
            }
        }
        if !enabled {
            algorithms.retain(|a| a == "none");
        }
        if algorithms.is_empty() {
            return Err(self.at(
                "hashing.algorithms",
                "offers no algorithm: v2 lookups could not work",
            ));
        }
        let refresh = h.refresh_interval.unwrap_or(300);
        if !(1..=86_400).contains(&refresh) {
            return Err(self.at(
                "hashing.refreshInterval",
                format!("{refresh} s is outside 1..=86400"),
            ));
        }
        Ok(HashingConfig {
            enabled,
            pepper_length,
            algorithms,
            refresh_interval: Duration::from_secs(refresh),
        })
    }
}

/// The line (1-based) where the key at `path` (`a.b.c`) is written, for block-style YAML:
/// each segment is looked for below its parent, more indented than it.
fn locate(text: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut from, mut parent_indent, mut found) = (0, None::<usize>, None);
    for segment in path.split('.') {
        // Direct children share the indentation of the block's first line.
        let mut child_indent = None;
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let content = line.trim_start();
            let indent = line.len() - content.len();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            if parent_indent.is_some_and(|p| indent <= p) {
                break; // left the parent's block
            }
            if *child_indent.get_or_insert(indent) != indent {
                continue;
            }
            let key = content.trim_start_matches(['"', '\'']);
            let rest = key
                .strip_prefix(segment)
                .map(|r| r.trim_start_matches(['"', '\'']));
            if rest.is_some_and(|r| r.starts_with(':')) {
                hit = Some((i, indent));
                break;
            }
        }
        let (i, indent) = hit?;
        (from, parent_indent, found) = (i + 1, Some(indent), Some(i + 1));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let text = "matrix:\n  domain: example.org\n  identity:\n    servers: {}\nappsvc:\n  enabled: true\n  endpoint:\n    toHS: x\nstorage:\n  provider:\n    postgresql:\n      database: x\n";
        let w = load(text).unwrap().warnings;
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w.iter().any(|w| w.contains("`appsvc` (line 5)")), "{w:?}");
        assert!(
            w.iter().any(|w| w.contains("`matrix.identity` (line 3)")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.contains("`storage.provider.postgresql` (line 11)")),
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
        let e =
            load("matrix:\n  domain: example.org\nstorage:\n  backend: postgresql\n").unwrap_err();
        assert!(e.contains("storage.backend"), "{e}");
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
