// SPDX-License-Identifier: GPL-2.0-only

//! Reference hypervisor for the pviommu ABI.
//!
//! This crate is the hypervisor half of `Documentation/virt/pviommu/abi.rst`
//! as a plain state machine over a byte view of guest memory: the QEMU
//! harness feeds it hypercalls (through the mailbox), queue kicks and device
//! accesses, and it keeps the authoritative host view, i.e. which guest
//! pages the host may read or write. Every byte it reads from the guest is
//! untrusted; no input makes it panic.

mod counters;
mod hyp;
mod mailbox;
mod pages;
mod ram;
mod sync;

pub use counters::Counters;
pub use hyp::{Access, CallResult, Config, DrainStats, ExitKind, Hypervisor, Violation};
pub use mailbox::{
    init_region, mailbox_pending, serve_mailbox, serve_mailbox_with, RegionError, SharedRegion,
    VecRegion,
};
pub use pviommu_hyp_abi as abi;
pub use pviommu_hyp_abi::layout::Perm;
pub use ram::{GuestRam, OutOfRange, VecRam};
