//! `binds`: whether mxisd keeps the binds made here. mxisd never did (seed 004: the identity
//! stores hold bindings); off unless written, so an existing mxisd.yaml behaves as before.

use super::check::Resolver;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindsConfig {
    /// `binds.local.enabled`: keep binds in our state and serve them to lookups, after
    /// the identity stores.
    pub local: bool,
}

impl Resolver<'_> {
    pub(super) fn binds(&mut self, b: raw::Binds) -> BindsConfig {
        BindsConfig {
            local: b.local.and_then(|l| l.enabled).unwrap_or(false),
        }
    }
}

/// `binds` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        Binds {
            local: Local = "local",
        }
    }
    section! {
        Local {
            enabled: bool = "enabled",
        }
    }
}
