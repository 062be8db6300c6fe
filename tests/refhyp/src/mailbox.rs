// SPDX-License-Identifier: GPL-2.0-only
//! Serving the mailbox slots of the shared region, with fault injection.
//!
//! This is the transport loop of `pviommu_reference_hyp::serve_mailbox`
//! with one difference: each call passes through the `FaultPlan` before it
//! reaches the state machine. Slot parsing uses the ABI crate's layout;
//! the state machine is the reference one, untouched.

use std::sync::atomic::{fence, Ordering};
use std::thread;

use pviommu_reference_hyp::abi::call::Status;
use pviommu_reference_hyp::abi::mailbox::{
    nr_slots, slot_offset, MailboxSlot, MAILBOX_SLOT_SIZE, SLOT_DONE_SEQ_OFFSET, SLOT_STATUS_OFFSET,
};
use pviommu_reference_hyp::{init_region, CallResult, GuestRam, SharedRegion};

use crate::faults::{FaultPlan, Verdict};
use crate::host::HostInner;

/// Serves every slot whose `req_seq` differs from its `done_seq`; returns
/// how many calls were answered.
///
/// The slot count comes from the region size, never from the header, which
/// the guest can overwrite.
///
/// `after_call` runs after each call and before its answer is published,
/// while the guest still waits: the adversary attacks there, before the
/// guest may reuse what it just unshared.
pub fn serve(
    g: &mut HostInner,
    ram: &dyn GuestRam,
    shm: &dyn SharedRegion,
    after_call: &mut dyn FnMut(&mut HostInner),
) -> usize {
    let Some(slots) = nr_slots(shm.size()) else {
        return 0;
    };
    let mut served = 0;
    for slot in 0..slots {
        let off = slot_offset(slot);
        let mut bytes = [0u8; MAILBOX_SLOT_SIZE as usize];
        if shm.read(off, &mut bytes).is_err() {
            break;
        }
        let req = MailboxSlot::from_le_bytes(&bytes);
        if req.req_seq == req.done_seq {
            continue;
        }
        // Acquire: pairs with the guest's Release store of `req_seq`.
        fence(Ordering::Acquire);
        let result = if req.flags != 0 || req.reserved0 != 0 {
            refused(Status::InvalidParameter)
        } else {
            call(g, ram, req.func, req.args)
        };
        after_call(g);
        let mut answer = [0u8; 32];
        answer[..8].copy_from_slice(&result.status.to_le_bytes());
        for (i, r) in result.ret.iter().enumerate() {
            answer[8 + 8 * i..16 + 8 * i].copy_from_slice(&r.to_le_bytes());
        }
        let _ = shm.write(off + SLOT_STATUS_OFFSET, &answer);
        // Release: the guest sees the answer once it sees `done_seq`.
        fence(Ordering::Release);
        let _ = shm.write(off + SLOT_DONE_SEQ_OFFSET, &req.req_seq.to_le_bytes());
        served += 1;
    }
    served
}

fn refused(status: Status) -> CallResult {
    CallResult {
        status: status.raw(),
        ret: [0; 3],
    }
}

/// One call through the fault plan.
fn call(g: &mut HostInner, ram: &dyn GuestRam, func: u32, args: [u64; 6]) -> CallResult {
    match g.faults.before_call(func, args) {
        Verdict::Refuse(status) => refused(status),
        Verdict::Forward(args) => {
            if FaultPlan::drains(func) {
                // The lock stays held: a slow SYNC stalls the other exits
                // too, as it would in a hypervisor that serialises them.
                thread::sleep(g.faults.drain_delay());
            }
            g.hyp.call(ram, func, args)
        }
    }
}

/// Writes the region header the guest reads before its first call.
pub fn init_region_header(
    shm: &dyn SharedRegion,
    hyp_peer_id: u16,
    vector: u16,
) -> std::io::Result<()> {
    init_region(shm, hyp_peer_id.into(), vector.into())
        .map(|_| ())
        .map_err(|e| std::io::Error::other(format!("shared region: {e:?}")))
}
