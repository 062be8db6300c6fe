// SPDX-License-Identifier: GPL-2.0

//! The map/unmap engine: what each DMA API operation does, in every mode.
//!
//! - `share` mode, page-owning buffers: the page tracker updates the table
//!   (union of live permissions, per-page reference counts) and the range
//!   is appended to the ring. No exit on map. Unmap clears the entries,
//!   appends them, and the caller's whole unmap call ends with one `SYNC`
//!   (see [`Batch`]).
//! - Sub-page buffers, buffers below the threshold and `bounce` mode: a
//!   copy through the bounce pool, which the hypervisor shared at `INIT`.
//! - `sync` mode: a `SHARE` hypercall at map and an `UNSHARE` at unmap.
//!
//! The caller (the kernel's unsafe layer) runs every operation with local
//! interrupts disabled; nothing here sleeps or takes a lock.
//!
//! Failure policy: an unshare that the hypervisor fails, refuses or does
//! not confirm marks the engine broken: the pages stay accounted as shared
//! (`pages_leaked`), and every later map fails, so a device cannot go on
//! using memory the guest can no longer protect.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::abi::call::{Func, NR_ARGS};
use super::abi::check::{check_progress, check_sync, SyncResult};
use super::abi::error::{Error, EINVAL, EIO, ENOMEM, ETIMEDOUT};
use super::abi::layout::{Perm, PAGE_SHIFT, PAGE_SIZE};
use super::abi::ring::Producer;
use super::abi::tracker::PageTracker;
use super::mailbox::{RawResult, TransportError};
use super::policy::{pages_spanned, route, Dir, Mode, Route};
use super::pool::{Pool, Slots};
use super::stats::Stats;

/// Issues hypercalls (the mailbox, SMCCC, or a mock in tests).
pub trait Hypercalls {
    /// One call; the result is unchecked.
    fn call(&self, func: Func, args: [u64; NR_ARGS]) -> Result<RawResult, TransportError>;

    /// A pause while waiting for another CPU (a full ring whose consumer
    /// is held back by a reservation another CPU has not published yet).
    fn relax(&self) {
        core::hint::spin_loop();
    }
}

/// How many times a full ring is waited on before the mapping fails. A
/// full ring is normally emptied by one `SYNC`; it stays full only while
/// another CPU holds an unpublished reservation (its vCPU descheduled by
/// the host), so the engine waits, draining every 64 tries.
const RING_FULL_TRIES: u32 = 1 << 20;

/// Copies between guest-physical ranges (for bounce buffers).
pub trait Copier {
    /// Copies `len` bytes from physical `src` to physical `dst`.
    fn copy(&self, dst: u64, src: u64, len: u64);
}

/// Why a DMA operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// An earlier unshare failed: the engine refuses new mappings.
    Broken,
    /// The bounce pool has no room.
    PoolFull,
    /// The buffer is outside the table or otherwise invalid.
    Invalid,
    /// The ABI layer reported an error (hypervisor status included).
    Abi(Error),
    /// The hypervisor did not answer.
    Transport(TransportError),
}

impl DmaError {
    /// The errno for this error.
    pub fn to_errno(self) -> i32 {
        match self {
            DmaError::Broken | DmaError::Transport(TransportError::BadRegion) => -EIO,
            DmaError::PoolFull => -ENOMEM,
            DmaError::Invalid => -EINVAL,
            DmaError::Abi(e) => e.to_errno(),
            DmaError::Transport(TransportError::Timeout) => -ETIMEDOUT,
        }
    }
}

/// Settings fixed at initialisation (the boot parameters).
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// `pviommu.mode`.
    pub mode: Mode,
    /// `pviommu.strict`: one `SYNC` per unmap call.
    pub strict: bool,
    /// `pviommu.lazy_max_pages`: in lazy mode, sync at this many pending.
    pub lazy_max_pages: u64,
    /// `pviommu.bounce_threshold`, bytes.
    pub bounce_threshold: u64,
}

/// Pages an unmap call cleared and not yet synced. Every unmap operation
/// of one DMA API call adds to the same batch; [`Engine::finish`] then
/// issues the single `SYNC` for the call.
#[derive(Default, Debug)]
#[must_use = "a batch must be finished: that is the invalidation"]
pub struct Batch {
    pending: u64,
}

impl Batch {
    /// Pages cleared and not yet synced.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// A batch that already holds `pending` pages, for a caller that keeps
    /// the count across several DMA API calls (`dma_unmap_batch_begin`).
    pub fn with_pending(pending: u64) -> Batch {
        Batch { pending }
    }
}

/// The engine of one pviommu instance.
pub struct Engine<'a, H: Hypercalls, C: Copier> {
    cfg: Config,
    tracker: PageTracker<'a>,
    ring: Producer<'a>,
    pool: Pool<'a>,
    hyp: H,
    copier: C,
    stats: &'a Stats,
    broken: AtomicBool,
    lazy_pending: AtomicU64,
}

impl<'a, H: Hypercalls, C: Copier> Engine<'a, H, C> {
    /// Builds the engine over initialised shared structures.
    pub fn new(
        cfg: Config,
        tracker: PageTracker<'a>,
        ring: Producer<'a>,
        pool: Pool<'a>,
        hyp: H,
        copier: C,
        stats: &'a Stats,
    ) -> Self {
        Engine {
            cfg,
            tracker,
            ring,
            pool,
            hyp,
            copier,
            stats,
            broken: AtomicBool::new(false),
            lazy_pending: AtomicU64::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The hypercall transport.
    pub fn hypercalls(&self) -> &H {
        &self.hyp
    }

    /// The bounce pool.
    pub fn pool(&self) -> &Pool<'a> {
        &self.pool
    }

    /// Whether an unshare failed and the engine refuses mappings.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// Largest buffer one mapping may cover: a bounced buffer must fit in
    /// the pool, and a mapping of one segment never needs more than an
    /// eighth of it, which keeps several I/Os in flight.
    pub fn max_mapping_size(&self) -> u64 {
        core::cmp::max(PAGE_SIZE, self.pool.slots() / 8 * PAGE_SIZE)
    }

    /// Maps `[phys, phys + size)` for a device; returns the DMA address.
    ///
    /// `copy` is false for `DMA_ATTR_SKIP_CPU_SYNC`.
    pub fn map(&self, phys: u64, size: u64, dir: Dir, copy: bool) -> Result<u64, DmaError> {
        let result = self.map_inner(phys, size, dir, copy);
        match result {
            Ok(_) => Stats::inc(&self.stats.maps),
            Err(DmaError::PoolFull) => {
                Stats::inc(&self.stats.pool_exhausted);
                Stats::inc(&self.stats.map_errors);
            }
            Err(_) => Stats::inc(&self.stats.map_errors),
        }
        result
    }

    fn map_inner(&self, phys: u64, size: u64, dir: Dir, copy: bool) -> Result<u64, DmaError> {
        if self.is_broken() {
            return Err(DmaError::Broken);
        }
        if size == 0 || phys.checked_add(size).is_none() {
            return Err(DmaError::Invalid);
        }
        match route(self.cfg.mode, phys, size, self.cfg.bounce_threshold) {
            Route::InPlace => {
                let (gfn, nr) = frames(phys, size)?;
                match self.cfg.mode {
                    Mode::Sync => self.share_direct(gfn, nr, dir.perm())?,
                    _ => self.share_table(gfn, nr, dir.perm())?,
                }
                Ok(phys)
            }
            Route::Bounce => self.bounce_map(phys, size, dir, copy),
        }
    }

    /// Unmaps a mapping; the invalidation happens in [`Engine::finish`].
    pub fn unmap(&self, dma: u64, size: u64, dir: Dir, copy: bool, batch: &mut Batch) {
        Stats::inc(&self.stats.unmaps);
        if size == 0 {
            return;
        }
        if self.pool.contains(dma, size) {
            self.bounce_unmap(dma, size, dir, copy);
            return;
        }
        let Ok((gfn, nr)) = frames(dma, size) else {
            Stats::inc(&self.stats.unshare_errors);
            return;
        };
        match self.cfg.mode {
            Mode::Sync => {
                if self.unshare_direct(gfn, nr).is_err() {
                    self.mark_broken(u64::from(nr));
                }
            }
            _ => batch.pending += self.unshare_table(gfn, nr, dir.perm()),
        }
    }

    /// Ends an unmap call: in strict mode one `SYNC` for everything the
    /// call cleared; in lazy mode only once enough is pending.
    pub fn finish(&self, batch: Batch) -> Result<(), DmaError> {
        if batch.pending == 0 {
            return Ok(());
        }
        if !self.cfg.strict {
            let pending = self
                .lazy_pending
                .fetch_add(batch.pending, Ordering::Relaxed)
                + batch.pending;
            if pending < self.cfg.lazy_max_pages {
                return Ok(());
            }
            self.lazy_pending.store(0, Ordering::Relaxed);
            return self.sync(pending).map(|_| ());
        }
        self.sync(batch.pending).map(|_| ())
    }

    /// Shares freshly allocated coherent memory (whole pages, read-write).
    pub fn map_coherent(&self, phys: u64, size: u64) -> Result<(), DmaError> {
        if self.is_broken() {
            return Err(DmaError::Broken);
        }
        let (gfn, nr) = frames(phys, size)?;
        let r = match self.cfg.mode {
            Mode::Sync => self.share_direct(gfn, nr, Perm::ReadWrite),
            _ => self.share_table(gfn, nr, Perm::ReadWrite),
        };
        match r {
            Ok(()) => Stats::inc(&self.stats.maps),
            Err(_) => Stats::inc(&self.stats.map_errors),
        }
        r
    }

    /// Unshares coherent memory before it is freed. On error the caller
    /// must leak the memory: the host may still reach it.
    pub fn unmap_coherent(&self, phys: u64, size: u64) -> Result<(), DmaError> {
        Stats::inc(&self.stats.unmaps);
        let (gfn, nr) = frames(phys, size)?;
        match self.cfg.mode {
            Mode::Sync => self
                .unshare_direct(gfn, nr)
                .inspect_err(|_| self.mark_broken(u64::from(nr))),
            _ => {
                let pending = self.unshare_table(gfn, nr, Perm::ReadWrite);
                // Memory goes back to the allocator: always strict.
                self.sync(pending).map(|_| ())
            }
        }
    }

    /// Copies device writes back to the CPU's buffer (`sync_*_for_cpu`).
    pub fn sync_for_cpu(&self, dma: u64, size: u64, dir: Dir) {
        if dir.from_device() && self.pool.contains(dma, size) {
            if let Some(orig) = self.pool.orig_of(dma) {
                self.copy(orig, dma, size);
            }
        }
    }

    /// Copies CPU writes to the bounce buffer (`sync_*_for_device`).
    pub fn sync_for_device(&self, dma: u64, size: u64, dir: Dir) {
        if dir.to_device() && self.pool.contains(dma, size) {
            if let Some(orig) = self.pool.orig_of(dma) {
                self.copy(dma, orig, size);
            }
        }
    }

    /// Issues `SYNC`: the hypervisor drains the ring and completes every
    /// pending unshare with one invalidation. `pending` pages depend on it.
    pub fn sync(&self, pending: u64) -> Result<SyncResult, DmaError> {
        Stats::inc(&self.stats.hcall_sync);
        let result = self
            .hyp
            .call(Func::Sync, [0; NR_ARGS])
            .map_err(DmaError::Transport)
            .and_then(|r| {
                check_sync(r.status, &r.ret, self.ring.size(), self.tracker.frames())
                    .map_err(DmaError::Abi)
            });
        if result.is_err() {
            self.mark_broken(pending);
        }
        result
    }

    fn mark_broken(&self, pages: u64) {
        Stats::inc(&self.stats.unshare_errors);
        Stats::add(&self.stats.pages_leaked, pages);
        self.broken.store(true, Ordering::Relaxed);
    }

    /// Publishes a ring record, draining the ring first if it is full.
    fn publish(&self, gfn: u64, nr: u32) -> Result<(), DmaError> {
        let mut tries = 0u32;
        loop {
            match self.ring.push(gfn, nr) {
                Ok(()) => {
                    Stats::inc(&self.stats.ring_records);
                    return Ok(());
                }
                Err(Error::RingFull) => {
                    tries += 1;
                    if tries > RING_FULL_TRIES {
                        return Err(DmaError::Abi(Error::RingFull));
                    }
                    if tries % 64 == 1 {
                        Stats::inc(&self.stats.ring_full);
                        self.sync(0)?;
                    } else {
                        self.hyp.relax();
                    }
                }
                Err(e) => return Err(DmaError::Abi(e)),
            }
        }
    }

    fn share_table(&self, gfn: u64, nr: u32, perm: Perm) -> Result<(), DmaError> {
        let (progress, result) = self.tracker.map_range(gfn, nr, perm);
        let published = match progress.record() {
            Some((g, n)) => {
                Stats::add(&self.stats.pages_shared, u64::from(n));
                self.publish(g, n)
            }
            None => Ok(()),
        };
        if let Err(e) = result.map_err(DmaError::Abi).and(published) {
            // Undo what was mapped: the caller gets no mapping.
            let pending = self.unshare_table(gfn, progress.done, perm);
            let _ = self.sync(pending);
            return Err(e);
        }
        Ok(())
    }

    /// Clears the entries of a mapping; returns the pages whose entry
    /// changed (the caller syncs them).
    fn unshare_table(&self, gfn: u64, nr: u32, perm: Perm) -> u64 {
        let (progress, result) = self.tracker.unmap_range(gfn, nr, perm);
        if result.is_err() {
            // Unmapping what was never mapped: a caller bug; the table
            // keeps the union of what is live, so nothing leaks.
            Stats::inc(&self.stats.unshare_errors);
        }
        match progress.record() {
            Some((g, n)) => {
                Stats::add(&self.stats.pages_unshared, u64::from(n));
                if self.publish(g, n).is_err() {
                    self.mark_broken(u64::from(n));
                }
                u64::from(n)
            }
            None => 0,
        }
    }

    /// `SHARE` for a range, following partial progress.
    fn share_direct(&self, gfn: u64, nr: u32, perm: Perm) -> Result<(), DmaError> {
        self.direct(
            Func::Share,
            gfn,
            nr,
            perm.bits().into(),
            &self.stats.hcall_share,
        )
    }

    /// `UNSHARE` for a range, following partial progress.
    fn unshare_direct(&self, gfn: u64, nr: u32) -> Result<(), DmaError> {
        self.direct(Func::Unshare, gfn, nr, 0, &self.stats.hcall_unshare)
    }

    fn direct(
        &self,
        func: Func,
        gfn: u64,
        nr: u32,
        arg2: u64,
        counter: &AtomicU64,
    ) -> Result<(), DmaError> {
        let mut done = 0u64;
        let total = u64::from(nr);
        // The hypervisor may report success having done nothing; a bounded
        // number of calls without progress is an error.
        let mut stalls = 0;
        while done < total {
            Stats::inc(counter);
            let r = self
                .hyp
                .call(func, [gfn + done, total - done, arg2, 0, 0, 0])
                .map_err(DmaError::Transport)?;
            let step = check_progress(r.status, r.ret[0], total - done).map_err(DmaError::Abi)?;
            if step == 0 {
                stalls += 1;
                if stalls > 8 {
                    return Err(DmaError::Abi(Error::Hostile));
                }
            }
            done += step;
        }
        let counter = if func == Func::Share {
            &self.stats.pages_shared
        } else {
            &self.stats.pages_unshared
        };
        Stats::add(counter, total);
        Ok(())
    }

    fn bounce_map(&self, phys: u64, size: u64, dir: Dir, copy: bool) -> Result<u64, DmaError> {
        let offset = phys % PAGE_SIZE;
        let pages = pages_spanned(offset, size);
        let slots = self.pool.alloc(pages, phys).ok_or(DmaError::PoolFull)?;
        let dma = self.pool.slot_phys(slots.first) + offset;
        Stats::add(&self.stats.pool_pages_used, pages);
        Stats::inc(&self.stats.bounced);
        if copy && dir.to_device() {
            self.copy(dma, phys, size);
        }
        Ok(dma)
    }

    fn bounce_unmap(&self, dma: u64, size: u64, dir: Dir, copy: bool) {
        let slots = Slots {
            first: self.pool.slot_of(dma),
            pages: pages_spanned(dma % PAGE_SIZE, size),
        };
        if copy && dir.from_device() {
            if let Some(orig) = self.pool.orig_of(dma) {
                self.copy(orig, dma, size);
            }
        }
        if self.pool.free(slots) {
            self.stats
                .pool_pages_used
                .fetch_sub(slots.pages, Ordering::Relaxed);
        } else {
            Stats::inc(&self.stats.unshare_errors);
        }
    }

    fn copy(&self, dst: u64, src: u64, len: u64) {
        Stats::add(&self.stats.bounced_bytes, len);
        self.copier.copy(dst, src, len);
    }
}

/// The frames of a page-aligned range, checked to fit a ring record.
fn frames(phys: u64, size: u64) -> Result<(u64, u32), DmaError> {
    let nr = pages_spanned(phys, size);
    let nr = u32::try_from(nr).map_err(|_| DmaError::Invalid)?;
    Ok((phys >> PAGE_SHIFT, nr))
}
