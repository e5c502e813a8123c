//! A PostgreSQL connection as written under `storage.provider.postgresql` (our own state)
//! and in the `sql` / `synapseSql` identity stores: the connection string and its `tls`
//! subsection (`mode: disable | require | verify-ca | verify-full`, `caFile`).
//!
//! mxisd and ma1sd read these strings with pgjdbc, so deployed configs carry JDBC's options
//! (`//db/mxisd?ssl=true&sslfactory=…`). They are read here the way pgjdbc (≥ 42.2.5, which
//! mxisd 1.4.6 used) meant them, and taken out of the string: `ssl=true` is `verify-full`
//! (never a silent downgrade), `sslmode` as written, `NonValidatingFactory` is `require`,
//! `sslrootcert` is the CA file; other JDBC options are ignored with a warning. What is left
//! is parsed here with the same parser the start uses, so `check-config` accepts exactly
//! what the start accepts.

use super::check::Resolver;
pub use crate::pg::{connection_text, with_causes, DbTls, TlsMode};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// What the `postgres` crate reads: a `postgresql://` URL or `key=value` pairs, TLS
    /// options taken out (they are in `tls`).
    pub connection: String,
    /// The user and password written apart from the connection (ma1sd's keys), if any.
    pub username: Option<String>,
    pub password: Option<String>,
    /// The connect deadline, `statement_timeout`, `lock_timeout` and the pool's checkout.
    pub timeout: Duration,
    pub pool_size: usize,
    pub tls: DbTls,
}

/// Options of the connection string that the `postgres` crate reads itself.
const DRIVER_OPTIONS: &[&str] = &[
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// pgjdbc's SSL factories that check certificates as `sslmode` says.
const CHECKING_FACTORIES: &[&str] = &[
    "org.postgresql.ssl.LibPQFactory",
    "org.postgresql.ssl.jdbc4.LibPQFactory",
    "org.postgresql.ssl.DefaultJavaSSLFactory",
];
const NON_VALIDATING_FACTORY: &str = "org.postgresql.ssl.NonValidatingFactory";

/// What a connection string says about TLS.
#[derive(Debug, Default)]
struct WrittenTls {
    ssl: Option<String>,
    sslmode: Option<String>,
    non_validating: bool,
    root_cert: Option<String>,
}

/// One `key=value` of a connection string: its key and value (decoded) and its text.
struct Param {
    key: String,
    value: String,
    text: String,
}

impl Resolver<'_> {
    /// The connection written at `path` and the `tls` subsection at `tls_path`: the string
    /// the `postgres` crate reads, and the TLS to use.
    pub(super) fn pg_connection(
        &mut self,
        path: &str,
        written: &str,
        tls_path: &str,
        t: Option<raw::Tls>,
    ) -> Result<(String, DbTls), String> {
        let text = connection_text(written);
        let (connection, found) = self.split_tls(path, &text)?;
        // The start parses it with this parser: a string it would refuse is refused here.
        postgres::Config::from_str(&connection).map_err(|e| {
            self.at(
                path,
                format!("not a PostgreSQL connection string: {}", with_causes(&e)),
            )
        })?;
        let tls = self.db_tls(tls_path, t, path, found)?;
        Ok((connection, tls))
    }

    /// The connection string without its TLS and JDBC options, and what they said.
    fn split_tls(&mut self, path: &str, text: &str) -> Result<(String, WrittenTls), String> {
        let mut found = WrittenTls::default();
        let url = text.starts_with("postgresql://") || text.starts_with("postgres://");
        let (base, params) = if url {
            let (base, query) = text.split_once('?').unwrap_or((text, ""));
            (base.to_owned(), url_params(query))
        } else {
            (String::new(), key_value_params(text))
        };
        let mut kept = Vec::new();
        for p in params {
            if self.connection_option(path, &p, url, &mut found)? {
                kept.push(p.text);
            }
        }
        let connection = match (url, kept.is_empty()) {
            (true, true) => base,
            (true, false) => format!("{base}?{}", kept.join("&")),
            (false, _) => kept.join(" "),
        };
        Ok((connection, found))
    }

    /// Whether the option stays in the string for the driver; TLS options go to `found`.
    /// Other options of a URL (JDBC's: `ApplicationName`, `connectTimeout`, …) are ignored
    /// with a warning; of a `key=value` string (libpq's form, never JDBC's), left for the
    /// driver to refuse, so that a misspelt key is not silently dropped.
    fn connection_option(
        &mut self,
        path: &str,
        p: &Param,
        url: bool,
        found: &mut WrittenTls,
    ) -> Result<bool, String> {
        let value = p.value.as_str();
        match p.key.as_str() {
            key if DRIVER_OPTIONS.contains(&key) => return Ok(true),
            "ssl" => found.ssl = Some(value.to_owned()),
            "sslmode" => found.sslmode = Some(value.to_owned()),
            "sslrootcert" => found.root_cert = Some(value.to_owned()),
            "sslfactory" if value == NON_VALIDATING_FACTORY => found.non_validating = true,
            "sslfactory" if CHECKING_FACTORIES.contains(&value) => {}
            "sslfactory" => {
                return Err(self.at(
                    path,
                    format!("sslfactory={value}: this version cannot tell what that factory checks; write sslmode=… (or the `tls` subsection) instead"),
                ))
            }
            "sslcert" | "sslkey" | "sslpassword" | "sslpasswordcallback" => {
                return Err(self.at(
                    path,
                    format!("{}: client certificates are not supported by this version", p.key),
                ))
            }
            _ if !url => return Ok(true),
            // A misspelt TLS option must not quietly mean no TLS.
            other if other.to_ascii_lowercase().starts_with("ssl") => {
                return Err(self.at(
                    path,
                    format!("`{other}` is not a TLS option this version knows (ssl, sslmode, sslrootcert, sslfactory)"),
                ))
            }
            other => self.warnings.push(self.at(
                path,
                format!("the option `{other}` is not used by this version (a JDBC option?): ignored"),
            )),
        }
        Ok(false)
    }

    /// The `tls` subsection at `path`, together with what the connection string at
    /// `conn_path` said. Neither: no TLS, as before these keys existed.
    fn db_tls(
        &mut self,
        path: &str,
        t: Option<raw::Tls>,
        conn_path: &str,
        found: WrittenTls,
    ) -> Result<DbTls, String> {
        let t = t.unwrap_or_default();
        let mode_path = format!("{path}.mode");
        let written = match self.non_empty(&mode_path, t.mode)? {
            Some(m) => match TlsMode::parse(&m).filter(|m| *m != TlsMode::Prefer) {
                Some(mode) => Some(mode),
                None => {
                    return Err(self.at(
                        &mode_path,
                        format!("'{m}' is not disable, require, verify-ca or verify-full"),
                    ))
                }
            },
            None => None,
        };
        let said = self.string_tls(conn_path, &found)?;
        let mode = match (written, &said) {
            (Some(a), Some((b, as_written))) if a != *b => {
                return Err(self.at(
                    &mode_path,
                    format!(
                        "is {}, but the connection string says {as_written} ({}): keep one",
                        a.name(),
                        b.name()
                    ),
                ))
            }
            (Some(a), _) => a,
            (None, Some((b, _))) => *b,
            (None, None) => TlsMode::Disable,
        };
        if mode == TlsMode::Prefer {
            self.warnings.push(self.at(
                conn_path,
                "sslmode prefer (or allow) connects without TLS when the server, or anyone in between, declines it: write require or verify-full".to_owned(),
            ));
        }
        let ca_path = format!("{path}.caFile");
        let ca_file = self.pem_file(&ca_path, t.ca_file)?;
        if ca_file.is_some() && !mode.verifies() {
            return Err(self.at(
                &ca_path,
                format!("is only used with `{mode_path}: verify-full` (or verify-ca)"),
            ));
        }
        let root_cert = match found.root_cert {
            Some(file) if !mode.verifies() => {
                // pgjdbc did not read it either in these modes.
                self.warnings.push(self.at(
                    conn_path,
                    format!("sslrootcert={file} is not used with sslmode {}: the certificate is not checked", mode.name()),
                ));
                None
            }
            Some(file) => Some(self.pem_file(conn_path, Some(file))?.unwrap_or_default()),
            None => None,
        };
        let ca_file = match (ca_file, root_cert) {
            (Some(a), Some(b)) if a != b => {
                return Err(self.at(
                    &ca_path,
                    format!(
                        "{} and the connection string's sslrootcert={} differ: keep one",
                        a.display(),
                        b.display()
                    ),
                ))
            }
            (a, b) => a.or(b),
        };
        Ok(DbTls { mode, ca_file })
    }

    /// The TLS mode the connection string asks for, as pgjdbc reads it (`sslmode` first,
    /// then `ssl`), with how it was written.
    fn string_tls(
        &self,
        path: &str,
        found: &WrittenTls,
    ) -> Result<Option<(TlsMode, String)>, String> {
        let by_mode = match &found.sslmode {
            Some(m) => Some((
                TlsMode::parse(m).ok_or_else(|| {
                    self.at(
                        path,
                        format!("sslmode={m} is not disable, allow, prefer, require, verify-ca or verify-full"),
                    )
                })?,
                format!("sslmode={m}"),
            )),
            None => None,
        };
        let by_ssl = match found.ssl.as_deref() {
            None | Some("false") => None,
            // pgjdbc ≥ 42.2.5: `ssl` alone (empty or true) is verify-full.
            Some("" | "true") => Some((TlsMode::VerifyFull, "ssl=true".to_owned())),
            Some(other) => return Err(self.at(path, format!("ssl={other} is not true or false"))),
        };
        if !found.non_validating {
            return Ok(by_mode.or(by_ssl));
        }
        // The non-validating factory checks no certificate, whatever `ssl` says (`ssl=true&
        // sslfactory=…NonValidatingFactory` is pgjdbc's old idiom for "encrypt only"); an
        // `sslmode` that asks for checks contradicts it.
        match by_mode {
            Some((TlsMode::Disable, w)) => Ok(Some((TlsMode::Disable, w))),
            Some((mode, w)) if mode.verifies() => Err(self.at(
                path,
                format!("{w} asks for the certificate to be checked, sslfactory={NON_VALIDATING_FACTORY} for it not to be: keep one"),
            )),
            _ => Ok(Some((
                TlsMode::Require,
                format!("sslfactory={NON_VALIDATING_FACTORY}"),
            ))),
        }
    }
}

/// `a=1&b=2` of a URL, values percent-decoded (the text kept as written).
fn url_params(query: &str) -> Vec<Param> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|text| {
            let (key, value) = text.split_once('=').unwrap_or((text, ""));
            let decode = |s: &str| {
                crate::urlencoded::decode(s, false).map_or_else(|| s.to_owned(), |d| d.into_owned())
            };
            Param {
                key: decode(key),
                value: decode(value),
                text: text.to_owned(),
            }
        })
        .collect()
}

/// `a=1 b='two words'` (libpq's form): values unquoted (the text kept as written). A piece
/// without `=` is kept for the driver to refuse.
fn key_value_params(text: &str) -> Vec<Param> {
    let mut params = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = rest[..key_end].to_owned();
        let mut i = key_end;
        let after_key = rest[i..].trim_start();
        i = rest.len() - after_key.len();
        let mut value = String::new();
        if let Some(v) = after_key.strip_prefix('=') {
            let v_trimmed = v.trim_start();
            i = rest.len() - v_trimmed.len();
            let mut chars = v_trimmed.char_indices().peekable();
            if v_trimmed.starts_with('\'') {
                chars.next();
                let mut end = v_trimmed.len();
                while let Some((at, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, e)) = chars.next() {
                                value.push(e);
                            }
                        }
                        '\'' => {
                            end = at + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                i += end;
            } else {
                let end = v_trimmed
                    .find(char::is_whitespace)
                    .unwrap_or(v_trimmed.len());
                value = v_trimmed[..end].to_owned();
                i += end;
            }
        }
        params.push(Param {
            key,
            value,
            text: rest[..i].to_owned(),
        });
        rest = rest[i..].trim_start();
    }
    params
}

pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        Tls {
            mode: String = "mode",
            ca_file: String = "caFile",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<(String, String, String)> {
        key_value_params(text)
            .into_iter()
            .map(|p| (p.key, p.value, p.text))
            .collect()
    }

    #[test]
    fn key_value_strings_are_split_with_their_quotes() {
        assert_eq!(
            split("host=db  password='a b\\'c' sslmode = require"),
            [
                ("host".into(), "db".into(), "host=db".into()),
                (
                    "password".into(),
                    "a b'c".into(),
                    "password='a b\\'c'".into()
                ),
                (
                    "sslmode".into(),
                    "require".into(),
                    "sslmode = require".into()
                ),
            ]
        );
    }
}
