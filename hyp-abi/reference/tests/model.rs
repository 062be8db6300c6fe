// SPDX-License-Identifier: GPL-2.0-only

//! Model-based property test: random guest operation sequences against the
//! reference hypervisor, with the real guest-side tracker and producer.
//!
//! The guest memory the hypervisor reads *is* the guest's atomic table and
//! ring, so every ordering of table stores, reservations and publications
//! the test performs is what the hypervisor sees. Besides well-behaved
//! maps and unmaps, the operations include reservations held open (another
//! CPU between reserve and publish), torn records (fields written, `seq`
//! not yet) and records published out of order. After every `SYNC` the
//! host view must equal the guest's intended shares exactly, and after an
//! `APPLY` the view of its range; every host access must succeed exactly
//! when the intent allows it. Half the runs are a guest with `APPLY`, which
//! bypasses a ring that another CPU's reservation keeps full; the others
//! wait for that CPU.

mod common;

use common::{
    APPLY, HOLE, INIT, POOL_GFN, POOL_PAGES, RAM_PAGES, RING_GFN, RING_ORDER, SHARE, SYNC, UNSHARE,
};
use proptest::prelude::*;
use pviommu_hyp_abi::check::{check_progress, check_sync};
use pviommu_hyp_abi::error::Error;
use pviommu_hyp_abi::layout::{record_seq, Perm};
use pviommu_hyp_abi::ring::{Producer, RingHeader, RingSlot};
use pviommu_hyp_abi::tracker::PageTracker;
use pviommu_reference_hyp::{Access, Config, GuestRam, Hypervisor, OutOfRange};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

const RING_SIZE: usize = 1 << RING_ORDER;
const RING_GPA: u64 = RING_GFN << 12;
/// Frames that buffers use: overlaps the pool, stays off the table and ring.
const BUF_GFNS: std::ops::Range<u64> = 4..40;

/// The guest's private tracker state and its shared table and ring.
struct Sim {
    state: Vec<AtomicU32>,
    table: Vec<AtomicU8>,
    header: RingHeader,
    slots: Vec<RingSlot>,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            state: (0..RAM_PAGES).map(|_| AtomicU32::new(0)).collect(),
            table: (0..RAM_PAGES).map(|_| AtomicU8::new(0)).collect(),
            header: RingHeader::new(),
            slots: (0..RING_SIZE).map(|_| RingSlot::new()).collect(),
        }
    }

    fn byte(&self, gpa: u64) -> Result<u8, OutOfRange> {
        let le = |v: u64, i: u64| v.to_le_bytes()[i as usize];
        Ok(match gpa {
            g if g < RAM_PAGES => self.table[g as usize].load(Ordering::Relaxed),
            g if (RING_GPA..RING_GPA + 8).contains(&g) => {
                le(self.header.producer.load(Ordering::Relaxed), g - RING_GPA)
            }
            g if (RING_GPA + 64..RING_GPA + 72).contains(&g) => le(
                self.header.consumer.load(Ordering::Relaxed),
                g - RING_GPA - 64,
            ),
            g if (RING_GPA + 4096..RING_GPA + 4096 + 16 * RING_SIZE as u64).contains(&g) => {
                let off = g - RING_GPA - 4096;
                let slot = &self.slots[(off / 16) as usize];
                match off % 16 {
                    i @ 0..=7 => le(slot.gfn.load(Ordering::Relaxed), i),
                    i @ 8..=11 => le(slot.nr_pages.load(Ordering::Relaxed).into(), i - 8),
                    i => le(slot.seq.load(Ordering::Acquire).into(), i - 12),
                }
            }
            g if g < RAM_PAGES << 12 => 0,
            _ => return Err(OutOfRange),
        })
    }
}

impl GuestRam for Sim {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.byte(gpa + i as u64)?;
        }
        Ok(())
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        // The hypervisor only ever writes the consumer index.
        if gpa == RING_GPA + 64 {
            let v = u64::from_le_bytes(data.try_into().map_err(|_| OutOfRange)?);
            self.header.consumer.store(v, Ordering::Release);
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
enum Op {
    Map {
        gfn: u64,
        nr: u32,
        write: bool,
    },
    Unmap {
        pick: usize,
    },
    /// Another CPU reserves a record and stops before publishing; with
    /// `torn`, it has already written the record's fields.
    Hold {
        torn: bool,
    },
    /// A held record gets published (out of order with later ones).
    Release {
        pick: usize,
        gfn: u64,
    },
    Kick,
    Sync,
    Access {
        gfn: u64,
        write: bool,
    },
    Share {
        gfn: u64,
        nr: u64,
        write: bool,
    },
    Unshare {
        gfn: u64,
        nr: u64,
    },
    /// The guest applies a range's table entries without the ring.
    Apply {
        gfn: u64,
        nr: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (BUF_GFNS, 1u32..6, any::<bool>()).prop_map(|(gfn, nr, write)| Op::Map { gfn, nr, write }),
        4 => any::<usize>().prop_map(|pick| Op::Unmap { pick }),
        1 => any::<bool>().prop_map(|torn| Op::Hold { torn }),
        2 => (any::<usize>(), BUF_GFNS).prop_map(|(pick, gfn)| Op::Release { pick, gfn }),
        1 => Just(Op::Kick),
        2 => Just(Op::Sync),
        3 => (0..RAM_PAGES, any::<bool>()).prop_map(|(gfn, write)| Op::Access { gfn, write }),
        1 => (BUF_GFNS, 1u64..4, any::<bool>()).prop_map(|(gfn, nr, write)| Op::Share { gfn, nr, write }),
        1 => (BUF_GFNS, 1u64..4).prop_map(|(gfn, nr)| Op::Unshare { gfn, nr }),
        1 => (BUF_GFNS, 1u64..6).prop_map(|(gfn, nr)| Op::Apply { gfn, nr }),
    ]
}

struct World<'a> {
    sim: &'a Sim,
    hyp: Hypervisor,
    /// Live DMA mappings: (gfn, nr, perm).
    live: Vec<(u64, u32, Perm)>,
    /// Intended direct shares per frame.
    direct: Vec<Perm>,
    /// Reservations held open by "other CPUs".
    held: Vec<pviommu_hyp_abi::ring::Reservation<'a>>,
    /// The hypervisor offers `APPLY` and the guest uses it for a full ring.
    bypass: bool,
}

impl<'a> World<'a> {
    fn producer(&self) -> Producer<'a> {
        Producer::new(&self.sim.header, &self.sim.slots).unwrap()
    }

    fn tracker(&self) -> PageTracker<'a> {
        PageTracker::new(&self.sim.state, &self.sim.table).unwrap()
    }

    fn intended(&self, gfn: u64) -> Perm {
        let mut perm = self.direct[gfn as usize];
        for &(g, n, p) in &self.live {
            if (g..g + u64::from(n)).contains(&gfn) {
                perm = perm.union(p);
            }
        }
        perm
    }

    fn sync(&mut self) {
        let r = self.hyp.call(self.sim, SYNC, [0; 6]);
        check_sync(r.status, &r.ret, RING_SIZE as u64, RAM_PAGES).unwrap();
    }

    /// Applies the table entries of `gfn..gfn + nr`, looping on partial
    /// progress as the ABI requires.
    fn apply(&mut self, gfn: u64, nr: u64) {
        let mut done = 0;
        while done < nr {
            let r = self
                .hyp
                .call(self.sim, APPLY, [gfn + done, nr - done, 0, 0, 0, 0]);
            done += check_progress(r.status, r.ret[0], nr - done).unwrap();
        }
    }

    /// Appends a record; a full ring is resolved by `SYNC`. If another
    /// CPU's held reservation blocks the consumer, a guest with `APPLY`
    /// applies the range without a record; one without waits until that
    /// CPU finishes.
    fn push(&mut self, gfn: u64, nr: u32) {
        let mut synced = false;
        loop {
            match self.producer().push(gfn, nr) {
                Ok(()) => return,
                Err(Error::RingFull) if self.bypass && synced => {
                    self.apply(gfn, nr.into());
                    return;
                }
                Err(Error::RingFull) => {
                    if !self.bypass {
                        if let Some(r) = self.held.pop() {
                            r.publish(gfn, nr);
                        }
                    }
                    self.sync();
                    synced = true;
                }
                Err(e) => panic!("push: {e:?}"),
            }
        }
    }

    fn assert_view(&self) {
        for gfn in 0..RAM_PAGES {
            assert_eq!(self.hyp.host_perm(gfn), self.intended(gfn), "gfn {gfn}");
        }
    }

    fn run(&mut self, op: Op) {
        match op {
            Op::Map { gfn, nr, write } => {
                let perm = if write { Perm::ReadWrite } else { Perm::Read };
                let (progress, result) = self.tracker().map_range(gfn, nr, perm);
                result.unwrap();
                if let Some((g, n)) = progress.record() {
                    self.push(g, n);
                }
                self.live.push((gfn, nr, perm));
            }
            Op::Unmap { pick } => {
                if self.live.is_empty() {
                    return;
                }
                let (gfn, nr, perm) = self.live.swap_remove(pick % self.live.len());
                let (progress, result) = self.tracker().unmap_range(gfn, nr, perm);
                result.unwrap();
                if let Some((g, n)) = progress.record() {
                    self.push(g, n);
                }
                // Strict unmap: the pages are revoked when SYNC returns.
                self.sync();
                for g in gfn..gfn + u64::from(nr) {
                    let want = self.intended(g);
                    assert_eq!(self.hyp.host_perm(g), want, "after unmap, gfn {g}");
                }
            }
            Op::Hold { torn } => {
                if self.held.len() >= 2 {
                    return;
                }
                if let Ok(r) = self.producer().reserve() {
                    if torn {
                        let slot = &self.sim.slots[(r.index() % RING_SIZE as u64) as usize];
                        slot.gfn.store(0, Ordering::Relaxed);
                        slot.nr_pages.store(u32::MAX, Ordering::Relaxed);
                        assert_ne!(slot.seq.load(Ordering::Relaxed), record_seq(r.index()));
                    }
                    self.held.push(r);
                }
            }
            Op::Release { pick, gfn } => {
                if !self.held.is_empty() {
                    let r = self.held.remove(pick % self.held.len());
                    r.publish(gfn, 1);
                }
            }
            Op::Kick => {
                self.hyp.drain(self.sim);
            }
            Op::Sync => {
                self.sync();
                self.assert_view();
            }
            Op::Access { gfn, write } => {
                let (access, need) = if write {
                    (Access::Write, Perm::ReadWrite)
                } else {
                    (Access::Read, Perm::Read)
                };
                let ok = self
                    .hyp
                    .check_access(self.sim, gfn << 12, 4096, access)
                    .is_ok();
                assert_eq!(
                    ok,
                    self.intended(gfn).allows(need),
                    "access to gfn {gfn} write={write}"
                );
            }
            Op::Share { gfn, nr, write } => {
                let perm = if write { Perm::ReadWrite } else { Perm::Read };
                let mut done = 0;
                while done < nr {
                    let r = self.hyp.call(
                        self.sim,
                        SHARE,
                        [gfn + done, nr - done, perm.bits().into(), 0, 0, 0],
                    );
                    done += check_progress(r.status, r.ret[0], nr - done).unwrap();
                }
                for g in gfn..gfn + nr {
                    self.direct[g as usize] = perm;
                }
            }
            Op::Unshare { gfn, nr } => {
                let r = self.hyp.call(self.sim, UNSHARE, [gfn, nr, 0, 0, 0, 0]);
                assert_eq!(check_progress(r.status, r.ret[0], nr), Ok(nr));
                for g in gfn..gfn + nr {
                    self.direct[g as usize] = Perm::None;
                }
            }
            Op::Apply { gfn, nr } => {
                self.apply(gfn, nr);
                for g in gfn..gfn + nr {
                    assert_eq!(
                        self.hyp.host_perm(g),
                        self.intended(g),
                        "after APPLY, gfn {g}"
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn host_view_equals_intent_after_every_sync(
        ops in proptest::collection::vec(op(), 1..80),
        bypass in any::<bool>(),
    ) {
        let sim = Sim::new();
        let mut hyp = Hypervisor::new(Config {
            ram: vec![0..HOLE.start << 12, HOLE.end << 12..RAM_PAGES << 12],
        });
        let r = hyp.call(&sim, INIT, [0, RAM_PAGES, RING_GPA, RING_ORDER.into(), POOL_GFN << 12, POOL_PAGES]);
        prop_assert_eq!(r.status, 0);
        let mut direct = vec![Perm::None; RAM_PAGES as usize];
        for g in POOL_GFN..POOL_GFN + POOL_PAGES {
            direct[g as usize] = Perm::ReadWrite;
        }
        let mut world = World { sim: &sim, hyp, live: Vec::new(), direct, held: Vec::new(), bypass };
        for op in ops {
            world.run(op);
        }
        // Every CPU finishes its record; then the view is exact.
        while let Some(r) = world.held.pop() {
            r.publish(BUF_GFNS.start, 1);
        }
        world.sync();
        world.assert_view();
        prop_assert_eq!(world.hyp.consumer(), sim.header.producer.load(Ordering::Relaxed));
        let c = world.hyp.counters();
        prop_assert_eq!(c.bad_table_entries, 0);
        prop_assert_eq!(c.forbidden_shares, 0);
    }
}
