//! The whole YAML file as written: one field per top-level key, each section's structs
//! in its own file (`<section>.rs`, module `raw`), declared with `yaml::section!`.

use super::yaml::section;

section! {
    /// The whole file.
    Root {
        matrix: super::matrix::raw::Matrix = "matrix",
        server: super::server::raw::Server = "server",
        key: super::server::raw::Key = "key",
        storage: super::storage::raw::Storage = "storage",
        http: super::http::raw::Http = "http",
        logging: super::logging::raw::Logging = "logging",
        federation: super::federation::raw::Federation = "federation",
        account: super::account::raw::Account = "account",
        account_config: super::account::raw::AccountConfig = "accountConfig",
        auth: Auth = "auth",
        notification: super::notification::raw::Notification = "notification",
        policy: super::account::raw::Policy = "policy",
        memory: super::memory::raw::Memory = "memory",
        lookup: super::lookup::raw::Lookup = "lookup",
        hashing: super::lookup::raw::Hashing = "hashing",
        sql: super::sql::raw::Sql = "sql",
        synapse_sql: super::sql::raw::Sql = "synapseSql",
        ldap: super::ldap::raw::Ldap = "ldap",
        netiq: super::ldap::raw::Ldap = "netiq",
        exec: OtherStore = "exec",
        firebase: OtherStore = "firebase",
        wordpress: OtherStore = "wordpress",
        rest: super::rest::raw::Rest = "rest",
        internal: super::internal::raw::Internal = "internal",
        threepid: super::threepid::raw::Threepid = "threepid",
        session: super::session::raw::Session = "session",
        view: super::session::raw::View = "view",
        invite: super::invite::raw::Invite = "invite",
        binds: super::binds::raw::Binds = "binds",
        dns: super::dns::raw::Dns = "dns",
        forward: super::forward::raw::Forward = "forward",
        metrics: super::metrics::raw::Metrics = "metrics",
    } unsupported {
        appsvc = "appsvc",
        directory = "directory",
        register = "register",
    }
}

section! {
    /// mxisd's `auth`: only `rewrite` (user id rewriting rules), which this version refuses.
    Auth {
    } unsupported {
        rewrite = "rewrite",
    }
}

/// An identity store of mxisd's that this version does not implement: only whether it is
/// enabled is read (its other keys are accepted as they are).
#[derive(serde::Deserialize, Default, Debug)]
pub struct OtherStore {
    pub enabled: Option<bool>,
}
