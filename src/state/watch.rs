//! How an instance learns at once that another instance ended an access token, so that
//! every instance may keep token → user answers in memory (PostgreSQL's `LISTEN`/`NOTIFY`).
//!
//! A logout notifies `mxisd_logouts` in its own transaction; each instance's listener (one
//! thread, its own connection) bumps the [`TokenWatch`] epoch when the notification comes,
//! which empties the caches filled before it. A notification can be lost with its
//! connection, or never come through a silent network partition, so the caches are trusted
//! only while the listener provably hears: every [`HEARTBEAT_EVERY`] it notifies a channel of
//! its own and waits to hear it back. PostgreSQL delivers notifications in commit order,
//! so a heartbeat heard means every logout committed before it was heard too. A heartbeat
//! sent longer than [`TRUST_BOUND`] ago → no epoch: callers read the database, until the
//! listener hears again (after a reconnect, with a new epoch: what it missed meanwhile is
//! forgotten with the cache).

use super::Kind;
use crate::config::PostgresConfig;
use crate::pg::PgTarget;
use postgres::fallible_iterator::FallibleIterator;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The channel logouts notify.
pub(super) const LOGOUTS: &str = "mxisd_logouts";
/// How often the listener notifies itself.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(20);
/// The longest a token logged out on another instance is still accepted here.
pub const TRUST_BOUND: Duration = Duration::from_millis(100);
/// The wait between two attempts to listen again.
const RECONNECT_EVERY: Duration = Duration::from_millis(200);
/// Listener threads given up while hung (a server that takes bytes and never answers
/// keeps them) that may exist at once; past it, no new one starts until one ends.
const HUNG_MAX: usize = 4;

/// The epoch of cached token answers, and whether it can be trusted now.
pub struct TokenWatch {
    /// Bumped by every logout (here or heard from another instance) and every reconnect.
    epoch: AtomicU64,
    /// When the newest heartbeat heard was sent, in ms since `origin`, plus one (0: none
    /// heard since the listener last connected). `None` when nothing needs hearing (SQLite,
    /// where every write is this process's).
    heard: Option<AtomicU64>,
    origin: Instant,
}

impl TokenWatch {
    /// A watch for `kind`'s database; on PostgreSQL with its listener thread, which ends
    /// when the watch is dropped.
    pub(super) fn start(kind: Kind, pg: Option<&PostgresConfig>) -> Arc<TokenWatch> {
        let watch = Arc::new(TokenWatch {
            epoch: AtomicU64::new(0),
            heard: (kind == Kind::Postgres).then(|| AtomicU64::new(0)),
            origin: Instant::now(),
        });
        if let Some(cfg) = pg.filter(|_| kind == Kind::Postgres) {
            let weak = Arc::downgrade(&watch);
            let cfg = cfg.clone();
            let spawned = std::thread::Builder::new()
                .name("token-watch".into())
                .spawn(move || supervise(weak, &cfg));
            if let Err(e) = spawned {
                log::error!("the logout listener could not start ({e}): tokens are read from the database on every use");
            }
        }
        watch
    }

    /// The epoch to cache token answers under, or `None` when a cache must not be trusted
    /// now (the listener has not heard itself within [`TRUST_BOUND`]).
    pub fn epoch(&self) -> Option<u64> {
        if let Some(heard) = &self.heard {
            let sent = heard.load(Ordering::Acquire);
            let now = self.since_origin_ms() + 1;
            // Whole milliseconds on both sides: `>=` keeps the real gap under the bound.
            if sent == 0 || now.saturating_sub(sent) >= TRUST_BOUND.as_millis() as u64 {
                return None;
            }
        }
        Some(self.epoch.load(Ordering::Acquire))
    }

    /// Answers cached before now are stale.
    pub(super) fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn since_origin_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
}

/// One listener thread's connection: how far it got, and whether it was given up.
struct Run {
    /// `since_origin_ms` when its last call returned.
    progress: AtomicU64,
    /// Set by the supervisor when a call hung; the thread then ends whenever it returns.
    abandoned: AtomicBool,
    ended: AtomicBool,
    /// Whether it heard its own heartbeat at least once (the outage, if any, is over).
    heard: AtomicBool,
}

/// Keeps a listener running: each connection on a thread of its own, replaced when it
/// ends, and given up when one call hangs past the database timeout (a server or network
/// that takes our bytes and never answers: the `postgres` client has no read deadline).
fn supervise(watch: Weak<TokenWatch>, cfg: &PostgresConfig) {
    // A channel of this instance's own: a shared one would let other instances' heartbeats
    // (in their clocks) vouch for this one's listener.
    let own = match crate::crypto::random::string_from(crate::crypto::random::ALPHANUMERIC, 12) {
        Ok(r) => format!("mxisd_heartbeat_{}", r.to_ascii_lowercase()),
        Err(e) => {
            log::error!("the logout listener has no channel of its own ({e}): tokens are read from the database on every use");
            return;
        }
    };
    // One target: its handshaker makes one connect at a time, so a server that never
    // answers the start-up holds one thread, not one per attempt.
    let target = match super::postgres::target(cfg) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            log::error!("the logout listener cannot connect ({e}): tokens are read from the database on every use");
            return;
        }
    };
    let stall_limit = cfg.timeout.max(Duration::from_secs(1)).as_millis() as u64;
    let mut outages = 0u32;
    let mut hung: Vec<Arc<Run>> = Vec::new();
    loop {
        let Some(w) = watch.upgrade() else { return };
        hung.retain(|r| !r.ended.load(Ordering::Acquire));
        if hung.len() >= HUNG_MAX {
            drop(w);
            std::thread::sleep(RECONNECT_EVERY);
            continue; // untrusted meanwhile: nothing hears
        }
        let run = Arc::new(Run {
            progress: AtomicU64::new(w.since_origin_ms()),
            abandoned: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            heard: AtomicBool::new(false),
        });
        drop(w);
        let (weak, target2, own2, run2) = (watch.clone(), target.clone(), own.clone(), run.clone());
        let spawned = std::thread::Builder::new()
            .name("token-listen".into())
            .spawn(move || {
                let outcome = listen(&weak, &target2, &own2, &run2);
                if let Err(why) = outcome {
                    if !run2.abandoned.load(Ordering::Acquire) {
                        log::debug!("logout listener: {why}");
                    }
                }
                run2.ended.store(true, Ordering::Release);
            });
        if let Err(e) = spawned {
            log::warn!("the logout listener could not start a thread ({e}); trying again");
            std::thread::sleep(RECONNECT_EVERY);
            continue;
        }
        // Watch it until it ends or hangs.
        loop {
            std::thread::sleep(HEARTBEAT_EVERY);
            let Some(w) = watch.upgrade() else {
                run.abandoned.store(true, Ordering::Release);
                return;
            };
            if run.ended.load(Ordering::Acquire) {
                break;
            }
            let idle = w
                .since_origin_ms()
                .saturating_sub(run.progress.load(Ordering::Acquire));
            if idle > stall_limit {
                run.abandoned.store(true, Ordering::Release);
                hung.push(run.clone());
                break;
            }
        }
        if run.heard.load(Ordering::Acquire) {
            outages = 0; // it listened: a later failure is a new outage, logged
        }
        if let Some(w) = watch.upgrade() {
            // Until a new connection hears itself, nothing cached can be trusted.
            if let Some(heard) = &w.heard {
                heard.store(0, Ordering::Release);
            }
            w.bump();
        }
        if outages.is_multiple_of(300) {
            log::warn!("logout listener: the connection to PostgreSQL failed or hung; tokens are read from the database on every use until it listens again");
        }
        outages = outages.saturating_add(1);
        std::thread::sleep(RECONNECT_EVERY);
    }
}

/// One connection of the listener: listens and heartbeats until a call fails, the watch
/// is dropped or the supervisor gives it up (`Ok` for the last two).
fn listen(watch: &Weak<TokenWatch>, target: &PgTarget, own: &str, run: &Run) -> Result<(), String> {
    let failed = |e: postgres::Error| crate::pg::with_causes(&e);
    let mut client = target.connect().map_err(|e| e.to_string())?;
    // Each step: stop if given up, else say how far we got.
    let step = || -> Option<Arc<TokenWatch>> {
        let w = watch.upgrade()?;
        if run.abandoned.load(Ordering::Acquire) {
            return None;
        }
        run.progress.store(w.since_origin_ms(), Ordering::Release);
        Some(w)
    };
    client
        // Heartbeats need their order in the queue, not a flush of the WAL each.
        .batch_execute(&format!(
            "SET synchronous_commit = off; LISTEN {LOGOUTS}; LISTEN {own}"
        ))
        .map_err(failed)?;
    // Logouts before this LISTEN were not heard: forget what was cached before it.
    let Some(w) = step() else { return Ok(()) };
    w.bump();
    drop(w);
    loop {
        let Some(w) = step() else { return Ok(()) };
        let sent = w.since_origin_ms() + 1;
        drop(w);
        client
            .batch_execute(&format!("NOTIFY {own}, '{sent}'"))
            .map_err(failed)?;
        let until = Instant::now() + HEARTBEAT_EVERY;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut notes = client.notifications();
            let note = notes.timeout_iter(left).next().map_err(failed)?;
            let Some(w) = step() else { return Ok(()) };
            let Some(note) = note else { break };
            if note.channel() == LOGOUTS {
                w.bump();
            } else if note.channel() == own {
                // Only what this process sent: never a time ahead of its own clock.
                let sent = note.payload().parse::<u64>().ok();
                if let (Some(heard), Some(ms)) = (&w.heard, sent) {
                    if ms <= w.since_origin_ms() + 1 {
                        heard.fetch_max(ms, Ordering::AcqRel);
                        run.heard.store(true, Ordering::Release);
                    }
                }
            }
        }
    }
}
