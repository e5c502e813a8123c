//! Everything that leaves this server over the network for a name a user gave us:
//! homeservers (server discovery, OpenID userinfo) and, later, other identity servers.
//!
//! Every call goes through [`client::Client`]: names are resolved by our DNS (one configurable
//! server), every address is checked by the outbound address policy (redirects included),
//! TLS certificates are verified (against `federation.tls.caFile` when set), and connect and
//! total timeouts bound each call.

pub mod address_policy;
pub mod client;
pub mod discovery;
pub mod dns;
pub mod homeserver;

pub use client::{CallError, Client};
