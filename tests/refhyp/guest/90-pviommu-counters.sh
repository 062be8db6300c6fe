#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# After the workloads: the driver's own counters show the acceptance
# figures of its mode. share: no hypercall on map (no SHARE/UNSHARE at
# all) and at most one SYNC per unmap call; bounce: no hypercall after
# initialisation; sync: one SHARE per zero-copy map at least.
d=/sys/kernel/debug/pviommu
[ -d $d ] || { echo "no pviommu debugfs: driver not active"; exit 77; }
for f in $d/*; do
	# Reading hyp_probe makes hypercalls (05-hyp-probe.sh runs it).
	[ "$(basename "$f")" = hyp_probe ] && continue
	echo "$(basename "$f")=$(cat "$f")"
done
c() { cat $d/"$1"; }
mode=share batch_maps=1
for arg in $(cat /proc/cmdline); do
	case $arg in
	pviommu.mode=*) mode=${arg#pviommu.mode=} ;;
	pviommu.batch_maps=*) batch_maps=${arg#pviommu.batch_maps=} ;;
	esac
done
[ "$(c unshare_errors)" -eq 0 ] || { echo "unshare errors"; exit 1; }
[ "$(c map_errors)" -eq 0 ] || { echo "map errors"; exit 1; }
# The reference hypervisor enforces write-only entries (ABI 2.2): the
# driver shares DMA_FROM_DEVICE buffers write-only.
dmesg | grep -q 'DMA_FROM_DEVICE buffers shared write-only' ||
	{ echo "the driver did not take FEATURE_WRITE_ONLY"; exit 1; }
case $mode in
share)
	[ "$(c hcall_share)" -eq 0 ] && [ "$(c hcall_unshare)" -eq 0 ] ||
		{ echo "share mode made SHARE/UNSHARE hypercalls"; exit 1; }
	[ "$(c hcall_sync)" -le "$(c unmaps)" ] ||
		{ echo "more SYNCs than unmap calls"; exit 1; }
	[ "$batch_maps" != 0 ] || [ "$(c records_merged)" -eq 0 ] ||
		{ echo "pviommu.batch_maps=0, yet records were merged"; exit 1; }
	echo "share: 0 hypercalls on map; $(c hcall_sync) SYNCs for $(c unmaps) unmaps"
	echo "share: $(c ring_records) ring records for $(c maps) maps and $(c unmaps) unmaps, $(c records_merged) spared by batching"
	;;
bounce)
	[ "$(c hcall_sync)" -eq 0 ] && [ "$(c hcall_share)" -eq 0 ] ||
		{ echo "bounce mode made hypercalls"; exit 1; }
	[ "$(c bounced)" -ge "$(c maps)" ] || { echo "a buffer was not bounced"; exit 1; }
	echo "bounce: no hypercall, $(c bounced_bytes) bytes copied"
	;;
sync)
	[ "$(c hcall_share)" -ge 1 ] || { echo "sync mode made no SHARE"; exit 1; }
	echo "sync: $(c hcall_share) SHARE, $(c hcall_unshare) UNSHARE"
	;;
esac
