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
//! using memory the guest can no longer protect. The driver then contains
//! what the engine cannot (the memory goes back to its owner): it panics,
//! or stops the devices (`pviommu.on_revoke_failure`). A `BUSY` answer is not a
//! failure: the ABI makes it transient, so the call is made again, up to
//! [`BUSY_TRIES`] times.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::abi::call::{Func, Status, NR_ARGS};
use super::abi::check::{check_progress, check_sync, SyncResult};
use super::abi::error::{Error, EINVAL, EIO, ENOMEM, ETIMEDOUT};
use super::abi::layout::{Perm, PAGE_SHIFT, PAGE_SIZE};
use super::abi::ring::Producer;
use super::abi::tracker::PageTracker;
use super::calibrate::Thresholds;
use super::mailbox::{RawResult, TransportError};
use super::map_batch::{Added, MapBatch};
use super::policy::{pages_spanned, route, Dir, Mode, Route};
use super::pool::{self, Pool, Slots};
use super::stats::{Counter, Stats};

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

/// How many times a full ring is waited on before the mapping fails, when
/// the hypervisor has no `APPLY`. A full ring is normally emptied by one
/// `SYNC`; it stays full only while another CPU holds an unpublished
/// reservation (its vCPU descheduled by the host), so the engine waits,
/// draining every 64 tries. With `APPLY` it never waits for another CPU:
/// a ring still full after one `SYNC` is bypassed.
const RING_FULL_TRIES: u32 = 1 << 20;

/// How many times a call answered `BUSY` is made before it fails. The
/// ABI makes `BUSY` transient (the hypervisor was preempted), so it is
/// retried; a hypervisor that stays busy this long is treated like one
/// that does not answer, so that the caller, whose interrupts are off,
/// never spins without bound.
pub const BUSY_TRIES: u32 = 4096;

/// How many times an unmap tries a page's three permissions in turn
/// before it takes the page as never mapped (see `Engine::unmap_page`).
const UNMAP_TRIES: usize = 6;

/// Copies between guest-physical ranges (for bounce buffers).
pub trait Copier {
    /// Copies `len` bytes from physical `src` to physical `dst`.
    fn copy(&self, dst: u64, src: u64, len: u64);

    /// Zeroes `len` bytes at physical `dst`.
    fn zero(&self, dst: u64, len: u64);

    /// Makes sure the hypervisor has the frames of `[phys, phys + len)`
    /// in the guest's own mapping before the table grants them to the
    /// host. pKVM maps a protected guest's page on its first access and
    /// can share only a mapped one, while a DMA buffer's pages may never
    /// have been touched (a fresh receive buffer); touching each is free
    /// once mapped. Elsewhere there is nothing to do.
    fn prefault(&self, _phys: u64, _len: u64) {}
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
    /// Buffers below these sizes bounce (`pviommu.bounce_threshold`, or
    /// measured at boot: [`super::calibrate`]).
    pub bounce_threshold: Thresholds,
    /// The hypervisor implements `APPLY` (`FEATURE_APPLY` in `VERSION`).
    pub apply: bool,
    /// The hypervisor enforces write-only entries (`FEATURE_WRITE_ONLY`):
    /// `DMA_FROM_DEVICE` buffers are shared write-only.
    pub write_only: bool,
    /// `pviommu.batch_maps`: the parts of a buffer share ring records
    /// ([`MapBatch`]); otherwise each part publishes its own.
    pub batch_maps: bool,
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
}

/// The engine of one pviommu instance.
pub struct Engine<'a, H: Hypercalls, C: Copier> {
    cfg: Config,
    tracker: PageTracker<'a>,
    ring: Producer<'a>,
    pool: Pool<'a>,
    hyp: H,
    copier: C,
    stats: &'a Stats<'a>,
    broken: AtomicBool,
    /// Pages whose entries deferred unmaps cleared and published, ever.
    cleared: AtomicU64,
    /// The value of `cleared` that the last successful flush covered.
    covered: AtomicU64,
    /// The pool is full or nearly so and may grow: the driver adds a
    /// chunk from process context ([`Engine::take_grow_request`]).
    grow_wanted: AtomicBool,
    /// Sync mode: held from a page count's change to the hypercall that
    /// makes the host's access follow it (see [`Engine::direct_locked`]).
    direct_lock: AtomicBool,
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
        stats: &'a Stats<'a>,
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
            cleared: AtomicU64::new(0),
            covered: AtomicU64::new(0),
            grow_wanted: AtomicBool::new(false),
            direct_lock: AtomicBool::new(false),
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

    /// The permission a mapping in direction `dir` is shared with.
    fn perm(&self, dir: Dir) -> Perm {
        dir.perm(self.cfg.write_only)
    }

    /// Largest buffer one mapping may cover ([`pool::max_mapping_bytes`]).
    /// Fixed for the engine's life: the virtio core reads it once per
    /// device.
    pub fn max_mapping_size(&self) -> u64 {
        pool::max_mapping_bytes(self.pool.chunk_slots(), self.pool.capacity())
    }

    /// Whether the pool asked to grow since the last call (a full pool,
    /// or three quarters of it in use, below its maximum size). The
    /// driver then adds a chunk with [`Engine::grow_pool`] from process
    /// context; a mapping that found the pool full has already failed
    /// with `PoolFull`, which its caller retries.
    pub fn take_grow_request(&self) -> bool {
        self.grow_wanted.load(Ordering::Relaxed) && self.grow_wanted.swap(false, Ordering::Relaxed)
    }

    /// Notes the pool's fill after an allocation (`got` pages, none if it
    /// failed) and asks for growth when it runs low.
    fn pool_pressure(&self, got: Option<u64>) {
        let used = match got {
            Some(pages) => {
                let used = self
                    .stats
                    .pool_pages_used
                    .fetch_add(pages, Ordering::Relaxed)
                    + pages;
                self.stats
                    .pool_high_water
                    .fetch_max(used, Ordering::Relaxed);
                used
            }
            None => {
                self.stats.inc(Counter::PoolExhausted);
                u64::MAX
            }
        };
        let live = self.pool.slots();
        if live < self.pool.capacity() && used.saturating_mul(4) > live * 3 {
            self.grow_wanted.store(true, Ordering::Relaxed);
        }
    }

    /// Adds the chunk of [`Pool::chunk_slots`] pages at `phys` (zeroed
    /// memory the caller gives up for good) to the pool: `SHARE`s it with
    /// the host, read-write, then makes it live. On error the chunk may
    /// be partly shared: the caller must never reuse it.
    pub fn grow_pool(&self, phys: u64) -> Result<(), DmaError> {
        let pages = self.pool.chunk_slots();
        let result = self.grow_inner(phys, pages);
        match result {
            Ok(()) => {
                self.stats.add(Counter::PoolGrowPages, pages);
                self.stats.pool_chunks.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => self.stats.inc(Counter::PoolGrowFailed),
        }
        result
    }

    fn grow_inner(&self, phys: u64, pages: u64) -> Result<(), DmaError> {
        if self.is_broken() {
            return Err(DmaError::Broken);
        }
        if self.pool.chunks() >= self.pool.max_chunks() {
            return Err(DmaError::PoolFull);
        }
        let (gfn, nr) = frames(phys, pages * PAGE_SIZE)?;
        self.direct(
            Func::Share,
            gfn,
            nr,
            Perm::ReadWrite.bits().into(),
            Counter::HcallPoolShare,
        )?;
        // Only a concurrent grower (the driver has one) or a full pool
        // refuse; the chunk then stays shared and unused, never reused.
        if self.pool.grow(phys) {
            Ok(())
        } else {
            Err(DmaError::PoolFull)
        }
    }

    /// Maps `[phys, phys + size)` for a device; returns the DMA address.
    ///
    /// `copy` is false for `DMA_ATTR_SKIP_CPU_SYNC`. A bounced buffer is
    /// copied in all the same (see `bounce_map`): the attribute only
    /// spares the unmap its copy back.
    pub fn map(&self, phys: u64, size: u64, dir: Dir, copy: bool) -> Result<u64, DmaError> {
        self.map_within(phys, size, dir, copy, u64::MAX)
    }

    /// [`Engine::map`] for a device that reaches DMA addresses up to
    /// `limit` only (its DMA mask): a buffer above it bounces, and a
    /// mapping no address of which the device reaches fails, rather than
    /// hand the device an address it would truncate.
    pub fn map_within(
        &self,
        phys: u64,
        size: u64,
        dir: Dir,
        _copy: bool,
        limit: u64,
    ) -> Result<u64, DmaError> {
        self.map_counted(phys, size, dir, limit, None)
    }

    /// [`Engine::map_within`] for one part of a buffer being added to a
    /// virtqueue: the ring record waits in `batch` until
    /// [`Engine::map_flush`], so that adjacent parts share one record.
    pub fn map_batched(
        &self,
        phys: u64,
        size: u64,
        dir: Dir,
        limit: u64,
        batch: &mut MapBatch,
    ) -> Result<u64, DmaError> {
        let batch = if self.cfg.batch_maps {
            Some(batch)
        } else {
            None
        };
        self.map_counted(phys, size, dir, limit, batch)
    }

    /// Publishes what `batch` holds back: the virtio core calls this once
    /// a buffer is mapped, before the device can see it. On failure it
    /// unmaps the whole buffer.
    pub fn map_flush(&self, batch: &mut MapBatch) -> Result<(), DmaError> {
        match batch.take() {
            Some((gfn, nr)) => self.publish(gfn, nr),
            None => Ok(()),
        }
    }

    fn map_counted(
        &self,
        phys: u64,
        size: u64,
        dir: Dir,
        limit: u64,
        batch: Option<&mut MapBatch>,
    ) -> Result<u64, DmaError> {
        let result = self.map_inner(phys, size, dir, limit, batch);
        match result {
            Ok(_) => self.stats.inc(Counter::Maps),
            Err(_) => self.stats.inc(Counter::MapErrors),
        }
        result
    }

    fn map_inner(
        &self,
        phys: u64,
        size: u64,
        dir: Dir,
        limit: u64,
        batch: Option<&mut MapBatch>,
    ) -> Result<u64, DmaError> {
        if self.is_broken() {
            return Err(DmaError::Broken);
        }
        if size == 0 || phys.checked_add(size).is_none() {
            return Err(DmaError::Invalid);
        }
        let reachable = |dma: u64| dma + (size - 1) <= limit;
        let threshold = self.cfg.bounce_threshold.for_dir(dir);
        match route(self.cfg.mode, phys, size, threshold) {
            Route::InPlace if !reachable(phys) => self.bounce_within(phys, size, reachable),
            Route::InPlace => {
                let (gfn, nr) = frames(phys, size)?;
                self.copier.prefault(phys, size);
                match self.cfg.mode {
                    Mode::Sync => self.share_counted(gfn, nr, self.perm(dir))?,
                    _ => self.share_table(gfn, nr, self.perm(dir), batch)?,
                }
                Ok(phys)
            }
            Route::Bounce => self.bounce_within(phys, size, reachable),
        }
    }

    /// Bounces a buffer into slots the device reaches, or fails (the pool
    /// lies where it was allocated; a device with a narrow mask below it
    /// cannot be served).
    fn bounce_within(
        &self,
        phys: u64,
        size: u64,
        reachable: impl Fn(u64) -> bool,
    ) -> Result<u64, DmaError> {
        let dma = self.bounce_map(phys, size)?;
        if reachable(dma) {
            return Ok(dma);
        }
        self.free_slots(Slots {
            first: self.pool.slot_of(dma),
            pages: pages_spanned(dma % PAGE_SIZE, size),
        });
        self.stats.inc(Counter::Unreachable);
        Err(DmaError::Invalid)
    }

    /// Unmaps a mapping; the invalidation happens in [`Engine::finish`].
    pub fn unmap(&self, dma: u64, size: u64, dir: Dir, copy: bool, batch: &mut Batch) {
        self.stats.inc(Counter::Unmaps);
        if size == 0 {
            return;
        }
        if self.pool.contains(dma, size) {
            self.bounce_unmap(dma, size, dir, copy);
            return;
        }
        let Ok((gfn, nr)) = frames(dma, size) else {
            self.stats.inc(Counter::UnshareErrors);
            return;
        };
        match self.cfg.mode {
            Mode::Sync => {
                if self.unshare_counted(gfn, nr, self.perm(dir)).is_err() {
                    self.mark_broken(u64::from(nr));
                }
            }
            _ => batch.pending += self.unshare_table(gfn, nr, self.perm(dir)),
        }
    }

    /// Unmaps a mapping and leaves its invalidation to [`Engine::flush`]:
    /// the virtio core unmaps a buffer's descriptors one by one, then
    /// flushes once for the buffer.
    pub fn unmap_deferred(&self, dma: u64, size: u64, dir: Dir, copy: bool) {
        let mut batch = Batch::default();
        self.unmap(dma, size, dir, copy, &mut batch);
        self.defer(batch);
    }

    /// Counts a batch's cleared pages as waiting for a flush.
    fn defer(&self, batch: Batch) {
        if batch.pending > 0 {
            // Release: the records are published before the count says so.
            self.cleared.fetch_add(batch.pending, Ordering::Release);
        }
    }

    /// Completes every deferred unmap made so far, by anyone: in strict
    /// mode one `SYNC` unless an earlier flush already covered them all;
    /// in lazy mode only once enough pages are pending.
    ///
    /// `SYNC` drains every record published before it, so a flush that
    /// reads `cleared` before its `SYNC` covers at least that much; a
    /// caller whose unmaps another CPU's flush covered pays nothing.
    pub fn flush(&self) -> Result<(), DmaError> {
        let target = self.cleared.load(Ordering::Acquire);
        let covered = self.covered.load(Ordering::Acquire);
        let pending = target.saturating_sub(covered);
        if pending == 0 || (!self.cfg.strict && pending < self.cfg.lazy_max_pages) {
            return Ok(());
        }
        self.sync(pending)?;
        self.covered.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Ends an unmap call: its pages join the deferred ones and are
    /// flushed now (in lazy mode, once enough are pending).
    pub fn finish(&self, batch: Batch) -> Result<(), DmaError> {
        if batch.pending == 0 {
            return Ok(());
        }
        self.defer(batch);
        self.flush()
    }

    /// Shares freshly allocated coherent memory (whole pages, read-write).
    pub fn map_coherent(&self, phys: u64, size: u64) -> Result<(), DmaError> {
        if self.is_broken() {
            return Err(DmaError::Broken);
        }
        let (gfn, nr) = frames(phys, size)?;
        let r = match self.cfg.mode {
            Mode::Sync => self.share_counted(gfn, nr, Perm::ReadWrite),
            _ => self.share_table(gfn, nr, Perm::ReadWrite, None),
        };
        match r {
            Ok(()) => self.stats.inc(Counter::Maps),
            Err(_) => self.stats.inc(Counter::MapErrors),
        }
        r
    }

    /// Unshares coherent memory before it is freed. On error the caller
    /// must leak the memory: the host may still reach it.
    pub fn unmap_coherent(&self, phys: u64, size: u64) -> Result<(), DmaError> {
        self.stats.inc(Counter::Unmaps);
        let (gfn, nr) = frames(phys, size)?;
        match self.cfg.mode {
            Mode::Sync => self
                .unshare_counted(gfn, nr, Perm::ReadWrite)
                .inspect_err(|_| self.mark_broken(u64::from(nr))),
            _ => {
                let pending = self.unshare_table(gfn, nr, Perm::ReadWrite);
                // Memory goes back to the allocator: always strict.
                self.sync(pending).map(|_| ())
            }
        }
    }

    /// Coherent memory from the bounce pool (bounce mode, like a
    /// restricted-dma-pool) for a device whose coherent mask reaches
    /// `limit`: zeroed, already shared. `PoolFull` when full, `Invalid`
    /// when the slots found lie above `limit`.
    pub fn coherent_from_pool(&self, bytes: u64, limit: u64) -> Result<u64, DmaError> {
        let slots = self.pool.alloc(bytes.div_ceil(PAGE_SIZE), 0);
        self.pool_pressure(slots.map(|s| s.pages));
        let slots = slots.ok_or(DmaError::PoolFull)?;
        let phys = self.pool.slot_phys(slots.first);
        if phys + (bytes - 1) > limit {
            self.free_slots(slots);
            self.stats.inc(Counter::Unreachable);
            return Err(DmaError::Invalid);
        }
        self.copier.zero(phys, bytes);
        Ok(phys)
    }

    /// Gives coherent memory back to the pool; false if it is not pool
    /// memory.
    pub fn coherent_to_pool(&self, dma: u64, bytes: u64) -> bool {
        if !self.pool.contains(dma, bytes) {
            return false;
        }
        self.free_slots(Slots {
            first: self.pool.slot_of(dma),
            pages: bytes.div_ceil(PAGE_SIZE),
        });
        true
    }

    /// Gives bounce slots back, keeping the pool gauge; a double or wild
    /// free (a caller bug) frees nothing and is counted.
    fn free_slots(&self, slots: Slots) {
        if self.pool.free(slots) {
            self.stats
                .pool_pages_used
                .fetch_sub(slots.pages, Ordering::Relaxed);
        } else {
            self.stats.inc(Counter::UnshareErrors);
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
        let result = self
            .call(Func::Sync, [0; NR_ARGS], Counter::HcallSync)
            .and_then(|r| {
                check_sync(r.status, &r.ret, self.ring.size(), self.tracker.frames())
                    .map_err(DmaError::Abi)
            });
        if result.is_err() {
            self.mark_broken(pending);
        }
        result
    }

    /// Makes one call, counted in `counter`, and makes it again while the
    /// hypervisor answers `BUSY`, at most [`BUSY_TRIES`] times in all. The
    /// answer is left to the caller's check, which fails a `BUSY` that
    /// outlasted the tries.
    fn call(
        &self,
        func: Func,
        args: [u64; NR_ARGS],
        counter: Counter,
    ) -> Result<RawResult, DmaError> {
        let mut tries = 0;
        loop {
            self.stats.inc(counter);
            let r = self.hyp.call(func, args).map_err(DmaError::Transport)?;
            tries += 1;
            if r.status != Status::Busy.raw() || tries >= BUSY_TRIES {
                return Ok(r);
            }
            self.hyp.relax();
        }
    }

    fn mark_broken(&self, pages: u64) {
        self.stats.inc(Counter::UnshareErrors);
        self.stats.add(Counter::PagesLeaked, pages);
        self.broken.store(true, Ordering::Relaxed);
    }

    /// Publishes a ring record, draining the ring first if it is full.
    fn publish(&self, gfn: u64, nr: u32) -> Result<(), DmaError> {
        let mut tries = 0u32;
        loop {
            match self.ring.push(gfn, nr) {
                Ok(()) => {
                    self.stats.inc(Counter::RingRecords);
                    return Ok(());
                }
                Err(Error::RingFull) => {
                    tries += 1;
                    // One SYNC did not make room: another CPU's unpublished
                    // reservation holds the ring. Apply the entries
                    // directly rather than wait for that CPU.
                    if self.cfg.apply && tries > 1 {
                        self.stats.inc(Counter::RingBypassed);
                        return self.direct(Func::Apply, gfn, nr, 0, Counter::HcallApply);
                    }
                    if tries > RING_FULL_TRIES {
                        return Err(DmaError::Abi(Error::RingFull));
                    }
                    if tries % 64 == 1 {
                        self.stats.inc(Counter::RingFull);
                        self.sync(0)?;
                    } else {
                        self.hyp.relax();
                    }
                }
                Err(e) => return Err(DmaError::Abi(e)),
            }
        }
    }

    /// Writes the entries of a mapping and publishes their record, or,
    /// for part of a buffer, leaves it in `batch` (see [`MapBatch`]).
    fn share_table(
        &self,
        gfn: u64,
        nr: u32,
        perm: Perm,
        batch: Option<&mut MapBatch>,
    ) -> Result<(), DmaError> {
        let (progress, result) = self.tracker.map_range(gfn, nr, perm);
        let published = match progress.record() {
            Some((g, n)) => {
                self.stats.add(Counter::PagesShared, u64::from(n));
                match batch.map(|b| b.add(g, n)) {
                    None => self.publish(g, n),
                    Some(Added::Merged) => {
                        self.stats.inc(Counter::RecordsMerged);
                        Ok(())
                    }
                    Some(Added::Replaced(Some((pg, pn)))) => self.publish(pg, pn),
                    Some(Added::Replaced(None)) => Ok(()),
                }
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
    /// changed (the caller syncs them). `perm` is what the caller says the
    /// mapping was made with (see `unmap_page`).
    fn unshare_table(&self, gfn: u64, nr: u32, perm: Perm) -> u64 {
        match self.unmap_pages(gfn, nr, perm).record() {
            Some((g, n)) => {
                self.stats.add(Counter::PagesUnshared, u64::from(n));
                if self.publish(g, n).is_err() {
                    self.mark_broken(u64::from(n));
                }
                u64::from(n)
            }
            None => 0,
        }
    }

    /// Drops one live mapping of every page of `[gfn, gfn + nr)`; returns
    /// the span of frames whose entries changed. A page that fails does
    /// not stop the range: the pages after it are unmapped all the same,
    /// so that none of them stays shared.
    fn unmap_pages(&self, gfn: u64, nr: u32, perm: Perm) -> Span {
        let mut span = Span::default();
        if nr == 0 {
            return span;
        }
        // `matches!` suits both the kernel's clippy (MSRV 1.85: no
        // `map_or(true, ..)`) and this crate's (MSRV 1.78: no `is_none_or`).
        if !matches!(gfn.checked_add(nr.into()), Some(end) if end <= self.tracker.frames()) {
            // `map_range` refuses such a range before it maps any page,
            // so no page of this one is shared through the table.
            self.stats.inc(Counter::UnshareErrors);
            return span;
        }
        let mut done = 0;
        while done < nr {
            // The fast path: one call for the rest of the range, which
            // stops at the first page without a live `perm` mapping.
            let start = gfn + u64::from(done);
            let (progress, result) = self.tracker.unmap_range(start, nr - done, perm);
            if let Some((g, n)) = progress.record() {
                span.add(g, n.into());
            }
            done += progress.done;
            if result.is_err() {
                let stuck = gfn + u64::from(done);
                match self.unmap_page(stuck, perm) {
                    Ok(true) => span.add(stuck, 1),
                    Ok(false) => {}
                    // Never mapped: a caller bug. The table keeps the
                    // union of what is live, so nothing leaks.
                    Err(_) => self.stats.inc(Counter::UnshareErrors),
                }
                done += 1;
            }
        }
        span
    }

    /// Drops the live mapping of page `gfn` that an unmap said was made
    /// with `perm`, when the page has no live `perm` mapping.
    ///
    /// The page tracker counts a page's live mappings per permission but
    /// cannot say which one an unmap ends. The caller's direction is tried
    /// first (`unmap_range`), which is exact for a caller that unmaps with
    /// the direction it mapped, as the DMA API requires. Failing that, the
    /// mapping was made with another permission (say read-write, unmapped
    /// as to-device), and that count is dropped instead. So every unmap of
    /// a live mapping drops exactly one live count of the page, and once
    /// the page's last mapping is unmapped all its counts are zero and its
    /// entry none, whatever directions the callers passed: a wrong one can
    /// only leave the page read-write instead of read-only while its other
    /// mappings live (a read-write mapping unmapped as read-only while a
    /// read-only one remains), never shared after the last unmap. An extra
    /// unmap (a caller bug) may end another mapping of the page early,
    /// which shares less, not more; the page then runs out of counts
    /// before its last unmap, which is counted as an error.
    fn unmap_page(&self, gfn: u64, perm: Perm) -> Result<bool, Error> {
        // The other two permissions, then the caller's again: first the
        // one that grants what the caller's does and more (a read-write
        // mapping unmapped as to-device or as from-device).
        let order = match perm {
            Perm::Read => [Perm::ReadWrite, Perm::Write, Perm::Read],
            Perm::Write => [Perm::ReadWrite, Perm::Read, Perm::Write],
            _ => [Perm::Write, Perm::Read, Perm::ReadWrite],
        };
        // The page holds a count for the mapping being unmapped, but
        // another CPU may move the page's counts between two tries (a
        // read-write unmap, then a read-only map): cycle a few times.
        let mut result = Err(Error::Underflow);
        for p in order.into_iter().cycle().take(UNMAP_TRIES) {
            result = self.tracker.unmap(gfn, p);
            if result != Err(Error::Underflow) {
                break;
            }
        }
        result
    }

    /// `SHARE` for a range, following partial progress.
    fn share_direct(&self, gfn: u64, nr: u32, perm: Perm) -> Result<(), DmaError> {
        self.direct(
            Func::Share,
            gfn,
            nr,
            perm.bits().into(),
            Counter::HcallShare,
        )
    }

    /// Sync mode's map: counts a live mapping of each page, then makes the
    /// host's access to the pages whose union changed what it now is, with
    /// direct calls. Two live buffers on one page share it once.
    fn share_counted(&self, gfn: u64, nr: u32, perm: Perm) -> Result<(), DmaError> {
        self.direct_locked(|| {
            // Under the lock no other CPU changes an entry in sync mode.
            let private = self.count_private(gfn, nr);
            let (progress, result) = self.tracker.map_range(gfn, nr, perm);
            let changed = progress.record();
            let applied = match changed {
                Some((g, n)) => self.apply_direct(g, n),
                None => Ok(()),
            };
            if let Err(e) = result.map_err(DmaError::Abi).and(applied) {
                // Undo: the caller gets no mapping.
                let undo = self.unmap_pages(gfn, progress.done, perm);
                if let Some((g, n)) = undo.record() {
                    if self.apply_direct(g, n).is_err() {
                        self.mark_broken(u64::from(n));
                    }
                }
                return Err(e);
            }
            self.stats.add(Counter::PagesShared, private);
            Ok(())
        })
    }

    /// Sync mode's unmap: drops a live mapping of each page (the one the
    /// map granted, whatever `perm` says; see `unmap_page`), then revokes
    /// what the union no longer grants, with direct calls.
    fn unshare_counted(&self, gfn: u64, nr: u32, perm: Perm) -> Result<(), DmaError> {
        self.direct_locked(|| {
            let private = self.count_private(gfn, nr);
            let result = match self.unmap_pages(gfn, nr, perm).record() {
                Some((g, n)) => self.apply_direct(g, n),
                None => Ok(()),
            };
            let revoked = self.count_private(gfn, nr).saturating_sub(private);
            self.stats.add(Counter::PagesUnshared, revoked);
            result
        })
    }

    /// Frames of `[gfn, gfn + nr)` whose entry is none.
    fn count_private(&self, gfn: u64, nr: u32) -> u64 {
        (gfn..gfn + u64::from(nr))
            .filter(|&g| self.tracker.entry(g) == Some(Perm::None))
            .count() as u64
    }

    /// Makes the host's access to frames `[gfn, gfn + nr)` what their
    /// entries in the tracker say: one `SHARE` with the entry's
    /// permission, or one `UNSHARE`, per run of equal entries.
    fn apply_direct(&self, gfn: u64, nr: u32) -> Result<(), DmaError> {
        let end = gfn + u64::from(nr);
        let mut start = gfn;
        while start < end {
            let perm = self.tracker.entry(start).unwrap_or(Perm::None);
            let mut stop = start + 1;
            while stop < end && self.tracker.entry(stop) == Some(perm) {
                stop += 1;
            }
            // At most `nr` frames: fits.
            let n = (stop - start) as u32;
            match perm {
                Perm::None => self.unshare_direct(start, n)?,
                p => self.share_direct(start, n, p)?,
            }
            start = stop;
        }
        Ok(())
    }

    /// Runs `f` under the sync-mode lock. A page's count changes and the
    /// calls that follow it must reach the hypervisor in the same order on
    /// every CPU: otherwise a `SHARE` computed before another CPU's last
    /// unmap could land after that unmap's `UNSHARE` returned, and the
    /// host would reach memory the guest reuses. One lock serialises sync
    /// mode's calls (it is the hypercall-per-buffer baseline); the callers
    /// have interrupts off, so it is never taken twice on one CPU.
    fn direct_locked<R>(&self, f: impl FnOnce() -> R) -> R {
        while self
            .direct_lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.hyp.relax();
        }
        let r = f();
        self.direct_lock.store(false, Ordering::Release);
        r
    }

    /// `UNSHARE` for a range, following partial progress.
    fn unshare_direct(&self, gfn: u64, nr: u32) -> Result<(), DmaError> {
        self.direct(Func::Unshare, gfn, nr, 0, Counter::HcallUnshare)
    }

    fn direct(
        &self,
        func: Func,
        gfn: u64,
        nr: u32,
        arg2: u64,
        counter: Counter,
    ) -> Result<(), DmaError> {
        let mut done = 0u64;
        let total = u64::from(nr);
        // The hypervisor may report success having done nothing; a bounded
        // number of calls without progress is an error. `BUSY` answers are
        // retried by `call` and are not stalls.
        let mut stalls = 0;
        while done < total {
            let r = self.call(func, [gfn + done, total - done, arg2, 0, 0, 0], counter)?;
            let step = check_progress(r.status, r.ret[0], total - done).map_err(DmaError::Abi)?;
            if step == 0 {
                stalls += 1;
                if stalls > 8 {
                    return Err(DmaError::Abi(Error::Hostile));
                }
            }
            done += step;
        }
        // The callers count pages: a narrowing SHARE shares nothing new.
        Ok(())
    }

    /// Bounces a buffer: the slots start as a copy of the caller's buffer
    /// in every direction, whatever `copy` says. A slot still holds its
    /// previous user's data, and a device may write less than the whole
    /// mapping; the copy back at unmap (or `sync_for_cpu`) would then hand
    /// those stale bytes to this caller (swiotlb's CVE-2022-0854). Copied
    /// in first, the bytes the device did not write come back unchanged.
    fn bounce_map(&self, phys: u64, size: u64) -> Result<u64, DmaError> {
        let offset = phys % PAGE_SIZE;
        let pages = pages_spanned(offset, size);
        let slots = self.pool.alloc(pages, phys);
        self.pool_pressure(slots.map(|s| s.pages));
        let dma = self.pool.slot_phys(slots.ok_or(DmaError::PoolFull)?.first) + offset;
        self.stats.inc(Counter::Bounced);
        self.copy(dma, phys, size);
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
        self.free_slots(slots);
    }

    fn copy(&self, dst: u64, src: u64, len: u64) {
        self.stats.add(Counter::BouncedBytes, len);
        self.copier.copy(dst, src, len);
    }
}

/// The frames whose entries an unmap changed: the smallest span that
/// covers them, named by one ring record (a record that names a frame
/// whose entry did not change is harmless).
#[derive(Default)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    /// Widens the span to cover `nr` frames from `gfn`.
    fn add(&mut self, gfn: u64, nr: u64) {
        if self.end == self.start {
            *self = Span {
                start: gfn,
                end: gfn + nr,
            };
        } else {
            self.start = core::cmp::min(self.start, gfn);
            self.end = core::cmp::max(self.end, gfn + nr);
        }
    }

    /// The `(gfn, nr_pages)` record to publish, if any entry changed.
    fn record(&self) -> Option<(u64, u32)> {
        let nr = u32::try_from(self.end - self.start).ok()?;
        (nr > 0).then_some((self.start, nr))
    }
}

/// The frames of a page-aligned range, checked to fit a ring record.
fn frames(phys: u64, size: u64) -> Result<(u64, u32), DmaError> {
    let nr = pages_spanned(phys, size);
    let nr = u32::try_from(nr).map_err(|_| DmaError::Invalid)?;
    Ok((phys >> PAGE_SHIFT, nr))
}
