# Shared settings and helpers for the project's scripts. Sourced, not run.

# Where build trees, tools and caches live: never inside the repository.
: "${PVIOMMU_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/pviommu}"
: "${PVIOMMU_TOOLS:=$PVIOMMU_CACHE/tools}"
BINDGEN_VERSION=0.73.0
export PVIOMMU_CACHE PVIOMMU_TOOLS
export PATH="$PVIOMMU_TOOLS/bin:$PATH"

say() { printf 'pviommu: %s\n' "$*" >&2; }
die() {
	printf 'pviommu: error: %s\n' "$*" >&2
	exit 1
}
