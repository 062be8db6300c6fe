// SPDX-License-Identifier: GPL-2.0
/*
 * Early initialisation of the pviommu driver.
 *
 * Rust's module! macro registers built-in code at device_initcall, the
 * level at which virtio-pci and the virtio device drivers register, so
 * whether the pviommu came first would depend on link order. The virtio
 * mem_acc callback must be in place before the first virtio device
 * negotiates features, so initialise at fs_initcall_sync: after PCI
 * enumeration and resource assignment (subsys_initcall, fs_initcall) and
 * before every device_initcall.
 */

#include <linux/init.h>

int pviommu_rust_init(void);

static int __init pviommu_initcall(void)
{
	return pviommu_rust_init();
}
fs_initcall_sync(pviommu_initcall);
