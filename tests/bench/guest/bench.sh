#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The benchmark workload, one TAP test point: O_DIRECT sequential writes
# and reads at each block size (dio), then dma_map_benchmark on the spare
# PCI function. Before and after each workload the pviommu debugfs
# counters are printed ("dbg NAME begin|end k=v ...") and the host is told
# on ttyS2 ("MARK NAME begin|end"), which it acknowledges once it has read
# the hypervisor's counters, so both sides bracket the same I/O.
. /etc/bench/conf
DISK=${DISK:-/dev/vda}
[ -b "$DISK" ] || { echo "FAIL: no $DISK"; exit 1; }

exec 3<>/dev/ttyS2
stty -F /dev/ttyS2 raw -echo || { echo "FAIL: stty ttyS2"; exit 1; }

mark() {
	echo "MARK $1" >&3
	read -r ack <&3
	[ "$ack" = ACK ] || { echo "FAIL: host answered '$ack' to MARK $1"; exit 1; }
}

dbg() {
	line="dbg $1"
	for f in /sys/kernel/debug/pviommu/*; do
		# Reading hyp_probe makes hypercalls: not a counter.
		[ "$(basename "$f")" = hyp_probe ] && continue
		[ -f "$f" ] && line="$line $(basename "$f")=$(cat "$f")"
	done
	echo "$line"
}

echo "info kernel $(uname -r)"
echo "info cmdline $(cat /proc/cmdline)"
echo "info iommu_class $(ls /sys/class/iommu 2>/dev/null | tr '\n' ' ')"
for g in /sys/kernel/iommu_groups/*; do
	[ -d "$g" ] || continue
	echo "info iommu_group $(basename "$g") type=$(cat "$g/type" 2>/dev/null) devices=$(ls "$g/devices" | tr '\n' ' ')"
done
dmesg | grep -i -E 'pviommu|virtio_iommu|virtio-iommu|iommu:|viot' | head -20 | sed 's/^/info dmesg /'

for bs in $SIZES; do
	for op in write read; do
		name=$op-$bs
		mark "$name begin"
		dbg "$name begin"
		/usr/local/bin/dio $op "$DISK" "$bs" "$MAX_IOS" "$SECONDS" "$REGION" ||
			{ echo "FAIL: dio $op $bs"; exit 1; }
		dbg "$name end"
		mark "$name end"
	done
done

# The pviommu maps only virtio devices (virtio_map_ops), so the kernel's
# dma_map_benchmark on a PCI function no longer reaches it: its map_bench
# runs the same loop (one thread, bidirectional, GRANULE pages) through
# the real virtio mapping operations and the hypervisor.
bench=/sys/kernel/debug/pviommu/map_bench
if [ -f $bench ]; then
	echo "info dmb_device pviommu map_bench (virtio_map_ops)"
	for g in $DMB_GRANULES; do
		for t in $DMB_THREADS; do
			name=dmb-g$g-t$t
			if [ "$t" != 1 ]; then
				echo "dmb g=$g t=$t map_bench runs one thread"
				continue
			fi
			mark "$name begin"
			dbg "$name begin"
			echo "$DMB_ITERATIONS $g" >$bench || { echo "FAIL: map_bench $g"; exit 1; }
			echo "dmb g=$g t=$t $(cat $bench)"
			dbg "$name end"
			mark "$name end"
		done
	done
	exit 0
fi

# The spare PCI function: QEMU's pci-testdev (1b36:0005).
dev=
for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/vendor"):$(cat "$d/device")" = "0x1b36:0x0005" ] && dev=$d
done
if [ -z "$dev" ]; then
	echo "dmb none: no pci-testdev"
	exit 0
fi
echo dma_map_benchmark >"$dev/driver_override"
echo "$(basename "$dev")" >/sys/bus/pci/drivers_probe
if [ ! -e /sys/kernel/debug/dma_map_benchmark ]; then
	echo "dmb none: dma_map_benchmark did not bind $(basename "$dev")"
	exit 0
fi
echo "info dmb_device $(basename "$dev") group=$(basename "$(readlink "$dev/iommu_group" 2>/dev/null)")"
for g in $DMB_GRANULES; do
	for t in $DMB_THREADS; do
		name=dmb-g$g-t$t
		mark "$name begin"
		dbg "$name begin"
		/usr/local/bin/dma_map_benchmark -t "$t" -g "$g" -b 64 -s "$DMB_SECONDS" 2>&1 |
			tr '\n' ' ' | sed "s/^/dmb g=$g t=$t /"
		echo
		dbg "$name end"
		mark "$name end"
	done
done
