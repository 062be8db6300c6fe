#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# /init of the pKVM host (an arm64 kernel booted with
# kvm-arm.mode=protected under QEMU TCG): runs every scenario of
# /etc/pkvm-host.conf with /bin/pkvm-vmm, each on a fresh copy of the disk
# image, prints what the harness (tests/pkvm/run.py) parses, and powers
# off (reboot -f; QEMU runs with -no-reboot).
#
# /etc/pkvm-host.conf: shell variables DISK_MB, CHECK_OFFSET_MB, CHECK_MB
# and SCENARIO_TIMEOUT (seconds; a VMM still running then gets SIGTERM: exit
# status 4, statistics still printed), then one line per scenario in SCENARIOS:
#   name|vmm options|extra guest command line
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o size=1500m tmpfs /tmp

up() { cut -d' ' -f1 /proc/uptime; }
echo "PKVM-HOST-INIT uptime=$(up)"
# Keep the host's own messages (up to warnings) off the shared console.
echo 4 >/proc/sys/kernel/printk

. /etc/pkvm-host.conf

[ -c /dev/kvm ] || echo "PKVM-HOST-ERROR no /dev/kvm (KVM not initialised: see the host log above)"
grep -m1 -i 'protected' /proc/cmdline >/dev/null || true

# The bounce threshold is pinned to one page, so that the counts compare
# across runs (the driver measures it at boot by default).
GUEST_BASE="console=ttyAMA0 panic=-1 initramfs_async=0 pviommu.required=0 kunit.enable=0 pviommu.bounce_threshold=4096"

echo "$SCENARIOS" | while IFS='|' read -r name opts extra; do
	[ -n "$name" ] || continue
	disk=/tmp/disk-$name.img
	cp /disk.img "$disk" && truncate -s "${DISK_MB}M" "$disk"
	echo "PKVM-SCENARIO-BEGIN $name uptime=$(up) vmm=[$opts]"
	# shellcheck disable=SC2086 # $opts is a list of options
	timeout -s TERM "$SCENARIO_TIMEOUT" /bin/pkvm-vmm --kernel /guest/Image --initrd /guest/initramfs.cpio \
		--disk "$disk" $opts --cmdline "$GUEST_BASE $extra" </dev/null
	rc=$?
	sha=$(dd if="$disk" bs=1M skip="$CHECK_OFFSET_MB" count="$CHECK_MB" 2>/dev/null | sha256sum | cut -d' ' -f1)
	echo "PKVM-HOST-DISK $name sha256=$sha"
	# Per 64 KiB block of the same region, for scenarios that stop early.
	i=0 blocks=
	while [ $i -lt $((CHECK_MB * 16)) ]; do
		blocks="$blocks $(dd if="$disk" bs=64k skip=$((CHECK_OFFSET_MB * 16 + i)) count=1 2>/dev/null | sha256sum | cut -d' ' -f1)"
		i=$((i + 1))
	done
	echo "PKVM-HOST-BLOCKS $name$blocks"
	echo "PKVM-SCENARIO-END $name rc=$rc uptime=$(up)"
	rm -f "$disk"
done

echo "PKVM-HOST-DONE uptime=$(up)"
sync
reboot -f
