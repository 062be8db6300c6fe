// SPDX-License-Identifier: GPL-2.0-only

//! The MMIO mailbox transport.

mod common;

use common::*;
use pviommu_reference_hyp::abi::call::{ABI_VERSION, FEATURES_KNOWN};
use pviommu_reference_hyp::abi::mailbox::{slot_offset, MailboxHeader, MailboxSlot, MAILBOX_MAGIC};
use pviommu_reference_hyp::{init_region, serve_mailbox, RegionError, SharedRegion, VecRegion};

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
