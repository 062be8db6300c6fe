// SPDX-License-Identifier: GPL-2.0

//! The driver's only `unsafe` code: the thin layer between the kernel's C
//! APIs (PCI, the virtio mapping layer, debugfs, memory) and the safe logic in
//! `logic/`. Each submodule turns raw pointers into safe values once, with
//! a SAFETY comment saying why that is sound.

pub(crate) mod mem;
pub(crate) mod params;
pub(crate) mod pci;
pub(crate) mod platform;
pub(crate) mod virtio;
pub(crate) mod virtio_map;
