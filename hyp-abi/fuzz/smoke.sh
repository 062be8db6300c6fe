#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# Runs the hypervisor fuzz target for a while (default 60 s) and fails on
# any crash. Needs cargo-fuzz (make setup installs it). It builds with the
# stable toolchain and RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly-only
# sanitizer flags), or FUZZ_TOOLCHAIN=nightly with rustup's nightly.
#
# The corpus, the build and any crashing input live in the cache, never
# in the repository: $PVIOMMU_CACHE/fuzz/{corpus,artifacts}/.
#
# Usage: hyp-abi/fuzz/smoke.sh [seconds]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
secs="${1:-60}"
cache="${PVIOMMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pviommu}"
corpus="$cache/fuzz/corpus/hyp_calls"
artifacts="$cache/fuzz/artifacts/hyp_calls/"
mkdir -p "$corpus" "$artifacts"
tc=
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
	tc="+$FUZZ_TOOLCHAIN"
else
	export RUSTC_BOOTSTRAP=1
fi
cd "$here"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/cargo-target}/fuzz" \
	CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" \
	cargo $tc fuzz run hyp_calls "$corpus" -- \
	-max_total_time="$secs" -max_len=4096 -print_final_stats=1 \
	-artifact_prefix="$artifacts"
