// SPDX-License-Identifier: GPL-2.0

//! The bounce pool: page-sized slots in chunks of guest memory shared
//! with the host. The first chunk is the pool registered at `INIT`; more
//! are shared with `SHARE` while the guest runs (`Engine::grow_pool`), up
//! to a number fixed at initialisation, so that one device's long-lived
//! buffers (a network card's receive ring) cannot starve the others.
//!
//! Slots are numbered across chunks: slot `s` is page `s % chunk_slots` of
//! chunk `s / chunk_slots`. Chunks are not adjacent in guest-physical
//! memory, so an allocation never spans two.
//!
//! Allocation is lock-free: a bitmap of `AtomicU64` words, where a run of
//! slots is claimed word by word with compare-and-swap and rolled back if
//! another CPU got there first. Any CPU in any context (hard IRQ included)
//! may allocate and free; nothing sleeps and no lock is shared. Growing
//! publishes a chunk's base before the chunk count that makes it live.

use core::num::NonZeroU64;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::abi::layout::PAGE_SIZE;

/// Marks an `orig` entry that describes no live bounce mapping.
const NO_ORIG: u64 = u64::MAX;

/// A bounce pool over caller-provided bookkeeping arrays.
pub struct Pool<'a> {
    /// Slots per chunk.
    chunk_slots: u64,
    /// Physical address of chunk 0.
    first: u64,
    /// Physical addresses of chunks 1, 2, ...: an entry is valid once
    /// `chunks` counts its chunk.
    more: &'a [AtomicU64],
    /// Live chunks (at least 1).
    chunks: AtomicU64,
    /// Held while a chunk is added: one grower at a time.
    growing: AtomicBool,
    bitmap: &'a [AtomicU64],
    /// For each slot of a live allocation: the physical address of the
    /// original buffer's page it stands for, so that unmap and partial
    /// syncs can translate any bounce address back.
    orig: &'a [AtomicU64],
    /// Where the next search starts, to spread CPUs over the pool.
    hint: AtomicU64,
}

/// Pages per chunk of a growable pool: 1 MiB, an order-8 allocation, which
/// a guest whose memory is fragmented can still find.
pub const CHUNK_PAGES: u64 = 256;

/// The most chunks a pool may have, so that finding the chunk of a
/// bounce address (every unmap does) stays a short scan.
pub const MAX_CHUNKS: u64 = 64;

/// How a pool is laid out, from the boot parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSize {
    /// Pages per chunk.
    pub chunk_pages: u64,
    /// Chunks shared at initialisation (the first at `INIT`).
    pub initial_chunks: u64,
    /// Chunks the pool may grow to.
    pub max_chunks: u64,
}

impl PoolSize {
    /// The layout for `pviommu.pool_kib` and `pviommu.pool_max_kib`:
    /// chunks of [`CHUNK_PAGES`] (or one chunk of the whole initial pool,
    /// if smaller), the initial size rounded up to whole chunks, and a
    /// maximum below the initial size taken as "never grow". `None` when
    /// the initial pool needs more than [`MAX_CHUNKS`] chunks.
    pub fn new(pool_kib: u64, pool_max_kib: u64) -> Option<Self> {
        let pages = core::cmp::max(1, pool_kib / 4);
        let chunk_pages = core::cmp::min(CHUNK_PAGES, pages);
        let initial_chunks = pages.div_ceil(chunk_pages);
        if initial_chunks > MAX_CHUNKS {
            return None;
        }
        let wanted = (pool_max_kib / 4) / chunk_pages;
        let max_chunks = wanted.clamp(initial_chunks, MAX_CHUNKS);
        Some(PoolSize {
            chunk_pages,
            initial_chunks,
            max_chunks,
        })
    }

    /// Page slots of the pool at its maximum.
    pub fn capacity(&self) -> u64 {
        self.chunk_pages * self.max_chunks
    }

    /// [`max_mapping_bytes`] of a pool of this layout.
    pub fn max_mapping_bytes(&self) -> u64 {
        max_mapping_bytes(self.chunk_pages, self.capacity())
    }
}

/// Largest buffer one mapping may cover, in bytes, for a pool of
/// `chunk_slots` pages per chunk and `capacity` pages at most: a bounced
/// buffer must fit in one chunk, and a mapping of one segment never needs
/// more than half a chunk or an eighth of the whole pool, which keeps
/// several I/Os in flight. At least one page.
pub fn max_mapping_bytes(chunk_slots: u64, capacity: u64) -> u64 {
    let pages = core::cmp::min(chunk_slots / 2, capacity / 8);
    core::cmp::max(PAGE_SIZE, pages * PAGE_SIZE)
}

/// One allocation: `pages` slots from slot `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slots {
    /// Index of the first slot.
    pub first: u64,
    /// Number of slots.
    pub pages: u64,
}

impl<'a> Pool<'a> {
    /// Builds a pool of one chunk of `orig.len()` page slots at physical
    /// `base`, which never grows.
    ///
    /// `bitmap` needs one bit per slot; every word must start at zero.
    pub fn new(base: u64, bitmap: &'a [AtomicU64], orig: &'a [AtomicU64]) -> Option<Self> {
        Self::growable(base, orig.len() as u64, &[], bitmap, orig)
    }

    /// Builds a pool whose first chunk of `chunk_slots` page slots is at
    /// physical `base`, and which may grow by one chunk per entry of
    /// `more` ([`Pool::grow`]).
    ///
    /// `orig` needs one entry and `bitmap` one bit per slot of every
    /// chunk the pool may have; every bitmap word must start at zero.
    pub fn growable(
        base: u64,
        chunk_slots: u64,
        more: &'a [AtomicU64],
        bitmap: &'a [AtomicU64],
        orig: &'a [AtomicU64],
    ) -> Option<Self> {
        let capacity = chunk_slots.checked_mul(more.len() as u64 + 1)?;
        if base % PAGE_SIZE != 0
            || chunk_slots == 0
            || (orig.len() as u64) < capacity
            || (bitmap.len() as u64).checked_mul(64)? < capacity
        {
            return None;
        }
        for o in orig {
            o.store(NO_ORIG, Ordering::Relaxed);
        }
        Some(Pool {
            chunk_slots,
            first: base,
            more,
            chunks: AtomicU64::new(1),
            growing: AtomicBool::new(false),
            bitmap,
            orig,
            hint: AtomicU64::new(0),
        })
    }

    /// Adds a chunk of [`Pool::chunk_slots`] pages at physical `base`,
    /// which the caller has shared with the host. False (and nothing
    /// added) when the pool is at its maximum, `base` is not page
    /// aligned, or another CPU is adding a chunk at the same time.
    pub fn grow(&self, base: u64) -> bool {
        if base % PAGE_SIZE != 0 || self.growing.swap(true, Ordering::Acquire) {
            return false;
        }
        let n = self.chunks.load(Ordering::Relaxed);
        let added = match usize::try_from(n - 1).ok().and_then(|i| self.more.get(i)) {
            Some(slot) => {
                slot.store(base, Ordering::Relaxed);
                // Release: the base is visible before the count that
                // makes the chunk live (`chunk_base` loads with Acquire).
                self.chunks.store(n + 1, Ordering::Release);
                true
            }
            None => false,
        };
        self.growing.store(false, Ordering::Release);
        added
    }

    /// Physical address of chunk 0 (the pool registered at `INIT`).
    pub fn base(&self) -> u64 {
        self.first
    }

    /// Slots per chunk.
    pub fn chunk_slots(&self) -> u64 {
        self.chunk_slots
    }

    /// Live chunks.
    pub fn chunks(&self) -> u64 {
        self.chunks.load(Ordering::Acquire)
    }

    /// The most chunks the pool may have.
    pub fn max_chunks(&self) -> u64 {
        self.more.len() as u64 + 1
    }

    /// Number of live page slots.
    pub fn slots(&self) -> u64 {
        self.chunks() * self.chunk_slots
    }

    /// Number of page slots the pool has once grown to its maximum.
    pub fn capacity(&self) -> u64 {
        self.max_chunks() * self.chunk_slots
    }

    /// Physical address of chunk `c`, if it is live.
    fn chunk_base(&self, c: u64) -> Option<u64> {
        if c >= self.chunks() {
            return None;
        }
        match c {
            0 => Some(self.first),
            _ => Some(
                self.more
                    .get(usize::try_from(c - 1).ok()?)?
                    .load(Ordering::Relaxed),
            ),
        }
    }

    /// The live chunk holding `phys`, and that chunk's base.
    fn chunk_of(&self, phys: u64) -> Option<(u64, u64)> {
        let bytes = self.chunk_slots * PAGE_SIZE;
        (0..self.chunks()).find_map(|c| {
            let base = self.chunk_base(c)?;
            (phys >= base && phys - base < bytes).then_some((c, base))
        })
    }

    /// Whether `[phys, phys + size)` lies inside one chunk of the pool.
    pub fn contains(&self, phys: u64, size: u64) -> bool {
        let Some((_, base)) = self.chunk_of(phys) else {
            return false;
        };
        let end = base + self.chunk_slots * PAGE_SIZE;
        phys.checked_add(size).is_some_and(|e| e <= end)
    }

    /// Physical address of slot `slot` (which must be live).
    pub fn slot_phys(&self, slot: u64) -> u64 {
        let base = self
            .chunk_base(slot / self.chunk_slots)
            .unwrap_or(self.first);
        base + (slot % self.chunk_slots) * PAGE_SIZE
    }

    /// Slot index of the page holding `phys`; [`Pool::capacity`] (no
    /// slot, which [`Pool::free`] refuses) when `phys` is not in the pool.
    pub fn slot_of(&self, phys: u64) -> u64 {
        match self.chunk_of(phys) {
            Some((c, base)) => c * self.chunk_slots + (phys - base) / PAGE_SIZE,
            None => self.capacity(),
        }
    }

    /// Allocates `pages` contiguous slots (within one chunk) for a buffer
    /// at `orig_phys`.
    pub fn alloc(&self, pages: u64, orig_phys: u64) -> Option<Slots> {
        if pages == 0 || pages > self.chunk_slots {
            return None;
        }
        // Non-zero by construction; as `NonZeroU64` the divisions below
        // have no panic path (this runs in any context, hard IRQ included).
        let chunk_slots = NonZeroU64::new(self.chunk_slots)?;
        let chunks = NonZeroU64::new(self.chunks())?;
        let start = self.hint.load(Ordering::Relaxed) % chunks.checked_mul(chunk_slots)?;
        let start_chunk = start / chunk_slots;
        // Every live chunk once, from the hint's.
        let first = (0..chunks.get()).find_map(|k| {
            let c = (start_chunk + k) % chunks;
            let lo = c * self.chunk_slots;
            let from = if k == 0 { start } else { lo };
            self.alloc_in(lo, lo + self.chunk_slots, from, pages)
        })?;
        self.hint.store(first + pages, Ordering::Relaxed);
        let orig_page = orig_phys - orig_phys % PAGE_SIZE;
        for i in 0..pages {
            if let Some(o) = self.orig.get((first + i) as usize) {
                o.store(orig_page + i * PAGE_SIZE, Ordering::Relaxed);
            }
        }
        Some(Slots { first, pages })
    }

    /// Claims `pages` free slots in `[lo, hi)`, searching from `start`
    /// to the end, then from `lo`.
    fn alloc_in(&self, lo: u64, hi: u64, start: u64, pages: u64) -> Option<u64> {
        let mut first = start;
        let mut scanned = 0;
        while scanned < (hi - lo) + pages {
            if first + pages > hi {
                scanned += hi - first;
                first = lo;
                continue;
            }
            match self.first_used(first, pages) {
                None => {
                    if self.claim(first, pages) {
                        return Some(first);
                    }
                    // Lost a race: look again just after.
                    first += 1;
                    scanned += 1;
                }
                Some(used) => {
                    scanned += used + 1 - first;
                    first = used + 1;
                }
            }
        }
        None
    }

    /// The original buffer's physical address that bounce address `phys`
    /// stands for, if `phys` is in a live allocation.
    pub fn orig_of(&self, phys: u64) -> Option<u64> {
        if !self.contains(phys, 1) {
            return None;
        }
        let o = self
            .orig
            .get(self.slot_of(phys) as usize)?
            .load(Ordering::Relaxed);
        (o != NO_ORIG).then_some(o + phys % PAGE_SIZE)
    }

    /// Frees an allocation. Returns false (and frees nothing) if any of its
    /// slots was not allocated: a double or wild free by a caller.
    pub fn free(&self, slots: Slots) -> bool {
        if slots.pages == 0
            // `matches!` suits both the kernel's MSRV and this crate's.
            || !matches!(slots.first.checked_add(slots.pages), Some(e) if e <= self.slots())
            // No allocation spans two chunks.
            || slots.first / self.chunk_slots != (slots.first + slots.pages - 1) / self.chunk_slots
        {
            return false;
        }
        if !self.all_used(slots.first, slots.pages) {
            return false;
        }
        for i in 0..slots.pages {
            if let Some(o) = self.orig.get((slots.first + i) as usize) {
                o.store(NO_ORIG, Ordering::Relaxed);
            }
        }
        self.release(slots.first, slots.pages);
        true
    }

    /// Number of slots in use (a snapshot, for counters).
    pub fn used(&self) -> u64 {
        self.bitmap
            .iter()
            .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
            .sum()
    }

    /// Calls `f(word_index, mask)` for each bitmap word `[first, first +
    /// pages)` touches, stopping early when `f` returns false.
    fn for_words(first: u64, pages: u64, mut f: impl FnMut(usize, u64) -> bool) -> bool {
        let end = first + pages;
        let mut bit = first;
        while bit < end {
            let word = bit / 64;
            let lo = bit % 64;
            let hi = core::cmp::min(64, end - word * 64);
            let mask = if hi - lo == 64 {
                u64::MAX
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            if !f(word as usize, mask) {
                return false;
            }
            bit = (word + 1) * 64;
        }
        true
    }

    /// The last used slot in `[first, first + pages)`, if any.
    fn first_used(&self, first: u64, pages: u64) -> Option<u64> {
        let mut found = None;
        Self::for_words(first, pages, |w, mask| {
            let used = self
                .bitmap
                .get(w)
                .map_or(mask, |x| x.load(Ordering::Relaxed))
                & mask;
            if used != 0 {
                found = Some(w as u64 * 64 + 63 - u64::from(used.leading_zeros()));
                return false;
            }
            true
        });
        found
    }

    fn all_used(&self, first: u64, pages: u64) -> bool {
        Self::for_words(first, pages, |w, mask| {
            self.bitmap
                .get(w)
                .is_some_and(|x| x.load(Ordering::Relaxed) & mask == mask)
        })
    }

    /// Claims every slot of the run or none.
    fn claim(&self, first: u64, pages: u64) -> bool {
        let mut claimed_upto = first;
        let ok = Self::for_words(first, pages, |w, mask| {
            let Some(word) = self.bitmap.get(w) else {
                return false;
            };
            // Acquire pairs with the Release in `release`: the previous
            // user's copies from these slots are complete.
            let mut cur = word.load(Ordering::Relaxed);
            loop {
                if cur & mask != 0 {
                    return false;
                }
                match word.compare_exchange_weak(
                    cur,
                    cur | mask,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
            claimed_upto = core::cmp::min(first + pages, (w as u64 + 1) * 64);
            true
        });
        if !ok && claimed_upto > first {
            self.release(first, claimed_upto - first);
        }
        ok
    }

    fn release(&self, first: u64, pages: u64) {
        Self::for_words(first, pages, |w, mask| {
            if let Some(word) = self.bitmap.get(w) {
                word.fetch_and(!mask, Ordering::Release);
            }
            true
        });
    }
}
