#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# After the workloads: the hypervisor's own counters (debugfs hyp_stats,
# the STATS call) agree with the driver's: it refused nothing but the
# conformance probe's calls, found no bad record and no absent page, read
# no more records than the driver published, and invalidated whenever
# pages were unshared. (Pages mapped and unmapped between two drains are
# never shared at all, so the page counts of the two sides differ.) The
# same comparison runs against pKVM's EL2 (tests/pkvm).
. "${LIB:-/etc/refhyp/lib.sh}"
d=/sys/kernel/debug/pviommu
[ -f $d/hyp_stats ] || { echo "no pviommu hyp_stats: driver not active"; exit 77; }
out=$(cat $d/hyp_stats) || fail "reading hyp_stats failed"
echo "$out"
h() { echo "$out" | sed -n "s/^$1 \([0-9]*\)$/\1/p"; }
for name in drains records bad_records pages_shared pages_unshared invalidations refused absent busy; do
	[ -n "$(h $name)" ] || fail "hyp_stats has no $name"
done
# The conformance probe (05-hyp-probe.sh) asks for refused access on purpose.
probe=$(cat /tmp/hyp-probe-refused 2>/dev/null || echo 0)
[ "$(h refused)" -eq "$probe" ] ||
	fail "the hypervisor refused $(h refused) requests, $probe of them the probe's"
for name in absent bad_records; do
	[ "$(h $name)" -eq 0 ] || fail "the hypervisor counted $name=$(h $name)"
done
[ "$(h records)" -le "$(cat $d/ring_records)" ] ||
	fail "the hypervisor read $(h records) records, the driver published $(cat $d/ring_records)"
if [ "$(h pages_unshared)" -gt 0 ]; then
	[ "$(h invalidations)" -gt 0 ] || fail "pages were unshared without an invalidation"
fi
echo "hyp_stats agrees with the driver's counters"
