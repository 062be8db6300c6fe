# Shared settings and helpers for the project's scripts. Sourced, not run.

# Where build trees, tools and caches live: never inside the repository.
: "${PVIOMMU_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/pviommu}"
: "${PVIOMMU_TOOLS:=$PVIOMMU_CACHE/tools}"
BINDGEN_VERSION=0.73.0
CARGO_FUZZ_VERSION=0.13.2
PLY_VERSION=3.11
GITPYTHON_VERSION=3.2.1
# The LLVM toolchain of the kernel build, as the kernel's LLVM=-19 names
# it: Linux 7.x needs LLVM >= 17, Debian 12 has 19 as clang-19 & co.
: "${LLVM_SUFFIX:=-19}"
# bindgen must parse the headers with the same LLVM as the compiler.
: "${LIBCLANG_PATH:=/usr/lib/llvm${LLVM_SUFFIX}/lib}"
export PVIOMMU_CACHE PVIOMMU_TOOLS LLVM_SUFFIX LIBCLANG_PATH
export PATH="$PVIOMMU_TOOLS/bin:$PATH"

say() { printf 'pviommu: %s\n' "$*" >&2; }
die() {
	printf 'pviommu: error: %s\n' "$*" >&2
	exit 1
}

# private_apt_opts DIR: apt options, one per line, for a private apt
# configuration under DIR (its own source list, lists, cache and an empty
# dpkg status): /etc/apt, dpkg's database and the machine's release and
# architectures are left alone. Read with: mapfile -t opts < <(...).
private_apt_opts() {
	local d=$1 o
	for o in "Dir::Etc::SourceList=$d/sources.list" "Dir::Etc::SourceParts=/dev/null" \
		"Dir::Etc::Preferences=/dev/null" "Dir::Etc::PreferencesParts=/dev/null" \
		"Dir::State=$d/state" "Dir::State::status=$d/state/status" "Dir::Cache=$d/cache" \
		"APT::Sandbox::User=root" "Debug::NoLocking=1" "Acquire::Languages=none"; do
		printf '%s\n' -o "$o"
	done
}

# debian_mirror: the Debian archive this machine's own apt uses (the first
# URI of /etc/apt/sources.list{,.d} that is not a security archive), or
# $PVIOMMU_DEBIAN_MIRROR when set. The private configurations fetch from
# it, so no archive address is written into the project.
debian_mirror() {
	if [ -n "${PVIOMMU_DEBIAN_MIRROR:-}" ]; then
		echo "$PVIOMMU_DEBIAN_MIRROR"
		return
	fi
	local uri
	uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		/etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '/^[[:space:]]*#/ { next }
		     /^deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }
		     /^URIs:/ { for (i = 2; i <= NF; i++) print $i }' |
		grep -v -e '-security' -e 'security\.' | grep -m1 '/debian/*$' || true)
	[ -n "$uri" ] || die "no Debian archive in /etc/apt/sources.list{,.d}: set PVIOMMU_DEBIAN_MIRROR to one"
	echo "${uri%/}"
}
