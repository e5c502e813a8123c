//! A per-key limit of attempts per minute (fixed one-minute windows), for endpoints that
//! would otherwise be oracles (password checks).

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

#[cfg(test)]
mod tests {
    use super::*;

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
