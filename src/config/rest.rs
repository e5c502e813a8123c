//! `rest`: mxisd's REST identity store, a backend of the operator's speaking mxisd's API.

use super::check::Resolver;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RestConfig {
    pub timeout: Duration,
    /// The endpoints' full URLs.
    pub auth_url: String,
    pub single_url: String,
    /// `None`: the backend has no bulk endpoint (`identity.bulk` left empty, "disabled" in
    /// mxisd's docs); bulk lookups ask it one address at a time.
    pub bulk_url: Option<String>,
}

/// mxisd's default endpoint paths, under `rest.host`.
const BASE: &str = "/_mxisd/backend/api/v1";

impl Resolver<'_> {
    pub(super) fn rest(&mut self, r: raw::Rest) -> Result<Option<RestConfig>, String> {
        if r.enabled != Some(true) {
            return Ok(None);
        }
        let host = self.non_empty("rest.host", r.host)?;
        if let Some(host) = &host {
            self.http_url("rest.host", host)?;
        }
        let timeout = self.seconds("rest.timeout", r.timeout, 10, 300)?;
        let endpoints = r.endpoints.unwrap_or_default();
        self.unsupported("rest.endpoints", &endpoints.unsupported());
        let identity = endpoints.identity.unwrap_or_default();
        // An endpoint is a full URL, or a path under `rest.host` (which only paths need).
        let url = |path: &str, given: Option<String>, default: &str| {
            let endpoint = given.unwrap_or_else(|| format!("{BASE}{default}"));
            if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
                return Ok(endpoint);
            }
            match &host {
                Some(host) => Ok(format!("{}{endpoint}", host.trim_end_matches('/'))),
                None => Err(self.required("rest.host", &format!(" for `{path}`, a path"))),
            }
        };
        let auth_url = url("rest.endpoints.auth", endpoints.auth, "/auth/login")?;
        let single_url = url(
            "rest.endpoints.identity.single",
            identity.single,
            "/identity/single",
        )?;
        let bulk_url = match identity.bulk {
            Some(bulk) if bulk.trim().is_empty() => None,
            bulk => Some(url("rest.endpoints.identity.bulk", bulk, "/identity/bulk")?),
        };
        Ok(Some(RestConfig {
            timeout,
            auth_url,
            single_url,
            bulk_url,
        }))
    }
}

/// `rest` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        /// mxisd's REST identity store.
        Rest {
            enabled: bool = "enabled",
            host: String = "host",
            timeout: u64 = "timeout",
            endpoints: RestEndpoints = "endpoints",
        }
    }
    section! {
        RestEndpoints {
            auth: String = "auth",
            identity: RestIdentityEndpoints = "identity",
        } unsupported {
            directory = "directory",
            profile = "profile",
        }
    }
    section! {
        RestIdentityEndpoints {
            single: String = "single",
            bulk: String = "bulk",
        }
    }
}
