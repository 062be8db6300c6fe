#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Real I/O on each class, every byte checked: entropy reads, a console
# line the host checks, a SCSI disk written and read back with O_DIRECT,
# a 9p file read and copied back (the host compares the copy), and the
# network device brought up (its receive buffers mapped).
. "${LIB:-/etc/refhyp/lib.sh}"
d=/sys/kernel/debug/pviommu
maps0=$(cat $d/maps)
n=$(dd if=/dev/hwrng bs=512 count=8 2>/dev/null | wc -c)
[ "$n" -eq 4096 ] || fail "rng: read $n bytes of 4096"
echo "rng: 4096 bytes"
[ -c /dev/hvc0 ] || fail "no /dev/hvc0"
echo "pviommu-virtio-console-ok" >/dev/hvc0 || fail "console write"
disk=/dev/sda
[ -b $disk ] || fail "no SCSI disk $disk"
pattern /tmp/p 1
dd if=/tmp/p of=$disk bs=65536 oflag=direct conv=fsync 2>/dev/null || fail "scsi write"
dd if=$disk of=/tmp/b bs=65536 count=16 iflag=direct 2>/dev/null || fail "scsi read"
cmp -s /tmp/p /tmp/b || fail "scsi: read-back differs"
echo "scsi: 1 MiB written and read back"
mkdir -p /mnt/9p
mount -t 9p -o trans=virtio,version=9p2000.L share /mnt/9p || fail "9p mount"
cp /mnt/9p/pattern /mnt/9p/copy || fail "9p copy"
sync
[ "$(wc -c </mnt/9p/copy)" -eq 1048576 ] || fail "9p: short copy"
umount /mnt/9p
echo "9p: 1 MiB read and written back"
ip link set eth0 up 2>/dev/null || ifconfig eth0 up || fail "net: eth0 up"
echo "net: eth0 up"
echo "maps through the pviommu: $(($(cat $d/maps) - maps0))"
[ "$(cat $d/map_errors)" -eq 0 ] || fail "map errors"
[ "$(cat $d/unshare_errors)" -eq 0 ] || fail "unshare errors"
