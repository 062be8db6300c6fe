// SPDX-License-Identifier: GPL-2.0-only

//! The memory fences of the state machine.
//!
//! Under `--cfg loom` the loom model checker's fence replaces the core one,
//! so that the loom model (`tests/loom.rs`) checks this crate's own drain
//! against the guest's producer, not a copy of it.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::fence;

pub(crate) use std::sync::atomic::Ordering;
