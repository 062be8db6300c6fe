#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The bounce pool after every class's I/O: its counters, and, when the
# scenario starts it small (POOL_GROWS=1), proof that it grew instead of
# starving one device with another's long-lived buffers.
. "${LIB:-/etc/refhyp/lib.sh}"
d=/sys/kernel/debug/pviommu
[ -d $d ] || fail "no pviommu debugfs: driver not active"
c() { cat $d/"$1"; }
for f in pool_chunks pool_high_water pool_pages_used pool_exhausted pool_grow_pages \
	pool_grow_failed hcall_pool_share map_errors unshare_errors; do
	echo "$f=$(c $f)"
done
dmesg | grep "bounce pool:" | tail -3
[ "$(c unshare_errors)" -eq 0 ] || fail "unshare errors"
[ "$(c pool_grow_failed)" -eq 0 ] || fail "the pool failed to grow"
if [ "${POOL_GROWS:-0}" = 1 ]; then
	[ "$(c pool_chunks)" -gt 1 ] || fail "a small pool under every class did not grow"
	[ "$(c hcall_pool_share)" -ge 1 ] || fail "growth made no SHARE"
	echo "the pool grew to $(c pool_chunks) chunks; every device made progress"
fi
