//! Requests of the HTTP server: a count per endpoint, method and status, a latency
//! histogram per endpoint and method, and the workers busy now.
//!
//! An endpoint is a route's pattern as the route table registered it (or one of the
//! server's own words for requests no route took: `(unknown)`, `(method)`, ...), never a
//! raw path: the set is fixed by the code. Each (method, endpoint) gets a slot the first
//! time it is seen, in a fixed table of [`SLOTS`] found by hashing: after that, counting a
//! request is a hash of the pattern and a few relaxed atomic adds, without a lock or an
//! allocation. Were the table ever full, further endpoints would share `(overflow)`.
//!
//! Each slot's counters, and the busy count, are kept in [`SHARDS`] copies, each on cache
//! lines of its own, a worker thread adding to its own copy (they are summed when
//! rendered): workers on different cores adding to one shared line would pass it back and
//! forth between the cores at every request.

use super::text::{Kind, Text};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

/// Slots of (method, endpoint); the route table has fewer than 100 routes.
const SLOTS: usize = 256;

/// The statuses counted by name; any other is `other`.
const STATUSES: [u16; 18] = [
    200, 302, 400, 401, 403, 404, 405, 408, 413, 414, 417, 429, 431, 500, 502, 503, 504, 505,
];

/// Upper bounds of the latency buckets, in microseconds (1 ms to 10 s); one more bucket
/// above them (`+Inf`).
const BUCKETS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Copies of the counters (a thread's is its number, in the order threads first count, modulo
/// this).
const SHARDS: usize = 8;

/// The request methods named; any other is `other` (a method is the client's word).
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

struct Slot {
    /// (method, endpoint), set once.
    name: OnceLock<(&'static str, Box<str>)>,
    shards: [Counters; SHARDS],
}

/// One copy of a slot's counters, on cache lines no other copy shares.
#[repr(align(64))]
struct Counters {
    statuses: [AtomicU64; STATUSES.len() + 1],
    latency: Histogram,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            name: OnceLock::new(),
            shards: [const {
                Counters {
                    statuses: [const { AtomicU64::new(0) }; STATUSES.len() + 1],
                    latency: Histogram::new(),
                }
            }; SHARDS],
        }
    }
}

/// A busy count on a cache line of its own.
#[repr(align(64))]
struct Padded(AtomicI64);

thread_local! {
    /// This thread's copy of the counters; `usize::MAX` until it first counts.
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

fn shard() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    SHARD.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT.fetch_add(1, Relaxed) as usize % SHARDS);
        }
        s.get()
    })
}

/// Counts per bucket (not cumulative; summed when rendered) and the sum, in microseconds.
struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS_US.len() + 1],
            sum_us: AtomicU64::new(0),
        }
    }

    fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// `name_bucket`, `name_sum` (seconds) and `name_count` samples under `labels`, of
    /// `copies` added up.
    fn render(copies: &[&Histogram], t: &mut Text, name: &str, labels: &[(&str, &str)]) {
        let mut cumulative = 0;
        let bucket = format!("{name}_bucket");
        for i in 0..=BUCKETS_US.len() {
            cumulative += copies
                .iter()
                .map(|h| h.buckets[i].load(Relaxed))
                .sum::<u64>();
            let le = match BUCKETS_US.get(i) {
                Some(us) => super::text::number(*us as f64 / 1e6),
                None => "+Inf".to_owned(),
            };
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            t.int(&bucket, &with_le, cumulative);
        }
        let sum = copies.iter().map(|h| h.sum_us.load(Relaxed)).sum::<u64>() as f64 / 1e6;
        t.real(&format!("{name}_sum"), labels, sum);
        t.int(&format!("{name}_count"), labels, cumulative);
    }
}

static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
static OVERFLOW: Slot = Slot::new();
static BUSY: [Padded; SHARDS] = [const { Padded(AtomicI64::new(0)) }; SHARDS];

/// Counts one answered request: `endpoint` is its route's pattern (or the server's word for
/// a request no route took), `status` the status answered, `took` from the request's
/// arrival at a worker to its answer written.
pub fn request(method: &str, endpoint: &str, status: u16, took: Duration) {
    let slot = slot(method_name(method), endpoint);
    let s = STATUSES
        .iter()
        .position(|&x| x == status)
        .unwrap_or(STATUSES.len());
    let mine = &slot.shards[shard()];
    mine.statuses[s].fetch_add(1, Relaxed);
    mine.latency.observe(took);
}

/// A worker busy with a request until this is dropped (its copy of the count).
pub struct Busy(usize);

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY[self.0].0.fetch_sub(1, Relaxed);
    }
}

/// Marks a worker busy (until the returned guard is dropped, even by a panic).
pub fn busy() -> Busy {
    let shard = shard();
    BUSY[shard].0.fetch_add(1, Relaxed);
    Busy(shard)
}

fn method_name(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .copied()
        .unwrap_or("other")
}

/// The slot of (method, endpoint): found by open addressing from the name's hash, taken
/// the first time. Losing the race for an empty slot to another name moves on.
fn slot(method: &'static str, endpoint: &str) -> &'static Slot {
    let start = fnv1a(method, endpoint) as usize % SLOTS;
    for i in 0..SLOTS {
        let slot = &TABLE[(start + i) % SLOTS];
        let (m, e) = slot.name.get_or_init(|| (method, endpoint.into()));
        if *m == method && **e == *endpoint {
            return slot;
        }
    }
    OVERFLOW.name.get_or_init(|| ("other", "(overflow)".into()));
    &OVERFLOW
}

/// FNV-1a over the method, a separator and the endpoint: cheap and good enough to spread
/// a hundred patterns.
fn fnv1a(method: &str, endpoint: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in method.bytes().chain([b' ']).chain(endpoint.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The workers of the API server busy with a request now.
pub fn busy_now() -> i64 {
    BUSY.iter().map(|b| b.0.load(Relaxed)).sum()
}

pub(super) fn render(t: &mut Text) {
    let mut slots: Vec<(&str, &str, &Slot)> = TABLE
        .iter()
        .chain(std::iter::once(&OVERFLOW))
        .filter_map(|s| s.name.get().map(|(m, e)| (*m, &**e, s)))
        .collect();
    slots.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
    t.family(
        "mxisd_http_requests_total",
        Kind::Counter,
        "Requests answered, by endpoint (the route's pattern, or (unknown), (method), (bad path), (preflight), (panicked)), method and status.",
    );
    for (method, endpoint, slot) in &slots {
        for i in 0..=STATUSES.len() {
            let n: u64 = slot
                .shards
                .iter()
                .map(|c| c.statuses[i].load(Relaxed))
                .sum();
            if n == 0 {
                continue;
            }
            let status = STATUSES
                .get(i)
                .map_or_else(|| "other".to_owned(), u16::to_string);
            t.int(
                "mxisd_http_requests_total",
                &[
                    ("endpoint", endpoint),
                    ("method", method),
                    ("status", &status),
                ],
                n,
            );
        }
    }
    t.family(
        "mxisd_http_request_duration_seconds",
        Kind::Histogram,
        "Time from a request's arrival at a worker to its answer written, by endpoint and method.",
    );
    for (method, endpoint, slot) in &slots {
        let copies: Vec<&Histogram> = slot.shards.iter().map(|c| &c.latency).collect();
        Histogram::render(
            &copies,
            t,
            "mxisd_http_request_duration_seconds",
            &[("endpoint", endpoint), ("method", method)],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_keeps_its_slot_and_methods_are_a_fixed_set() {
        let a = slot("GET", "/test/metrics/a") as *const Slot;
        let b = slot("POST", "/test/metrics/a") as *const Slot;
        assert_ne!(a, b);
        assert_eq!(a, slot("GET", "/test/metrics/a") as *const Slot);
        assert_eq!(method_name("get"), "GET");
        assert_eq!(method_name("BREW"), "other");
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let (h, other) = (Histogram::new(), Histogram::new());
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        other.observe(Duration::from_millis(20));
        let mut t = Text::new();
        Histogram::render(&[&h, &other], &mut t, "x", &[("endpoint", "e")]);
        let page = t.finish();
        for line in [
            "x_bucket{endpoint=\"e\",le=\"0.001\"} 1\n",
            "x_bucket{endpoint=\"e\",le=\"0.005\"} 2\n",
            "x_bucket{endpoint=\"e\",le=\"0.025\"} 3\n",
            "x_bucket{endpoint=\"e\",le=\"10\"} 3\n",
            "x_bucket{endpoint=\"e\",le=\"+Inf\"} 4\n",
            "x_sum{endpoint=\"e\"} 60.0235\n",
            "x_count{endpoint=\"e\"} 4\n",
        ] {
            assert!(page.contains(line), "{line} in {page}");
        }
    }
}
