#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# Counts instructions of the guest map core and the hypervisor drain with
# callgrind (deterministic, unlike time on a shared machine) and prints one
# machine-readable line:
#
#   callgrind: map_insns_per_page=.. map1_insns_per_page=.. drain_insns_per_record=.. drain_scattered_insns_per_record=..
#
# map: 4096 buffers of 16 pages (map1: of 1 page) through the page tracker
# and the ring producer; drain: 16384 one-page records naming adjacent
# frames (scattered: every other frame, so no two records merge). Targets:
# <= 100 instructions per page mapped and <= 50 per record drained.
set -eu
cd "$(dirname "$0")/../.."
CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo build -q --release -p pviommu-reference-hyp --example cost
bin=${CARGO_TARGET_DIR:-target}/release/examples/cost
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Prints the instructions collected inside function $1 for the arguments.
collect() {
	fn=$1
	shift
	st=0
	valgrind --tool=callgrind --toggle-collect="*$fn*" \
		--callgrind-out-file="$tmp/out" "$bin" "$@" >/dev/null 2>"$tmp/err" || st=$?
	n=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/err")
	if [ "$st" -ne 0 ] || [ -z "$n" ]; then
		echo "callgrind.sh: run of $* failed:" >&2
		cat "$tmp/err" >&2
		exit 1
	fi
	echo "$n"
}

map16=$(collect measured_map map 16) || exit 1
map1=$(collect measured_map map 1) || exit 1
drain=$(collect measured_drain drain 1) || exit 1
scattered=$(collect measured_drain drain 2) || exit 1
awk -v m16="$map16" -v m1="$map1" -v d="$drain" -v s="$scattered" 'BEGIN {
	printf "callgrind: map_insns_per_page=%.1f map1_insns_per_page=%.1f drain_insns_per_record=%.1f drain_scattered_insns_per_record=%.1f\n",
		m16 / (4096 * 16), m1 / 4096, d / 16384, s / 16384
}'
