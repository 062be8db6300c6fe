// SPDX-License-Identifier: GPL-2.0-only
//! Serving the mailbox slots of the shared region, with fault injection.
//!
//! The transport loop is the reference one (`serve_mailbox_with`); the
//! difference is that each call passes through the `FaultPlan` before it
//! reaches the state machine, which is the reference one, untouched.

use std::thread;

use pviommu_reference_hyp::abi::call::Status;
use pviommu_reference_hyp::{init_region, serve_mailbox_with, CallResult, GuestRam, SharedRegion};

use crate::faults::{FaultPlan, Verdict};
use crate::host::HostInner;

/// Serves every slot whose `req_seq` differs from its `done_seq`; returns
/// how many calls were answered.
///
/// The slot protocol is the reference one (`serve_mailbox_with`); each
/// call goes through the fault plan. The adversary looks before each call
/// and attacks after it, before its answer is published, while the guest
/// still waits: what the call revoked must already be out of reach.
pub fn serve(g: &mut HostInner, ram: &dyn GuestRam, shm: &dyn SharedRegion) -> usize {
    serve_mailbox_with(shm, &mut |func, args| {
        g.adversary_before(ram, func, &args);
        let result = call(g, ram, func, args);
        g.adversary_after(ram, func, &args, &result);
        result
    })
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
        Verdict::Pretend => refused(Status::Success),
        Verdict::Forward(args) => {
            if FaultPlan::drains(func) {
                // The lock stays held: a slow SYNC stalls the other exits
                // too, as it would in a hypervisor that serialises them.
                thread::sleep(g.faults.drain_delay());
            }
            let result = g.hyp.call(ram, func, args);
            if FaultPlan::drains(func) {
                g.adversary_drained(ram);
            }
            // The call's reductions are invalidated when it returns: they
            // reach the devices' mappings before the answer does.
            g.sync_view(true);
            result
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
