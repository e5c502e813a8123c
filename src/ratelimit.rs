//! Per-key limits, kept in memory (per instance):
//! - `RateLimiter`: attempts per minute in fixed one-minute windows, for endpoints that
//!   would otherwise be oracles (password checks);
//! - `Buckets`: a burst, refilled at a rate per minute (token buckets), for what costs
//!   something to send (validation mails and SMS).

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// The fewest keys a map holds before it is first pruned.
const PRUNE_FLOOR: usize = 1024;

/// A limiter's keys. What no longer limits anything (an ended window, a full bucket) is
/// forgotten whenever the map has doubled since it was last pruned: memory follows the
/// keys in use — a mail to a new address every request would otherwise keep each address
/// for good, up to a cap, as the soak showed (RSS growing ~0.25 MB a minute) — at an
/// amortised constant cost a call, never a scan a call however many keys are live.
struct Keys<V> {
    map: HashMap<String, V>,
    prune_at: usize,
}

impl<V> Default for Keys<V> {
    fn default() -> Self {
        Keys {
            map: HashMap::new(),
            prune_at: PRUNE_FLOOR,
        }
    }
}

impl<V> Keys<V> {
    fn prune_if_grown(&mut self, mut keep: impl FnMut(&V) -> bool) {
        if self.map.len() < self.prune_at {
            return;
        }
        self.map.retain(|_, v| keep(v));
        self.prune_at = (2 * self.map.len()).max(PRUNE_FLOOR);
        self.map.shrink_to(self.prune_at);
    }
}

impl<V> Deref for Keys<V> {
    type Target = HashMap<String, V>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<V> DerefMut for Keys<V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

pub struct RateLimiter {
    per_window: u32,
    windows: Mutex<Keys<(Instant, u32)>>,
}

impl RateLimiter {
    pub fn per_minute(per_window: u32) -> RateLimiter {
        RateLimiter {
            per_window,
            windows: Mutex::default(),
        }
    }

    /// Counts an attempt for `key`; `Err(wait)` if the limit is reached.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    /// `check` at `now` (the tests' clock).
    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut windows = crate::lock(&self.windows);
        windows.prune_if_grown(|(start, _)| now.duration_since(*start) < WINDOW);
        let (start, count) = windows.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= self.per_window {
            return Err(WINDOW.saturating_sub(now.duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }
}

/// Token buckets per key: `burst` at once, then `per_minute`.
pub struct Buckets {
    burst: f64,
    per_ms: f64,
    buckets: Mutex<Keys<(Instant, f64)>>,
}

impl Buckets {
    pub fn new(burst: u32, per_minute: u32) -> Buckets {
        Buckets {
            burst: f64::from(burst.max(1)),
            per_ms: f64::from(per_minute) / 60_000.0,
            buckets: Mutex::default(),
        }
    }

    /// Takes one from `key`'s bucket if it has one; else how long until it will.
    pub fn try_take(&self, key: &str) -> Result<(), Duration> {
        self.try_take_at(key, Instant::now())
    }

    /// `try_take` at `now` (the tests' clock).
    fn try_take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = crate::lock(&self.buckets);
        let level = self.level(&mut buckets, key, now);
        if level >= 1.0 {
            buckets.insert(key.to_owned(), (now, level - 1.0));
            Ok(())
        } else if self.per_ms > 0.0 {
            Err(Duration::from_millis(
                ((1.0 - level) / self.per_ms).ceil() as u64
            ))
        } else {
            Err(WINDOW)
        }
    }

    /// Gives back one taken for something that did not happen after all.
    pub fn refund(&self, key: &str) {
        self.refund_at(key, Instant::now())
    }

    /// `refund` at `now` (the tests' clock).
    fn refund_at(&self, key: &str, now: Instant) {
        let mut buckets = crate::lock(&self.buckets);
        let level = self.level(&mut buckets, key, now);
        buckets.insert(key.to_owned(), (now, (level + 1.0).min(self.burst)));
    }

    /// The bucket's level now; full buckets are forgotten when the map has grown.
    fn level(&self, buckets: &mut Keys<(Instant, f64)>, key: &str, now: Instant) -> f64 {
        let (burst, per_ms) = (self.burst, self.per_ms);
        buckets.prune_if_grown(|(at, level)| {
            *level + now.duration_since(*at).as_millis() as f64 * per_ms < burst
        });
        buckets.get(key).map_or(self.burst, |(at, level)| {
            (level + now.duration_since(*at).as_millis() as f64 * self.per_ms).min(self.burst)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_a_burst_then_the_rate() {
        let b = Buckets::new(3, 60); // one a second after the burst
        for _ in 0..3 {
            assert!(b.try_take("a").is_ok());
        }
        let wait = b.try_take("a").unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::from_millis(900),
            "{wait:?}"
        );
        assert!(b.try_take("b").is_ok(), "each key its own bucket");
        // A refund makes room for one more, no more than the burst.
        b.refund("a");
        assert!(b.try_take("a").is_ok());
        assert!(b.try_take("a").is_err());
    }

    #[test]
    fn limits_each_key_separately() {
        let limiter = RateLimiter::per_minute(2);
        assert!(limiter.check("@a:x").is_ok());
        assert!(limiter.check("@a:x").is_ok());
        let wait = limiter.check("@a:x").unwrap_err();
        assert!(wait > Duration::from_secs(50) && wait <= WINDOW);
        assert!(limiter.check("@b:x").is_ok());
    }

    const MS: Duration = Duration::from_millis(1);

    /// The level stored for `key`, and how long ago (at `now`) it was stored.
    fn stored(b: &Buckets, key: &str, now: Instant) -> Option<(Duration, f64)> {
        crate::lock(&b.buckets)
            .get(key)
            .map(|(at, level)| (now.duration_since(*at), *level))
    }

    #[test]
    fn a_window_starts_again_after_a_minute_exactly() {
        let t0 = Instant::now();
        let limiter = RateLimiter::per_minute(1);
        assert_eq!(limiter.check_at("k", t0), Ok(()));
        assert_eq!(
            limiter.check_at("k", t0 + Duration::from_secs(20)),
            Err(Duration::from_secs(40)),
            "Retry-After: what is left of the window"
        );
        assert_eq!(limiter.check_at("k", t0 + WINDOW - MS), Err(MS));
        assert_eq!(limiter.check_at("k", t0 + WINDOW), Ok(()));
        assert_eq!(
            limiter.check_at("k", t0 + WINDOW + MS),
            Err(WINDOW - MS),
            "the new window counts from its first attempt"
        );
        let count = crate::lock(&limiter.windows).get("k").map(|(_, c)| *c);
        assert_eq!(count, Some(1), "refused attempts are not counted");
    }

    #[test]
    fn counts_up_to_the_limit() {
        let t0 = Instant::now();
        let limiter = RateLimiter::per_minute(3);
        for n in 1..=3 {
            assert_eq!(limiter.check_at("k", t0), Ok(()));
            let count = crate::lock(&limiter.windows).get("k").map(|(_, c)| *c);
            assert_eq!(count, Some(n));
        }
        assert_eq!(limiter.check_at("k", t0), Err(WINDOW));
        assert_eq!(RateLimiter::per_minute(0).check_at("k", t0), Err(WINDOW));
    }

    #[test]
    fn windows_are_pruned_only_once_the_map_has_grown_and_only_the_ended_ones() {
        let t0 = Instant::now();
        let limiter = RateLimiter::per_minute(5);
        {
            let mut windows = crate::lock(&limiter.windows);
            // One window ends exactly when the next check comes; one a millisecond later.
            windows.insert("ended".into(), (t0, 1));
            windows.insert("running".into(), (t0 + MS, 1));
            for i in 0..PRUNE_FLOOR - 3 {
                windows.insert(format!("k{i}"), (t0, 1));
            }
        }
        // Below the threshold nothing is pruned, not even ended windows.
        assert_eq!(limiter.check_at("new1", t0 + WINDOW), Ok(()));
        assert_eq!(crate::lock(&limiter.windows).len(), PRUNE_FLOOR);
        // At the threshold the ended windows go (and only they).
        assert_eq!(limiter.check_at("new2", t0 + WINDOW), Ok(()));
        let windows = crate::lock(&limiter.windows);
        assert_eq!(windows.len(), 3, "only the running windows are kept");
        let mut keys: Vec<&str> = windows.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["new1", "new2", "running"]);
    }

    #[test]
    fn windows_over_the_threshold_are_pruned_too() {
        let t0 = Instant::now();
        let limiter = RateLimiter::per_minute(5);
        {
            let mut windows = crate::lock(&limiter.windows);
            for i in 0..PRUNE_FLOOR + 1 {
                windows.insert(format!("k{i}"), (t0, 1));
            }
        }
        assert_eq!(limiter.check_at("new", t0 + WINDOW), Ok(()));
        assert_eq!(crate::lock(&limiter.windows).len(), 1);
    }

    #[test]
    fn buckets_refill_at_the_rate() {
        let t0 = Instant::now();
        let b = Buckets::new(2, 30_000); // one every 2 ms
        assert_eq!(b.try_take_at("k", t0), Ok(()));
        assert_eq!(stored(&b, "k", t0), Some((Duration::ZERO, 1.0)));
        assert_eq!(b.try_take_at("k", t0), Ok(()));
        assert_eq!(b.try_take_at("k", t0), Err(2 * MS), "Retry-After");
        assert_eq!(b.try_take_at("k", t0 + MS), Err(MS), "half refilled");
        assert_eq!(b.try_take_at("k", t0 + 2 * MS), Ok(()));
        assert_eq!(stored(&b, "k", t0 + 2 * MS), Some((Duration::ZERO, 0.0)));
        // Refilled to the burst, no further.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.try_take_at("k", later), Ok(()));
        assert_eq!(stored(&b, "k", later), Some((Duration::ZERO, 1.0)));
    }

    #[test]
    fn a_bucket_that_never_refills_says_a_minute() {
        let t0 = Instant::now();
        let b = Buckets::new(1, 0);
        assert_eq!(b.try_take_at("k", t0), Ok(()));
        assert_eq!(
            b.try_take_at("k", t0 + Duration::from_secs(3600)),
            Err(WINDOW)
        );
        let empty = Buckets::new(0, 60_000);
        assert_eq!(
            empty.try_take_at("k", t0),
            Ok(()),
            "a burst of at least one"
        );
        assert_eq!(empty.try_take_at("k", t0), Err(MS));
    }

    #[test]
    fn a_refund_after_a_failed_send_gives_one_back_up_to_the_burst() {
        let t0 = Instant::now();
        let b = Buckets::new(3, 60_000); // one a millisecond
        for _ in 0..3 {
            assert_eq!(b.try_take_at("k", t0), Ok(()));
        }
        b.refund_at("k", t0);
        assert_eq!(stored(&b, "k", t0), Some((Duration::ZERO, 1.0)));
        // The refund counts what refilled meanwhile.
        b.refund_at("k", t0 + MS);
        assert_eq!(stored(&b, "k", t0 + MS), Some((Duration::ZERO, 3.0)));
        b.refund_at("k", t0 + MS);
        assert_eq!(stored(&b, "k", t0 + MS), Some((Duration::ZERO, 3.0)));
        // A key never seen is full; a refund does not overfill it.
        b.refund_at("other", t0);
        assert_eq!(stored(&b, "other", t0), Some((Duration::ZERO, 3.0)));
    }

    #[test]
    fn full_buckets_are_forgotten_once_the_map_has_grown() {
        let t0 = Instant::now();
        let b = Buckets::new(4, 120_000); // two a millisecond
        {
            let mut buckets = crate::lock(&b.buckets);
            // Full by the time of the next take: exactly, or long since.
            buckets.insert("refilled".into(), (t0 + 9 * MS, 2.0));
            buckets.insert("long ago".into(), (t0, 0.0));
            // Not full yet: 1 + 2 refilled; 3.5 not refilled at all.
            buckets.insert("partly".into(), (t0 + 9 * MS, 1.0));
            buckets.insert("fresh".into(), (t0 + 10 * MS, 3.5));
            for i in 0..PRUNE_FLOOR - 5 {
                buckets.insert(format!("k{i}"), (t0, 0.0));
            }
        }
        let now = t0 + 10 * MS;
        assert_eq!(b.try_take_at("new1", now), Ok(()));
        assert_eq!(
            crate::lock(&b.buckets).len(),
            PRUNE_FLOOR,
            "below the threshold"
        );
        assert_eq!(b.try_take_at("new2", now), Ok(()));
        let buckets = crate::lock(&b.buckets);
        assert_eq!(buckets.len(), 4, "only the buckets not full are kept");
        let mut keys: Vec<&str> = buckets.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["fresh", "new1", "new2", "partly"]);
    }

    #[test]
    fn live_keys_are_scanned_again_only_once_the_map_has_doubled() {
        let t0 = Instant::now();
        let limiter = RateLimiter::per_minute(5);
        // 3,000 live windows: the first prune (at 1,024 keys) keeps them all, and so on.
        for i in 0..3000 {
            assert_eq!(limiter.check_at(&format!("k{i}"), t0), Ok(()));
        }
        let prune_at = crate::lock(&limiter.windows).prune_at;
        assert!(
            (3000..=2 * 3000).contains(&prune_at),
            "next prune at twice what the last kept: {prune_at}"
        );
        // Once they have all ended, the next prune forgets them, and the threshold falls
        // back to the floor.
        let later = t0 + WINDOW;
        for i in 0..=prune_at - 3000 {
            assert_eq!(limiter.check_at(&format!("n{i}"), later), Ok(()));
        }
        let windows = crate::lock(&limiter.windows);
        assert!(windows.len() <= prune_at - 3000 + 1, "{}", windows.len());
        assert!(!windows.contains_key("k0"));
        assert_eq!(windows.prune_at, PRUNE_FLOOR.max(2 * (prune_at - 3000)));
    }
}
