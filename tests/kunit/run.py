#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""KUnit: run the driver's suites in the project's kernel with the kernel's
own ``tools/testing/kunit/kunit.py exec`` (which boots the built kernel
under QEMU and parses its KTAP), and check that the pviommu suites ran.

    run.py [--arch x86_64|arm64] [--timeout S] [--results FILE]

On arm64 the kernel boots as a pKVM host (``qemu_arm64_pkvm.py``: EL2
under TCG, ``kvm-arm.mode=protected``); the run also checks that pKVM
initialised and that the driver, finding no KVM hypervisor above it, left
the host's devices alone.

``kunit.py run --kunitconfig=drivers/pviommu`` would configure and build a
kernel of its own; ``exec`` reuses the one ``make kernel`` built, whose
configuration has the suites built in.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "boot"))
import bootlib  # noqa: E402

# Suites that must be present: a suite that silently vanished (a config
# or link problem) is a failure, not a smaller pass count.
REQUIRED_SUITES = ["pviommu_abi", "pviommu_engine"]
KERNEL_ARGS = ["panic=-1"]
# arm64: what the console must show besides the suites.
ARM64_EXPECT = [
    "Protected hVHE mode initialized successfully",
    "pviommu: not a KVM guest (no KVM vendor-hyp UID): virtio devices use the platform's DMA path",
]


def count(node, tally):
    for case in node.get("test_cases", []):
        tally[case.get("status", "FAIL")] = tally.get(case.get("status", "FAIL"), 0) + 1
    for sub in node.get("sub_groups", []):
        count(sub, tally)


def suites(node):
    names = {node.get("name", "")}
    for sub in node.get("sub_groups", []):
        names |= suites(sub)
    return names


def tcg_only_qemu(out, binary):
    """A directory with a ``binary`` (``qemu-system-*``) that drops ``-accel
    kvm`` and ``-accel hvf``: kunit.py asks for KVM first, and KVM hangs on
    the project's machines (``KVM=1`` keeps it, as for the other boot
    tests)."""
    real = shutil.which(binary)
    if not real:
        raise bootlib.BootError(f"{binary} not found: run make setup")
    wrap = os.path.join(out, "tcg-only")
    os.makedirs(wrap, exist_ok=True)
    path = os.path.join(wrap, binary)
    with open(path, "w") as f:
        f.write("""#!/usr/bin/env python3
import os, sys
args, drop = [], False
for a in sys.argv[1:]:
    if drop:
        drop = False
        if a in ("kvm", "hvf"):
            args.pop()
            continue
    drop = a == "-accel"
    args.append(a)
os.execv(%r, [%r] + args)
""" % (real, real))
    os.chmod(path, 0o755)
    return wrap


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["x86_64", "arm64"], default="x86_64")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--results")
    args = ap.parse_args()

    kernel = bootlib.find_kernel(args.arch)
    # An out-of-tree build directory links its source tree as `source`.
    src = os.path.realpath(os.path.join(os.path.dirname(kernel), "../../../source"))
    kunit_py = os.path.join(src, "tools/testing/kunit/kunit.py")
    if not os.path.exists(kunit_py):
        raise bootlib.BootError(f"{kunit_py} missing: the kernel source tree is incomplete")

    out = bootlib.workdir("pviommu-kunit-")
    build_dir = os.path.realpath(os.path.join(os.path.dirname(kernel), "../../.."))
    report = os.path.join(out, "kunit.json")
    cmd = [sys.executable, kunit_py, "exec", "--build_dir=" + build_dir,
           "--timeout=%d" % args.timeout, "--json=" + report]
    if args.arch == "arm64":
        cmd += ["--qemu_config=" + os.path.join(HERE, "qemu_arm64_pkvm.py")]
        qemu = "qemu-system-aarch64"
    else:
        cmd += ["--arch=x86_64"]
        qemu = "qemu-system-x86_64"
    cmd += ["--kernel_args=" + a for a in KERNEL_ARGS]
    env = dict(os.environ)
    if os.environ.get("KVM") != "1":
        env["PATH"] = tcg_only_qemu(out, qemu) + os.pathsep + env["PATH"]
    started = time.time()
    run = subprocess.run(cmd, cwd=src, capture_output=True, text=True, env=env,
                         timeout=args.timeout + 60)
    seconds = time.time() - started
    print(run.stdout, end="")
    print(run.stderr, end="", file=sys.stderr)

    problems = []
    tally = {}
    try:
        with open(report) as f:
            tree = json.load(f)
        count(tree, tally)
        missing = [s for s in REQUIRED_SUITES if s not in suites(tree)]
        if missing:
            problems.append("suites did not run: " + ", ".join(missing))
    except (OSError, ValueError) as e:
        problems.append(f"no KUnit results: {e}")
    if run.returncode != 0:
        problems.append("kunit.py exec reported failures")
    # kunit.py keeps the whole console in the build directory.
    try:
        with open(os.path.join(build_dir, "test.log"), errors="replace") as f:
            console = f.read()
    except OSError:
        console = run.stdout
    bad = bootlib.panic_in(console)
    if bad:
        problems.append("kernel reported: " + bad)
    if args.arch == "arm64":
        problems += ["console lacks: " + e for e in ARM64_EXPECT if e not in console]
    for p in problems:
        print("# problem: " + p)
    passed = tally.get("PASS", 0)
    failed = sum(v for k, v in tally.items() if k not in ("PASS", "SKIP"))
    failed += 1 if problems and not failed else 0
    print(f"# kunit: {passed} passed, {failed} failed, {tally.get('SKIP', 0)} skipped "
          f"in {seconds:.1f} s")
    if args.results:
        with open(args.results, "w") as f:
            f.write(f"{passed} {failed} {tally.get('SKIP', 0)}\n")
    return 0 if not problems and failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bootlib.BootError as e:
        print(f"pviommu: error: {e}", file=sys.stderr)
        sys.exit(1)
