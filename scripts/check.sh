#!/usr/bin/env bash
# `make check`: every test of the project, in one run.
#
# Each step runs even when an earlier one failed (except that nothing
# runs without set-up and a kernel), and reports passed/failed/skipped
# counts. The last line is the total: "N passed, N failed[, N skipped]".
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$here/scripts/lib.sh"
cd "$here"
: "${CARGO_TARGET_DIR:=$PVIOMMU_CACHE/cargo-target}"
export CARGO_TARGET_DIR

results=$PVIOMMU_CACHE/results
rm -rf "$results"
mkdir -p "$results"
start=$(date +%s)

# step NAME COMMAND...: run a step that writes no counts: 1 pass or 1 fail.
step() {
	local name=$1
	shift
	local t0=$SECONDS
	say "== $name"
	if "$@"; then
		echo "1 0 0" >"$results/$name"
		say "== $name: ok ($((SECONDS - t0)) s)"
	else
		echo "0 1 0" >"$results/$name"
		say "== $name: FAILED ($((SECONDS - t0)) s)"
	fi
}

# counted NAME COMMAND...: a step that writes its own counts to $out.
counted() {
	local name=$1
	shift
	local t0=$SECONDS
	say "== $name"
	out=$results/$name
	if ! "$@" || [ ! -s "$out" ]; then
		[ -s "$out" ] || echo "0 1 0" >"$out"
		read -r p f s <"$out"
		[ "$f" -gt 0 ] || echo "$p 1 $s" >"$out"
		say "== $name: FAILED ($((SECONDS - t0)) s)"
	else
		say "== $name: ok ($((SECONDS - t0)) s)"
	fi
}

cargo_tests() {
	local log=$results/cargo.log
	cargo test --workspace 2>&1 | tee "$log"
	local rc=${PIPESTATUS[0]}
	awk '/^test result:/ { p += $4; f += $6; s += $8 } END { print p+0, f+0, s+0 }' \
		"$log" >"$out"
	return "$rc"
}

# The ring protocol's loom models (the ABI crate's consumer and the
# reference hypervisor's own drain), in a target directory of their own
# (--cfg loom rebuilds everything it touches).
loom_tests() {
	local log=$results/loom.log rc=0
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$CARGO_TARGET_DIR/loom \
		cargo test -q -p pviommu-hyp-abi --release --test loom 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$CARGO_TARGET_DIR/loom \
		cargo test -q -p pviommu-reference-hyp --release --test loom 2>&1 | tee -a "$log"
	[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
	awk '/^test result:/ { p += $4; f += $6; s += $8 } END { print p+0, f+0, s+0 }' \
		"$log" >"$out"
	return "$rc"
}

step setup scripts/setup.sh || true
if [ "$(cat "$results/setup")" != "1 0 0" ]; then
	die "set-up failed: nothing else can run"
fi
step kernel-build scripts/kernel.sh build
# The arm64 kernel: pKVM host and protected guest in one image.
step kernel-arm64 env PVIOMMU_ARCH=arm64 scripts/kernel.sh build
counted cargo-test cargo_tests
counted loom loom_tests
# The hypervisor's parsing of guest-written memory, fuzzed for a minute;
# libFuzzer's progress goes to the log, its final statistics here.
fuzz_smoke() {
	local log=$results/fuzz.log rc
	hyp-abi/fuzz/smoke.sh 60 >"$log" 2>&1
	rc=$?
	grep -E '^(Done|stat::|==[0-9]+==|SUMMARY)' "$log" | tail -12
	[ "$rc" -eq 0 ] || tail -40 "$log"
	return "$rc"
}
step fuzz-smoke fuzz_smoke
step lint scripts/lint.sh
if [ "$(cat "$results/kernel-build")" = "1 0 0" ]; then
	counted kunit tests/kunit/run.py --results "$results/kunit"
	counted boot-test tests/boot/run.py --results "$results/boot-test"
	counted refhyp tests/refhyp/harness.py --results "$results/refhyp" \
		--json "$results/refhyp.json"
fi
if [ "$(cat "$results/kernel-arm64")" = "1 0 0" ]; then
	counted kunit-arm64 tests/kunit/run.py --arch arm64 --results "$results/kunit-arm64"
	# A protected VM on the pKVM host (tests/pkvm): its stage 2 denies the
	# host every private page, and the stock pKVM path moves its disk I/O.
	counted pkvm tests/pkvm/run.py --quiet --results "$results/pkvm"
fi

say "== results ($(( $(date +%s) - start )) s)"
passed=0 failed=0 skipped=0
for f in "$results"/*; do
	case $f in *.log | *.json) continue ;; esac
	read -r p fl s <"$f"
	printf '  %-14s %4d passed %4d failed %4d skipped\n' "$(basename "$f")" "$p" "$fl" "$s" >&2
	passed=$((passed + p)) failed=$((failed + fl)) skipped=$((skipped + s))
done
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
