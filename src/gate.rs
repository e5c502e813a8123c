//! A counting gate (a semaphore that never waits): at most `max` holders at once; one more
//! is refused at once instead of queueing. What keeps a slow backend from holding every
//! worker: the workers that may wait on it are a bounded share of the pool, and a request
//! past the share is answered (503) while the others still serve.
//!
//! [`Bulkhead`]: a gate with a name (the backend it guards) and its refusals counted
//! (`mxisd_backend_refused_total`) and logged at most once per [`REFUSED_LOG_EVERY`], with
//! a count: one per backend (each identity store, the PostgreSQL state, the other identity
//! servers of lookups, those of remote 3PID sessions; `http.backendWorkers` places each).

use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Gate {
    max: usize,
    held: AtomicUsize,
}

/// A place in the gate, given back when dropped (also when the holder panics).
#[must_use = "the place is given back when this is dropped"]
pub struct Pass<'a> {
    gate: &'a Gate,
}

impl Gate {
    /// A gate of `max` places (at least one).
    pub fn new(max: usize) -> Gate {
        Gate {
            max: max.max(1),
            held: AtomicUsize::new(0),
        }
    }

    /// A place, or None if all `max` are taken.
    pub fn try_enter(&self) -> Option<Pass<'_>> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.max).then_some(held + 1)
            })
            .ok()
            .map(|_| Pass { gate: self })
    }

    /// How many places there are.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// At most one line per this long says that a bulkhead refuses calls.
pub const REFUSED_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The gate of one backend: at most `max` workers wait on it at once; one more is refused
/// at once (the caller answers 503) and the refusals are logged, a line per
/// [`REFUSED_LOG_EVERY`] at most, as a frozen backend under load refuses thousands.
pub struct Bulkhead {
    /// The backend, as metrics count it (`mxisd_backend_refused_total`).
    backend: crate::metrics::Backend,
    /// The backend, as logs and errors name it (`identity store ldap`).
    name: String,
    /// The setting that sizes it, for the operator (`http.backendWorkers`).
    setting: &'static str,
    gate: Gate,
    refused_log: crate::logging::Throttled,
}

/// A call the bulkhead refused: every place was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What the caller tells its caller: `busy: 8 workers already wait on it (http.backendWorkers)`.
    pub reason: String,
}

impl Bulkhead {
    pub fn new(
        backend: crate::metrics::Backend,
        name: impl Into<String>,
        max: usize,
        setting: &'static str,
    ) -> Bulkhead {
        Bulkhead {
            backend,
            name: name.into(),
            setting,
            gate: Gate::new(max),
            refused_log: crate::logging::Throttled::new(REFUSED_LOG_EVERY),
        }
    }

    /// A place, or `Refused` (counted; logged, rate-limited, with the count since the last
    /// line).
    pub fn enter(&self) -> Result<Pass<'_>, Refused> {
        self.gate.try_enter().ok_or_else(|| {
            crate::metrics::backend_refused(self.backend);
            let reason = format!(
                "busy: {} workers already wait on it ({})",
                self.gate.max(),
                self.setting
            );
            if let Some(refused) = self.refused_log.hit(std::time::Instant::now()) {
                log::warn!(
                    "{} is {reason}; {refused} calls refused since the last such line (at most one every {} s)",
                    self.name,
                    REFUSED_LOG_EVERY.as_secs()
                );
            }
            Refused { reason }
        })
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.held.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::{Bulkhead, Gate};
    use crate::metrics::Backend;

    #[test]
    fn at_most_max_places_and_given_back_on_drop() {
        let gate = Gate::new(2);
        let a = gate.try_enter().expect("a first place");
        let b = gate.try_enter().expect("a second place");
        assert!(gate.try_enter().is_none());
        drop(a);
        let c = gate.try_enter().expect("the place given back");
        assert!(gate.try_enter().is_none());
        drop((b, c));
        assert!(gate.try_enter().is_some());
        assert_eq!(Gate::new(0).max(), 1);
    }

    #[test]
    fn a_panicking_holder_gives_its_place_back() {
        let gate = std::sync::Arc::new(Gate::new(1));
        let g = gate.clone();
        let _ = std::thread::spawn(move || {
            let _pass = g.try_enter();
            panic!("holder fails");
        })
        .join();
        assert!(gate.try_enter().is_some());
    }

    #[test]
    fn a_bulkhead_refuses_past_its_places_naming_the_setting() {
        let bulkhead = Bulkhead::new(
            Backend::Ldap,
            "identity store ldap",
            1,
            "http.backendWorkers",
        );
        let pass = bulkhead.enter().expect("a place");
        let Err(refused) = bulkhead.enter() else {
            panic!("a place past the cap");
        };
        assert_eq!(
            refused.reason,
            "busy: 1 workers already wait on it (http.backendWorkers)"
        );
        drop(pass);
        assert!(bulkhead.enter().is_ok());
    }
}
