// SPDX-License-Identifier: GPL-2.0

//! The kernel panic of the containment policy.

use core::ffi::CStr;
use kernel::bindings;
use kernel::str::CStrExt;

/// Panics the kernel with `reason` (prefixed with "pviommu: ").
pub(crate) fn panic(reason: &CStr) -> ! {
    // SAFETY: a constant format whose one `%s` is matched by a
    // NUL-terminated string; `panic()` may be called from any context.
    unsafe { bindings::panic(c"pviommu: %s".as_char_ptr(), reason.as_char_ptr()) }
}
