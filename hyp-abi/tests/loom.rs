// SPDX-License-Identifier: GPL-2.0-only

//! Exhaustive model of the ring protocol under the C11 memory model.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p pviommu-hyp-abi --release loom`.
//! Each producer writes its table entry (Relaxed) before pushing the record
//! that names it, exactly like the guest; the consumer asserts that every
//! record it sees is complete and that the entry it names is visible, and
//! the consumer index only covers published records.

#![cfg(loom)]

use loom::sync::atomic::{AtomicU8, Ordering};
use loom::sync::Arc;
use loom::thread;
use pviommu_hyp_abi::error::Error;
use pviommu_hyp_abi::ring::{consume, Producer, RingHeader, RingSlot};

struct Shared {
    header: RingHeader,
    slots: [RingSlot; 2],
    table: [AtomicU8; 4],
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        header: RingHeader::new(),
        slots: [RingSlot::new(), RingSlot::new()],
        table: [
            AtomicU8::new(0),
            AtomicU8::new(0),
            AtomicU8::new(0),
            AtomicU8::new(0),
        ],
    })
}

/// The guest's map path: table entry first, then the record.
fn map(s: &Shared, gfn: u64) {
    s.table[gfn as usize].store(1, Ordering::Relaxed);
    let p = Producer::new(&s.header, &s.slots).unwrap();
    loop {
        match p.push(gfn, 1) {
            Ok(()) => return,
            Err(Error::RingFull) => thread::yield_now(),
            Err(e) => panic!("push failed: {e:?}"),
        }
    }
}

/// The hypervisor's drain: every record seen must be whole and its entry set.
fn drain(s: &Shared, consumer: u64, seen: &mut [u32; 4]) -> u64 {
    let start = consumer;
    let next = consume(&s.header, &s.slots, consumer, |gfn, nr| {
        assert_eq!(nr, 1, "torn record");
        assert!((1..4).contains(&gfn), "torn record gfn {gfn}");
        assert_eq!(
            s.table[gfn as usize].load(Ordering::Relaxed),
            1,
            "entry not visible"
        );
        seen[gfn as usize] += 1;
    });
    assert!(next >= start);
    assert!(next <= s.header.producer.load(Ordering::Relaxed));
    next
}

#[test]
fn loom_two_producers_one_consumer() {
    loom::model(|| {
        let s = shared();
        let a = {
            let s = s.clone();
            thread::spawn(move || map(&s, 1))
        };
        let b = {
            let s = s.clone();
            thread::spawn(move || map(&s, 2))
        };
        let mut seen = [0; 4];
        let c = drain(&s, 0, &mut seen);
        a.join().unwrap();
        b.join().unwrap();
        let c = drain(&s, c, &mut seen);
        assert_eq!(c, 2);
        assert!(seen[1] >= 1 && seen[2] >= 1);
    });
}

#[test]
fn loom_wrap_around_with_full_ring() {
    loom::model(|| {
        let s = shared();
        let p = {
            let s = s.clone();
            thread::spawn(move || {
                for gfn in 1..4 {
                    map(&s, gfn);
                }
            })
        };
        let mut seen = [0; 4];
        let mut c = 0;
        // The producer needs the consumer to make room for its third record.
        while c < 3 {
            c = drain(&s, c, &mut seen);
            thread::yield_now();
        }
        p.join().unwrap();
        assert_eq!(seen[1..], [1, 1, 1]);
    });
}

#[test]
fn loom_page_tracker_keeps_the_union() {
    use loom::sync::atomic::AtomicU32;
    use pviommu_hyp_abi::layout::Perm;
    use pviommu_hyp_abi::tracker::PageTracker;

    loom::model(|| {
        let s = Arc::new(([AtomicU32::new(0)], [AtomicU8::new(0)]));
        let reader = {
            let s = s.clone();
            thread::spawn(move || {
                let t = PageTracker::new(&s.0, &s.1).unwrap();
                t.map(0, Perm::Read).unwrap();
                t.unmap(0, Perm::Read).unwrap();
            })
        };
        let t = PageTracker::new(&s.0, &s.1).unwrap();
        t.map(0, Perm::ReadWrite).unwrap();
        reader.join().unwrap();
        assert_eq!(t.entry(0), Some(Perm::ReadWrite));
        t.unmap(0, Perm::ReadWrite).unwrap();
        assert_eq!(t.entry(0), Some(Perm::None));
    });
}
