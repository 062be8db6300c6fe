// SPDX-License-Identifier: GPL-2.0-only
//! Guest memory as the devices see it: QEMU's memory table behind the host
//! view.
//!
//! `vm-memory`'s `GuestMemory` is the IOMMU-aware interface: every access
//! names its permission. Implementing it here means `virtio-queue`'s own
//! reads and writes (descriptor table, available and used rings) and the
//! backend's data and status accesses all pass through `Host::check`; there
//! is no other path to guest memory in the device code.
//!
//! A `CheckedMemory` is one device request: it registers the mappings it
//! wraps with the devices' MMU (so that even an access that bypasses it
//! faults on an unshared page) and holds the host's gate for reading from
//! the first check to the last copy, so a revocation waits for it. Make
//! one per request, not one for a whole queue, or a `SYNC` waits for the
//! queue to run dry.

use vm_memory::bitmap::BS;
use vm_memory::guest_memory::GuestMemorySliceIterator;
use vm_memory::{
    GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryError, GuestMemoryMmap, Permissions,
};

use std::sync::RwLockReadGuard;

use crate::device_mmu::thread_faults;
use crate::host::Host;

pub struct CheckedMemory<'a> {
    /// Every region QEMU announced, the ivshmem BAR included; the host view
    /// only admits guest RAM, so the BAR is unreachable for devices.
    inner: &'a GuestMemoryMmap<()>,
    host: &'a Host,
    /// The backend class a violation is counted for (`None`: the disk).
    class: Option<&'static str>,
    /// This thread's faults in the mappings when the request began.
    faults: u64,
    _request: RwLockReadGuard<'a, ()>,
}

impl<'a> CheckedMemory<'a> {
    /// Begins a device request on `inner`.
    pub fn new(
        inner: &'a GuestMemoryMmap<()>,
        host: &'a Host,
        class: Option<&'static str>,
    ) -> CheckedMemory<'a> {
        host.adopt(inner);
        CheckedMemory {
            inner,
            host,
            class,
            faults: thread_faults(),
            _request: host.device_request(),
        }
    }
}

impl Drop for CheckedMemory<'_> {
    fn drop(&mut self) {
        if thread_faults() != self.faults {
            // Some access got past the checks and hit the mappings.
            self.host.after_faults();
        }
    }
}

impl GuestMemory for CheckedMemory<'_> {
    type PhysicalMemory = GuestMemoryMmap<()>;
    type Bitmap = ();

    fn check_range(&self, addr: GuestAddress, count: usize, access: Permissions) -> bool {
        GuestMemoryBackend::check_range(self.inner, addr, count)
            && self.host.check(self.class, addr.0, count, access)
    }

    fn get_slices<'a>(
        &'a self,
        addr: GuestAddress,
        count: usize,
        access: Permissions,
    ) -> Result<impl GuestMemorySliceIterator<'a, BS<'a, ()>>, GuestMemoryError> {
        if !self.host.check(self.class, addr.0, count, access) {
            return Err(GuestMemoryError::InvalidGuestAddress(addr));
        }
        self.host.delay_copy(count);
        Ok(GuestMemoryBackend::get_slices(self.inner, addr, count))
    }

    // `physical_memory()` keeps its default `None`: nobody may bypass the
    // host view through the underlying memory.
}
