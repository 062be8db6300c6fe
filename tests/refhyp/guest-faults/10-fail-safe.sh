#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The hypervisor fails an unshare (fault injection): the pviommu must not
# report the pages unshared, must stop the disk with a clear message, and
# every later I/O must fail loudly. Nothing may be silently lost: a write
# that reports success must read back intact.
. "${LIB:-/etc/refhyp/lib.sh}"
need_disk
d=/sys/kernel/debug/pviommu
pattern /tmp/p 1
if dd if=/tmp/p of="$DISK" bs=65536 oflag=direct conv=notrunc,fsync 2>/dev/null; then
	dd if="$DISK" of=/tmp/b bs=65536 count=16 iflag=direct 2>/dev/null ||
		fail "a write succeeded but reading it back failed"
	cmp -s /tmp/p /tmp/b || fail "a write reported success but the data differs"
	# Keep going until the injected failure is hit.
	i=0
	while [ "$i" -lt 50 ] && dd if=/tmp/p of="$DISK" bs=4096 oflag=direct conv=notrunc 2>/dev/null; do
		i=$((i + 1))
	done
fi
errors=$(cat $d/unshare_errors)
leaked=$(cat $d/pages_leaked)
echo "unshare_errors=$errors pages_leaked=$leaked"
[ "$errors" -ge 1 ] || fail "the injected unshare failure was not counted"
[ "$leaked" -ge 1 ] || fail "no page was kept accounted as shared"
dmesg | grep -q 'marked broken' || fail "the disk was not marked broken"
dmesg | grep 'marked broken' | head -1
if dd if="$DISK" of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null; then
	fail "I/O still succeeds on a broken device"
fi
echo "I/O on the broken disk fails with an error, as it must"
