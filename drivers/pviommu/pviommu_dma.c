// SPDX-License-Identifier: GPL-2.0
/*
 * pviommu: pages for coherent allocations that the device's coherent DMA
 * mask reaches.
 *
 * The pviommu does not translate (a DMA address is the guest-physical
 * address), so a device whose coherent mask is below the top of RAM must
 * be given pages below its mask. This picks the zone the way dma-direct
 * does for a small mask (dma_direct_optimal_gfp_mask(), which is static)
 * and checks the result, since a zone is only a best effort.
 */

#include <linux/dma-direct.h>
#include <linux/dma-mapping.h>
#include <linux/gfp.h>
#include <linux/mm.h>

#include "pviommu_glue.h"

void *pviommu_coherent_pages(struct device *dev, size_t size, gfp_t gfp,
			     phys_addr_t *phys)
{
	u64 mask = dev && dev->coherent_dma_mask ? dev->coherent_dma_mask : U64_MAX;
	void *virt;

	gfp &= ~(__GFP_DMA | __GFP_DMA32 | __GFP_HIGHMEM);
	if (IS_ENABLED(CONFIG_ZONE_DMA) && mask <= zone_dma_limit)
		gfp |= GFP_DMA;
	else if (IS_ENABLED(CONFIG_ZONE_DMA32) && mask <= DMA_BIT_MASK(32))
		gfp |= GFP_DMA32;

	virt = alloc_pages_exact(size, gfp | __GFP_ZERO);
	if (!virt)
		return NULL;
	*phys = virt_to_phys(virt);
	if (*phys + size - 1 > mask) {
		free_pages_exact(virt, size);
		return NULL;
	}
	return virt;
}
