//! `rest`: mxisd's REST identity store, a backend of the operator's speaking mxisd's API.

use super::check::Resolver;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RestConfig {
    /// Base URL of the backend (`https://backend.example.org`).
    pub host: String,
    pub timeout: Duration,
    pub auth_path: String,
    pub single_path: String,
    pub bulk_path: String,
}

impl Resolver<'_> {
    pub(super) fn rest(&mut self, r: raw::Rest) -> Result<Option<RestConfig>, String> {
        if r.enabled != Some(true) {
            return Ok(None);
        }
        let host = self
            .non_empty("rest.host", r.host)?
            .ok_or_else(|| self.required("rest.host", ""))?;
        self.http_url("rest.host", &host)?;
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
