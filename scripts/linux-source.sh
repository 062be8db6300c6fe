#!/usr/bin/env bash
# Fetch Debian's newest linux-source-7.N (N >= 3) without changing the
# machine's release, and print the path of its tarball.
#
# The package is architecture-independent and only carries a tarball,
# so it is downloaded and unpacked, never installed: apt runs on a
# private configuration (its own source list, lists and cache under
# $PVIOMMU_CACHE/apt), which leaves /etc/apt and dpkg's database alone.
# Debian replaces these packages as point releases arrive, so the newest
# 7.N the archive offers is taken; once one has been fetched, a run that
# cannot reach the archive keeps using it (and says so).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$here/scripts/lib.sh"

# The oldest minor release the patch series and the driver support.
MIN_MINOR=3
# Suites that carry linux-source-7.N for Debian 12 machines.
SUITES=(trixie-backports sid)
MIRROR=$(debian_mirror)

apt_dir=$PVIOMMU_CACHE/apt
src_dir=$PVIOMMU_CACHE/linux-source

mapfile -t apt_opts < <(private_apt_opts "$apt_dir")

# The newest tarball fetched before, if any.
cached_tarball() {
	local t
	t=$(ls "$src_dir"/usr/src/linux-source-7.*.tar.xz 2>/dev/null | sort -V | tail -1)
	[ -n "$t" ] && echo "$t"
}

refresh_lists() {
	mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial"
	: >"$apt_dir/state/status"
	local s
	: >"$apt_dir/sources.list"
	for s in "${SUITES[@]}"; do
		echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $s main" \
			>>"$apt_dir/sources.list"
	done
	apt-get "${apt_opts[@]}" -qq update >"$apt_dir/update.log" 2>&1
}

# "7.N version" of the newest linux-source-7.N with N >= MIN_MINOR.
newest_package() {
	local name best="" best_minor=-1 minor
	while read -r name _; do
		minor=${name#linux-source-7.}
		case $minor in '' | *[!0-9]*) continue ;; esac
		[ "$minor" -ge "$MIN_MINOR" ] && [ "$minor" -gt "$best_minor" ] || continue
		best=$name best_minor=$minor
	done < <(apt-cache "${apt_opts[@]}" search --names-only '^linux-source-7\.[0-9]+$')
	[ -n "$best" ] || return 1
	echo "$best $(apt-cache "${apt_opts[@]}" policy "$best" | awk '/Candidate:/ {print $2}')"
}

fetch() {
	local pkg version deb stamp
	if ! refresh_lists; then
		if cached_tarball >/dev/null; then
			say "cannot refresh the package lists (see $apt_dir/update.log): keeping $(cached_tarball)"
			cached_tarball
			return 0
		fi
		die "cannot fetch the package lists of ${SUITES[*]} (see $apt_dir/update.log):" \
			"a Linux >= 7.$MIN_MINOR source is needed; pass KDIR=/path/to/linux-7.x instead"
	fi
	read -r pkg version < <(newest_package) ||
		die "no linux-source-7.N with N >= $MIN_MINOR in ${SUITES[*]}:" \
			"pass KDIR=/path/to/linux-7.x (a tree with Rust support) instead"
	stamp="$pkg $version"
	if [ "$(cat "$src_dir/.pviommu-package" 2>/dev/null)" = "$stamp" ] && cached_tarball >/dev/null; then
		cached_tarball
		return 0
	fi
	say "downloading $pkg $version"
	rm -rf "$apt_dir/debs" "$src_dir.tmp"
	mkdir -p "$apt_dir/debs" "$src_dir.tmp"
	(cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" -qq download "$pkg=$version") \
		>"$apt_dir/download.log" 2>&1 ||
		die "downloading $pkg $version failed (see $apt_dir/download.log)"
	deb=$(ls "$apt_dir"/debs/*.deb)
	dpkg-deb -x "$deb" "$src_dir.tmp" ||
		die "cannot unpack $deb: is it a complete download? Remove $apt_dir/debs and retry"
	ls "$src_dir.tmp"/usr/src/linux-source-7.*.tar.xz >/dev/null 2>&1 ||
		die "$deb holds no linux-source tarball"
	echo "$stamp" >"$src_dir.tmp/.pviommu-package"
	rm -rf "$src_dir" "$apt_dir/debs"
	mv "$src_dir.tmp" "$src_dir"
	cached_tarball
}

fetch
