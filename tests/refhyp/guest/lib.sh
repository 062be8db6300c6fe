# SPDX-License-Identifier: GPL-2.0
# Helpers shared by the guest workloads (sourced, busybox sh).
#
# The disk is the vhost-user-blk device of the reference hypervisor; every
# byte written is verified by reading it back with O_DIRECT, so the data
# really went through the device (and so through the host view).

DISK=${DISK:-/dev/vda}

fail() {
	echo "FAIL: $*"
	exit 1
}

# The first virtio-blk disk, or skip the test point when there is none.
need_disk() {
	[ -b "$DISK" ] || [ -n "$DISK_BYTES" ] || { echo "no $DISK: no virtio-blk device"; exit 77; }
}

# Disk size in bytes (DISK_BYTES overrides, to try the scripts on a file).
disk_bytes() {
	[ -n "$DISK_BYTES" ] && { echo "$DISK_BYTES"; return; }
	echo $(($(cat /sys/block/"$(basename "$DISK")"/size) * 512))
}

# pattern FILE MIB: a fresh random pattern of MIB MiB. Random data
# makes a misplaced or stale block show up in the comparison.
pattern() {
	dd if=/dev/urandom of="$1" bs=1048576 count="$2" 2>/dev/null || fail "pattern"
}

# write_verify FILE BS OFFSET_MIB: write FILE to the disk at OFFSET_MIB
# with O_DIRECT in blocks of BS, read it back with O_DIRECT, compare.
write_verify() {
	f=$1 bs=$2 off=$3
	b=$(to_bytes "$bs")
	blocks=$(($(wc -c <"$f") / b))
	seek=$((off * 1048576 / b))
	dd if="$f" of="$DISK" bs="$b" seek="$seek" count="$blocks" oflag=direct conv=notrunc,fsync 2>/dev/null ||
		fail "write $bs at ${off}M"
	dd if="$DISK" of="$f.back" bs="$b" skip="$seek" count="$blocks" iflag=direct 2>/dev/null ||
		fail "read $bs at ${off}M"
	cmp -s "$f" "$f.back" || fail "data differs after $bs round trip at ${off}M"
	rm -f "$f.back"
}

to_bytes() {
	case $1 in
	*K) echo $((${1%K} * 1024)) ;;
	*M) echo $((${1%M} * 1048576)) ;;
	*) echo "$1" ;;
	esac
}

# check_classes ID...: every virtio device of each class ID negotiated
# VIRTIO_F_ACCESS_PLATFORM and maps through the pviommu, and each class
# has at least one device.
check_classes() {
	for want in "$@"; do
		found=
		for d in /sys/bus/virtio/devices/*; do
			[ "$(cat "$d/device")" = "$(printf '0x%04x' "$want")" ] || continue
			found=$(basename "$d")
			# Bit n is character n + 1 of the features string.
			[ "$(cut -c34 "$d/features")" = 1 ] || fail "$found (class $want): no ACCESS_PLATFORM"
			dmesg | grep -q "\"$found\": DMA through the pviommu" ||
				fail "$found (class $want): not mapped through the pviommu"
			echo "$found: class $want, ACCESS_PLATFORM, DMA through the pviommu"
		done
		[ -n "$found" ] || fail "no virtio device of class $want"
	done
}
