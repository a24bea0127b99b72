//! Peak memory: a counting global allocator (high-water mark of live heap
//! bytes, over the whole process and over a resettable window such as the
//! training mini-batches) plus the process's peak resident set size from
//! `/proc`.
//!
//! The counters only move when [`Counting`] is the process's global
//! allocator; the `noprop` binary installs it (around mimalloc), and so can
//! any program that wants the `peak_*_memory_bytes` fields of a result to
//! be filled in, around the system allocator or any other:
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: noprop_train::memory::Counting =
//!     noprop_train::memory::Counting::new(std::alloc::System);
//! # fn main() {}
//! ```
//!
//! Without it those fields read 0 (the RSS high-water mark from `/proc`
//! still works).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Wraps an allocator (the system's by default) and tracks live and peak
/// heap bytes.
pub struct Counting<A = System> {
    inner: A,
}

impl<A> Counting<A> {
    /// Count the allocations of `inner`.
    pub const fn new(inner: A) -> Self {
        Counting { inner }
    }
}

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static WINDOW: AtomicUsize = AtomicUsize::new(0);

fn grew(now: usize) {
    PEAK.fetch_max(now, Ordering::Relaxed);
    WINDOW.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call forwards to the inner allocator unchanged; the
// counters are only statistics and never affect the returned memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            grew(LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { self.inner.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(
                    LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                        - layout.size(),
                );
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Highest number of live heap bytes seen so far.
pub fn peak_heap_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Live heap bytes now.
pub fn live_heap_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Start a new measurement window: its peak restarts from the live bytes now.
pub fn reset_window() {
    WINDOW.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Highest number of live heap bytes since the last [`reset_window`].
pub fn window_peak_bytes() -> usize {
    WINDOW.load(Ordering::Relaxed)
}

/// Peak resident set size (`VmHWM`), if the platform reports it.
pub fn peak_rss_bytes() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
