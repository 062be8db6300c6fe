#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# fetch-qemu.sh: Debian trixie-backports' QEMU, for the harness's
# devices-console scenario only; prints the path of a wrapper that runs it.
#
# QEMU 7.2 (bookworm) has no vhost-user console, and bookworm-backports'
# 10.0 refuses to create its generic vhost-user device ("Parameter
# 'driver' expects a pluggable device type"); from 10.2 on it is the
# user-creatable vhost-user-test-device-pci. trixie's build needs
# trixie's C library, so the package and everything it depends on are
# downloaded through a private apt configuration (nothing installed;
# /etc/apt and dpkg's database are left alone), unpacked into the cache
# with dpkg -x, and run through trixie's own dynamic loader.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

apt_dir=$PVIOMMU_CACHE/apt-qemu-trixie
root=$PVIOMMU_CACHE/qemu-trixie
wrapper=$root/qemu-system-x86_64
if [ -x "$wrapper" ] && [ -e "$root/.complete" ]; then
	echo "$wrapper"
	exit 0
fi

mirror=$(debian_mirror)

mapfile -t apt_opts < <(private_apt_opts "$apt_dir")
apt_opts+=(-o APT::Install-Recommends=0)
mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial"
: >"$apt_dir/state/status"
: >"$apt_dir/sources.list"
for suite in trixie trixie-backports; do
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" \
		>>"$apt_dir/sources.list"
done
say "fetching trixie-backports' QEMU into $root (once)"
apt-get "${apt_opts[@]}" -qq update >"$apt_dir/update.log" 2>&1 ||
	die "cannot fetch trixie's package lists (see $apt_dir/update.log)"
apt-get "${apt_opts[@]}" -qq -y --download-only install -t trixie-backports \
	qemu-system-x86 qemu-system-data >"$apt_dir/download.log" 2>&1 ||
	die "cannot download trixie-backports' QEMU (see $apt_dir/download.log)"

rm -rf "$root.tmp"
mkdir -p "$root.tmp"
for deb in "$apt_dir"/cache/archives/*.deb; do
	dpkg -x "$deb" "$root.tmp" || die "cannot unpack $deb"
done
lib=usr/lib/x86_64-linux-gnu
[ -x "$root.tmp/$lib/ld-linux-x86-64.so.2" ] && [ -x "$root.tmp/usr/bin/qemu-system-x86_64" ] ||
	die "the download has no QEMU or no dynamic loader (see $apt_dir/download.log)"
cat >"$root.tmp/qemu-system-x86_64" <<'WRAPPER'
#!/bin/sh
# trixie's QEMU on trixie's C library, both unpacked beside this file.
r=$(dirname "$(readlink -f "$0")")
l=$r/usr/lib/x86_64-linux-gnu
exec "$l/ld-linux-x86-64.so.2" --library-path "$l:$r/lib/x86_64-linux-gnu" \
	"$r/usr/bin/qemu-system-x86_64" -L "$r/usr/share/qemu" "$@"
WRAPPER
chmod +x "$root.tmp/qemu-system-x86_64"
"$root.tmp/qemu-system-x86_64" -device vhost-user-test-device-pci,help >/dev/null 2>&1 ||
	die "trixie's QEMU does not run here, or has no vhost-user-test-device-pci"
touch "$root.tmp/.complete"
rm -rf "$root"
mv "$root.tmp" "$root"
echo "$wrapper"
