#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Every device class served by the reference hypervisor's enforcing
# backends (DEVICES, comma-separated virtio ids: net 1, console 3,
# entropy 4, vsock 19) negotiated VIRTIO_F_ACCESS_PLATFORM and maps
# through the pviommu.
. "${LIB:-/etc/refhyp/lib.sh}"
for want in $(echo "${DEVICES:-1,4,19}" | tr , ' '); do
	found=
	for d in /sys/bus/virtio/devices/*; do
		[ "$(cat "$d/device")" = "$(printf '0x%04x' "$want")" ] || continue
		found=$(basename "$d")
		# Bit n is character n + 1 of the features string.
		[ "$(cut -c34 "$d/features")" = 1 ] || fail "$found (class $want): no ACCESS_PLATFORM"
		dmesg | grep -q "\"$found\": DMA through the pviommu" ||
			fail "$found (class $want): not mapped through the pviommu"
		echo "$found: class $want, ACCESS_PLATFORM, DMA through the pviommu"
	done
	[ -n "$found" ] || fail "no virtio device of class $want"
done
