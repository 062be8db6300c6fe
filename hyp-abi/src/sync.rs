// SPDX-License-Identifier: GPL-2.0-only

//! Atomic types used by the shared-memory views.
//!
//! Under `--cfg loom` the loom model checker's atomics replace the core ones,
//! so that the ring protocol can be checked exhaustively; every other build
//! (the kernel included) uses `core::sync::atomic`.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

pub(crate) use core::sync::atomic::Ordering;

/// Waits a moment in a spin loop; under loom, lets another thread run so
/// that the model checker can explore spinning code.
#[inline]
pub(crate) fn spin() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}
