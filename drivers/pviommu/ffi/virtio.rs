// SPDX-License-Identifier: GPL-2.0

//! The virtio mem_acc callback: how the pviommu gets onto virtio devices.
//!
//! The virtio core calls it from `virtio_features_ok()`, before the device
//! allocates its virtqueues. Returning true makes the core require
//! `VIRTIO_F_ACCESS_PLATFORM`, so the device uses the DMA API, whose ops
//! on the transport device (the virtio-pci function) are ours.

use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
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
    if core::ptr::eq(ops, &PVIOMMU_DMA_OPS) && !remember(vdev) {
        pr_warn!(
            "{:?}: too many virtio devices: it will not be stopped if an unshare fails\n",
            name
        );
    }
    true
}

/// The virtio devices using the pviommu, so that they can be stopped
/// when an unshare fails. An entry is cleared when its transport device
/// unbinds ([`forget_parent`]), before the virtio device is freed.
static DEVICES: [AtomicPtr<bindings::virtio_device>; 32] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; 32];

fn remember(vdev: *mut bindings::virtio_device) -> bool {
    DEVICES.iter().any(|slot| {
        slot.compare_exchange(
            core::ptr::null_mut(),
            vdev,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok()
    })
}

/// Forgets the virtio devices whose transport is `parent`: it is being
/// unbound, and the virtio devices on it go away.
pub(crate) fn forget_parent(parent: *mut bindings::device) {
    for slot in &DEVICES {
        let vdev = slot.load(Ordering::Acquire);
        if vdev.is_null() {
            continue;
        }
        // SAFETY: a remembered device is alive until its transport
        // unbinds, which is what we are being told now, before the free.
        if unsafe { (*vdev).dev.parent } == parent {
            let _ = slot.compare_exchange(
                vdev,
                core::ptr::null_mut(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }
}

/// Stops every virtio device on the pviommu, once, after an unshare
/// failed: the host may still reach memory the guest released, so the
/// devices must not go on. Their queues then fail every request with an
/// I/O error (the DMA API alone cannot say "fatal": the virtio ring
/// treats a mapping failure as a transient shortage and retries).
pub(crate) fn break_all_once() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    for slot in &DEVICES {
        let vdev = slot.load(Ordering::Acquire);
        if vdev.is_null() {
            continue;
        }
        // SAFETY: a remembered device is alive (see `forget_parent`);
        // `virtio_break_device` only takes a spinlock and sets flags, so
        // it may run with interrupts disabled.
        unsafe {
            let dev = core::ptr::addr_of_mut!((*vdev).dev);
            pr_err!(
                "{:?}: marked broken: the hypervisor failed an unshare, so the host may still reach released memory; its I/O now fails\n",
                core::ffi::CStr::from_ptr(bindings::dev_name(dev).cast())
            );
            bindings::virtio_break_device(vdev);
        }
    }
}

/// Installs the callback: from now on every virtio device asks us.
pub(crate) fn install() {
    // SAFETY: the callback is a static function valid forever.
    unsafe { bindings::virtio_set_mem_acc_cb(Some(mem_acc)) };
}
