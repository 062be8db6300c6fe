// SPDX-License-Identifier: GPL-2.0

//! The pviommu device on x86: QEMU's ivshmem-doorbell PCI function (BAR0
//! registers with the doorbell, BAR2 the shared mailbox region).
//!
//! The PCI driver is registered at `fs_initcall_sync`; devices are already
//! enumerated then, so the probe runs synchronously inside the
//! registration and the pviommu is ready when it returns.

use core::sync::atomic::AtomicU64;
use kernel::bindings;
use kernel::ffi::c_int;
use kernel::prelude::*;

use super::doorbell::KernelPlatform;

const IVSHMEM_VENDOR: u32 = 0x1af4;
const IVSHMEM_DEVICE: u32 = 0x1110;
const BAR_REGS: c_int = 0;
const BAR_SHARED: c_int = 2;
/// Offset of the doorbell register in BAR0.
const DOORBELL: usize = crate::hyp_abi::mailbox::DOORBELL_OFFSET as usize;

const fn id(vendor: u32, device: u32) -> bindings::pci_device_id {
    // SAFETY: `pci_device_id` is plain integers; all-zero is valid.
    let mut id: bindings::pci_device_id = unsafe { core::mem::MaybeUninit::zeroed().assume_init() };
    id.vendor = vendor;
    id.device = device;
    id.subvendor = bindings::PCI_ANY_ID as u32;
    id.subdevice = bindings::PCI_ANY_ID as u32;
    id
}

static IDS: [bindings::pci_device_id; 2] = [id(IVSHMEM_VENDOR, IVSHMEM_DEVICE), id(0, 0)];

// The PCI core links the driver into its lists: it must be mutable.
static mut DRIVER: bindings::pci_driver = {
    // SAFETY: `pci_driver` is pointers and integers; all-zero is valid.
    let mut d: bindings::pci_driver = unsafe { core::mem::MaybeUninit::zeroed().assume_init() };
    d.name = kernel::str::as_char_ptr_in_const_context(c"pviommu");
    d.id_table = IDS.as_ptr();
    d
};

/// What the mailbox function is used for, once probed.
pub(crate) trait MailboxDriver {
    /// Brings the mailbox up; an error declines the device.
    fn probe(dev: MailboxDevice) -> Result;
}

/// What the probe hands to the safe initialisation.
pub(crate) struct MailboxDevice {
    /// The shared mailbox region (BAR2), as 64-bit words.
    pub(crate) region: &'static [AtomicU64],
    /// The doorbell.
    pub(crate) platform: KernelPlatform,
    /// `dev_name()` of the PCI function, for messages.
    pub(crate) name: &'static core::ffi::CStr,
}

/// The C callback `probe`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn probe<T: MailboxDriver>(
    pdev: *mut bindings::pci_dev,
    _id: *const bindings::pci_device_id,
) -> c_int {
    // SAFETY: the PCI core passes a valid device for the whole probe.
    let dev = unsafe { core::ptr::addr_of_mut!((*pdev).dev) };
    // SAFETY: `dev` is valid; its name lives as long as the device, which
    // is never removed (the driver cannot be unbound: no remove callback
    // and suppressed bind attributes would be needed for modules only).
    let name = unsafe { core::ffi::CStr::from_char_ptr(bindings::dev_name(dev)) };
    // SAFETY: a valid device.
    if unsafe { bindings::pci_enable_device(pdev) } != 0 {
        pr_err!("{:?}: cannot enable the PCI device\n", name);
        return -(bindings::ENODEV as c_int);
    }
    // SAFETY: a valid, enabled device; BAR0 is its register block.
    let regs = unsafe { bindings::pci_iomap(pdev, BAR_REGS, 0) };
    // SAFETY: a valid device.
    let (start, len) = unsafe {
        (
            bindings::pci_resource_start(pdev, BAR_SHARED),
            bindings::pci_resource_len(pdev, BAR_SHARED),
        )
    };
    if regs.is_null() || start == 0 || len < crate::hyp_abi::mailbox::MAILBOX_MIN_REGION {
        pr_err!("{:?}: BAR0 or BAR2 missing: not a pviommu mailbox\n", name);
        return -(bindings::ENODEV as c_int);
    }
    // The shared region is RAM on the hypervisor's side: map it cacheable
    // so that atomics behave as on normal memory.
    // SAFETY: BAR2 is this device's memory resource of `len` bytes.
    let virt = unsafe { bindings::memremap(start, len as usize, bindings::MEMREMAP_WB as usize) };
    if virt.is_null() {
        pr_err!("{:?}: cannot map the shared region\n", name);
        return -(bindings::ENOMEM as c_int);
    }
    // SAFETY: `virt` maps `len` bytes, page aligned, for the kernel's
    // lifetime (never unmapped); the hypervisor writes it concurrently,
    // which atomics tolerate; any bit pattern is a valid `AtomicU64`.
    let region = unsafe { core::slice::from_raw_parts(virt.cast::<AtomicU64>(), len as usize / 8) };
    // SAFETY: BAR0 is mapped and at least 16 bytes (ivshmem registers).
    let platform = unsafe { KernelPlatform::new(regs.cast::<u8>().add(DOORBELL).cast()) };
    match T::probe(MailboxDevice {
        region,
        platform,
        name,
    }) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Registers the PCI driver for `T`; probes the device synchronously if
/// present. Called once, from the initcall.
pub(crate) fn register<T: MailboxDriver>() -> Result {
    // SAFETY: `DRIVER` is a static that lives forever, set up and
    // registered once (the initcall runs once, before any probe) and never
    // modified by Rust afterwards.
    let ret = unsafe {
        (*core::ptr::addr_of_mut!(DRIVER)).probe = Some(probe::<T>);
        bindings::__pci_register_driver(
            core::ptr::addr_of_mut!(DRIVER),
            core::ptr::null_mut(),
            c"pviommu".as_char_ptr(),
        )
    };
    kernel::error::to_result(ret)
}
