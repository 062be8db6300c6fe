#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The driver's conformance probe of the hypervisor (debugfs hyp_probe):
# calls a conforming hypervisor refuses, each with the spec's status,
# against the live registration; then a SYNC that must still succeed.
# The same probe runs against pKVM's EL2 in the arm64 test.
. "${LIB:-/etc/refhyp/lib.sh}"
f=/sys/kernel/debug/pviommu/hyp_probe
[ -f $f ] || { echo "no pviommu hyp_probe: driver not active"; exit 77; }
refused() { sed -n 's/^refused \([0-9]*\)$/\1/p' /sys/kernel/debug/pviommu/hyp_stats; }
before=$(refused)
out=$(cat $f) || fail "reading hyp_probe failed"
# The probe's refusals are not the workloads' (95-hyp-stats.sh subtracts them).
echo $(($(refused) - ${before:-0})) >/tmp/hyp-probe-refused
echo "$out"
echo "$out" | grep -q '^# hyp_probe: 10 passed, 0 failed' || fail "the hypervisor answered a probe wrongly"
# The probe's SYNCs are not disk buffers (the harness subtracts them).
syncs=$(echo "$out" | sed -n 's/^# hyp_probe: .*, \([0-9]*\) SYNC$/\1/p')
echo "$syncs SYNC, 0 SHARE, 0 UNSHARE for the hypervisor probe"
