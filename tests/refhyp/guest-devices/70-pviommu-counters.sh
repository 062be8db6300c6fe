#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# After the device workloads: the driver's counters (the bounce pool's
# high-water mark among them), and no mapping or unmapping error.
. "${LIB:-/etc/refhyp/lib.sh}"
d=/sys/kernel/debug/pviommu
[ -d $d ] || { echo "no pviommu debugfs: driver not active"; exit 77; }
for f in maps unmaps bounced bounced_bytes hcall_sync hcall_share hcall_unshare \
	pool_high_water pool_chunks pool_exhausted map_errors unshare_errors; do
	echo "$f=$(cat $d/$f)"
done
[ "$(cat $d/map_errors)" -eq 0 ] || fail "map errors"
[ "$(cat $d/unshare_errors)" -eq 0 ] || fail "unshare errors"
