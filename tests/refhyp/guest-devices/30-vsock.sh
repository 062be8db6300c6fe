#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# A vsock stream both ways with the backend's echo (host CID 2, port
# 1234), compared byte by byte; the harness compares the checksums.
. "${LIB:-/etc/refhyp/lib.sh}"
case ",${DEVICES:-19}," in *,19,*) ;; *) echo "no vsock device in this scenario"; exit 77 ;; esac
devio vsock 2 1234 "${STREAM_MIB:-4}" || fail "vsock echo"
