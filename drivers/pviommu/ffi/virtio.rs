// SPDX-License-Identifier: GPL-2.0

//! The virtio core's memory-access callback (`mem_acc`) as a safe trait,
//! and a counted reference to a virtio device.
//!
//! The core calls `mem_acc` from `virtio_features_ok()`, before the device
//! has any virtqueue, for every virtio device. Returning true makes the
//! core require `VIRTIO_F_ACCESS_PLATFORM` and use the mapping layer; the
//! callback may install `virtio_map_ops` on the device before that.

use core::ffi::CStr;
use core::marker::PhantomData;
use kernel::bindings;
use kernel::str::CStrExt;

use super::virtio_map::{CoherentSource, Direction, Keep, MapOps, Release, Requester, VTable};

/// A virtio device, with a reference held on it.
///
/// # Invariants
///
/// `self.0` is a valid `struct virtio_device` on which this value holds a
/// reference (`get_device`), so it is never freed while the value lives.
pub(crate) struct VirtioDevice(*mut bindings::virtio_device);

// SAFETY: the reference keeps the device alive; the methods only call C
// functions that may be called from any thread.
unsafe impl Send for VirtioDevice {}
// SAFETY: as above; `&self` methods take the core's own locks.
unsafe impl Sync for VirtioDevice {}

impl VirtioDevice {
    /// Takes a reference on `vdev`.
    ///
    /// # Safety
    ///
    /// `vdev` must be a valid virtio device for the duration of the call.
    unsafe fn get(vdev: *mut bindings::virtio_device) -> Self {
        // SAFETY: `vdev` is valid (caller); this takes the reference the
        // type invariant needs, dropped in `drop`.
        unsafe { bindings::get_device(core::ptr::addr_of_mut!((*vdev).dev)) };
        // INVARIANT: a reference was taken just above.
        Self(vdev)
    }

    /// The device's name (`virtio0`, ...), for messages.
    pub(crate) fn name(&self) -> &CStr {
        // SAFETY: the device is valid (type invariant) and its name lives
        // as long as the device.
        unsafe { CStr::from_char_ptr(bindings::dev_name(core::ptr::addr_of_mut!((*self.0).dev))) }
    }

    /// Whether the device negotiated `VIRTIO_F_ACCESS_PLATFORM`.
    pub(crate) fn has_access_platform(&self) -> bool {
        // SAFETY: the device is valid (type invariant).
        unsafe { bindings::virtio_has_feature(self.0, bindings::VIRTIO_F_ACCESS_PLATFORM) }
    }

    /// Whether the device sits on a transport (its DMA goes somewhere).
    pub(crate) fn has_parent(&self) -> bool {
        // SAFETY: the device is valid (type invariant).
        !unsafe { (*self.0).dev.parent }.is_null()
    }

    /// Whether `self` and `other` are the same device.
    pub(crate) fn is(&self, other: &VirtioDevice) -> bool {
        core::ptr::eq(self.0, other.0)
    }

    /// Stops the device: every queue fails its requests from now on.
    ///
    /// Process context only: `virtio_break_device()` takes the device's
    /// `vqs_list_lock`, a plain spinlock the virtio core takes in process
    /// context, so from an interrupt it could deadlock (use
    /// `platform::schedule_stop()` there).
    pub(crate) fn break_device(&self) {
        // SAFETY: the device is valid (type invariant).
        unsafe { bindings::virtio_break_device(self.0) };
    }
}

impl Drop for VirtioDevice {
    fn drop(&mut self) {
        // SAFETY: drops the reference taken in `get` (type invariant).
        unsafe { bindings::put_device(core::ptr::addr_of_mut!((*self.0).dev)) };
    }
}

/// What `mem_acc` decides for a device.
pub(crate) enum Access {
    /// Leave the device to the kernel's own DMA path.
    Default,
    /// Require `VIRTIO_F_ACCESS_PLATFORM` and map through `T`'s ops.
    MapOps,
    /// Require `VIRTIO_F_ACCESS_PLATFORM`, and refuse every mapping: the
    /// device's probe fails.
    Refuse,
}

/// The driver's side of `mem_acc`.
pub(crate) trait MemAccess: MapOps {
    /// Decides for `dev`, which is negotiating its features.
    fn decide(dev: VirtioDevice) -> Access;
}

/// Installs `T` as the platform's `mem_acc` callback.
pub(crate) struct Callback<T: MemAccess>(PhantomData<T>);

impl<T: MemAccess> Callback<T> {
    /// From now on every virtio device that negotiates features asks `T`.
    pub(crate) fn install() {
        // SAFETY: the callback is a function valid for the kernel's
        // lifetime; the core reads the pointer at each negotiation.
        unsafe { bindings::virtio_set_mem_acc_cb(Some(Self::mem_acc)) };
    }

    /// The C callback `mem_acc`.
    ///
    /// # Safety
    ///
    /// Called only by the virtio core, with a valid device that is
    /// negotiating its features (no virtqueue exists yet).
    unsafe extern "C" fn mem_acc(vdev: *mut bindings::virtio_device) -> bool {
        // SAFETY: the core passes a valid device (caller).
        let dev = unsafe { VirtioDevice::get(vdev) };
        let ops: &'static bindings::virtio_map_ops = match T::decide(dev) {
            Access::Default => return false,
            // A constant's address: promoted to a `'static` table.
            Access::MapOps => &VTable::<T>::OPS,
            Access::Refuse => &REFUSE_OPS,
        };
        // SAFETY: the device has no virtqueue yet, so nothing maps
        // through `map` concurrently; the table is static. The virtio
        // core's own mapping (virtio_ring) reads `map` from now on.
        unsafe { (*vdev).map = ops };
        true
    }
}

/// The table of a device that must not DMA: every mapping fails.
static REFUSE_OPS: bindings::virtio_map_ops = VTable::<Refuse>::OPS;

/// A [`MapOps`] without an instance: every callback refuses.
struct Refuse;

impl MapOps for Refuse {
    fn get() -> Option<&'static Self> {
        None
    }
    fn map(
        &self,
        _: u64,
        _: u64,
        _: Direction,
        _: bool,
        _: &Requester<'_>,
        _: Option<&mut [u64; 2]>,
    ) -> Option<u64> {
        None
    }
    fn map_flush(&self, _: &mut [u64; 2]) -> kernel::error::Result {
        Err(kernel::error::code::EIO)
    }
    fn unmap(&self, _: u64, _: u64, _: Direction, _: bool) {}
    fn flush(&self) {}
    fn sync_for_cpu(&self, _: u64, _: u64, _: Direction) {}
    fn sync_for_device(&self, _: u64, _: u64, _: Direction) {}
    fn need_sync(&self, _: u64) -> bool {
        false
    }
    fn max_mapping_size(&self) -> u64 {
        0
    }
    fn coherent_source(&self, _: u64, _: &Requester<'_>) -> CoherentSource {
        CoherentSource::Fail
    }
    fn share_coherent(&self, _: u64, _: u64) -> Result<(), Keep> {
        Err(Keep::Free)
    }
    fn unshare_coherent(&self, _: u64, _: u64) -> Release {
        Release::Done
    }
}
