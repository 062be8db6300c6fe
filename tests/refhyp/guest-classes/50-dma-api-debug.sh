#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# CONFIG_DMA_API_DEBUG after every class's I/O: no DMA-API error at all.
# The devices that map through the pviommu use virtio's map ops, not the
# DMA API, so dma-debug sees only the guest's other DMA (none of the
# pviommu's mappings); the pviommu's own accounting (map_errors,
# unshare_errors, pages_leaked, the tracker's underflow checks) is what
# checks those. A report here is therefore never the pviommu's mapping,
# and any report fails the test point, with the kernel's message.
. "${LIB:-/etc/refhyp/lib.sh}"
d=/sys/kernel/debug/dma-api
[ -d $d ] || fail "no $d: the kernel lacks CONFIG_DMA_API_DEBUG"
errors=$(cat $d/error_count)
disabled=$(cat $d/disabled)
echo "dma-api: error_count=$errors disabled=$disabled num_free_entries=$(cat $d/num_free_entries) min_free_entries=$(cat $d/min_free_entries)"
dmesg | grep 'DMA-API' | head -5
[ "$disabled" = N ] || fail "dma-debug disabled itself"
[ "$errors" -eq 0 ] || fail "dma-debug reported $errors errors (above)"
