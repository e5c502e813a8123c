//! A counting gate (a semaphore that never waits): at most `max` holders at once; one more
//! is refused at once instead of queueing. What keeps a slow backend from holding every
//! worker: the workers that may wait on it are a bounded share of the pool, and a request
//! past the share is answered (503) while the others still serve. Leaf module.

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

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.held.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::Gate;

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
}
