#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The disk negotiated VIRTIO_F_ACCESS_PLATFORM, so its DMA goes through
# the DMA API (and so through the pviommu). Skipped for the plain-virtio
# baseline, which runs without iommu_platform on purpose.
. "${LIB:-/etc/refhyp/lib.sh}"
need_disk
for d in /sys/bus/virtio/devices/*; do
	[ "$(cat "$d/device" 2>/dev/null)" = "0x0002" ] || continue
	features=$(cat "$d/features")
	# Bit n is character n + 1 of the features string.
	bit=$(echo "$features" | cut -c34)
	echo "$(basename "$d"): features $features"
	[ "$bit" = 1 ] && exit 0
	echo "ACCESS_PLATFORM not negotiated"
	exit 77
done
fail "no virtio-blk device in /sys/bus/virtio"
