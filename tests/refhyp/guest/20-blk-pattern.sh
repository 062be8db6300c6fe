#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Write a pattern across the disk with O_DIRECT at 4 KiB, 64 KiB and 1 MiB,
# read it back and verify; each size gets its own region and pattern.
. "${LIB:-/etc/refhyp/lib.sh}"
need_disk
mib=$(($(disk_bytes) / 1048576))
[ "$mib" -ge 12 ] || fail "disk of $mib MiB is too small"
part=$((mib / 3))
off=0
for bs in 4K 64K 1M; do
	pattern /tmp/pat "$part"
	write_verify /tmp/pat $bs $off
	echo "$bs: ${part} MiB at ${off} MiB verified"
	off=$((off + part))
done
rm -f /tmp/pat
