#!/bin/sh
# /init of the test initramfs: mount the basics, run every /tests/*.sh as
# one TAP test point, print TAP on ttyS1 and reboot (QEMU runs with
# -no-reboot, so that ends the run). Exit 77 from a script means skip.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tmpfs tmpfs /tmp

tap=/dev/ttyS1
[ -c "$tap" ] || tap=/dev/console

set -- /tests/*.sh
[ -e "$1" ] || set --
{
	echo "TAP version 13"
	echo "1..$#"
	n=0
	for t in "$@"; do
		n=$((n + 1))
		name=$(basename "$t" .sh)
		out=$(sh "$t" 2>&1)
		rc=$?
		echo "$out" | sed -e '/^$/d' -e 's/^/# /'
		case $rc in
		0) echo "ok $n - $name" ;;
		77) echo "ok $n - $name # SKIP" ;;
		*) echo "not ok $n - $name (exit $rc)" ;;
		esac
	done
	echo "# pviommu: guest tests done"
} >"$tap" 2>&1

sync
reboot -f
