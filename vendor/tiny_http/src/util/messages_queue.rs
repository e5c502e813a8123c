// mxisd patch (see PATCHES.md): the published queue woke a sleeping consumer through a
// Condvar on every push. Under load each request then cost a futex call and a thread switch
// even when a worker was about to look at the queue anyway. Here a consumer that finds the
// queue empty first polls it for `SPIN` (yielding the CPU), producers wake nobody while one
// does, and sleeping consumers are woken most recently idle first, without a system call
// when none sleeps.
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

enum Control<T> {
    Elem(T),
    Unblock,
}

/// A consumer waiting for an element.
struct Sleeper {
    thread: Thread,
    woken: AtomicBool,
}

impl Sleeper {
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// The front of the queue: `Some(Some(element))`, `Some(None)` for an unblock, `None` when
/// the queue is empty.
fn take_front<T>(items: &mut VecDeque<Control<T>>) -> Option<Option<T>> {
    match items.pop_front()? {
        Control::Elem(value) => Some(Some(value)),
        Control::Unblock => Some(None),
    }
}

struct State<T> {
    items: VecDeque<Control<T>>,
    /// Idle consumers, the most recent last.
    sleepers: Vec<Arc<Sleeper>>,
    /// Whether a consumer is polling the queue before it sleeps: a producer then wakes
    /// nobody, since that consumer takes the element within `SPIN`.
    spinning: bool,
}

/// How long a consumer that found the queue empty keeps looking before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

thread_local! {
    /// Whether this thread's last pop timed out. Such a consumer has been idle: it neither
    /// spins nor goes back on top of the stack, where it would be the next one woken.
    static TIMED_OUT: Cell<bool> = const { Cell::new(false) };
}

pub struct MessagesQueue<T>
where
    T: Send,
{
    state: Mutex<State<T>>,
}

impl<T> MessagesQueue<T>
where
    T: Send,
{
    pub fn with_capacity(capacity: usize) -> Arc<MessagesQueue<T>> {
        Arc::new(MessagesQueue {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity),
                sleepers: Vec::new(),
                spinning: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        super::lock(&self.state)
    }

    fn add(&self, control: Control<T>) {
        let sleeper = {
            let mut state = self.lock();
            state.items.push_back(control);
            if state.spinning {
                None
            } else {
                state.sleepers.pop()
            }
        };
        if let Some(sleeper) = sleeper {
            sleeper.wake();
        }
    }

    /// Pushes an element to the queue.
    pub fn push(&self, value: T) {
        self.add(Control::Elem(value));
    }

    /// Unblock one thread stuck in pop loop.
    pub fn unblock(&self) {
        self.add(Control::Unblock);
    }

    /// Pops an element. Blocks until one is available.
    /// Returns None in case unblock() was issued.
    pub fn pop(&self) -> Option<T> {
        self.pop_until(None)
    }

    /// Tries to pop an element without blocking.
    pub fn try_pop(&self) -> Option<T> {
        take_front(&mut self.lock().items).flatten()
    }

    /// Tries to pop an element without blocking
    /// more than the specified timeout duration
    /// or unblock() was issued
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        self.pop_until(Some(Instant::now() + timeout))
    }

    /// Ends a spin; elements pushed meanwhile woke nobody, so wake a consumer for each.
    fn stop_spinning(&self) {
        let woken: Vec<_> = {
            let mut state = self.lock();
            state.spinning = false;
            let n = state.items.len().min(state.sleepers.len());
            let keep = state.sleepers.len() - n;
            state.sleepers.split_off(keep)
        };
        woken.iter().for_each(|sleeper| sleeper.wake());
    }

    /// Looks at the queue for up to `SPIN`, yielding the CPU in between.
    fn spin(&self) -> Option<Option<T>> {
        let until = Instant::now() + SPIN;
        while Instant::now() < until {
            thread::yield_now();
            if let Some(found) = take_front(&mut self.lock().items) {
                return Some(found);
            }
        }
        None
    }

    fn pop_until(&self, deadline: Option<Instant>) -> Option<T> {
        let was_idle = TIMED_OUT.with(|t| t.replace(false));
        let mut may_spin = !was_idle;
        loop {
            let sleeper = {
                let mut state = self.lock();
                if let Some(found) = take_front(&mut state.items) {
                    return found;
                }
                if may_spin && !state.spinning {
                    state.spinning = true;
                    drop(state);
                    let found = self.spin();
                    self.stop_spinning();
                    may_spin = false;
                    if let Some(found) = found {
                        return found;
                    }
                    continue;
                }
                let sleeper = Arc::new(Sleeper {
                    thread: thread::current(),
                    woken: AtomicBool::new(false),
                });
                if was_idle {
                    state.sleepers.insert(0, sleeper.clone());
                } else {
                    state.sleepers.push(sleeper.clone());
                }
                sleeper
            };
            // park() may return spuriously: only the flag says we were woken.
            while !sleeper.woken.load(Ordering::Acquire) {
                match deadline {
                    None => thread::park(),
                    Some(deadline) => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        thread::park_timeout(deadline - now);
                    }
                }
            }
            if !sleeper.woken.load(Ordering::Acquire) {
                // Timed out: leave the stack, unless a producer took us off it meanwhile,
                // in which case its element is ours to look at.
                let mut state = self.lock();
                if let Some(i) = state.sleepers.iter().position(|s| Arc::ptr_eq(s, &sleeper)) {
                    state.sleepers.remove(i);
                    TIMED_OUT.with(|t| t.set(true));
                    return take_front(&mut state.items).flatten();
                }
            }
        }
    }
}
