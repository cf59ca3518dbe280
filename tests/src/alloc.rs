//! An allocator that counts, per thread, the bytes held and their peak, so a test can show
//! that some work allocated no more than it should, and the bytes the whole process holds, so
//! a test can watch a server's memory. A test binary installs it with
//! `#[global_allocator] static ALLOCATOR: Counting = Counting;`; counting per thread keeps the
//! test harness's own threads out of the per-thread figures.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::atomic::{AtomicIsize, Ordering},
};

/// The bytes the process holds, over every thread.
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// The bytes the whole process holds now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed).max(0) as usize
}

/// Counts what the current thread allocates, then hands the work to the system allocator.
pub struct Counting;

thread_local! {
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    LIVE.fetch_add(delta, Ordering::Relaxed);
    let _ = CURRENT.try_with(|current| {
        let now = current.get() + delta;
        current.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

/// The bytes allocated at the peak of `f` on this thread, above what was held before it.
pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let baseline = start();
    let value = f();
    (value, grown(baseline))
}

/// Starts a measurement: returns the bytes held now, and resets the peak to it.
pub fn start() -> isize {
    let now = CURRENT.with(Cell::get);
    PEAK.with(|peak| peak.set(now));
    now
}

/// How far the peak rose above `baseline` since [`start`].
pub fn grown(baseline: isize) -> usize {
    (PEAK.with(Cell::get) - baseline).max(0) as usize
}

// SAFETY: every call is passed on unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
}
