// SPDX-License-Identifier: GPL-2.0

//! The pviommu guest driver's logic, free of `unsafe` and of kernel APIs.
//!
//! The kernel driver includes this file as a module
//! (`#[path = "logic/src/lib.rs"] mod logic;`); the same source builds as
//! the userspace crate `pviommu-logic`, where `cargo test` exercises it.
//! Hence no crate-level attribute but `no_std` and `forbid(unsafe_code)`
//! below (both also valid on a module), and sibling
//! modules are reached through `super::`.

#![cfg_attr(not(CONFIG_RUST), no_std)]
// Included as a module of the kernel driver too: there it makes this
// module (and the modules below it) free of `unsafe` as well.
#![forbid(unsafe_code)]

#[cfg(CONFIG_RUST)]
pub(crate) use crate::hyp_abi as abi;
#[cfg(not(CONFIG_RUST))]
pub(crate) use pviommu_hyp_abi as abi;

pub mod calibrate;
pub mod engine;
pub mod hyp_stats;
pub mod latency;
pub mod mailbox;
pub mod map_batch;
pub mod policy;
pub mod pool;
pub mod probe;
pub mod selftest;
pub mod smccc;
pub mod stats;
