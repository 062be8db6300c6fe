#!/usr/bin/env bash
# Prepare, configure and build the protected-guest kernel with the driver.
#
#   scripts/kernel.sh build      # tree + config + bzImage (incremental)
#   scripts/kernel.sh tree       # only prepare the source tree
#
# PVIOMMU_ARCH=arm64 builds the arm64 Image instead (the pKVM host and its
# protected guest, kernel/pviommu-arm64.config) and links it as
# $PVIOMMU_CACHE/current-arm64; the default, x86_64, builds the test
# harness's guest and links $PVIOMMU_CACHE/current.
#
# Without KDIR the source is Debian's newest linux-source-7.N (N >= 3,
# fetched by scripts/linux-source.sh), extracted into
# $PVIOMMU_CACHE/linux-7.N and kept as a git tree whose `pristine` tag is
# the unpatched source. With KDIR=/path/to/linux-7.x the user's tree is
# used: the patch series is applied if it is not already.
#
# Every stamp is written only after its step succeeded, and each names
# the inputs it was made from, so a changed patch, config fragment or
# toolchain is never silently reused and an interrupted run is redone.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$here/scripts/lib.sh"

patches_dir=$here/kernel/patches
jobs=${JOBS:-$(($(nproc) + 1))}
case ${PVIOMMU_ARCH:=x86_64} in
x86_64)
	fragment=$here/kernel/pviommu-guest.config
	image=arch/x86/boot/bzImage
	current=$PVIOMMU_CACHE/current
	;;
arm64)
	fragment=$here/kernel/pviommu-arm64.config
	image=arch/arm64/boot/Image
	current=$PVIOMMU_CACHE/current-arm64
	;;
*) die "PVIOMMU_ARCH=$PVIOMMU_ARCH: only x86_64 and arm64 are supported" ;;
esac
kmake_args=(ARCH="$PVIOMMU_ARCH" "LLVM=$LLVM_SUFFIX" CLIPPY=1)

hash_of() { cat "$@" | sha256sum | cut -c1-16; }
patches_hash() { hash_of "$patches_dir"/*.patch; }

toolchain_id() {
	{
		rustc --version
		clippy-driver --version 2>/dev/null || true
		bindgen --version
		"clang$LLVM_SUFFIX" --version | head -1
		"ld.lld$LLVM_SUFFIX" --version | head -1
	} | sha256sum | cut -c1-16
}

check_tools() {
	local t
	for t in rustc clippy-driver bindgen "clang$LLVM_SUFFIX" "ld.lld$LLVM_SUFFIX" \
		"llvm-ar$LLVM_SUFFIX" make bc flex bison; do
		command -v "$t" >/dev/null || die "'$t' not found: run 'make setup' (scripts/setup.sh)"
	done
	# Linux 7.x needs LLVM >= 17.0.1 (Documentation/process/changes.rst).
	local major
	major=$("clang$LLVM_SUFFIX" -dumpversion | cut -d. -f1)
	[ "$major" -ge 17 ] ||
		die "clang$LLVM_SUFFIX is version $major; Linux 7.x needs LLVM >= 17:" \
			"install clang-19 lld-19 llvm-19 (make setup) or set LLVM_SUFFIX"
}

# Debian's source, as a git tree with the series applied.
prepare_debian_tree() {
	local tarball src want name
	tarball=$("$here/scripts/linux-source.sh")
	[ -f "$tarball" ] || die "no Linux 7.x source tarball: see the messages above"
	name=$(basename "$tarball" .tar.xz)
	src=$PVIOMMU_CACHE/linux-${name#linux-source-}
	want=$(stat -c '%s %Y' "$tarball" | sha256sum | cut -c1-16)
	if [ "$(cat "$src/.pviommu-pristine" 2>/dev/null)" != "$want" ]; then
		say "extracting $tarball into $src"
		rm -rf "$src" "$src.tmp"
		mkdir -p "$src.tmp"
		tar -xf "$tarball" -C "$src.tmp" --strip-components=1
		# Debian's top-level .gitignore ignores everything: add with -f.
		git -C "$src.tmp" init -q
		# No automatic gc: committing ~90,000 loose objects would start a
		# detached gc that holds HEAD.lock (reflog expiry) while the
		# tree is moved and reset below ("cannot lock ref 'HEAD'").
		git -C "$src.tmp" config gc.auto 0
		git -C "$src.tmp" config maintenance.auto false
		git -C "$src.tmp" add -f -A .
		git -C "$src.tmp" -c user.name=pviommu -c user.email=pviommu@localhost \
			commit -q -m "Linux $(linux_version "$src.tmp") (Debian $name)"
		git -C "$src.tmp" tag pristine
		echo "$want" >"$src.tmp/.pviommu-pristine"
		mv "$src.tmp" "$src"
	fi
	want=$(patches_hash)
	if [ "$(cat "$src/.pviommu-patches" 2>/dev/null)" != "$want" ]; then
		say "applying the patch series to $src"
		rm -f "$src/.pviommu-patches"
		# Back to pristine: only files the old series touched change, so
		# the build stays incremental.
		git -C "$src" am --abort >/dev/null 2>&1 || true
		git -C "$src" reset -q --hard pristine
		git -C "$src" clean -q -ffdx -e .pviommu-pristine
		local p
		for p in "$patches_dir"/*.patch; do
			if ! git -C "$src" -c user.name=pviommu -c user.email=pviommu@localhost \
				am -q --keep-cr "$p" >/dev/null 2>&1; then
				git -C "$src" am --abort >/dev/null 2>&1 || true
				die "patch $(basename "$p") does not apply to Linux $(linux_version "$src") in $src:" \
					"rebase the series on it (Documentation/pviommu/build.rst)"
			fi
		done
		echo "$want" >"$src/.pviommu-patches"
	fi
	echo "$src"
}

linux_version() {
	awk -F' = ' '/^VERSION/{v=$2} /^PATCHLEVEL/{p=$2} /^SUBLEVEL/{s=$2} END{print v "." p "." s}' "$1/Makefile"
}

# A user's tree: check it, then apply whatever of the series is missing.
prepare_user_tree() {
	local src=$1 p
	[ -d "$src" ] || die "KDIR=$src does not exist: point KDIR at a Linux 7.x (x >= 3) source tree"
	[ -f "$src/Makefile" ] && [ -f "$src/Kconfig" ] ||
		die "KDIR=$src is not a kernel source tree (no top-level Makefile/Kconfig)"
	local v
	v=$(linux_version "$src")
	case $v in
	7.[3-9].* | 7.[1-9][0-9].*) ;;
	*) die "KDIR=$src is Linux $v; pviommu needs Linux 7.3 or a later 7.x (virtio_map_ops, pKVM protected VMs)" ;;
	esac
	[ -f "$src/rust/Makefile" ] && [ -f "$src/rust/kernel/lib.rs" ] ||
		die "KDIR=$src has no Rust support (rust/kernel missing): use a Linux 7.x tree with rust/"
	if [ -f "$src/.config" ] || [ -d "$src/include/config" ]; then
		die "KDIR=$src has been configured in-tree; pviommu builds out of tree (O=): run 'make -C $src mrproper' first"
	fi
	for p in "$patches_dir"/*.patch; do
		if patch -d "$src" -p1 -R --dry-run -s -f <"$p" >/dev/null 2>&1; then
			continue
		fi
		patch -d "$src" -p1 --dry-run -s -f <"$p" >/dev/null 2>&1 ||
			die "patch $(basename "$p") neither applies to nor is applied in KDIR=$src (Linux $v):" \
				"rebase the series on it (Documentation/pviommu/build.rst)"
		say "applying $(basename "$p") to $src"
		patch -d "$src" -p1 -s -f <"$p" >/dev/null
	done
	echo "$src"
}

prepare_tree() {
	local src
	if [ -n "${KDIR:-}" ]; then
		src=$(prepare_user_tree "$(cd "$KDIR" 2>/dev/null && pwd || echo "$KDIR")")
	else
		src=$(prepare_debian_tree)
	fi
	# The kernel sees the project as drivers/pviommu.
	local link=$src/drivers/pviommu
	if [ -e "$link" ] && [ ! -L "$link" ]; then
		die "$link exists and is not a link to the pviommu project: remove it"
	fi
	ln -sfn "$here" "$link"
	echo "$src"
}

out_dir() {
	local src=$1
	local arch=
	[ "$PVIOMMU_ARCH" = x86_64 ] || arch=-$PVIOMMU_ARCH
	echo "$PVIOMMU_CACHE/build$arch-$(printf '%s' "$src" | sha256sum | cut -c1-8)-$(toolchain_id)"
}

configure() {
	local src=$1 out=$2 want
	# The driver's own Kconfig defaults shape the configuration too.
	want=$(hash_of "$fragment" "$patches_dir"/*.patch "$here"/drivers/pviommu/Kconfig)
	[ "$(cat "$out/.pviommu-config" 2>/dev/null)" = "$want" ] && [ -f "$out/.config" ] && return 0
	rm -f "$out/.pviommu-config"
	mkdir -p "$out"
	say "configuring $out from $(basename "$fragment")"
	make -s -C "$src" O="$out" "${kmake_args[@]}" rustavailable >"$out/rustavailable.log" 2>&1 || {
		cat "$out/rustavailable.log" >&2
		die "the Rust toolchain is not usable for this kernel (see above): run 'make setup'"
	}
	make -s -C "$src" O="$out" "${kmake_args[@]}" tinyconfig >/dev/null
	"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$fragment" >"$out/merge.log" 2>&1 ||
		die "merge_config.sh failed: see $out/merge.log"
	make -s -C "$src" O="$out" "${kmake_args[@]}" olddefconfig >/dev/null
	# Every option of the fragment must have survived dependency resolution.
	local line missing=()
	while IFS= read -r line; do
		case $line in CONFIG_*=*) ;; *) continue ;; esac
		grep -qxF "$line" "$out/.config" || missing+=("$line")
	done <"$fragment"
	[ ${#missing[@]} -eq 0 ] ||
		die "the kernel dropped config options (unmet dependencies?): ${missing[*]}"
	echo "$want" >"$out/.pviommu-config"
}

build() {
	check_tools
	local src out
	src=$(prepare_tree)
	out=$(out_dir "$src")
	configure "$src" "$out"
	mkdir -p "$PVIOMMU_CACHE/ccache"
	say "building $out/$image (-j$jobs; log: $out/build.log)"
	if ! CCACHE_DIR=$PVIOMMU_CACHE/ccache make -C "$src" O="$out" "${kmake_args[@]}" \
		CC="ccache clang$LLVM_SUFFIX" -j"$jobs" "$(basename "$image")" >"$out/build.log" 2>&1; then
		grep -E 'error|Error|warning:' "$out/build.log" | head -40 >&2 || true
		tail -20 "$out/build.log" >&2
		die "kernel build failed: full log in $out/build.log"
	fi
	ln -sfn "$out" "$current"
	echo "$out/$image"
}

case ${1:-build} in
build) build ;;
tree) check_tools && prepare_tree ;;
*) die "usage: $0 build|tree" ;;
esac
