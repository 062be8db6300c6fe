// SPDX-License-Identifier: GPL-2.0

//! What the pviommu does for the virtio devices it protects: the virtio
//! mapping layer's callbacks and the `mem_acc` decision, over the engine.
//!
//! Every operation runs with local interrupts disabled (the virtio core
//! maps from any context, hard IRQ included), so the engine's per-page
//! locks and the per-CPU mailbox slot are never re-entered on one CPU.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use kernel::error::code::EIO;
use kernel::interrupt::local_interrupt_disable;
use kernel::prelude::*;
use kernel::sync::SetOnce;

use crate::ffi::virtio::{Access, MemAccess, VirtioDevice};
use crate::ffi::virtio_map::{CoherentSource, Direction, Keep, MapOps, Release, Requester};
use crate::init::{required, Pviommu};
use crate::logic::engine::DmaError;
use crate::logic::map_batch::MapBatch;
use crate::logic::policy::{Dir, Mode, OnRevokeFailure};

/// How many virtio devices the driver can stop after a failed unshare.
const MAX_DEVICES: usize = 32;

/// The virtio devices on the pviommu, so that they can be stopped when
/// the host may still reach memory the guest released. Each holds a
/// reference on its device, so a device that went away is still valid
/// memory (stopping it then does nothing).
pub(crate) struct Devices {
    slots: [SetOnce<VirtioDevice>; MAX_DEVICES],
    stopped: AtomicBool,
}

impl Devices {
    pub(crate) const fn new() -> Self {
        Devices {
            slots: [const { SetOnce::new() }; MAX_DEVICES],
            stopped: AtomicBool::new(false),
        }
    }

    /// Remembers `dev`, or says why it cannot be stopped later.
    fn remember(&self, dev: VirtioDevice) {
        for slot in &self.slots {
            if let Some(known) = slot.as_ref() {
                // Renegotiating (a driver rebound): already known.
                if known.is(&dev) {
                    return;
                }
                continue;
            }
            // Only a probe racing on another CPU can fill the slot between
            // the look and `populate`, which then drops `dev`.
            if !slot.populate(dev) {
                pr_warn!("a virtio device will not be stopped if an unshare fails: lost a race for its slot\n");
            }
            return;
        }
        pr_warn!(
            "{:?}: too many virtio devices: it will not be stopped if an unshare fails\n",
            dev.name()
        );
    }

    /// Stops every remembered device, once. Process context only (see
    /// `VirtioDevice::break_device`).
    pub(crate) fn stop_all(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        for dev in self.slots.iter().filter_map(SetOnce::as_ref) {
            pr_err!(
                "{:?}: marked broken: the hypervisor failed an unshare, so the host may still reach released memory; its I/O now fails\n",
                dev.name()
            );
            dev.break_device();
        }
    }
}

/// Reports a failed operation, at most a few times per boot: failures
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

/// Reports a failed mapping with the device it was for: the first ten,
/// then one in 1024 with the running total, since a full pool fails
/// every retry of a device until the pool has grown.
fn report_map(dev: &Requester<'_>, size: u64, e: DmaError) {
    static FAILED: AtomicU32 = AtomicU32::new(0);
    let n = FAILED.fetch_add(1, Ordering::Relaxed) + 1;
    if n > 10 && n % 1024 != 0 {
        return;
    }
    match dev.name {
        Some(name) => pr_err!(
            "{}: mapping {} bytes failed: {:?} ({} failures so far; see /sys/kernel/debug/pviommu/)\n",
            name.to_str().unwrap_or("?"),
            size,
            e,
            n
        ),
        None => pr_err!(
            "mapping {} bytes failed: {:?} ({} failures so far; see /sys/kernel/debug/pviommu/)\n",
            size,
            e,
            n
        ),
    }
}

fn dir(d: Direction) -> Dir {
    match d {
        Direction::ToDevice => Dir::ToDevice,
        Direction::FromDevice => Dir::FromDevice,
        Direction::Bidirectional => Dir::Bidirectional,
    }
}

impl Pviommu {
    /// Runs `f` with interrupts off, then contains a broken engine: it
    /// can no longer revoke what the guest released.
    fn run<R>(&self, f: impl FnOnce(&Self) -> R) -> R {
        let irq = local_interrupt_disable();
        let r = f(self);
        drop(irq);
        if self.engine.is_broken() {
            self.contain();
        }
        if self.engine.take_grow_request() {
            crate::ffi::platform::schedule_grow();
        }
        r
    }

    /// The hypervisor failed a revocation (after the transient answers
    /// were retried): memory the guest released, which its owner gets
    /// back now, may still be reachable by the host. Unless the
    /// administrator said the host is trusted not to use that, the guest
    /// stops here, before anyone can reuse the memory.
    fn contain(&self) {
        match self.on_revoke_failure {
            OnRevokeFailure::Panic => crate::ffi::platform::panic(
                c"the hypervisor failed to revoke the host's access to released memory (pviommu.on_revoke_failure=panic)",
            ),
            // Stopping takes a lock of the virtio core that an interrupt
            // must not take: a work item does it, and meanwhile the broken
            // engine refuses every new mapping.
            OnRevokeFailure::Stop => crate::ffi::platform::schedule_stop(),
        }
    }
}

impl MapOps for Pviommu {
    fn get() -> Option<&'static Self> {
        crate::init::driver()
    }

    fn map(
        &self,
        phys: u64,
        size: u64,
        d: Direction,
        cpu_sync: bool,
        dev: &Requester<'_>,
        words: Option<&mut [u64; 2]>,
    ) -> Option<u64> {
        self.run(|p| {
            let dma = match words {
                None => p.engine.map_within(phys, size, dir(d), cpu_sync, dev.limit),
                Some(words) => {
                    let mut batch = MapBatch::from_words(*words);
                    let dma = p
                        .engine
                        .map_batched(phys, size, dir(d), dev.limit, &mut batch);
                    *words = batch.to_words();
                    dma
                }
            };
            dma.inspect_err(|e| report_map(dev, size, *e)).ok()
        })
    }

    fn map_flush(&self, words: &mut [u64; 2]) -> Result {
        self.run(|p| {
            let mut batch = MapBatch::from_words(*words);
            let r = p.engine.map_flush(&mut batch);
            *words = batch.to_words();
            r.map_err(|e| {
                report("map", e);
                EIO
            })
        })
    }

    fn unmap(&self, dma: u64, size: u64, d: Direction, cpu_sync: bool) {
        self.run(|p| p.engine.unmap_deferred(dma, size, dir(d), cpu_sync))
    }

    fn flush(&self) {
        self.run(|p| {
            if let Err(e) = p.engine.flush() {
                report("unmap", e);
            }
        })
    }

    fn sync_for_cpu(&self, dma: u64, size: u64, d: Direction) {
        self.run(|p| p.engine.sync_for_cpu(dma, size, dir(d)))
    }

    fn sync_for_device(&self, dma: u64, size: u64, d: Direction) {
        self.run(|p| p.engine.sync_for_device(dma, size, dir(d)))
    }

    fn need_sync(&self, dma: u64) -> bool {
        self.engine.pool().contains(dma, 1)
    }

    fn max_mapping_size(&self) -> u64 {
        self.engine.max_mapping_size()
    }

    fn coherent_source(&self, bytes: u64, dev: &Requester<'_>) -> CoherentSource {
        if self.engine.config().mode != Mode::Bounce {
            return CoherentSource::Pages;
        }
        // Bounce mode: coherent memory comes from the shared pool, like a
        // restricted-dma-pool.
        match self.run(|p| p.engine.coherent_from_pool(bytes, dev.coherent_limit)) {
            Ok(phys) => CoherentSource::Own(phys),
            Err(e) => {
                report_map(dev, bytes, e);
                CoherentSource::Fail
            }
        }
    }

    fn share_coherent(&self, phys: u64, bytes: u64) -> Result<(), Keep> {
        self.run(|p| {
            p.engine.map_coherent(phys, bytes).map_err(|e| {
                report("alloc", e);
                // A failed undo leaves pages the host may reach.
                if p.engine.is_broken() {
                    Keep::Leak
                } else {
                    Keep::Free
                }
            })
        })
    }

    fn unshare_coherent(&self, phys: u64, bytes: u64) -> Release {
        self.run(|p| {
            if p.engine.coherent_to_pool(phys, bytes) {
                return Release::Done;
            }
            match p.engine.unmap_coherent(phys, bytes) {
                Ok(()) => Release::FreePages,
                Err(e) => {
                    pr_err!(
                        "coherent memory at {:#x} ({} bytes) could not be unshared ({:?}): leaked\n",
                        phys,
                        bytes,
                        e
                    );
                    Release::Leak
                }
            }
        })
    }
}

impl MemAccess for Pviommu {
    fn decide(dev: VirtioDevice) -> Access {
        if !dev.has_parent() {
            pr_err!(
                "{:?}: virtio device without a transport device: refused\n",
                dev.name()
            );
            return Access::Refuse;
        }
        let access_platform = dev.has_access_platform();
        let access = match Self::get() {
            Some(p) if !p.engine.is_broken() => {
                if access_platform {
                    pr_info!(
                        "{:?}: DMA through the pviommu ({} mode)\n",
                        dev.name(),
                        p.engine.config().mode.name()
                    );
                }
                Access::MapOps
            }
            _ if required() => {
                pr_err!(
                    "{:?}: refused: no working pviommu and pviommu.required=1; its DMA would reach private memory\n",
                    dev.name()
                );
                return Access::Refuse;
            }
            // Not required: leave the device to the kernel's DMA path.
            _ => return Access::Default,
        };
        if !access_platform {
            // The core refuses the device once we return; say why.
            pr_err!(
                "{:?}: refused: the device does not offer VIRTIO_F_ACCESS_PLATFORM, so its DMA would bypass the pviommu\n",
                dev.name()
            );
            return access;
        }
        if let Some(p) = Self::get() {
            p.devices.remember(dev);
        }
        access
    }
}
