#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Text lines to the virtio console; the harness compares the host's
# copy and its checksum with what the guest wrote (devio puts the tty
# in raw mode, so the bytes are the same).
. "${LIB:-/etc/refhyp/lib.sh}"
case ",${DEVICES:-3}," in *,3,*) ;; *) echo "no console device in this scenario"; exit 77 ;; esac
[ -c /dev/hvc0 ] || fail "no /dev/hvc0"
devio write /dev/hvc0 "${CONSOLE_BYTES:-262144}" || fail "console write"
