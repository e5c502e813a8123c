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
//!
//! After a pepper rotation (`hashing.pepper`), the previous pepper is still answered for
//! `hashing.previousPepperGrace`: each build then also sorts the hashes under it, a second
//! array of (hash prefix, Matrix ID number) sharing the first's Matrix IDs (20 bytes a
//! binding more: 1M bindings measured at 114 MB RSS instead of 94), and the local binds map
//! each hash under it to their hash under the current one.
//! Once the grace period is over, the next build leaves it out.
//!
//! The stores' index is compact, since a directory may hold a million addresses on a small
//! server: sorted arrays of (hash, Matrix ID number), one per first byte of the hash,
//! searched by bisection, and the Matrix IDs end to end in one string — about 70 bytes a
//! binding where a map of strings took 220.
//!
//! A refresh shares two cores with the lookups it must not slow down. It stops every
//! [`YIELD_EVERY`] bindings and between two buckets' sorts, so that no stretch of its work
//! outlasts a fraction of a millisecond (one array sorted whole was a burst of ~100 ms for
//! a million bindings), and rests at each stop as long as the stretch took on the CPU
//! ([`Pace::HalfCore`]). It runs at the lookups' own priority: at a lower one (nice 10, or
//! `SCHED_IDLE`), lookups' p99 during refreshes was 1.3–2.6× higher than at nice 0 in the
//! same runs (README, "Scale"); a thread that is preempted whenever a request thread wakes
//! still holds, now and then, a lock the request threads need too (glibc's malloc arenas,
//! taken for each binding listed), and they wait until it runs again. Resting instead
//! leaves a core free for them without being preempted in the middle of its work.

use super::Chain;
use crate::crypto::{b64, hash::lookup_digest};
use crate::stores::{Binding, StoreError};
use crate::threepid::Medium;
use crate::user_id::UserId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The number of buckets: one per value of a hash's first byte.
const BUCKETS: usize = 256;

/// How many bindings a build takes in between two yields of its core.
const YIELD_EVERY: usize = 1024;

/// One entry: a hash and the number of its Matrix ID in the index's arena.
type Entry = ([u8; 32], u32);

/// One built index.
pub struct Index {
    /// `BUCKETS` arrays, the one at `i` holding the hashes whose first byte is `i`, sorted,
    /// one entry a hash.
    buckets: Vec<Vec<Entry>>,
    mxids: Arena,
    /// Stores whose bindings are missing from this index.
    missing: Vec<StoreError>,
    /// As `buckets` (in one array), under the previous pepper during its grace period (else empty), each
    /// hash by its first 16 bytes: 20 bytes an entry rather than 36, and two addresses
    /// whose hashes share 128 bits are not to be met.
    previous: Vec<(Prefix, u32)>,
}

impl Index {
    fn get(&self, key: &[u8; 32]) -> Option<&str> {
        let bucket = self.buckets.get(usize::from(key[0]))?;
        let at = bucket.binary_search_by(|e| e.0.cmp(key)).ok()?;
        self.mxids.get(bucket[at].1)
    }

    fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    fn get_under(&self, under: Under, key: &[u8; 32]) -> Option<&str> {
        match under {
            Under::Current => self.get(key),
            Under::Previous => {
                Index::find(&self.previous, &prefix(key)).and_then(|n| self.mxids.get(n))
            }
        }
    }

    fn find<K: Ord>(entries: &[(K, u32)], key: &K) -> Option<u32> {
        let at = entries.binary_search_by(|e| e.0.cmp(key)).ok()?;
        Some(entries[at].1)
    }
}

/// The first 16 bytes of a hash: what the previous pepper's array keeps.
type Prefix = [u8; 16];

fn prefix(hash: &[u8; 32]) -> Prefix {
    let mut p = [0; 16];
    p.copy_from_slice(&hash[..16]);
    p
}

/// Which of our peppers a lookup's hashes are under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Under {
    Current,
    /// The pepper the current one replaced, during its grace period.
    Previous,
}

/// The pepper the current one replaced, and until when (ms) it is still answered.
#[derive(Debug, Clone)]
pub struct Previous {
    pub pepper: String,
    pub until_ms: i64,
}

/// How large an index is expected to be: each bucket's entries, Matrix IDs and their bytes.
#[derive(Default, Clone)]
struct Sizes {
    buckets: Vec<usize>,
    mxids: usize,
    text: usize,
}

impl Sizes {
    /// Room for what `old` holds and `more(n)` beyond each of its sizes `n`.
    fn after(old: &Index, more: impl Fn(usize) -> usize) -> Sizes {
        let room = |n: usize| n + more(n);
        Sizes {
            buckets: old.buckets.iter().map(|b| room(b.len())).collect(),
            mxids: room(old.mxids.starts.len()),
            text: room(old.mxids.text.len()),
        }
    }
}

/// Strings end to end in one buffer, each found by its number; a string equal to the one
/// pushed just before is not stored again (a store lists a user's addresses together).
#[derive(Default)]
struct Arena {
    text: String,
    starts: Vec<u32>,
}

impl Arena {
    /// The number of `s`; `None` once the buffer would pass 4 GiB (never, in practice).
    fn push(&mut self, s: &str) -> Option<u32> {
        if let Some(last) = self.starts.len().checked_sub(1) {
            if self.get(last as u32) == Some(s) {
                return Some(last as u32);
            }
        }
        let start = u32::try_from(self.text.len()).ok()?;
        u32::try_from(self.text.len() + s.len()).ok()?;
        let number = u32::try_from(self.starts.len()).ok()?;
        self.text.push_str(s);
        self.starts.push(start);
        Some(number)
    }

    fn get(&self, number: u32) -> Option<&str> {
        let i = number as usize;
        let start = *self.starts.get(i)? as usize;
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.text.len(), |&e| e as usize);
        self.text.get(start..end)
    }

    fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.starts.shrink_to_fit();
    }
}

pub struct HashIndex {
    pepper: String,
    /// `None` until the first build.
    current: RwLock<Option<Arc<Index>>>,
    /// Whether a complete index was installed yet (and "hash index ready" logged).
    ready: AtomicBool,
    local: RwLock<LocalBinds>,
    /// The previous pepper, answered until its grace period ends.
    previous: Option<Previous>,
    /// Complete builds installed so far: what the peers' push job watches.
    generation: AtomicU64,
}

/// Local binds: those the last reload read, compact as the stores' index is, and the changes
/// after it in a map: hash → (change number, Matrix ID or `None` once unbound). `floor` is
/// the change number the reload was taken at: a change at or below it is in `settled`
/// already. During a grace period, each change's hash under the previous pepper → its
/// current hash (`settled` has its own array for the previous pepper).
struct LocalBinds {
    settled: Index,
    by_hash: HashMap<[u8; 32], (i64, Option<Arc<str>>)>,
    floor: i64,
    from_previous: HashMap<[u8; 32], [u8; 32]>,
}

impl LocalBinds {
    /// The Matrix ID of a hash under `under`, if bound here: the changes since the reload
    /// first (an unbind hides a settled bind), then the settled binds.
    fn get(&self, under: Under, key: &[u8; 32]) -> Option<&str> {
        let current = match under {
            Under::Current => Some(*key),
            Under::Previous => self.from_previous.get(key).copied(),
        };
        if let Some((_, mxid)) = current.and_then(|k| self.by_hash.get(&k)) {
            return mxid.as_deref();
        }
        self.settled.get_under(under, key)
    }

    /// How many changes the map holds when the next reload is wanted (`COMPACT_AT`).
    fn reload_at(&self) -> usize {
        COMPACT_AT.max(self.settled.len() / 8)
    }
}

/// Changes kept in the map before a reload makes them compact: at least this many, and an
/// eighth of the settled binds. A bind in the map takes about 150 bytes, a settled one 60.
const COMPACT_AT: usize = 1024;

impl HashIndex {
    /// An index under `pepper`, not built yet: `refresh` builds it.
    pub fn new(pepper: String) -> HashIndex {
        HashIndex {
            pepper,
            current: RwLock::new(None),
            ready: AtomicBool::new(false),
            local: RwLock::new(LocalBinds {
                settled: build_index(|_| Vec::new(), "", None, Sizes::default(), Pace::FlatOut),
                by_hash: HashMap::new(),
                floor: 0,
                from_previous: HashMap::new(),
            }),
            previous: None,
            generation: AtomicU64::new(0),
        }
    }

    /// As `new`, still answering `previous` until its grace period ends.
    pub fn with_previous(pepper: String, previous: Option<Previous>) -> HashIndex {
        HashIndex {
            previous,
            ..HashIndex::new(pepper)
        }
    }

    fn key(&self, medium: Medium, address: &str) -> [u8; 32] {
        lookup_digest(address, medium.as_str(), &self.pepper)
    }

    /// The previous pepper, while its grace period lasts.
    pub fn previous_pepper(&self) -> Option<&str> {
        self.previous
            .as_ref()
            .filter(|p| crate::now_ms() < p.until_ms)
            .map(|p| p.pepper.as_str())
    }

    /// Which of our peppers `pepper` is, if it is one we answer now.
    pub fn under(&self, pepper: &str) -> Option<Under> {
        if pepper == self.pepper {
            Some(Under::Current)
        } else if self.previous_pepper() == Some(pepper) {
            Some(Under::Previous)
        } else {
            None
        }
    }

    /// How many complete or incomplete builds were installed so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The hash of (medium, address) under the previous pepper, while it is answered.
    fn previous_key(&self, medium: Medium, address: &str) -> Option<[u8; 32]> {
        self.previous_pepper()
            .map(|p| lookup_digest(address, medium.as_str(), p))
    }

    /// A local bind (or unbind: `mxid` `None`) made by change `seq`, unless a newer change
    /// of that 3PID is already applied.
    pub fn apply_local(&self, medium: Medium, address: &str, mxid: Option<&UserId>, seq: i64) {
        let key = self.key(medium, address);
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
        if let Some(old) = self.previous_key(medium, address) {
            local.from_previous.insert(old, key);
        }
    }

    /// Replaces every local bind (at start, when the feed says changes were missed, and
    /// when the changes since the last reload are many: `local_wants_reload`) with those
    /// `read` hands its sink, read after the feed was at `cursor`, made compact. Changes
    /// after the cursor already applied (this instance's own, made meanwhile) are kept;
    /// older ones are ignored from now on. When `read` fails, nothing changes.
    pub fn load_local<E>(
        &self,
        read: impl FnOnce(&mut dyn FnMut(crate::state::LocalBind)) -> Result<(), E>,
        cursor: i64,
    ) -> Result<(), E> {
        // Streamed from the state into the index: the binds are never a list in memory
        // beside the index built from them (with a PostgreSQL result, three copies).
        // Room made at once for the last reload's binds and the changes since (nearly all
        // new binds), so that no array grows by doubling: a reload every few minutes, each
        // a little larger, would otherwise leave freed blocks of every size behind it.
        let expected = {
            let local = self.local.read().unwrap_or_else(|p| p.into_inner());
            let (settled, since) = (local.settled.len().max(1), local.by_hash.len());
            Sizes::after(&local.settled, |n| n * since / settled + n / 64 + 4)
        };
        let mut outcome = Ok(());
        let settled = build_index(
            |sink| {
                outcome = read(&mut |b| {
                    sink(Binding {
                        medium: b.medium,
                        address: b.address,
                        mxid: b.mxid.into_string(),
                    })
                });
                Vec::new()
            },
            &self.pepper,
            self.previous_pepper(),
            expected,
            Pace::FlatOut,
        );
        outcome?;
        let mut local = self.local.write().unwrap_or_else(|p| p.into_inner());
        local.settled = settled;
        local.by_hash.retain(|_, (seq, _)| *seq > cursor);
        // The map fills again up to the next reload: its room is kept rather than grown
        // by doubling each time.
        let next_reload = local.reload_at();
        let room = local.by_hash.len() + next_reload;
        local.by_hash.shrink_to(room);
        local.by_hash.reserve(next_reload);
        let LocalBinds {
            by_hash,
            from_previous,
            ..
        } = &mut *local;
        from_previous.retain(|_, key| by_hash.contains_key(key));
        from_previous.shrink_to_fit();
        local.floor = cursor;
        drop(local);
        // Building an index allocates and frees a lot: RSS would stay at its peak.
        crate::memory::release_freed();
        Ok(())
    }

    /// Whether the changes since the last reload are many enough to be made compact by
    /// another (see `COMPACT_AT`).
    pub fn local_wants_reload(&self) -> bool {
        let local = self.local.read().unwrap_or_else(|p| p.into_inner());
        local.by_hash.len() >= local.reload_at()
    }

    pub fn pepper(&self) -> &str {
        &self.pepper
    }

    /// A new index of the stores' listing; `old` (the index in use) gives the sizes to make
    /// room for at once, a little over, so that no buffer grows by doubling (a copy of the
    /// old buffer beside the new at every step).
    fn build(&self, chain: &Chain, old: Option<&Index>) -> Index {
        let expected = old.map_or(Sizes::default(), |o| Sizes::after(o, |n| n / 32));
        build_index(
            |sink| chain.list_all(sink),
            &self.pepper,
            self.previous_pepper(),
            expected,
            if old.is_some() {
                Pace::HalfCore
            } else {
                Pace::FlatOut
            },
        )
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
        let started = std::time::Instant::now();
        let old = self.snapshot();
        let fresh = self.build(chain, old.as_deref());
        let complete = fresh.missing.is_empty();
        if !complete && old.as_ref().is_some_and(|old| old.missing.is_empty()) {
            log::warn!("hash index not refreshed: a store could not list its bindings; keeping the previous index");
            return;
        }
        let count = fresh.len();
        let old = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Arc::new(fresh));
        self.generation.fetch_add(1, Ordering::SeqCst);
        crate::metrics::hash_index_built(count);
        if complete && !self.ready.swap(true, Ordering::SeqCst) {
            log::info!("hash index ready: {count} hashes");
        } else if !complete && old.is_none() {
            log::warn!("hash index built without a store that could not list its bindings: hashed lookups answer 503 until it can");
        } else {
            log::info!(
                "hash index refreshed: {count} hashes in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        drop(old); // freed here unless a lookup still holds it
        crate::memory::release_freed();
    }

    /// The Matrix IDs of these lookup hashes (unpadded URL-safe base64), as (hash, mxid) for
    /// the ones found. Fails, naming the stores, if the index lacks a store's bindings, and
    /// until it is first built.
    pub fn lookup(&self, hashes: &[String]) -> Result<Vec<(String, String)>, super::LookupError> {
        self.lookup_under(Under::Current, hashes)
    }

    /// As `lookup`, for hashes under the pepper `under` names.
    pub fn lookup_under(
        &self,
        under: Under,
        hashes: &[String],
    ) -> Result<Vec<(String, String)>, super::LookupError> {
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
                let mxid = match index.get_under(under, &key) {
                    Some(mxid) => mxid.to_owned(),
                    None => {
                        let local = local.get_or_insert_with(|| {
                            self.local.read().unwrap_or_else(|p| p.into_inner())
                        });
                        local.get(under, &key)?.to_owned()
                    }
                };
                Some((h.clone(), mxid))
            })
            .collect())
    }
}

/// The index of what `list` gives its sink (the stores' bindings, most authoritative
/// first); `expected`: how much to make room for at once.
fn build_index(
    list: impl FnOnce(&mut dyn FnMut(Binding)) -> Vec<StoreError>,
    pepper: &str,
    previous_pepper: Option<&str>,
    expected: Sizes,
    pace: Pace,
) -> Index {
    let mut pacer = Pacer::new(pace);
    let mut buckets: Vec<Vec<Entry>> = (0..BUCKETS)
        .map(|i| Vec::with_capacity(expected.buckets.get(i).copied().unwrap_or(0)))
        .collect();
    let total: usize = expected.buckets.iter().sum();
    let mut previous = Vec::with_capacity(previous_pepper.map_or(0, |_| total));
    let mut mxids = Arena {
        text: String::with_capacity(expected.text),
        starts: Vec::with_capacity(expected.mxids),
    };
    let mut taken = 0usize;
    let missing = list(&mut |b| {
        let key = lookup_digest(&b.address, b.medium.as_str(), pepper);
        match mxids.push(&b.mxid) {
            Some(number) => {
                buckets[usize::from(key[0])].push((key, number));
                if let Some(p) = previous_pepper {
                    let old = lookup_digest(&b.address, b.medium.as_str(), p);
                    previous.push((prefix(&old), number));
                }
            }
            None => log::warn!("hash index: more Matrix IDs than it can hold; the rest left out"),
        }
        taken += 1;
        if taken.is_multiple_of(YIELD_EVERY) {
            pacer.breathe();
        }
    });
    // Stores come most authoritative first, and Matrix IDs are numbered in listing order:
    // sorted by (hash, number), a 3PID's first binding comes first, and `dedup_by` keeps
    // the first of equal hashes.
    for bucket in &mut buckets {
        bucket.sort_unstable();
        bucket.dedup_by(|later, first| later.0 == first.0);
        bucket.shrink_to_fit();
        pacer.breathe();
    }
    previous.sort_unstable();
    previous.dedup_by(|later, first| later.0 == first.0);
    previous.shrink_to_fit();
    mxids.shrink_to_fit();
    Index {
        buckets,
        mxids,
        missing,
        previous,
    }
}

/// How a build shares the cores with the lookups.
#[derive(Clone, Copy)]
enum Pace {
    /// The first build, before which hashed lookups answer 503: as fast as it can, giving
    /// its core up now and then.
    FlatOut,
    /// A refresh, beside an index that answers: after each stretch of work, it rests as
    /// long as that stretch took on the CPU, so it takes at most half a core. Lookups' p99
    /// during refreshes went from 7.2× to 1.1× their idle p99 (README, "Scale"); a refresh
    /// of a million bindings takes about 3.5 s instead of 2.
    HalfCore,
}

/// Where a build is in its pace: the thread's CPU time at the end of its last rest.
struct Pacer {
    pace: Pace,
    rested_at: Duration,
}

impl Pacer {
    fn new(pace: Pace) -> Pacer {
        Pacer {
            pace,
            rested_at: thread_cpu_time(),
        }
    }

    /// Between two stretches of work.
    fn breathe(&mut self) {
        match self.pace {
            Pace::FlatOut => std::thread::yield_now(),
            Pace::HalfCore => {
                // CPU time, not wall time: a listing waiting on its store (LDAP, a REST
                // backend) takes no core, and resting as long again would only slow it.
                let now = thread_cpu_time();
                std::thread::sleep(now.saturating_sub(self.rested_at));
                self.rested_at = thread_cpu_time();
            }
        }
    }
}

/// The CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given, which lives on this stack.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO; // never on Linux; a build then merely yields, unpaced
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(address: &str, mxid: &str) -> Binding {
        Binding {
            medium: Medium::Email,
            address: address.into(),
            mxid: mxid.into(),
        }
    }

    fn index_of(bindings: Vec<Binding>) -> Index {
        build_index(
            |sink| {
                bindings.into_iter().for_each(sink);
                Vec::new()
            },
            "pepper",
            None,
            Sizes::default(),
            Pace::FlatOut,
        )
    }

    fn key(address: &str) -> [u8; 32] {
        lookup_digest(address, "email", "pepper")
    }

    #[test]
    fn the_first_binding_of_a_3pid_wins_and_every_hash_is_found() {
        let index = index_of(vec![
            binding("a@example.org", "@alice:example.org"),
            binding("b@example.org", "@alice:example.org"),
            binding("c@example.org", "@carol:example.org"),
            binding("a@example.org", "@mallory:example.org"), // a later store
            binding("d@example.org", "@alice:example.org"),
        ]);
        assert_eq!(index.len(), 4);
        assert_eq!(index.get(&key("a@example.org")), Some("@alice:example.org"));
        assert_eq!(index.get(&key("b@example.org")), Some("@alice:example.org"));
        assert_eq!(index.get(&key("c@example.org")), Some("@carol:example.org"));
        assert_eq!(index.get(&key("d@example.org")), Some("@alice:example.org"));
        assert_eq!(index.get(&key("e@example.org")), None);
        // Alice's first two addresses share one copy of her Matrix ID.
        assert_eq!(index.mxids.starts.len(), 4);
    }

    #[test]
    fn every_bucket_holds_its_first_byte_sorted_and_every_hash_is_found() {
        let addresses: Vec<String> = (0..3000).map(|i| format!("u{i}@example.org")).collect();
        let index = index_of(
            addresses
                .iter()
                .map(|a| binding(a, &format!("@{a}")))
                .collect(),
        );
        assert_eq!(index.buckets.len(), BUCKETS);
        assert_eq!(index.len(), 3000);
        for (i, bucket) in index.buckets.iter().enumerate() {
            assert!(bucket.iter().all(|e| usize::from(e.0[0]) == i));
            assert!(bucket.windows(2).all(|w| w[0].0 < w[1].0));
        }
        // These hashes (fixed addresses and pepper) fall in every bucket.
        assert!(index.buckets.iter().all(|b| !b.is_empty()));
        for a in &addresses {
            assert_eq!(index.get(&key(a)), Some(format!("@{a}").as_str()));
        }
    }

    /// An index under "pepper" that answered "old" until `grace_ms` from now.
    fn rotated_from_old(grace_ms: i64) -> HashIndex {
        HashIndex::with_previous(
            "pepper".into(),
            Some(Previous {
                pepper: "old".into(),
                until_ms: crate::now_ms() + grace_ms,
            }),
        )
    }

    #[test]
    fn during_a_grace_period_the_previous_pepper_finds_the_same_bindings() {
        let hashes = rotated_from_old(60_000);
        let built = build_index(
            |sink| {
                sink(binding("a@example.org", "@alice:example.org"));
                sink(binding("c@example.org", "@carol:example.org"));
                Vec::new()
            },
            "pepper",
            hashes.previous_pepper(),
            Sizes::default(),
            Pace::FlatOut,
        );
        assert_eq!(built.previous.len(), 2, "one sorted array more");
        assert_eq!(built.mxids.starts.len(), 2, "the Matrix IDs shared");
        *hashes.current.write().unwrap() = Some(Arc::new(built));
        let bob = UserId::parse("@bob:example.org").unwrap();
        hashes.apply_local(Medium::Email, "b@example.org", Some(&bob), 1);
        let old = |a: &str| b64::encode_url_safe(&lookup_digest(a, "email", "old"));
        let asked = [old("a@example.org"), old("b@example.org"), old("z@x.org")];
        assert_eq!(hashes.under("old"), Some(Under::Previous));
        assert_eq!(hashes.under("pepper"), Some(Under::Current));
        assert_eq!(hashes.under("other"), None);
        assert_eq!(
            hashes.lookup_under(Under::Previous, &asked).unwrap(),
            vec![
                (asked[0].clone(), "@alice:example.org".to_owned()),
                (asked[1].clone(), "@bob:example.org".to_owned()),
            ]
        );
        // Hashes under the previous pepper are not hashes under the current one.
        assert_eq!(hashes.lookup(&asked).unwrap(), vec![]);
    }

    #[test]
    fn a_previous_pepper_past_its_grace_is_not_answered() {
        let hashes = rotated_from_old(-1);
        assert_eq!(hashes.previous_pepper(), None);
        assert_eq!(hashes.under("old"), None);
    }

    /// Burns about `ms` milliseconds of this thread's CPU.
    fn work(ms: u64) {
        let until = thread_cpu_time() + Duration::from_millis(ms);
        let mut x = 0u64;
        while thread_cpu_time() < until {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }

    #[test]
    fn a_refresh_rests_as_long_as_it_worked_and_a_first_build_does_not() {
        let started = std::time::Instant::now();
        let cpu_before = thread_cpu_time();
        let mut pacer = Pacer::new(Pace::HalfCore);
        for _ in 0..5 {
            work(4);
            pacer.breathe();
        }
        let cpu = thread_cpu_time() - cpu_before;
        // A sleep lasts at least what it is asked for: at least as much rest as work.
        assert!(
            started.elapsed() >= cpu * 19 / 10,
            "{:?} of wall time for {cpu:?} of CPU",
            started.elapsed()
        );

        let mut pacer = Pacer::new(Pace::FlatOut);
        let cpu_before = thread_cpu_time();
        work(4);
        let rested_at = pacer.rested_at;
        pacer.breathe();
        assert_eq!(
            pacer.rested_at, rested_at,
            "a first build keeps no account of its rests"
        );
        assert!(
            thread_cpu_time() - cpu_before >= Duration::from_millis(4),
            "the clock counts this thread's work"
        );
    }

    #[test]
    fn the_arena_gives_back_what_was_pushed() {
        let mut arena = Arena::default();
        let ids: Vec<u32> = ["@a:x", "@a:x", "", "@bb:x", "@a:x"]
            .iter()
            .map(|s| arena.push(s).unwrap())
            .collect();
        assert_eq!(ids, vec![0, 0, 1, 2, 3]);
        assert_eq!(arena.get(0), Some("@a:x"));
        assert_eq!(arena.get(1), Some(""));
        assert_eq!(arena.get(2), Some("@bb:x"));
        assert_eq!(arena.get(3), Some("@a:x"));
        assert_eq!(arena.get(4), None);
    }

    #[test]
    fn a_lookup_finds_store_and_local_binds_by_their_hash() {
        let hashes = HashIndex::new("pepper".into());
        *hashes.current.write().unwrap() = Some(Arc::new(index_of(vec![binding(
            "a@example.org",
            "@alice:example.org",
        )])));
        let bob = UserId::parse("@bob:example.org").unwrap();
        hashes.apply_local(Medium::Email, "b@example.org", Some(&bob), 1);
        let asked = |a: &str| b64::encode_url_safe(&key(a));
        let found = hashes
            .lookup(&[
                asked("a@example.org"),
                asked("b@example.org"),
                asked("z@x.org"),
            ])
            .unwrap();
        assert_eq!(
            found,
            vec![
                (asked("a@example.org"), "@alice:example.org".to_owned()),
                (asked("b@example.org"), "@bob:example.org".to_owned()),
            ]
        );
    }

    fn local(address: &str, mxid: &str, seq: i64) -> crate::state::LocalBind {
        crate::state::LocalBind {
            medium: Medium::Email,
            address: address.into(),
            mxid: UserId::parse(mxid).unwrap(),
            seq,
        }
    }

    /// A reload of these binds, as the state hands them.
    fn reload(hashes: &HashIndex, binds: Vec<crate::state::LocalBind>, cursor: i64) {
        let read = |sink: &mut dyn FnMut(crate::state::LocalBind)| {
            binds.into_iter().for_each(sink);
            Ok::<(), ()>(())
        };
        hashes.load_local(read, cursor).unwrap();
    }

    #[test]
    fn a_reload_that_fails_midway_keeps_the_binds_it_would_have_replaced() {
        let hashes = HashIndex::new("pepper".into());
        *hashes.current.write().unwrap() = Some(Arc::new(index_of(vec![])));
        reload(&hashes, vec![local("a@x.org", "@alice:example.org", 1)], 1);
        let failed = hashes.load_local(
            |sink| {
                sink(local("b@x.org", "@bob:example.org", 2));
                Err("the connection was lost")
            },
            2,
        );
        assert_eq!(failed, Err("the connection was lost"));
        let asked = |a: &str| b64::encode_url_safe(&lookup_digest(a, "email", "pepper"));
        assert_eq!(
            hashes
                .lookup(&[asked("a@x.org"), asked("b@x.org")])
                .unwrap(),
            vec![(asked("a@x.org"), "@alice:example.org".to_owned())],
            "the first reload's binds, none of the failed one's"
        );
        assert_eq!(hashes.local.read().unwrap().floor, 1);
    }

    #[test]
    fn a_reload_makes_local_binds_compact_and_later_changes_stay_above_them() {
        let hashes = HashIndex::new("pepper".into());
        *hashes.current.write().unwrap() = Some(Arc::new(index_of(vec![])));
        let (bob, carol) = (
            UserId::parse("@bob:example.org").unwrap(),
            UserId::parse("@carol:example.org").unwrap(),
        );
        // Made here while the reload read the state (change 3, after its cursor 2).
        hashes.apply_local(Medium::Email, "new@x.org", Some(&carol), 3);
        reload(
            &hashes,
            vec![
                local("a@x.org", "@alice:example.org", 1),
                local("b@x.org", "@bob:example.org", 2),
            ],
            2,
        );
        let map = |h: &HashIndex| h.local.read().unwrap().by_hash.len();
        assert_eq!(hashes.local.read().unwrap().settled.len(), 2, "compact");
        assert_eq!(
            map(&hashes),
            1,
            "only the change after the cursor stays in the map"
        );
        // Changes at or below the cursor are in the reload already.
        hashes.apply_local(Medium::Email, "a@x.org", None, 1);
        // Later ones hide or replace a settled bind.
        hashes.apply_local(Medium::Email, "b@x.org", None, 4);
        hashes.apply_local(Medium::Email, "a@x.org", Some(&bob), 5);
        let asked = |a: &str| b64::encode_url_safe(&key(a));
        let all = ["a@x.org", "b@x.org", "new@x.org"].map(asked);
        assert_eq!(
            hashes.lookup(&all).unwrap(),
            vec![
                (asked("a@x.org"), "@bob:example.org".to_owned()),
                (asked("new@x.org"), "@carol:example.org".to_owned()),
            ]
        );
        // A reload past every change empties the map, and answers alike.
        assert!(!hashes.local_wants_reload());
        reload(
            &hashes,
            vec![
                local("a@x.org", "@bob:example.org", 5),
                local("new@x.org", "@carol:example.org", 3),
            ],
            5,
        );
        assert_eq!(map(&hashes), 0);
        assert_eq!(hashes.lookup(&all).unwrap().len(), 2);
        // Many changes since: a reload is wanted.
        for i in 0..COMPACT_AT as i64 {
            hashes.apply_local(Medium::Email, &format!("u{i}@x.org"), Some(&bob), 6 + i);
        }
        assert!(hashes.local_wants_reload());
    }

    #[test]
    fn settled_local_binds_answer_under_the_previous_pepper_too() {
        let hashes = rotated_from_old(60_000);
        *hashes.current.write().unwrap() = Some(Arc::new(index_of(vec![])));
        reload(
            &hashes,
            vec![
                local("a@x.org", "@alice:example.org", 1),
                local("b@x.org", "@bob:example.org", 2),
            ],
            2,
        );
        hashes.apply_local(Medium::Email, "b@x.org", None, 3);
        let old = |a: &str| b64::encode_url_safe(&lookup_digest(a, "email", "old"));
        assert_eq!(
            hashes
                .lookup_under(Under::Previous, &[old("a@x.org"), old("b@x.org")])
                .unwrap(),
            vec![(old("a@x.org"), "@alice:example.org".to_owned())],
            "b's unbind hides it under the previous pepper too"
        );
    }
}
