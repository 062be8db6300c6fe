// SPDX-License-Identifier: GPL-2.0-only

//! The pviommu guest/hypervisor ABI, version 2.0.
//!
//! This is the normative Rust rendering of `Documentation/virt/pviommu/abi.rst`:
//! wire layouts with compile-time size and offset checks, function numbers,
//! status codes and their errno mapping, the guest-side ring producer, the
//! guest-side page tracker and the checks the guest applies to every answer
//! of the hypervisor.
//!
//! The same file is compiled in two ways: as the `pviommu-hyp-abi` crate
//! (`no_std`, no dependencies) and as a module of the Linux kernel driver,
//! included with `#[path = "../../hyp-abi/src/lib.rs"] pub mod hyp_abi;`.
//! That is why this file has no crate-level attribute except `no_std` and
//! `forbid(unsafe_code)` below (both also valid on a module), and why modules refer to each other through `super::`.

#![cfg_attr(not(CONFIG_RUST), no_std)]
// Included as a module of the kernel driver too: there it makes this
// module (and the modules below it) free of `unsafe` as well.
#![forbid(unsafe_code)]

pub mod call;
pub mod check;
pub mod error;
pub mod layout;
pub mod mailbox;
pub mod ring;
mod sync;
pub mod tracker;
