#!/usr/bin/env bash
# Install everything the build and the tests need, idempotently.
#
# Each step is skipped when what it provides is already present, so a
# second run costs a few seconds. A step that fails stops the run with a
# message naming what is missing and how to fix it by hand.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$here/scripts/lib.sh"

# Debian packages the kernel build, the boot tests and the benchmarks use.
packages=(
	xz-utils ca-certificates
	clang-19 lld-19 llvm-19 libclang-19-dev
	make bc flex bison libelf-dev libssl-dev cpio kmod python3
	qemu-system-x86 qemu-system-arm busybox-static
	ccache valgrind e2fsprogs gcc libc6-dev
	fio
)

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || die "not root and no sudo: run as root or install sudo"
	sudo_cmd=(sudo)
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "installing Debian packages: ${missing[*]}"
	"${sudo_cmd[@]}" apt-get update -qq ||
		die "apt-get update failed: check the Debian package mirror configuration"
	DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install failed for: ${missing[*]}"
fi

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"
command -v rustc >/dev/null || die "rustc not found: install a Rust toolchain (rustup) first"

# Rust library source: the kernel compiles its own `core` from it.
sysroot=$(rustc --print sysroot)
if [ ! -f "$sysroot/lib/rustlib/src/rust/library/core/src/lib.rs" ]; then
	say "installing the rust-src component"
	if ! command -v rustup >/dev/null || ! rustup component add rust-src; then
		die "cannot install Rust library source. Fix: 'rustup component add rust-src', or" \
			"install Debian's matched pair 'rustc-web rust-web-src' and run with RUSTC=rustc-web"
	fi
fi

# The arm64 target: the pKVM test's VMM (tests/pkvm/vmm) is a static
# aarch64-unknown-linux-musl binary, linked with rustup's rust-lld.
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-musl; then
	say "installing the aarch64-unknown-linux-musl Rust target"
	rustup target add aarch64-unknown-linux-musl ||
		die "rustup target add aarch64-unknown-linux-musl failed: the pKVM test needs it"
fi

# bindgen, pinned, in the project's tool cache (not in ~/.cargo/bin).
if [ "$("$PVIOMMU_TOOLS/bin/bindgen" --version 2>/dev/null)" != "bindgen $BINDGEN_VERSION" ]; then
	say "installing bindgen-cli $BINDGEN_VERSION into $PVIOMMU_TOOLS"
	cargo install --quiet --locked --root "$PVIOMMU_TOOLS" --version "$BINDGEN_VERSION" bindgen-cli ||
		die "cargo install bindgen-cli $BINDGEN_VERSION failed: check that crates.io is reachable and libclang-19-dev is installed"
fi

# cargo-fuzz, pinned, in the tool cache: make check's fuzz smoke run.
if [ "$("$PVIOMMU_TOOLS/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
	say "installing cargo-fuzz $CARGO_FUZZ_VERSION into $PVIOMMU_TOOLS"
	cargo install --quiet --locked --root "$PVIOMMU_TOOLS" --version "$CARGO_FUZZ_VERSION" cargo-fuzz ||
		die "cargo install cargo-fuzz $CARGO_FUZZ_VERSION failed: check that crates.io is reachable"
fi

# checkpatch.pl runs scripts/spdxcheck.py on new files, which imports ply
# and GitPython: install them for the python3 on PATH (Debian's packages
# only reach Debian's own python3).
if ! python3 -c 'import ply, git' 2>/dev/null; then
	say "installing ply and GitPython for checkpatch's SPDX check"
	python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
		"ply==$PLY_VERSION" "GitPython==$GITPYTHON_VERSION" ||
		die "pip install ply GitPython failed: check that PyPI is reachable"
fi

# make bench plots with matplotlib (for the python3 on PATH, like the
# above); the report is written without plots if it is missing.
if ! python3 -c 'import matplotlib' 2>/dev/null; then
	say "installing matplotlib for make bench's plots"
	python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
		"matplotlib==3.9.2" ||
		die "pip install matplotlib failed: check that PyPI is reachable"
fi

say "set-up complete"
