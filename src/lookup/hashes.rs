//! The hash index of v2 lookups: `sha256("<address> <medium> <pepper>")` → Matrix ID, over
//! every binding of the stores that can list theirs, so a hashed lookup never scans a
//! directory. Built at start and rebuilt every `hashing.refreshInterval` on a background
//! thread; the new index replaces the old one in one swap, so readers never wait.
//!
//! An index built while a store could not list is incomplete: hashed lookups then fail
//! naming the store rather than answer a false "not found" (the previous complete index is
//! kept instead, when there is one).

use super::Chain;
use crate::backend::BackendError;
use crate::crypto::{b64, hash::lookup_hash};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// One built index.
pub struct Index {
    by_hash: HashMap<[u8; 32], Arc<str>>,
    /// Stores whose bindings are missing from this index.
    missing: Vec<BackendError>,
}

pub struct Hashes {
    pepper: String,
    current: RwLock<Arc<Index>>,
}

impl Hashes {
    /// An index of `chain` under `pepper`, built now.
    pub fn build(chain: &Chain, pepper: String) -> Hashes {
        let index = Arc::new(build_index(chain, &pepper));
        Hashes {
            pepper,
            current: RwLock::new(index),
        }
    }

    pub fn pepper(&self) -> &str {
        &self.pepper
    }

    /// How many hashes the index holds.
    pub fn len(&self) -> usize {
        self.snapshot().by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Arc<Index> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rebuilds the index from the stores and swaps it in. An incomplete rebuild does not
    /// replace a complete index.
    pub fn refresh(&self, chain: &Chain) {
        let fresh = build_index(chain, &self.pepper);
        let old = self.snapshot();
        if !fresh.missing.is_empty() && old.missing.is_empty() {
            log::warn!("hash index not refreshed: a store could not list its bindings; keeping the previous index");
            return;
        }
        log::debug!("hash index refreshed: {} hashes", fresh.by_hash.len());
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
    }

    /// The Matrix IDs of these lookup hashes (unpadded URL-safe base64), as (hash, mxid) for
    /// the ones found. Fails, naming the stores, if the index lacks a store's bindings.
    pub fn lookup(&self, hashes: &[String]) -> Result<Vec<(String, String)>, super::LookupError> {
        let index = self.snapshot();
        if !index.missing.is_empty() {
            return Err(super::LookupError {
                failed: index.missing.clone(),
            });
        }
        Ok(hashes
            .iter()
            .filter_map(|h| {
                let key: [u8; 32] = b64::decode(h)?.try_into().ok()?;
                let mxid = index.by_hash.get(&key)?;
                Some((h.clone(), mxid.to_string()))
            })
            .collect())
    }
}

fn build_index(chain: &Chain, pepper: &str) -> Index {
    let (bindings, missing) = chain.list_all();
    let mut mxids: HashMap<&str, Arc<str>> = HashMap::new();
    let mut by_hash = HashMap::with_capacity(bindings.len());
    for b in &bindings {
        let Some(key) = b64::decode(&lookup_hash(&b.address, &b.medium, pepper))
            .and_then(|k| k.try_into().ok())
        else {
            continue;
        };
        let mxid = mxids
            .entry(b.mxid.as_str())
            .or_insert_with(|| Arc::from(b.mxid.as_str()))
            .clone();
        // Stores come most authoritative first: the first binding of a 3PID wins.
        by_hash.entry(key).or_insert(mxid);
    }
    Index { by_hash, missing }
}
