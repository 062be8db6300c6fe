// SPDX-License-Identifier: GPL-2.0

//! DMA masters other than virtio devices.
//!
//! In a protected guest the host performs the DMA of every emulated
//! device, not only of virtio ones, so every PCI device gets the
//! pviommu's DMA operations when a driver binds to it (before the
//! driver's probe), except the pviommu's own mailbox function. This is
//! how, for example, the kernel's `dma_map_benchmark` driver measures
//! the pviommu when bound to a spare PCI function. Without a working
//! pviommu and with `pviommu.required=1`, such devices get the refusing
//! operations instead.

use kernel::bindings;
use kernel::ffi::{c_int, c_ulong, c_void};
use kernel::prelude::*;

use super::dma_ops::{PVIOMMU_DMA_OPS, REFUSE_DMA_OPS};

/// The bus notifier; the driver core links it into its chain.
static mut NOTIFIER: bindings::notifier_block = bindings::notifier_block {
    notifier_call: Some(bind),
    next: core::ptr::null_mut(),
    priority: 0,
};

/// The C callback `notifier_call`.
///
/// # Safety
///
/// Called only by the driver core, with a valid `struct device` as
/// `data` for the bus events.
unsafe extern "C" fn bind(
    _nb: *mut bindings::notifier_block,
    action: c_ulong,
    data: *mut c_void,
) -> c_int {
    let dev = data.cast::<bindings::device>();
    if action == bindings::bus_notifier_event_BUS_NOTIFY_UNBIND_DRIVER as c_ulong {
        // A virtio transport going away takes its virtio devices along.
        super::virtio::forget_parent(dev);
        return bindings::NOTIFY_DONE as c_int;
    }
    if action != bindings::bus_notifier_event_BUS_NOTIFY_BIND_DRIVER as c_ulong {
        return bindings::NOTIFY_DONE as c_int;
    }
    if dev.is_null() || super::pci::is_own_device(dev) {
        return bindings::NOTIFY_DONE as c_int;
    }
    let ops: &'static bindings::dma_map_ops = match crate::engine() {
        Some(_) => &PVIOMMU_DMA_OPS,
        None if crate::init::required() => &REFUSE_DMA_OPS,
        None => return bindings::NOTIFY_DONE as c_int,
    };
    // SAFETY: `dev` is the valid device about to be bound; it has no
    // driver yet, so nobody maps DMA through it concurrently.
    unsafe { bindings::set_dma_ops(dev, ops) };
    bindings::NOTIFY_OK as c_int
}

/// Starts watching PCI driver binds.
pub(crate) fn watch_pci() {
    // SAFETY: `NOTIFIER` is a static registered once (the initcall runs
    // once) and never touched by Rust again; `pci_bus_type` is the PCI bus.
    let ret = unsafe {
        bindings::bus_register_notifier(
            core::ptr::addr_of!(bindings::pci_bus_type),
            core::ptr::addr_of_mut!(NOTIFIER),
        )
    };
    if ret != 0 {
        pr_err!(
            "cannot watch PCI driver binds ({}): non-virtio devices keep their DMA ops\n",
            ret
        );
    }
}
