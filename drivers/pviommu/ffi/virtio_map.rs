// SPDX-License-Identifier: GPL-2.0

//! `struct virtio_map_ops` as a safe trait.
//!
//! The virtio core maps every ring and buffer of a device whose
//! `vdev->map` is set through these callbacks instead of the DMA API.
//! [`VTable<T>`] owns the C table for any `T: MapOps`; the callbacks turn
//! their raw arguments into plain values once and call `T`. Nothing here
//! knows what `T` does with them.

use core::ffi::CStr;
use core::marker::PhantomData;
use kernel::bindings;
use kernel::error::Result;
use kernel::ffi::{c_int, c_ulong, c_void};
use kernel::str::CStrExt;

extern "C" {
    /// `pviommu_dma.c`: zeroed pages that `dev`'s coherent mask reaches
    /// (null if none can be had), their physical address in `phys`.
    // `struct device *`, passed as `void *`: bindgen's `device` holds a
    // zero-sized field rustc does not accept in a foreign signature.
    fn pviommu_coherent_pages(
        dev: *mut c_void,
        size: usize,
        gfp: bindings::gfp_t,
        phys: *mut bindings::phys_addr_t,
    ) -> *mut c_void;
}

/// `DMA_MAPPING_ERROR`, `(~(dma_addr_t)0)` in `<linux/dma-mapping.h>`
/// (a cast bindgen cannot evaluate).
const DMA_MAPPING_ERROR: bindings::dma_addr_t = !0;

const PAGE_SIZE: u64 = 4096;

/// Direction of a mapping, as the virtio core passes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The device reads the buffer.
    ToDevice,
    /// The device writes the buffer.
    FromDevice,
    /// Both.
    Bidirectional,
}

impl Direction {
    /// `None` for `DMA_NONE` or a value the kernel never passes.
    fn from_raw(dir: bindings::dma_data_direction) -> Option<Self> {
        if dir == bindings::dma_data_direction::DMA_TO_DEVICE {
            Some(Self::ToDevice)
        } else if dir == bindings::dma_data_direction::DMA_FROM_DEVICE {
            Some(Self::FromDevice)
        } else if dir == bindings::dma_data_direction::DMA_BIDIRECTIONAL {
            Some(Self::Bidirectional)
        } else {
            None
        }
    }
}

/// The device a mapping is for.
pub(crate) struct Requester<'a> {
    /// The highest DMA address it reaches (its streaming DMA mask).
    pub(crate) limit: u64,
    /// The highest DMA address of coherent memory it reaches (its
    /// coherent DMA mask).
    pub(crate) coherent_limit: u64,
    /// Its name (the transport's device, e.g. a PCI address), if known.
    pub(crate) name: Option<&'a CStr>,
}

impl Requester<'static> {
    /// A device that reaches every address and has no name.
    pub(crate) const ANY: Self = Requester {
        limit: u64::MAX,
        coherent_limit: u64::MAX,
        name: None,
    };
}

/// What the mapping layer does for the devices it is installed on.
///
/// Every method may be called from any context, hard IRQ included, on
/// any CPU; none may sleep. Addresses are guest-physical.
pub(crate) trait MapOps: Sync + 'static {
    /// The instance the callbacks use; `None` refuses every mapping.
    fn get() -> Option<&'static Self>;

    /// Maps `[phys, phys + size)` for device `dev`; returns the device
    /// address. `cpu_sync` is false for `DMA_ATTR_SKIP_CPU_SYNC`. For one
    /// part of a buffer the virtio core is adding to a virtqueue
    /// (`map_page_batch`), `batch` is the two words of the buffer's
    /// `struct virtio_map_batch` (zero before its first part): work may
    /// wait there until [`MapOps::map_flush`].
    fn map(
        &self,
        phys: u64,
        size: u64,
        dir: Direction,
        cpu_sync: bool,
        dev: &Requester<'_>,
        batch: Option<&mut [u64; 2]>,
    ) -> Option<u64>;

    /// Completes what `batch` holds (`map_flush`), before the device can
    /// see the buffer. On an error the virtio core unmaps the buffer's
    /// parts and fails to add it.
    fn map_flush(&self, batch: &mut [u64; 2]) -> Result;

    /// Unmaps a mapping; the revocation may wait for [`MapOps::flush`].
    fn unmap(&self, dma: u64, size: u64, dir: Direction, cpu_sync: bool);

    /// Completes the unmaps made so far (`unmap_flush`): when it returns,
    /// the device can no longer reach what they unmapped.
    fn flush(&self);

    /// Makes the device's writes visible to the CPU.
    fn sync_for_cpu(&self, dma: u64, size: u64, dir: Direction);

    /// Makes the CPU's writes visible to the device.
    fn sync_for_device(&self, dma: u64, size: u64, dir: Direction);

    /// Whether mappings at `dma` need the two calls above.
    fn need_sync(&self, dma: u64) -> bool;

    /// Largest size one mapping may have.
    fn max_mapping_size(&self) -> u64;

    /// Where coherent memory of `bytes` (whole pages) for device `dev`
    /// comes from.
    fn coherent_source(&self, bytes: u64, dev: &Requester<'_>) -> CoherentSource;

    /// Gives the device access to freshly allocated, zeroed pages.
    fn share_coherent(&self, phys: u64, bytes: u64) -> Result<(), Keep>;

    /// Takes the device's access to coherent memory away before it is
    /// freed; says what may be done with the memory then.
    fn unshare_coherent(&self, phys: u64, bytes: u64) -> Release;
}

/// Where coherent memory comes from.
pub(crate) enum CoherentSource {
    /// Memory the implementation hands out itself (already shared and
    /// zeroed), at this physical address.
    Own(u64),
    /// Pages from the page allocator below the device's coherent mask,
    /// to be shared with `share_coherent`.
    Pages,
    /// None can be had.
    Fail,
}

/// What to do with pages whose sharing failed.
pub(crate) enum Keep {
    /// Nothing was left shared: free them.
    Free,
    /// The device may still reach them: never give them back.
    Leak,
}

/// What to do with coherent memory once unshared.
pub(crate) enum Release {
    /// It came from the page allocator and the device lost access: free.
    FreePages,
    /// The implementation took it back itself (its own memory).
    Done,
    /// The device may still reach it: never give it back.
    Leak,
}

/// The C table of `T`'s callbacks.
pub(crate) struct VTable<T: MapOps>(PhantomData<T>);

impl<T: MapOps> VTable<T> {
    /// The table to put in `vdev->map`.
    pub(crate) const OPS: bindings::virtio_map_ops = bindings::virtio_map_ops {
        map_page: Some(Self::map_page),
        unmap_page: Some(Self::unmap_page),
        sync_single_for_cpu: Some(Self::sync_single_for_cpu),
        sync_single_for_device: Some(Self::sync_single_for_device),
        alloc: Some(Self::alloc),
        free: Some(Self::free),
        need_sync: Some(Self::need_sync),
        mapping_error: Some(Self::mapping_error),
        max_mapping_size: Some(Self::max_mapping_size),
        unmap_flush: Some(Self::unmap_flush),
        map_page_batch: Some(Self::map_page_batch),
        map_flush: Some(Self::map_flush),
    };

    /// The C callback `map_page`.
    ///
    /// # Safety
    ///
    /// Called only by the virtio core, with a valid `page`.
    unsafe extern "C" fn map_page(
        map: bindings::virtio_map,
        page: *mut bindings::page,
        offset: c_ulong,
        size: usize,
        dir: bindings::dma_data_direction,
        attrs: c_ulong,
    ) -> bindings::dma_addr_t {
        // SAFETY: as the virtio core calls us (see above).
        unsafe { Self::map_one(map, None, page, offset, size, dir, attrs) }
    }

    /// The C callback `map_page_batch`.
    ///
    /// # Safety
    ///
    /// Called only by the virtio core, with a valid `page` and the
    /// buffer's `batch`, which nothing else uses during the call.
    unsafe extern "C" fn map_page_batch(
        map: bindings::virtio_map,
        batch: *mut bindings::virtio_map_batch,
        page: *mut bindings::page,
        offset: c_ulong,
        size: usize,
        dir: bindings::dma_data_direction,
        attrs: c_ulong,
    ) -> bindings::dma_addr_t {
        // SAFETY: the virtio core's batch lives on its stack for the
        // buffer and is valid and unaliased for the call (caller).
        let batch = unsafe { &mut (*batch).priv_ };
        // SAFETY: as the virtio core calls us (see above).
        unsafe { Self::map_one(map, Some(batch), page, offset, size, dir, attrs) }
    }

    /// What `map_page` and `map_page_batch` share.
    ///
    /// # Safety
    ///
    /// `page` is valid and `map` holds the `dma_dev` member, as the virtio
    /// core passes them.
    unsafe fn map_one(
        map: bindings::virtio_map,
        batch: Option<&mut [u64; 2]>,
        page: *mut bindings::page,
        offset: c_ulong,
        size: usize,
        dir: bindings::dma_data_direction,
        attrs: c_ulong,
    ) -> bindings::dma_addr_t {
        let (Some(ops), Some(dir)) = (T::get(), Direction::from_raw(dir)) else {
            return DMA_MAPPING_ERROR;
        };
        // SAFETY: the virtio core passes a valid page (caller).
        let phys = unsafe { bindings::page_to_phys(page) } + offset as u64;
        // SAFETY: virtio_ring passes the `dma_dev` member of the union (a
        // transport that uses `virtio_map_ops`, like ours, sets no other),
        // which is valid for the call.
        let dev = unsafe { requester(map.dma_dev) };
        ops.map(phys, size as u64, dir, cpu_sync(attrs), &dev, batch)
            .unwrap_or(DMA_MAPPING_ERROR)
    }

    /// The C callback `map_flush`.
    ///
    /// # Safety
    ///
    /// Called only by the virtio core, with the batch it passed to the
    /// buffer's `map_page_batch` calls.
    unsafe extern "C" fn map_flush(
        _map: bindings::virtio_map,
        batch: *mut bindings::virtio_map_batch,
    ) -> c_int {
        let Some(ops) = T::get() else {
            return -(bindings::EIO as c_int);
        };
        // SAFETY: as in `map_page_batch`.
        let batch = unsafe { &mut (*batch).priv_ };
        match ops.map_flush(batch) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// The C callback `unmap_page`.
    ///
    /// # Safety
    ///
    /// Called only by the virtio core.
    unsafe extern "C" fn unmap_page(
        _map: bindings::virtio_map,
        dma: bindings::dma_addr_t,
        size: usize,
        dir: bindings::dma_data_direction,
        attrs: c_ulong,
    ) {
        if let Some(ops) = T::get() {
            // The direction only chooses copies; what is revoked is what
            // the mapping granted, which the implementation looks up.
            let dir = Direction::from_raw(dir).unwrap_or(Direction::Bidirectional);
            ops.unmap(dma, size as u64, dir, cpu_sync(attrs));
        }
    }

    /// The C callback `unmap_flush`.
    ///
    /// # Safety
    ///
    /// Called only by the virtio core.
    unsafe extern "C" fn unmap_flush(_map: bindings::virtio_map) {
        if let Some(ops) = T::get() {
            ops.flush();
        }
    }

    /// The C callback `sync_single_for_cpu`.
    ///
    /// # Safety
    ///
    /// Called only by the virtio core.
    unsafe extern "C" fn sync_single_for_cpu(
        _map: bindings::virtio_map,
        dma: bindings::dma_addr_t,
        size: usize,
        dir: bindings::dma_data_direction,
    ) {
        if let (Some(ops), Some(dir)) = (T::get(), Direction::from_raw(dir)) {
            ops.sync_for_cpu(dma, size as u64, dir);
        }
    }

    /// The C callback `sync_single_for_device`.
    ///
    /// # Safety
    ///
    /// Called only by the virtio core.
    unsafe extern "C" fn sync_single_for_device(
        _map: bindings::virtio_map,
        dma: bindings::dma_addr_t,
        size: usize,
        dir: bindings::dma_data_direction,
    ) {
        if let (Some(ops), Some(dir)) = (T::get(), Direction::from_raw(dir)) {
            ops.sync_for_device(dma, size as u64, dir);
        }
    }

    /// The C callback `need_sync`.
    ///
    /// # Safety
    ///
    /// Called only by the virtio core.
    unsafe extern "C" fn need_sync(_map: bindings::virtio_map, dma: bindings::dma_addr_t) -> bool {
        T::get().is_some_and(|ops| ops.need_sync(dma))
    }

    /// The C callback `mapping_error`.
    ///
    /// # Safety
    ///
    /// Called only by the virtio core.
    unsafe extern "C" fn mapping_error(
        _map: bindings::virtio_map,
        dma: bindings::dma_addr_t,
    ) -> c_int {
        c_int::from(dma == DMA_MAPPING_ERROR)
    }

    /// The C callback `max_mapping_size`.
    ///
    /// # Safety
    ///
    /// Called only by the virtio core.
    unsafe extern "C" fn max_mapping_size(_map: bindings::virtio_map) -> usize {
        T::get().map_or(PAGE_SIZE, |ops| ops.max_mapping_size()) as usize
    }

    /// The C callback `alloc`: zeroed, page-granular coherent memory.
    ///
    /// # Safety
    ///
    /// Called only by the virtio core, with a valid `handle`.
    unsafe extern "C" fn alloc(
        map: bindings::virtio_map,
        size: usize,
        handle: *mut bindings::dma_addr_t,
        gfp: bindings::gfp_t,
    ) -> *mut c_void {
        let Some(ops) = T::get() else {
            return core::ptr::null_mut();
        };
        let bytes = (size as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        // SAFETY: virtio_ring passes the `dma_dev` member of the union,
        // which is valid for the call (see `map_page`).
        let dev = unsafe { requester(map.dma_dev) };
        let phys = match ops.coherent_source(bytes, &dev) {
            CoherentSource::Own(phys) => phys,
            CoherentSource::Fail => return core::ptr::null_mut(),
            CoherentSource::Pages => {
                let mut phys: bindings::phys_addr_t = 0;
                // SAFETY: `dev` is null or valid for the call; a page
                // allocation with the caller's flags, below its mask.
                let virt = unsafe {
                    pviommu_coherent_pages(map.dma_dev.cast(), bytes as usize, gfp, &mut phys)
                };
                if virt.is_null() {
                    return core::ptr::null_mut();
                }
                match ops.share_coherent(phys, bytes) {
                    Ok(()) => phys,
                    Err(Keep::Free) => {
                        // SAFETY: allocated above with this size; the
                        // device never had access to it.
                        unsafe { bindings::free_pages_exact(virt, bytes as usize) };
                        return core::ptr::null_mut();
                    }
                    // The device may still reach the pages: leave them
                    // allocated forever rather than let them be reused.
                    Err(Keep::Leak) => return core::ptr::null_mut(),
                }
            }
        };
        // SAFETY: the virtio core passes a valid pointer for the handle.
        unsafe { *handle = phys };
        // SAFETY: `phys` is RAM in the direct map (pages or pool).
        unsafe { bindings::phys_to_virt(phys) }
    }

    /// The C callback `free`.
    ///
    /// # Safety
    ///
    /// Called only by the virtio core, with what `alloc` returned.
    unsafe extern "C" fn free(
        _map: bindings::virtio_map,
        size: usize,
        vaddr: *mut c_void,
        dma: bindings::dma_addr_t,
        _attrs: c_ulong,
    ) {
        let Some(ops) = T::get() else {
            return;
        };
        let bytes = (size as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if let Release::FreePages = ops.unshare_coherent(dma, bytes) {
            // SAFETY: `alloc` took these pages from the page allocator with
            // this size, and the device no longer has access to them.
            unsafe { bindings::free_pages_exact(vaddr, bytes as usize) };
        }
    }
}

/// `dev` as a requester: the highest DMA address it reaches (its
/// streaming DMA mask, or no limit when it has none, as a device without
/// a mask uses none) and its name.
///
/// # Safety
///
/// `dev` must be null or a valid device for `'a`.
unsafe fn requester<'a>(dev: *mut bindings::device) -> Requester<'a> {
    if dev.is_null() {
        return Requester::ANY;
    }
    // SAFETY: `dev` is valid (caller); `dma_mask` is null or points to the
    // mask, and `dev_name()` is null or the device's NUL-terminated name,
    // both living as long as the device.
    let (mask, coherent, name) = unsafe {
        (
            (*dev).dma_mask,
            (*dev).coherent_dma_mask,
            bindings::dev_name(dev),
        )
    };
    let limit = if mask.is_null() {
        u64::MAX
    } else {
        // SAFETY: non-null, see above.
        unsafe { *mask }
    };
    Requester {
        limit,
        // An unset coherent mask (0) is treated like an absent `dma_mask`.
        coherent_limit: if coherent == 0 { u64::MAX } else { coherent },
        // SAFETY: non-null, see above.
        name: (!name.is_null()).then(|| unsafe { CStr::from_char_ptr(name) }),
    }
}

/// Whether the CPU copies of a bounced buffer are wanted.
fn cpu_sync(attrs: c_ulong) -> bool {
    attrs & (bindings::DMA_ATTR_SKIP_CPU_SYNC as c_ulong) == 0
}
