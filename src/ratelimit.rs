//! Per-key limits, kept in memory (per instance):
//! - `RateLimiter`: attempts per minute in fixed one-minute windows, for endpoints that
//!   would otherwise be oracles (password checks);
//! - `Buckets`: a burst, refilled at a rate per minute (token buckets), for what costs
//!   something to send (validation mails and SMS).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Keys remembered at most; older windows are dropped when it is reached.
const MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    per_window: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
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
        let now = Instant::now();
        let mut windows = crate::lock(&self.windows);
        if windows.len() >= MAX_KEYS {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
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
    buckets: Mutex<HashMap<String, (Instant, f64)>>,
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
        let now = Instant::now();
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
        let now = Instant::now();
        let mut buckets = crate::lock(&self.buckets);
        let level = self.level(&mut buckets, key, now);
        buckets.insert(key.to_owned(), (now, (level + 1.0).min(self.burst)));
    }

    /// The bucket's level now; full buckets are forgotten when there are too many.
    fn level(&self, buckets: &mut HashMap<String, (Instant, f64)>, key: &str, now: Instant) -> f64 {
        if buckets.len() >= MAX_KEYS {
            let (burst, per_ms) = (self.burst, self.per_ms);
            buckets.retain(|_, (at, level)| {
                *level + now.duration_since(*at).as_millis() as f64 * per_ms < burst
            });
        }
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
}
