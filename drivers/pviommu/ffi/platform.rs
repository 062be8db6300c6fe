// SPDX-License-Identifier: GPL-2.0

//! What the mailbox transport needs from the CPU: the doorbell register,
//! a clock, and interrupt masking.

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
        // SAFETY: `doorbell` is mapped (type invariant).
        unsafe { bindings::iowrite32(value, self.doorbell) };
    }

    fn now_ns(&self) -> u64 {
        // SAFETY: no preconditions; safe in any context.
        unsafe { bindings::ktime_get_ns() }
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

/// Local interrupts are disabled while this guard lives: the DMA API may
/// be called from hard IRQ, and the page tracker's per-page locks and the
/// per-CPU mailbox slot must not be re-entered on the same CPU.
pub(crate) struct IrqDisabled(kernel::ffi::c_ulong);

impl IrqDisabled {
    /// Disables local interrupts until the guard is dropped.
    pub(crate) fn new() -> Self {
        // SAFETY: saving and disabling local interrupts is always allowed;
        // `drop` restores the saved state on this CPU.
        Self(unsafe { bindings::local_irq_save() })
    }
}

impl Drop for IrqDisabled {
    fn drop(&mut self) {
        // SAFETY: restores the flags `new` saved, on the same CPU
        // (interrupts are off, so the task did not migrate).
        unsafe { bindings::local_irq_restore(self.0) };
    }
}
