// SPDX-License-Identifier: GPL-2.0

//! The engine's test cases against a mock hypervisor, written once and
//! run twice: as KUnit cases inside the kernel (`tests.rs`) and by
//! `cargo test` in userspace (`tests/selftest.rs` of this crate).
//!
//! The mock hypervisor is what `io-pgtable-arm-selftests.c` calls a fake
//! backend with checking callbacks: it consumes the real ring on `SYNC`,
//! counts every call, and can be told to misbehave.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::abi::call::{Func, Status, NR_ARGS, NR_FUNCS};
use super::abi::layout::{Perm, PAGE_SIZE};
use super::abi::ring::{consume, Producer, RingHeader, RingSlot};
use super::abi::tracker::PageTracker;
use super::calibrate::Thresholds;
use super::engine::{Batch, Config, Copier, DmaError, Engine, Hypercalls, BUSY_TRIES};
use super::mailbox::{RawResult, TransportError};
use super::map_batch::MapBatch;
use super::policy::{Dir, Mode};
use super::pool::Pool;
use super::stats::{Counter, Stats};

/// Where a test reports its checks.
pub trait Check {
    /// Records one check; `what` says what was expected.
    fn check(&self, ok: bool, what: &str);
}

/// How the mock answers `SYNC`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SyncAnswer {
    /// Drain the ring and succeed.
    Honest,
    /// Claim more records than the ring holds.
    Hostile,
    /// Never answer.
    Timeout,
    /// Refuse with `BUSY`, for ever.
    Busy,
}

/// A mock hypervisor over the test's ring and table.
///
/// It keeps a host view, as a hypervisor keeps its stage 2: `SYNC` copies
/// the table entries that consumed records name into it, `APPLY` those of
/// its range. A test checks what the host could still reach there.
pub struct MockHyp<'a> {
    header: &'a RingHeader,
    slots: &'a [RingSlot],
    table: &'a [AtomicU8],
    consumer: AtomicU64,
    /// What the host may access, per frame (table entries as applied).
    pub view: [AtomicU8; FRAMES],
    /// Calls by function number.
    pub calls: [AtomicU32; NR_FUNCS],
    /// Records the mock consumed.
    pub records: AtomicU64,
    /// `SHARE`/`UNSHARE`: pages done per call at most (partial progress).
    pub direct_step: AtomicU64,
    answer: AtomicU8,
    /// `SYNC`, `SHARE` or `UNSHARE` calls still to refuse with `BUSY`.
    busy: AtomicU32,
    /// Serialises `SYNC`s, as a hypervisor serialises its consumer.
    consuming: core::sync::atomic::AtomicBool,
    /// What `relax` does (userspace threads yield; see `Fixture::with_relax`).
    relax: fn(),
}

impl<'a> MockHyp<'a> {
    /// A mock draining `header`/`slots` on `SYNC` and applying `table`.
    pub fn new(header: &'a RingHeader, slots: &'a [RingSlot], table: &'a [AtomicU8]) -> Self {
        MockHyp {
            header,
            slots,
            table,
            consumer: AtomicU64::new(0),
            view: [const { AtomicU8::new(0) }; FRAMES],
            calls: Default::default(),
            records: AtomicU64::new(0),
            direct_step: AtomicU64::new(u64::MAX),
            answer: AtomicU8::new(0),
            busy: AtomicU32::new(0),
            consuming: core::sync::atomic::AtomicBool::new(false),
            relax: core::hint::spin_loop,
        }
    }

    /// Sets how `SYNC` is answered from now on.
    pub fn answer_sync(&self, a: SyncAnswer) {
        self.answer.store(a as u8, Ordering::Relaxed);
    }

    /// Refuses the next `n` calls of `SYNC`, `SHARE` or `UNSHARE` with
    /// `BUSY` (a hypervisor preempted `n` times), then answers as before.
    pub fn busy_then_ok(&self, n: u32) {
        self.busy.store(n, Ordering::Relaxed);
    }

    /// Takes one of the `BUSY` answers `busy_then_ok` asked for, if any.
    fn take_busy(&self, func: Func) -> bool {
        matches!(func, Func::Sync | Func::Share | Func::Unshare)
            && self
                .busy
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }

    /// Number of calls of `func`.
    pub fn count(&self, func: Func) -> u32 {
        self.calls[func as usize].load(Ordering::Relaxed)
    }

    /// Makes the host view of frames `gfn..gfn + nr` what the table says.
    fn apply(&self, gfn: u64, nr: u64) {
        for g in gfn..gfn.saturating_add(nr) {
            let i = g as usize;
            if let (Some(v), Some(t)) = (self.view.get(i), self.table.get(i)) {
                v.store(t.load(Ordering::Acquire), Ordering::Relaxed);
            }
        }
    }

    /// Whether the host can still reach any of frames `gfn..gfn + nr`.
    pub fn host_reaches(&self, gfn: u64, nr: u64) -> bool {
        (gfn..gfn + nr).any(|g| {
            self.view
                .get(g as usize)
                .is_some_and(|v| v.load(Ordering::Relaxed) != 0)
        })
    }
}

impl Hypercalls for MockHyp<'_> {
    fn call(&self, func: Func, args: [u64; NR_ARGS]) -> Result<RawResult, TransportError> {
        self.calls[func as usize].fetch_add(1, Ordering::Relaxed);
        let ok = |ret| Ok(RawResult { status: 0, ret });
        let busy = Ok(RawResult {
            status: Status::Busy.raw(),
            ret: [0; 3],
        });
        if self.take_busy(func) {
            return busy;
        }
        match func {
            Func::Sync => match self.answer.load(Ordering::Relaxed) {
                a if a == SyncAnswer::Timeout as u8 => Err(TransportError::Timeout),
                a if a == SyncAnswer::Busy as u8 => busy,
                a if a == SyncAnswer::Hostile as u8 => ok([u64::MAX, 0, 0]),
                _ => {
                    while self.consuming.swap(true, Ordering::Acquire) {
                        core::hint::spin_loop();
                    }
                    let mut n = 0;
                    let c = consume(
                        self.header,
                        self.slots,
                        self.consumer.load(Ordering::Relaxed),
                        |gfn, nr| {
                            self.apply(gfn, nr.into());
                            n += 1;
                        },
                    );
                    self.consumer.store(c, Ordering::Relaxed);
                    self.consuming.store(false, Ordering::Release);
                    self.records.fetch_add(n, Ordering::Relaxed);
                    ok([n, 0, 0])
                }
            },
            Func::Share | Func::Unshare => {
                let done = core::cmp::min(args[1], self.direct_step.load(Ordering::Relaxed));
                let perm = if func == Func::Share {
                    args[2] as u8
                } else {
                    0
                };
                for g in args[0]..args[0].saturating_add(done) {
                    if let Some(v) = self.view.get(g as usize) {
                        v.store(perm, Ordering::Relaxed);
                    }
                }
                ok([done, 0, 0])
            }
            Func::Apply => {
                let done = core::cmp::min(args[1], self.direct_step.load(Ordering::Relaxed));
                self.apply(args[0], done);
                ok([done, 0, 0])
            }
            _ => ok([0; 3]),
        }
    }

    fn relax(&self) {
        (self.relax)();
    }
}

const FRAMES: usize = 64;
const RING: usize = 4;
const POOL_PAGES: usize = 8;
/// The fake pool sits above the tracked frames.
const POOL_BASE: u64 = (FRAMES as u64) * PAGE_SIZE;
/// The pool may grow by one chunk, which a test takes from the top of
/// the tracked frames: memory the guest gives up, not after chunk 0.
const POOL_MORE: usize = 1;
const GROW_BASE: u64 = (FRAMES - POOL_PAGES) as u64 * PAGE_SIZE;
/// Bytes of each page the fake memory keeps: the fixture lives on the
/// stack, and a kernel stack cannot hold whole pages.
const MEM_WINDOW: u64 = 32;
/// Pages the fake memory covers: the tracked frames, then the pool.
const MEM_PAGES: u64 = (FRAMES + POOL_PAGES) as u64;

/// A copier over fake physical memory that also counts its copies.
///
/// The memory covers every tracked frame and every pool slot, addressed
/// by physical address, but keeps only the first [`MEM_WINDOW`] bytes of
/// each page; the rest of a page reads as zero and drops writes. Tests
/// that look at contents keep their buffers inside the window; the
/// others only count.
pub struct MemCopier {
    /// Copies made.
    pub copies: AtomicU64,
    /// Bytes copied.
    pub bytes: AtomicU64,
    /// Bytes prefaulted (`Copier::prefault`) before an in-place share.
    pub prefaulted: AtomicU64,
    mem: [AtomicU8; (MEM_PAGES * MEM_WINDOW) as usize],
}

impl MemCopier {
    /// Zeroed memory, no copy counted.
    pub fn new() -> Self {
        MemCopier {
            copies: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            prefaulted: AtomicU64::new(0),
            mem: [const { AtomicU8::new(0) }; (MEM_PAGES * MEM_WINDOW) as usize],
        }
    }

    /// The byte kept for physical address `phys`, if it is kept.
    fn cell(&self, phys: u64) -> Option<&AtomicU8> {
        let (page, offset) = (phys / PAGE_SIZE, phys % PAGE_SIZE);
        if page >= MEM_PAGES || offset >= MEM_WINDOW {
            return None;
        }
        self.mem
            .get(usize::try_from(page * MEM_WINDOW + offset).ok()?)
    }

    /// Reads the byte at `phys` (zero where nothing is kept).
    pub fn read(&self, phys: u64) -> u8 {
        self.cell(phys).map_or(0, |b| b.load(Ordering::Relaxed))
    }

    /// Writes `bytes` at `phys`, as the CPU or a device would.
    pub fn write(&self, phys: u64, bytes: &[u8]) {
        for (i, b) in (0..).zip(bytes) {
            if let Some(cell) = self.cell(phys + i) {
                cell.store(*b, Ordering::Relaxed);
            }
        }
    }

    /// Calls `f(i)` for each `i < len` whose byte `dst + i` is kept,
    /// skipping the rest of each page at once.
    fn each_kept(dst: u64, len: u64, mut f: impl FnMut(u64)) {
        let mut i = 0;
        while i < len {
            let offset = (dst + i) % PAGE_SIZE;
            if offset >= MEM_WINDOW {
                i += PAGE_SIZE - offset;
                continue;
            }
            f(i);
            i += 1;
        }
    }
}

impl Default for MemCopier {
    fn default() -> Self {
        Self::new()
    }
}

impl Copier for MemCopier {
    fn copy(&self, dst: u64, src: u64, len: u64) {
        self.copies.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len, Ordering::Relaxed);
        Self::each_kept(dst, len, |i| {
            if let Some(cell) = self.cell(dst + i) {
                cell.store(self.read(src + i), Ordering::Relaxed);
            }
        });
    }

    fn zero(&self, dst: u64, len: u64) {
        Self::each_kept(dst, len, |i| self.write(dst + i, &[0]));
    }

    fn prefault(&self, _phys: u64, len: u64) {
        self.prefaulted.fetch_add(len, Ordering::Relaxed);
    }
}

/// The shared structures of one test, on the stack.
pub struct Fixture {
    state: [AtomicU32; FRAMES],
    table: [AtomicU8; FRAMES],
    header: RingHeader,
    slots: [RingSlot; RING],
    more: [AtomicU64; POOL_MORE],
    bitmap: [AtomicU64; 1],
    orig: [AtomicU64; POOL_PAGES * (1 + POOL_MORE)],
    stats: Stats<'static>,
    thresholds: Thresholds,
    write_only: bool,
}

impl Fixture {
    /// Zeroed structures.
    pub fn new() -> Self {
        Fixture {
            state: [const { AtomicU32::new(0) }; FRAMES],
            table: [const { AtomicU8::new(0) }; FRAMES],
            header: RingHeader::new(),
            slots: [const { RingSlot::new() }; RING],
            more: [const { AtomicU64::new(0) }; POOL_MORE],
            bitmap: [const { AtomicU64::new(0) }; 1],
            orig: [const { AtomicU64::new(0) }; POOL_PAGES * (1 + POOL_MORE)],
            stats: Stats::new(),
            thresholds: Thresholds::fixed(PAGE_SIZE),
            write_only: false,
        }
    }

    /// The same fixture over a hypervisor with `FEATURE_WRITE_ONLY`.
    pub fn with_write_only(mut self) -> Self {
        self.write_only = true;
        self
    }

    /// The same fixture with other bounce thresholds (one page by default).
    pub fn with_thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// Runs `f` with an engine in `mode` over this fixture.
    pub fn with<R>(
        &self,
        mode: Mode,
        f: impl FnOnce(&Engine<'_, &MockHyp<'_>, &MemCopier>, &MockHyp<'_>, &MemCopier, &Self) -> R,
    ) -> Option<R> {
        self.with_relax(mode, core::hint::spin_loop, f)
    }

    /// [`Fixture::with`], with the mock's `relax` (a thread yield for
    /// tests whose threads the OS may preempt mid-reservation).
    pub fn with_relax<R>(
        &self,
        mode: Mode,
        relax: fn(),
        f: impl FnOnce(&Engine<'_, &MockHyp<'_>, &MemCopier>, &MockHyp<'_>, &MemCopier, &Self) -> R,
    ) -> Option<R> {
        let mut hyp = MockHyp::new(&self.header, &self.slots, &self.table);
        hyp.relax = relax;
        let copier = MemCopier::new();
        let cfg = Config {
            mode,
            strict: true,
            lazy_max_pages: 16,
            bounce_threshold: self.thresholds,
            apply: true,
            write_only: self.write_only,
            batch_maps: true,
        };
        let engine = Engine::new(
            cfg,
            PageTracker::new(&self.state, &self.table).ok()?,
            Producer::new(&self.header, &self.slots).ok()?,
            Pool::growable(
                POOL_BASE,
                POOL_PAGES as u64,
                &self.more,
                &self.bitmap,
                &self.orig,
            )?,
            &hyp,
            &copier,
            &self.stats,
        );
        Some(f(&engine, &hyp, &copier, self))
    }

    /// The driver's counters.
    pub fn stats(&self) -> &Stats<'static> {
        &self.stats
    }

    /// The table entry of frame `gfn`.
    pub fn entry(&self, gfn: usize) -> u8 {
        self.table[gfn].load(Ordering::Relaxed)
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Hypercalls> Hypercalls for &T {
    fn call(&self, func: Func, args: [u64; NR_ARGS]) -> Result<RawResult, TransportError> {
        (**self).call(func, args)
    }

    fn relax(&self) {
        (**self).relax()
    }
}

impl<T: Copier> Copier for &T {
    fn copy(&self, dst: u64, src: u64, len: u64) {
        (**self).copy(dst, src, len)
    }

    fn zero(&self, dst: u64, len: u64) {
        (**self).zero(dst, len)
    }

    fn prefault(&self, phys: u64, len: u64) {
        (**self).prefault(phys, len)
    }
}

/// Share mode: mapping page-owning buffers makes no hypercall, writes the
/// table and one ring record; unmapping costs exactly one `SYNC`.
pub fn map_is_exit_free(c: &dyn Check) {
    let ran = Fixture::new().with(Mode::Share, |e, hyp, copier, fx| {
        let dma = e.map(4 * PAGE_SIZE, 2 * PAGE_SIZE, Dir::FromDevice, true);
        c.check(
            dma == Ok(4 * PAGE_SIZE),
            "zero-copy: DMA address == physical address",
        );
        c.check(
            fx.entry(4) == Perm::ReadWrite.bits() && fx.entry(5) == Perm::ReadWrite.bits(),
            "entries read-write",
        );
        c.check(fx.entry(6) == 0, "neighbour untouched");
        c.check(
            copier.prefaulted.load(Ordering::Relaxed) == 2 * PAGE_SIZE,
            "the in-place buffer is prefaulted before it is shared",
        );
        c.check(
            hyp.calls.iter().all(|n| n.load(Ordering::Relaxed) == 0),
            "no hypercall on map",
        );
        c.check(fx.stats.get(Counter::RingRecords) == 1, "one ring record");
        let mut batch = Batch::default();
        e.unmap(
            4 * PAGE_SIZE,
            2 * PAGE_SIZE,
            Dir::FromDevice,
            true,
            &mut batch,
        );
        c.check(e.finish(batch).is_ok(), "unmap succeeds");
        c.check(hyp.count(Func::Sync) == 1, "one SYNC per unmap call");
        c.check(fx.entry(4) == 0 && fx.entry(5) == 0, "entries cleared");
        c.check(copier.copies.load(Ordering::Relaxed) == 0, "no copy");
    });
    c.check(ran.is_some(), "fixture builds");
}

/// The table entry is the union of the live mappings' permissions.
pub fn entry_is_union_of_live_mappings(c: &dyn Check) {
    Fixture::new().with(Mode::Share, |e, _, _, fx| {
        let p = 7 * PAGE_SIZE;
        let _ = e.map(p, PAGE_SIZE, Dir::ToDevice, true);
        c.check(
            fx.entry(7) == Perm::Read.bits(),
            "read after a to-device map",
        );
        let _ = e.map(p, PAGE_SIZE, Dir::Bidirectional, true);
        c.check(
            fx.entry(7) == Perm::ReadWrite.bits(),
            "read-write once a writer maps",
        );
        let mut b = Batch::default();
        e.unmap(p, PAGE_SIZE, Dir::Bidirectional, true, &mut b);
        let _ = e.finish(b);
        c.check(
            fx.entry(7) == Perm::Read.bits(),
            "back to read when the writer unmaps",
        );
        let mut b = Batch::default();
        e.unmap(p, PAGE_SIZE, Dir::ToDevice, true, &mut b);
        let _ = e.finish(b);
        c.check(fx.entry(7) == 0, "none when the last mapping goes");
    });
}

/// An unmap revokes what its map granted, whatever direction the caller
/// passes at unmap, and works through every page of its range even when
/// one page fails.
pub fn unmap_revokes_what_map_granted(c: &dyn Check) {
    Fixture::new().with(Mode::Share, |e, hyp, _, fx| {
        let unmap = |gfn: u64, pages: u64, dir| {
            let mut b = Batch::default();
            e.unmap(gfn * PAGE_SIZE, pages * PAGE_SIZE, dir, true, &mut b);
            e.finish(b).is_ok()
        };
        let _ = e.map(7 * PAGE_SIZE, 2 * PAGE_SIZE, Dir::Bidirectional, true);
        c.check(unmap(7, 2, Dir::ToDevice), "the unmap succeeds");
        c.check(
            fx.entry(7) == 0 && fx.entry(8) == 0,
            "a read-write mapping unmapped as to-device is revoked",
        );
        let _ = e.map(10 * PAGE_SIZE, PAGE_SIZE, Dir::ToDevice, true);
        c.check(unmap(10, 1, Dir::FromDevice), "the unmap succeeds");
        c.check(
            fx.entry(10) == 0,
            "a read-only mapping unmapped as from-device is revoked",
        );
        c.check(
            fx.stats.get(Counter::UnshareErrors) == 0,
            "no unshare error counted",
        );
        // One page, a read-only and a read-write mapping, both unmapped
        // as to-device: the page is shared while one lives, not after.
        let _ = e.map(20 * PAGE_SIZE, PAGE_SIZE, Dir::ToDevice, true);
        let _ = e.map(20 * PAGE_SIZE, PAGE_SIZE, Dir::Bidirectional, true);
        c.check(unmap(20, 1, Dir::ToDevice), "the first unmap succeeds");
        c.check(fx.entry(20) != 0, "still shared while a mapping lives");
        c.check(unmap(20, 1, Dir::ToDevice), "the second unmap succeeds");
        c.check(fx.entry(20) == 0, "not shared once both are gone");
        c.check(
            fx.stats.get(Counter::UnshareErrors) == 0,
            "no unshare error counted",
        );
        // A range whose middle page was never mapped: that page is an
        // error, and the pages after it are still unmapped.
        let _ = e.map(30 * PAGE_SIZE, PAGE_SIZE, Dir::FromDevice, true);
        let _ = e.map(32 * PAGE_SIZE, PAGE_SIZE, Dir::FromDevice, true);
        let _ = unmap(30, 3, Dir::FromDevice);
        c.check(
            fx.entry(30) == 0 && fx.entry(32) == 0,
            "every page of the range is unmapped despite the error",
        );
        c.check(
            fx.stats.get(Counter::UnshareErrors) == 1,
            "the page never mapped is counted as an error",
        );
        c.check(
            hyp.records.load(Ordering::Relaxed) == fx.stats.get(Counter::RingRecords),
            "every record, the revocations included, drained by a SYNC",
        );
    });
}

/// Sub-page buffers never share their page: they bounce, with copies in
/// the right directions.
pub fn sub_page_buffers_bounce(c: &dyn Check) {
    Fixture::new().with(Mode::Share, |e, hyp, copier, fx| {
        let phys = 9 * PAGE_SIZE + 100;
        let dma = e.map(phys, 512, Dir::Bidirectional, true);
        c.check(
            dma.is_ok_and(|d| d >= POOL_BASE && d % PAGE_SIZE == 100),
            "bounced, same in-page offset",
        );
        c.check(fx.entry(9) == 0, "the buffer's own page stays private");
        c.check(
            copier.prefaulted.load(Ordering::Relaxed) == 0,
            "a bounced buffer is not prefaulted",
        );
        c.check(
            copier.bytes.load(Ordering::Relaxed) == 512,
            "copied in for the device",
        );
        let mut b = Batch::default();
        e.unmap(dma.unwrap_or(0), 512, Dir::Bidirectional, true, &mut b);
        c.check(e.finish(b).is_ok(), "unmap succeeds");
        c.check(
            copier.bytes.load(Ordering::Relaxed) == 1024,
            "copied back for the CPU",
        );
        c.check(hyp.count(Func::Sync) == 0, "no SYNC for a bounce");
        c.check(e.pool().used() == 0, "slot freed");
        c.check(
            fx.stats.pool_pages_used.load(Ordering::Relaxed) == 0,
            "pool gauge back to 0",
        );
    });
}

/// A buffer that crosses a page boundary without owning either page
/// bounces as a whole, into as many slots as pages it spans, and every
/// address of the bounce maps back to the original.
pub fn page_crossing_buffer_bounces(c: &dyn Check) {
    Fixture::new().with(Mode::Share, |e, _, copier, fx| {
        let phys = 12 * PAGE_SIZE + 2048;
        let dma = e.map(phys, PAGE_SIZE, Dir::ToDevice, true).unwrap_or(0);
        c.check(
            dma >= POOL_BASE && dma % PAGE_SIZE == 2048,
            "bounced, same in-page offset",
        );
        c.check(
            fx.entry(12) == 0 && fx.entry(13) == 0,
            "neither page is shared",
        );
        c.check(
            e.pool().used() == 2,
            "two slots for a buffer spanning two pages",
        );
        c.check(
            e.pool().orig_of(dma + 3000) == Some(phys + 3000),
            "addresses map back",
        );
        let mut b = Batch::default();
        e.unmap(dma, PAGE_SIZE, Dir::ToDevice, true, &mut b);
        let _ = e.finish(b);
        c.check(e.pool().used() == 0, "both slots freed");
        c.check(
            copier.copies.load(Ordering::Relaxed) == 1,
            "copied once, to the device only",
        );
    });
}

/// A bounce slot never hands a previous user's data to the next one
/// (swiotlb's CVE-2022-0854): a device that writes less than its
/// `DMA_FROM_DEVICE` mapping must leave the caller's own bytes in the
/// rest of the buffer, not what the slot held before, with or without
/// `DMA_ATTR_SKIP_CPU_SYNC`.
pub fn bounce_slots_never_leak(c: &dyn Check) {
    const SECRET: u8 = 0x5e;
    const DEVICE: u8 = 0xd0;
    // Sub-page buffers (they bounce), inside the fake memory's window.
    const OFFSET: u64 = 8;
    const LEN: usize = 16;
    Fixture::new().with(Mode::Share, |e, _, mem, _| {
        // A previous user leaves its secret in every slot of the pool, so
        // whichever slot the next mapping gets held it.
        let secret = 2 * PAGE_SIZE + OFFSET;
        mem.write(secret, &[SECRET; LEN]);
        for _ in 0..POOL_PAGES {
            let dma = e.map(secret, LEN as u64, Dir::ToDevice, true);
            let mut b = Batch::default();
            e.unmap(dma.unwrap_or(0), LEN as u64, Dir::ToDevice, true, &mut b);
            let _ = e.finish(b);
        }
        c.check(
            (0..POOL_PAGES as u64).all(|s| mem.read(POOL_BASE + s * PAGE_SIZE + OFFSET) == SECRET),
            "every slot holds the previous user's secret",
        );
        // `copy == false` is DMA_ATTR_SKIP_CPU_SYNC: the caller then syncs
        // for the CPU itself before the unmap.
        for copy in [true, false] {
            let buf = 3 * PAGE_SIZE + OFFSET;
            let own: [u8; LEN] = core::array::from_fn(|i| 0xa0 + i as u8);
            mem.write(buf, &own);
            let dma = e.map(buf, LEN as u64, Dir::FromDevice, copy).unwrap_or(0);
            c.check(e.pool().contains(dma, LEN as u64), "the buffer bounces");
            // A short write: the device fills only the first four bytes.
            mem.write(dma, &[DEVICE; 4]);
            if !copy {
                e.sync_for_cpu(dma, LEN as u64, Dir::FromDevice);
            }
            let mut b = Batch::default();
            e.unmap(dma, LEN as u64, Dir::FromDevice, copy, &mut b);
            let _ = e.finish(b);
            let got: [u8; LEN] = core::array::from_fn(|i| mem.read(buf + i as u64));
            c.check(
                !got.contains(&SECRET),
                "no byte of the previous user's secret in the caller's buffer",
            );
            c.check(
                got[..4] == [DEVICE; 4] && got[4..] == own[4..],
                "what the device wrote, then the caller's own bytes",
            );
        }
    });
}

/// A whole scatterlist's unmap is one batch and one `SYNC`.
pub fn one_sync_per_unmap_call(c: &dyn Check) {
    Fixture::new().with(Mode::Share, |e, hyp, _, fx| {
        for i in 0..3 {
            let _ = e.map((10 + 2 * i) * PAGE_SIZE, PAGE_SIZE, Dir::ToDevice, true);
        }
        let mut b = Batch::default();
        for i in 0..3 {
            e.unmap(
                (10 + 2 * i) * PAGE_SIZE,
                PAGE_SIZE,
                Dir::ToDevice,
                true,
                &mut b,
            );
        }
        let _ = e.finish(b);
        // Six records overflow the 4-record ring once; that drain is
        // counted apart (ring_full). The call's own invalidation is one.
        let drains = fx.stats.get(Counter::RingFull);
        c.check(drains == 1, "the small ring filled once");
        c.check(
            u64::from(hyp.count(Func::Sync)) - drains == 1,
            "three entries, one invalidating SYNC",
        );
    });
}

/// A virtio buffer of several descriptors, unmapped one descriptor at a
/// time and flushed once (as virtio_ring does through `unmap_flush`),
/// costs exactly one `SYNC`; a flush with nothing new costs none.
pub fn one_sync_per_virtio_buffer(c: &dyn Check) {
    Fixture::new().with(Mode::Share, |e, hyp, _, fx| {
        let descs = [(2, 1), (4, 2), (8, 1)];
        for (gfn, pages) in descs {
            let _ = e.map(gfn * PAGE_SIZE, pages * PAGE_SIZE, Dir::FromDevice, true);
        }
        // A sub-page descriptor (a request header) bounces in the same buffer.
        let hdr = e
            .map(20 * PAGE_SIZE + 16, 16, Dir::ToDevice, true)
            .unwrap_or(0);
        let before = hyp.count(Func::Sync);
        let full_before = fx.stats.get(Counter::RingFull);
        for (gfn, pages) in descs {
            e.unmap_deferred(gfn * PAGE_SIZE, pages * PAGE_SIZE, Dir::FromDevice, true);
        }
        e.unmap_deferred(hdr, 16, Dir::ToDevice, true);
        // A full 4-record ring is drained by a SYNC of its own (counted
        // as ring_full); none of those is the buffer's invalidation.
        let drains = fx.stats.get(Counter::RingFull) - full_before;
        c.check(
            u64::from(hyp.count(Func::Sync) - before) == drains,
            "no invalidating SYNC before the buffer's flush",
        );
        c.check(e.flush().is_ok(), "the flush succeeds");
        c.check(
            u64::from(hyp.count(Func::Sync) - before) - drains == 1,
            "one SYNC for the whole buffer",
        );
        c.check(
            (2..10).all(|g| fx.entry(g) == 0),
            "every entry of the buffer cleared",
        );
        let after = hyp.count(Func::Sync);
        c.check(e.flush().is_ok(), "an empty flush succeeds");
        c.check(
            hyp.count(Func::Sync) == after,
            "an empty flush makes no SYNC",
        );
    });
}

/// A buffer mapped part by part (`map_page_batch`): parts that continue
/// each other's frames share one ring record, the last run waits for the
/// buffer's flush, and no part makes a hypercall.
pub fn one_record_per_run_of_a_buffer(c: &dyn Check) {
    Fixture::new().with(Mode::Share, |e, hyp, _, fx| {
        let records = || fx.stats.get(Counter::RingRecords);
        let mut batch = MapBatch::default();
        // Frames 4..8 in three parts, then frame 12 apart.
        for (gfn, pages) in [(4, 1), (5, 2), (7, 1), (12, 1)] {
            let dma = e.map_batched(
                gfn * PAGE_SIZE,
                pages * PAGE_SIZE,
                Dir::ToDevice,
                u64::MAX,
                &mut batch,
            );
            c.check(dma == Ok(gfn * PAGE_SIZE), "each part is mapped in place");
        }
        c.check(
            (4..8)
                .chain(12..13)
                .all(|g| fx.entry(g) == Perm::Read.bits()),
            "every part's entries are written at once",
        );
        c.check(
            records() == 1,
            "the run 4..8 is published when 12 breaks it",
        );
        c.check(
            fx.stats.get(Counter::RecordsMerged) == 2,
            "two parts joined the run's record",
        );
        c.check(e.sync(0).is_ok(), "a drain succeeds");
        c.check(
            hyp.host_reaches(4, 4) && !hyp.host_reaches(12, 1),
            "the last run waits for the flush",
        );
        c.check(e.map_flush(&mut batch).is_ok(), "the flush succeeds");
        c.check(records() == 2, "the flush publishes the last run");
        c.check(batch.take().is_none(), "the flush empties the batch");
        c.check(e.sync(0).is_ok(), "a drain succeeds");
        c.check(
            hyp.host_reaches(12, 1),
            "the host then reaches the last run",
        );
        c.check(
            hyp.count(Func::Share) == 0 && hyp.count(Func::Apply) == 0,
            "no hypercall to map",
        );
        for (gfn, pages) in [(4, 1), (5, 2), (7, 1), (12, 1)] {
            e.unmap_deferred(gfn * PAGE_SIZE, pages * PAGE_SIZE, Dir::ToDevice, true);
        }
        c.check(e.flush().is_ok(), "the buffer's unmap flush succeeds");
        c.check(
            !hyp.host_reaches(4, 4) && !hyp.host_reaches(12, 1),
            "the unmap revokes every part",
        );
    });
}

/// A vCPU descheduled between reserving a record and publishing it holds
/// the ring: the consumer cannot move past the record, so the ring stays
/// full whatever `SYNC` does. Maps and unmaps on other CPUs must neither
/// wait for that vCPU nor lose a revocation: they bypass the ring with
/// `APPLY`, and after the unmaps the host reaches none of the pages.
pub fn unpublished_record_blocks_no_revocation(c: &dyn Check) {
    let fx = Fixture::new();
    // Another CPU's reservation, never published.
    let Ok(stuck) = Producer::new(&fx.header, &fx.slots).and_then(|p| p.reserve()) else {
        c.check(false, "the other CPU's reservation");
        return;
    };
    c.check(stuck.index() == 0, "the stuck record is the ring's first");
    fx.with(Mode::Share, |e, hyp, _, fx| {
        let bufs = [2u64, 4, 6, 8, 10, 12];
        let mut ok = true;
        for gfn in bufs {
            ok &= e
                .map(gfn * PAGE_SIZE, PAGE_SIZE, Dir::FromDevice, true)
                .is_ok();
        }
        c.check(ok, "every map succeeds while the ring is held");
        c.check(
            fx.stats.get(Counter::RingBypassed) > 0,
            "records bypassed the held ring",
        );
        for gfn in bufs {
            e.unmap_deferred(gfn * PAGE_SIZE, PAGE_SIZE, Dir::FromDevice, true);
        }
        c.check(e.flush().is_ok(), "the unmaps' flush succeeds");
        c.check(!e.is_broken(), "the engine is not broken");
        c.check(
            bufs.iter().all(|&g| fx.entry(g as usize) == 0),
            "every entry cleared",
        );
        c.check(
            !bufs.iter().any(|&g| hyp.host_reaches(g, 1)),
            "the host reaches none of the unmapped pages",
        );
        c.check(hyp.count(Func::Apply) > 0, "APPLY was used");
    });
}

/// A device's DMA mask is honoured: a buffer it reaches is shared in
/// place; one above its mask would bounce, and a bounce whose slot lies
/// above the mask fails instead of handing the device an address it
/// would truncate.
pub fn dma_mask_is_honoured(c: &dyn Check) {
    Fixture::new().with(Mode::Share, |e, _, _, fx| {
        let below = 4 * PAGE_SIZE;
        let limit = 16 * PAGE_SIZE - 1;
        c.check(
            e.map_within(below, PAGE_SIZE, Dir::ToDevice, true, limit) == Ok(below),
            "a reachable buffer is shared in place",
        );
        let above = 40 * PAGE_SIZE;
        let r = e.map_within(above, PAGE_SIZE, Dir::ToDevice, true, limit);
        c.check(
            r.is_err(),
            "an unreachable buffer with an unreachable pool fails",
        );
        c.check(
            fx.entry(40) == 0,
            "the unreachable buffer's page stays private",
        );
        c.check(e.pool().used() == 0, "no bounce slot is kept");
        c.check(
            fx.stats.get(Counter::Unreachable) == 1,
            "counted as unreachable",
        );
        // A sub-page buffer bounces: the pool's slot must be reachable too.
        let r = e.map_within(below + 64, 128, Dir::ToDevice, true, limit);
        c.check(r.is_err(), "a bounce into an unreachable pool fails");
        c.check(e.pool().used() == 0, "and keeps no slot");
        let wide = POOL_BASE + POOL_PAGES as u64 * PAGE_SIZE - 1;
        let r = e.map_within(below + 64, 128, Dir::ToDevice, true, wide);
        c.check(
            r.is_ok_and(|d| d >= POOL_BASE && d <= wide),
            "with the pool reachable, the same buffer bounces",
        );
    });
}

/// Coherent memory from the bounce pool (bounce mode) is refused, not
/// truncated, for a device whose coherent mask the pool does not reach.
pub fn coherent_mask_is_honoured(c: &dyn Check) {
    Fixture::new().with(Mode::Bounce, |e, _, _, fx| {
        let r = e.coherent_from_pool(2 * PAGE_SIZE, POOL_BASE + PAGE_SIZE);
        c.check(
            r == Err(DmaError::Invalid),
            "a pool above the coherent mask refuses",
        );
        c.check(e.pool().used() == 0, "and keeps no slot");
        c.check(
            fx.stats.get(Counter::Unreachable) == 1,
            "counted as unreachable",
        );
        let top = POOL_BASE + POOL_PAGES as u64 * PAGE_SIZE - 1;
        let r = e.coherent_from_pool(2 * PAGE_SIZE, top);
        c.check(
            r.is_ok_and(|phys| phys >= POOL_BASE && phys + 2 * PAGE_SIZE - 1 <= top),
            "a reachable pool serves it",
        );
        c.check(
            r.is_ok_and(|phys| e.coherent_to_pool(phys, 2 * PAGE_SIZE)) && e.pool().used() == 0,
            "and takes it back",
        );
    });
}

/// The measured thresholds route by direction: a buffer the device writes
/// costs two copies to bounce, one it only reads costs one, so the first
/// goes in place from a smaller size.
pub fn thresholds_follow_direction(c: &dyn Check) {
    let t = Thresholds {
        to_device: 4 * PAGE_SIZE,
        from_device: 2 * PAGE_SIZE,
    };
    Fixture::new()
        .with_thresholds(t)
        .with(Mode::Share, |e, hyp, _, fx| {
            let two = 2 * PAGE_SIZE;
            let to = e.map(4 * PAGE_SIZE, two, Dir::ToDevice, true);
            c.check(
                to.is_ok_and(|d| d >= POOL_BASE),
                "2 pages to the device: below its threshold, bounced",
            );
            let from = e.map(8 * PAGE_SIZE, two, Dir::FromDevice, true);
            c.check(
                from == Ok(8 * PAGE_SIZE),
                "2 pages from the device: in place",
            );
            let both = e.map(12 * PAGE_SIZE, two, Dir::Bidirectional, true);
            c.check(
                both == Ok(12 * PAGE_SIZE),
                "bidirectional follows from-device",
            );
            let big = e.map(16 * PAGE_SIZE, 4 * PAGE_SIZE, Dir::ToDevice, true);
            c.check(big == Ok(16 * PAGE_SIZE), "4 pages to the device: in place");
            c.check(fx.entry(4) == 0, "the bounced buffer's pages stay private");
            c.check(hyp.count(Func::Share) == 0, "no hypercall on map");
            let mut batch = Batch::default();
            for (dma, size, dir) in [
                (to, two, Dir::ToDevice),
                (from, two, Dir::FromDevice),
                (both, two, Dir::Bidirectional),
                (big, 4 * PAGE_SIZE, Dir::ToDevice),
            ] {
                e.unmap(dma.unwrap_or(0), size, dir, true, &mut batch);
            }
            c.check(e.finish(batch).is_ok(), "unmapped");
            c.check(
                (0..FRAMES).all(|f| fx.entry(f) == 0) && e.pool().used() == 0,
                "nothing left shared or held",
            );
        });
}

/// With `FEATURE_WRITE_ONLY`, a buffer the device only writes is shared
/// write-only (it cannot read what the pages held), one it reads as well
/// read-write, and the table stays the union of the live mappings; an
/// unmap with the wrong direction still revokes what the map granted.
pub fn from_device_is_write_only(c: &dyn Check) {
    Fixture::new()
        .with_write_only()
        .with(Mode::Share, |e, _, _, fx| {
            let at = |gfn: u64| gfn * PAGE_SIZE;
            let w = e.map(at(4), 2 * PAGE_SIZE, Dir::FromDevice, true);
            c.check(w == Ok(at(4)), "in place");
            c.check(
                fx.entry(4) == Perm::Write.bits() && fx.entry(5) == Perm::Write.bits(),
                "from the device: write-only",
            );
            let b = e.map(at(5), PAGE_SIZE, Dir::Bidirectional, true);
            c.check(
                fx.entry(5) == Perm::ReadWrite.bits(),
                "a bidirectional mapping of the same page: read-write",
            );
            let r = e.map(at(4), PAGE_SIZE, Dir::ToDevice, true);
            c.check(
                fx.entry(4) == Perm::ReadWrite.bits(),
                "write-only and read-only live mappings: read-write",
            );
            let mut batch = Batch::default();
            e.unmap(r.unwrap_or(0), PAGE_SIZE, Dir::ToDevice, true, &mut batch);
            c.check(fx.entry(4) == Perm::Write.bits(), "back to write-only");
            // The bidirectional mapping unmapped as to-device.
            e.unmap(b.unwrap_or(0), PAGE_SIZE, Dir::ToDevice, true, &mut batch);
            c.check(
                fx.entry(5) == Perm::Write.bits(),
                "the read-write count dropped",
            );
            e.unmap(
                w.unwrap_or(0),
                2 * PAGE_SIZE,
                Dir::FromDevice,
                true,
                &mut batch,
            );
            c.check(e.finish(batch).is_ok(), "unmapped");
            c.check(fx.entry(4) == 0 && fx.entry(5) == 0, "nothing left shared");
        });
    Fixture::new().with(Mode::Share, |e, _, _, fx| {
        let w = e.map(4 * PAGE_SIZE, PAGE_SIZE, Dir::FromDevice, true);
        c.check(
            w.is_ok() && fx.entry(4) == Perm::ReadWrite.bits(),
            "without the feature, read-write",
        );
    });
}

/// In sync mode two live buffers on one page share it once: the first
/// unmap leaves the page shared for the second, the last one revokes it,
/// and the host's access is the union of the live mappings.
pub fn sync_mode_counts_shared_pages(c: &dyn Check) {
    Fixture::new().with(Mode::Sync, |e, hyp, _, _| {
        let p = PAGE_SIZE;
        let a = e.map(4 * p, p, Dir::ToDevice, true);
        let b = e.map(4 * p, 2 * p, Dir::Bidirectional, true);
        c.check(a.is_ok() && b.is_ok(), "both mapped in place");
        let mut batch = Batch::default();
        e.unmap(a.unwrap_or(0), p, Dir::ToDevice, true, &mut batch);
        c.check(
            hyp.host_reaches(4, 1),
            "the first unmap leaves the page to the second buffer",
        );
        e.unmap(b.unwrap_or(0), 2 * p, Dir::Bidirectional, true, &mut batch);
        c.check(e.finish(batch).is_ok(), "unmapped");
        c.check(!hyp.host_reaches(4, 2), "the last unmap revokes both pages");
        c.check(!e.is_broken(), "no error");
    });
}

/// A full ring forces a `SYNC` and the mapping still succeeds.
pub fn full_ring_forces_a_sync(c: &dyn Check) {
    Fixture::new().with(Mode::Share, |e, hyp, _, _| {
        let mut ok = true;
        for i in 0..(RING as u64 + 2) {
            ok &= e
                .map((20 + 2 * i) * PAGE_SIZE, PAGE_SIZE, Dir::ToDevice, true)
                .is_ok();
        }
        c.check(ok, "every map succeeded");
        c.check(
            hyp.count(Func::Sync) >= 1,
            "the full ring was drained by a SYNC",
        );
        c.check(
            hyp.records.load(Ordering::Relaxed) >= RING as u64,
            "the mock consumed the records",
        );
    });
}

/// A hostile or silent `SYNC` breaks the engine: pages are accounted as
/// leaked and no further mapping is accepted. (`BUSY` is retried: see
/// [`busy_is_retried`].)
pub fn failed_unshare_breaks_the_engine(c: &dyn Check) {
    for answer in [SyncAnswer::Hostile, SyncAnswer::Timeout] {
        Fixture::new().with(Mode::Share, |e, hyp, _, fx| {
            let _ = e.map(30 * PAGE_SIZE, 2 * PAGE_SIZE, Dir::ToDevice, true);
            hyp.answer_sync(answer);
            let mut b = Batch::default();
            e.unmap(30 * PAGE_SIZE, 2 * PAGE_SIZE, Dir::ToDevice, true, &mut b);
            c.check(e.finish(b).is_err(), "the unmap reports the failure");
            c.check(e.is_broken(), "the engine is broken");
            c.check(
                fx.stats.get(Counter::PagesLeaked) == 2,
                "both pages accounted as leaked",
            );
            c.check(
                e.map(40 * PAGE_SIZE, PAGE_SIZE, Dir::ToDevice, true) == Err(DmaError::Broken),
                "later maps are refused",
            );
        });
    }
}

/// `BUSY` is transient (the ABI says: retry the same call). A `SYNC`,
/// `SHARE` or `UNSHARE` answered `BUSY` a few times is retried until it
/// succeeds, and the engine stays sound; a hypervisor that stays `BUSY`
/// fails the call after a bounded number of tries, like one that does
/// not answer, and breaks the engine rather than hanging it.
pub fn busy_is_retried(c: &dyn Check) {
    Fixture::new().with(Mode::Share, |e, hyp, _, fx| {
        let _ = e.map(30 * PAGE_SIZE, 2 * PAGE_SIZE, Dir::ToDevice, true);
        hyp.busy_then_ok(3);
        let mut b = Batch::default();
        e.unmap(30 * PAGE_SIZE, 2 * PAGE_SIZE, Dir::ToDevice, true, &mut b);
        c.check(
            e.finish(b).is_ok(),
            "the unmap succeeds once SYNC stops answering BUSY",
        );
        c.check(
            hyp.count(Func::Sync) == 4,
            "three BUSY SYNCs retried, then one that succeeds",
        );
        c.check(!e.is_broken(), "the engine is not broken by BUSY");
        c.check(fx.entry(30) == 0 && fx.entry(31) == 0, "entries cleared");
        c.check(
            hyp.records.load(Ordering::Relaxed) == 2,
            "the retried SYNC drained both records",
        );
        c.check(
            fx.stats.get(Counter::UnshareErrors) == 0 && fx.stats.get(Counter::PagesLeaked) == 0,
            "no unshare error and no leaked page",
        );
    });
    Fixture::new().with(Mode::Sync, |e, hyp, _, _| {
        hyp.busy_then_ok(2);
        let r = e.map(50 * PAGE_SIZE, PAGE_SIZE, Dir::ToDevice, true);
        c.check(r.is_ok(), "a SHARE answered BUSY twice is retried");
        c.check(hyp.count(Func::Share) == 3, "three SHARE calls");
        hyp.busy_then_ok(2);
        let mut b = Batch::default();
        e.unmap(50 * PAGE_SIZE, PAGE_SIZE, Dir::ToDevice, true, &mut b);
        c.check(e.finish(b).is_ok(), "the unmap succeeds");
        c.check(
            !e.is_broken(),
            "an UNSHARE answered BUSY twice is retried, not fatal",
        );
        c.check(hyp.count(Func::Unshare) == 3, "three UNSHARE calls");
    });
    Fixture::new().with(Mode::Share, |e, hyp, _, fx| {
        let _ = e.map(30 * PAGE_SIZE, 2 * PAGE_SIZE, Dir::ToDevice, true);
        hyp.answer_sync(SyncAnswer::Busy);
        let mut b = Batch::default();
        e.unmap(30 * PAGE_SIZE, 2 * PAGE_SIZE, Dir::ToDevice, true, &mut b);
        c.check(
            e.finish(b).is_err(),
            "a SYNC that stays BUSY fails the unmap",
        );
        c.check(
            hyp.count(Func::Sync) == BUSY_TRIES,
            "after a bounded number of tries",
        );
        c.check(e.is_broken(), "and breaks the engine");
        c.check(
            fx.stats.get(Counter::PagesLeaked) == 2,
            "both pages accounted as leaked",
        );
    });
}

/// `sync` mode follows the hypervisor's partial progress.
pub fn sync_mode_follows_partial_progress(c: &dyn Check) {
    Fixture::new().with(Mode::Sync, |e, hyp, _, _| {
        hyp.direct_step.store(1, Ordering::Relaxed);
        let r = e.map(50 * PAGE_SIZE, 3 * PAGE_SIZE, Dir::ToDevice, true);
        c.check(r.is_ok(), "map succeeds");
        c.check(
            hyp.count(Func::Share) == 3,
            "three SHARE calls for three pages, one at a time",
        );
        hyp.direct_step.store(0, Ordering::Relaxed);
        let r = e.map(54 * PAGE_SIZE, PAGE_SIZE, Dir::ToDevice, true);
        c.check(
            r.is_err(),
            "a hypervisor that never progresses is an error, not a hang",
        );
    });
}

/// The bounce pool refuses what does not fit, and never double-frees.
pub fn pool_exhaustion_is_an_error(c: &dyn Check) {
    Fixture::new().with(Mode::Bounce, |e, _, _, fx| {
        let big = e.map(
            PAGE_SIZE,
            (POOL_PAGES as u64 + 1) * PAGE_SIZE,
            Dir::ToDevice,
            true,
        );
        c.check(
            big == Err(DmaError::PoolFull),
            "larger than the pool: PoolFull",
        );
        c.check(fx.stats.get(Counter::PoolExhausted) == 1, "counted");
        let d = e
            .map(PAGE_SIZE, PAGE_SIZE, Dir::ToDevice, true)
            .unwrap_or(0);
        let slots = super::pool::Slots {
            first: e.pool().slot_of(d),
            pages: 1,
        };
        c.check(e.pool().free(slots), "first free succeeds");
        c.check(!e.pool().free(slots), "double free refused");
    });
}

/// A pool running low asks to grow, once; a grown chunk serves the next
/// mapping; growing is a `SHARE` of the chunk, counted apart from the
/// mappings' calls, and stops at the pool's maximum.
pub fn full_pool_grows(c: &dyn Check) {
    Fixture::new().with(Mode::Bounce, |e, hyp, _, fx| {
        let half = POOL_PAGES as u64 / 2 * PAGE_SIZE;
        c.check(
            e.max_mapping_size() <= half,
            "a mapping is at most half a chunk",
        );
        let a = e.map(PAGE_SIZE, half, Dir::ToDevice, true);
        c.check(!e.take_grow_request(), "half full: no growth asked");
        let b = e.map(PAGE_SIZE * 8, half, Dir::FromDevice, true);
        c.check(a.is_ok() && b.is_ok(), "chunk 0 filled");
        c.check(e.take_grow_request(), "full: growth asked");
        c.check(!e.take_grow_request(), "and asked once");
        let refused = e.map(PAGE_SIZE * 16, PAGE_SIZE, Dir::ToDevice, true);
        c.check(refused == Err(DmaError::PoolFull), "full: PoolFull");
        c.check(e.take_grow_request(), "a refused mapping asks again");

        c.check(e.grow_pool(GROW_BASE).is_ok(), "the pool grows");
        c.check(e.pool().chunks() == 2, "two chunks");
        c.check(
            hyp.count(Func::Share) == 1
                && fx.stats.get(Counter::HcallPoolShare) == 1
                && fx.stats.get(Counter::HcallShare) == 0,
            "one SHARE, counted apart from the mappings'",
        );
        c.check(
            fx.stats.get(Counter::PoolGrowPages) == POOL_PAGES as u64,
            "the chunk's pages counted",
        );
        let d = e
            .map(PAGE_SIZE * 16, PAGE_SIZE, Dir::ToDevice, true)
            .unwrap_or(0);
        c.check(
            (GROW_BASE..GROW_BASE + POOL_PAGES as u64 * PAGE_SIZE).contains(&d),
            "served from the new chunk",
        );
        c.check(
            e.grow_pool(GROW_BASE - half * 2).is_err(),
            "no growth beyond the maximum",
        );
        c.check(
            fx.stats.get(Counter::PoolGrowFailed) == 1,
            "the refused growth counted",
        );
        c.check(
            fx.stats.pool_high_water.load(Ordering::Relaxed) == POOL_PAGES as u64 + 1,
            "high-water mark",
        );
        let mut batch = Batch::default();
        for (dma, size) in [(a, half), (b, half), (Ok(d), PAGE_SIZE)] {
            e.unmap(dma.unwrap_or(0), size, Dir::ToDevice, true, &mut batch);
        }
        c.check(e.finish(batch).is_ok(), "unmapped");
        c.check(e.pool().used() == 0, "every slot freed, in both chunks");
    });
}

/// One test case.
pub type Case = fn(&dyn Check);

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("map_is_exit_free", map_is_exit_free),
    (
        "entry_is_union_of_live_mappings",
        entry_is_union_of_live_mappings,
    ),
    (
        "unmap_revokes_what_map_granted",
        unmap_revokes_what_map_granted,
    ),
    ("sub_page_buffers_bounce", sub_page_buffers_bounce),
    ("page_crossing_buffer_bounces", page_crossing_buffer_bounces),
    ("bounce_slots_never_leak", bounce_slots_never_leak),
    ("one_sync_per_unmap_call", one_sync_per_unmap_call),
    ("one_sync_per_virtio_buffer", one_sync_per_virtio_buffer),
    (
        "one_record_per_run_of_a_buffer",
        one_record_per_run_of_a_buffer,
    ),
    (
        "unpublished_record_blocks_no_revocation",
        unpublished_record_blocks_no_revocation,
    ),
    ("dma_mask_is_honoured", dma_mask_is_honoured),
    ("full_ring_forces_a_sync", full_ring_forces_a_sync),
    (
        "failed_unshare_breaks_the_engine",
        failed_unshare_breaks_the_engine,
    ),
    ("busy_is_retried", busy_is_retried),
    (
        "sync_mode_follows_partial_progress",
        sync_mode_follows_partial_progress,
    ),
    ("pool_exhaustion_is_an_error", pool_exhaustion_is_an_error),
    ("full_pool_grows", full_pool_grows),
    ("coherent_mask_is_honoured", coherent_mask_is_honoured),
    ("thresholds_follow_direction", thresholds_follow_direction),
    ("from_device_is_write_only", from_device_is_write_only),
    (
        "sync_mode_counts_shared_pages",
        sync_mode_counts_shared_pages,
    ),
];
