#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# ext4 on the enforcing disk, with 1 KiB and 4 KiB blocks (Debian's own
# mke2fs): files from 1 KiB to 2 MiB written through the page cache, one
# fsync'ed, a directory tree, then the file system unmounted, the disk's
# buffers dropped (BLKFLSBUF), mounted again read-only and every byte
# compared with the pattern. Metadata and data alike go through the
# device, so through the host view. The disk is formatted from scratch:
# this runs after the raw-device workloads.
. "${LIB:-/etc/refhyp/lib.sh}"
need_disk
MKE2FS=/usr/sbin/mke2fs
[ -x $MKE2FS ] || fail "$MKE2FS missing from the initramfs"
pattern /tmp/p 2
mkdir -p /mnt/fs
sum() { sha256sum "$1" | cut -d' ' -f1; }
head_sum() { dd if=/tmp/p bs=1024 count="$1" 2>/dev/null | sha256sum | cut -d' ' -f1; }
for bs in 1024 4096; do
	$MKE2FS -q -F -t ext4 -b $bs "$DISK" >/tmp/mkfs.log 2>&1 || { cat /tmp/mkfs.log; fail "mke2fs -t ext4 -b $bs"; }
	mount -t ext4 "$DISK" /mnt/fs || fail "mount (bs=$bs)"
	for kb in 1 3 4 60 256 2048; do
		dd if=/tmp/p of=/mnt/fs/f$kb bs=1024 count=$kb 2>/dev/null || fail "write f$kb (bs=$bs)"
	done
	dd if=/tmp/p of=/mnt/fs/synced bs=65536 count=8 conv=fsync 2>/dev/null || fail "fsync write (bs=$bs)"
	mkdir -p /mnt/fs/a/b/c && cp /mnt/fs/f60 /mnt/fs/a/b/c/copy || fail "tree (bs=$bs)"
	umount /mnt/fs || fail "umount (bs=$bs)"
	blockdev --flushbufs "$DISK" || fail "BLKFLSBUF"
	mount -t ext4 -o ro "$DISK" /mnt/fs || fail "remount (bs=$bs)"
	for kb in 1 3 4 60 256 2048; do
		[ "$(sum /mnt/fs/f$kb)" = "$(head_sum $kb)" ] || fail "f$kb differs after remount (bs=$bs)"
	done
	[ "$(sum /mnt/fs/synced)" = "$(head_sum 512)" ] || fail "the fsync'ed file differs (bs=$bs)"
	cmp -s /mnt/fs/f60 /mnt/fs/a/b/c/copy || fail "the copy differs (bs=$bs)"
	umount /mnt/fs
	echo "ext4 with $bs-byte blocks: 8 files, every byte verified after remount"
done
