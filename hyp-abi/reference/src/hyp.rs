// SPDX-License-Identifier: GPL-2.0-only

//! The hypervisor state machine: calls, ring drain and host access checks.

use crate::counters::Counters;
use crate::pages::{host_bits, shareable, DIRECT_SHIFT, FORBIDDEN, PERM_BITS, RAM, TABLE_SHIFT};
use crate::ram::{GuestRam, OutOfRange};
use crate::sync::{fence, Ordering};
use pviommu_hyp_abi::call::{
    reserved_args_zero, Func, Stat, Status, ABI_VERSION, FEATURES_KNOWN, NR_ARGS, NR_RETS,
    NR_STATS, STATS,
};
use pviommu_hyp_abi::layout::{
    record_seq, ring_bytes, Perm, RingRecord, PAGE_SHIFT, PAGE_SIZE, RING_CONSUMER_OFFSET,
    RING_HEADER_SIZE, RING_ORDER_MIN, RING_PRODUCER_OFFSET, RING_RECORD_SIZE, TABLE_RESERVED_MASK,
};
use std::ops::Range;

/// Largest `ring_order` this hypervisor accepts (`VERSION` reports it).
pub const MAX_RING_ORDER: u32 = 16;
/// Most guest frames tracked (256 GiB of guest-physical space).
const MAX_FRAMES: u64 = 1 << 26;
/// Most pages one direct `SHARE`, `UNSHARE` or `APPLY` call handles: bounds
/// the time of a call and makes guests exercise their partial-progress loop.
pub const DIRECT_BUDGET: u64 = 512;
/// Most table entries one drain applies, counted as the `nr_pages` of the
/// records it takes (what the guest names, merged runs or not). A record
/// that would take a drain past it is left for the next drain, unless it
/// is the first record the drain takes: a record larger than the budget
/// is then applied alone, so every drain makes progress. `SYNC` answers
/// `BUSY` when its drain stopped so. 2^16 is the largest ring
/// (`MAX_RING_ORDER`) of one-page records, and the driver's default ring
/// (order 12) of 64 KiB buffers: a guest that maps ordinary buffers never
/// sees `BUSY`, and a hostile one gets at most 2^16 steps per drain (or one
/// record of at most `table_frames`) instead of a ring of records each as
/// large as the table. pKVM's EL2 drain applies the same rule with 4096.
pub const DRAIN_BUDGET: u64 = 1 << 16;
/// Ring records read per guest-memory copy.
const CHUNK: usize = 64;
/// Table bytes read per guest-memory copy.
const SCRATCH: usize = 4096;
/// Frames per bit of the change journal (`take_changes`): 64, so that one
/// journal word covers 4096 frames (16 MiB of guest-physical space).
const CHANGE_SHIFT: u32 = 6;

/// Permission of each table entry value: 0 to 3 are valid (2, write-only,
/// since ABI 2.2, which this hypervisor enforces: `FEATURE_WRITE_ONLY`);
/// any reserved bit fails safe to no access, flagged by 0x80.
const ENTRY_PERM: [u8; 256] = {
    let mut t = [0x80u8; 256];
    t[0] = 0;
    t[1] = 1;
    t[2] = 2;
    t[3] = 3;
    t
};

/// Counter lanes of a `TRANSITION` value, shifted right by 8.
const LANE_SHARED: u32 = 16;
const LANE_UNSHARED: u32 = 32;
const LANE_FORBIDDEN: u32 = 48;
/// The lanes of a `step` result that say a page's host access changed.
const LANES_CHANGED: u64 = 0xffff_ffff << LANE_SHARED;

// A lane counts at most 0xffff events, and `APPLY` applies up to
// `DIRECT_BUDGET` entries in one `apply_entries`: they must fit.
const _: () = assert!(DIRECT_BUDGET < 1 << 16);

/// Applying table permission `perm` to a page in state `old` (its low six
/// bits), indexed by `old << 2 | perm`: the new low six bits in bits 0..8,
/// and above bit 8 one count in the lanes of the events it causes.
const TRANSITION: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let old = (i >> 2) as u8;
        let perm = (i & 3) as u8;
        let allowed = if shareable(old) { perm } else { 0 };
        let new = (old & !(0x3 << TABLE_SHIFT)) | (allowed << TABLE_SHIFT);
        let (ho, hn) = (host_bits(old), host_bits(new));
        let mut v = new as u64;
        if hn & !ho != 0 {
            v |= 1 << (8 + LANE_SHARED);
        }
        if ho & !hn != 0 {
            v |= 1 << (8 + LANE_UNSHARED);
        }
        if allowed != perm {
            v |= 1 << (8 + LANE_FORBIDDEN);
        }
        t[i] = v;
        i += 1;
    }
    t
};

/// Static configuration of the guest.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Guest-physical ranges of guest RAM; only whole pages inside count.
    pub ram: Vec<Range<u64>>,
}

/// Direction of a host access to guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The host reads guest memory (DMA to a device): needs `Perm::Read`.
    Read,
    /// The host writes guest memory (DMA from a device): needs `Perm::Write`
    /// (a write-only or a read-write page).
    Write,
}

/// Why the guest exited to the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A hypercall (mailbox doorbell or `HVC`).
    Hypercall,
    /// A virtio queue notification.
    QueueKick,
    /// A host access to a page it had no access to.
    Fault,
}

/// Result of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallResult {
    /// A `Status` value.
    pub status: i64,
    /// Return values `r0..r2`.
    pub ret: [u64; NR_RETS],
}

impl CallResult {
    fn ok(ret: [u64; NR_RETS]) -> Self {
        CallResult { status: 0, ret }
    }

    fn err(status: Status) -> Self {
        CallResult {
            status: status.raw(),
            ret: [0; NR_RETS],
        }
    }
}

/// A refused host access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Start of the access.
    pub gpa: u64,
    /// Length of the access in bytes.
    pub len: u64,
    /// Direction of the access.
    pub access: Access,
}

/// What one drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainStats {
    /// Published records applied.
    pub records: u64,
    /// Malformed records and producer values skipped.
    pub bad_records: u64,
    /// Pages whose host access was widened.
    pub pages_shared: u64,
    /// Pages whose host access was reduced.
    pub pages_unshared: u64,
    /// Table entries the applied records name, summed over the records:
    /// what `DRAIN_BUDGET` bounds.
    pub entries: u64,
    /// The drain stopped before a published, well-formed record because
    /// applying it would exceed `DRAIN_BUDGET`: work is left in the ring.
    pub out_of_budget: bool,
    /// Consumer index after the drain.
    pub consumer: u64,
}

/// What `INIT` registered.
#[derive(Clone, Copy, Debug)]
struct Regs {
    table_gpa: u64,
    table_frames: u64,
    ring_gpa: u64,
    ring_order: u32,
}

/// The reference hypervisor of one guest.
#[derive(Debug)]
pub struct Hypervisor {
    /// Per-frame state, see `pages.rs`.
    pages: Vec<u8>,
    regs: Option<Regs>,
    /// The authoritative consumer index; the copy in guest memory is only
    /// ever written, never trusted.
    consumer: u64,
    /// A reduction was applied by a drain and awaits its invalidation.
    pending_invalidate: bool,
    counters: Counters,
    bad_table_entries: u64,
    forbidden_shares: u64,
    scratch: Vec<u8>,
    /// The change journal: bit `i` says that the host permission of some
    /// frame in `i << CHANGE_SHIFT ..` may have changed since the last
    /// `take_changes`.
    changed: Vec<u64>,
    /// Some bit of `changed` is set.
    any_changed: bool,
}

/// Returns the frame range `[gpa, gpa + bytes)` covers, if page aligned.
fn frames(gpa: u64, bytes: u64) -> Option<Range<u64>> {
    if gpa % PAGE_SIZE != 0 {
        return None;
    }
    let start = gpa >> PAGE_SHIFT;
    let end = start.checked_add(bytes.checked_add(PAGE_SIZE - 1)? >> PAGE_SHIFT)?;
    Some(start..end)
}

/// Returns how many of the frames `[gfn, gfn + nr)`, counted from `gfn`, lie
/// inside a table of `tf` frames. This is the one bound on what the guest
/// may name: a ring record must lie wholly inside (`== nr`, else it is a bad
/// record), and `APPLY` does the frames inside and refuses the first one
/// outside.
fn in_table(gfn: u64, nr: u64, tf: u64) -> u64 {
    tf.saturating_sub(gfn).min(nr)
}

/// Reads the ring records at `gpa` into `buf` the way the spec orders it:
/// every record's `seq` first, then an Acquire fence, then its `gfn` and
/// `nr_pages` (from `payloads`, a second copy).
///
/// One copy of whole records, then a fence, is not enough: the copy may
/// read a slot's payload before the guest writes it and its `seq` after
/// the guest publishes it, and the record would be taken as published
/// with a stale payload -- an unmap's frames never applied, the consumer
/// moved past them. A record whose `seq` changed between the two copies
/// (the guest reused the slot meanwhile) is left unpublished for the next
/// drain: its `seq` in `buf` is made one that never matches.
fn read_records(
    ram: &dyn GuestRam,
    gpa: u64,
    buf: &mut [u8],
    payloads: &mut [u8],
) -> Result<(), OutOfRange> {
    ram.read(gpa, buf)?;
    // Acquire: pairs with the guest's Release store of each `seq`, so the
    // payloads and table entries read below are the ones written before.
    fence(Ordering::Acquire);
    let second = payloads.get_mut(..buf.len()).ok_or(OutOfRange)?;
    ram.read(gpa, second)?;
    let size = RING_RECORD_SIZE as usize;
    for (first, again) in buf.chunks_exact_mut(size).zip(second.chunks_exact(size)) {
        let reused = first[12..16] != again[12..16];
        first[..12].copy_from_slice(&again[..12]);
        if reused {
            // With its top bit flipped, the slot's record reaches this
            // `seq` only 2^31 records later: not published now.
            first[15] ^= 0x80;
        }
    }
    Ok(())
}

/// Counts the leading records of `buf` that are published (`seq` on) and
/// each start where the previous ends (from `end`), ending at or before
/// `limit` (the table's end, or where the drain's budget runs out: these
/// records name exactly the frames from the old `end` to the new one);
/// returns that count and the new end. This is the drain's common case, a
/// burst of buffers mapped one after the other, kept to a few instructions
/// per record.
fn extend_run(buf: &[u8], mut seq: u32, mut end: u64, limit: u64) -> (usize, u64) {
    let mut n = 0;
    for raw in buf.chunks_exact(RING_RECORD_SIZE as usize) {
        let Ok(raw) = <&[u8; 16]>::try_from(raw) else {
            break;
        };
        let rec = RingRecord::from_le_bytes(raw);
        let nr = u64::from(rec.nr_pages);
        // `nr - 1` wraps for 0, so one compare rejects empty and long records.
        if rec.seq != seq || rec.gfn != end || nr.wrapping_sub(1) >= limit.saturating_sub(end) {
            break;
        }
        end += nr;
        seq = seq.wrapping_add(1);
        n += 1;
    }
    (n, end)
}

/// Applies table entry `entry` to a page's state with one table lookup and
/// returns the events it caused in 16-bit lanes: bad entry (bits 0..16),
/// shared, unshared and refused (`LANE_*`). This is the per-page cost of
/// every drain.
#[inline(always)]
fn step(page: &mut u8, entry: u8) -> u64 {
    let e = ENTRY_PERM[usize::from(entry)];
    let old = *page;
    let t = TRANSITION[usize::from(((old & 0x3f) << 2) | (e & 0x3))];
    *page = (old & !0x3f) | (t & 0xff) as u8;
    (t >> 8) + u64::from(e >> 7)
}

fn overlap(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

impl Hypervisor {
    /// Creates the hypervisor of a guest with the given RAM layout.
    pub fn new(config: Config) -> Hypervisor {
        let end = config
            .ram
            .iter()
            .map(|r| r.end >> PAGE_SHIFT)
            .max()
            .unwrap_or(0);
        let nr = end.min(MAX_FRAMES);
        let mut pages = vec![0u8; nr as usize];
        for r in &config.ram {
            let first = r.start.div_ceil(PAGE_SIZE);
            let last = (r.end >> PAGE_SHIFT).min(nr);
            for gfn in first..last {
                pages[gfn as usize] |= RAM;
            }
        }
        Hypervisor {
            pages,
            regs: None,
            consumer: 0,
            pending_invalidate: false,
            counters: Counters::default(),
            bad_table_entries: 0,
            forbidden_shares: 0,
            scratch: vec![0; SCRATCH],
            changed: vec![0; (nr as usize >> CHANGE_SHIFT).div_ceil(64) + 1],
            any_changed: false,
        }
    }

    /// Calls `f` with ranges of frames that cover every frame whose host
    /// permission changed since the last call (and maybe a few more), in
    /// ascending order, and forgets them.
    ///
    /// This is how whatever enforces the host view (the host's page tables
    /// or, in the QEMU harness, the device backends' mappings of guest
    /// RAM) learns what to update after a call, a drain or a fault,
    /// without scanning every frame: the state machine marks what it
    /// changes, 64 frames per bit, at a cost per applied run rather than
    /// per page. Reductions reported here are not invalidated yet; the
    /// `invalidations` counter says when they are.
    pub fn take_changes(&mut self, mut f: impl FnMut(Range<u64>)) {
        if !std::mem::take(&mut self.any_changed) {
            return;
        }
        let frames = self.pages.len() as u64;
        let mut run: Option<Range<u64>> = None;
        for (w, word) in self.changed.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let chunk = (w as u64) * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                let start = chunk << CHANGE_SHIFT;
                let end = ((chunk + 1) << CHANGE_SHIFT).min(frames);
                if start >= end {
                    continue;
                }
                match &mut run {
                    Some(r) if r.end == start => r.end = end,
                    _ => {
                        if let Some(r) = run.replace(start..end) {
                            f(r);
                        }
                    }
                }
            }
        }
        if let Some(r) = run {
            f(r);
        }
    }

    /// Notes in the change journal that frames `frames` may have changed.
    fn mark_changed(&mut self, frames: Range<u64>) {
        let end = frames.end.min(self.pages.len() as u64);
        if frames.start >= end {
            return;
        }
        for chunk in frames.start >> CHANGE_SHIFT..=(end - 1) >> CHANGE_SHIFT {
            if let Some(word) = self.changed.get_mut((chunk / 64) as usize) {
                *word |= 1 << (chunk % 64);
            }
        }
        self.any_changed = true;
    }

    /// Returns the counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts an exit.
    pub fn record_exit(&mut self, kind: ExitKind) {
        match kind {
            ExitKind::Hypercall => self.counters.exits_hypercall += 1,
            ExitKind::QueueKick => self.counters.exits_queue_kick += 1,
            ExitKind::Fault => self.counters.exits_fault += 1,
        }
    }

    /// Returns whether `INIT` succeeded and no `RESET` followed.
    pub fn is_initialised(&self) -> bool {
        self.regs.is_some()
    }

    /// Returns the frames of the table and of the ring `INIT` registered,
    /// if any: the pages that must never be host-visible.
    pub fn registered(&self) -> Option<(Range<u64>, Range<u64>)> {
        let regs = self.regs?;
        let table = frames(regs.table_gpa, regs.table_frames)?;
        let ring = frames(regs.ring_gpa, ring_bytes(regs.ring_order))?;
        Some((table, ring))
    }

    /// Returns the consumer index of the ring.
    pub fn consumer(&self) -> u64 {
        self.consumer
    }

    /// Returns the access the host has to frame `gfn`.
    pub fn host_perm(&self, gfn: u64) -> Perm {
        let page = usize::try_from(gfn)
            .ok()
            .and_then(|i| self.pages.get(i))
            .copied()
            .unwrap_or(0);
        Perm::from_entry_or_none(host_bits(page))
    }

    /// Performs call `func` with arguments `args`.
    ///
    /// Does not count an exit: the transport does (see `record_exit`).
    pub fn call(&mut self, ram: &dyn GuestRam, func: u32, args: [u64; NR_ARGS]) -> CallResult {
        let result = match Func::from_raw(func) {
            None => {
                self.counters.calls_unknown += 1;
                CallResult::err(Status::NotSupported)
            }
            Some(f) => {
                self.counters.calls[f as usize] += 1;
                if !reserved_args_zero(&args, f.nr_args()) {
                    CallResult::err(Status::InvalidParameter)
                } else {
                    match f {
                        Func::Version => CallResult::ok([
                            ABI_VERSION.into(),
                            FEATURES_KNOWN,
                            MAX_RING_ORDER.into(),
                        ]),
                        Func::Init => self.init(ram, args),
                        Func::Sync => self.sync(ram),
                        Func::Share => self.share(args[0], args[1], args[2]),
                        Func::Unshare => self.unshare(args[0], args[1]),
                        Func::Reset => self.reset(),
                        Func::Apply => self.apply(ram, args[0], args[1]),
                        Func::Stats => self.stats(args[0]),
                    }
                }
            }
        };
        self.counters.count_status(result.status);
        self.sync_counters();
        result
    }

    /// `STATS`: one counter by index, and how many there are.
    fn stats(&self, index: u64) -> CallResult {
        let Some(&stat) = usize::try_from(index).ok().and_then(|i| STATS.get(i)) else {
            return CallResult::err(Status::InvalidParameter);
        };
        let c = &self.counters;
        let value = match stat {
            Stat::Drains => c.drains,
            Stat::Records => c.records_consumed,
            Stat::BadRecords => c.bad_records,
            Stat::PagesShared => c.pages_shared,
            Stat::PagesUnshared => c.pages_unshared,
            Stat::Invalidations => c.invalidations,
            Stat::Refused => self.forbidden_shares.wrapping_add(self.bad_table_entries),
            // Every page of guest RAM is always populated here.
            Stat::Absent => 0,
            Stat::Busy => c.busy(),
        };
        CallResult::ok([value, NR_STATS as u64, 0])
    }

    fn sync_counters(&mut self) {
        self.counters.bad_table_entries = self.bad_table_entries;
        self.counters.forbidden_shares = self.forbidden_shares;
    }

    fn init(&mut self, ram: &dyn GuestRam, a: [u64; NR_ARGS]) -> CallResult {
        if self.regs.is_some() {
            return CallResult::err(Status::BadState);
        }
        let [table_gpa, table_frames, ring_gpa, ring_order, pool_gpa, pool_pages] = a;
        if table_frames == 0 || table_frames > MAX_FRAMES {
            return CallResult::err(Status::InvalidParameter);
        }
        let Ok(ring_order) = u32::try_from(ring_order) else {
            return CallResult::err(Status::InvalidParameter);
        };
        if !(RING_ORDER_MIN..=MAX_RING_ORDER).contains(&ring_order) {
            return CallResult::err(Status::InvalidParameter);
        }
        let table = frames(table_gpa, table_frames);
        let ring = frames(ring_gpa, ring_bytes(ring_order));
        let pool = pool_pages
            .checked_mul(PAGE_SIZE)
            .and_then(|bytes| frames(pool_gpa, bytes));
        let (Some(table), Some(ring), Some(pool)) = (table, ring, pool) else {
            return CallResult::err(Status::InvalidParameter);
        };
        if overlap(&table, &ring) || overlap(&table, &pool) || overlap(&ring, &pool) {
            return CallResult::err(Status::Denied);
        }
        for r in [&table, &ring, &pool] {
            if r.end > self.pages.len() as u64
                || !self.pages[r.start as usize..r.end as usize]
                    .iter()
                    .all(|&p| p & RAM != 0)
            {
                return CallResult::err(Status::Denied);
            }
        }
        for r in [&table, &ring] {
            for p in &mut self.pages[r.start as usize..r.end as usize] {
                *p |= FORBIDDEN;
            }
        }
        let mut shared = 0;
        for p in &mut self.pages[pool.start as usize..pool.end as usize] {
            if host_bits(*p) != Perm::ReadWrite.bits() {
                shared += 1;
            }
            *p = (*p & !(0x3 << DIRECT_SHIFT)) | (Perm::ReadWrite.bits() << DIRECT_SHIFT);
        }
        self.counters.pages_shared += shared;
        if shared != 0 {
            self.mark_changed(pool.clone());
        }
        self.consumer = 0;
        // The header copy is informational for the guest; a failing write
        // cannot happen for validated RAM and would not harm the hypervisor.
        let _ = ram.write(ring_gpa + RING_CONSUMER_OFFSET, &0u64.to_le_bytes());
        self.regs = Some(Regs {
            table_gpa,
            table_frames,
            ring_gpa,
            ring_order,
        });
        CallResult::ok([0; NR_RETS])
    }

    fn sync(&mut self, ram: &dyn GuestRam) -> CallResult {
        if self.regs.is_none() {
            return CallResult::err(Status::BadState);
        }
        let stats = self.drain(ram);
        // Also on `BUSY`: a reduction is never left pending longer than
        // needed, and the retry need not find it.
        self.invalidate_pending();
        if stats.out_of_budget {
            return CallResult::err(Status::Busy);
        }
        CallResult::ok([stats.records, stats.pages_unshared, stats.pages_shared])
    }

    fn invalidate_pending(&mut self) {
        if self.pending_invalidate {
            self.counters.invalidations += 1;
            self.pending_invalidate = false;
        }
    }

    /// Returns the frames `[gfn, gfn + nr)` a direct call may touch now.
    fn direct_range(&self, gfn: u64, nr: u64) -> Result<Range<u64>, Status> {
        if self.regs.is_none() {
            return Err(Status::BadState);
        }
        if nr == 0 || gfn.checked_add(nr).is_none() {
            return Err(Status::InvalidParameter);
        }
        Ok(gfn..gfn + nr.min(DIRECT_BUDGET))
    }

    fn share(&mut self, gfn: u64, nr: u64, perm: u64) -> CallResult {
        let range = match self.direct_range(gfn, nr) {
            Ok(r) => r,
            Err(s) => return CallResult::err(s),
        };
        let perm = match perm {
            1 => Perm::Read.bits(),
            2 => Perm::Write.bits(),
            3 => Perm::ReadWrite.bits(),
            _ => return CallResult::err(Status::InvalidParameter),
        };
        let (mut done, mut changed) = (0, false);
        for g in range {
            let Some(p) = usize::try_from(g).ok().and_then(|i| self.pages.get_mut(i)) else {
                break;
            };
            if !shareable(*p) {
                self.forbidden_shares += 1;
                break;
            }
            let old = *p;
            *p = (old & !(0x3 << DIRECT_SHIFT)) | (perm << DIRECT_SHIFT);
            let (ho, hn) = (host_bits(old), host_bits(*p));
            if hn & !ho != 0 {
                self.counters.pages_shared += 1;
            }
            if ho & !hn != 0 {
                self.counters.pages_unshared += 1;
                self.pending_invalidate = true;
            }
            changed |= ho != hn;
            done += 1;
        }
        if done == 0 {
            return CallResult::err(Status::Denied);
        }
        if changed {
            self.mark_changed(gfn..gfn + done);
        }
        // Narrowing a direct share (read-write to read) is an unshare too.
        self.invalidate_pending();
        CallResult::ok([done, 0, 0])
    }

    fn unshare(&mut self, gfn: u64, nr: u64) -> CallResult {
        let range = match self.direct_range(gfn, nr) {
            Ok(r) => r,
            Err(s) => return CallResult::err(s),
        };
        let (mut done, mut changed) = (0, false);
        for g in range {
            let Some(p) = usize::try_from(g).ok().and_then(|i| self.pages.get_mut(i)) else {
                break;
            };
            if *p & RAM == 0 {
                break;
            }
            let old = *p;
            *p = old & !(0x3 << DIRECT_SHIFT);
            if host_bits(old) & !host_bits(*p) != 0 {
                self.counters.pages_unshared += 1;
                self.pending_invalidate = true;
                changed = true;
            }
            done += 1;
        }
        if done == 0 {
            return CallResult::err(Status::Denied);
        }
        if changed {
            self.mark_changed(gfn..gfn + done);
        }
        self.invalidate_pending();
        CallResult::ok([done, 0, 0])
    }

    /// `APPLY`: makes the table-derived permission of frames `gfn..` equal
    /// their table entries, exactly as applying a ring record does, and
    /// invalidates what that removed. It neither reads nor moves the ring,
    /// so revoking never waits for ring space or for another vCPU to
    /// publish its reservation.
    fn apply(&mut self, ram: &dyn GuestRam, gfn: u64, nr: u64) -> CallResult {
        let range = match self.direct_range(gfn, nr) {
            Ok(r) => r,
            Err(s) => return CallResult::err(s),
        };
        let Some(regs) = self.regs else {
            return CallResult::err(Status::BadState);
        };
        // A ring record may not name frames outside the table, and applying
        // it never shares a frame `may_share` refuses: `APPLY` stops before
        // the first such frame instead, like `SHARE`.
        let inside = in_table(range.start, range.end - range.start, regs.table_frames);
        let done = (range.start..range.start + inside)
            .take_while(|&g| self.may_share(g))
            .count();
        if done == 0 {
            return CallResult::err(Status::Denied);
        }
        // One copy of the entries: each is read once, and what is applied
        // is what was read, whatever the guest writes meanwhile.
        let mut buf = [0u8; DIRECT_BUDGET as usize];
        let Some(entries) = buf.get_mut(..done) else {
            return CallResult::err(Status::Denied);
        };
        if ram.read(regs.table_gpa + gfn, entries).is_err() {
            return CallResult::err(Status::Denied);
        }
        let mut stats = DrainStats::default();
        self.apply_entries(gfn, entries, &mut stats);
        self.counters.pages_shared += stats.pages_shared;
        self.counters.pages_unshared += stats.pages_unshared;
        // Also completes reductions earlier implicit drains left pending.
        self.invalidate_pending();
        CallResult::ok([done as u64, 0, 0])
    }

    /// Returns whether frame `gfn` may be shared at all: guest RAM that holds
    /// neither the table nor the ring (the refusals `step` applies to every
    /// table entry).
    fn may_share(&self, gfn: u64) -> bool {
        usize::try_from(gfn)
            .ok()
            .and_then(|i| self.pages.get(i))
            .is_some_and(|&p| shareable(p))
    }

    fn reset(&mut self) -> CallResult {
        let mut unshared = 0;
        for p in &mut self.pages {
            if host_bits(*p) != 0 {
                unshared += 1;
            }
            *p &= !(PERM_BITS | FORBIDDEN);
        }
        self.counters.pages_unshared += unshared;
        if unshared != 0 {
            self.pending_invalidate = true;
            self.mark_changed(0..self.pages.len() as u64);
        }
        self.invalidate_pending();
        self.regs = None;
        self.consumer = 0;
        CallResult::ok([unshared, 0, 0])
    }

    /// Applies the published ring records (drain), within `DRAIN_BUDGET`,
    /// without invalidating.
    ///
    /// Called by `SYNC`, and by the harness on queue kicks; reductions it
    /// applies stay pending until the next `SYNC` (or direct call)
    /// invalidates. A drain that runs out of budget stops before the record
    /// that would exceed it (`out_of_budget`), so the consumer stays at or
    /// before that record and the next drain starts there. Does nothing
    /// before `INIT`.
    pub fn drain(&mut self, ram: &dyn GuestRam) -> DrainStats {
        let mut stats = DrainStats {
            consumer: self.consumer,
            ..DrainStats::default()
        };
        let Some(regs) = self.regs else {
            return stats;
        };
        self.counters.drains += 1;
        let size = 1u64 << regs.ring_order;
        let mask = size - 1;
        let mut word = [0u8; 8];
        let producer = match ram.read(regs.ring_gpa + RING_PRODUCER_OFFSET, &mut word) {
            Ok(()) => u64::from_le_bytes(word),
            Err(_) => self.consumer,
        };
        let mut avail = producer.wrapping_sub(self.consumer);
        if avail > size {
            // The guest never reserves more than a ring ahead.
            stats.bad_records += 1;
            avail = size;
        }
        let start = self.consumer;
        let mut next = start;
        let mut contiguous = true;
        let mut done = 0;
        let mut bytes = [0u8; CHUNK * RING_RECORD_SIZE as usize];
        let mut payloads = [0u8; CHUNK * RING_RECORD_SIZE as usize];
        let tf = regs.table_frames;
        // Records naming overlapping or adjacent frames merge into one run,
        // applied with one table copy: bursts of neighbouring buffers, and
        // map/unmap of the same buffer, cost one copy instead of one each.
        let mut run = 0..0u64;
        // Finished runs, applied together so that nearby ones share a copy.
        let mut pending: [Range<u64>; CHUNK] = std::array::from_fn(|_| 0..0);
        let mut npending = 0;
        let mut scratch = std::mem::take(&mut self.scratch);
        // Table entries named by the records taken so far (`entries`).
        let mut frames = 0u64;
        while done < avail && !stats.out_of_budget {
            let index = start.wrapping_add(done);
            let pos = index & mask;
            let n = (avail - done).min(CHUNK as u64).min(size - pos) as usize;
            let buf = &mut bytes[..n * RING_RECORD_SIZE as usize];
            let gpa = regs.ring_gpa + RING_HEADER_SIZE + pos * RING_RECORD_SIZE;
            if read_records(ram, gpa, buf, &mut payloads).is_err() {
                break;
            }
            let mut records = 0;
            let mut bad = 0;
            let mut seq = record_seq(index);
            let mut at = 0;
            while let Some(rest) = buf.get(at..) {
                // Fast path: published records that extend the current run,
                // within the table and the budget (a record past either
                // takes the slow path below).
                let left = DRAIN_BUDGET.saturating_sub(frames);
                let limit = tf.min(run.end.saturating_add(left));
                let (k, end) = extend_run(rest, seq, run.end, limit);
                frames += end - run.end;
                run.end = end;
                seq = seq.wrapping_add(k as u32);
                records += k as u64;
                if contiguous {
                    next = next.wrapping_add(k as u64);
                }
                at += k * RING_RECORD_SIZE as usize;
                let Some(raw) = buf.get(at..at + RING_RECORD_SIZE as usize) else {
                    break;
                };
                let Ok(raw) = <&[u8; 16]>::try_from(raw) else {
                    break;
                };
                let rec = RingRecord::from_le_bytes(raw);
                let published = rec.seq == seq;
                let nr = u64::from(rec.nr_pages);
                let valid = nr != 0 && in_table(rec.gfn, nr, tf) == nr;
                // The budget: stop before a record that would exceed it,
                // unless it is the first the drain takes. Neither this
                // record nor any after it is taken, and the consumer stays
                // before it (pKVM's EL2 drain has the same rule).
                if published && valid && frames != 0 && frames + nr > DRAIN_BUDGET {
                    stats.out_of_budget = true;
                    break;
                }
                at += RING_RECORD_SIZE as usize;
                seq = seq.wrapping_add(1);
                contiguous &= published;
                next = next.wrapping_add(u64::from(contiguous));
                if !published {
                    continue;
                }
                records += 1;
                if !valid {
                    bad += 1;
                    continue;
                }
                frames += nr;
                let end = rec.gfn + nr;
                if rec.gfn <= run.end && end >= run.start {
                    run = run.start.min(rec.gfn)..run.end.max(end);
                } else if run.start < run.end {
                    if npending == pending.len() {
                        self.apply_runs(ram, &regs, &pending, &mut scratch, &mut stats);
                        npending = 0;
                    }
                    if let Some(slot) = pending.get_mut(npending) {
                        *slot = run;
                        npending += 1;
                    }
                    run = rec.gfn..end;
                } else {
                    run = rec.gfn..end;
                }
            }
            stats.records += records;
            stats.bad_records += bad;
            done += n as u64;
        }
        let runs = pending.get(..npending).unwrap_or_default();
        self.apply_runs(ram, &regs, runs, &mut scratch, &mut stats);
        self.apply_runs(
            ram,
            &regs,
            std::slice::from_ref(&run),
            &mut scratch,
            &mut stats,
        );
        self.scratch = scratch;
        if next != start {
            // Release: the guest may reuse slots once it sees the new index.
            fence(Ordering::Release);
            let _ = ram.write(regs.ring_gpa + RING_CONSUMER_OFFSET, &next.to_le_bytes());
            self.consumer = next;
        }
        stats.consumer = self.consumer;
        stats.entries = frames;
        self.counters.records_consumed += stats.records;
        self.counters.bad_records += stats.bad_records;
        self.counters.pages_shared += stats.pages_shared;
        self.counters.pages_unshared += stats.pages_unshared;
        self.sync_counters();
        stats
    }

    /// Applies runs of frames; reads their table entries with one copy when
    /// they all fall in one scratch-sized window, else run by run.
    fn apply_runs(
        &mut self,
        ram: &dyn GuestRam,
        regs: &Regs,
        runs: &[Range<u64>],
        scratch: &mut [u8],
        stats: &mut DrainStats,
    ) {
        let lo = runs.iter().map(|r| r.start).min().unwrap_or(0);
        let hi = runs.iter().map(|r| r.end).max().unwrap_or(0);
        if hi <= lo {
            return;
        }
        if hi - lo <= scratch.len() as u64 {
            let window = &mut scratch[..(hi - lo) as usize];
            if ram.read(regs.table_gpa + lo, window).is_err() {
                return;
            }
            let mut acc = 0;
            for r in runs {
                let range = (r.start - lo) as usize..(r.end - lo) as usize;
                if r.end - r.start == 1 {
                    // Fast path for the common one-page buffer.
                    let page = usize::try_from(r.start)
                        .ok()
                        .and_then(|i| self.pages.get_mut(i));
                    if let (Some(p), Some(&entry)) = (page, window.get(range.start)) {
                        let events = step(p, entry);
                        acc += events;
                        if events & LANES_CHANGED != 0 {
                            self.mark_changed(r.clone());
                        }
                        continue;
                    }
                }
                if let Some(entries) = window.get(range) {
                    self.apply_entries(r.start, entries, stats);
                }
            }
            self.add_lanes(acc, stats);
        } else {
            for r in runs {
                self.apply_span(ram, regs, r.clone(), scratch, stats);
            }
        }
    }

    /// Applies the table entries of the frames in `span`, which the caller
    /// has checked to lie inside the table, one scratch-sized copy at a time.
    fn apply_span(
        &mut self,
        ram: &dyn GuestRam,
        regs: &Regs,
        span: Range<u64>,
        scratch: &mut [u8],
        stats: &mut DrainStats,
    ) {
        let mut g = span.start;
        while g < span.end {
            let n = (span.end - g).min(scratch.len() as u64) as usize;
            let window = &mut scratch[..n];
            if ram.read(regs.table_gpa + g, window).is_err() {
                return;
            }
            self.apply_entries(g, window, stats);
            g += n as u64;
        }
    }

    /// Makes the table-derived permission of frames `gfn..` equal `entries`.
    fn apply_entries(&mut self, gfn: u64, entries: &[u8], stats: &mut DrainStats) {
        let first = usize::try_from(gfn)
            .unwrap_or(usize::MAX)
            .min(self.pages.len());
        let last = first.saturating_add(entries.len()).min(self.pages.len());
        let (known, beyond) = entries.split_at(last - first);
        // `SCRATCH` bounds the entries per call well below a lane's capacity.
        let mut acc = 0u64;
        for (p, &entry) in self.pages[first..last].iter_mut().zip(known) {
            acc += step(p, entry);
        }
        if acc & LANES_CHANGED != 0 {
            self.mark_changed(first as u64..last as u64);
        }
        let (mut bad, mut forbidden) = (0, 0);
        // Frames the table covers beyond guest RAM can never be shared.
        for &entry in beyond {
            if entry & TABLE_RESERVED_MASK != 0 {
                bad += 1;
            } else if entry != 0 {
                forbidden += 1;
            }
        }
        self.bad_table_entries += bad;
        self.forbidden_shares += forbidden;
        self.add_lanes(acc, stats);
    }

    /// Adds the event counts `step` accumulated in `acc` to the counters.
    fn add_lanes(&mut self, acc: u64, stats: &mut DrainStats) {
        let unshared = (acc >> LANE_UNSHARED) & 0xffff;
        stats.pages_shared += (acc >> LANE_SHARED) & 0xffff;
        stats.pages_unshared += unshared;
        self.bad_table_entries += acc & 0xffff;
        self.forbidden_shares += acc >> LANE_FORBIDDEN;
        if unshared != 0 {
            self.pending_invalidate = true;
        }
    }

    fn permitted(&self, gpa: u64, len: u64, access: Access) -> bool {
        if len == 0 {
            return true;
        }
        let Some(last) = gpa.checked_add(len - 1) else {
            return false;
        };
        let need = match access {
            Access::Read => Perm::Read.bits(),
            Access::Write => Perm::Write.bits(),
        };
        // Stops at the first page refused, so a huge `len` ends at the end
        // of the page array.
        (gpa >> PAGE_SHIFT..=last >> PAGE_SHIFT).all(|gfn| {
            usize::try_from(gfn)
                .ok()
                .and_then(|i| self.pages.get(i))
                .is_some_and(|&p| host_bits(p) & need == need)
        })
    }

    /// Checks a host access to guest memory, with drain-on-fault.
    ///
    /// If the access is not permitted, this counts a fault exit, drains the
    /// ring, applies the table entries of the accessed frames (the table is
    /// the source of truth; a mapping may be visible there before its record
    /// is published) and checks again; a second refusal is a violation.
    pub fn check_access(
        &mut self,
        ram: &dyn GuestRam,
        gpa: u64,
        len: u64,
        access: Access,
    ) -> Result<(), Violation> {
        if self.permitted(gpa, len, access) {
            return Ok(());
        }
        self.record_exit(ExitKind::Fault);
        self.drain(ram);
        if let Some(regs) = self.regs {
            let first = gpa >> PAGE_SHIFT;
            let last = gpa.saturating_add(len.saturating_sub(1)) >> PAGE_SHIFT;
            let end = last.saturating_add(1).min(regs.table_frames);
            if first < end {
                let mut stats = DrainStats::default();
                let mut scratch = std::mem::take(&mut self.scratch);
                self.apply_span(ram, &regs, first..end, &mut scratch, &mut stats);
                self.scratch = scratch;
                self.counters.pages_shared += stats.pages_shared;
                self.counters.pages_unshared += stats.pages_unshared;
                self.sync_counters();
            }
        }
        if self.permitted(gpa, len, access) {
            return Ok(());
        }
        self.counters.violations += 1;
        Err(Violation { gpa, len, access })
    }
}
