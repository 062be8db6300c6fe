// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/pviommu/`: one read-only file per counter.

use kernel::bindings;
use kernel::str::CStrExt;

use crate::logic::stats::Stats;

/// Creates the directory and its files. Failures are ignored, as debugfs
/// failures should be: the driver works without them.
pub(crate) fn register(stats: &'static Stats) {
    // SAFETY: a NUL-terminated name and no parent (debugfs root).
    let dir =
        unsafe { bindings::debugfs_create_dir(c"pviommu".as_char_ptr(), core::ptr::null_mut()) };
    stats.for_each(|name, counter| {
        let mut buf = [0u8; 32];
        let n = name.len().min(buf.len() - 1);
        buf[..n].copy_from_slice(&name.as_bytes()[..n]);
        // SAFETY: `buf` is NUL-terminated and debugfs copies the name;
        // `counter` is a `'static` `AtomicU64`, which has the layout of the
        // `u64` debugfs reads (a torn read is impossible on 64-bit).
        unsafe {
            bindings::debugfs_create_u64(buf.as_ptr().cast(), 0o444, dir, counter.as_ptr());
        }
    });
}
