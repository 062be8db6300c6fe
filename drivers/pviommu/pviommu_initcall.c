// SPDX-License-Identifier: GPL-2.0
/*
 * C glue of the pviommu driver: the early initcall and the boot
 * parameters. Everything else is Rust.
 *
 * Rust's module! macro registers built-in code at device_initcall, the
 * level at which virtio-pci and the virtio device drivers register, so
 * whether the pviommu came first would depend on link order. The virtio
 * mem_acc callback must be in place before the first virtio device
 * negotiates features, so initialise at fs_initcall_sync: after PCI
 * enumeration and resource assignment (subsys_initcall, fs_initcall) and
 * before every device_initcall.
 *
 * Rust's module! parameters belong to a module! registration, which
 * would run at device_initcall, so the parameters are declared here (as
 * pviommu.<name>) and read from Rust.
 * Documentation/admin-guide/pviommu.rst documents each of them.
 */

#include <linux/init.h>
#include <linux/memblock.h>
#include <linux/moduleparam.h>
#include <linux/workqueue.h>

#include "pviommu_glue.h"

/* Built-in code gets KBUILD_MODNAME ("pviommu_initcall") as the prefix. */
#undef MODULE_PARAM_PREFIX
#define MODULE_PARAM_PREFIX "pviommu."

/* share | bounce | sync | off */
char *pviommu_param_mode = "share";
module_param_named(mode, pviommu_param_mode, charp, 0444);

/* 1: one invalidation hypercall per unmap call; 0: batch (unsafe). */
bool pviommu_param_strict = true;
module_param_named(strict, pviommu_param_strict, bool, 0444);

/*
 * 1: the parts of a virtio buffer that continue each other's frames
 * share one ring record, published once the buffer is mapped; 0: one
 * record per part.
 */
bool pviommu_param_batch_maps = true;
module_param_named(batch_maps, pviommu_param_batch_maps, bool, 0444);

/* Lazy mode: sync after this many pending unmapped pages at most. */
unsigned int pviommu_param_lazy_max_pages = 256;
module_param_named(lazy_max_pages, pviommu_param_lazy_max_pages, uint, 0444);

/*
 * Buffers smaller than this (bytes) bounce even when they own their pages;
 * 0: measured at boot, per direction (threshold.rs).
 */
unsigned int pviommu_param_bounce_threshold;
module_param_named(bounce_threshold, pviommu_param_bounce_threshold, uint, 0444);

/* Size of the bounce pool shared at initialisation, in KiB. */
unsigned int pviommu_param_pool_kib = 4096;
module_param_named(pool_kib, pviommu_param_pool_kib, uint, 0444);

/*
 * Size the bounce pool may grow to, in KiB, one chunk (1 MiB, or the
 * whole initial pool if smaller) at a time, when it runs low.
 */
unsigned int pviommu_param_pool_max_kib = 65536;
module_param_named(pool_max_kib, pviommu_param_pool_max_kib, uint, 0444);

/* log2 of the number of ring records. */
unsigned int pviommu_param_ring_order = 12;
module_param_named(ring_order, pviommu_param_ring_order, uint, 0444);

/*
 * When the hypervisor fails to revoke the host's access to memory the
 * guest released: panic (the guest stops before anyone reuses it) or
 * stop (the virtio devices are stopped; the memory may still be reused).
 */
char *pviommu_param_on_revoke_failure = "panic";
module_param_named(on_revoke_failure, pviommu_param_on_revoke_failure, charp, 0444);

/* How long to wait for one hypercall, in milliseconds. */
unsigned int pviommu_param_timeout_ms = 5000;
module_param_named(timeout_ms, pviommu_param_timeout_ms, uint, 0444);

/*
 * 1: without a working pviommu, refuse virtio devices rather than let
 * them DMA into private memory. 0: leave them on dma-direct.
 */
bool pviommu_param_required = IS_ENABLED(CONFIG_PVIOMMU_REQUIRED);
module_param_named(required, pviommu_param_required, bool, 0444);

/* The highest page frame number of RAM: the table covers 0..max_pfn. */
unsigned long pviommu_max_pfn(void)
{
	return max_pfn;
}

/*
 * Stopping the virtio devices after a failed revocation takes each
 * device's vqs_list_lock, a plain spinlock the virtio core takes in
 * process context: from an interrupt that preempted its holder on this
 * CPU it would deadlock. Unmaps run in any context, so the stop is left
 * to a work item; until it runs, the broken engine already refuses every
 * new mapping.
 */
static void pviommu_stop_work_fn(struct work_struct *work)
{
	pviommu_rust_stop_devices();
}

static DECLARE_WORK(pviommu_stop_work, pviommu_stop_work_fn);

/* Safe in any context; the work item runs once per scheduling. */
void pviommu_schedule_stop(void)
{
	schedule_work(&pviommu_stop_work);
}

/*
 * Growing the bounce pool allocates a chunk with GFP_KERNEL and shares
 * it with a hypercall; mappings run in any context, so they only ask,
 * and a mapping that found the pool full fails (its caller retries).
 */
static void pviommu_grow_work_fn(struct work_struct *work)
{
	pviommu_rust_grow_pool();
}

static DECLARE_WORK(pviommu_grow_work, pviommu_grow_work_fn);

/* Safe in any context; a pending work item is not queued twice. */
void pviommu_schedule_grow(void)
{
	schedule_work(&pviommu_grow_work);
}

static int __init pviommu_initcall(void)
{
	return pviommu_rust_init();
}
fs_initcall_sync(pviommu_initcall);
