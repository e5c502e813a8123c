//! `internal`: who may call `/_matrix-internal/` (the Synapse REST auth module's password
//! check), and how often.

use super::check::Resolver;
use crate::cidr::Cidr;

#[derive(Debug, Clone)]
pub struct InternalConfig {
    /// Clients allowed to call `/_matrix-internal/` (default: loopback).
    pub allowed: Vec<Cidr>,
    /// Password checks allowed per user id per minute.
    pub rate_limit: u32,
}

impl Resolver<'_> {
    pub(super) fn internal(&mut self, i: raw::Internal) -> Result<InternalConfig, String> {
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
}

/// `internal` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        /// `/_matrix-internal/` endpoints (the Synapse REST auth module).
        Internal {
            allowed_cidr: Vec<String> = "allowedCidr",
            rate_limit: u32 = "rateLimit",
        } unsupported {
            enabled = "enabled",
        }
    }
}
