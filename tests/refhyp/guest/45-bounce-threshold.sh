#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The bounce thresholds in force, and, when the driver measured them at
# boot (pviommu.bounce_threshold=0), that the measurement is sane: both
# thresholds whole pages between one page and the largest mapping, the
# from-device one (two copies to bounce) no larger than the to-device one.
. "${LIB:-/etc/refhyp/lib.sh}"
f=/sys/kernel/debug/pviommu/bounce_threshold
[ -r $f ] || { echo "no $f: driver not active"; exit 77; }
cat $f
v() { sed -n "s/^$1 //p" $f; }
# As the driver chooses: a non-zero value is fixed; otherwise nothing is
# measured in bounce or lazy mode; otherwise measured.
fixed=0 mode=share strict=1
for arg in $(cat /proc/cmdline); do
	case $arg in
	pviommu.bounce_threshold=*) fixed=${arg#*=} ;;
	pviommu.mode=*) mode=${arg#*=} ;;
	pviommu.strict=*) strict=${arg#*=} ;;
	esac
done
if [ "$fixed" != 0 ]; then
	want=fixed
elif [ "$mode" = bounce ] || [ "$strict" = 0 ] || [ "$strict" = N ]; then
	want=default
else
	want=measured
fi
[ "$(v source)" = "$want" ] || fail "source $(v source), expected $want"
to=$(v to_device) from=$(v from_device)
for t in "$to" "$from"; do
	[ $((t % 4096)) -eq 0 ] && [ "$t" -ge 4096 ] && [ "$t" -le 524288 ] ||
		fail "threshold $t is not whole pages between 4 KiB and 512 KiB"
done
if [ "$want" = measured ]; then
	[ "$from" -le "$to" ] || fail "from_device $from above to_device $to"
	[ "$(v sync_ns)" -gt 0 ] && [ "$(v copy_ns)" -gt 0 ] || fail "a measured figure is zero"
fi
echo "bounce threshold ($want): $to bytes to the device, $from from it"
