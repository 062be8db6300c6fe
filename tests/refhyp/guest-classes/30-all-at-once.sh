#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# All devices busy at once, on both vCPUs: the enforcing virtio-blk disk,
# the SCSI disk, 9p, entropy and the console, every byte checked.
. "${LIB:-/etc/refhyp/lib.sh}"
need_disk
mkdir -p /mnt/9p
mount -t 9p -o trans=virtio,version=9p2000.L share /mnt/9p || fail "9p mount"
pattern /tmp/a 1
pattern /tmp/s 1
(dd if=/tmp/a of="$DISK" bs=65536 oflag=direct conv=notrunc,fsync 2>/dev/null &&
	dd if="$DISK" of=/tmp/a2 bs=65536 count=16 iflag=direct 2>/dev/null &&
	cmp -s /tmp/a /tmp/a2 && echo blk-ok >/tmp/r.blk) &
(dd if=/tmp/s of=/dev/sda bs=4096 seek=512 oflag=direct conv=fsync 2>/dev/null &&
	dd if=/dev/sda of=/tmp/s2 bs=4096 skip=512 count=256 iflag=direct 2>/dev/null &&
	cmp -s /tmp/s /tmp/s2 && echo scsi-ok >/tmp/r.scsi) &
(cmp -s /mnt/9p/pattern /mnt/9p/copy && echo 9p-ok >/tmp/r.9p) &
(dd if=/dev/hwrng of=/tmp/rng bs=512 count=16 2>/dev/null &&
	[ "$(wc -c </tmp/rng)" -eq 8192 ] && echo rng-ok >/tmp/r.rng) &
(i=0; while [ $i -lt 50 ]; do echo "line $i" >/dev/hvc0 || exit 1; i=$((i + 1)); done;
	echo hvc-ok >/tmp/r.hvc) &
wait
umount /mnt/9p
for r in blk scsi 9p rng hvc; do
	[ -f /tmp/r.$r ] || fail "$r failed while all devices were busy"
	echo "$(cat /tmp/r.$r)"
done
