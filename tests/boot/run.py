#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Boot tests: boot the guest kernel and run guest scripts as TAP tests.

    run.py [--timeout S] [--results FILE] [SCRIPT...]   # default: tests/boot/guest/*.sh

Fails on any ``not ok``, a missing result, a kernel panic/oops/BUG/WARNING
on the console, or a timeout. Prints the TAP, and with ``--results`` writes
``passed failed skipped`` counts for the summary of ``make check``.
"""

import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootlib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CMDLINE = "console=ttyS0 loglevel=4 panic=-1 kunit.enable=0 initcall_debug"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scripts", nargs="*")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--results")
    ap.add_argument("--append", default="", help="extra kernel command line")
    args = ap.parse_args()

    kernel = bootlib.find_kernel()
    scripts = args.scripts or sorted(glob.glob(os.path.join(HERE, "guest", "*.sh")))
    out = bootlib.workdir()
    initrd = os.path.join(out, "initramfs.cpio")
    bootlib.build_initramfs(initrd, scripts)
    qemu = bootlib.Qemu(kernel, initrd, (CMDLINE + " " + args.append).strip(), out)
    qemu.run(args.timeout)

    console, tap = qemu.read("console"), qemu.read("tap")
    print(tap, end="")
    result = bootlib.parse_tap(tap)
    if qemu.timed_out:
        result.problems.append(f"timed out after {args.timeout:.0f} s")
    bad = bootlib.panic_in(console)
    if bad:
        result.problems.append("kernel reported: " + bad)
    for p in result.problems:
        print("# problem: " + p)
    if result.problems:
        print("# console (last 40 lines):")
        for line in console.splitlines()[-40:]:
            print("#   " + line)
        qemu_log = qemu.read("qemu").strip()
        if qemu_log:
            print("# qemu: " + qemu_log)
    failed = len(result.failed) + (1 if result.problems else 0)
    print(f"# boot: {len(result.passed)} passed, {failed} failed, "
          f"{len(result.skipped)} skipped in {qemu.seconds:.1f} s")
    if args.results:
        with open(args.results, "w") as f:
            f.write(f"{len(result.passed)} {failed} {len(result.skipped)}\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bootlib.BootError as e:
        print(f"pviommu: error: {e}", file=sys.stderr)
        sys.exit(1)
