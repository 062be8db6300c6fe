// SPDX-License-Identifier: GPL-2.0

//! The bounce pool: a physically contiguous area shared with the host once
//! at initialisation, carved into page-sized slots.
//!
//! Allocation is lock-free: a bitmap of `AtomicU64` words, where a run of
//! slots is claimed word by word with compare-and-swap and rolled back if
//! another CPU got there first. Any CPU in any context (hard IRQ included)
//! may allocate and free; nothing sleeps and no lock is shared.

use core::sync::atomic::{AtomicU64, Ordering};

use super::abi::layout::PAGE_SIZE;

/// Marks an `orig` entry that describes no live bounce mapping.
const NO_ORIG: u64 = u64::MAX;

/// A bounce pool over caller-provided bookkeeping arrays.
pub struct Pool<'a> {
    base: u64,
    slots: u64,
    bitmap: &'a [AtomicU64],
    /// For each slot of a live allocation: the physical address of the
    /// original buffer's page it stands for, so that unmap and partial
    /// syncs can translate any bounce address back.
    orig: &'a [AtomicU64],
    /// Where the next search starts, to spread CPUs over the pool.
    hint: AtomicU64,
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
    /// Builds a pool of `orig.len()` page slots at physical `base`.
    ///
    /// `bitmap` needs one bit per slot; every word must start at zero.
    pub fn new(base: u64, bitmap: &'a [AtomicU64], orig: &'a [AtomicU64]) -> Option<Self> {
        let slots = orig.len() as u64;
        if base % PAGE_SIZE != 0 || (bitmap.len() as u64) * 64 < slots {
            return None;
        }
        for o in orig {
            o.store(NO_ORIG, Ordering::Relaxed);
        }
        Some(Pool {
            base,
            slots,
            bitmap,
            orig,
            hint: AtomicU64::new(0),
        })
    }

    /// Physical address of the pool.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Number of page slots.
    pub fn slots(&self) -> u64 {
        self.slots
    }

    /// Whether `[phys, phys + size)` lies inside the pool.
    pub fn contains(&self, phys: u64, size: u64) -> bool {
        let end = self.base + self.slots * PAGE_SIZE;
        phys >= self.base && phys.checked_add(size).is_some_and(|e| e <= end)
    }

    /// Physical address of slot `slot`.
    pub fn slot_phys(&self, slot: u64) -> u64 {
        self.base + slot * PAGE_SIZE
    }

    /// Slot index of the page holding `phys` (which must be in the pool).
    pub fn slot_of(&self, phys: u64) -> u64 {
        (phys - self.base) / PAGE_SIZE
    }

    /// Allocates `pages` contiguous slots for a buffer at `orig_phys`.
    pub fn alloc(&self, pages: u64, orig_phys: u64) -> Option<Slots> {
        if pages == 0 || pages > self.slots {
            return None;
        }
        let start = self.hint.load(Ordering::Relaxed) % self.slots;
        // Two passes over the pool at most: from the hint to the end, then
        // from the start.
        let mut first = start;
        let mut scanned = 0;
        while scanned < self.slots + pages {
            if first + pages > self.slots {
                scanned += self.slots - first;
                first = 0;
                continue;
            }
            match self.first_used(first, pages) {
                None => {
                    if self.claim(first, pages) {
                        self.hint.store(first + pages, Ordering::Relaxed);
                        let orig_page = orig_phys - orig_phys % PAGE_SIZE;
                        for i in 0..pages {
                            if let Some(o) = self.orig.get((first + i) as usize) {
                                o.store(orig_page + i * PAGE_SIZE, Ordering::Relaxed);
                            }
                        }
                        return Some(Slots { first, pages });
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
            || !matches!(slots.first.checked_add(slots.pages), Some(e) if e <= self.slots)
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
