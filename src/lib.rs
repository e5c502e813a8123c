//! mxisd: a federated Matrix identity server.
//!
//! A blocking tiny_http server hands requests to a fixed pool of worker threads (`http`),
//! which run the endpoint handlers (`api`) over the domain modules: the lookup chain
//! (`lookup`), our own state (`state`) and the signing keys (`crypto`). The configuration
//! (`config`) follows mxisd's YAML keys. See `docs/architecture.md` for who may call whom.
//!
//! Public are the modules the `mxisd` command and the integration tests use (`state`: its
//! test suite runs on both databases, with the typed values its rows hold: `threepid`,
//! `user_id`, `opaque_id`); the rest is
//! `pub(crate)`, so that the compiler reports what nothing uses.

pub(crate) mod account;
pub mod api;
pub mod app;
pub mod binds;
pub(crate) mod cidr;
pub mod cli;
pub mod config;
pub mod crypto;
pub(crate) mod federation;
#[doc(hidden)]
pub mod fuzz;
pub(crate) mod gate;
pub(crate) mod handshake;
#[cfg(test)]
mod heap_count;
pub mod http;
pub(crate) mod invite;
pub mod jobs;
pub mod logging;
pub(crate) mod lookup;
pub mod memory;
pub mod metrics;
pub(crate) mod metrics_listener;
pub(crate) mod notify;
pub mod opaque_id;
pub(crate) mod pg;
pub(crate) mod pool;
pub(crate) mod ratelimit;
pub(crate) mod requester;
pub(crate) mod session;
pub mod state;
pub(crate) mod stores;
pub mod threepid;
pub(crate) mod tls;
pub(crate) mod urlencoded;
pub mod user_id;

/// Milliseconds since the Unix epoch, as Matrix timestamps are written.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Locks `mutex`, recovering it if a thread panicked while holding it: every value we keep
/// behind a mutex (caches, idle connections, counters) stays valid through a panic, and a
/// handler's panic must not take the whole server down with it.
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
