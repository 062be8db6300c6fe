#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Write a pattern across the disk with O_DIRECT at 4 KiB, 64 KiB and 1 MiB,
# read it back and verify; each size gets its own region and pattern.
# The regions cover the disk from its start.
. "${LIB:-/etc/refhyp/lib.sh}"
need_disk
mib=$(($(disk_bytes) / 1048576))
[ "$mib" -ge 3 ] || fail "disk of $mib MiB is too small"
# PART_MIB per block size (default: a third of the disk, at most 4 MiB,
# which keeps the 4 KiB pass to about 2000 requests under TCG).
part=${PART_MIB:-$((mib / 3))}
[ "$part" -le 4 ] || [ -n "$PART_MIB" ] || part=4
off=0
for bs in 4K 64K 1M; do
	pattern /tmp/pat "$part"
	write_verify /tmp/pat $bs $off
	echo "$bs: ${part} MiB at ${off} MiB verified"
	off=$((off + part))
done
rm -f /tmp/pat
