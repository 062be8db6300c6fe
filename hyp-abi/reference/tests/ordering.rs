// SPDX-License-Identifier: GPL-2.0-only

//! The drain's memory ordering: a record's `seq` is read before its
//! payload, so a drain racing the guest never applies a stale payload.

mod common;

use std::cell::Cell;

use common::{config, init_args, INIT, RING_GFN, SYNC, TABLE_GFN};
use pviommu_reference_hyp::{GuestRam, Hypervisor, OutOfRange, Perm, VecRam};

/// Guest RAM whose first read of one ring slot is torn the way a copy
/// racing the guest's producer can be: the payload (`gfn`, `nr_pages`) as
/// it was before the guest wrote it, the `seq` as it is after the guest
/// published it. Later reads see the slot as it is.
struct TornRam {
    inner: VecRam,
    slot_gpa: u64,
    stale_payload: [u8; 12],
    torn: Cell<bool>,
}

impl GuestRam for TornRam {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        self.inner.read(gpa, buf)?;
        let end = gpa + buf.len() as u64;
        if self.torn.get() && gpa <= self.slot_gpa && self.slot_gpa + 16 <= end {
            self.torn.set(false);
            let at = (self.slot_gpa - gpa) as usize;
            buf[at..at + 12].copy_from_slice(&self.stale_payload);
        }
        Ok(())
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        self.inner.write(gpa, data)
    }
}

fn record(gfn: u64, nr: u32, seq: u32) -> [u8; 16] {
    let mut rec = [0u8; 16];
    rec[..8].copy_from_slice(&gfn.to_le_bytes());
    rec[8..12].copy_from_slice(&nr.to_le_bytes());
    rec[12..].copy_from_slice(&seq.to_le_bytes());
    rec
}

#[test]
fn a_torn_copy_of_a_record_never_loses_an_unmap() {
    let slot = |index: u64| (RING_GFN << 12) + 4096 + 16 * index;
    let ram = TornRam {
        inner: VecRam::new(0..256 << 12),
        slot_gpa: slot(1),
        // What slot 1 held before the guest wrote the unmap's record.
        stale_payload: [0; 12],
        torn: Cell::new(false),
    };
    let mut hyp = Hypervisor::new(config());
    assert_eq!(hyp.call(&ram, INIT, init_args()).status, 0);
    // Map frame 50 read-write: record 0.
    ram.write((TABLE_GFN << 12) + 50, &[3]).unwrap();
    ram.write(slot(0), &record(50, 1, 1)).unwrap();
    ram.write(RING_GFN << 12, &1u64.to_le_bytes()).unwrap();
    assert_eq!(hyp.call(&ram, SYNC, [0; 6]).status, 0);
    assert_eq!(hyp.host_perm(50), Perm::ReadWrite);
    // Unmap it: entry cleared, record 1 published; the drain's first copy
    // of slot 1 is torn.
    ram.write((TABLE_GFN << 12) + 50, &[0]).unwrap();
    ram.write(slot(1), &record(50, 1, 2)).unwrap();
    ram.write(RING_GFN << 12, &2u64.to_le_bytes()).unwrap();
    ram.torn.set(true);
    assert_eq!(hyp.call(&ram, SYNC, [0; 6]).status, 0);
    assert!(!ram.torn.get(), "the drain read the torn slot");
    assert_eq!(
        hyp.host_perm(50),
        Perm::None,
        "SYNC returned with the unmapped frame still shared"
    );
    assert_eq!(
        hyp.counters().bad_records,
        0,
        "a stale payload was taken as a record"
    );
}
