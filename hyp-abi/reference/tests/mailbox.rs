// SPDX-License-Identifier: GPL-2.0-only

//! The MMIO mailbox transport.

mod common;

use common::*;
use pviommu_reference_hyp::abi::call::{ABI_VERSION, FEATURES_KNOWN};
use pviommu_reference_hyp::abi::mailbox::{
    slot_offset, MailboxHeader, MailboxSlot, MAILBOX_MAGIC, SLOT_REQ_SEQ_OFFSET,
};
use pviommu_reference_hyp::{
    init_region, mailbox_pending, serve_mailbox, RegionError, SharedRegion, VecRegion,
};

fn read_slot(region: &VecRegion, slot: u32) -> MailboxSlot {
    let mut b = [0u8; 128];
    region.read(slot_offset(slot), &mut b).unwrap();
    MailboxSlot::from_le_bytes(&b)
}

fn write_slot(region: &VecRegion, slot: u32, s: &MailboxSlot) {
    region.write(slot_offset(slot), &s.to_le_bytes()).unwrap();
}

#[test]
fn init_region_writes_the_header() {
    let region = VecRegion::new(65536);
    let h = init_region(&region, 3, 1).unwrap();
    let mut b = [0u8; 64];
    region.read(0, &mut b).unwrap();
    assert_eq!(MailboxHeader::from_le_bytes(&b), h);
    assert_eq!(&b[..4], b"PIOM");
    assert_eq!(
        (h.magic, h.abi_version, h.region_size),
        (MAILBOX_MAGIC, ABI_VERSION, 65536)
    );
    assert_eq!(
        (h.nr_slots, h.hyp_peer_id, h.doorbell_vector, h.features),
        (480, 3, 1, FEATURES_KNOWN)
    );
}

#[test]
fn init_region_rejects_bad_sizes() {
    for size in [4096, 12288, 65535] {
        assert_eq!(
            init_region(&VecRegion::new(size), 0, 0),
            Err(RegionError::BadSize)
        );
    }
}

#[test]
fn pending_until_the_call_is_answered() {
    let mut g = Guest::bare();
    let region = VecRegion::new(16384);
    init_region(&region, 1, 0).unwrap();
    assert!(!mailbox_pending(&region), "a fresh region holds no call");
    let s = MailboxSlot {
        func: 0,
        req_seq: 3,
        ..Default::default()
    };
    write_slot(&region, 4, &s);
    assert!(mailbox_pending(&region), "req_seq != done_seq is a call");
    assert_eq!(serve_mailbox(&mut g.hyp, &g.ram, &region), 1);
    assert!(!mailbox_pending(&region), "answered: nothing pending");
}

#[test]
fn serve_answers_pending_slots_only() {
    let mut g = Guest::bare();
    let region = VecRegion::new(16384);
    init_region(&region, 1, 0).unwrap();
    assert_eq!(serve_mailbox(&mut g.hyp, &g.ram, &region), 0);
    let mut s = MailboxSlot {
        func: 1,
        args: init_args(),
        req_seq: 1,
        ..Default::default()
    };
    write_slot(&region, 2, &s);
    s.func = 0;
    s.args = [0; 6];
    s.req_seq = 7;
    write_slot(&region, 5, &s);
    assert_eq!(serve_mailbox(&mut g.hyp, &g.ram, &region), 2);
    let a = read_slot(&region, 2);
    assert_eq!((a.status, a.done_seq), (0, 1));
    assert!(g.hyp.is_initialised());
    let b = read_slot(&region, 5);
    assert_eq!(
        (b.status, b.ret[0], b.done_seq),
        (0, u64::from(ABI_VERSION), 7)
    );
    assert_eq!(
        serve_mailbox(&mut g.hyp, &g.ram, &region),
        0,
        "nothing pending any more"
    );
}

#[test]
fn non_zero_flags_are_invalid() {
    let mut g = Guest::bare();
    let region = VecRegion::new(8192);
    init_region(&region, 1, 0).unwrap();
    let s = MailboxSlot {
        func: 0,
        flags: 1,
        req_seq: 1,
        ..Default::default()
    };
    write_slot(&region, 0, &s);
    assert_eq!(serve_mailbox(&mut g.hyp, &g.ram, &region), 1);
    assert_eq!(read_slot(&region, 0).status, -3, "INVALID_PARAMETER");
}

#[test]
fn the_header_cannot_enlarge_the_slot_count() {
    let mut g = Guest::bare();
    let region = VecRegion::new(8192);
    init_region(&region, 1, 0).unwrap();
    // The guest scribbles over nr_slots: the hypervisor ignores it.
    region.write(12, &u32::MAX.to_le_bytes()).unwrap();
    assert_eq!(serve_mailbox(&mut g.hyp, &g.ram, &region), 0);
}

/// A region whose guest is still writing a slot while the hypervisor
/// reads it: until the first read that covers `req_seq`, the slot holds
/// the previous call's payload; the guest's new payload lands during that
/// read, after its bytes were copied (they lie before `req_seq`), and its
/// new `req_seq` just in time (the guest stores it last, with release).
struct Racing {
    inner: VecRegion,
    slot_off: u64,
    next: MailboxSlot,
    landed: std::cell::Cell<bool>,
}

impl SharedRegion for Racing {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), pviommu_reference_hyp::OutOfRange> {
        let seq = self.slot_off + SLOT_REQ_SEQ_OFFSET;
        let covers = off <= seq && seq < off + buf.len() as u64;
        if covers && !self.landed.get() {
            // The bytes before `req_seq` are copied before the guest's
            // stores land; `req_seq` and everything after, after them.
            let split = (seq - off) as usize;
            self.inner.read(off, &mut buf[..split])?;
            self.inner.write(self.slot_off, &self.next.to_le_bytes())?;
            self.landed.set(true);
            return self.inner.read(seq, &mut buf[split..]);
        }
        self.inner.read(off, buf)
    }

    fn write(&self, off: u64, data: &[u8]) -> Result<(), pviommu_reference_hyp::OutOfRange> {
        self.inner.write(off, data)
    }
}

#[test]
fn a_slot_read_before_its_seq_never_serves_a_stale_call() {
    let mut g = Guest::new();
    let region = Racing {
        inner: VecRegion::new(16384),
        slot_off: slot_offset(3),
        next: MailboxSlot::default(),
        landed: std::cell::Cell::new(true),
    };
    init_region(&region, 1, 0).unwrap();
    // The previous call on the slot: VERSION, answered (done_seq == 1).
    let old = MailboxSlot {
        func: 0,
        req_seq: 1,
        done_seq: 1,
        ..Default::default()
    };
    region
        .inner
        .write(slot_offset(3), &old.to_le_bytes())
        .unwrap();
    // The new call, in flight: SHARE frames 20..22 read-write.
    let region = Racing {
        next: MailboxSlot {
            func: 3,
            args: [20, 2, 3, 0, 0, 0],
            req_seq: 2,
            done_seq: 1,
            ..Default::default()
        },
        landed: std::cell::Cell::new(false),
        ..region
    };
    assert_eq!(serve_mailbox(&mut g.hyp, &g.ram, &region), 1);
    let mut b = [0u8; 128];
    region.inner.read(slot_offset(3), &mut b).unwrap();
    let answer = MailboxSlot::from_le_bytes(&b);
    assert_eq!(answer.done_seq, 2);
    assert_eq!(
        (answer.status, answer.ret[0]),
        (0, 2),
        "the call served is the new SHARE, not the previous VERSION"
    );
    assert_eq!(g.hyp.host_perm(21), pviommu_reference_hyp::Perm::ReadWrite);
}
