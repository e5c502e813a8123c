//! Everything that leaves this server over HTTP: the one outbound module.
//!
//! For names a user gave us (homeservers: server discovery, OpenID userinfo; later other
//! identity servers) every call goes through the guarded [`client::Client`]: names are
//! resolved by us, never by `getaddrinfo` (`names.rs`: `localhost`, the hosts file of
//! `hosts.rs`, then DNS through one configurable server, `dns.rs`), every address is
//! checked by the outbound address policy (redirects included). For destinations the
//! operator configured (the REST backend) the [`client::ConfiguredClient`]: no address
//! policy. Both verify TLS
//! certificates (against `federation.tls.caFile` when set, a certificate of that file also
//! accepted as the server's own: `tls.rs`) and have connect and total timeouts.

pub mod address_policy;
pub mod client;
pub mod discovery;
pub mod dns;
pub mod homeserver;
pub mod hosts;
pub mod identity_client;
pub mod identity_discovery;
pub mod names;
pub mod remote_session;
mod tls;
pub mod xmatrix;

pub use client::{CallError, Client, ConfiguredClient};
