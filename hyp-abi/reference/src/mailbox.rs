// SPDX-License-Identifier: GPL-2.0-only

//! The hypervisor side of the MMIO mailbox transport.

use crate::hyp::Hypervisor;
use crate::ram::{GuestRam, OutOfRange};
use crate::sync::{fence, Ordering};
use pviommu_hyp_abi::call::{Status, ABI_VERSION, FEATURES_KNOWN, NR_ARGS};
use pviommu_hyp_abi::mailbox::{
    nr_slots, slot_offset, MailboxHeader, MailboxSlot, MAILBOX_MAGIC, MAILBOX_SLOT_SIZE,
    SLOT_DONE_SEQ_OFFSET, SLOT_REQ_SEQ_OFFSET, SLOT_STATUS_OFFSET,
};
use std::cell::RefCell;

/// The ivshmem shared region (BAR2 in the guest), as bytes.
pub trait SharedRegion {
    /// Returns the region size in bytes.
    fn size(&self) -> u64;
    /// Copies bytes from offset `off` into `buf`.
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), OutOfRange>;
    /// Copies `data` to offset `off`.
    fn write(&self, off: u64, data: &[u8]) -> Result<(), OutOfRange>;
}

/// Why a region cannot hold a mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// The size is not a power of two of at least 8 KiB below 4 GiB.
    BadSize,
    /// Writing the region failed.
    OutOfRange,
}

/// Writes the mailbox header (and zeroes every slot) before the guest boots.
pub fn init_region(
    region: &dyn SharedRegion,
    hyp_peer_id: u32,
    doorbell_vector: u32,
) -> Result<MailboxHeader, RegionError> {
    let size = region.size();
    let slots = nr_slots(size).ok_or(RegionError::BadSize)?;
    let header = MailboxHeader {
        magic: MAILBOX_MAGIC,
        abi_version: ABI_VERSION,
        region_size: size as u32,
        nr_slots: slots,
        hyp_peer_id,
        doorbell_vector,
        features: FEATURES_KNOWN,
        reserved: [0; 4],
    };
    let zero = [0u8; MAILBOX_SLOT_SIZE as usize];
    for slot in 0..slots {
        region
            .write(slot_offset(slot), &zero)
            .map_err(|_| RegionError::OutOfRange)?;
    }
    region
        .write(0, &header.to_le_bytes())
        .map_err(|_| RegionError::OutOfRange)?;
    Ok(header)
}

/// Serves every slot whose `req_seq` differs from its `done_seq`; returns
/// the number of calls served.
///
/// The slot count comes from the region size, never from the header, which
/// the guest can write. Counts no exit: the caller records one per doorbell.
pub fn serve_mailbox(hyp: &mut Hypervisor, ram: &dyn GuestRam, region: &dyn SharedRegion) -> usize {
    serve_mailbox_with(region, &mut |func, args| hyp.call(ram, func, args))
}

/// Whether some slot holds a call not yet answered: its `req_seq`
/// differs from its `done_seq`. Reads only the sequence numbers, so a
/// thread that polls for calls can look often without serving.
pub fn mailbox_pending(region: &dyn SharedRegion) -> bool {
    let Some(slots) = nr_slots(region.size()) else {
        return false;
    };
    (0..slots).any(|slot| {
        let off = slot_offset(slot);
        let (mut req_seq, mut done_seq) = ([0u8; 4], [0u8; 4]);
        region.read(off + SLOT_REQ_SEQ_OFFSET, &mut req_seq).is_ok()
            && region
                .read(off + SLOT_DONE_SEQ_OFFSET, &mut done_seq)
                .is_ok()
            && req_seq != done_seq
    })
}

/// The transport loop of [`serve_mailbox`], with the call left to the
/// caller: a harness passes each call through fault injection, or acts
/// after a call and before its answer is published (while the guest still
/// waits), without copying the slot protocol.
///
/// A slot with non-zero flags or reserved fields is answered
/// `INVALID_PARAMETER` without reaching `call`.
pub fn serve_mailbox_with(
    region: &dyn SharedRegion,
    call: &mut dyn FnMut(u32, [u64; NR_ARGS]) -> crate::hyp::CallResult,
) -> usize {
    let Some(slots) = nr_slots(region.size()) else {
        return 0;
    };
    let mut served = 0;
    for slot in 0..slots {
        let off = slot_offset(slot);
        // The sequence numbers first, each read once: a slot is pending
        // when the guest's `req_seq` differs from our `done_seq`.
        let (mut req_seq, mut done_seq) = ([0u8; 4], [0u8; 4]);
        if region
            .read(off + SLOT_REQ_SEQ_OFFSET, &mut req_seq)
            .is_err()
            || region
                .read(off + SLOT_DONE_SEQ_OFFSET, &mut done_seq)
                .is_err()
        {
            break;
        }
        let req_seq = u32::from_le_bytes(req_seq);
        if req_seq == u32::from_le_bytes(done_seq) {
            continue;
        }
        // Acquire: pairs with the guest's Release store of `req_seq`, so the
        // payload read below is the one the guest wrote before it. (Copying
        // the whole slot and fencing afterwards reads `func` and `args`,
        // which lie before `req_seq`, too early: a call could be served
        // with the previous call's arguments.)
        fence(Ordering::Acquire);
        // The request half of the slot: `func`, `flags`, `args` and the
        // reserved word after `req_seq`, whose copy here is not used.
        let mut bytes = [0u8; MAILBOX_SLOT_SIZE as usize];
        if region
            .read(off, &mut bytes[..SLOT_STATUS_OFFSET as usize])
            .is_err()
        {
            break;
        }
        let req = MailboxSlot::from_le_bytes(&bytes);
        let result = if req.flags != 0 || req.reserved0 != 0 {
            crate::hyp::CallResult {
                status: Status::InvalidParameter.raw(),
                ret: [0; 3],
            }
        } else {
            call(req.func, req.args)
        };
        let mut answer = [0u8; 32];
        answer[..8].copy_from_slice(&result.status.to_le_bytes());
        for (i, r) in result.ret.iter().enumerate() {
            answer[8 + 8 * i..16 + 8 * i].copy_from_slice(&r.to_le_bytes());
        }
        let _ = region.write(off + SLOT_STATUS_OFFSET, &answer);
        // Release: the guest sees the answer once it sees `done_seq`.
        fence(Ordering::Release);
        let _ = region.write(off + SLOT_DONE_SEQ_OFFSET, &req_seq.to_le_bytes());
        served += 1;
    }
    served
}

/// A shared region held in a vector, for tests.
#[derive(Debug)]
pub struct VecRegion {
    bytes: RefCell<Vec<u8>>,
}

impl VecRegion {
    /// Returns a zeroed region of `size` bytes.
    pub fn new(size: usize) -> VecRegion {
        VecRegion {
            bytes: RefCell::new(vec![0; size]),
        }
    }
}

impl SharedRegion for VecRegion {
    fn size(&self) -> u64 {
        self.bytes.borrow().len() as u64
    }

    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let b = self.bytes.borrow();
        let start = usize::try_from(off).map_err(|_| OutOfRange)?;
        let src = b
            .get(start..start.checked_add(buf.len()).ok_or(OutOfRange)?)
            .ok_or(OutOfRange)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&self, off: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let mut b = self.bytes.borrow_mut();
        let start = usize::try_from(off).map_err(|_| OutOfRange)?;
        let dst = b
            .get_mut(start..start.checked_add(data.len()).ok_or(OutOfRange)?)
            .ok_or(OutOfRange)?;
        dst.copy_from_slice(data);
        Ok(())
    }
}
