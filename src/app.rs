//! `App`: everything a handler may use, built once at start and shared by the workers.

use crate::account::{terms::Terms, Accounts};
use crate::config::Config;
use crate::crypto::random;
use crate::crypto::{KeyError, SigningKeys};
use crate::federation;
use crate::federation::xmatrix::KeyCache;
use crate::invite::Invites;
use crate::lookup::hash_index::{HashIndex, Previous};
use crate::lookup::peers::Peers;
use crate::lookup::Chain;
use crate::notify::Notifier;
use crate::ratelimit::RateLimiter;
use crate::session::{Pages, Sessions};
use crate::state::{State, StateError};
use crate::stores::local_binds::LocalBinds;
use std::fmt;
use std::sync::Arc;

pub struct App {
    pub config: Config,
    pub keys: SigningKeys,
    pub state: Arc<State>,
    pub lookup: Chain,
    /// The hash index of v2 lookups, over `lookup`'s listable stores.
    pub hash_index: HashIndex,
    /// The identity servers that push us their hashes and get ours (`lookup.peers`).
    pub peers: Peers,
    /// Outbound calls to homeservers and identity servers.
    pub federation: federation::Client,
    pub accounts: Accounts,
    /// Password checks per user id (`internal.rateLimit`).
    pub credential_checks: RateLimiter,
    /// 3PID validation sessions, with their notifications.
    pub sessions: Sessions,
    /// Invites by e-mail.
    pub invites: Invites,
    /// The pages of the links in validation mails.
    pub pages: Pages,
    /// Homeservers' keys, for the requests they sign (unbind).
    pub server_keys: KeyCache,
    /// The names a request signed for us may give as its destination: `server.name` and
    /// the host (and port) of `server.publicUrl`.
    pub names: Vec<String>,
}

/// Why the server could not start, with the config key an operator should look at.
#[derive(Debug)]
pub enum StartError {
    Keys(KeyError),
    State { store: String, error: StateError },
    Federation(String),
    Stores(String),
    Sessions(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Keys(e) => write!(f, "signing keys (key.path): {e}"),
            StartError::State { store, error } => write!(f, "storage ({store}): {error}"),
            StartError::Federation(e) => write!(f, "federation: {e}"),
            StartError::Stores(e) => write!(f, "identity stores: {e}"),
            StartError::Sessions(e) => write!(f, "3PID sessions: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// The background work the features start themselves (today the invites': their
/// deliveries and resolution); `stop` ends it.
pub struct Features {
    invites: crate::invite::Jobs,
    /// The push of our hashes to the peers (none without peers).
    peers: crate::lookup::peers::Jobs,
    /// The metrics listener, when `metrics.enabled`.
    metrics: Option<crate::metrics_listener::Listener>,
}

impl Features {
    pub fn stop(self) {
        self.invites.stop();
        self.peers.stop();
        if let Some(listener) = self.metrics {
            listener.stop();
        }
    }
}

impl crate::invite::Host for App {
    fn invites(&self) -> &Invites {
        &self.invites
    }

    fn state(&self) -> &State {
        &self.state
    }

    fn outbound(&self) -> crate::invite::Outbound<'_> {
        crate::invite::Outbound {
            keys: &self.keys,
            client: &self.federation,
            server_name: &self.config.server.name,
        }
    }

    fn lookup(&self) -> &Chain {
        &self.lookup
    }
}

impl crate::lookup::peers::Host for App {
    fn peers(&self) -> &Peers {
        &self.peers
    }

    fn state(&self) -> &State {
        &self.state
    }

    fn lookup(&self) -> &Chain {
        &self.lookup
    }

    fn hash_index(&self) -> &HashIndex {
        &self.hash_index
    }
}

impl crate::metrics_listener::Host for App {
    fn state(&self) -> &State {
        &self.state
    }

    fn lookup(&self) -> &Chain {
        &self.lookup
    }

    fn workers(&self) -> usize {
        self.config.http.workers
    }
}

impl App {
    /// Asks each feature to start its background work; what could not start, said.
    pub fn start_features(self: &Arc<Self>) -> Result<Features, String> {
        Ok(Features {
            invites: crate::invite::start(self)?,
            peers: crate::lookup::peers::start(self)?,
            metrics: crate::metrics_listener::start(&self.config.metrics, self.clone()).map_err(
                |e| {
                    format!(
                        "the metrics listener on {}:{} (metrics.bindAddress, metrics.port): {e}",
                        self.config.metrics.bind_address, self.config.metrics.port
                    )
                },
            )?,
        })
    }

    /// Opens the key store and the database named by `config`.
    pub fn open(config: Config) -> Result<App, StartError> {
        let keys = SigningKeys::load_or_create(&config.key.path).map_err(StartError::Keys)?;
        let store = config.storage.describe();
        // SQLite: one connection per worker, and two for background jobs.
        // PostgreSQL: at most http.backendWorkers calls waiting on it at once.
        let state = State::open_bounded(
            &config.storage,
            config.http.workers + 2,
            config.http.backend_workers,
        )
        .map(Arc::new)
        .map_err(|error| StartError::State {
            store: store.clone(),
            error,
        })?;
        import_mxisd_invites(&state, &keys, &config).map_err(|error| StartError::State {
            store: store.clone(),
            error,
        })?;
        let federation = federation::Client::new(&config.federation)
            .map_err(StartError::Federation)?
            .with_homeserver_overrides(config.dns.homeserver_federation.clone());
        let accounts = Accounts::new(Terms::new(config.policies.clone()));
        let mut lookup = Chain::from_config(&config)
            .map_err(StartError::Stores)?
            .with_remote(&config, federation.clone());
        if config.binds.local {
            lookup.push(Box::new(LocalBinds::new(state.clone())));
        }
        let fresh = random::string_from(random::ALPHANUMERIC, config.hashing.pepper_length)
            .map_err(|e| StartError::Federation(format!("no randomness for the pepper: {e}")))?;
        let hash_index = hash_index(&state, &config, &fresh)
            .map_err(|error| StartError::State { store, error })?;
        let peers = Peers::new(&config).map_err(StartError::Federation)?;
        let credential_checks = RateLimiter::per_minute(config.internal.rate_limit);
        let notifier = Arc::new(Notifier::from_config(&config).map_err(StartError::Sessions)?);
        let sessions = Sessions::new(&config, notifier.clone());
        let invites = Invites::new(
            &config.invite,
            notifier,
            &config.server.public_url,
            config.matrix.v1,
        );
        let pages = Pages::from_config(&config).map_err(StartError::Sessions)?;
        let mut names = vec![config.server.name.clone()];
        let public_host = config
            .server
            .public_url
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or_default().to_owned())
            .unwrap_or_default();
        if !public_host.is_empty() && !names.contains(&public_host) {
            names.push(public_host);
        }
        Ok(App {
            config,
            keys,
            state,
            lookup,
            hash_index,
            peers,
            federation,
            accounts,
            credential_checks,
            sessions,
            invites,
            pages,
            server_keys: KeyCache::default(),
            names,
        })
    }
}

/// The hash index under the stored pepper, rotated first to `hashing.pepper` when that
/// differs; the previous pepper still answered for `hashing.previousPepperGrace`.
fn hash_index(state: &State, config: &Config, fresh: &str) -> Result<HashIndex, StateError> {
    let peppers = state.peppers(config.hashing.pepper.as_deref(), fresh, crate::now_ms())?;
    let grace = config.hashing.previous_pepper_grace.as_millis() as i64;
    let previous = peppers.previous.map(|(pepper, rotated_ts)| Previous {
        pepper,
        until_ms: rotated_ts.saturating_add(grace),
    });
    if let Some(p) = previous.as_ref().filter(|p| p.until_ms > crate::now_ms()) {
        log::info!(
            "lookup pepper rotated: the previous one is still answered for {} s",
            (p.until_ms - crate::now_ms()) / 1000
        );
    }
    Ok(HashIndex::with_previous(peppers.current, previous))
}

/// An operator coming from mxisd or ma1sd keeps their pending invites: imported at the
/// first start on their database (`State::import_mxisd_invites`).
fn import_mxisd_invites(
    state: &State,
    keys: &SigningKeys,
    config: &Config,
) -> Result<(), StateError> {
    let now = crate::now_ms();
    let expires = config
        .invite
        .expiration
        .map_or(i64::MAX, |e| now.saturating_add(e.as_millis() as i64));
    if let Some(n @ 1..) = state.import_mxisd_invites(&keys.current().id, now, expires)? {
        log::info!(
            "imported {n} pending invites of mxisd (table invite_3pid); their invitees' homeservers are told when they bind"
        );
    }
    Ok(())
}
