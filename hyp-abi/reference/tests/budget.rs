// SPDX-License-Identifier: GPL-2.0-only

//! The drain budget: one drain applies at most `DRAIN_BUDGET` table entries
//! (one record alone may exceed it if it comes first), `SYNC` answers
//! `BUSY` when its drain ran out, and the consumer never passes a record
//! that was not applied.

use pviommu_reference_hyp::abi::call::{Stat, Status};
use pviommu_reference_hyp::{CallResult, Config, GuestRam, Hypervisor, Perm, VecRam};
use std::ops::Range;

/// The reference hypervisor's drain budget, in table entries.
const BUDGET: u64 = 1 << 16;
const OK: i64 = 0;
const BUSY: i64 = Status::Busy as i64;
const INIT: u32 = 1;
const SYNC: u32 = 2;
const STATS: u32 = 7;

/// A guest with the table at gfn 0 and the ring right after it, no pool.
struct Guest {
    ram: VecRam,
    hyp: Hypervisor,
    ring_gpa: u64,
    ring_size: u64,
}

impl Guest {
    /// `ram_pages` of RAM from gfn 0, a table of `table_frames` entries.
    fn new(ram_pages: u64, table_frames: u64, ring_order: u32) -> Guest {
        let ram = VecRam::new(0..ram_pages << 12);
        let mut hyp = Hypervisor::new(Config {
            ram: std::iter::once(0..ram_pages << 12).collect(),
        });
        let ring_gpa = table_frames.div_ceil(4096) << 12;
        let r = hyp.call(
            &ram,
            INIT,
            [0, table_frames, ring_gpa, ring_order.into(), 0, 0],
        );
        assert_eq!(r.status, OK, "init: {r:?}");
        Guest {
            ram,
            hyp,
            ring_gpa,
            ring_size: 1 << ring_order,
        }
    }

    /// 1024 pages of RAM, a one-page table covering them, a ring of 2^16
    /// records at gfn 1..258: the guest data frames are 258..1024.
    fn small() -> Guest {
        Guest::new(1024, 1024, 16)
    }

    fn set_entries(&self, frames: Range<u64>, entry: u8) {
        let n = (frames.end - frames.start) as usize;
        self.ram.write(frames.start, &vec![entry; n]).unwrap();
    }

    fn write_record(&self, index: u64, gfn: u64, nr: u32, seq: u32) {
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&gfn.to_le_bytes());
        rec[8..12].copy_from_slice(&nr.to_le_bytes());
        rec[12..].copy_from_slice(&seq.to_le_bytes());
        let gpa = self.ring_gpa + 4096 + 16 * (index % self.ring_size);
        self.ram.write(gpa, &rec).unwrap();
    }

    fn producer(&self) -> u64 {
        let mut b = [0u8; 8];
        self.ram.read(self.ring_gpa, &mut b).unwrap();
        u64::from_le_bytes(b)
    }

    fn set_producer(&self, producer: u64) {
        self.ram
            .write(self.ring_gpa, &producer.to_le_bytes())
            .unwrap();
    }

    fn consumer_in_ram(&self) -> u64 {
        let mut b = [0u8; 8];
        self.ram.read(self.ring_gpa + 64, &mut b).unwrap();
        u64::from_le_bytes(b)
    }

    /// Reserves and publishes a record.
    fn push(&self, gfn: u64, nr: u32) {
        let index = self.producer();
        self.set_producer(index + 1);
        self.write_record(index, gfn, nr, (index + 1) as u32);
    }

    fn sync(&mut self) -> CallResult {
        self.hyp.call(&self.ram, SYNC, [0; 6])
    }

    /// Table entries the hypervisor refused so far: with every entry named
    /// invalid (a reserved bit, 4) or outside RAM, the number of entries
    /// applied.
    fn refused(&self) -> u64 {
        let c = self.hyp.counters();
        c.bad_table_entries + c.forbidden_shares
    }

    fn stat(&mut self, s: Stat) -> u64 {
        let r = self.hyp.call(&self.ram, STATS, [s as u64, 0, 0, 0, 0, 0]);
        assert_eq!(r.status, OK);
        r.ret[0]
    }
}

/// Frames of the two 256-page buffers the hostile guests alternate
/// between: never adjacent, so no two successive records merge.
const A: Range<u64> = 300..556;
const B: Range<u64> = 600..856;

/// Fills the ring with `records` records alternating between `A` and `B`.
fn alternate(g: &Guest, records: u64) {
    for i in 0..records {
        let r = if i % 2 == 0 { A } else { B };
        g.push(r.start, (r.end - r.start) as u32);
    }
}

#[test]
fn hostile_sync_is_bounded_and_answers_busy() {
    let mut g = Guest::small();
    // Invalid entries (a reserved bit): each one applied is counted,
    // nothing is shared.
    g.set_entries(A, 4);
    g.set_entries(B, 4);
    alternate(&g, g.ring_size);
    let per_call = BUDGET / 256;
    let before = g.refused();
    let r = g.sync();
    assert_eq!((r.status, r.ret), (BUSY, [0; 3]));
    assert_eq!(g.refused() - before, BUDGET, "entries applied by one SYNC");
    assert_eq!(g.hyp.consumer(), per_call);
    assert_eq!(g.consumer_in_ram(), per_call);
    // Retrying makes progress every time, within the budget every time.
    let mut calls = 1;
    loop {
        let (consumer, work) = (g.hyp.consumer(), g.refused());
        let r = g.sync();
        calls += 1;
        assert!(g.refused() - work <= BUDGET, "call {calls}");
        assert_eq!(g.hyp.consumer() - consumer, per_call, "call {calls}");
        if r.status == OK {
            assert_eq!(r.ret, [per_call, 0, 0]);
            break;
        }
        assert_eq!((r.status, r.ret), (BUSY, [0; 3]), "call {calls}");
        assert!(calls < 1000, "no end to BUSY");
    }
    assert_eq!(calls, g.ring_size / per_call);
    assert_eq!(g.hyp.consumer(), g.ring_size);
    assert_eq!(g.consumer_in_ram(), g.ring_size);
    assert_eq!(g.refused() - before, g.ring_size * 256);
    assert_eq!(g.hyp.counters().records_consumed, g.ring_size);
    assert_eq!(g.hyp.counters().busy(), calls - 1);
    assert_eq!(g.stat(Stat::Busy), calls - 1);
    for gfn in A.start..B.end {
        assert_eq!(g.hyp.host_perm(gfn), Perm::None);
    }
}

/// 2^17 pages of RAM (only the table and ring are ever touched), the table
/// covering all of it at gfn 0..32, a ring of 1024 records at gfn 32.
/// `RECORDS` records of 256 pages each name their own frames, spaced so
/// that none merges with the next: more than one budget in all.
const RECORDS: u64 = 500;

fn spread(i: u64) -> Range<u64> {
    let start = 64 + i * 260;
    start..start + 256
}

#[test]
fn busy_sync_applies_every_record_in_the_end() {
    let mut g = Guest::new(1 << 17, 1 << 17, 10);
    let first = BUDGET / 256;
    for i in 0..RECORDS {
        g.set_entries(spread(i), 3);
        g.push(spread(i).start, 256);
    }
    let r = g.sync();
    assert_eq!((r.status, r.ret), (BUSY, [0; 3]));
    assert_eq!(g.hyp.consumer(), first);
    assert_eq!(g.hyp.counters().pages_shared, BUDGET);
    for i in 0..RECORDS {
        let want = if i < first {
            Perm::ReadWrite
        } else {
            Perm::None
        };
        assert_eq!(g.hyp.host_perm(spread(i).start), want, "record {i}");
        assert_eq!(g.hyp.host_perm(spread(i).end - 1), want, "record {i}");
    }
    let r = g.sync();
    assert_eq!(
        (r.status, r.ret),
        (OK, [RECORDS - first, 0, (RECORDS - first) * 256])
    );
    assert_eq!(g.hyp.consumer(), RECORDS);
    for i in 0..RECORDS {
        for gfn in spread(i) {
            assert_eq!(g.hyp.host_perm(gfn), Perm::ReadWrite, "gfn {gfn}");
        }
    }
    assert_eq!(g.hyp.counters().invalidations, 0);

    // Unmap everything: the reductions a BUSY drain applied are complete
    // when it returns; those of a drain on a kick wait for the next call.
    for i in 0..RECORDS {
        g.set_entries(spread(i), 0);
        g.push(spread(i).start, 256);
    }
    let r = g.sync();
    assert_eq!((r.status, r.ret), (BUSY, [0; 3]));
    assert_eq!(g.hyp.consumer(), RECORDS + first);
    assert_eq!(g.hyp.counters().pages_unshared, BUDGET);
    assert_eq!(g.hyp.counters().invalidations, 1, "BUSY after invalidating");
    let s = g.hyp.drain(&g.ram);
    let rest = RECORDS - first;
    assert_eq!((s.records, s.pages_unshared), (rest, rest * 256));
    assert_eq!(
        g.hyp.counters().invalidations,
        1,
        "a kick never invalidates"
    );
    let r = g.sync();
    assert_eq!((r.status, r.ret), (OK, [0, 0, 0]));
    assert_eq!(g.hyp.counters().invalidations, 2);
    assert_eq!(g.hyp.consumer(), 2 * RECORDS);
    assert_eq!(g.consumer_in_ram(), 2 * RECORDS);
    for i in 0..RECORDS {
        for gfn in spread(i) {
            assert_eq!(g.hyp.host_perm(gfn), Perm::None, "gfn {gfn}");
        }
    }
}

#[test]
fn adjacent_records_merge_but_count_against_the_budget() {
    // One burst of 300 adjacent 256-page buffers: one run, 76800 frames.
    let mut g = Guest::new(1 << 17, 1 << 17, 10);
    let burst = 64..64 + 300 * 256;
    g.set_entries(burst.clone(), 3);
    for i in 0..300 {
        g.push(burst.start + i * 256, 256);
    }
    let r = g.sync();
    assert_eq!((r.status, r.ret), (BUSY, [0; 3]));
    assert_eq!(g.hyp.consumer(), BUDGET / 256);
    assert_eq!(g.hyp.counters().pages_shared, BUDGET);
    assert_eq!(g.hyp.host_perm(burst.start + BUDGET - 1), Perm::ReadWrite);
    assert_eq!(g.hyp.host_perm(burst.start + BUDGET), Perm::None);
    let r = g.sync();
    assert_eq!((r.status, r.ret), (OK, [44, 0, 44 * 256]));
    for gfn in burst {
        assert_eq!(g.hyp.host_perm(gfn), Perm::ReadWrite, "gfn {gfn}");
    }
}

#[test]
fn an_oversized_record_is_applied_alone_at_the_start_of_a_drain() {
    // A table of 2^18 entries over 1024 pages of RAM: entries beyond RAM
    // are refused, one count each.
    let mut g = Guest::new(1024, 1 << 18, 4);
    let big = (BUDGET + 4464) as u32;
    g.set_entries(2048..2048 + u64::from(big), 3);
    g.set_entries(500..510, 3);
    g.set_entries(80_000..80_000 + u64::from(big), 3);
    g.push(2048, big);
    g.push(500, 10);
    g.push(80_000, big);
    // First in its drain: applied whole, and nothing after it.
    let r = g.sync();
    assert_eq!((r.status, r.ret), (BUSY, [0; 3]));
    assert_eq!(g.refused(), u64::from(big));
    assert_eq!(g.hyp.consumer(), 1);
    assert_eq!(g.hyp.host_perm(500), Perm::None);
    // The small record fits; the big one after it would exceed.
    let r = g.sync();
    assert_eq!((r.status, r.ret), (BUSY, [0; 3]));
    assert_eq!(g.refused(), u64::from(big));
    assert_eq!(g.hyp.consumer(), 2);
    assert_eq!(g.hyp.host_perm(500), Perm::ReadWrite);
    let r = g.sync();
    assert_eq!((r.status, r.ret), (OK, [1, 0, 0]));
    assert_eq!(g.refused(), 2 * u64::from(big));
    assert_eq!(g.hyp.consumer(), 3);
    assert_eq!(g.sync().status, OK);
}

#[test]
fn records_behind_an_unpublished_one_count_against_the_budget() {
    let mut g = Guest::small();
    g.set_entries(A, 4);
    g.set_entries(B, 4);
    g.set_entries(290..291, 3);
    // Record 0 is reserved and not published yet; the rest of the ring is.
    g.set_producer(1);
    alternate(&g, g.ring_size - 1);
    for _ in 0..3 {
        let work = g.refused();
        let r = g.sync();
        assert_eq!((r.status, r.ret), (BUSY, [0; 3]));
        assert_eq!(g.refused() - work, BUDGET);
        assert_eq!(g.hyp.consumer(), 0, "the consumer passed a hole");
        assert_eq!(g.consumer_in_ram(), 0);
    }
    g.write_record(0, 290, 1, 1);
    let mut calls = 0;
    while g.sync().status == BUSY {
        calls += 1;
        assert!(calls < 1000, "no end to BUSY");
    }
    assert_eq!(g.hyp.consumer(), g.ring_size);
    assert_eq!(g.hyp.host_perm(290), Perm::ReadWrite);
}

#[test]
fn a_kick_drain_stops_at_the_budget_and_leaves_the_rest() {
    let mut g = Guest::small();
    g.set_entries(A, 4);
    g.set_entries(B, 4);
    alternate(&g, g.ring_size);
    let per_drain = BUDGET / 256;
    for k in 1..=3 {
        let work = g.refused();
        let s = g.hyp.drain(&g.ram);
        assert_eq!(s.records, per_drain);
        assert_eq!(s.consumer, k * per_drain);
        assert_eq!(g.consumer_in_ram(), k * per_drain);
        assert_eq!(g.refused() - work, BUDGET);
    }
    assert_eq!(g.hyp.counters().busy(), 0, "a kick answers nobody");
    let mut calls = 0;
    while g.sync().status == BUSY {
        calls += 1;
        assert!(calls < 1000, "no end to BUSY");
    }
    assert_eq!(g.hyp.consumer(), g.ring_size);
    assert_eq!(g.refused(), g.ring_size * 256);
}

#[test]
fn drain_stats_report_the_budget() {
    let mut g = Guest::small();
    g.set_entries(A, 4);
    g.set_entries(B, 4);
    alternate(&g, 300);
    let s = g.hyp.drain(&g.ram);
    assert_eq!((s.records, s.entries, s.out_of_budget), (256, BUDGET, true));
    let s = g.hyp.drain(&g.ram);
    assert_eq!(
        (s.records, s.entries, s.out_of_budget),
        (44, 44 * 256, false)
    );
    let s = g.hyp.drain(&g.ram);
    assert_eq!((s.records, s.entries, s.out_of_budget), (0, 0, false));
    // Bad records name no entries and are not held back by the budget.
    g.push(0, 0);
    g.push(1000, 100);
    alternate(&g, 256);
    g.push(0, 0);
    g.push(A.start, 1);
    let s = g.hyp.drain(&g.ram);
    assert_eq!(
        (s.records, s.bad_records, s.entries, s.out_of_budget),
        (259, 3, BUDGET, true)
    );
    assert_eq!(s.consumer, 300 + 259);
}

#[test]
fn normal_workloads_never_see_busy() {
    // A full ring of the largest order, one page per record, no merging.
    let mut g = Guest::small();
    g.set_entries(A, 3);
    g.set_entries(B, 1);
    for i in 0..g.ring_size {
        g.push(if i % 2 == 0 { A.start } else { B.start }, 1);
    }
    let r = g.sync();
    assert_eq!((r.status, r.ret), (OK, [g.ring_size, 0, 2]));
    assert_eq!(g.hyp.consumer(), g.ring_size);
    assert_eq!(g.hyp.host_perm(A.start), Perm::ReadWrite);
    assert_eq!(g.hyp.host_perm(B.start), Perm::Read);

    // The driver's default ring (order 12) full of 64 KiB buffers.
    let mut g = Guest::new(1024, 1024, 12);
    g.set_entries(A, 3);
    g.set_entries(B, 3);
    for i in 0..g.ring_size {
        g.push(if i % 2 == 0 { A.start } else { B.start }, 16);
    }
    let r = g.sync();
    assert_eq!((r.status, r.ret), (OK, [g.ring_size, 0, 32]));
    assert_eq!(g.hyp.counters().busy(), 0);
}
