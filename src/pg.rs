//! Connecting to PostgreSQL, for our own state and for the `sql` identity stores: the
//! connection string (mxisd's `//host/db`, URLs, `key=value`), TLS (`disable`, `require`,
//! `verify-full`), and a deadline on everything the client cannot bound itself.
//!
//! Every connection gets: the whole connect (socket, TLS, startup, authentication) under
//! `timeout` (`handshake::Handshaker`); `statement_timeout` and `lock_timeout` of `timeout`,
//! so the server ends a slow statement or a wait for a lock; TCP keepalives and a TCP user
//! timeout, so a host that vanished fails the connection rather than leave it waiting.

use crate::handshake::{ConnectError, Handshaker};
use postgres::config::SslMode;
use postgres::{Client, NoTls};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How a PostgreSQL connection uses TLS (`tls.mode`, or `sslmode` / JDBC's options in the
/// connection string, read by `config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, the certificate not checked (libpq's `prefer`, `allow`).
    Prefer,
    /// Encrypted, the server's certificate not checked (libpq's `require`).
    Require,
    /// Encrypted, the certificate checked against `caFile` (else the system's CAs), not the
    /// host name.
    VerifyCa,
    /// Encrypted, the certificate checked against `caFile` (else the system's CAs) and the
    /// host name.
    VerifyFull,
}

impl TlsMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    /// libpq's (and pgjdbc's) `sslmode` values.
    pub(crate) fn parse(mode: &str) -> Option<TlsMode> {
        Some(match mode {
            "disable" => TlsMode::Disable,
            "allow" | "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }

    pub(crate) fn verifies(self) -> bool {
        matches!(self, TlsMode::VerifyCa | TlsMode::VerifyFull)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbTls {
    pub mode: TlsMode,
    pub ca_file: Option<PathBuf>,
}

/// Where and how to connect; one connect at a time.
pub struct PgTarget {
    config: postgres::Config,
    tls: Option<MakeRustlsConnect>,
    timeout: Duration,
    handshaker: Handshaker<Client>,
}

impl PgTarget {
    /// `key` names the config section in errors.
    pub fn new(
        connection: &str,
        credentials: (Option<&str>, Option<&str>),
        timeout: Duration,
        tls: &DbTls,
        key: &str,
    ) -> Result<PgTarget, String> {
        let mut config = postgres::Config::from_str(&connection_text(connection))
            .map_err(|e| format!("{key}: {}", with_causes(&e)))?;
        if let Some(user) = credentials.0 {
            config.user(user);
        }
        if let Some(password) = credentials.1 {
            config.password(password);
        }
        let ms = timeout.as_millis();
        let written = config
            .get_options()
            .map(|o| format!("{o} "))
            .unwrap_or_default();
        config
            .connect_timeout(timeout)
            .tcp_user_timeout(timeout)
            .keepalives(true)
            .keepalives_idle(timeout)
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(3)
            .options(&format!(
                "{written}-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={}",
                ms.max(60_000)
            ))
            .application_name("mxisd");
        let tls = match tls.mode {
            TlsMode::Disable => {
                config.ssl_mode(SslMode::Disable);
                None
            }
            TlsMode::Prefer => {
                config.ssl_mode(SslMode::Prefer);
                Some(crate::tls::unverified()?)
            }
            TlsMode::Require => {
                config.ssl_mode(SslMode::Require);
                Some(crate::tls::unverified()?)
            }
            TlsMode::VerifyCa => {
                config.ssl_mode(SslMode::Require);
                Some(crate::tls::verifying_ca_only(
                    tls.ca_file.as_deref(),
                    &format!("{key}.tls.caFile"),
                )?)
            }
            TlsMode::VerifyFull => {
                config.ssl_mode(SslMode::Require);
                Some(crate::tls::verifying(
                    tls.ca_file.as_deref(),
                    &format!("{key}.tls.caFile"),
                )?)
            }
        };
        Ok(PgTarget {
            config,
            tls: tls.map(MakeRustlsConnect::new),
            timeout,
            handshaker: Handshaker::default(),
        })
    }

    /// The connect, statement and lock timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A new connection, handshake included, within the timeout.
    pub fn connect(&self) -> Result<Client, ConnectError> {
        let config = self.config.clone();
        match self.tls.clone() {
            None => self.handshaker.connect(self.timeout, move || {
                config.connect(NoTls).map_err(|e| with_causes(&e))
            }),
            Some(tls) => self.handshaker.connect(self.timeout, move || {
                config.connect(tls.clone()).map_err(|e| with_causes(&e))
            }),
        }
    }
}

/// mxisd's JDBC-style `//host[:port]/db?user=…` (also with `jdbc:postgresql:` before it) as
/// a URL; anything else as written.
pub fn connection_text(written: &str) -> String {
    let written = written.strip_prefix("jdbc:postgresql:").unwrap_or(written);
    match written.strip_prefix("//") {
        Some(rest) => format!("postgresql://{rest}"),
        None => written.to_owned(),
    }
}

/// An error with the errors that caused it: the `postgres` crate says only "db error" or
/// "invalid connection string", and keeps the why (the server's message, the I/O error, the
/// option at fault) in its source. Used where `config` first reads a
/// connection string and for every later error.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// JDBC's `?` placeholders (mxisd's queries) as PostgreSQL's `$1, $2, …`; quoted text is
/// left alone.
pub fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let (mut n, mut quoted) = (0, false);
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(connection: &str) -> PgTarget {
        let tls = DbTls {
            mode: TlsMode::Disable,
            ca_file: None,
        };
        PgTarget::new(
            connection,
            (None, None),
            Duration::from_secs(3),
            &tls,
            "sql",
        )
        .unwrap()
    }

    #[test]
    fn mxisd_connection_strings_are_read() {
        let c = target("//db.example.org:5433/synapse?user=synapse&password=secret").config;
        assert_eq!(c.get_dbname(), Some("synapse"));
        assert_eq!(c.get_user(), Some("synapse"));
        assert_eq!(c.get_ports(), &[5433]);
        let c = target("host=127.0.0.1 port=5433 user=postgres dbname=idtest").config;
        assert_eq!(c.get_dbname(), Some("idtest"));
        assert_eq!(c.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn jdbc_placeholders_become_numbered() {
        assert_eq!(
            numbered_placeholders("SELECT a FROM t WHERE m = ? AND x = '?' AND y = ?"),
            "SELECT a FROM t WHERE m = $1 AND x = '?' AND y = $2"
        );
    }
}
