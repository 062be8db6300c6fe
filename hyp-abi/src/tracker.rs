// SPDX-License-Identifier: GPL-2.0-only

//! The guest-side page tracker: per-page reference counts and the table.
//!
//! Two live DMA mappings can share a page, so a page's table entry must
//! always equal the union of the permissions of its live mappings. Each page
//! has one `AtomicU32` state word holding a read count, a write count and a
//! lock bit. The lock bit serialises the count update and the table store of
//! that one page, so that two CPUs changing the same page cannot store its
//! entry out of order; pages never wait for each other, there is no global
//! lock.
//!
//! The caller disables interrupts around every call (the bit lock is a
//! spinlock and must not be re-entered from an interrupt on the same CPU).
//! The tracker does not publish ring records: the caller appends one record
//! covering the changed span reported by the tracker, after the call.

use super::error::Error;
use super::layout::Perm;
use super::sync::{spin, AtomicU32, AtomicU8, Ordering};

/// Mask of the read-only mapping count in a page state word.
const READ_MASK: u32 = 0x7fff;
/// Shift of the read-write mapping count in a page state word.
const WRITE_SHIFT: u32 = 15;
/// Increment of the read-write mapping count.
const WRITE_ONE: u32 = 1 << WRITE_SHIFT;
/// Mask of the read-write mapping count in a page state word.
const WRITE_MASK: u32 = READ_MASK << WRITE_SHIFT;
/// The per-page lock bit.
const LOCK: u32 = 1 << 31;

/// Largest number of live mappings of one permission on one page.
pub const MAX_MAPPINGS: u32 = READ_MASK;

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

/// Computes the table entry for a state word.
fn entry_of(state: u32) -> u8 {
    // Branch-free: READ if any mapping, plus the write bit if a writable one.
    let any = u8::from(state & (READ_MASK | WRITE_MASK) != 0);
    let write = u8::from(state & WRITE_MASK != 0);
    any | (write << 1)
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

    /// Returns the count increment and count mask of a mapping permission,
    /// and the counts whose being all zero means the entry grants less.
    fn count_of(perm: Perm) -> Result<(u32, u32, u32), Error> {
        match perm {
            Perm::Read => Ok((1, READ_MASK, READ_MASK | WRITE_MASK)),
            Perm::ReadWrite => Ok((WRITE_ONE, WRITE_MASK, WRITE_MASK)),
            Perm::None => Err(Error::InvalidArgument),
        }
    }

    /// Adds a live mapping of `gfn` with `perm`; returns whether the table
    /// entry changed (the caller then names `gfn` in a ring record).
    pub fn map(&self, gfn: u64, perm: Perm) -> Result<bool, Error> {
        let counts = Self::count_of(perm)?;
        let (state, entry) = self.page(gfn)?;
        Self::map_page(state, entry, counts, perm)
    }

    /// Drops a live mapping of `gfn` made with `perm`; returns whether the
    /// table entry changed (the caller then names `gfn` in a ring record and
    /// issues `SYNC` before reusing the page).
    pub fn unmap(&self, gfn: u64, perm: Perm) -> Result<bool, Error> {
        let counts = Self::count_of(perm)?;
        let (state, entry) = self.page(gfn)?;
        Self::unmap_page(state, entry, counts)
    }

    #[inline]
    fn map_page(
        state: &AtomicU32,
        entry: &AtomicU8,
        (one, mask, covers): (u32, u32, u32),
        perm: Perm,
    ) -> Result<bool, Error> {
        let old = Self::lock(state);
        if old & mask == mask {
            // Release: unlock unchanged.
            state.store(old, Ordering::Release);
            return Err(Error::Overflow);
        }
        // The entry grows to `perm` exactly when no mapping granted it yet.
        let changed = old & covers == 0;
        if changed {
            // Relaxed: the Release store of the ring record's `seq` (or the
            // hypercall) orders this store before the hypervisor reads it.
            entry.store(perm.bits(), Ordering::Relaxed);
        }
        // Release: the next holder of the lock sees the count and the entry.
        state.store(old + one, Ordering::Release);
        Ok(changed)
    }

    #[inline]
    fn unmap_page(
        state: &AtomicU32,
        entry: &AtomicU8,
        (one, mask, covers): (u32, u32, u32),
    ) -> Result<bool, Error> {
        let old = Self::lock(state);
        if old & mask == 0 {
            state.store(old, Ordering::Release);
            return Err(Error::Underflow);
        }
        let new = old - one;
        // The entry shrinks exactly when the last mapping granting `perm` goes.
        let changed = new & covers == 0;
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
        match Self::count_of(perm) {
            Ok(counts) => self.range(gfn, nr, |s, e| Self::map_page(s, e, counts, perm)),
            Err(e) => (Progress::default(), Err(e)),
        }
    }

    /// Unmaps `nr` pages from `gfn`, stopping at the first error.
    pub fn unmap_range(&self, gfn: u64, nr: u32, perm: Perm) -> (Progress, Result<(), Error>) {
        match Self::count_of(perm) {
            Ok(counts) => self.range(gfn, nr, |s, e| Self::unmap_page(s, e, counts)),
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
