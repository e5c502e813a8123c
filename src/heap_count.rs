//! (Unit tests only.) The system allocator, counting the bytes each thread allocates and
//! frees, so that a test can tell what an operation kept without the other tests' threads
//! in the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread (memory freed by another thread than
    /// the one that allocated it counts there, so only a thread's own balance means much).
    static HELD: Cell<isize> = const { Cell::new(0) };
}

pub struct Counting;

fn add(bytes: isize) {
    // try_with: a thread's last frees run after its locals are gone.
    let _ = HELD.try_with(|held| held.set(held.get() + bytes));
}

fn size(bytes: usize) -> isize {
    isize::try_from(bytes).unwrap_or(isize::MAX)
}

// SAFETY: every call is passed to the system allocator as it came; only counted on the way.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(size(layout.size()));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(size(layout.size()));
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        add(-size(layout.size()));
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            add(size(new_size) - size(layout.size()));
        }
        q
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// The bytes this thread holds: what it allocated and has not freed.
pub fn held_here() -> isize {
    HELD.with(Cell::get)
}

#[test]
fn counts_what_this_thread_keeps() {
    let before = held_here();
    let kept = vec![0u8; 10_000];
    assert!(held_here() - before >= 10_000);
    drop(kept);
    assert!(held_here() - before < 10_000);
}
