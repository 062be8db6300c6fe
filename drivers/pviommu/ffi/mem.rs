// SPDX-License-Identifier: GPL-2.0

//! Guest memory: the allocations the hypervisor reads (table, ring, bounce
//! pool) and private bookkeeping, as `'static` slices of atomics, plus the
//! physical-address copies of the bounce path.

use kernel::alloc::{flags::GFP_KERNEL, VVec};
use kernel::bindings;
use kernel::ffi::c_void;

use crate::hyp_abi::layout::PAGE_SIZE;
use crate::logic::engine::Copier;

/// Zeroed memory that is never freed.
pub(crate) struct Area {
    virt: *mut c_void,
    /// Size in bytes (a multiple of the page size).
    bytes: usize,
}

/// Physically contiguous, zeroed memory that is never freed.
pub(crate) struct Contig {
    area: Area,
    /// Guest-physical address.
    pub(crate) phys: u64,
}

impl core::ops::Deref for Contig {
    type Target = Area;

    fn deref(&self) -> &Area {
        &self.area
    }
}

/// Allocates `bytes` (rounded up to pages) of zeroed, virtually contiguous
/// memory, for bookkeeping the hypervisor never reads: no physically
/// contiguous run is needed, so its size is not bounded by the page
/// allocator's largest order (the table's per-frame state of a guest
/// above 4 GiB).
pub(crate) fn alloc_private(bytes: u64) -> Option<Area> {
    let bytes = usize::try_from(bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE).ok()?;
    // vmalloc memory of whole pages is page aligned. Taking the raw parts
    // leaks the vector: the area is never freed.
    let (virt, _, _) = VVec::<u8>::zeroed(bytes, GFP_KERNEL).ok()?.into_raw_parts();
    Some(Area {
        virt: virt.cast(),
        bytes,
    })
}

/// Allocates `bytes` (rounded up to pages) of zeroed contiguous memory.
///
/// The memory lives for the rest of the kernel's life: the hypervisor
/// may keep reading it, so it is never handed back.
pub(crate) fn alloc_contig(bytes: u64) -> Option<Contig> {
    let bytes = usize::try_from(bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE).ok()?;
    // SAFETY: plain page allocation; GFP_KERNEL at init (process context).
    let virt = unsafe {
        bindings::alloc_pages_exact_noprof(bytes, bindings::GFP_KERNEL | bindings::__GFP_ZERO)
    };
    if virt.is_null() {
        return None;
    }
    // SAFETY: `virt` is a direct-map address returned by the allocator.
    let phys = unsafe { bindings::virt_to_phys(virt) };
    Some(Contig {
        area: Area { virt, bytes },
        phys,
    })
}

impl Area {
    /// The memory as a slice of `T` (an atomic type), leaked for `'static`.
    ///
    /// # Safety
    ///
    /// `T` must be valid for any bit pattern and no larger than its own
    /// alignment allows at page-aligned offsets (the atomics are), and the
    /// memory must not be viewed as another type at the same time except
    /// through atomics.
    pub(crate) unsafe fn as_slice<T>(&self, offset: usize, len: usize) -> Option<&'static [T]> {
        let end = offset.checked_add(len.checked_mul(core::mem::size_of::<T>())?)?;
        if end > self.bytes || offset % core::mem::align_of::<T>() != 0 {
            return None;
        }
        // SAFETY: in bounds (checked above), aligned (page-aligned base and
        // the offset check), zero-initialised memory valid for `T` (caller),
        // and never freed, so `'static` holds. Both allocators return
        // page-aligned memory for page multiples.
        Some(unsafe {
            core::slice::from_raw_parts(self.virt.cast::<u8>().add(offset).cast::<T>(), len)
        })
    }
}

/// The physical address of a kmalloc'ed vector's buffer.
pub(crate) fn phys_of_kvec(v: &kernel::alloc::KVec<u8>) -> u64 {
    // SAFETY: a `KVec` lives in kmalloc memory, which is in the direct
    // map, so `virt_to_phys` is defined for its pointer.
    unsafe { bindings::virt_to_phys(v.as_ptr().cast_mut().cast()) }
}

/// Copies between physical ranges through the direct map.
pub(crate) struct PhysCopier;

impl Copier for PhysCopier {
    fn copy(&self, dst: u64, src: u64, len: u64) {
        // SAFETY: the engine only copies between a live bounce slot and the
        // buffer the DMA API caller handed over for this mapping, both RAM
        // in the direct map for `len` bytes; the DMA API contract gives the
        // driver ownership of the buffer during the call. `copy` (memmove)
        // tolerates any overlap.
        unsafe {
            let d = bindings::phys_to_virt(dst).cast::<u8>();
            let s = bindings::phys_to_virt(src).cast::<u8>();
            core::ptr::copy(s, d, len as usize);
        }
    }

    fn zero(&self, dst: u64, len: u64) {
        // SAFETY: the engine only zeroes a live bounce slot or coherent
        // memory it owns, RAM in the direct map for `len` bytes.
        unsafe {
            core::ptr::write_bytes(bindings::phys_to_virt(dst).cast::<u8>(), 0, len as usize)
        };
    }

    #[cfg(CONFIG_ARM64)]
    fn prefault(&self, phys: u64, len: u64) {
        let page = crate::hyp_abi::layout::PAGE_SIZE;
        let mut at = phys & !(page - 1);
        while at < phys + len {
            // SAFETY: the buffer's pages are RAM in the direct map (DMA API
            // contract); a volatile read of one byte of each changes
            // nothing and cannot be elided.
            unsafe { core::ptr::read_volatile(bindings::phys_to_virt(at).cast::<u8>()) };
            at += page;
        }
    }
}
