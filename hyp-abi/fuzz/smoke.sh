#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# Runs the hypervisor fuzz target for a short while (default 30 s) and
# fails on any crash. Needs cargo-fuzz and a nightly toolchain (or
# RUSTC_BOOTSTRAP=1 with the stable one).
#
# Usage: hyp-abi/fuzz/smoke.sh [seconds]
set -eu
cd "$(dirname "$0")"
secs="${1:-30}"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
	tc=+nightly
else
	tc=
	export RUSTC_BOOTSTRAP=1
fi
mkdir -p corpus/hyp_calls
CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo $tc fuzz run hyp_calls corpus/hyp_calls -- \
	-max_total_time="$secs" -max_len=4096 -print_final_stats=1
