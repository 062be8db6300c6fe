// SPDX-License-Identifier: GPL-2.0-only
//! The adversarial host (`--adversarial`) and its oracle.
//!
//! At every exit the host attacks guest memory the way a device would:
//! through the devices' own mappings of guest RAM (`DeviceMmu::probe`), a
//! real read or write that the MMU lets through or not. What it attacks,
//! and what must be denied, it does not learn from the state machine: the
//! oracle reads the guest's table and ring itself (its own parse of the
//! ring, with its own cursor) and follows the guest's calls, so a
//! hypervisor that forgets a record, answers `SYNC` without revoking or
//! leaves a mapping behind is caught. The targets:
//!
//! - **revoked**: frames the guest cleared (or downgraded) in its table,
//!   named in a record published before a `SYNC` that returned `SUCCESS`
//!   (or covered by `APPLY`, or a direct `UNSHARE`), whose entry did not
//!   change during the call nor since that record was read (a record of
//!   the change may not be out yet): attacked right after the call,
//!   before the guest sees the answer (across the `SYNC`), and again at
//!   later exits until the guest names them again or shares them with
//!   `SHARE`;
//! - **never shared**: frames no record, `APPLY`, `SHARE` or device
//!   access ever named and whose entry is 0, sampled at random;
//! - **registered**: the table and ring pages themselves;
//! - **reused**: frames the guest unmapped (entry 0, record published)
//!   whose revocation it has not completed, and whose contents it has
//!   changed since. A guest that follows the ABI never writes such a page
//!   (it reuses pages only once `SYNC` returned), so an access that gets
//!   through proves the guest reused memory the host can still reach: a
//!   lazy guest (`pviommu.strict=0`), with or without the stale-TLB model.
//!
//! Every attempt on these must be denied; `allowed` counts those that got
//! through, by target, in the counters document's `adversary` section.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{fence, Ordering};

use pviommu_reference_hyp::abi::call::Func;
use pviommu_reference_hyp::abi::layout::{
    ring_bytes, PAGE_SHIFT, PAGE_SIZE, RING_HEADER_SIZE, RING_PRODUCER_OFFSET, RING_RECORD_SIZE,
};
use pviommu_reference_hyp::{CallResult, GuestRam};

use crate::counters::DeviceCounters;
use crate::device_mmu::DeviceMmu;

/// Most frames the oracle watches for reuse at once.
const MAX_WATCHED: usize = 1 << 14;
/// Most revoked frames remembered for later attacks.
const MAX_REVOKED: usize = 1 << 14;
/// Revoked frames attacked again at each exit.
const REATTACKS: usize = 4;
/// Most frames a call's revocations are attacked on before its answer
/// (spread over them, first and last included); the others are attacked
/// at later exits with every revoked frame. Attacks take a fault each:
/// a `SYNC` of a 1 MiB buffer would otherwise wait for 512 of them (and
/// the guest calibrates its bounce threshold against `SYNC`).
const AFTER_CALL: usize = 16;
/// Never-shared frames attacked at each exit.
const NEVER_SHARED: usize = 1;
/// Most direct-call frames (`DIRECT_BUDGET` of the reference).
const DIRECT_MAX: u64 = 512;

/// Why a frame is attacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    Revoked,
    NeverShared,
    Registered,
    Reused,
}

const WHYS: [Why; 4] = [Why::Revoked, Why::NeverShared, Why::Registered, Why::Reused];

impl Why {
    fn name(self) -> &'static str {
        match self {
            Why::Revoked => "revoked",
            Why::NeverShared => "never_shared",
            Why::Registered => "registered",
            Why::Reused => "reused",
        }
    }
}

/// One frame to attack: a read and a write, or only a write (the guest
/// left it readable).
#[derive(Clone, Copy, Debug)]
struct Target {
    gfn: u64,
    write_only: bool,
    why: Why,
}

/// What the adversary and its oracle did.
#[derive(Default, Debug, Clone)]
pub struct AdversaryCounters {
    pub attempts: [u64; 4],
    pub allowed: [u64; 4],
    /// Published records the oracle read.
    pub records: u64,
    /// Records the ring overwrote before the oracle read them.
    pub records_missed: u64,
    /// Frames whose revocation the oracle saw completed.
    pub confirmed: u64,
    /// Revoked frames the guest later shared with `SHARE` (memory reused
    /// for a bounce-pool chunk): no longer attacked.
    pub reshared: u64,
}

impl AdversaryCounters {
    pub fn to_json(&self) -> String {
        let mut s = String::from("{");
        for (i, why) in WHYS.iter().enumerate() {
            s += &format!(
                "\"attempts_{0}\":{1},\"allowed_{0}\":{2},",
                why.name(),
                self.attempts[i],
                self.allowed[i]
            );
        }
        s += &format!(
            "\"records\":{},\"records_missed\":{},\"confirmed\":{},\"reshared\":{}}}",
            self.records, self.records_missed, self.confirmed, self.reshared
        );
        s
    }
}

/// Per-frame knowledge of the oracle.
const TABLE_NAMED: u8 = 1 << 0;
const TOUCHED: u8 = 1 << 1;
/// Direct (`SHARE`) permission, two bits.
const DIRECT_SHIFT: u8 = 2;
const DIRECT_MASK: u8 = 3 << DIRECT_SHIFT;
/// The guest's revocation completed: no access at all, or reads only.
const CONFIRMED_NONE: u8 = 1 << 4;
const CONFIRMED_READ: u8 = 1 << 5;
/// The frame is in the list of revoked frames attacked again later.
const LISTED: u8 = 1 << 6;

/// What `INIT` registered, as the oracle decoded the call itself.
#[derive(Clone, Debug)]
struct Reg {
    table_gpa: u64,
    table_frames: u64,
    ring_gpa: u64,
    size: u64,
    pages: Vec<u64>,
}

/// The entries of some frames before a call.
struct Snapshot {
    gen: u64,
    frames: Vec<(u64, u8)>,
}

/// A table entry as a permission: 1 read, 2 write (ABI 2.2), 3 both;
/// anything else (reserved bits) is no access.
fn entry_perm(e: u8) -> u8 {
    match e {
        1..=3 => e,
        _ => 0,
    }
}

/// A cheap fingerprint of a page's contents.
fn fingerprint(ram: &dyn GuestRam, gfn: u64, buf: &mut [u8]) -> u64 {
    if ram.read(gfn << PAGE_SHIFT, buf).is_err() {
        return 0;
    }
    buf.chunks_exact(8)
        .fold(0xcbf2_9ce4_8422_2325, |h: u64, w| {
            let v = u64::from_le_bytes(w.try_into().unwrap_or_default());
            (h ^ v).wrapping_mul(0x0100_0000_01b3).rotate_left(23)
        })
}

/// The oracle: the guest's intent, from the guest's memory and calls.
pub struct Oracle {
    /// Guest RAM, in frames.
    ram: Vec<Range<u64>>,
    flags: Vec<u8>,
    reg: Option<Reg>,
    /// The oracle's own ring cursor, and records read beyond it.
    cursor: u64,
    processed: HashSet<u64>,
    /// Scan generation: frames named in a later scan than a snapshot were
    /// named again during the call.
    gen: u64,
    /// Frames named by a record and not confirmed since, with the
    /// generation that last named them and their table entry then.
    unconfirmed: HashMap<u64, (u64, u8)>,
    /// Frames the guest unmapped, not confirmed yet: their fingerprint.
    watch: HashMap<u64, u64>,
    revoked: Vec<u64>,
    rotor: usize,
    reg_rotor: usize,
    rng: u64,
    snapshot: Option<Snapshot>,
    page: Vec<u8>,
}

impl Oracle {
    pub fn new(ram: &[Range<u64>]) -> Oracle {
        let frames: Vec<Range<u64>> = ram
            .iter()
            .map(|r| r.start.div_ceil(PAGE_SIZE)..r.end >> PAGE_SHIFT)
            .collect();
        let n = frames.iter().map(|r| r.end).max().unwrap_or(0);
        Oracle {
            ram: frames,
            flags: vec![0; n as usize],
            reg: None,
            cursor: 0,
            processed: HashSet::new(),
            gen: 0,
            unconfirmed: HashMap::new(),
            watch: HashMap::new(),
            revoked: Vec::new(),
            rotor: 0,
            reg_rotor: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            snapshot: None,
            page: vec![0; PAGE_SIZE as usize],
        }
    }

    fn flags(&self, gfn: u64) -> u8 {
        self.flags.get(gfn as usize).copied().unwrap_or(0)
    }

    fn flags_mut(&mut self, gfn: u64) -> Option<&mut u8> {
        self.flags.get_mut(gfn as usize)
    }

    fn direct(&self, gfn: u64) -> u8 {
        (self.flags(gfn) & DIRECT_MASK) >> DIRECT_SHIFT
    }

    /// The guest's table entry of `gfn`, read now (0 outside the table).
    fn entry(&self, ram: &dyn GuestRam, gfn: u64) -> u8 {
        let Some(reg) = &self.reg else {
            return 0;
        };
        let mut e = [0u8];
        if gfn >= reg.table_frames || ram.read(reg.table_gpa + gfn, &mut e).is_err() {
            return 0;
        }
        e[0]
    }

    /// A device reached `frames` (a checked access, or a fault the
    /// hypervisor served): the hypervisor may have applied their entries.
    pub fn touched(&mut self, frames: Range<u64>) {
        for gfn in frames {
            if let Some(f) = self.flags_mut(gfn) {
                *f |= TOUCHED;
            }
        }
    }

    /// Reads the records published since the last scan, with the
    /// consumer's rules (`seq` first, then the payload), but its own
    /// cursor: the state machine's is not trusted here.
    fn scan(&mut self, ram: &dyn GuestRam, counters: &mut AdversaryCounters) {
        let Some(reg) = self.reg.clone() else {
            return;
        };
        self.gen += 1;
        let mut word = [0u8; 8];
        if ram
            .read(reg.ring_gpa + RING_PRODUCER_OFFSET, &mut word)
            .is_err()
        {
            return;
        }
        let producer = u64::from_le_bytes(word);
        let mut avail = producer.wrapping_sub(self.cursor);
        if avail > reg.size {
            if avail >= 1 << 63 {
                // Behind the cursor: a broken producer, nothing to read.
                return;
            }
            counters.records_missed += avail - reg.size;
            self.cursor = producer - reg.size;
            self.processed.clear();
            avail = reg.size;
        }
        let mut next = self.cursor;
        let mut contiguous = true;
        for i in 0..avail {
            let index = self.cursor.wrapping_add(i);
            let gpa = reg.ring_gpa + RING_HEADER_SIZE + RING_RECORD_SIZE * (index & (reg.size - 1));
            let mut rec = [0u8; 16];
            if ram.read(gpa + 12, &mut rec[12..]).is_err() {
                return;
            }
            fence(Ordering::Acquire);
            if ram.read(gpa, &mut rec[..12]).is_err() {
                return;
            }
            let seq = u32::from_le_bytes([rec[12], rec[13], rec[14], rec[15]]);
            if seq != (index + 1) as u32 {
                contiguous = false;
                continue;
            }
            if contiguous {
                next = index.wrapping_add(1);
            }
            if !self.processed.insert(index) {
                continue;
            }
            counters.records += 1;
            let gfn = u64::from_le_bytes(rec[..8].try_into().unwrap_or_default());
            let nr = u64::from(u32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]));
            if nr == 0 || gfn >= reg.table_frames || nr > reg.table_frames - gfn {
                continue;
            }
            self.named(ram, gfn..gfn + nr);
        }
        self.processed.retain(|&i| i >= next);
        self.cursor = next;
    }

    /// The guest named `frames` in a record: their entries may change the
    /// host's access; an entry 0 is an unmap, watched until confirmed.
    fn named(&mut self, ram: &dyn GuestRam, frames: Range<u64>) {
        for gfn in frames {
            let Some(f) = self.flags_mut(gfn) else {
                continue;
            };
            *f = (*f | TABLE_NAMED) & !(CONFIRMED_NONE | CONFIRMED_READ);
            let entry = self.entry(ram, gfn);
            self.unconfirmed.insert(gfn, (self.gen, entry));
            if entry_perm(entry) == 0 && self.direct(gfn) == 0 {
                if self.watch.len() < MAX_WATCHED {
                    let mut page = std::mem::take(&mut self.page);
                    self.watch.insert(gfn, fingerprint(ram, gfn, &mut page));
                    self.page = page;
                }
            } else {
                self.watch.remove(&gfn);
            }
        }
    }

    /// Frames the guest unmapped and then wrote before its revocation
    /// completed.
    fn reused(&mut self, ram: &dyn GuestRam) -> Vec<Target> {
        let mut page = std::mem::take(&mut self.page);
        let changed: Vec<u64> = self
            .watch
            .iter()
            .filter(|(&gfn, &fp)| fingerprint(ram, gfn, &mut page) != fp)
            .map(|(&gfn, _)| gfn)
            .collect();
        self.page = page;
        changed
            .into_iter()
            .map(|gfn| {
                self.watch.remove(&gfn);
                Target {
                    gfn,
                    write_only: false,
                    why: Why::Reused,
                }
            })
            .collect()
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// The frames to attack at any exit: a table and a ring page, a few
    /// never-shared frames and a few revoked ones.
    fn sample(&mut self, ram: &dyn GuestRam) -> Vec<Target> {
        let mut out = Vec::new();
        if let Some(reg) = &self.reg {
            if !reg.pages.is_empty() {
                let gfn = reg.pages[self.reg_rotor % reg.pages.len()];
                self.reg_rotor = self.reg_rotor.wrapping_add(1);
                out.push(Target {
                    gfn,
                    write_only: false,
                    why: Why::Registered,
                });
            }
        }
        let total: u64 = self.ram.iter().map(|r| r.end - r.start).sum();
        let mut found = 0;
        for _ in 0..16 {
            if found == NEVER_SHARED || total == 0 {
                break;
            }
            let mut k = self.random() % total;
            let Some(gfn) = self.ram.iter().find_map(|r| {
                let n = r.end - r.start;
                if k < n {
                    Some(r.start + k)
                } else {
                    k -= n;
                    None
                }
            }) else {
                break;
            };
            let registered = self.reg.as_ref().is_some_and(|r| r.pages.contains(&gfn));
            if self.flags(gfn) != 0 || registered || self.entry(ram, gfn) != 0 {
                continue;
            }
            found += 1;
            out.push(Target {
                gfn,
                write_only: false,
                why: Why::NeverShared,
            });
        }
        for _ in 0..REATTACKS.min(self.revoked.len()) {
            self.rotor %= self.revoked.len();
            let gfn = self.revoked[self.rotor];
            let f = self.flags(gfn);
            if f & (CONFIRMED_NONE | CONFIRMED_READ) == 0 {
                // Named again since: no longer owed.
                self.revoked.swap_remove(self.rotor);
                if let Some(f) = self.flags_mut(gfn) {
                    *f &= !LISTED;
                }
                if self.revoked.is_empty() {
                    break;
                }
                continue;
            }
            self.rotor += 1;
            out.push(Target {
                gfn,
                write_only: f & CONFIRMED_NONE == 0,
                why: Why::Revoked,
            });
        }
        out
    }

    /// Before call `func` is served: what the call will be judged by.
    fn before_call(
        &mut self,
        ram: &dyn GuestRam,
        func: u32,
        args: &[u64; 6],
        counters: &mut AdversaryCounters,
    ) {
        self.snapshot = None;
        let frames: Vec<u64> = match Func::from_raw(func) {
            Some(Func::Sync) => {
                self.scan(ram, counters);
                let mut v: Vec<u64> = self.unconfirmed.keys().copied().collect();
                v.sort_unstable();
                v
            }
            Some(Func::Apply | Func::Unshare) => {
                (args[0]..args[0].saturating_add(args[1].min(DIRECT_MAX))).collect()
            }
            _ => return,
        };
        let frames = frames
            .into_iter()
            .map(|gfn| (gfn, self.entry(ram, gfn)))
            .collect();
        self.snapshot = Some(Snapshot {
            gen: self.gen,
            frames,
        });
    }

    /// After call `func` answered `result` (and before the guest sees it):
    /// what its completed revocations owe the guest.
    fn after_call(
        &mut self,
        ram: &dyn GuestRam,
        func: u32,
        args: &[u64; 6],
        result: &CallResult,
        counters: &mut AdversaryCounters,
    ) -> Vec<Target> {
        let snapshot = self.snapshot.take();
        if result.status != 0 {
            return Vec::new();
        }
        let done = args[0]..args[0].saturating_add(result.ret[0]);
        match Func::from_raw(func) {
            Some(Func::Init) => {
                self.init(args);
                Vec::new()
            }
            Some(Func::Reset) => {
                self.reset();
                Vec::new()
            }
            Some(Func::Share) => {
                let perm = entry_perm(args[2] as u8);
                for gfn in done {
                    if let Some(f) = self.flags_mut(gfn) {
                        // Shared again (memory reused for a pool chunk,
                        // say): an earlier revocation is no longer owed.
                        if *f & (CONFIRMED_NONE | CONFIRMED_READ) != 0 {
                            counters.reshared += 1;
                        }
                        *f = (*f & !(DIRECT_MASK | CONFIRMED_NONE | CONFIRMED_READ))
                            | perm << DIRECT_SHIFT;
                    }
                }
                Vec::new()
            }
            Some(Func::Unshare) => {
                for gfn in done.clone() {
                    if let Some(f) = self.flags_mut(gfn) {
                        *f &= !DIRECT_MASK;
                    }
                }
                // Only frames the table never granted, or whose table
                // revocation completed, lose all access.
                let Some(snap) = snapshot else {
                    return Vec::new();
                };
                let mut out = Vec::new();
                for (gfn, before) in snap.frames {
                    let f = self.flags(gfn);
                    let table_none = f & TABLE_NAMED == 0 || f & CONFIRMED_NONE != 0;
                    if done.contains(&gfn)
                        && table_none
                        && !self.unconfirmed.contains_key(&gfn)
                        && entry_perm(before) == 0
                        && entry_perm(self.entry(ram, gfn)) == 0
                    {
                        out.extend(self.confirm(gfn, 0));
                    }
                }
                counters.confirmed += out.len() as u64;
                out
            }
            Some(Func::Sync | Func::Apply) => {
                let Some(snap) = snapshot else {
                    return Vec::new();
                };
                let is_apply = Func::from_raw(func) == Some(Func::Apply);
                let after: Vec<u8> = snap
                    .frames
                    .iter()
                    .map(|&(gfn, _)| self.entry(ram, gfn))
                    .collect();
                // Entries first, then the ring: a record published after an
                // entry we read is seen by this scan.
                fence(Ordering::Acquire);
                self.scan(ram, counters);
                let mut out = Vec::new();
                for (&(gfn, before), &after) in snap.frames.iter().zip(&after) {
                    if is_apply && !done.contains(&gfn) {
                        continue;
                    }
                    let named = self.unconfirmed.get(&gfn).copied();
                    if named.is_some_and(|(g, _)| g > snap.gen) || before != after {
                        // The guest changed it during the call: the call
                        // owes nothing for it; a later one will.
                        continue;
                    }
                    if !is_apply && named.is_some_and(|(_, entry)| entry != after) {
                        // Changed after the record that named it (a map's
                        // record, then the unmap's entry): the record of
                        // that change may not be out yet, and the
                        // hypervisor may have applied the old entry. The
                        // call owes it only once a record names it with
                        // this entry.
                        continue;
                    }
                    self.unconfirmed.remove(&gfn);
                    self.watch.remove(&gfn);
                    out.extend(self.confirm(gfn, entry_perm(after)));
                }
                counters.confirmed += out.len() as u64;
                out
            }
            _ => Vec::new(),
        }
    }

    /// The table-derived access of `gfn` is now `perm`, invalidated: what
    /// the host must not do with it any more.
    fn confirm(&mut self, gfn: u64, perm: u8) -> Option<Target> {
        let direct = self.direct(gfn);
        let host = perm | direct;
        let list = self.revoked.len() < MAX_REVOKED;
        let f = self.flags.get_mut(gfn as usize)?;
        *f &= !(CONFIRMED_NONE | CONFIRMED_READ);
        let listed = *f & LISTED != 0;
        let target = match host {
            0 => {
                *f |= CONFIRMED_NONE;
                Target {
                    gfn,
                    write_only: false,
                    why: Why::Revoked,
                }
            }
            // Write-only (2): reads must be refused, but x86 page tables
            // cannot refuse them while allowing writes (the mappings map a
            // write-only page writable), so the host view's check is what
            // refuses a device's read of it: nothing to attack here.
            1 => {
                *f |= CONFIRMED_READ;
                Target {
                    gfn,
                    write_only: true,
                    why: Why::Revoked,
                }
            }
            _ => return None,
        };
        if !listed && list {
            *f |= LISTED;
            self.revoked.push(gfn);
        }
        Some(target)
    }

    fn init(&mut self, a: &[u64; 6]) {
        let [table_gpa, table_frames, ring_gpa, order, pool_gpa, pool_pages] = *a;
        let size = 1u64 << order.min(32);
        let mut pages: Vec<u64> = (table_gpa >> PAGE_SHIFT
            ..(table_gpa >> PAGE_SHIFT) + table_frames.div_ceil(PAGE_SIZE))
            .collect();
        let ring_pages = ring_bytes(order as u32).div_ceil(PAGE_SIZE);
        pages.extend(ring_gpa >> PAGE_SHIFT..(ring_gpa >> PAGE_SHIFT) + ring_pages);
        self.reg = Some(Reg {
            table_gpa,
            table_frames,
            ring_gpa,
            size,
            pages,
        });
        for gfn in pool_gpa >> PAGE_SHIFT..(pool_gpa >> PAGE_SHIFT) + pool_pages {
            if let Some(f) = self.flags_mut(gfn) {
                *f |= 3 << DIRECT_SHIFT;
            }
        }
        self.cursor = 0;
        self.processed.clear();
        self.unconfirmed.clear();
        self.watch.clear();
    }

    /// `RESET` removed every access: whatever was ever shared is revoked.
    fn reset(&mut self) {
        for (gfn, f) in self.flags.iter_mut().enumerate() {
            if *f != 0 {
                let listed = *f & LISTED;
                *f = CONFIRMED_NONE | listed;
                if listed == 0 && self.revoked.len() < MAX_REVOKED {
                    *f |= LISTED;
                    self.revoked.push(gfn as u64);
                }
            }
        }
        self.reg = None;
        self.unconfirmed.clear();
        self.watch.clear();
    }
}

/// The adversarial host: the oracle, the attacks and their counters.
pub struct Adversary {
    oracle: Oracle,
    pub counters: AdversaryCounters,
}

impl Adversary {
    pub fn new(ram: &[Range<u64>]) -> Adversary {
        Adversary {
            oracle: Oracle::new(ram),
            counters: AdversaryCounters::default(),
        }
    }

    /// A device reached `[gpa, gpa + len)`.
    pub fn touched(&mut self, gpa: u64, len: u64) {
        let last = gpa.saturating_add(len.max(1) - 1) >> PAGE_SHIFT;
        self.oracle.touched(gpa >> PAGE_SHIFT..last + 1);
    }

    /// After the hypervisor drained (on an exit or a fault), under the same
    /// hold of the host lock: the oracle reads every record the hypervisor
    /// applied before anything can observe its effect, even one published
    /// between the exit's first look and the drain.
    pub fn after_drain(&mut self, ram: &dyn GuestRam) {
        self.oracle.scan(ram, &mut self.counters);
    }

    /// At the start of every exit, before the hypervisor acts: reused
    /// pages, the registered pages, never-shared and revoked frames.
    pub fn on_exit(&mut self, mmu: &mut DeviceMmu, ram: &dyn GuestRam, dev: &mut DeviceCounters) {
        self.oracle.scan(ram, &mut self.counters);
        let mut targets = self.oracle.reused(ram);
        targets.extend(self.oracle.sample(ram));
        for t in targets {
            self.attack(mmu, t, dev);
        }
    }

    pub fn before_call(&mut self, ram: &dyn GuestRam, func: u32, args: &[u64; 6]) {
        self.oracle.before_call(ram, func, args, &mut self.counters);
    }

    /// After a call and before its answer: every revocation it completed
    /// is attacked.
    pub fn after_call(
        &mut self,
        mmu: &mut DeviceMmu,
        ram: &dyn GuestRam,
        call: (u32, &[u64; 6], &CallResult),
        dev: &mut DeviceCounters,
    ) {
        let (func, args, result) = call;
        let targets = self
            .oracle
            .after_call(ram, func, args, result, &mut self.counters);
        let n = targets.len();
        if n <= AFTER_CALL {
            for t in targets {
                self.attack(mmu, t, dev);
            }
        } else {
            for i in 0..AFTER_CALL {
                self.attack(mmu, targets[i * (n - 1) / (AFTER_CALL - 1)], dev);
            }
        }
    }

    fn attack(&mut self, mmu: &mut DeviceMmu, t: Target, dev: &mut DeviceCounters) {
        let why = WHYS.iter().position(|&w| w == t.why).unwrap_or(0);
        let accesses: &[bool] = if t.write_only {
            &[true]
        } else {
            &[false, true]
        };
        for &write in accesses {
            // No device mapping yet: nothing the host could reach.
            let Some(allowed) = mmu.probe(t.gfn, write) else {
                return;
            };
            dev.adversarial_attempts += 1;
            self.counters.attempts[why] += 1;
            if allowed {
                dev.adversarial_allowed += 1;
                self.counters.allowed[why] += 1;
                let access = if write { "write" } else { "read" };
                log::error!(
                    "adversary: {access} of {} gpa {:#x} got through",
                    t.why.name(),
                    t.gfn << PAGE_SHIFT
                );
            } else {
                dev.adversarial_denied += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pviommu_reference_hyp::VecRam;

    /// A frame the guest revoked and later shared with `SHARE` (memory
    /// reused for a bounce-pool chunk, say) is the host's again: the
    /// revocation is no longer owed, and attacking it would report a
    /// legitimate access as a hypervisor bug.
    #[test]
    fn a_frame_shared_directly_after_its_revocation_is_not_attacked() {
        let ram = VecRam::new(0..64 * PAGE_SIZE);
        let guest_ram = 0..64 * PAGE_SIZE;
        let mut o = Oracle::new(std::slice::from_ref(&guest_ram));
        assert!(o.confirm(5, 0).is_some(), "frame 5 revoked");
        let attacked = |o: &mut Oracle| {
            o.sample(&ram)
                .iter()
                .any(|t| t.gfn == 5 && t.why == Why::Revoked)
        };
        assert!(attacked(&mut o), "a revoked frame is attacked again");
        let shared = CallResult {
            status: 0,
            ret: [1, 0, 0],
        };
        let share = [5, 1, 3, 0, 0, 0];
        let mut counters = AdversaryCounters::default();
        o.before_call(&ram, Func::Share as u32, &share, &mut counters);
        o.after_call(&ram, Func::Share as u32, &share, &shared, &mut counters);
        assert!(!attacked(&mut o), "shared again: not attacked");
        assert_eq!(counters.reshared, 1);
    }

    /// A map's record names frame 9 with a write-only entry, the
    /// hypervisor applies it, then the guest unmaps the frame: the entry
    /// is 0 before the unmap's own record is published. A `SYNC` another
    /// CPU makes then (its answer says nothing about frame 9, whose
    /// clearing record is not out yet) must not count frame 9 revoked:
    /// the host still has the write access the guest gave it, and will
    /// lose it with the unmap's own `SYNC`. Once a record names the frame
    /// with its entry 0, the next `SYNC` does owe its revocation.
    #[test]
    fn a_sync_owes_no_revocation_the_guest_has_not_published() {
        let ram = VecRam::new(0..64 * PAGE_SIZE);
        let guest_ram = 0..64 * PAGE_SIZE;
        let mut o = Oracle::new(std::slice::from_ref(&guest_ram));
        // Table at frame 40 (64 entries), ring at frame 41, pool at 48.
        let (table, ring) = (40 * PAGE_SIZE, 41 * PAGE_SIZE);
        o.init(&[table, 64, ring, 4, 48 * PAGE_SIZE, 1]);
        let mut counters = AdversaryCounters::default();
        let ok = CallResult {
            status: 0,
            ret: [0; 3],
        };
        let mut sync = |o: &mut Oracle| -> Vec<Target> {
            o.before_call(&ram, Func::Sync as u32, &[0; 6], &mut counters);
            o.after_call(&ram, Func::Sync as u32, &[0; 6], &ok, &mut counters)
        };
        ram.write(table + 9, &[2]).unwrap();
        o.named(&ram, 9..10);
        ram.write(table + 9, &[0]).unwrap();
        assert!(
            !sync(&mut o).iter().any(|t| t.gfn == 9),
            "the unmap's record is not out: this SYNC owes nothing for frame 9"
        );
        o.named(&ram, 9..10);
        assert!(
            sync(&mut o)
                .iter()
                .any(|t| t.gfn == 9 && t.why == Why::Revoked),
            "named with its entry 0: the next SYNC revoked it"
        );
    }
}
