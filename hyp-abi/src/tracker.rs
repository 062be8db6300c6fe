// SPDX-License-Identifier: GPL-2.0-only

//! The guest-side page tracker: per-page reference counts and the table.
//!
//! Two live DMA mappings can share a page, so a page's table entry must
//! always equal the union of the permissions of its live mappings. Each page
//! has one `AtomicU32` state word holding a count of its read-only,
//! write-only and read-write mappings (10 bits each) and a lock bit. The
//! lock bit serialises the count update and the table store of that one
//! page, so that two CPUs changing the same page cannot store its entry
//! out of order; pages never wait for each other, there is no global lock.
//!
//! The caller disables interrupts around every call (the bit lock is a
//! spinlock and must not be re-entered from an interrupt on the same CPU).
//! The tracker does not publish ring records: the caller appends one record
//! covering the changed span reported by the tracker, after the call.

use super::error::Error;
use super::layout::Perm;
use super::sync::{spin, AtomicU32, AtomicU8, Ordering};

/// Bits of each of the three mapping counts in a page state word: the
/// read-only, write-only and read-write mappings, from bit 0 up.
const COUNT_BITS: u32 = 10;
/// Mask of one count (at bit 0).
const COUNT_MASK: u32 = (1 << COUNT_BITS) - 1;
/// The per-page lock bit.
const LOCK: u32 = 1 << 31;

/// Largest number of live mappings of one permission on one page.
pub const MAX_MAPPINGS: u32 = COUNT_MASK;

/// Page tracker over guest-private state words and the shared table.
///
/// `state[gfn]` and `table[gfn]` describe frame `gfn`.
#[derive(Clone, Copy)]
pub struct PageTracker<'a> {
    state: &'a [AtomicU32],
    table: &'a [AtomicU8],
}

/// Progress of a range operation: pages done and the span whose entries
/// changed, which the caller names in one ring record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Number of pages processed from the start of the range.
    pub done: u32,
    /// First frame whose entry changed (valid if `changed_end > changed_start`).
    pub changed_start: u64,
    /// One past the last frame whose entry changed.
    pub changed_end: u64,
}

impl Progress {
    /// Returns the `(gfn, nr_pages)` record to publish, if any entry changed.
    pub fn record(&self) -> Option<(u64, u32)> {
        let nr = self.changed_end.checked_sub(self.changed_start)?;
        if nr == 0 {
            return None;
        }
        u32::try_from(nr).ok().map(|nr| (self.changed_start, nr))
    }

    fn note(&mut self, gfn: u64, changed: bool) {
        if changed {
            if self.changed_end == self.changed_start {
                self.changed_start = gfn;
            }
            self.changed_end = gfn + 1;
        }
    }
}

/// Computes the table entry for a state word: the union of its live
/// mappings' permissions.
fn entry_of(state: u32) -> u8 {
    let count = |shift: u32| (state >> shift) & COUNT_MASK != 0;
    let (read, write, both) = (count(0), count(COUNT_BITS), count(2 * COUNT_BITS));
    u8::from(read || both) | (u8::from(write || both) << 1)
}

impl<'a> PageTracker<'a> {
    /// Builds a tracker; both slices cover frames `0..len` and must match.
    pub fn new(state: &'a [AtomicU32], table: &'a [AtomicU8]) -> Result<Self, Error> {
        if state.len() != table.len() {
            return Err(Error::InvalidArgument);
        }
        Ok(PageTracker { state, table })
    }

    /// Returns the number of frames tracked.
    pub fn frames(&self) -> u64 {
        self.state.len() as u64
    }

    /// Returns the table entry of `gfn` as the guest last stored it.
    pub fn entry(&self, gfn: u64) -> Option<Perm> {
        let entry = self.table.get(usize::try_from(gfn).ok()?)?;
        Perm::from_entry(entry.load(Ordering::Relaxed))
    }

    /// Returns the state word and table entry of `gfn`.
    fn page(&self, gfn: u64) -> Result<(&'a AtomicU32, &'a AtomicU8), Error> {
        let index = usize::try_from(gfn).map_err(|_| Error::OutOfRange)?;
        match (self.state.get(index), self.table.get(index)) {
            (Some(state), Some(entry)) => Ok((state, entry)),
            _ => Err(Error::OutOfRange),
        }
    }

    /// Takes the bit lock of a page and returns its state word (unlocked
    /// value). The caller releases it by storing the new state.
    fn lock(state: &AtomicU32) -> u32 {
        loop {
            let old = state.load(Ordering::Relaxed);
            if old & LOCK == 0
                && state
                    .compare_exchange_weak(old, old | LOCK, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return old;
            }
            spin();
        }
    }

    /// Returns the shift of the count of mappings with `perm`.
    fn shift_of(perm: Perm) -> Result<u32, Error> {
        match perm {
            Perm::Read => Ok(0),
            Perm::Write => Ok(COUNT_BITS),
            Perm::ReadWrite => Ok(2 * COUNT_BITS),
            Perm::None => Err(Error::InvalidArgument),
        }
    }

    /// Adds a live mapping of `gfn` with `perm`; returns whether the table
    /// entry changed (the caller then names `gfn` in a ring record).
    pub fn map(&self, gfn: u64, perm: Perm) -> Result<bool, Error> {
        let shift = Self::shift_of(perm)?;
        let (state, entry) = self.page(gfn)?;
        Self::map_page(state, entry, shift)
    }

    /// Drops a live mapping of `gfn` made with `perm`; returns whether the
    /// table entry changed (the caller then names `gfn` in a ring record and
    /// issues `SYNC` before reusing the page).
    pub fn unmap(&self, gfn: u64, perm: Perm) -> Result<bool, Error> {
        let shift = Self::shift_of(perm)?;
        let (state, entry) = self.page(gfn)?;
        Self::unmap_page(state, entry, shift)
    }

    #[inline]
    fn map_page(state: &AtomicU32, entry: &AtomicU8, shift: u32) -> Result<bool, Error> {
        let old = Self::lock(state);
        if (old >> shift) & COUNT_MASK == COUNT_MASK {
            // Release: unlock unchanged.
            state.store(old, Ordering::Release);
            return Err(Error::Overflow);
        }
        let new = old + (1 << shift);
        // The entry grows exactly when no live mapping granted this yet.
        let changed = entry_of(new) != entry_of(old);
        if changed {
            // Relaxed: the Release store of the ring record's `seq` (or the
            // hypercall) orders this store before the hypervisor reads it.
            entry.store(entry_of(new), Ordering::Relaxed);
        }
        // Release: the next holder of the lock sees the count and the entry.
        state.store(new, Ordering::Release);
        Ok(changed)
    }

    #[inline]
    fn unmap_page(state: &AtomicU32, entry: &AtomicU8, shift: u32) -> Result<bool, Error> {
        let old = Self::lock(state);
        if (old >> shift) & COUNT_MASK == 0 {
            state.store(old, Ordering::Release);
            return Err(Error::Underflow);
        }
        let new = old - (1 << shift);
        // The entry shrinks exactly when the last mapping granting part of
        // it goes.
        let changed = entry_of(new) != entry_of(old);
        if changed {
            entry.store(entry_of(new), Ordering::Relaxed);
        }
        state.store(new, Ordering::Release);
        Ok(changed)
    }

    /// Maps `nr` pages from `gfn`, stopping at the first error.
    ///
    /// The pages in `progress.done` stay mapped even on error (partial
    /// progress is part of the result): the caller publishes
    /// `progress.record()`, then unmaps those pages to undo them.
    pub fn map_range(&self, gfn: u64, nr: u32, perm: Perm) -> (Progress, Result<(), Error>) {
        match Self::shift_of(perm) {
            Ok(shift) => self.range(gfn, nr, |s, e| Self::map_page(s, e, shift)),
            Err(e) => (Progress::default(), Err(e)),
        }
    }

    /// Unmaps `nr` pages from `gfn`, stopping at the first error.
    pub fn unmap_range(&self, gfn: u64, nr: u32, perm: Perm) -> (Progress, Result<(), Error>) {
        match Self::shift_of(perm) {
            Ok(shift) => self.range(gfn, nr, |s, e| Self::unmap_page(s, e, shift)),
            Err(e) => (Progress::default(), Err(e)),
        }
    }

    #[inline]
    fn range(
        &self,
        gfn: u64,
        nr: u32,
        op: impl Fn(&AtomicU32, &AtomicU8) -> Result<bool, Error>,
    ) -> (Progress, Result<(), Error>) {
        let mut progress = Progress::default();
        // One bounds check for the whole range, none per page.
        let pages = usize::try_from(gfn).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(nr).ok()?)?;
            Some((self.state.get(start..end)?, self.table.get(start..end)?))
        });
        let Some((states, entries)) = pages else {
            return (progress, Err(Error::OutOfRange));
        };
        for (state, entry) in states.iter().zip(entries) {
            match op(state, entry) {
                Ok(changed) => progress.note(gfn + u64::from(progress.done), changed),
                Err(e) => return (progress, Err(e)),
            }
            progress.done += 1;
        }
        (progress, Ok(()))
    }
}
