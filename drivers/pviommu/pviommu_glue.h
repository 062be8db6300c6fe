/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C glue's functions that the driver's Rust code calls (declared
 * again in ffi/params.rs, ffi/smccc.rs and ffi/virtio_map.rs).
 */
#ifndef PVIOMMU_GLUE_H
#define PVIOMMU_GLUE_H

#include <linux/types.h>

struct device;

/* pviommu_initcall.c */
unsigned long pviommu_max_pfn(void);
int pviommu_rust_init(void);
void pviommu_schedule_stop(void);
void pviommu_rust_stop_devices(void);
void pviommu_schedule_grow(void);
void pviommu_rust_grow_pool(void);

/* pviommu_dma.c */
void *pviommu_coherent_pages(struct device *dev, size_t size, gfp_t gfp,
			     phys_addr_t *phys);

/* pviommu_smccc.c (arm64) */
bool pviommu_kvm_guest(void);
bool pviommu_pkvm_guest(void);
long pviommu_pkvm_granule(void);
void pviommu_smccc_call(u32 function_id, const u64 *args, u64 *ret);

#endif /* PVIOMMU_GLUE_H */
