// SPDX-License-Identifier: GPL-2.0

//! The driver's only `unsafe` code: the thin layer between the kernel's C
//! APIs (PCI and the doorbell on x86, SMCCC on arm64, the virtio mapping
//! layer, debugfs, memory) and the safe logic in `logic/`. Each submodule turns raw pointers into safe values once, with
//! a SAFETY comment saying why that is sound.

#[cfg(CONFIG_X86_64)]
pub(crate) mod doorbell;
pub(crate) mod mem;
pub(crate) mod params;
#[cfg(CONFIG_X86_64)]
pub(crate) mod pci;
pub(crate) mod platform;
#[cfg(CONFIG_ARM64)]
pub(crate) mod smccc;
pub(crate) mod virtio;
pub(crate) mod virtio_map;
