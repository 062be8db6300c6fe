// SPDX-License-Identifier: GPL-2.0

//! The engine's test cases against a mock hypervisor, written once and
//! run twice: as KUnit cases inside the kernel (`tests.rs`) and by
//! `cargo test` in userspace (`tests/selftest.rs` of this crate).
//!
//! The mock hypervisor is what `io-pgtable-arm-selftests.c` calls a fake
//! backend with checking callbacks: it consumes the real ring on `SYNC`,
//! counts every call, and can be told to misbehave.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::abi::call::{Func, Status, NR_ARGS};
use super::abi::layout::{Perm, PAGE_SIZE};
use super::abi::ring::{consume, Producer, RingHeader, RingSlot};
use super::abi::tracker::PageTracker;
use super::engine::{Batch, Config, Copier, DmaError, Engine, Hypercalls};
use super::mailbox::{RawResult, TransportError};
use super::policy::{Dir, Mode};
use super::pool::Pool;
use super::stats::Stats;

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
    /// Refuse with `BUSY`.
    Busy,
}

/// A mock hypervisor over the test's ring.
pub struct MockHyp<'a> {
    header: &'a RingHeader,
    slots: &'a [RingSlot],
    consumer: AtomicU64,
    /// Calls by function number.
    pub calls: [AtomicU32; 6],
    /// Records the mock consumed.
    pub records: AtomicU64,
    /// `SHARE`/`UNSHARE`: pages done per call at most (partial progress).
    pub direct_step: AtomicU64,
    answer: AtomicU8,
    /// Serialises `SYNC`s, as a hypervisor serialises its consumer.
    consuming: core::sync::atomic::AtomicBool,
    /// What `relax` does (userspace threads yield; see `Fixture::with_relax`).
    relax: fn(),
}

impl<'a> MockHyp<'a> {
    /// A mock draining `header`/`slots` on `SYNC`.
    pub fn new(header: &'a RingHeader, slots: &'a [RingSlot]) -> Self {
        MockHyp {
            header,
            slots,
            consumer: AtomicU64::new(0),
            calls: Default::default(),
            records: AtomicU64::new(0),
            direct_step: AtomicU64::new(u64::MAX),
            answer: AtomicU8::new(0),
            consuming: core::sync::atomic::AtomicBool::new(false),
            relax: core::hint::spin_loop,
        }
    }

    /// Sets how `SYNC` is answered from now on.
    pub fn answer_sync(&self, a: SyncAnswer) {
        self.answer.store(a as u8, Ordering::Relaxed);
    }

    /// Number of calls of `func`.
    pub fn count(&self, func: Func) -> u32 {
        self.calls[func as usize].load(Ordering::Relaxed)
    }
}

impl Hypercalls for MockHyp<'_> {
    fn call(&self, func: Func, args: [u64; NR_ARGS]) -> Result<RawResult, TransportError> {
        self.calls[func as usize].fetch_add(1, Ordering::Relaxed);
        let ok = |ret| Ok(RawResult { status: 0, ret });
        match func {
            Func::Sync => match self.answer.load(Ordering::Relaxed) {
                a if a == SyncAnswer::Timeout as u8 => Err(TransportError::Timeout),
                a if a == SyncAnswer::Busy as u8 => Ok(RawResult {
                    status: Status::Busy.raw(),
                    ret: [0; 3],
                }),
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
                        |_, _| n += 1,
                    );
                    self.consumer.store(c, Ordering::Relaxed);
                    self.consuming.store(false, Ordering::Release);
                    self.records.fetch_add(n, Ordering::Relaxed);
                    ok([n, 0, 0])
                }
            },
            Func::Share | Func::Unshare => {
                let done = core::cmp::min(args[1], self.direct_step.load(Ordering::Relaxed));
                ok([done, 0, 0])
            }
            _ => ok([0; 3]),
        }
    }

    fn relax(&self) {
        (self.relax)();
    }
}

/// A copier that counts instead of copying (test "physical" addresses are
/// not real memory).
#[derive(Default)]
pub struct CountingCopier {
    /// Copies made.
    pub copies: AtomicU64,
    /// Bytes copied.
    pub bytes: AtomicU64,
}

impl Copier for CountingCopier {
    fn copy(&self, _dst: u64, _src: u64, len: u64) {
        self.copies.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len, Ordering::Relaxed);
    }
}

const FRAMES: usize = 64;
const RING: usize = 4;
const POOL_PAGES: usize = 8;
/// The fake pool sits above the tracked frames.
const POOL_BASE: u64 = (FRAMES as u64) * PAGE_SIZE;

/// The shared structures of one test, on the stack.
pub struct Fixture {
    state: [AtomicU32; FRAMES],
    table: [AtomicU8; FRAMES],
    header: RingHeader,
    slots: [RingSlot; RING],
    bitmap: [AtomicU64; 1],
    orig: [AtomicU64; POOL_PAGES],
    stats: Stats,
}

impl Fixture {
    /// Zeroed structures.
    pub fn new() -> Self {
        Fixture {
            state: [const { AtomicU32::new(0) }; FRAMES],
            table: [const { AtomicU8::new(0) }; FRAMES],
            header: RingHeader::new(),
            slots: [const { RingSlot::new() }; RING],
            bitmap: [const { AtomicU64::new(0) }; 1],
            orig: [const { AtomicU64::new(0) }; POOL_PAGES],
            stats: Stats::new(),
        }
    }

    /// Runs `f` with an engine in `mode` over this fixture.
    pub fn with<R>(
        &self,
        mode: Mode,
        f: impl FnOnce(
            &Engine<'_, &MockHyp<'_>, &CountingCopier>,
            &MockHyp<'_>,
            &CountingCopier,
            &Self,
        ) -> R,
    ) -> Option<R> {
        self.with_relax(mode, core::hint::spin_loop, f)
    }

    /// [`Fixture::with`], with the mock's `relax` (a thread yield for
    /// tests whose threads the OS may preempt mid-reservation).
    pub fn with_relax<R>(
        &self,
        mode: Mode,
        relax: fn(),
        f: impl FnOnce(
            &Engine<'_, &MockHyp<'_>, &CountingCopier>,
            &MockHyp<'_>,
            &CountingCopier,
            &Self,
        ) -> R,
    ) -> Option<R> {
        let mut hyp = MockHyp::new(&self.header, &self.slots);
        hyp.relax = relax;
        let copier = CountingCopier::default();
        let cfg = Config {
            mode,
            strict: true,
            lazy_max_pages: 16,
            bounce_threshold: PAGE_SIZE,
        };
        let engine = Engine::new(
            cfg,
            PageTracker::new(&self.state, &self.table).ok()?,
            Producer::new(&self.header, &self.slots).ok()?,
            Pool::new(POOL_BASE, &self.bitmap, &self.orig)?,
            &hyp,
            &copier,
            &self.stats,
        );
        Some(f(&engine, &hyp, &copier, self))
    }

    /// The driver's counters.
    pub fn stats(&self) -> &Stats {
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
            hyp.calls.iter().all(|n| n.load(Ordering::Relaxed) == 0),
            "no hypercall on map",
        );
        c.check(
            fx.stats.ring_records.load(Ordering::Relaxed) == 1,
            "one ring record",
        );
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
        let drains = fx.stats.ring_full.load(Ordering::Relaxed);
        c.check(drains == 1, "the small ring filled once");
        c.check(
            u64::from(hyp.count(Func::Sync)) - drains == 1,
            "three entries, one invalidating SYNC",
        );
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

/// A hostile, failing or silent `SYNC` breaks the engine: pages are
/// accounted as leaked and no further mapping is accepted.
pub fn failed_unshare_breaks_the_engine(c: &dyn Check) {
    for answer in [SyncAnswer::Hostile, SyncAnswer::Timeout, SyncAnswer::Busy] {
        Fixture::new().with(Mode::Share, |e, hyp, _, fx| {
            let _ = e.map(30 * PAGE_SIZE, 2 * PAGE_SIZE, Dir::ToDevice, true);
            hyp.answer_sync(answer);
            let mut b = Batch::default();
            e.unmap(30 * PAGE_SIZE, 2 * PAGE_SIZE, Dir::ToDevice, true, &mut b);
            c.check(e.finish(b).is_err(), "the unmap reports the failure");
            c.check(e.is_broken(), "the engine is broken");
            c.check(
                fx.stats.pages_leaked.load(Ordering::Relaxed) == 2,
                "both pages accounted as leaked",
            );
            c.check(
                e.map(40 * PAGE_SIZE, PAGE_SIZE, Dir::ToDevice, true) == Err(DmaError::Broken),
                "later maps are refused",
            );
        });
    }
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
        c.check(
            fx.stats.pool_exhausted.load(Ordering::Relaxed) == 1,
            "counted",
        );
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

/// One test case.
pub type Case = fn(&dyn Check);

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("map_is_exit_free", map_is_exit_free),
    (
        "entry_is_union_of_live_mappings",
        entry_is_union_of_live_mappings,
    ),
    ("sub_page_buffers_bounce", sub_page_buffers_bounce),
    ("page_crossing_buffer_bounces", page_crossing_buffer_bounces),
    ("one_sync_per_unmap_call", one_sync_per_unmap_call),
    ("full_ring_forces_a_sync", full_ring_forces_a_sync),
    (
        "failed_unshare_breaks_the_engine",
        failed_unshare_breaks_the_engine,
    ),
    (
        "sync_mode_follows_partial_progress",
        sync_mode_follows_partial_progress,
    ),
    ("pool_exhaustion_is_an_error", pool_exhaustion_is_an_error),
];
