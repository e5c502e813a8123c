//! `http`: mxisd's own HTTP server: workers, limits, timeouts, trusted proxies.

use super::check::Resolver;
use crate::cidr::Cidr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub workers: usize,
    /// Most workers that may wait on the mail and SMS connectors at once (a request past
    /// them is answered 503 at once, so that a stalled relay cannot hold every worker).
    pub connector_workers: usize,
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

impl Resolver<'_> {
    pub(super) fn http(&mut self, h: raw::Http) -> Result<HttpConfig, String> {
        let workers = h.workers.unwrap_or(16);
        if !(1..=1024).contains(&workers) {
            return Err(self.at("http.workers", format!("{workers} is outside 1..=1024")));
        }
        let connector_workers = match h.connector_workers {
            Some(n) if !(1..=workers).contains(&n) => {
                return Err(self.at(
                    "http.connectorWorkers",
                    format!("{n} is outside 1..={workers} (http.workers)"),
                ))
            }
            Some(n) => n,
            None => (workers / 2).max(1),
        };
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
            connector_workers,
            max_body_bytes,
            request_timeout,
            keep_alive_timeout,
            max_connections,
            trusted_proxies,
        })
    }
}

/// `http` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        /// mxisd's own HTTP server settings (new in this implementation).
        Http {
            workers: usize = "workers",
            connector_workers: usize = "connectorWorkers",
            max_body_bytes: usize = "maxBodyBytes",
            request_timeout: u64 = "requestTimeout",
            body_timeout: u64 = "bodyTimeout",
            keep_alive_timeout: u64 = "keepAliveTimeout",
            max_connections: usize = "maxConnections",
            trusted_proxies: Vec<String> = "trustedProxies",
        }
    }
}
