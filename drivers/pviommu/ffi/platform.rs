// SPDX-License-Identifier: GPL-2.0

//! The kernel panic and the deferred device stop of the containment
//! policy.

use core::ffi::CStr;
use kernel::bindings;
use kernel::str::CStrExt;

/// Panics the kernel with `reason` (prefixed with "pviommu: ").
pub(crate) fn panic(reason: &CStr) -> ! {
    // SAFETY: a constant format whose one `%s` is matched by a
    // NUL-terminated string; `panic()` may be called from any context.
    unsafe { bindings::panic(c"pviommu: %s".as_char_ptr(), reason.as_char_ptr()) }
}

extern "C" {
    fn pviommu_schedule_stop();
    fn pviommu_schedule_grow();
}

/// Asks a work item (`pviommu_initcall.c`) to call
/// `pviommu_rust_stop_devices()` in process context. Safe in any
/// context, hard IRQ included.
pub(crate) fn schedule_stop() {
    // SAFETY: schedule_work() on a static work item; any context.
    unsafe { pviommu_schedule_stop() }
}

/// Asks a work item (`pviommu_initcall.c`) to call
/// `pviommu_rust_grow_pool()` in process context. Safe in any context,
/// hard IRQ included.
pub(crate) fn schedule_grow() {
    // SAFETY: schedule_work() on a static work item; any context.
    unsafe { pviommu_schedule_grow() }
}
