// SPDX-License-Identifier: GPL-2.0
//! The vCPU loop: KVM_RUN and its exits.

use crate::devices::Devices;
use crate::stats::inc;
use kvm_bindings::{
    KVM_EXIT_FAIL_ENTRY, KVM_EXIT_INTERNAL_ERROR, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::Arc;

/// Why a vCPU stopped running.
#[derive(Debug, Clone)]
pub enum Stop {
    PowerOff,
    Reset,
    Crash,
    Error(String),
    /// SIGTERM or SIGINT reached the VMM.
    Signal(i32),
}

/// SMCCC NOT_SUPPORTED for hypercalls forwarded to user space.
const SMCCC_NOT_SUPPORTED: u64 = u64::MAX;

pub fn run(id: u32, mut vcpu: VcpuFd, dev: Arc<Devices>) -> Stop {
    let st = dev.stats.clone();
    loop {
        match vcpu.run() {
            Ok(VcpuExit::MmioRead(addr, data)) => {
                inc(&st.exit_mmio_read);
                dev.mmio(addr, data, false);
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                inc(&st.exit_mmio_write);
                let mut buf = [0u8; 8];
                let n = data.len().min(8);
                buf[..n].copy_from_slice(&data[..n]);
                dev.mmio(addr, &mut buf[..n], true);
            }
            Ok(VcpuExit::Hypercall(h)) => {
                inc(&st.exit_hypercall);
                *h.ret = SMCCC_NOT_SUPPORTED;
            }
            Ok(VcpuExit::SystemEvent(ty, data)) => {
                inc(&st.exit_system_event);
                return match ty {
                    KVM_SYSTEM_EVENT_SHUTDOWN => Stop::PowerOff,
                    KVM_SYSTEM_EVENT_RESET => Stop::Reset,
                    KVM_SYSTEM_EVENT_CRASH => Stop::Crash,
                    t => Stop::Error(format!("vCPU {id}: system event {t} {data:?}")),
                };
            }
            Ok(VcpuExit::Intr) => inc(&st.exit_intr),
            Ok(VcpuExit::Unsupported(r))
                if r == KVM_EXIT_FAIL_ENTRY || r == KVM_EXIT_INTERNAL_ERROR =>
            {
                inc(&st.exit_other);
                let run = vcpu.get_kvm_run();
                // SAFETY: the union member matches the exit reason.
                let detail = unsafe {
                    if r == KVM_EXIT_FAIL_ENTRY {
                        let f = run.__bindgen_anon_1.fail_entry;
                        format!(
                            "KVM_EXIT_FAIL_ENTRY reason {:#x} cpu {}",
                            f.hardware_entry_failure_reason, f.cpu
                        )
                    } else {
                        let i = run.__bindgen_anon_1.internal;
                        format!("KVM_EXIT_INTERNAL_ERROR suberror {}", i.suberror)
                    }
                };
                return Stop::Error(format!("vCPU {id}: {detail}"));
            }
            Ok(other) => {
                inc(&st.exit_other);
                return Stop::Error(format!("vCPU {id}: unexpected exit {other:?}"));
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => inc(&st.exit_intr),
            Err(e) => return Stop::Error(format!("vCPU {id}: KVM_RUN: {e}")),
        }
    }
}
