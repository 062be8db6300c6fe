#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Every enforcing device busy at once, on both vCPUs: a TCP and a vsock
# stream to the backends' echoes, UDP datagrams, entropy reads and the
# disk written and read back with O_DIRECT, all in parallel; each is
# checked as when it runs alone (the streams and datagrams by devio, the
# disk byte for byte). The TCP and vsock streams here are the last ones,
# so the harness compares their checksums with the peers'.
. "${LIB:-/etc/refhyp/lib.sh}"
has() { case ",${DEVICES:-1,4,19}," in *,$1,*) return 0 ;; esac; return 1; }
pids=
if has 1; then
	devio tcp 169.254.77.1 7 2 >/tmp/all-tcp 2>&1 &
	pids="$pids $!:tcp"
	devio udp 169.254.77.1 7 300 >/tmp/all-udp 2>&1 &
	pids="$pids $!:udp"
fi
if has 19; then
	devio vsock 2 1234 2 >/tmp/all-vsock 2>&1 &
	pids="$pids $!:vsock"
fi
if has 4; then
	dd if=/dev/hwrng of=/tmp/all-rng bs=4096 count=32 2>/dev/null &
	pids="$pids $!:rng"
fi
if [ -b "$DISK" ]; then
	(pattern /tmp/all-disk 2 && write_verify /tmp/all-disk 64K 8) >/tmp/all-blk 2>&1 &
	pids="$pids $!:blk"
fi
[ -n "$pids" ] || { echo "no device to load"; exit 77; }
failed=
for p in $pids; do
	wait "${p%%:*}" || failed="$failed ${p#*:}"
done
for f in /tmp/all-tcp /tmp/all-udp /tmp/all-vsock /tmp/all-blk; do
	[ -f $f ] && cat $f
done
[ -f /tmp/all-rng ] && [ "$(wc -c </tmp/all-rng)" -ne 131072 ] && failed="$failed rng-short"
[ -z "$failed" ] || fail "failed while all devices were busy:$failed"
echo "all devices at once:$(echo "$pids" | sed 's/[0-9]*://g')"
