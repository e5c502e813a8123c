//! The hash index of v2 lookups: `sha256("<address> <medium> <pepper>")` → Matrix ID, over
//! every binding of the stores that can list theirs, so a hashed lookup never scans a
//! directory. Built on a background thread as soon as the server listens (hashed lookups
//! answer 503 until then; the log says "hash index ready"), and rebuilt every
//! `hashing.refreshInterval`; the new index replaces the old one in one swap, so readers
//! never wait. Building it first, before listening, let a store that hangs (a database that
//! accepts and never answers) hold up the start.
//!
//! An index built while a store could not list is incomplete: hashed lookups then fail
//! naming the store rather than answer a false "not found" (the previous complete index is
//! kept instead, when there is one).
//!
//! The binds made here (`binds.local.enabled`) are a second, smaller map beside it, after
//! the stores (which are more authoritative): changed one bind at a time, at once by the
//! instance that binds and from the change feed by the others, each entry keeping the
//! number of the change that set it so that an older change never undoes a newer one.

use super::Chain;
use crate::crypto::{b64, hash::lookup_hash};
use crate::stores::StoreError;
use crate::threepid::Medium;
use crate::user_id::UserId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// One built index.
pub struct Index {
    by_hash: HashMap<[u8; 32], Arc<str>>,
    /// Stores whose bindings are missing from this index.
    missing: Vec<StoreError>,
}

pub struct HashIndex {
    pepper: String,
    /// `None` until the first build.
    current: RwLock<Option<Arc<Index>>>,
    /// Whether a complete index was installed yet (and "hash index ready" logged).
    ready: AtomicBool,
    local: RwLock<LocalBinds>,
}

/// Local binds: hash → (change number, Matrix ID or `None` once unbound), and the change
/// number the last reload was taken at: a change at or below it is in the reload already.
#[derive(Default)]
struct LocalBinds {
    by_hash: HashMap<[u8; 32], (i64, Option<Arc<str>>)>,
    floor: i64,
}

impl HashIndex {
    /// An index under `pepper`, not built yet: `refresh` builds it.
    pub fn new(pepper: String) -> HashIndex {
        HashIndex {
            pepper,
            current: RwLock::new(None),
            ready: AtomicBool::new(false),
            local: RwLock::default(),
        }
    }

    fn key(&self, medium: Medium, address: &str) -> Option<[u8; 32]> {
        b64::decode(&lookup_hash(address, medium.as_str(), &self.pepper))?
            .try_into()
            .ok()
    }

    /// A local bind (or unbind: `mxid` `None`) made by change `seq`, unless a newer change
    /// of that 3PID is already applied.
    pub fn apply_local(&self, medium: Medium, address: &str, mxid: Option<&UserId>, seq: i64) {
        let Some(key) = self.key(medium, address) else {
            return;
        };
        let mut local = self.local.write().unwrap_or_else(|p| p.into_inner());
        if seq <= local.floor {
            return; // the last reload already has this change, or a later one
        }
        match local.by_hash.get(&key) {
            Some((applied, _)) if *applied >= seq => {}
            _ => {
                local
                    .by_hash
                    .insert(key, (seq, mxid.map(|m| Arc::from(m.as_str()))));
            }
        }
    }

    /// Replaces every local bind (at start, and when the feed says changes were missed)
    /// with `binds`, read after the feed was at `cursor`. Changes after the cursor already
    /// applied (this instance's own, made meanwhile) are kept; older ones are ignored from
    /// now on.
    pub fn load_local(&self, binds: &[crate::state::LocalBind], cursor: i64) {
        let mut fresh: HashMap<_, _> = binds
            .iter()
            .filter_map(|b| {
                let key = self.key(b.medium, &b.address)?;
                Some((key, (b.seq, Some(Arc::from(b.mxid.as_str())))))
            })
            .collect();
        let mut local = self.local.write().unwrap_or_else(|p| p.into_inner());
        for (key, entry) in local.by_hash.drain() {
            if entry.0 > cursor && fresh.get(&key).is_none_or(|f| f.0 < entry.0) {
                fresh.insert(key, entry);
            }
        }
        local.by_hash = fresh;
        local.floor = cursor;
    }

    pub fn pepper(&self) -> &str {
        &self.pepper
    }

    fn snapshot(&self) -> Option<Arc<Index>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Builds the index from the stores and swaps it in. An incomplete rebuild does not
    /// replace a complete index.
    pub fn refresh(&self, chain: &Chain) {
        let fresh = build_index(chain, &self.pepper);
        let complete = fresh.missing.is_empty();
        let old = self.snapshot();
        if !complete && old.as_ref().is_some_and(|old| old.missing.is_empty()) {
            log::warn!("hash index not refreshed: a store could not list its bindings; keeping the previous index");
            return;
        }
        let count = fresh.by_hash.len();
        let old = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Arc::new(fresh));
        if complete && !self.ready.swap(true, Ordering::SeqCst) {
            log::info!("hash index ready: {count} hashes");
        } else if !complete && old.is_none() {
            log::warn!("hash index built without a store that could not list its bindings: hashed lookups answer 503 until it can");
        } else {
            log::debug!("hash index refreshed: {count} hashes");
        }
        drop(old); // freed here unless a lookup still holds it
        release_freed_memory();
    }

    /// The Matrix IDs of these lookup hashes (unpadded URL-safe base64), as (hash, mxid) for
    /// the ones found. Fails, naming the stores, if the index lacks a store's bindings, and
    /// until it is first built.
    pub fn lookup(&self, hashes: &[String]) -> Result<Vec<(String, String)>, super::LookupError> {
        let Some(index) = self.snapshot() else {
            return Err(super::LookupError::IndexNotReady);
        };
        if !index.missing.is_empty() {
            return Err(super::LookupError::Stores(index.missing.clone()));
        }
        // The local binds' lock is taken only for a hash the stores do not map, and once.
        let mut local = None;
        Ok(hashes
            .iter()
            .filter_map(|h| {
                let key: [u8; 32] = b64::decode(h)?.try_into().ok()?;
                let mxid = match index.by_hash.get(&key) {
                    Some(mxid) => mxid.to_string(),
                    None => local
                        .get_or_insert_with(|| self.local.read().unwrap_or_else(|p| p.into_inner()))
                        .by_hash
                        .get(&key)?
                        .1
                        .as_ref()?
                        .to_string(),
                };
                Some((h.clone(), mxid))
            })
            .collect())
    }
}

fn build_index(chain: &Chain, pepper: &str) -> Index {
    let mut mxids: HashMap<String, Arc<str>> = HashMap::new();
    let mut by_hash = HashMap::new();
    let missing = chain.list_all(&mut |b| {
        let Some(key) = b64::decode(&lookup_hash(&b.address, b.medium.as_str(), pepper))
            .and_then(|k| k.try_into().ok())
        else {
            return;
        };
        // Stores come most authoritative first: the first binding of a 3PID wins.
        if let std::collections::hash_map::Entry::Vacant(slot) = by_hash.entry(key) {
            let mxid = match mxids.get(&b.mxid) {
                Some(shared) => shared.clone(),
                None => {
                    let shared: Arc<str> = Arc::from(b.mxid.as_str());
                    mxids.insert(b.mxid, shared.clone());
                    shared
                }
            };
            slot.insert(mxid);
        }
    });
    by_hash.shrink_to_fit();
    drop(mxids);
    release_freed_memory();
    Index { by_hash, missing }
}

/// Building an index allocates and frees a lot; glibc keeps freed memory unless asked to
/// give it back, which would leave the process's RSS at its peak.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
