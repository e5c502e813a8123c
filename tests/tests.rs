//! The integration tests: one binary (as ripgrep's), one module per area, all running the
//! real `mxisd` binary against real services started by `support` (`tests/services/`).

mod support;

mod accounts;
mod advisories;
mod binds;
mod bulkheads;
mod check_connect;
mod check_credentials;
mod config_cli;
mod element_sdk;
mod federation_lookup;
mod federation_names;
mod fuzz_corpus;
mod http_api;
mod http_concurrency;
mod http_framing;
mod http_hostile;
mod http_limits;
mod https;
mod instances;
mod invites;
mod keystore;
mod layers;
mod ldap_store;
mod lifecycle;
mod lookup;
mod mail;
mod metrics;
mod packaging;
mod peer_lookups;
mod remote_sessions;
mod rest_store;
mod services;
mod session_limits;
mod sessions;
mod sql_store;
mod state;
mod store_deadlines;
mod synapse;
mod synapse_logins;
