// SPDX-License-Identifier: GPL-2.0-only

//! Fuzzes the reference hypervisor over arbitrary guest memory and calls.
//!
//! The input is a little program: each operation writes guest bytes (the
//! table, the ring, anything), makes a call with arbitrary or plausible
//! arguments, drains, checks a host access or serves the mailbox, or acts
//! as a well-behaved guest: maps and unmaps through the table and ring
//! and syncs. After every operation the invariants the hypervisor promises
//! are checked: no panic, and the table and ring pages are never
//! host-visible; after an `APPLY`, the ring has not moved, progress is
//! honest and every access it removed is invalidated; and after a `SYNC`
//! that returned `SUCCESS` (or an `APPLY` over the frames), no frame the
//! guest unmapped (or downgraded) before it is reachable beyond what the
//! guest left. The guest's intent is modelled here, not asked of the
//! hypervisor; hostile writes to the ring, or to a frame's entry, make
//! the model forget what they may have changed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use pviommu_reference_hyp::abi::call::{Func, NR_FUNCS};
use pviommu_reference_hyp::abi::mailbox::slot_offset;
use pviommu_reference_hyp::{
    init_region, serve_mailbox, Access, Config, GuestRam, Hypervisor, Perm, SharedRegion, VecRam, VecRegion,
};

/// Guest RAM: 192 pages, with a hole of 32 pages at gfn 128..160.
const RAM_PAGES: u64 = 192;
const HOLE: std::ops::Range<u64> = 128..160;

/// Returns the frames of a table and a ring `INIT` was asked to register:
/// one table byte per frame, and a ring of a header page plus 16-byte
/// records. Computed here, not by the hypervisor, so that a hypervisor
/// registering the wrong frames is caught too.
fn layout(table_gpa: u64, table_frames: u64, ring_gpa: u64, order: u64) -> Vec<u64> {
    let table = table_gpa >> 12..(table_gpa >> 12) + table_frames.div_ceil(4096);
    let ring_pages = (4096 + (16u64 << order)).div_ceil(4096);
    table.chain(ring_gpa >> 12..(ring_gpa >> 12) + ring_pages).collect()
}

/// The well-behaved guest of the intent operations: its registration
/// (from a plausible `INIT`), its ring producer, what it shared directly,
/// and what it revoked that no successful `SYNC` covered yet.
struct Intent {
    table_frames: u64,
    ring_gpa: u64,
    size: u64,
    producer: u64,
    /// Frames unmapped (entry 0) or downgraded (entry 1), by the entry.
    revoked: BTreeMap<u64, u8>,
    /// Direct permissions from `SHARE` (and the pool).
    direct: BTreeMap<u64, u8>,
}

impl Intent {
    fn ring_frames(&self) -> std::ops::Range<u64> {
        let pages = (4096 + 16 * self.size).div_ceil(4096);
        self.ring_gpa >> 12..(self.ring_gpa >> 12) + pages
    }

    /// Publishes a record naming `gfn..gfn + nr` by the ring protocol, with
    /// a `SYNC` first if the ring is full; false if it stays full.
    fn publish(&mut self, hyp: &mut Hypervisor, ram: &VecRam, gfn: u64, nr: u32) -> bool {
        let mut word = [0u8; 8];
        for _ in 0..2 {
            let _ = ram.read(self.ring_gpa + 64, &mut word);
            if self.producer.wrapping_sub(u64::from_le_bytes(word)) < self.size {
                let index = self.producer;
                self.producer += 1;
                let _ = ram.write(self.ring_gpa, &self.producer.to_le_bytes());
                let mut rec = [0u8; 16];
                rec[..8].copy_from_slice(&gfn.to_le_bytes());
                rec[8..12].copy_from_slice(&nr.to_le_bytes());
                rec[12..].copy_from_slice(&((index + 1) as u32).to_le_bytes());
                let _ = ram.write(self.ring_gpa + 4096 + 16 * (index % self.size), &rec);
                return true;
            }
            let r = hyp.call(ram, Func::Sync as u32, [0; 6]);
            self.synced(hyp, ram, r.status);
        }
        false
    }

    /// A `SYNC` answered `status`: on `SUCCESS`, every frame revoked before
    /// it is out of the host's reach beyond what the guest left.
    fn synced(&mut self, hyp: &Hypervisor, ram: &VecRam, status: i64) {
        if status != 0 {
            return;
        }
        for (&gfn, &entry) in &self.revoked {
            let mut now = [0u8];
            let _ = ram.read(gfn, &mut now);
            assert_eq!(now[0], entry, "the model lost track of frame {gfn}");
            let left = entry | self.direct.get(&gfn).copied().unwrap_or(0);
            let host = hyp.host_perm(gfn).bits();
            assert!(
                host & !left == 0,
                "frame {gfn} revoked to {entry} and SYNCed, but the host has {host}"
            );
        }
        self.revoked.clear();
    }

    /// An `APPLY` of `range` succeeded: the same promise for those frames.
    fn applied(&mut self, hyp: &Hypervisor, range: std::ops::Range<u64>) {
        let done: Vec<(u64, u8)> = self.revoked.range(range).map(|(&g, &e)| (g, e)).collect();
        for (gfn, entry) in done {
            let left = entry | self.direct.get(&gfn).copied().unwrap_or(0);
            let host = hyp.host_perm(gfn).bits();
            assert!(host & !left == 0, "frame {gfn} applied as {entry}, but the host has {host}");
            self.revoked.remove(&gfn);
        }
    }

    /// Guest bytes `gpa..gpa + len` were written by a hostile operation.
    /// Returns false if the model can no longer follow (the ring).
    fn clobbered(&mut self, gpa: u64, len: u64) -> bool {
        let (first, last) = (gpa >> 12, (gpa + len.max(1) - 1) >> 12);
        let ring = self.ring_frames();
        if first < ring.end && ring.start <= last {
            return false;
        }
        // The table is at gpa 0: those frames' entries may have changed.
        if gpa < self.table_frames {
            let end = (gpa + len).min(self.table_frames);
            let hit: Vec<u64> = self.revoked.range(gpa..end).map(|(&g, _)| g).collect();
            for g in hit {
                self.revoked.remove(&g);
            }
        }
        true
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, i| v | (u64::from(self.u8()) << (8 * i)))
    }

    /// An argument: mostly small or page-shaped values, sometimes anything.
    fn arg(&mut self) -> u64 {
        match self.u8() % 6 {
            0 => 0,
            1 => u64::from(self.u8()),
            2 => u64::from(self.u8()) << 12,
            3 => u64::from(self.u8() % 4) + 1,
            4 => u64::MAX - u64::from(self.u8()),
            _ => self.u64(),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let ram = VecRam::new(0..RAM_PAGES << 12);
    let region = VecRegion::new(16384);
    let config = Config {
        ram: vec![0..HOLE.start << 12, HOLE.end << 12..RAM_PAGES << 12],
    };
    let mut hyp = Hypervisor::new(config);
    let _ = init_region(&region, 1, 0);
    let mut input = Input(data);
    // Frames of the table and ring of the last INIT this program made
    // directly (op 0 or 1), or `None` after one the mailbox may have made.
    let mut protected: Option<Vec<u64>> = None;
    // The well-behaved guest, from a plausible INIT (op 1) until something
    // it cannot follow.
    let mut intent: Option<Intent> = None;
    for _ in 0..256 {
        if input.0.is_empty() {
            break;
        }
        let op = input.u8() % 11;
        match op {
            0 => {
                // Every function, and the first unknown number.
                let func = u32::from(input.u8()) % (NR_FUNCS as u32 + 1);
                let args = [input.arg(), input.arg(), input.arg(), input.arg(), input.arg(), input.arg()];
                let consumer = hyp.consumer();
                let (unshared, invalidations) = (hyp.counters().pages_unshared, hyp.counters().invalidations);
                let r = hyp.call(&ram, func, args);
                if func == Func::Init as u32 && r.status == 0 {
                    protected = Some(layout(args[0], args[1], args[2], args[3]));
                }
                if let Some(m) = &mut intent {
                    let done = args[0]..args[0].saturating_add(r.ret[0]);
                    match Func::from_raw(func) {
                        Some(Func::Sync) => m.synced(&hyp, &ram, r.status),
                        Some(Func::Apply) if r.status == 0 => m.applied(&hyp, done),
                        Some(Func::Share) if r.status == 0 => {
                            for g in done {
                                m.direct.insert(g, args[2] as u8);
                            }
                        }
                        Some(Func::Unshare) if r.status == 0 => {
                            for g in done {
                                m.direct.remove(&g);
                            }
                        }
                        Some(Func::Reset | Func::Init) if r.status == 0 => intent = None,
                        _ => {}
                    }
                }
                if func == Func::Apply as u32 {
                    let c = hyp.counters();
                    assert_eq!(hyp.consumer(), consumer, "APPLY moved the ring");
                    if c.pages_unshared != unshared {
                        assert!(c.invalidations > invalidations, "APPLY returned before invalidating");
                    }
                    if r.status == 0 {
                        assert!((1..=args[1]).contains(&r.ret[0]), "APPLY progress {:?} for {args:?}", r.ret);
                    } else {
                        assert_eq!(r.ret, [0; 3], "APPLY failed with progress");
                    }
                }
            }
            1 => {
                // A plausible INIT: table at gfn 0, ring after it, pool later.
                let frames = u64::from(input.u8()) + 1;
                let order = u64::from(input.u8() % 18);
                let ring_gfn = 1 + u64::from(input.u8() % 4);
                let pool_gfn = 40 + u64::from(input.u8() % 100);
                let pool_pages = u64::from(input.u8() % 40);
                if !hyp.is_initialised() {
                    // The guest zeroes its table and ring before INIT.
                    let _ = ram.write(0, &[0; 4096]);
                    let ring = (4096 + (16u64 << order.clamp(1, 16))).div_ceil(4096) as usize;
                    let _ = ram.write(ring_gfn << 12, &vec![0; ring * 4096]);
                }
                let r = hyp.call(&ram, 1, [0, frames, ring_gfn << 12, order, pool_gfn << 12, pool_pages]);
                if r.status == 0 {
                    protected = Some(layout(0, frames, ring_gfn << 12, order));
                    let direct = (pool_gfn..pool_gfn + pool_pages).map(|g| (g, 3)).collect();
                    intent = Some(Intent {
                        table_frames: frames,
                        ring_gpa: ring_gfn << 12,
                        size: 1 << order,
                        producer: 0,
                        revoked: BTreeMap::new(),
                        direct,
                    });
                }
            }
            2 | 3 => {
                // Guest writes: records, table entries, producer, anything.
                let gpa = u64::from(input.u8()) << 8 | u64::from(input.u8());
                let gpa = gpa.wrapping_mul(u64::from(input.u8() % 16) + 1) % (RAM_PAGES << 12);
                let len = usize::from(input.u8() % 64);
                let bytes: Vec<u8> = (0..len).map(|_| input.u8()).collect();
                if ram.write(gpa, &bytes).is_ok() && !intent.as_mut().map_or(true, |m| m.clobbered(gpa, len as u64)) {
                    intent = None;
                }
            }
            4 => {
                // A well-formed record publish at an arbitrary index.
                let index = u64::from(input.u8());
                let gfn = u64::from(input.u8());
                let nr = u32::from(input.u8() % 8);
                let ring_gpa = 4096 * (1 + u64::from(input.u8() % 4));
                let mut rec = [0u8; 16];
                rec[..8].copy_from_slice(&gfn.to_le_bytes());
                rec[8..12].copy_from_slice(&nr.to_le_bytes());
                rec[12..].copy_from_slice(&((index + 1) as u32).to_le_bytes());
                let _ = ram.write(ring_gpa + 4096 + 16 * (index % 64), &rec);
                let _ = ram.write(ring_gpa, &(index + 1).to_le_bytes());
                let gpa = ring_gpa + 4096 + 16 * (index % 64);
                if !intent.as_mut().map_or(true, |m| m.clobbered(gpa, 16) && m.clobbered(ring_gpa, 8)) {
                    intent = None;
                }
            }
            5 => {
                hyp.drain(&ram);
            }
            6 => {
                let gpa = input.arg();
                let len = input.arg();
                let access = if input.u8() & 1 == 0 { Access::Read } else { Access::Write };
                let _ = hyp.check_access(&ram, gpa, len, access);
            }
            7 => {
                let slot = u32::from(input.u8() % 4);
                let off = slot_offset(slot);
                let mut bytes = [0u8; 128];
                for b in bytes.iter_mut() {
                    *b = input.u8();
                }
                let _ = region.write(off, &bytes);
                let inits = hyp.counters().calls[Func::Init as usize];
                let calls = hyp.counters().calls;
                serve_mailbox(&mut hyp, &ram, &region);
                if hyp.counters().calls[Func::Init as usize] != inits {
                    // A slot made an INIT (maybe after a RESET) this
                    // program did not decode: only the hypervisor's own
                    // registration is known now.
                    protected = None;
                }
                if hyp.counters().calls != calls {
                    // Calls the model did not decode.
                    intent = None;
                }
            }
            8 | 9 => {
                // The guest maps (8: entry 1 or 3) or unmaps (9: entry 0)
                // or downgrades (9: entry 1) a range: entries first, then
                // the record that names them.
                let (a, b, c) = (input.u8(), input.u8(), input.u8());
                if let Some(m) = &mut intent {
                    let frames = m.table_frames.min(RAM_PAGES);
                    let gfn = u64::from(a) % frames;
                    let nr = (u64::from(b % 8) + 1).min(frames - gfn);
                    let map = op == 8;
                    let entry = match (map, c & 1) {
                        (true, 0) => 1,
                        (true, _) => 3,
                        (false, 0) => 0,
                        (false, _) => 1,
                    };
                    // Whatever was owed for these frames no longer is once
                    // their entries change; a revocation is owed again only
                    // once its record is published (a full ring makes
                    // `publish` SYNC before that).
                    for g in gfn..gfn + nr {
                        m.revoked.remove(&g);
                        let _ = ram.write(g, &[entry]);
                    }
                    if !m.publish(&mut hyp, &ram, gfn, nr as u32) {
                        // A ring another writer keeps full: the model stops.
                        intent = None;
                    } else if !map {
                        for g in gfn..gfn + nr {
                            m.revoked.insert(g, entry);
                        }
                    }
                }
            }
            _ => {
                if let Some(m) = &mut intent {
                    let r = hyp.call(&ram, Func::Sync as u32, [0; 6]);
                    m.synced(&hyp, &ram, r.status);
                }
            }
        }
        if let Some((table, ring)) = hyp.registered() {
            let registered: Vec<u64> = table.chain(ring).collect();
            if let Some(expected) = &protected {
                assert_eq!(&registered, expected, "INIT registered another layout");
            }
            for gfn in registered {
                assert_eq!(hyp.host_perm(gfn), Perm::None, "table or ring page {gfn} is host-visible");
            }
        } else {
            assert!(!hyp.is_initialised(), "initialised without a registration");
        }
        for gfn in HOLE {
            assert_eq!(hyp.host_perm(gfn), Perm::None, "hole page {gfn} is host-visible");
        }
        let _ = hyp.counters().to_json();
    }
});
