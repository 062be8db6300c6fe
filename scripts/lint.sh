#!/usr/bin/env bash
# Formatting and lints of all Rust code of the project.
#
# Kernel Rust (drivers/, and hyp-abi/ as the driver includes it) is
# checked with the kernel's own .rustfmt.toml, which is what
# `make LLVM=1 rustfmtcheck` does for in-tree files; the kernel's target
# does not follow the drivers/pviommu link, so we run rustfmt directly.
# Clippy for kernel Rust runs inside the kernel build (CLIPPY=1, and the
# driver's Kbuild turns warnings into errors). Userspace crates get
# `cargo fmt --check` and `cargo clippy -D warnings`; the kernel patches
# and the driver's C glue `scripts/checkpatch.pl --strict`.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$here/scripts/lib.sh"
cd "$here"

status=0
src=$(scripts/kernel.sh tree 2>/dev/null | tail -1)
if [ -f "$src/.rustfmt.toml" ]; then
	rustfmt --check --edition 2021 --config-path "$src/.rustfmt.toml" \
		drivers/pviommu/pviommu.rs || {
		say "kernel Rust is not rustfmt-clean: run rustfmt --edition 2021 --config-path $src/.rustfmt.toml drivers/pviommu/pviommu.rs"
		status=1
	}
else
	say "no kernel tree: cannot check kernel Rust formatting"
	status=1
fi
# The kernel patch series: what upstream reviewers run first.
if [ -x "$src/scripts/checkpatch.pl" ]; then
	(cd "$src" && ./scripts/checkpatch.pl --strict --quiet "$here"/kernel/patches/*.patch) || {
		say "kernel/patches/ is not checkpatch --strict clean (see above)"
		status=1
	}
	# The driver's C glue, as files (they are not in any patch).
	(cd "$src" && ./scripts/checkpatch.pl --strict --quiet --no-tree -f \
		"$here"/drivers/pviommu/*.c "$here"/drivers/pviommu/*.h) || {
		say "the driver's C glue is not checkpatch --strict clean (see above)"
		status=1
	}
fi
cargo fmt --all --check || {
	say "userspace Rust is not rustfmt-clean: run cargo fmt --all"
	status=1
}
cargo clippy --workspace --all-targets --quiet -- -D warnings || status=1
exit "$status"
