// SPDX-License-Identifier: GPL-2.0

//! pviommu: a paravirtual IOMMU that shares virtio DMA buffers of a
//! protected guest with the host in place.
//!
//! The driver is built into the kernel and initialised from a C
//! `fs_initcall_sync` (see `pviommu_initcall.c`), before virtio devices
//! probe. `ffi` is the only `unsafe` code; `logic` (also a userspace
//! crate) and `hyp_abi` (the ABI, shared with the reference hypervisor)
//! are included by path.

mod debugfs;
mod discover;
mod ffi;
#[path = "../../hyp-abi/src/lib.rs"]
pub mod hyp_abi;
mod hyp_probe;
mod hyp_stats;
mod init;
mod latency;
#[path = "logic/src/lib.rs"]
pub mod logic;
mod map_bench;
mod map_ops;
#[cfg(CONFIG_PVIOMMU_KUNIT_TEST)]
mod tests;
mod threshold;

/// Prefix of the driver's kernel log messages (`pr_*!` use it).
const __LOG_PREFIX: &[u8] = b"pviommu\0";
