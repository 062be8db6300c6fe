#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The network against the backend's own TCP/IP peer (169.254.77.1, on
# the link only): UDP datagrams of 64 to 1472 bytes echoed and compared
# one by one, then a TCP stream both ways, compared byte by byte; the
# harness compares the sent checksum with what the peer received.
. "${LIB:-/etc/refhyp/lib.sh}"
case ",${DEVICES:-1}," in *,1,*) ;; *) echo "no net device in this scenario"; exit 77 ;; esac
ip addr add 169.254.77.2/16 dev eth0 || fail "address"
ip link set eth0 up || fail "link up"
ping -c 1 -W 5 169.254.77.1 >/dev/null || fail "the peer does not answer ping"
devio udp 169.254.77.1 7 "${UDP_COUNT:-1000}" || fail "udp echo"
devio tcp 169.254.77.1 7 "${STREAM_MIB:-4}" || fail "tcp echo"
