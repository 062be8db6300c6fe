// SPDX-License-Identifier: GPL-2.0

//! What the mailbox transport needs from the CPU on x86: the ivshmem
//! doorbell register and a clock. (arm64 calls the hypervisor with `HVC`
//! instead: `ffi::smccc`.)

use kernel::bindings;
use kernel::ffi::c_void;

use crate::logic::mailbox::Platform;

/// The mailbox's platform: an ivshmem doorbell register in BAR0.
///
/// # Invariants
///
/// `doorbell` is a mapped MMIO address (BAR0 + 12) that stays mapped for
/// the kernel's lifetime (the device is never unbound).
pub(crate) struct KernelPlatform {
    doorbell: *mut c_void,
}

// SAFETY: a 32-bit MMIO write is atomic and valid from any CPU and any
// context; the pointer itself is never written after construction.
unsafe impl Send for KernelPlatform {}
// SAFETY: as above.
unsafe impl Sync for KernelPlatform {}

impl KernelPlatform {
    /// # Safety
    ///
    /// `doorbell` must be the mapped doorbell register and stay mapped.
    pub(crate) unsafe fn new(doorbell: *mut c_void) -> Self {
        // INVARIANT: guaranteed by the caller.
        Self { doorbell }
    }
}

impl Platform for KernelPlatform {
    fn ring_doorbell(&self, value: u32) {
        // SAFETY: `doorbell` is a mapped MMIO register (type invariant).
        unsafe { bindings::writel(value, self.doorbell) };
    }

    fn now_ns(&self) -> u64 {
        // SAFETY: no preconditions; safe in any context. The monotonic
        // clock never goes back, so the cast of its nanoseconds is exact.
        let ns = unsafe { bindings::ktime_get() };
        ns as u64
    }

    fn relax(&self) {
        // SAFETY: no preconditions.
        unsafe { bindings::cpu_relax() };
    }

    fn cpu(&self) -> u32 {
        // SAFETY: no preconditions; callers run with interrupts disabled,
        // so the CPU cannot change under them.
        unsafe { bindings::raw_smp_processor_id() }
    }
}
