#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The map/unmap microbenchmark runs the real mapping operations against
# the hypervisor: in share mode each iteration is one map with no exit and
# one unmap with exactly one SYNC (lazy share mode, pviommu.strict=0,
# fewer: one per lazy_max_pages); bounce makes no hypercall; sync one
# SHARE and one UNSHARE per iteration.
. "${LIB:-/etc/refhyp/lib.sh}"
d=/sys/kernel/debug/pviommu
[ -f $d/map_bench ] || { echo "no pviommu map_bench: driver not active"; exit 77; }
mode=share
for arg in $(cat /proc/cmdline); do
	case $arg in
	pviommu.mode=*) mode=${arg#pviommu.mode=} ;;
	pviommu.strict=0 | pviommu.strict=n | pviommu.strict=N) lazy=1 ;;
	esac
done
[ "$mode" = share ] && [ -n "$lazy" ] && mode=lazy
n=200
s0=$(cat $d/hcall_sync) sh0=$(cat $d/hcall_share) un0=$(cat $d/hcall_unshare)
echo "$n 1" >$d/map_bench || fail "map_bench refused '$n 1'"
out=$(cat $d/map_bench)
echo "$out"
s=$(($(cat $d/hcall_sync) - s0)) sh=$(($(cat $d/hcall_share) - sh0))
un=$(($(cat $d/hcall_unshare) - un0))
echo "$mode: $s SYNC, $sh SHARE, $un UNSHARE for $n iterations"
echo "$out" | grep -q "iterations:$n granule:1 failures:0 average map latency(us):[0-9]*\.[0-9] average unmap latency(us):[0-9]*\.[0-9]" ||
	fail "unexpected map_bench report"
# A page (bidirectional: the from-device threshold) below the bounce
# threshold bounces in every mode.
from=$(sed -n 's/^from_device //p' $d/bounce_threshold)
if [ "${from:-4096}" -gt 4096 ]; then
	echo "one page is below the bounce threshold ($from bytes): bounced"
	mode=bounce
fi
case $mode in
share) [ "$s" -ge "$n" ] && [ "$sh" -eq 0 ] || fail "share: expected one SYNC per iteration and no SHARE" ;;
lazy) [ "$s" -lt "$n" ] && [ "$sh" -eq 0 ] || fail "lazy: expected SYNCs batched over iterations and no SHARE" ;;
bounce) [ "$s" -eq 0 ] && [ "$sh" -eq 0 ] || fail "bounce: expected no hypercall" ;;
sync) [ "$sh" -ge "$n" ] && [ "$un" -ge "$n" ] || fail "sync: expected a SHARE and an UNSHARE per iteration" ;;
esac
# Bad input gets an error and changes nothing.
if echo "0 3" >$d/map_bench 2>/dev/null; then fail "map_bench accepted '0 3'"; fi
[ "$(cat $d/map_bench)" = "$out" ] || fail "a refused run changed the report"
