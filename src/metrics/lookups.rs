//! Lookups by where their answer came from: an identity store, the identity server DNS
//! names for an e-mail's domain, a forwarder, a remote answer kept from earlier, nobody
//! (a miss), or an error (a store failed). One count per address looked up.
//!
//! A single lookup is counted when it ends (`single`'s guard dropped), with what its steps
//! marked on the way (`found`, `source`, `failed`, on this thread): the steps do not return
//! where their answer came from, and a guard needs one added line where it starts.
//! Bulk lookups count each address where its answer is known (`add`).

use super::text::{Kind, Text};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Store,
    Dns,
    Forwarder,
    Cache,
    Miss,
    Error,
}

const SOURCES: [(Source, &str); 6] = [
    (Source::Store, "store"),
    (Source::Dns, "dns"),
    (Source::Forwarder, "forwarder"),
    (Source::Cache, "cache"),
    (Source::Miss, "miss"),
    (Source::Error, "error"),
];

static COUNTS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

/// Counts `n` addresses answered from `source`.
pub fn add(source: Source, n: usize) {
    if n > 0 {
        COUNTS[source as usize].fetch_add(n as u64, Relaxed);
    }
}

/// The single lookup running on this thread: where its answer would come from, whether it
/// was found, whether a store failed.
#[derive(Clone, Copy)]
struct Open {
    source: Source,
    found: bool,
    failed: bool,
}

thread_local! {
    static OPEN: Cell<Option<Open>> = const { Cell::new(None) };
}

/// A single lookup being counted; counted when dropped.
pub struct Single(());

/// Starts counting a single lookup on this thread.
pub fn single() -> Single {
    OPEN.set(Some(Open {
        source: Source::Miss,
        found: false,
        failed: false,
    }));
    Single(())
}

impl Drop for Single {
    fn drop(&mut self) {
        if let Some(open) = OPEN.take() {
            let source = match open {
                Open { found: true, .. } => open.source,
                Open { failed: true, .. } => Source::Error,
                _ => Source::Miss,
            };
            add(source, 1);
        }
    }
}

fn mark(change: impl FnOnce(&mut Open)) {
    if let Some(mut open) = OPEN.get() {
        change(&mut open);
        OPEN.set(Some(open));
    }
}

/// The single lookup on this thread has its answer, from `source`.
pub fn found(source: Source) {
    mark(|o| {
        o.source = source;
        o.found = true;
    });
}

/// The single lookup on this thread has its answer, from the source last marked.
pub fn found_there() {
    mark(|o| o.found = true);
}

/// Where the single lookup on this thread gets its answer if it finds one now.
pub fn source(source: Source) {
    mark(|o| o.source = source);
}

/// A store failed during the single lookup on this thread (an error unless another finds).
pub fn failed() {
    mark(|o| o.failed = true);
}

pub(super) fn render(t: &mut Text) {
    t.family(
        "mxisd_lookups_total",
        Kind::Counter,
        "Addresses looked up (single, bulk, invites), by where the answer came from: store, dns (the identity server of the e-mail's domain), forwarder, cache (a remote answer kept), miss, error.",
    );
    for (source, name) in SOURCES {
        let n = COUNTS[source as usize].load(Relaxed);
        t.int("mxisd_lookups_total", &[("source", name)], n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(source: Source) -> u64 {
        COUNTS[source as usize].load(Relaxed)
    }

    #[test]
    fn a_single_lookup_counts_once_where_it_ended() {
        // Other tests may count meanwhile: compare this thread's steps with a lower bound.
        let before = (count(Source::Dns), count(Source::Error));
        {
            let _c = single();
            failed();
            source(Source::Cache);
            source(Source::Dns);
            found_there();
        }
        {
            let _c = single();
            failed();
            source(Source::Cache);
        }
        assert!(count(Source::Dns) > before.0);
        assert!(count(Source::Error) > before.1);
        // No lookup open: marks are ignored.
        found(Source::Store);
        assert!(OPEN.get().is_none());
    }
}
