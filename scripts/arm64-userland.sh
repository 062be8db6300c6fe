#!/usr/bin/env bash
# Fetch Debian bookworm's static arm64 busybox for the pKVM boot test's
# host and guest initramfs, and print its path.
#
# Like scripts/linux-source.sh, apt runs on a private configuration (its
# own source list, lists, cache and an empty dpkg status under
# $PVIOMMU_CACHE/apt-arm64, with APT::Architecture=arm64), so /etc/apt,
# dpkg's database and the machine's architectures are left alone: the
# package is downloaded and unpacked, never installed. Once fetched, a
# run that cannot reach the archive keeps using it (and says so).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$here/scripts/lib.sh"

SUITE=bookworm
PACKAGE=busybox-static
MIRROR=$(debian_mirror)

apt_dir=$PVIOMMU_CACHE/apt-arm64
out_dir=$PVIOMMU_CACHE/arm64
busybox=$out_dir/busybox
stamp_file=$out_dir/.pviommu-busybox

mapfile -t apt_opts < <(private_apt_opts "$apt_dir")
apt_opts+=(-o "APT::Architecture=arm64" -o "APT::Architectures=arm64")

command -v apt-get >/dev/null || die "apt-get not found: this script needs Debian's apt"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found: install dpkg"
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] ||
	die "/usr/share/keyrings/debian-archive-keyring.gpg missing: install debian-archive-keyring"

# Little-endian unsigned integer of $3 bytes at offset $2 of file $1.
le_uint() {
	local bytes
	bytes=$(od -An -v -j"$2" -N"$3" -tu1 "$1") || return 1
	local -a b=($bytes)
	local i v=0
	for ((i = ${#b[@]} - 1; i >= 0; i--)); do
		v=$((v * 256 + b[i]))
	done
	echo "$v"
}

# An AArch64 ELF64 executable, statically linked (no PT_INTERP header).
is_static_arm64() {
	local f=$1 phoff phentsize phnum i
	[ -f "$f" ] && [ -x "$f" ] || return 1
	[ "$(od -An -N5 -tx1 "$f" | tr -d ' \n')" = 7f454c4602 ] || return 1
	[ "$(le_uint "$f" 18 2)" = 183 ] || return 1 # EM_AARCH64
	phoff=$(le_uint "$f" 32 8)
	phentsize=$(le_uint "$f" 54 2)
	phnum=$(le_uint "$f" 56 2)
	for ((i = 0; i < phnum; i++)); do
		[ "$(le_uint "$f" $((phoff + i * phentsize)) 4)" != 3 ] || return 1 # PT_INTERP
	done
}

refresh_lists() {
	mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial"
	: >"$apt_dir/state/status"
	echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" \
		>"$apt_dir/sources.list"
	apt-get "${apt_opts[@]}" -qq update >"$apt_dir/update.log" 2>&1
}

candidate() {
	apt-cache "${apt_opts[@]}" policy "$PACKAGE:arm64" 2>/dev/null |
		awk '/Candidate:/ {print $2}'
}

fetch() {
	local version stamp deb tmp
	if ! refresh_lists; then
		if is_static_arm64 "$busybox"; then
			say "cannot refresh the arm64 package lists (see $apt_dir/update.log): keeping $busybox"
			echo "$busybox"
			return 0
		fi
		die "cannot fetch the arm64 package lists of $SUITE (see $apt_dir/update.log):" \
			"the pKVM test needs an arm64 $PACKAGE; put a static arm64 busybox at $busybox by hand"
	fi
	version=$(candidate)
	[ -n "$version" ] && [ "$version" != "(none)" ] ||
		die "no arm64 $PACKAGE in $SUITE (see $apt_dir/update.log)"
	stamp="$PACKAGE $version arm64"
	if [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ] && is_static_arm64 "$busybox"; then
		echo "$busybox"
		return 0
	fi
	say "downloading $PACKAGE $version (arm64)"
	rm -rf "$apt_dir/debs"
	mkdir -p "$apt_dir/debs" "$out_dir"
	(cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" -qq download "$PACKAGE:arm64=$version") \
		>"$apt_dir/download.log" 2>&1 ||
		die "downloading $PACKAGE $version (arm64) failed (see $apt_dir/download.log)"
	deb=$(ls "$apt_dir"/debs/*.deb 2>/dev/null | head -1)
	[ -n "$deb" ] || die "apt-get download left no .deb in $apt_dir/debs"
	tmp=$(mktemp -d "$out_dir/.unpack.XXXXXX")
	# shellcheck disable=SC2064 # expand $tmp now
	trap "rm -rf '$tmp'" EXIT
	dpkg-deb -x "$deb" "$tmp" ||
		die "cannot unpack $deb: is it a complete download? Remove $apt_dir/debs and retry"
	is_static_arm64 "$tmp/bin/busybox" ||
		die "$deb holds no static arm64 /bin/busybox"
	install -m 0755 "$tmp/bin/busybox" "$busybox.new"
	mv "$busybox.new" "$busybox"
	echo "$stamp" >"$stamp_file"
	rm -rf "$tmp" "$apt_dir/debs"
	echo "$busybox"
}

fetch
