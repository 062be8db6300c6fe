#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Concurrent writers and readers on disjoint regions (the guest has two
# vCPUs), for several rounds; readers check data written in the previous
# round while writers overwrite other regions.
. "${LIB:-/etc/refhyp/lib.sh}"
need_disk
ROUNDS=${ROUNDS:-3}
WORKERS=4
MIB=${MIB:-1}

region() { echo $(($1 * MIB)); }

# Round 0 fills every region so that readers always have something to check.
w=0
while [ $w -lt $WORKERS ]; do
	pattern /tmp/r$w $MIB
	write_verify /tmp/r$w 64K "$(region $w)"
	w=$((w + 1))
done

round=1
while [ "$round" -le "$ROUNDS" ]; do
	pids=""
	w=0
	while [ $w -lt $WORKERS ]; do
		if [ $(((w + round) % 2)) -eq 0 ]; then
			# Writer: new pattern, written and verified in 4 KiB blocks.
			(
				pattern /tmp/n$w $MIB
				write_verify /tmp/n$w 4K "$(region $w)"
				mv /tmp/n$w /tmp/r$w
			) &
		else
			# Reader: the region's current contents, in 1 MiB reads.
			(
				dd if="$DISK" of=/tmp/c$w bs=1048576 skip="$(region $w)" count=$MIB iflag=direct 2>/dev/null ||
					fail "read region $w"
				cmp -s /tmp/r$w /tmp/c$w || fail "region $w differs in round $round"
				rm -f /tmp/c$w
			) &
		fi
		pids="$pids $!"
		w=$((w + 1))
	done
	for p in $pids; do
		wait "$p" || fail "a worker failed in round $round"
	done
	echo "round $round: $WORKERS workers verified"
	round=$((round + 1))
done
