// SPDX-License-Identifier: GPL-2.0

//! Driver initialisation: boot parameters, the shared structures, and the
//! hand-over to the engine, once a transport to the hypervisor was found
//! (`discover.rs`: the PCI mailbox on x86, SMCCC on arm64).

use core::sync::atomic::{AtomicBool, Ordering};
use kernel::error::code::{EINVAL, EIO, ENODEV, ENOMEM};
use kernel::interrupt::local_interrupt_disable;
use kernel::prelude::*;
use kernel::sync::SetOnce;

use crate::debugfs;
use crate::discover;
use crate::ffi::{mem, params, virtio::Callback};
use crate::hyp_abi::call::{Func, ABI_MAJOR, ABI_MINOR, FEATURE_APPLY, FEATURE_WRITE_ONLY};
use crate::hyp_abi::check::{check_status, VersionInfo};
use crate::hyp_abi::layout::{PAGE_SIZE, RING_HEADER_SIZE, RING_ORDER_MAX, RING_ORDER_MIN};
use crate::hyp_abi::ring::{Producer, RingHeader, RingSlot};
use crate::hyp_abi::tracker::PageTracker;
use crate::latency;
use crate::logic::calibrate::Source;
use crate::logic::engine::{Config, Engine, Hypercalls};
use crate::logic::latency::Timed;
use crate::logic::policy::OnRevokeFailure;
use crate::logic::pool::{Pool, PoolSize, CHUNK_PAGES, MAX_CHUNKS};
use crate::logic::probe::Registration;
use crate::logic::stats::{Counter, CpuCounters, Stats};
use crate::map_ops::Devices;
use crate::threshold;

/// The transport to the hypervisor: the test harness's mailbox on x86.
#[cfg(CONFIG_X86_64)]
pub(crate) type KernelTransport =
    crate::logic::mailbox::Mailbox<'static, crate::ffi::doorbell::KernelPlatform>;
/// The transport to the hypervisor: SMCCC `HVC`s to pKVM on arm64.
#[cfg(CONFIG_ARM64)]
pub(crate) type KernelTransport = crate::logic::smccc::Smccc<crate::ffi::smccc::KernelConduit>;

/// The engine as the kernel instantiates it: its `SYNC`s are timed
/// (`sync_latency` in debugfs).
pub(crate) type KernelEngine =
    Engine<'static, Timed<KernelTransport, latency::KernelClock>, mem::PhysCopier>;

/// The driver: one per guest, set once the hypervisor's service is up.
pub(crate) struct Pviommu {
    /// The map/unmap engine over the shared table, ring and pool.
    pub(crate) engine: KernelEngine,
    /// The virtio devices to stop if an unshare fails.
    pub(crate) devices: Devices,
    /// What to do when a revocation fails (`pviommu.on_revoke_failure`).
    pub(crate) on_revoke_failure: OnRevokeFailure,
    /// What `INIT` registered (for the conformance probe, `hyp_probe`).
    pub(crate) registration: Registration,
    /// The feature bits `VERSION` reported (`hyp_stats` needs `STATS`).
    pub(crate) features: u64,
    /// How the bounce thresholds were chosen (`bounce_threshold` file).
    pub(crate) threshold_source: Source,
}

static DRIVER: SetOnce<Pviommu> = SetOnce::new();
static STATS: Stats<'static> = Stats::per_cpu(&CPU_COUNTERS, this_cpu);

/// CPU slots of the counters: each CPU adds to its own cache lines (see
/// `logic::stats`); CPUs beyond the slots share them in pairs, threes,
/// and so on.
const COUNTER_SLOTS: usize = 64;

static CPU_COUNTERS: [CpuCounters; COUNTER_SLOTS] = [const { CpuCounters::new() }; COUNTER_SLOTS];

/// The number of the CPU running the caller.
fn this_cpu() -> usize {
    kernel::cpu::CpuId::current().as_u32() as usize
}

static REQUIRED: AtomicBool = AtomicBool::new(true);

/// The driver, once a pviommu device is initialised.
pub(crate) fn driver() -> Option<&'static Pviommu> {
    DRIVER.as_ref()
}

/// `pviommu.required`: refuse virtio devices without a working pviommu.
pub(crate) fn required() -> bool {
    REQUIRED.load(Ordering::Relaxed)
}

/// Entry point of the driver, called from the C `fs_initcall_sync`.
///
/// Returns 0 or a negative errno, as initcalls do.
#[no_mangle]
extern "C" fn pviommu_rust_init() -> core::ffi::c_int {
    let p = params::read();
    pr_info!(
        "paravirtual IOMMU driver, ABI {}.{}\n",
        ABI_MAJOR,
        ABI_MINOR
    );
    if p.off {
        // Explicitly off: nothing is refused, nothing is installed.
        REQUIRED.store(false, Ordering::Relaxed);
        pr_info!("pviommu.mode=off: inactive; virtio devices use the platform's DMA path\n");
        return 0;
    }
    REQUIRED.store(p.required, Ordering::Relaxed);
    // The callback decides per device, so install it first: a device that
    // shows up without a working pviommu is refused or left alone.
    Callback::<Pviommu>::install();
    discover::find_hypervisor();
    0
}

/// Brings the pviommu up on a transport whose `VERSION` answered `version`
/// (checked): allocates and registers the table, ring and bounce pool and
/// installs the engine. `name` names the transport in messages.
pub(crate) fn bring_up(
    name: &'static core::ffi::CStr,
    hypercalls: KernelTransport,
    version: VersionInfo,
) -> Result {
    if driver().is_some() {
        pr_err!("{:?}: a pviommu is already active: declined\n", name);
        return Err(ENODEV);
    }
    let p = params::read();
    let Ok(mode) = p.mode else {
        pr_err!("{:?}: pviommu.mode must be share, bounce or sync\n", name);
        return Err(EINVAL);
    };
    let Ok(on_revoke_failure) = p.on_revoke_failure else {
        pr_err!(
            "{:?}: pviommu.on_revoke_failure must be panic or stop\n",
            name
        );
        return Err(EINVAL);
    };
    if !(RING_ORDER_MIN..=RING_ORDER_MAX).contains(&p.ring_order) {
        pr_err!(
            "{:?}: pviommu.ring_order must be {}..={}\n",
            name,
            RING_ORDER_MIN,
            RING_ORDER_MAX
        );
        return Err(EINVAL);
    }
    if p.ring_order > version.max_ring_order {
        pr_err!(
            "{:?}: pviommu.ring_order={} above the hypervisor's maximum {}\n",
            name,
            p.ring_order,
            version.max_ring_order
        );
        return Err(EINVAL);
    }

    // Allocate everything before the first call that registers it. The
    // memory is never freed: the hypervisor may read it until reset.
    let frames = p.max_pfn;
    let records = 1u64 << p.ring_order;
    let Some(size) = PoolSize::new(p.pool_kib, p.pool_max_kib) else {
        pr_err!(
            "{:?}: pviommu.pool_kib={} is more than {} chunks of {} KiB\n",
            name,
            p.pool_kib,
            MAX_CHUNKS,
            CHUNK_PAGES * 4
        );
        return Err(EINVAL);
    };
    let capacity = size.capacity();
    let more_chunks = size.max_chunks - 1;
    let (
        Some(table),
        Some(state),
        Some(ring),
        Some(pool_mem),
        Some(bitmap),
        Some(orig),
        Some(more),
    ) = (
        mem::alloc_contig(frames),
        mem::alloc_private(frames * 4),
        mem::alloc_contig(RING_HEADER_SIZE + records * 16),
        mem::alloc_contig(size.chunk_pages * PAGE_SIZE),
        mem::alloc_contig(capacity.div_ceil(64) * 8),
        mem::alloc_contig(capacity * 8),
        mem::alloc_contig(core::cmp::max(1, more_chunks) * 8),
    )
    else {
        pr_err!(
            "{:?}: out of memory for the table, ring or bounce pool\n",
            name
        );
        return Err(ENOMEM);
    };
    // SAFETY: each area is zeroed, page aligned, never freed, and only
    // ever accessed through these atomic views (the hypervisor's accesses
    // are the other side of the ABI's atomics).
    let views = unsafe {
        (
            table.as_slice(0, frames as usize),
            state.as_slice(0, frames as usize),
            ring.as_slice::<RingHeader>(0, 1),
            ring.as_slice::<RingSlot>(RING_HEADER_SIZE as usize, records as usize),
            bitmap.as_slice(0, capacity.div_ceil(64) as usize),
            orig.as_slice(0, capacity as usize),
            more.as_slice(0, more_chunks as usize),
        )
    };
    let (
        Some(table_v),
        Some(state_v),
        Some([header]),
        Some(slots),
        Some(bitmap_v),
        Some(orig_v),
        Some(more_v),
    ) = views
    else {
        pr_err!(
            "{:?}: internal error: shared-structure views out of bounds\n",
            name
        );
        return Err(EINVAL);
    };
    let tracker = PageTracker::new(state_v, table_v).map_err(|_| EINVAL)?;
    let producer = Producer::new(header, slots).map_err(|_| EINVAL)?;
    let pool =
        Pool::growable(pool_mem.phys, size.chunk_pages, more_v, bitmap_v, orig_v).ok_or(EINVAL)?;

    let registration = Registration {
        init: [
            table.phys,
            frames,
            ring.phys,
            u64::from(p.ring_order),
            pool_mem.phys,
            size.chunk_pages,
        ],
    };
    let init = {
        let _irq = local_interrupt_disable();
        Hypercalls::call(&hypercalls, Func::Init, registration.init)
    };
    match init {
        Ok(r) => check_status(r.status).map_err(|e| {
            pr_err!("{:?}: INIT refused: {:?}\n", name, e);
            EIO
        })?,
        Err(e) => {
            pr_err!("{:?}: INIT: no answer ({:?})\n", name, e);
            return Err(EIO);
        }
    }

    let (bounce_threshold, threshold_source) = threshold::choose(
        &hypercalls,
        mode,
        p.strict,
        p.bounce_threshold,
        size.max_mapping_bytes(),
    );
    let cfg = Config {
        mode,
        strict: p.strict,
        lazy_max_pages: p.lazy_max_pages,
        bounce_threshold,
        apply: version.features & FEATURE_APPLY != 0,
        write_only: version.features & FEATURE_WRITE_ONLY != 0,
        batch_maps: p.batch_maps,
    };
    let engine = Engine::new(
        cfg,
        tracker,
        producer,
        pool,
        Timed::new(hypercalls, latency::KernelClock, &latency::SYNCS),
        mem::PhysCopier,
        &STATS,
    );
    if !DRIVER.populate(Pviommu {
        engine,
        devices: Devices::new(),
        on_revoke_failure,
        registration,
        features: version.features,
        threshold_source,
    }) {
        return Err(ENODEV);
    }
    STATS.pool_chunks.fetch_add(1, Ordering::Relaxed);
    // The rest of the initial pool, as the pool grows later: no device
    // maps yet, and a chunk that cannot be added leaves a smaller pool.
    if let Some(d) = driver() {
        for _ in 1..size.initial_chunks {
            if d.grow_pool().is_err() {
                break;
            }
        }
    }
    debugfs::register(&STATS);
    pr_info!(
        "{:?}: ready: ABI {}.{}, {} mode, {} unmap, table {} frames, ring {} records, pool {} KiB (up to {} KiB), on revoke failure: {}\n",
        name,
        version.major,
        version.minor,
        mode.name(),
        if p.strict { "strict" } else { "lazy (unsafe against a malicious host)" },
        frames,
        records,
        STATS.pool_chunks.load(Ordering::Relaxed) * size.chunk_pages * 4,
        capacity * 4,
        on_revoke_failure.name()
    );
    pr_info!(
        "{:?}: DMA_FROM_DEVICE buffers shared {}\n",
        name,
        if cfg.write_only {
            "write-only (FEATURE_WRITE_ONLY)"
        } else {
            "read-write (the hypervisor has no FEATURE_WRITE_ONLY)"
        }
    );
    if !cfg.apply {
        pr_warn!(
            "{:?}: the hypervisor has no APPLY (FEATURE_APPLY): a full ring held by a descheduled vCPU makes the others wait\n",
            name
        );
    }
    Ok(())
}

impl Pviommu {
    /// Adds a chunk to the bounce pool, below its maximum. Process
    /// context: the chunk is allocated with `GFP_KERNEL`.
    pub(crate) fn grow_pool(&self) -> Result {
        let pool = self.engine.pool();
        if pool.chunks() >= pool.max_chunks() {
            return Ok(());
        }
        let kib = pool.chunk_slots() * PAGE_SIZE / 1024;
        let Some(chunk) = mem::alloc_contig(pool.chunk_slots() * PAGE_SIZE) else {
            STATS.inc(Counter::PoolGrowFailed);
            pr_warn!("bounce pool: no memory for another {} KiB chunk\n", kib);
            return Err(ENOMEM);
        };
        let grown = {
            let _irq = local_interrupt_disable();
            self.engine.grow_pool(chunk.phys)
        };
        match grown {
            Ok(()) => {
                pr_info!(
                    "bounce pool: grown to {} KiB ({} chunks, at most {})\n",
                    pool.chunks() * kib,
                    pool.chunks(),
                    pool.max_chunks()
                );
                Ok(())
            }
            Err(e) => {
                // The chunk may be partly shared: it is never reused.
                pr_err!(
                    "bounce pool: a {} KiB chunk could not be added ({:?}); it stays out of use\n",
                    kib,
                    e
                );
                Err(EIO)
            }
        }
    }
}

/// Called by the pool's work item (`pviommu_initcall.c`), in process
/// context, when a mapping found the bounce pool low or full.
#[no_mangle]
extern "C" fn pviommu_rust_grow_pool() {
    if let Some(d) = driver() {
        let _ = d.grow_pool();
    }
}

/// Called by the stop work item (`pviommu_initcall.c`), in process
/// context, after a failed revocation under `on_revoke_failure=stop`.
#[no_mangle]
extern "C" fn pviommu_rust_stop_devices() {
    if let Some(d) = driver() {
        d.devices.stop_all();
    }
}
