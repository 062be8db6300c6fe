// SPDX-License-Identifier: GPL-2.0

//! The virtio mem_acc callback: how the pviommu gets onto virtio devices.
//!
//! The virtio core calls it from `virtio_features_ok()`, before the device
//! allocates its virtqueues. Returning true makes the core require
//! `VIRTIO_F_ACCESS_PLATFORM`, so the device uses the DMA API, whose ops
//! on the transport device (the virtio-pci function) are ours.

use kernel::bindings;
use kernel::prelude::*;

use super::dma_ops::{PVIOMMU_DMA_OPS, REFUSE_DMA_OPS};

/// The C callback `mem_acc`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn mem_acc(vdev: *mut bindings::virtio_device) -> bool {
    // SAFETY: the virtio core passes a valid device, probing.
    let (parent, has_platform, name) = unsafe {
        let dev = core::ptr::addr_of_mut!((*vdev).dev);
        (
            (*vdev).dev.parent,
            bindings::virtio_has_feature(vdev, bindings::VIRTIO_F_ACCESS_PLATFORM),
            core::ffi::CStr::from_ptr(bindings::dev_name(dev).cast()),
        )
    };
    if parent.is_null() {
        pr_err!(
            "{:?}: virtio device without a transport device: refused\n",
            name
        );
        return true;
    }
    let ops = match crate::engine() {
        Some(e) if !e.is_broken() => {
            if has_platform {
                pr_info!(
                    "{:?}: DMA through the pviommu ({} mode)\n",
                    name,
                    e.config().mode.name()
                );
            }
            &PVIOMMU_DMA_OPS
        }
        _ if crate::init::required() => {
            pr_err!(
                "{:?}: refused: no working pviommu and pviommu.required=1; its DMA would reach private memory\n",
                name
            );
            &REFUSE_DMA_OPS
        }
        // Not required: leave the device on dma-direct, unprotected.
        _ => return false,
    };
    if !has_platform {
        // The core refuses the device after we return true; say why.
        pr_err!(
            "{:?}: refused: the device does not offer VIRTIO_F_ACCESS_PLATFORM, so its DMA would bypass the pviommu\n",
            name
        );
    }
    // SAFETY: `parent` is the valid transport device; ops are static.
    unsafe { bindings::set_dma_ops(parent, ops) };
    true
}

/// Installs the callback: from now on every virtio device asks us.
pub(crate) fn install() {
    // SAFETY: the callback is a static function valid forever.
    unsafe { bindings::virtio_set_mem_acc_cb(Some(mem_acc)) };
}
