//! `server` and `key`: the name answers are signed as, where mxisd listens and is reached,
//! and where its signing keys are.

use super::check::Resolver;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The name signatures are made as (`signatures.<name>`).
    pub name: String,
    pub port: u16,
    pub bind_address: String,
    /// Base URL clients reach us at, without a trailing slash.
    pub public_url: String,
    /// `server.publicUrl` was not written (the URL is `https://<server.name>`).
    pub public_url_guessed: bool,
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub path: PathBuf,
}

impl Resolver<'_> {
    pub(super) fn key(&mut self, k: raw::Key) -> Result<KeyConfig, String> {
        let path = self
            .non_empty("key.path", k.path)?
            .unwrap_or_else(|| "/var/lib/mxisd/keys".into());
        Ok(KeyConfig {
            path: PathBuf::from(path),
        })
    }

    pub(super) fn server(&mut self, s: raw::Server, domain: &str) -> Result<ServerConfig, String> {
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
        let written = self.non_empty("server.publicUrl", s.public_url)?;
        let public_url_guessed = written.is_none();
        let public_url = written
            .map(|u| u.replace("%SERVER_NAME%", &name))
            .unwrap_or_else(|| format!("https://{name}"));
        self.http_url("server.publicUrl", &public_url)?;
        Ok(ServerConfig {
            name,
            port: s.port.unwrap_or(8090),
            bind_address,
            public_url: public_url.trim_end_matches('/').to_owned(),
            public_url_guessed,
        })
    }
}

/// `server` and `key` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        Server {
            name: String = "name",
            port: u16 = "port",
            public_url: String = "publicUrl",
            bind_address: String = "bindAddress",
            hostname: String = "hostname",
        }
    }
    section! {
        Key {
            path: String = "path",
        }
    }
}
