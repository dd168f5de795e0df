//! Fresh memory faulted in ahead of use, on a helper thread: a global allocator wrapper
//! ([`Prefault`]) hands every large allocation made while [`enable`]d to a thread that asks the
//! kernel to map its pages at once (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14+), so that the
//! thread filling the memory does not stop on a page fault every 4 KiB.
//!
//! A page fault costs ~1.6 µs on the machines the benchmarks run on (2 vCPUs: most of it the
//! trap and the kernel zeroing the page), and a `bee batch` of 100k lines faults ~12k pages
//! (~50 MB: the batch's arrays, its encoded blocks, the merkle tree's nodes and pages), about
//! half of them while one thread stages the writes one after another. With the staging's
//! faulted in by the helper thread on the other CPU, the command ran ~10% faster (medians of 11
//! runs, 2026-12-08); the flush's were left alone, as its own helper thread hashes on the
//! other CPU then.
//!
//! What it does and does not do:
//! * Only allocations (and the grown part of reallocations) of at least [`MIN_BYTES`], made while
//!   an [`Enabled`] guard lives, are handed over; the hand-over takes no lock and allocates
//!   nothing (a fixed ring of [`RING`] slots; when it is full the request is dropped: a hint).
//! * The helper only populates page tables: it never reads or writes the memory, so it cannot
//!   race with the owner's writes (the kernel serialises the faults), and a range freed or
//!   reused in the meantime is at worst populated for its next user. It walks each range from
//!   its end down, in chunks, so a buffer the owner fills from its start at once (a `Vec` built
//!   in one go) is met half way rather than raced page by page.
//! * The cost is memory: capacity reserved but never used (a `Vec::with_capacity` guess that
//!   was too big) is made resident. Commands turn it on around work whose big buffers are
//!   filled (see `hyperpunch bee batch`), not for a whole long-running process.
//! * Elsewhere than Linux, or before [`start`], it does nothing.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Allocations smaller than this are not handed over (their few pages are not worth a wake-up).
pub const MIN_BYTES: usize = 1 << 20;
/// How many ranges wait for the helper at most.
pub const RING: usize = 64;
/// The helper's step: one `madvise` per this many bytes, from a range's end down.
const CHUNK: usize = 256 * 1024;
const PAGE: usize = 4096;

/// A global allocator that passes large allocations made while [`enable`]d to the helper
/// thread of [`start`] (see the module docs); everything else goes to `A` unchanged.
pub struct Prefault<A>(pub A);

struct Slot {
    addr: AtomicUsize,
    len: AtomicUsize,
}

static SLOTS: [Slot; RING] = [const {
    Slot {
        addr: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
    }
}; RING];
/// Ranges handed over so far (the next slot to fill is `HEAD % RING`).
static HEAD: AtomicUsize = AtomicUsize::new(0);
/// Ranges the helper has taken.
static TAIL: AtomicUsize = AtomicUsize::new(0);
static HELPER: OnceLock<std::thread::Thread> = OnceLock::new();
/// How many [`Enabled`] guards live.
static ENABLED: AtomicUsize = AtomicUsize::new(0);
static STARTED: AtomicBool = AtomicBool::new(false);

/// Start the helper thread (once; later calls do nothing; [`enable`] calls it). Without it,
/// [`Prefault`] passes everything through. Does nothing where populating is not supported (not
/// Linux).
pub fn start() {
    if !cfg!(target_os = "linux") || STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("prefault".into())
        .stack_size(64 * 1024)
        .spawn(helper);
    if let Ok(h) = spawned {
        let _ = HELPER.set(h.thread().clone());
    }
}

/// Large allocations are handed to the helper while the returned guard lives.
pub fn enable() -> Enabled {
    start();
    ENABLED.fetch_add(1, Ordering::AcqRel);
    Enabled(())
}

/// See [`enable`].
#[must_use = "allocations are prefaulted only while the guard lives"]
pub struct Enabled(());

impl Drop for Enabled {
    fn drop(&mut self) {
        ENABLED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Hand `[addr, addr + len)` to the helper, if enabled and big enough. Takes no lock and
/// allocates nothing (it runs inside the allocator).
fn hand_over(addr: usize, len: usize) {
    if len < MIN_BYTES || ENABLED.load(Ordering::Relaxed) == 0 {
        return;
    }
    let Some(helper) = HELPER.get() else { return };
    // Claim a slot unless the ring is full (the helper is behind): then drop the request.
    let mut head = HEAD.load(Ordering::Acquire);
    loop {
        if head.wrapping_sub(TAIL.load(Ordering::Acquire)) >= RING {
            return;
        }
        match HEAD.compare_exchange_weak(head, head + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(h) => head = h,
        }
    }
    let slot = &SLOTS[head % RING];
    slot.len.store(len, Ordering::Relaxed);
    // Non-zero: published (the helper waits for it).
    slot.addr.store(addr, Ordering::Release);
    helper.unpark();
}

fn helper() {
    loop {
        let tail = TAIL.load(Ordering::Acquire);
        if tail == HEAD.load(Ordering::Acquire) {
            std::thread::park();
            continue;
        }
        let slot = &SLOTS[tail % RING];
        let addr = slot.addr.swap(0, Ordering::AcqRel);
        if addr == 0 {
            // Claimed by a writer that has not published it yet.
            std::thread::yield_now();
            continue;
        }
        let len = slot.len.load(Ordering::Relaxed);
        TAIL.store(tail + 1, Ordering::Release);
        populate(addr, len);
    }
}

/// Fault in the whole pages of `[addr, addr + len)`, from the end down.
fn populate(addr: usize, len: usize) {
    let start = addr.next_multiple_of(PAGE);
    let end = addr.saturating_add(len) / PAGE * PAGE;
    let mut hi = end;
    while hi > start {
        let lo = hi.saturating_sub(CHUNK).max(start);
        populate_range(lo, hi - lo);
        hi = lo;
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn populate_range(addr: usize, len: usize) {
    /// `MADV_POPULATE_WRITE` (Linux 5.14; not in every libc crate version).
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    // SAFETY: populating page tables neither reads nor changes the memory's contents; on a
    // range that is no longer mapped (freed since) the call fails (ENOMEM), which is ignored,
    // as is an older kernel's EINVAL.
    let _ = unsafe { libc::madvise(addr as *mut libc::c_void, len, MADV_POPULATE_WRITE) };
}

#[cfg(not(target_os = "linux"))]
fn populate_range(_addr: usize, _len: usize) {}

// SAFETY: every call is passed to `A` as it is; the hand-over only records addresses.
#[allow(unsafe_code)]
unsafe impl<A: GlobalAlloc> GlobalAlloc for Prefault<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            hand_over(p as usize, layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`. Fresh pages the allocator did not zero (it knows the kernel's
        // are) are zero when populated too.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            hand_over(p as usize, layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() && new_size > layout.size() {
            // Only the grown part: the rest holds the old contents, already resident.
            hand_over(p as usize + layout.size(), new_size - layout.size());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populate_of_a_fresh_mapping_keeps_it_zero_and_of_a_written_one_keeps_its_bytes() {
        let mut v = vec![0u8; 3 << 20];
        populate(v.as_ptr() as usize, v.len());
        assert!(v.iter().all(|&b| b == 0));
        for (i, b) in v.iter_mut().enumerate() {
            *b = i as u8;
        }
        populate(v.as_ptr() as usize + 5, v.len() - 5);
        assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
    }

    /// Whether each page of `[addr, addr + len)` (page-aligned) is resident (`mincore`).
    #[allow(unsafe_code)]
    fn resident(addr: usize, len: usize) -> Vec<bool> {
        let mut vec = vec![0u8; len.div_ceil(PAGE)];
        // SAFETY: `vec` has a byte per page of the range; `mincore` only writes those.
        let rc = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore");
        vec.iter().map(|b| b & 1 == 1).collect()
    }

    #[test]
    fn an_allocation_handed_over_while_enabled_is_made_resident_by_the_helper() {
        // Fresh memory from the system allocator (a mapping of its own at this size), not
        // touched: not resident until the helper populates it.
        let len = 8 << 20;
        let v: Vec<u8> = Vec::with_capacity(len);
        let start = (v.as_ptr() as usize).next_multiple_of(PAGE);
        let pages = (v.as_ptr() as usize + len) / PAGE * PAGE - start;
        assert!(
            resident(start, pages).iter().filter(|&&r| r).count() < pages / PAGE / 2,
            "a fresh allocation already resident: the test shows nothing"
        );
        // Not enabled: not handed over.
        hand_over(v.as_ptr() as usize, len);
        let _on = enable();
        hand_over(v.as_ptr() as usize, len);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !resident(start, pages).iter().all(|&r| r) {
            assert!(
                std::time::Instant::now() < deadline,
                "the helper did not populate the range"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(v);
    }

    #[test]
    fn a_range_not_mapped_is_ignored() {
        // The page at 4 KiB is never mapped (mmap_min_addr): the call fails quietly.
        populate(PAGE, 8 * PAGE);
    }
}
