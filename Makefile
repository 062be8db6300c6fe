# SPDX-License-Identifier: GPL-2.0
#
# pviommu: the user-facing entry points. The kernel build reads Kbuild,
# not this file.
#
#   make run     build the protected-guest kernel and boot it with the demo
#   make check   everything: set-up, kernel, cargo, lint, KUnit, boot tests
#
# Build trees and caches live in $(PVIOMMU_CACHE) (~/.cache/pviommu by
# default), never in the repository. KDIR=/path/to/linux-7.x builds
# against your own tree (7.3 or later) instead of Debian's newest
# linux-source-7.N.

SHELL := /bin/bash
export KDIR
export PVIOMMU_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pviommu
export CARGO_TARGET_DIR ?= $(PVIOMMU_CACHE)/cargo-target

.PHONY: all setup kernel run check cargo-test loom lint kunit boot-test refhyp-test pkvm-test clean help

all: kernel

help:
	@sed -n '3,12p' Makefile

setup:
	@scripts/setup.sh

kernel: setup
	@scripts/kernel.sh build

run: kernel
	@scripts/run-demo.sh

check:
	@scripts/check.sh

# The steps of `make check`, one by one.
cargo-test: setup
	cargo test --workspace

# The ring protocol's loom models: the guest's producer against the ABI
# crate's consumer (hyp-abi/tests/loom.rs) and against the reference
# hypervisor's own drain (hyp-abi/reference/tests/loom.rs).
loom: setup
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$(CARGO_TARGET_DIR)/loom" \
		cargo test -p pviommu-hyp-abi --release --test loom
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$(CARGO_TARGET_DIR)/loom" \
		cargo test -p pviommu-reference-hyp --release --test loom

lint: setup
	@scripts/lint.sh

kunit: kernel
	@tests/kunit/run.py

boot-test: kernel
	@tests/boot/run.py

refhyp-test: kernel
	@tests/refhyp/harness.py

# A protected VM on the arm64 pKVM host, under TCG.
pkvm-test: setup
	PVIOMMU_ARCH=arm64 scripts/kernel.sh build >/dev/null
	@tests/pkvm/run.py

clean:
	rm -rf "$(PVIOMMU_CACHE)"/build-* "$(PVIOMMU_CACHE)"/current "$(PVIOMMU_CACHE)"/current-arm64 "$(CARGO_TARGET_DIR)"

# Benchmark: pviommu's modes against dma-direct and virtio-iommu, like
# for like, in interleaved rounds (tests/bench/bench.py, about 22 minutes
# on 2 cores). Boots the kernel `make kernel` built last and writes the
# report to $(PVIOMMU_CACHE)/bench/; BENCH_FLAGS=--doc also copies it into
# Documentation/performance/, e.g. BENCH_FLAGS="--rounds 7 --doc".
.PHONY: bench
bench: kernel
	@CARGO_BUILD_JOBS=1 tests/bench/bench.py $(BENCH_FLAGS)
