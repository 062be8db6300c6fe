#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# /init of the protected guest: a block workload on /dev/vda (the VMM's
# virtio-blk disk), with O_DIRECT so that every byte crosses the device.
# Prints one "PKVM-GUEST: PASS|FAIL name detail" line per check and a
# PKVM-GUEST-DONE summary, then powers off when everything passed and
# reboots otherwise (the VMM exits 0 or 1 accordingly).
#
# /etc/pkvm-guest.conf: HEADER_SHA (sha256 of the disk's first
# HEADER_KB KiB, written by the harness), DATA_KB (bytes per block size),
# SIZES (block sizes), CHECK_OFFSET_MB and CHECK_MB (the region the host
# checksums after the run).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

. /etc/pkvm-guest.conf

# Centiseconds of uptime, for step timings.
cs() { t=$(cut -d' ' -f1 /proc/uptime); echo "${t%.*}${t#*.}" | sed 's/^0*//;s/^$/0/'; }
secs() { d=$(($(cs) - $1)); printf '%d.%02d' $((d / 100)) $((d % 100)); }

start=$(cs)
echo "PKVM-GUEST-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
pass=0
fail=0
ok() { echo "PKVM-GUEST: PASS $*"; pass=$((pass + 1)); }
bad() { echo "PKVM-GUEST: FAIL $*"; fail=$((fail + 1)); }
sha() { sha256sum "$@" | cut -d' ' -f1; }

# The pviommu's counters, the guest's and the hypervisor's (hyp_stats),
# as "PKVM-GUEST-STAT <label> <side> <name> <value>" lines.
pviommu_stats() {
	d=/sys/kernel/debug/pviommu
	[ -d $d ] || return 0
	for f in $d/*; do
		case ${f##*/} in hyp_probe | hyp_stats | map_bench) continue ;; esac
		echo "PKVM-GUEST-STAT $1 guest ${f##*/} $(cat "$f")"
	done
	grep -v '^#' $d/hyp_stats | sed "s/^/PKVM-GUEST-STAT $1 hyp /"
	grep '^#' $d/hyp_stats | sed 's/^/PKVM-GUEST-LOG /'
}

finish() {
	pviommu_stats end
	echo "PKVM-GUEST-DONE pass=$pass fail=$fail seconds=$(secs "$start")"
	if [ "$fail" = 0 ] && [ "$pass" -gt 0 ]; then
		poweroff -f
	fi
	reboot -f
}

if [ ! -b /dev/vda ]; then
	bad "disk /dev/vda missing"
	dmesg | grep -i 'virtio\|vda' | sed 's/^/PKVM-GUEST-LOG /'
	finish
fi
pviommu_stats start
sectors=$(cat /sys/block/vda/size)
ok "disk /dev/vda present sectors=$sectors"

dd if=/dev/urandom of=/tmp/pat bs=64k count=$((DATA_KB / 64)) 2>/dev/null
want=$(sha /tmp/pat)

# Fault injection (PKVM_WORKLOAD=fault, the host's EL2 fails one
# revocation): with pviommu.on_revoke_failure=stop the guest must learn
# of it, count the pages it keeps, stop the disk and fail every later
# I/O, and lose nothing it reported written. With the default policy
# (panic) the guest never gets past the loop: the harness checks that.
if [ "${PKVM_WORKLOAD:-}" = fault ]; then
	d=/sys/kernel/debug/pviommu
	# 64 KiB blocks of the check region, each written and read back, until
	# the first error; then 4 KiB writes elsewhere until the disk stops.
	# The harness compares every block reported here with the host's file.
	base=$((CHECK_OFFSET_MB * 16))
	i=0 verified=0
	while [ $i -lt $((CHECK_MB * 16)) ]; do
		dd if=/tmp/pat of=/tmp/blk bs=64k skip=$i count=1 2>/dev/null
		dd if=/tmp/blk of=/dev/vda bs=64k seek=$((base + i)) count=1 oflag=direct conv=notrunc 2>/dev/null || break
		dd if=/dev/vda of=/tmp/back bs=64k skip=$((base + i)) count=1 iflag=direct 2>/dev/null || break
		cmp -s /tmp/blk /tmp/back || { bad "fault: block $i reads back different"; break; }
		echo "PKVM-GUEST-BLOCK $i sha256=$(sha /tmp/blk)"
		verified=$((verified + 1))
		i=$((i + 1))
	done
	j=0
	while [ $i -eq $((CHECK_MB * 16)) ] && [ $j -lt 2000 ] &&
		dd if=/tmp/pat of=/dev/vda bs=4k seek=$((2048 + j % 256)) count=1 oflag=direct conv=notrunc 2>/dev/null; do
		j=$((j + 1))
	done
	echo "PKVM-GUEST-LOG fault: $verified blocks verified, then $j small writes, before the disk stopped"
	errors=$(cat $d/unshare_errors) leaked=$(cat $d/pages_leaked)
	if [ "$errors" -ge 1 ] && [ "$leaked" -ge 1 ]; then
		ok "fault: the failed revocation was reported: unshare_errors=$errors pages_leaked=$leaked"
	else
		bad "fault: the guest never learnt of the failed revocation: unshare_errors=$errors pages_leaked=$leaked"
	fi
	if dmesg | grep -q 'marked broken'; then
		ok "fault: $(dmesg | grep -m1 'marked broken' | sed 's/^\[[^]]*\] //')"
	else
		bad "fault: the disk was not marked broken"
	fi
	if dd if=/dev/vda of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null; then
		bad "fault: I/O still succeeds on a broken disk"
	else
		ok "fault: I/O on the broken disk fails"
	fi
	dmesg | grep -i 'pviommu' | tail -5 | sed 's/^/PKVM-GUEST-LOG /'
	finish
fi

# 1. The harness's header, read by the device from the host file.
t=$(cs)
got=$(dd if=/dev/vda bs=64k count=$((HEADER_KB / 64)) iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$got" = "$HEADER_SHA" ]; then
	ok "read-header ${HEADER_KB}KiB seconds=$(secs "$t")"
else
	bad "read-header sha256 $got != $HEADER_SHA"
fi

# 2. A filesystem on the disk, at 4 KiB and 1 KiB blocks: files of
# several sizes written through the page cache, one fsync'ed, unmounted,
# the disk's buffers dropped, mounted again and every file compared.
# The device's own layout (header, patterns, check region) is written
# again below, after the filesystem is done with.
fs_round() {
	bs=$1
	t=$(cs)
	mke2fs -q -b "$bs" /dev/vda >/tmp/err 2>&1 || { bad "fs bs=$bs: mke2fs: $(tail -1 /tmp/err)"; return; }
	mkdir -p /mnt
	mount -t ext4 /dev/vda /mnt 2>/tmp/err || { bad "fs bs=$bs: mount: $(tail -1 /tmp/err)"; return; }
	n=0
	for kb in 1 4 60 512 2048; do
		dd if=/tmp/pat of=/mnt/f$kb bs=1k count=$kb 2>/dev/null || break
		n=$((n + 1))
	done
	dd if=/tmp/pat of=/mnt/synced bs=64k count=4 conv=fsync 2>/dev/null || n=0
	mkdir -p /mnt/dir/sub && cp /mnt/f60 /mnt/dir/sub/copy && n=$((n + 1))
	umount /mnt
	blockdev --flushbufs /dev/vda
	mount -t ext4 -o ro /dev/vda /mnt 2>/tmp/err || { bad "fs bs=$bs: remount: $(tail -1 /tmp/err)"; return; }
	bad_files=
	for kb in 1 4 60 512 2048; do
		[ "$(dd if=/tmp/pat bs=1k count=$kb 2>/dev/null | sha)" = "$(sha /mnt/f$kb)" ] || bad_files="$bad_files f$kb"
	done
	[ "$(dd if=/tmp/pat bs=64k count=4 2>/dev/null | sha)" = "$(sha /mnt/synced)" ] || bad_files="$bad_files synced"
	cmp -s /mnt/f60 /mnt/dir/sub/copy || bad_files="$bad_files copy"
	umount /mnt
	if [ "$n" -eq 6 ] && [ -z "$bad_files" ]; then
		ok "fs ext4 bs=$bs 7 files written, fsync, remounted, every byte verified seconds=$(secs "$t")"
	else
		bad "fs bs=$bs: $n of 6 writes done; differ:${bad_files:- none}"
	fi
}
fs_round 4096
fs_round 1024
blockdev --flushbufs /dev/vda

# 3. Pattern write and read-back at every block size, O_DIRECT both ways.
off_kb=$((HEADER_KB + 1024))
for bs in $SIZES; do
	t=$(cs)
	seek=$((off_kb * 1024 / bs))
	n=$((DATA_KB * 1024 / bs))
	if ! dd if=/tmp/pat of=/dev/vda bs="$bs" seek="$seek" count="$n" oflag=direct conv=notrunc 2>/tmp/err; then
		bad "write bs=$bs: $(tail -1 /tmp/err)"
		off_kb=$((off_kb + DATA_KB))
		continue
	fi
	tw=$(secs "$t")
	t=$(cs)
	if ! dd if=/dev/vda of=/tmp/back bs="$bs" skip="$seek" count="$n" iflag=direct 2>/tmp/err; then
		bad "read bs=$bs: $(tail -1 /tmp/err)"
	elif [ "$(sha /tmp/back)" = "$want" ]; then
		ok "pattern bs=$bs ${DATA_KB}KiB write=${tw}s read=$(secs "$t")s"
	else
		bad "pattern bs=$bs: read-back differs"
	fi
	rm -f /tmp/back
	off_kb=$((off_kb + DATA_KB))
done

# 4. Concurrent: two readers of what was written and one writer, in
# parallel (both vCPUs), every byte verified afterwards.
t=$(cs)
base_kb=$((HEADER_KB + 1024))
dd if=/dev/vda of=/tmp/r1 bs=64k skip=$((base_kb / 64)) count=$((DATA_KB / 64)) iflag=direct 2>/dev/null &
p1=$!
dd if=/dev/vda of=/tmp/r2 bs=4k skip=$((base_kb / 4)) count=$((DATA_KB / 4)) iflag=direct 2>/dev/null &
p2=$!
dd if=/tmp/pat of=/dev/vda bs=16k seek=$((CHECK_OFFSET_MB * 64)) oflag=direct conv=notrunc 2>/dev/null &
p3=$!
wait $p1; r1=$?
wait $p2; r2=$?
wait $p3; r3=$?
if [ $r1$r2$r3 = 000 ] && [ "$(sha /tmp/r1)" = "$want" ] && [ "$(sha /tmp/r2)" = "$want" ]; then
	ok "concurrent 2 readers + 1 writer seconds=$(secs "$t")"
else
	bad "concurrent: exit $r1/$r2/$r3 or data differs"
fi
rm -f /tmp/r1 /tmp/r2

# 5. What the host will find in its file: the region the writer filled.
got=$(dd if=/dev/vda bs=1M skip="$CHECK_OFFSET_MB" count="$CHECK_MB" iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
want_region=$(sha /tmp/pat)
if [ "$got" = "$want_region" ]; then
	ok "check-region ${CHECK_MB}MiB at ${CHECK_OFFSET_MB}MiB"
else
	bad "check-region: read-back differs"
fi
echo "PKVM-GUEST-DISK sha256=$want_region"
sync
finish
