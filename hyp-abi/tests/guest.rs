// SPDX-License-Identifier: GPL-2.0-only

//! Guest-side logic: page tracker, ring producer, answer checks, errnos.

#![cfg(not(loom))]

use pviommu_hyp_abi::call::{
    errno_from_status, Func, Status, ABI_VERSION, FEATURES_KNOWN, FEATURE_APPLY, NR_FUNCS,
};
use pviommu_hyp_abi::check::{
    check_consumer, check_mailbox_header, check_progress, check_status, check_sync, check_version,
};
use pviommu_hyp_abi::error::{
    Error, EAGAIN, EBUSY, EINVAL, EIO, ENOMEM, EOPNOTSUPP, EOVERFLOW, EPERM,
};
use pviommu_hyp_abi::layout::{record_seq, Perm};
use pviommu_hyp_abi::mailbox::{MailboxHeader, MAILBOX_MAGIC};
use pviommu_hyp_abi::ring::{consume, Producer, RingHeader, RingSlot};
use pviommu_hyp_abi::tracker::{PageTracker, MAX_MAPPINGS};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

fn tracker_state(n: usize) -> (Vec<AtomicU32>, Vec<AtomicU8>) {
    (
        (0..n).map(|_| AtomicU32::new(0)).collect(),
        (0..n).map(|_| AtomicU8::new(0)).collect(),
    )
}

#[test]
fn table_is_the_union_of_live_mappings() {
    let (s, t) = tracker_state(4);
    let tr = PageTracker::new(&s, &t).unwrap();
    assert_eq!(tr.map(1, Perm::Read), Ok(true));
    assert_eq!(tr.map(1, Perm::Read), Ok(false));
    assert_eq!(tr.entry(1), Some(Perm::Read));
    assert_eq!(tr.map(1, Perm::ReadWrite), Ok(true));
    assert_eq!(tr.entry(1), Some(Perm::ReadWrite));
    assert_eq!(tr.unmap(1, Perm::ReadWrite), Ok(true));
    assert_eq!(tr.entry(1), Some(Perm::Read));
    assert_eq!(tr.unmap(1, Perm::Read), Ok(false));
    assert_eq!(tr.unmap(1, Perm::Read), Ok(true));
    assert_eq!(tr.entry(1), Some(Perm::None));
    assert_eq!(t[1].load(Ordering::Relaxed), 0);
}

#[test]
fn tracker_rejects_bad_input_without_change() {
    let (s, t) = tracker_state(4);
    let tr = PageTracker::new(&s, &t).unwrap();
    assert_eq!(tr.unmap(0, Perm::Read), Err(Error::Underflow));
    assert_eq!(tr.map(0, Perm::None), Err(Error::InvalidArgument));
    assert_eq!(tr.unmap(0, Perm::None), Err(Error::InvalidArgument));
    assert_eq!(tr.map(4, Perm::Read), Err(Error::OutOfRange));
    assert_eq!(tr.map(u64::MAX, Perm::Read), Err(Error::OutOfRange));
    tr.map(0, Perm::ReadWrite).unwrap();
    assert_eq!(
        tr.unmap(0, Perm::Read),
        Err(Error::Underflow),
        "read count is separate"
    );
    assert_eq!(tr.entry(0), Some(Perm::ReadWrite));
    let (s2, t2) = tracker_state(3);
    assert!(PageTracker::new(&s2, &t2[..2]).is_err());
}

#[test]
fn counts_saturate_with_an_error() {
    let (s, t) = tracker_state(1);
    let tr = PageTracker::new(&s, &t).unwrap();
    for perm in [Perm::Read, Perm::Write, Perm::ReadWrite] {
        for _ in 0..MAX_MAPPINGS {
            tr.map(0, perm).unwrap();
        }
        assert_eq!(tr.map(0, perm), Err(Error::Overflow));
    }
    assert_eq!(tr.entry(0), Some(Perm::ReadWrite));
    for _ in 0..MAX_MAPPINGS {
        tr.unmap(0, Perm::ReadWrite).unwrap();
    }
    assert_eq!(
        tr.entry(0),
        Some(Perm::ReadWrite),
        "read-only and write-only left"
    );
    for _ in 0..MAX_MAPPINGS {
        tr.unmap(0, Perm::Write).unwrap();
    }
    assert_eq!(tr.entry(0), Some(Perm::Read));
}

#[test]
fn ranges_report_progress_and_the_changed_span() {
    let (s, t) = tracker_state(16);
    let tr = PageTracker::new(&s, &t).unwrap();
    tr.map(3, Perm::Read).unwrap();
    let (p, r) = tr.map_range(2, 4, Perm::Read);
    assert_eq!(r, Ok(()));
    assert_eq!(p.done, 4);
    assert_eq!(p.record(), Some((2, 4)), "3 did not change but lies inside");
    let (p, r) = tr.map_range(3, 1, Perm::Read);
    assert_eq!((p.record(), r), (None, Ok(())));
    let (p, r) = tr.map_range(14, 4, Perm::Read);
    assert_eq!((p.done, r), (0, Err(Error::OutOfRange)));
    // Unmapping stops at the first page that was not mapped.
    let (p, r) = tr.unmap_range(4, 3, Perm::Read);
    assert_eq!(
        (p.done, p.record(), r),
        (2, Some((4, 2)), Err(Error::Underflow))
    );
}

#[test]
fn concurrent_map_unmap_keeps_table_consistent() {
    let (s, t) = tracker_state(8);
    let tr = PageTracker::new(&s, &t).unwrap();
    std::thread::scope(|scope| {
        for cpu in 0..4u64 {
            scope.spawn(move || {
                for i in 0..2000u64 {
                    let gfn = (i + cpu) % 8;
                    let perm = if (i ^ cpu) & 1 == 0 {
                        Perm::Read
                    } else {
                        Perm::ReadWrite
                    };
                    tr.map(gfn, perm).unwrap();
                    tr.unmap(gfn, perm).unwrap();
                }
            });
        }
    });
    for gfn in 0..8 {
        assert_eq!(tr.entry(gfn), Some(Perm::None));
        assert_eq!(s[gfn as usize].load(Ordering::Relaxed), 0);
    }
}

fn ring(n: usize) -> (RingHeader, Vec<RingSlot>) {
    (RingHeader::new(), (0..n).map(|_| RingSlot::new()).collect())
}

#[test]
fn producer_publishes_until_full() {
    let (h, slots) = ring(4);
    let p = Producer::new(&h, &slots).unwrap();
    assert_eq!(p.size(), 4);
    for i in 0..4u64 {
        p.push(10 + i, 1).unwrap();
        assert_eq!(slots[i as usize].seq.load(Ordering::Relaxed), record_seq(i));
    }
    assert_eq!(p.push(20, 1), Err(Error::RingFull));
    assert_eq!(p.push(20, 0), Err(Error::InvalidArgument));
    let mut seen = Vec::new();
    let c = consume(&h, &slots, 0, |gfn, nr| seen.push((gfn, nr)));
    assert_eq!((c, seen.len()), (4, 4));
    assert_eq!(p.consumer(), Ok(4));
    p.push(20, 2).unwrap();
    assert_eq!(slots[0].gfn.load(Ordering::Relaxed), 20);
    assert_eq!(slots[0].seq.load(Ordering::Relaxed), 5);
}

#[test]
fn producer_rejects_bad_rings_and_hostile_consumers() {
    let (h, slots) = ring(6);
    assert!(Producer::new(&h, &slots).is_err());
    assert!(Producer::new(&h, &slots[..1]).is_err());
    let p = Producer::new(&h, &slots[..4]).unwrap();
    h.consumer.store(3, Ordering::Relaxed);
    assert_eq!(p.push(1, 1), Err(Error::Hostile));
    assert_eq!(p.consumer(), Err(Error::Hostile));
}

#[test]
fn consumer_skips_gaps_but_stops_its_index() {
    let (h, slots) = ring(4);
    let p = Producer::new(&h, &slots).unwrap();
    let hole = p.reserve().unwrap();
    p.push(7, 1).unwrap();
    let mut seen = Vec::new();
    assert_eq!(consume(&h, &slots, 0, |g, n| seen.push((g, n))), 0);
    assert_eq!(seen, [(7, 1)]);
    assert_eq!(hole.index(), 0);
    hole.publish(6, 1);
    seen.clear();
    assert_eq!(consume(&h, &slots, 0, |g, n| seen.push((g, n))), 2);
    assert_eq!(seen, [(6, 1), (7, 1)]);
}

#[test]
fn concurrent_producers_deliver_every_record_once() {
    let (h, slots) = ring(16);
    let p = Producer::new(&h, &slots).unwrap();
    let done = AtomicU32::new(0);
    let mut seen = vec![0u32; 4 * 1000];
    std::thread::scope(|scope| {
        for cpu in 0..4u64 {
            let done = &done;
            scope.spawn(move || {
                for i in 0..1000u64 {
                    while p.push(cpu * 1000 + i, 1) == Err(Error::RingFull) {
                        std::hint::spin_loop();
                    }
                }
                done.fetch_add(1, Ordering::Release);
            });
        }
        let mut consumer = 0;
        let mut applied = std::collections::HashSet::new();
        loop {
            let finished = done.load(Ordering::Acquire) == 4;
            let start = consumer;
            let mut batch = Vec::new();
            consumer = consume(&h, &slots, consumer, |g, _| batch.push(g));
            // Only records the index moved over are final; the rest are
            // seen again next time (applying is idempotent).
            for (k, g) in batch.into_iter().enumerate() {
                if (k as u64) < consumer - start {
                    assert!(applied.insert(g), "record {g} consumed twice");
                    seen[g as usize] += 1;
                }
            }
            if finished && consumer == h.producer.load(Ordering::Relaxed) {
                break;
            }
        }
    });
    assert!(seen.iter().all(|&n| n == 1));
}

#[test]
fn every_status_has_one_errno() {
    let expect = [
        (0, 0),
        (-1, -EOPNOTSUPP),
        (-3, -EINVAL),
        (-0x100, -EPERM),
        (-0x101, -EAGAIN),
        (-0x102, -ENOMEM),
        (-0x103, -EBUSY),
        // SMCCC NOT_REQUIRED is not a pviommu status.
        (-2, -EIO),
        // The 1.x numbers of DENIED..BAD_STATE, and the neighbours of the
        // pviommu block, are undefined.
        (-4, -EIO),
        (-5, -EIO),
        (-6, -EIO),
        (-7, -EIO),
        (-0xff, -EIO),
        (-0x104, -EIO),
        (0x100, -EIO),
        (1, -EIO),
        (i64::MIN, -EIO),
    ];
    for (status, errno) in expect {
        assert_eq!(errno_from_status(status), errno, "status {status}");
        if let Some(s) = Status::from_raw(status) {
            assert_eq!(s.raw(), status);
        }
    }
    assert_eq!(Status::from_raw(-2), None);
    assert_eq!(check_status(-2), Err(Error::Hostile));
    assert_eq!(Error::Overflow.to_errno(), -EOVERFLOW);
    assert_eq!(Error::Hostile.to_errno(), -EIO);
    assert_eq!(Error::Hyp(Status::Denied).to_errno(), -EPERM);
}

#[test]
fn function_ids_are_vendor_hyp_fast_smc64() {
    assert_eq!(Func::Version.smccc_id(), 0xC600_8000);
    assert_eq!(Func::Reset.smccc_id(), 0xC600_8005);
    assert_eq!(Func::Apply.smccc_id(), 0xC600_8006);
    assert_eq!(Func::from_smccc_id(0xC600_8002), Some(Func::Sync));
    assert_eq!(Func::from_smccc_id(0xC600_8006), Some(Func::Apply));
    assert_eq!(Func::from_smccc_id(0xC600_8007), Some(Func::Stats));
    assert_eq!(Func::from_smccc_id(0xC600_8008), None);
    assert_eq!(Func::from_smccc_id(0x8600_8000), None);
    // KVM's vendor-hyp functions (0..127), the 1.x IDs among them, are
    // not ours.
    for kvm in 0..128 {
        assert_eq!(Func::from_smccc_id(0xC600_0000 + kvm), None, "{kvm}");
    }
    for raw in 0..NR_FUNCS as u32 {
        assert_eq!(Func::from_raw(raw).map(|f| f as u32), Some(raw));
    }
    assert_eq!(Func::from_raw(NR_FUNCS as u32), None);
    assert_eq!((Func::Apply.nr_args(), Func::Apply.name()), (2, "apply"));
    assert_eq!((Func::Stats.nr_args(), Func::Stats.name()), (1, "stats"));
}

#[test]
fn hypervisor_answers_are_checked() {
    assert_eq!(ABI_VERSION, 0x2_0002);
    let v = check_version(0, &[ABI_VERSION.into(), FEATURE_APPLY, 16]).unwrap();
    assert_eq!((v.major, v.minor, v.max_ring_order), (2, 2, 16));
    assert_eq!(v.features, FEATURE_APPLY);
    // A 2.0 hypervisor without APPLY.
    let v = check_version(0, &[0x2_0000, 0, 16]).unwrap();
    assert_eq!((v.minor, v.features & FEATURE_APPLY), (0, 0));
    // Bits a later minor version defines are not an error: the guest
    // ignores them by testing only the bits it knows.
    let v = check_version(0, &[0x2_0007, !FEATURES_KNOWN, 16]).unwrap();
    assert_eq!((v.minor, v.features & FEATURES_KNOWN), (7, 0));
    // 1.x (other function IDs and statuses) and 3.x are declined.
    for other in [0x1_0000, 0x1_0001, 0x3_0000] {
        assert_eq!(
            check_version(0, &[other, 0, 16]),
            Err(Error::Hyp(Status::NotSupported)),
            "{other:#x}"
        );
    }
    assert_eq!(check_version(0, &[1 << 40, 0, 16]), Err(Error::Hostile));
    assert_eq!(check_version(0, &[0x2_0000, 0, 99]), Err(Error::Hostile));
    assert_eq!(check_version(-9, &[0; 3]), Err(Error::Hostile));
    // SMCCC NOT_SUPPORTED from VERSION: no pviommu.
    assert_eq!(
        check_version(-1, &[0; 3]),
        Err(Error::Hyp(Status::NotSupported))
    );
    assert_eq!(check_progress(0, 3, 4), Ok(3));
    assert_eq!(check_progress(0, 5, 4), Err(Error::Hostile));
    assert_eq!(
        check_progress(-0x100, 0, 4),
        Err(Error::Hyp(Status::Denied))
    );
    assert_eq!(
        check_progress(-3, 0, 4),
        Err(Error::Hyp(Status::InvalidParameter))
    );
    assert_eq!(check_progress(-2, 0, 4), Err(Error::Hostile));
    assert!(check_sync(0, &[8, 10, 10], 8, 10).is_ok());
    assert!(
        check_sync(0, &[2, 20, 20], 8, 10).is_ok(),
        "a page may change twice"
    );
    assert_eq!(check_sync(0, &[9, 0, 0], 8, 10), Err(Error::Hostile));
    assert_eq!(
        check_sync(0, &[0, 1, 0], 8, 10),
        Err(Error::Hostile),
        "pages without records"
    );
    assert_eq!(check_sync(0, &[1, 0, 11], 8, 10), Err(Error::Hostile));
    assert_eq!(check_consumer(2, 5, 6, 8), Ok(5));
    assert_eq!(check_consumer(2, 1, 6, 8), Err(Error::Hostile), "backwards");
    assert_eq!(
        check_consumer(2, 7, 6, 8),
        Err(Error::Hostile),
        "past producer"
    );
    assert_eq!(check_consumer(u64::MAX, 1, 2, 8), Ok(1), "wraps");
}

#[test]
fn permissions_encode_like_the_table() {
    assert_eq!(Perm::from_entry(2), Some(Perm::Write));
    assert_eq!(Perm::from_entry(5), None);
    assert_eq!(Perm::from_entry_or_none(0xff), Perm::None);
    assert_eq!(Perm::Read.union(Perm::ReadWrite), Perm::ReadWrite);
    assert_eq!(Perm::Read.union(Perm::Write), Perm::ReadWrite);
    assert!(Perm::ReadWrite.allows(Perm::Read));
    assert!(Perm::ReadWrite.allows(Perm::Write));
    assert!(!Perm::Read.allows(Perm::ReadWrite));
    assert!(!Perm::Write.allows(Perm::Read), "write-only");
    assert!(!Perm::Read.allows(Perm::Write));
}

#[test]
fn write_only_mappings_make_the_union() {
    let (s, t) = tracker_state(2);
    let tr = PageTracker::new(&s, &t).unwrap();
    assert_eq!(tr.map(0, Perm::Write), Ok(true));
    assert_eq!(tr.entry(0), Some(Perm::Write));
    assert_eq!(tr.map(0, Perm::Read), Ok(true), "read joins: read-write");
    assert_eq!(tr.entry(0), Some(Perm::ReadWrite));
    assert_eq!(tr.map(0, Perm::ReadWrite), Ok(false), "already read-write");
    assert_eq!(
        tr.unmap(0, Perm::Read),
        Ok(false),
        "the read-write one still reads"
    );
    assert_eq!(tr.unmap(0, Perm::ReadWrite), Ok(true), "only write is left");
    assert_eq!(tr.entry(0), Some(Perm::Write));
    assert_eq!(
        tr.unmap(0, Perm::Read),
        Err(Error::Underflow),
        "counts are separate"
    );
    assert_eq!(tr.unmap(0, Perm::Write), Ok(true));
    assert_eq!(tr.entry(0), Some(Perm::None));
}

#[test]
fn mailbox_header_is_checked_against_the_bar() {
    let good = MailboxHeader {
        magic: MAILBOX_MAGIC,
        abi_version: ABI_VERSION,
        region_size: 65536,
        nr_slots: 480,
        ..Default::default()
    };
    assert_eq!(check_mailbox_header(&good, 65536), Ok(480));
    let minor = MailboxHeader {
        abi_version: ABI_VERSION + 7,
        ..good
    };
    assert_eq!(
        check_mailbox_header(&minor, 65536),
        Ok(480),
        "higher minor is fine"
    );
    let not_ours = Err(Error::Hyp(Status::NotSupported));
    assert_eq!(
        check_mailbox_header(&MailboxHeader { magic: 0, ..good }, 65536),
        not_ours
    );
    for other in [0x1_0001, 0x3_0000] {
        assert_eq!(
            check_mailbox_header(
                &MailboxHeader {
                    abi_version: other,
                    ..good
                },
                65536
            ),
            not_ours,
            "{other:#x}"
        );
    }
    for (h, bar) in [
        (good, 32768),
        (
            MailboxHeader {
                nr_slots: 481,
                ..good
            },
            65536,
        ),
        (
            MailboxHeader {
                nr_slots: 0,
                ..good
            },
            65536,
        ),
        (
            MailboxHeader {
                region_size: 4096,
                ..good
            },
            4096,
        ),
    ] {
        assert_eq!(
            check_mailbox_header(&h, bar),
            Err(Error::Hostile),
            "{h:?} in {bar}"
        );
    }
}
