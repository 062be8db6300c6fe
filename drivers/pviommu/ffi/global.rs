// SPDX-License-Identifier: GPL-2.0

//! A value set once at initialisation and read from any context after.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

/// A write-once cell for statics.
///
/// # Invariants
///
/// `value` is initialised iff `state` is `READY`, and is never written
/// again after that.
pub(crate) struct Global<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written once, before `state` becomes `READY` with
// Release, and only shared references are handed out after an Acquire load
// of `READY`; so sharing the cell is sharing `&T`, which needs `T: Sync`.
unsafe impl<T: Sync + Send> Sync for Global<T> {}

impl<T> Global<T> {
    /// An empty cell.
    pub(crate) const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Stores `value` if the cell is empty; gives it back otherwise.
    pub(crate) fn set(&'static self, value: T) -> Result<&'static T, T> {
        if self
            .state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(value);
        }
        // SAFETY: the compare-exchange made this the only writer, and no
        // reader looks at `value` before `state` is `READY`.
        let stored: &'static T = unsafe { (*self.value.get()).write(value) };
        // INVARIANT: `value` is initialised before `state` becomes `READY`.
        self.state.store(READY, Ordering::Release);
        Ok(stored)
    }

    /// The value, once set.
    pub(crate) fn get(&'static self) -> Option<&'static T> {
        if self.state.load(Ordering::Acquire) != READY {
            return None;
        }
        // SAFETY: `READY` means `value` is initialised and never written
        // again (type invariant).
        Some(unsafe { (*self.value.get()).assume_init_ref() })
    }
}
