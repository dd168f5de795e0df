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
//!   race with the owner's writes (the kernel serialises the faults) and never changes what a
//!   page holds. It walks each range from its end down, in chunks, so a buffer the owner fills
//!   from its start at once (a `Vec` built in one go) is met half way rather than raced page by
//!   page.
//! * A range freed before the helper takes it is taken off the ring (a large `dealloc` cancels
//!   its entry), and once no guard lives the helper drops what is left: the work after a
//!   command's guard is dropped runs without it. A range freed while the helper is populating
//!   it is populated anyway: still mapped by the allocator, it only becomes resident again. The
//!   call is also harmless on whatever else the address may hold by then, *except* a writable
//!   shared file mapping, whose pages it would mark dirty (written back unchanged): this
//!   process maps no files.
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
/// A slot's `addr` once its allocation was freed before the helper took it.
const CANCELLED: usize = 1;

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
/// Slots claimed so far, published or about to be (the next slot to claim is `HEAD % RING`).
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
    // Non-zero: published (the helper waits for it). Allocations are never at 0 or 1.
    slot.addr.store(addr, Ordering::Release);
    helper.unpark();
}

/// The allocation `[addr, addr + len)` is being freed: take the ranges in it off the ring (it
/// and the grown parts of its reallocations) if the helper has not taken them yet. Takes no
/// lock and allocates nothing.
fn cancel(addr: usize, len: usize) {
    if len < MIN_BYTES || !STARTED.load(Ordering::Relaxed) {
        return;
    }
    let end = addr.saturating_add(len);
    for slot in &SLOTS {
        let queued = slot.addr.load(Ordering::Relaxed);
        if queued >= addr && queued < end {
            let _ =
                slot.addr
                    .compare_exchange(queued, CANCELLED, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
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
        // Freed since, or no guard lives any more (the command's work that wanted it is over).
        if addr != CANCELLED && ENABLED.load(Ordering::Acquire) > 0 {
            populate(addr, len);
        }
    }
}

/// The size of a memory page (`sysconf(_SC_PAGESIZE)`; 4 KiB where there is none).
pub fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        #[cfg(unix)]
        #[allow(unsafe_code)]
        // SAFETY: `sysconf` only reads a configuration value.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        #[cfg(not(unix))]
        let page = 4096;
        usize::try_from(page)
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// Fault in the whole pages of `[addr, addr + len)`, from the end down.
fn populate(addr: usize, len: usize) {
    let page = page_size();
    let start = addr.next_multiple_of(page);
    let end = addr.saturating_add(len) / page * page;
    let chunk = CHUNK.max(page);
    let mut hi = end;
    while hi > start {
        let lo = hi.saturating_sub(chunk).max(start);
        populate_range(lo, hi - lo);
        hi = lo;
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn populate_range(addr: usize, len: usize) {
    /// `MADV_POPULATE_WRITE` (Linux 5.14; not in every libc crate version).
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    // SAFETY: populating page tables neither reads nor changes the memory's contents. A range
    // freed since is usually still mapped by the allocator (then it becomes resident again);
    // an unmapped range fails with ENOMEM, a guard page or an older kernel with EINVAL: all
    // ignored. See the module docs for the one kind of mapping it would touch (shared files).
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
        cancel(ptr as usize, layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The old block's entries, for the block may move (if it stays, those not taken yet
        // are lost: a hint).
        cancel(ptr as usize, layout.size());
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() && new_size > layout.size() {
            // Only the grown part: the rest holds the old contents (kept or copied there).
            hand_over(p as usize + layout.size(), new_size - layout.size());
        }
        p
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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

    /// How many pages of `[addr, addr + len)` (whole pages only) are resident (`mincore`), and
    /// of how many.
    #[allow(unsafe_code)]
    fn resident(addr: usize, len: usize) -> (usize, usize) {
        let page = page_size();
        let start = addr.next_multiple_of(page);
        let end = (addr + len) / page * page;
        let mut vec = vec![0u8; (end - start) / page];
        // SAFETY: `vec` has a byte per page of the range; `mincore` only writes those.
        let rc =
            unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore");
        (vec.iter().filter(|&&b| b & 1 == 1).count(), vec.len())
    }

    /// Waits (up to 10 s) until every page of the range is resident.
    fn wait_resident(addr: usize, len: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (r, n) = resident(addr, len);
            if r == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {r} of {n} pages resident"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// An allocator whose every block is a fresh mapping (zero and not resident until touched),
    /// as a big block from mimalloc's fresh memory is; the system allocator may hand out memory
    /// it used before (glibc raises its mmap threshold after a free), which shows nothing.
    struct FreshMappings;

    // SAFETY: each block is a private anonymous mapping of at least the layout's size, aligned
    // to a page (every layout used here asks for at most that), unmapped by `dealloc`.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for FreshMappings {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            assert!(layout.align() <= page_size());
            // SAFETY: a new mapping; nothing else is affected.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    layout.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                p.cast()
            }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as `alloc`; a fresh mapping is zero (not written, so not resident).
            unsafe { self.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` is a mapping of `layout.size()` bytes made by `alloc`.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        }
    }

    /// One test for everything that depends on the global guard count (tests run at once).
    #[test]
    #[allow(unsafe_code)]
    fn only_large_allocations_made_while_enabled_are_made_resident_by_the_helper() {
        start();
        let a = Prefault(FreshMappings);
        let len = 8 << 20;
        let layout = Layout::from_size_align(len, 4096).unwrap();
        let fresh = |p: *mut u8| {
            let (r, n) = resident(p as usize, len);
            assert!(
                r < n / 2,
                "a fresh allocation already resident: the test shows nothing"
            );
        };
        // Not enabled: not handed over.
        // SAFETY: a valid layout; freed below with it.
        let off = unsafe { a.alloc(layout) };
        assert!(!off.is_null());
        fresh(off);
        std::thread::sleep(Duration::from_millis(200));
        let (r, n) = resident(off as usize, len);
        assert!(r < n / 2, "populated while not enabled: {r} of {n} pages");

        let on = enable();
        // SAFETY: as above.
        let p = unsafe { a.alloc(layout) };
        // (Not checked fresh here: the helper may have populated it already. `off`, allocated
        // the same way, was.)
        wait_resident(p as usize, len, "alloc");
        // Zeroed memory stays zero.
        // SAFETY: as above.
        let z = unsafe { a.alloc_zeroed(layout) };
        wait_resident(z as usize, len, "alloc_zeroed");
        // SAFETY: `z` is `len` bytes the allocator zeroed.
        assert!(unsafe { std::slice::from_raw_parts(z, len) }
            .iter()
            .all(|&b| b == 0));
        // A reallocation: the grown part, and the bytes before it kept.
        // SAFETY: `p` was allocated with `layout` and is written within it.
        unsafe { std::ptr::write_bytes(p, 7, len) };
        // SAFETY: `p` comes from this allocator with `layout`; the new size is not zero.
        let g = unsafe { a.realloc(p, layout, 2 * len) };
        assert!(!g.is_null());
        wait_resident(g as usize + len, len, "the grown part of a realloc");
        // SAFETY: the first `len` bytes of `g` are `p`'s, kept by `realloc`.
        assert!(unsafe { std::slice::from_raw_parts(g, len) }
            .iter()
            .all(|&b| b == 7));
        // Small allocations are not handed over (nothing to see: only that nothing breaks).
        // SAFETY: a valid layout, freed at once.
        unsafe {
            a.dealloc(
                a.alloc(Layout::from_size_align(64, 8).unwrap()),
                Layout::from_size_align(64, 8).unwrap(),
            )
        };
        drop(on);
        // SAFETY: each freed with the layout it was allocated with.
        unsafe {
            a.dealloc(off, layout);
            a.dealloc(z, layout);
            a.dealloc(g, Layout::from_size_align(2 * len, 4096).unwrap());
        }
    }

    #[test]
    fn a_freed_range_is_taken_off_the_ring() {
        let addr = 1 << 40;
        let slot = &SLOTS[RING - 1];
        // A slot as `hand_over` leaves it (the helper does not look at it: the ring's head and
        // tail are elsewhere).
        slot.addr.store(addr + 4096, Ordering::Release);
        start();
        cancel(addr, MIN_BYTES - 1);
        assert_eq!(
            slot.addr.load(Ordering::Acquire),
            addr + 4096,
            "too small to be queued"
        );
        cancel(addr, 2 * MIN_BYTES);
        assert_eq!(slot.addr.load(Ordering::Acquire), CANCELLED);
        slot.addr.store(0, Ordering::Release);
    }

    #[test]
    fn a_range_not_mapped_is_ignored() {
        // The lowest pages are never mapped (mmap_min_addr): the call fails quietly.
        populate(page_size(), 8 * page_size());
    }
}
