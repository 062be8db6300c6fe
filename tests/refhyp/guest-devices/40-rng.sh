#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Entropy from the backend: the virtio rng is the current hwrng and
# every read is served in full.
. "${LIB:-/etc/refhyp/lib.sh}"
case ",${DEVICES:-4}," in *,4,*) ;; *) echo "no rng device in this scenario"; exit 77 ;; esac
cur=$(cat /sys/class/misc/hw_random/rng_current)
case $cur in virtio_rng*) ;; *) fail "current hwrng is '$cur'" ;; esac
n=$(dd if=/dev/hwrng bs=4096 count="${RNG_PAGES:-64}" 2>/dev/null | wc -c)
[ "$n" -eq $((${RNG_PAGES:-64} * 4096)) ] || fail "rng: read $n bytes"
echo "rng: $n bytes read from $cur"
