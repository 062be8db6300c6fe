#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""KUnit: boot the guest kernel with KUnit enabled, parse its KTAP with the
kernel's own ``tools/testing/kunit/kunit.py parse``, and check that the
pviommu suites ran.

    run.py [--timeout S] [--results FILE]

The same kernel as the boot tests: built-in suites run during boot, then
``kunit_shutdown=reboot`` ends the run (QEMU has -no-reboot).
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "boot"))
import bootlib  # noqa: E402

# Suites that must be present: a suite that silently vanished (a config
# or link problem) is a failure, not a smaller pass count.
REQUIRED_SUITES = ["pviommu_abi", "pviommu_engine"]
CMDLINE = "console=ttyS0 panic=-1 kunit.enable=1 kunit_shutdown=reboot"


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--results")
    args = ap.parse_args()

    kernel = bootlib.find_kernel()
    # An out-of-tree build directory links its source tree as `source`.
    src = os.path.realpath(os.path.join(os.path.dirname(kernel), "../../../source"))
    kunit_py = os.path.join(src, "tools/testing/kunit/kunit.py")
    if not os.path.exists(kunit_py):
        raise bootlib.BootError(f"{kunit_py} missing: the kernel source tree is incomplete")

    out = bootlib.workdir("pviommu-kunit-")
    initrd = os.path.join(out, "initramfs.cpio")
    bootlib.build_initramfs(initrd, [])
    qemu = bootlib.Qemu(kernel, initrd, CMDLINE, out).run(args.timeout)
    console = qemu.read("console")
    report = os.path.join(out, "kunit.json")
    parsed = subprocess.run(
        [sys.executable, kunit_py, "parse", qemu.console, "--json=" + report],
        capture_output=True, text=True)
    print(parsed.stdout, end="")
    print(parsed.stderr, end="", file=sys.stderr)

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
    if parsed.returncode != 0:
        problems.append("kunit.py parse reported failures")
    if qemu.timed_out:
        problems.append(f"timed out after {args.timeout:.0f} s")
    bad = bootlib.panic_in(console)
    if bad:
        problems.append("kernel reported: " + bad)
    for p in problems:
        print("# problem: " + p)
    passed = tally.get("PASS", 0)
    failed = sum(v for k, v in tally.items() if k not in ("PASS", "SKIP"))
    failed += 1 if problems and not failed else 0
    print(f"# kunit: {passed} passed, {failed} failed, {tally.get('SKIP', 0)} skipped "
          f"in {qemu.seconds:.1f} s")
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
