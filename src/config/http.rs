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
    /// Most workers that may wait on one backend at once (each identity store, the
    /// PostgreSQL state, the remote identity servers): a call past them fails at once (503),
    /// so that a frozen backend cannot hold every worker.
    pub backend_workers: usize,
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
        let connector_workers =
            self.share("http.connectorWorkers", h.connector_workers, workers)?;
        let backend_workers = self.share("http.backendWorkers", h.backend_workers, workers)?;
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
            backend_workers,
            max_body_bytes,
            request_timeout,
            keep_alive_timeout,
            max_connections,
            trusted_proxies,
        })
    }

    /// A share of the workers (`key`): 1..=`workers`, half of them when not set.
    fn share(&self, key: &str, n: Option<usize>, workers: usize) -> Result<usize, String> {
        match n {
            Some(n) if !(1..=workers).contains(&n) => {
                Err(self.at(key, format!("{n} is outside 1..={workers} (http.workers)")))
            }
            Some(n) => Ok(n),
            None => Ok((workers / 2).max(1)),
        }
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
            backend_workers: usize = "backendWorkers",
            max_body_bytes: usize = "maxBodyBytes",
            request_timeout: u64 = "requestTimeout",
            body_timeout: u64 = "bodyTimeout",
            keep_alive_timeout: u64 = "keepAliveTimeout",
            max_connections: usize = "maxConnections",
            trusted_proxies: Vec<String> = "trustedProxies",
        }
    }
}

#[cfg(test)]
mod tests {
    fn http(extra: &str) -> Result<super::HttpConfig, String> {
        let text = format!("matrix:\n  domain: example.org\nhttp:\n{extra}");
        crate::config::load_str(&text, "test")
            .map(|l| l.config.http)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn backend_workers_default_to_half_the_workers_and_stay_within_them() {
        let h = http("  workers: 6\n").expect("valid");
        assert_eq!((h.backend_workers, h.connector_workers), (3, 3));
        assert_eq!(http("  workers: 1\n").expect("valid").backend_workers, 1);
        let h = http("  workers: 4\n  backendWorkers: 4\n").expect("valid");
        assert_eq!(h.backend_workers, 4);
        for n in [0, 5] {
            let e = http(&format!("  workers: 4\n  backendWorkers: {n}\n")).expect_err("outside");
            assert!(
                e.contains("http.backendWorkers") && e.contains(&format!("{n} is outside 1..=4")),
                "{e}"
            );
        }
    }
}
