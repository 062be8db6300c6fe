// SPDX-License-Identifier: GPL-2.0

//! The `struct dma_map_ops` the pviommu installs on the devices it
//! protects, and the one it installs when it must refuse them.
//!
//! Every callback converts its raw arguments once, disables local
//! interrupts (the DMA API may be called from hard IRQ) and hands over to
//! the safe engine in `logic/engine.rs`.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use kernel::bindings;
use kernel::ffi::{c_int, c_ulong, c_void};
use kernel::prelude::*;

use super::platform::IrqDisabled;
use crate::hyp_abi::layout::PAGE_SIZE;
use crate::logic::engine::{Batch, DmaError};
use crate::logic::policy::Dir;
use crate::{engine, KernelEngine};

const DMA_MAPPING_ERROR: bindings::dma_addr_t = bindings::DMA_MAPPING_ERROR;

fn dir_of(dir: bindings::dma_data_direction) -> Option<Dir> {
    match dir {
        bindings::dma_data_direction_DMA_TO_DEVICE => Some(Dir::ToDevice),
        bindings::dma_data_direction_DMA_FROM_DEVICE => Some(Dir::FromDevice),
        bindings::dma_data_direction_DMA_BIDIRECTIONAL => Some(Dir::Bidirectional),
        _ => None,
    }
}

/// Whether the CPU copies of a bounced buffer are wanted.
fn cpu_sync(attrs: c_ulong) -> bool {
    attrs & bindings::DMA_ATTR_SKIP_CPU_SYNC as c_ulong == 0
}

/// Reports a failed mapping, at most a few times per boot: mapping errors
/// come in storms (a full pool), and the counters keep the totals.
fn report(what: &str, e: DmaError) {
    static REPORTED: AtomicU32 = AtomicU32::new(0);
    if REPORTED.fetch_add(1, Ordering::Relaxed) < 10 {
        pr_err!(
            "{} failed: {:?} (see /sys/kernel/debug/pviommu/)\n",
            what,
            e
        );
    }
}

fn with_engine<R>(fail: R, f: impl FnOnce(&KernelEngine) -> R) -> R {
    match engine() {
        Some(e) => {
            let _irq = IrqDisabled::new();
            let r = f(e);
            if e.is_broken() {
                super::virtio::break_all_once();
            }
            r
        }
        None => fail,
    }
}

/// The C callback `map_page`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn map_page(
    _dev: *mut bindings::device,
    page: *mut bindings::page,
    offset: c_ulong,
    size: usize,
    dir: bindings::dma_data_direction,
    attrs: c_ulong,
) -> bindings::dma_addr_t {
    let Some(dir) = dir_of(dir) else {
        return DMA_MAPPING_ERROR;
    };
    // SAFETY: the DMA API passes a valid page.
    let phys = unsafe { bindings::page_to_phys(page) } + offset as u64;
    with_engine(DMA_MAPPING_ERROR, |e| {
        e.map(phys, size as u64, dir, cpu_sync(attrs))
            .unwrap_or_else(|err| {
                report("map_page", err);
                DMA_MAPPING_ERROR
            })
    })
}

/// An open `dma_unmap_batch_begin()` batch of one CPU.
///
/// Only its own CPU touches a slot, with interrupts disabled from the
/// begin to the end of the batch, so relaxed atomics suffice: they only
/// make the statics shareable.
struct CpuBatch {
    depth: AtomicU32,
    pending: AtomicU64,
    irq_flags: AtomicUsize,
}

/// One slot per CPU; CPUs beyond the array do not batch (each unmap call
/// then syncs on its own, which is correct, only slower).
static CPU_BATCHES: [CpuBatch; 64] = [const {
    CpuBatch {
        depth: AtomicU32::new(0),
        pending: AtomicU64::new(0),
        irq_flags: AtomicUsize::new(0),
    }
}; 64];

/// The open batch of this CPU, if any. Interrupts must be disabled.
fn open_batch() -> Option<&'static CpuBatch> {
    // SAFETY: no preconditions; the caller has interrupts disabled.
    let cpu = unsafe { bindings::raw_smp_processor_id() };
    CPU_BATCHES
        .get(cpu as usize)
        .filter(|b| b.depth.load(Ordering::Relaxed) > 0)
}

/// Ends one unmap DMA API call: adds its pages to this CPU's open batch,
/// or syncs them now when no batch is open.
fn finish_or_defer(e: &KernelEngine, batch: Batch, what: &str) {
    if let Some(open) = open_batch() {
        open.pending.fetch_add(batch.pending(), Ordering::Relaxed);
        return;
    }
    if let Err(err) = e.finish(batch) {
        report(what, err);
    }
}

/// The C callback `unmap_batch_begin`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn unmap_batch_begin(_dev: *mut bindings::device) {
    if engine().is_none() {
        return;
    }
    // Interrupts stay disabled until the end of the batch: no other unmap
    // on this CPU may join a batch it does not belong to, and the batch
    // cannot migrate.
    // SAFETY: always allowed; `unmap_batch_end` restores the flags.
    let flags = unsafe { bindings::local_irq_save() };
    // SAFETY: no preconditions; interrupts are disabled.
    let cpu = unsafe { bindings::raw_smp_processor_id() };
    match CPU_BATCHES.get(cpu as usize) {
        Some(b) if b.depth.fetch_add(1, Ordering::Relaxed) == 0 => {
            b.pending.store(0, Ordering::Relaxed);
            b.irq_flags.store(flags, Ordering::Relaxed);
        }
        // Nested: the outer batch already disabled interrupts.
        // SAFETY: restores what was just saved (still disabled).
        Some(_) => unsafe { bindings::local_irq_restore(flags) },
        // SAFETY: restores what was just saved.
        None => unsafe { bindings::local_irq_restore(flags) },
    }
}

/// The C callback `unmap_batch_end`: the one `SYNC` for the batch.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn unmap_batch_end(_dev: *mut bindings::device) {
    // SAFETY: no preconditions. Inside a batch interrupts are disabled,
    // so this is the CPU that began it.
    let cpu = unsafe { bindings::raw_smp_processor_id() };
    let Some(b) = CPU_BATCHES.get(cpu as usize) else {
        return;
    };
    // No batch open (no engine at begin time): nothing to end.
    if b.depth.load(Ordering::Relaxed) == 0 || b.depth.fetch_sub(1, Ordering::Relaxed) != 1 {
        return;
    }
    let pending = b.pending.swap(0, Ordering::Relaxed);
    if let Some(e) = engine() {
        if let Err(err) = e.finish(Batch::with_pending(pending)) {
            report("unmap batch", err);
        }
        if e.is_broken() {
            super::virtio::break_all_once();
        }
    }
    // SAFETY: restores the flags `unmap_batch_begin` saved on this CPU.
    unsafe { bindings::local_irq_restore(b.irq_flags.load(Ordering::Relaxed)) };
}

/// The C callback `unmap_page`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn unmap_page(
    _dev: *mut bindings::device,
    dma: bindings::dma_addr_t,
    size: usize,
    dir: bindings::dma_data_direction,
    attrs: c_ulong,
) {
    let dir = dir_of(dir).unwrap_or(Dir::Bidirectional);
    with_engine((), |e| {
        let mut batch = Batch::default();
        e.unmap(dma, size as u64, dir, cpu_sync(attrs), &mut batch);
        finish_or_defer(e, batch, "unmap_page");
    })
}

/// The scatterlist entries of a DMA API call.
///
/// # Safety
///
/// `sg` must head a valid scatterlist of at least `nents` entries.
unsafe fn for_each_sg(
    sg: *mut bindings::scatterlist,
    nents: c_int,
    mut f: impl FnMut(*mut bindings::scatterlist) -> bool,
) {
    let mut cur = sg;
    for _ in 0..nents {
        if cur.is_null() || !f(cur) {
            return;
        }
        // SAFETY: `cur` is an entry of the list (caller guarantee).
        cur = unsafe { bindings::sg_next(cur) };
    }
}

/// Calls `f(dma_address, dma_length)` for the first `nents` mapped
/// entries of a scatterlist.
///
/// # Safety
///
/// `sg` must head a valid scatterlist whose first `nents` entries hold
/// DMA addresses set by `map_sg`.
unsafe fn for_each_mapped(
    sg: *mut bindings::scatterlist,
    nents: c_int,
    mut f: impl FnMut(u64, u64),
) {
    let each = |s: *mut bindings::scatterlist| {
        // SAFETY: `s` is a valid, mapped entry (caller guarantee).
        let (dma, len) = unsafe { (bindings::sg_dma_address(s), (*s).dma_length) };
        f(dma, u64::from(len));
        true
    };
    // SAFETY: guaranteed by the caller.
    unsafe { for_each_sg(sg, nents, each) };
}

/// The C callback `map_sg`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn map_sg(
    _dev: *mut bindings::device,
    sg: *mut bindings::scatterlist,
    nents: c_int,
    dir: bindings::dma_data_direction,
    attrs: c_ulong,
) -> c_int {
    let Some(dir) = dir_of(dir) else {
        return -(bindings::EINVAL as c_int);
    };
    with_engine(-(bindings::EIO as c_int), |e| {
        let mut mapped = 0;
        let mut failed = None;
        let map_one = |s: *mut bindings::scatterlist| {
            // SAFETY: `s` is a valid entry with a valid page.
            let (phys, len) = unsafe {
                (
                    bindings::page_to_phys(bindings::sg_page(s)) + u64::from((*s).offset),
                    (*s).length,
                )
            };
            match e.map(phys, u64::from(len), dir, cpu_sync(attrs)) {
                Ok(dma) => {
                    // SAFETY: `s` is a valid entry.
                    unsafe { bindings::sg_dma_set(s, dma, len) };
                    mapped += 1;
                    true
                }
                Err(err) => {
                    failed = Some(err);
                    false
                }
            }
        };
        // SAFETY: the DMA API passes a valid list of `nents` entries.
        unsafe { for_each_sg(sg, nents, map_one) };
        let Some(err) = failed else {
            return mapped;
        };
        report("map_sg", err);
        // Undo the entries already mapped, as one unmap call.
        let mut batch = Batch::default();
        // SAFETY: as above; the first `mapped` entries hold DMA addresses.
        unsafe {
            for_each_mapped(sg, mapped, |dma, len| {
                e.unmap(dma, len, dir, false, &mut batch)
            })
        };
        let _ = e.finish(batch);
        err.to_errno()
    })
}

/// The C callback `unmap_sg`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn unmap_sg(
    _dev: *mut bindings::device,
    sg: *mut bindings::scatterlist,
    nents: c_int,
    dir: bindings::dma_data_direction,
    attrs: c_ulong,
) {
    let dir = dir_of(dir).unwrap_or(Dir::Bidirectional);
    with_engine((), |e| {
        // One batch for the whole list: one SYNC for the call.
        let mut batch = Batch::default();
        // SAFETY: the DMA API passes the list it mapped, `nents` entries.
        unsafe {
            for_each_mapped(sg, nents, |dma, len| {
                e.unmap(dma, len, dir, cpu_sync(attrs), &mut batch)
            })
        };
        finish_or_defer(e, batch, "unmap_sg");
    })
}

/// The C callback `sync_single_for_cpu`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn sync_single_for_cpu(
    _dev: *mut bindings::device,
    dma: bindings::dma_addr_t,
    size: usize,
    dir: bindings::dma_data_direction,
) {
    let dir = dir_of(dir).unwrap_or(Dir::Bidirectional);
    with_engine((), |e| e.sync_for_cpu(dma, size as u64, dir))
}

/// The C callback `sync_single_for_device`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn sync_single_for_device(
    _dev: *mut bindings::device,
    dma: bindings::dma_addr_t,
    size: usize,
    dir: bindings::dma_data_direction,
) {
    let dir = dir_of(dir).unwrap_or(Dir::Bidirectional);
    with_engine((), |e| e.sync_for_device(dma, size as u64, dir))
}

/// The C callback `sync_sg_for_cpu`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn sync_sg_for_cpu(
    _dev: *mut bindings::device,
    sg: *mut bindings::scatterlist,
    nents: c_int,
    dir: bindings::dma_data_direction,
) {
    let dir = dir_of(dir).unwrap_or(Dir::Bidirectional);
    with_engine((), |e| {
        // SAFETY: the DMA API passes a mapped list of `nents` entries.
        unsafe { for_each_mapped(sg, nents, |dma, len| e.sync_for_cpu(dma, len, dir)) }
    })
}

/// The C callback `sync_sg_for_device`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn sync_sg_for_device(
    _dev: *mut bindings::device,
    sg: *mut bindings::scatterlist,
    nents: c_int,
    dir: bindings::dma_data_direction,
) {
    let dir = dir_of(dir).unwrap_or(Dir::Bidirectional);
    with_engine((), |e| {
        // SAFETY: the DMA API passes a mapped list of `nents` entries.
        unsafe { for_each_mapped(sg, nents, |dma, len| e.sync_for_device(dma, len, dir)) }
    })
}

/// The C callback `alloc`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn alloc(
    _dev: *mut bindings::device,
    size: usize,
    dma_handle: *mut bindings::dma_addr_t,
    gfp: bindings::gfp_t,
    _attrs: c_ulong,
) -> *mut c_void {
    let Some(e) = engine() else {
        return core::ptr::null_mut();
    };
    let bytes = (size as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let phys = if e.config().mode == crate::logic::policy::Mode::Bounce {
        // Bounce mode: coherent memory comes from the shared pool, like a
        // restricted-dma-pool.
        let _irq = IrqDisabled::new();
        let Some(slots) = e.pool().alloc(bytes / PAGE_SIZE, 0) else {
            report("alloc", DmaError::PoolFull);
            return core::ptr::null_mut();
        };
        let phys = e.pool().slot_phys(slots.first);
        // SAFETY: the slots are ours and in the direct map.
        unsafe {
            core::ptr::write_bytes(bindings::phys_to_virt(phys).cast::<u8>(), 0, bytes as usize)
        };
        phys
    } else {
        // SAFETY: page allocation with the caller's flags.
        let virt = unsafe {
            bindings::alloc_pages_exact_noprof(bytes as usize, gfp | bindings::__GFP_ZERO)
        };
        if virt.is_null() {
            return core::ptr::null_mut();
        }
        // SAFETY: `virt` is a direct-map address from the allocator.
        let phys = unsafe { bindings::virt_to_phys(virt) };
        let shared = {
            let _irq = IrqDisabled::new();
            e.map_coherent(phys, bytes)
        };
        if let Err(err) = shared {
            report("alloc", err);
            // SAFETY: allocated above, never shared.
            unsafe { bindings::free_pages_exact(virt, bytes as usize) };
            return core::ptr::null_mut();
        }
        phys
    };
    // SAFETY: the DMA API passes a valid pointer for the handle.
    unsafe { *dma_handle = phys };
    // SAFETY: `phys` is RAM in the direct map.
    unsafe { bindings::phys_to_virt(phys) }
}

/// The C callback `free`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn free(
    _dev: *mut bindings::device,
    size: usize,
    vaddr: *mut c_void,
    dma: bindings::dma_addr_t,
    _attrs: c_ulong,
) {
    let Some(e) = engine() else {
        return;
    };
    let bytes = (size as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let _irq = IrqDisabled::new();
    if e.pool().contains(dma, bytes) {
        let slots = crate::logic::pool::Slots {
            first: e.pool().slot_of(dma),
            pages: bytes / PAGE_SIZE,
        };
        e.pool().free(slots);
        return;
    }
    match e.unmap_coherent(dma, bytes) {
        // SAFETY: allocated by `alloc` with this size; the host lost access.
        Ok(()) => unsafe { bindings::free_pages_exact(vaddr, bytes as usize) },
        // The host may still reach the pages: leak them, never reuse them.
        Err(err) => {
            super::virtio::break_all_once();
            pr_err!(
                "coherent memory at {:#x} ({} bytes) could not be unshared ({:?}): leaked\n",
                dma,
                bytes,
                err
            );
        }
    }
}

/// The C callback `dma_supported`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn dma_supported(_dev: *mut bindings::device, _mask: u64) -> c_int {
    // DMA addresses are guest-physical addresses: any mask the device
    // accepts for dma-direct works.
    1
}

/// The C callback `get_required_mask`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn get_required_mask(_dev: *mut bindings::device) -> u64 {
    u64::MAX
}

/// The C callback `max_mapping_size`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn max_mapping_size(_dev: *mut bindings::device) -> usize {
    engine().map_or(PAGE_SIZE as usize, |e| e.max_mapping_size() as usize)
}

/// A `dma_map_ops` with every callback empty.
const fn empty_ops() -> bindings::dma_map_ops {
    // SAFETY: `dma_map_ops` is a struct of nullable function pointers and
    // integers, for which all-zero is valid (every callback absent).
    unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
}

/// The operations of a protected device.
pub(crate) static PVIOMMU_DMA_OPS: bindings::dma_map_ops = bindings::dma_map_ops {
    alloc: Some(alloc),
    free: Some(free),
    map_page: Some(map_page),
    unmap_page: Some(unmap_page),
    map_sg: Some(map_sg),
    unmap_sg: Some(unmap_sg),
    sync_single_for_cpu: Some(sync_single_for_cpu),
    sync_single_for_device: Some(sync_single_for_device),
    sync_sg_for_cpu: Some(sync_sg_for_cpu),
    sync_sg_for_device: Some(sync_sg_for_device),
    dma_supported: Some(dma_supported),
    get_required_mask: Some(get_required_mask),
    max_mapping_size: Some(max_mapping_size),
    // Coherent memory is in the direct map (pages or pool slots), which is
    // what the kernel's common helpers expect.
    mmap: Some(bindings::dma_common_mmap),
    get_sgtable: Some(bindings::dma_common_get_sgtable),
    unmap_batch_begin: Some(unmap_batch_begin),
    unmap_batch_end: Some(unmap_batch_end),
    ..empty_ops()
};

/// The C callback `refuse_map_page`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn refuse_map_page(
    _dev: *mut bindings::device,
    _page: *mut bindings::page,
    _offset: c_ulong,
    _size: usize,
    _dir: bindings::dma_data_direction,
    _attrs: c_ulong,
) -> bindings::dma_addr_t {
    DMA_MAPPING_ERROR
}

/// The C callback `refuse_map_sg`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn refuse_map_sg(
    _dev: *mut bindings::device,
    _sg: *mut bindings::scatterlist,
    _nents: c_int,
    _dir: bindings::dma_data_direction,
    _attrs: c_ulong,
) -> c_int {
    -(bindings::EIO as c_int)
}

/// The C callback `refuse_alloc`.
///
/// # Safety
///
/// Called only by the kernel, with the arguments its C prototype
/// promises (valid pointers for the duration of the call).
unsafe extern "C" fn refuse_alloc(
    _dev: *mut bindings::device,
    _size: usize,
    _dma_handle: *mut bindings::dma_addr_t,
    _gfp: bindings::gfp_t,
    _attrs: c_ulong,
) -> *mut c_void {
    core::ptr::null_mut()
}

/// The operations of a device that must not DMA: no pviommu is working
/// and `pviommu.required=1`. Every mapping fails, so the device's driver
/// fails to probe instead of DMA-ing into private memory.
pub(crate) static REFUSE_DMA_OPS: bindings::dma_map_ops = bindings::dma_map_ops {
    alloc: Some(refuse_alloc),
    map_page: Some(refuse_map_page),
    map_sg: Some(refuse_map_sg),
    dma_supported: Some(dma_supported),
    ..empty_ops()
};
