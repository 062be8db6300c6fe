#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""pKVM boot test: a protected VM on a pKVM host, under QEMU TCG.

    run.py [--scenario NAME]... [--timeout S] [--kernel IMAGE] [--keep]

Boots the arm64 kernel under ``qemu-system-aarch64 -machine
virt,virtualization=on`` with ``kvm-arm.mode=protected``; the host's /init
runs tests/pkvm/vmm (``pkvm-vmm``) once per scenario, on the same Image as
guest, with a guest initramfs whose /init runs the block workload on the
VMM's virtio-blk disk: the host's header read back, ext4 with 4 KiB and
1 KiB blocks (files written through the page cache and with fsync,
unmounted, the disk's buffers dropped, every byte compared after a
remount), O_DIRECT pattern writes and read-backs at 4 KiB-1 MiB and
concurrent readers and a writer, every byte verified, and the host's
file compared with the guest's checksum. Scenarios with another host
command line (the fault-* ones) run in a host boot of their own.
Scenarios (default: all):

  protected         --protected --adversarial, restricted DMA pool (default
                    16 MiB): the workload passes, no request faults, every
                    probe of a private guest page is denied
  normal            --adversarial, a normal VM: the workload passes and the
                    host reads every probed page (the negative control)
  protected-swiotlb --protected --restricted-pool 0, guest swiotlb=8192: the
                    stock path without a pool bounces through the default
                    SWIOTLB, which a pKVM guest shares at boot (its default
                    size, RAM/1024, livelocks 1 MiB requests)
  protected-pviommu --protected --adversarial with the guest's pviommu bound
                    (share mode, the EL2 side from kernel/patches): also
                    0 hypercalls on map, at most one SYNC per request, and
                    EL2's own counters (STATS) agreeing with the guest's
  protected-pviommu-bounce, protected-pviommu-sync
                    the same in the pviommu's bounce and sync modes
  fault-panic       share mode on a host whose EL2 fails one revocation
                    (kvm-arm.pviommu_fail_unshare=): the guest panics
                    (its default policy) before reusing the memory, and
                    every block it verified before is in the host's file
  fault-stop        the same with pviommu.on_revoke_failure=stop: the
                    guest counts the pages it keeps, stops the disk, and
                    every later I/O fails
  fault-exit-stop   fault-stop with the failure in a drain on an exit
                    (no SYNC of the guest made it): the next SYNC must
                    still answer DENIED

Fails (exit 1) with a message on any failed guest check, a missing or
wrong VMM statistic, a host/guest disk checksum mismatch, a kernel panic
or oops on the console, or the timeout. Prints the timings (host boot,
each guest's boot and workload).
"""

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VMM_DIR = os.path.join(HERE, "vmm")
TARGET = "aarch64-unknown-linux-musl"

# arm64_sw.hvhe=0 id_aa64mmfr1.vh=0: pKVM in nVHE mode. In hVHE mode (the
# default on a CPU with VHE) Debian's QEMU 7.2 runs EL2 in the EL2&0
# regime but its TLBI VAE2IS/VALE2IS flushed only the EL2 regime's TLB, so
# EL2's fixmap returned the previous page after its slot was remapped (the
# pviommu's drain read the ring's header page in place of its records).
# QEMU fixed this in 8.2 ("target/arm/helper: Fix tlbmask and tlbbits for
# TLBI VAE2*"); QEMU 10.0.2 passes in hVHE. The kernel's sequence is right.
HOST_CMDLINE = ("console=ttyAMA0 kvm-arm.mode=protected arm64_sw.hvhe=0 id_aa64mmfr1.vh=0 "
                "pviommu.required=0 kunit.enable=0 panic=-1")

SCENARIO_TIMEOUT = 300  # seconds per VMM run, enforced by the host's /init
HEADER_KB = 1024   # harness-written pattern at the start of the disk
DATA_KB = 2048     # bytes written and read back per block size
SIZES = "4096 65536 1048576"
DISK_MB = 64
CHECK_OFFSET_MB = 48
CHECK_MB = DATA_KB // 1024

# EL2 fault injection (kernel/patches, CONFIG_PKVM_PVIOMMU_FAULT_INJECT):
# the Nth revocation of each protected VM's pviommu fails at EL2 and the
# page stays shared. 2000 lands after the fault workload's verified
# blocks (about 1100 revocations); "exit:16" is the 16th revocation made
# while draining the ring on an exit, which no SYNC of the guest covers
# (when it comes depends on timing: it may come before the workload, and
# then no block is verified; what must hold is that the guest learns).
FAIL_ANY = "kvm-arm.pviommu_fail_unshare=2000"
FAIL_ON_EXIT = "kvm-arm.pviommu_fail_unshare=exit:16"
FAULT_GUEST = "PKVM_WORKLOAD=fault"

# name: (pkvm-vmm options, extra guest command line, extra host command
# line). `pviommu.mode=off` (any value that is not a mode) keeps the
# guest's pviommu from binding, so virtio takes the kernel's own DMA path
# (the restricted pool). Scenarios with another host command line run in
# a host boot of their own.
SCENARIOS = {
    "protected": ("--protected --adversarial", "pviommu.mode=off", ""),
    "normal": ("--adversarial", "pviommu.mode=off", ""),
    "protected-swiotlb": ("--protected --restricted-pool 0 --adversarial",
                          "pviommu.mode=off swiotlb=8192", ""),
    "protected-pviommu": ("--protected --adversarial", "", ""),
    "protected-pviommu-bounce": ("--protected --adversarial", "pviommu.mode=bounce", ""),
    "protected-pviommu-sync": ("--protected --adversarial", "pviommu.mode=sync", ""),
    "fault-panic": ("--protected --adversarial", FAULT_GUEST, FAIL_ANY),
    "fault-stop": ("--protected --adversarial",
                   FAULT_GUEST + " pviommu.on_revoke_failure=stop", FAIL_ANY),
    "fault-exit-stop": ("--protected --adversarial",
                        FAULT_GUEST + " pviommu.on_revoke_failure=stop", FAIL_ON_EXIT),
}
DEFAULT_SCENARIOS = ["protected", "protected-swiotlb", "normal", "protected-pviommu",
                     "protected-pviommu-bounce", "protected-pviommu-sync",
                     "fault-panic", "fault-stop", "fault-exit-stop"]


class TestError(Exception):
    pass


def cache_dir():
    return os.environ.get("PVIOMMU_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pviommu")


def say(msg):
    print(f"pviommu: {msg}", file=sys.stderr, flush=True)


# --- inputs ----------------------------------------------------------------

def find_kernel(arg):
    path = arg or os.path.join(cache_dir(), "current-arm64", "arch/arm64/boot/Image")
    if not os.path.isfile(path):
        raise TestError(f"{path} missing: build the arm64 kernel first (scripts/kernel.sh, arm64 tree)")
    with open(path, "rb") as f:
        head = f.read(64)
    if head[56:60] != b"ARM\x64":
        raise TestError(f"{path} is not an arm64 Image")
    return path


def find_busybox(arg):
    if arg:
        return arg
    try:
        out = subprocess.run([os.path.join(ROOT, "scripts/arm64-userland.sh")],
                             check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        raise TestError("scripts/arm64-userland.sh failed:\n" + e.stderr.strip())
    sys.stderr.write(out.stderr)
    return out.stdout.strip().splitlines()[-1]


def build_vmm():
    target_dir = os.path.join(os.environ.get("CARGO_TARGET_DIR") or
                              os.path.join(cache_dir(), "cargo-target"), "pkvm-vmm")
    cmd = ["cargo", "build", "--quiet", "--locked", "--release", "--target", TARGET]
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir)
    r = subprocess.run(cmd, cwd=VMM_DIR, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        hint = ""
        if "target may not be installed" in r.stderr or "can't find crate for `std`" in r.stderr:
            hint = f"\nfix: rustup target add {TARGET}"
        raise TestError(f"building the VMM failed ({' '.join(cmd)} in {VMM_DIR}):\n"
                        + r.stderr.strip()[-3000:] + hint)
    return os.path.join(target_dir, TARGET, "release", "pkvm-vmm")


# --- initramfs (newc cpio, written here: no root, device nodes included) ---

class Cpio:
    def __init__(self):
        self.out = bytearray()
        self.ino = 1
        self.dirs = set()

    def _entry(self, name, mode, data=b"", rdev=(0, 0), nlink=1):
        name_b = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0]
        self.ino += 1
        self.out += b"070701" + b"".join(b"%08x" % v for v in fields) + name_b
        self.out += b"\0" * (-len(self.out) % 4)
        self.out += data
        self.out += b"\0" * (-len(self.out) % 4)

    def dir(self, name):
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self.dirs:
                self.dirs.add(d)
                self._entry(d, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name, data, mode=0o644):
        name = name.strip("/")
        if "/" in name:
            self.dir(name.rsplit("/", 1)[0])
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self._entry(name.strip("/"), stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor, mode=0o600):
        self._entry(name.strip("/"), stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        self.out += b"\0" * (-len(self.out) % 512)
        return bytes(self.out)


def base_initramfs(busybox, init_script):
    c = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    with open(busybox, "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    c.symlink("bin/sh", "busybox")
    with open(init_script, "rb") as f:
        c.file("init", f.read(), 0o755)
    return c


def disk_header():
    """Deterministic pseudo-random bytes the guest reads first."""
    rng = random.Random(0x706b766d)
    return bytes(rng.getrandbits(8) for _ in range(HEADER_KB * 1024))


def build_images(out, busybox, kernel, vmm, scenarios, vmm_args="", guest_append=""):
    header = disk_header()
    g = base_initramfs(busybox, os.path.join(HERE, "guest-init.sh"))
    g.file("etc/pkvm-guest.conf", (
        f"HEADER_SHA={hashlib.sha256(header).hexdigest()}\n"
        f"HEADER_KB={HEADER_KB}\nDATA_KB={DATA_KB}\nSIZES='{SIZES}'\n"
        f"CHECK_OFFSET_MB={CHECK_OFFSET_MB}\nCHECK_MB={CHECK_MB}\n").encode())
    guest_cpio = g.finish()

    h = base_initramfs(busybox, os.path.join(HERE, "host-init.sh"))
    with open(vmm, "rb") as f:
        h.file("bin/pkvm-vmm", f.read(), 0o755)
    with open(kernel, "rb") as f:
        h.file("guest/Image", f.read())
    h.file("guest/initramfs.cpio", guest_cpio)
    h.file("disk.img", header)
    for v in (vmm_args, guest_append):
        if "|" in v or "'" in v or "\n" in v:
            raise TestError(f"unsupported character in {v!r}")
    lines = "\n".join(f"{n}|{SCENARIOS[n][0]} {vmm_args}|{SCENARIOS[n][1]} {guest_append}"
                      for n in scenarios)
    h.file("etc/pkvm-host.conf", (
        f"DISK_MB={DISK_MB}\nCHECK_OFFSET_MB={CHECK_OFFSET_MB}\nCHECK_MB={CHECK_MB}\n"
        f"SCENARIO_TIMEOUT={SCENARIO_TIMEOUT}\n"
        f"SCENARIOS='{lines}'\n").encode())
    path = os.path.join(out, "host-initramfs.cpio")
    with open(path, "wb") as f:
        f.write(h.finish())
    return path, len(guest_cpio)


# --- QEMU ------------------------------------------------------------------

class Console:
    """QEMU's stdout, line by line, with the time each line arrived."""

    def __init__(self, proc, log_path, echo):
        self.proc = proc
        self.lines = []  # (seconds since start, text)
        self.start = time.monotonic()
        self.log = open(log_path, "w", encoding="utf-8", errors="replace")
        self.echo = echo
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        for raw in iter(self.proc.stdout.readline, b""):
            t = time.monotonic() - self.start
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.lines.append((t, line))
            self.log.write(f"[{t:8.2f}] {line}\n")
            self.log.flush()
            if self.echo:
                print(f"[{t:8.2f}] {line}", flush=True)
        self.log.close()


def qemu_args(kernel, initrd, host_extra=""):
    qemu = shutil.which("qemu-system-aarch64")
    if not qemu:
        raise TestError("qemu-system-aarch64 not found: apt-get install qemu-system-arm")
    return [qemu, "-accel", "tcg", "-machine", "virt,virtualization=on,gic-version=3",
            "-cpu", "max", "-smp", "2", "-m", "2G", "-nographic", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd,
            "-append", (HOST_CMDLINE + " " + host_extra).strip()]


def boot(args, log_path, timeout, echo):
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)

    def kill(*_):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, lambda n, f: (kill(), sys.exit(128 + n)))
           for s in (signal.SIGINT, signal.SIGTERM)}
    con = Console(proc, log_path, echo)
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        kill()
        proc.wait()
        con.thread.join(timeout=5)
        for s, h in old.items():
            signal.signal(s, h)
    return con, timed_out, time.monotonic() - con.start


# --- checks ----------------------------------------------------------------

# What the guest prints when it contains a failed revocation by panicking.
PANIC_MESSAGE = "Kernel panic - not syncing: pviommu: the hypervisor failed to revoke"

PANIC = re.compile(r"Kernel panic|BUG:|Oops|Unable to handle kernel|WARNING: CPU|"
                   r"Internal error|kernel BUG")


def kv(line, key):
    m = re.search(rf"\b{key}=(\S+)", line)
    return m.group(1) if m else None


class Scenario:
    def __init__(self, name):
        self.name = name
        self.begin = self.guest_init = self.guest_done = self.end = None
        self.results = []       # (PASS|FAIL, text)
        self.stats = None
        self.rc = None
        self.host_sha = self.guest_sha = None
        self.done_line = None
        self.panics = []
        # {(label, side): {name: value}} from PKVM-GUEST-STAT lines: the
        # pviommu's counters at the workload's start and end, the guest's
        # ("guest") and the hypervisor's own ("hyp", from STATS).
        self.pviommu = {}
        self.logs = []
        # Fault scenarios: 64 KiB blocks of the check region the guest
        # verified ({index: sha256}) and the host's file, block by block.
        self.guest_blocks = {}
        self.host_blocks = []


def parse(lines):
    host_init = host_done = None
    scen = {}
    cur = None
    problems = []
    for t, line in lines:
        # Guest and host share the console: markers may follow other text.
        if "PKVM-HOST-INIT" in line:
            host_init = t
        elif "PKVM-HOST-DONE" in line:
            host_done = t
        elif "PKVM-HOST-ERROR" in line:
            problems.append(line[line.index("PKVM-HOST-ERROR"):])
        elif "PKVM-SCENARIO-BEGIN" in line:
            name = line.split("PKVM-SCENARIO-BEGIN", 1)[1].split()[0]
            cur = scen.setdefault(name, Scenario(name))
            cur.begin = t
        elif cur is None:
            if PANIC.search(line):
                problems.append("host kernel: " + line.strip())
            continue
        elif "PKVM-GUEST-INIT" in line:
            cur.guest_init = t
        elif "PKVM-GUEST: " in line:
            rest = line.split("PKVM-GUEST: ", 1)[1]
            status, _, text = rest.partition(" ")
            cur.results.append((status, text))
        elif "PKVM-GUEST-DONE" in line:
            cur.guest_done = t
            cur.done_line = line
        elif "PKVM-GUEST-STAT " in line:
            f = line.split("PKVM-GUEST-STAT ", 1)[1].split()
            if len(f) == 4 and f[3].isdigit():
                cur.pviommu.setdefault((f[0], f[1]), {})[f[2]] = int(f[3])
        elif "PKVM-GUEST-LOG " in line:
            cur.logs.append(line.split("PKVM-GUEST-LOG ", 1)[1].strip())
        elif "PKVM-GUEST-DISK" in line:
            cur.guest_sha = kv(line, "sha256")
        elif "PKVM-GUEST-BLOCK " in line:
            f = line.split("PKVM-GUEST-BLOCK ", 1)[1].split()
            if len(f) == 2 and f[0].isdigit():
                cur.guest_blocks[int(f[0])] = kv(line, "sha256")
        elif "PKVM-HOST-BLOCKS" in line:
            cur.host_blocks = line.split("PKVM-HOST-BLOCKS", 1)[1].split()[1:]
        elif "PKVM-VMM-STATS" in line:
            try:
                cur.stats = json.loads(line.split("PKVM-VMM-STATS", 1)[1].strip())
            except ValueError as e:
                problems.append(f"{cur.name}: unparsable VMM stats ({e}): {line}")
        elif "PKVM-HOST-DISK" in line:
            cur.host_sha = kv(line, "sha256")
        elif "PKVM-SCENARIO-END" in line:
            cur.end = t
            rc = kv(line, "rc")
            cur.rc = int(rc) if rc and rc.isdigit() else None
            cur = None
        elif PANIC.search(line):
            cur.panics.append(line.strip())
    return host_init, host_done, scen, problems


def check(s):
    """Problems with scenario ``s`` (an empty list when it passed)."""
    p = []
    st = s.stats
    if st is not None and st["guest_exit"].startswith("signal"):
        p.append(f"the guest was still running at the scenario timeout ({SCENARIO_TIMEOUT} s); "
                 f"last guest result: {s.results[-1] if s.results else 'none'}; "
                 f"first VMM error: {st['first_error']}")
    if st is None:
        why = " = killed at the scenario timeout" if s.rc == 137 else ""
        return [f"no PKVM-VMM-STATS line (VMM exit status {s.rc}{why})"
                + (f"; last guest result: {s.results[-1]}" if s.results else "")]
    if s.name.startswith("fault-"):
        return check_fault(s)
    blk, adv = st["blk"], st["adversary"]
    if s.name in SCENARIOS:
        p += guest_passed(s)
        if st["protected"] != s.name.startswith("protected"):
            p.append(f"VMM reports protected={st['protected']}")
        if blk["requests"] == 0 or blk["bytes_written"] == 0 or blk["bytes_read"] == 0:
            p.append(f"no disk traffic counted: {blk}")
        if blk["ioerr"] or blk["request_faults"] or blk["ring_faults"] or blk["bad_chains"]:
            p.append(f"failed requests: ioerr={blk['ioerr']} request_faults={blk['request_faults']} "
                     f"ring_faults={blk['ring_faults']} bad_chains={blk['bad_chains']}"
                     f" first_error={st['first_error']}")
        if s.host_sha is None or s.host_sha != s.guest_sha:
            p.append(f"host file checksum {s.host_sha} != guest's {s.guest_sha}")
        if adv["attempts"] == 0:
            p.append("the adversary made no attempts")
        if s.name.startswith("protected"):
            if s.name == "protected" and st["restricted_pool_mib"] == 0:
                p.append("no restricted DMA pool")
            # Stock path: nothing in the probe set is ever shared. With the
            # pviommu, DMA buffers may come from the freed initrd and be
            # shared in place (readable_shared); violations stay 0.
            strict = s.name in ("protected", "protected-swiotlb")
            if adv["violations"] or adv["denied"] == 0 or (strict and adv["denied"] != adv["attempts"]):
                p.append(f"host read private guest memory: {adv}")
        elif adv["denied"]:
            p.append(f"a normal VM's pages were denied to the host: {adv}")
        if s.name.endswith("-pviommu"):
            p += check_pviommu(s, blk)
    return p


def check_pviommu(s, blk):
    """The pviommu's guarantees, from the guest's and EL2's counters."""
    g, h = delta(s, "guest"), delta(s, "hyp")
    if not g or not h:
        return ["no pviommu counters from the guest (guest and hyp_stats): "
                + "; ".join(s.logs or ["no PKVM-GUEST-STAT lines"])]
    mode = s.name.rsplit("-", 1)[1] if s.name.count("-") > 1 else "share"
    p = []
    direct = g.get("hcall_share", 0) + g.get("hcall_unshare", 0)
    if mode == "sync":
        if not g.get("hcall_share") or not g.get("hcall_unshare"):
            p.append(f"sync mode made no SHARE/UNSHARE calls: {g}")
    elif direct:
        p.append(f"hypercalls on map in {mode} mode: share={g.get('hcall_share')} "
                 f"unshare={g.get('hcall_unshare')}")
    if g.get("hcall_sync", 0) > blk["requests"]:
        p.append(f"more SYNCs ({g['hcall_sync']}) than virtio-blk requests ({blk['requests']})")
    for k in ("unshare_errors", "pages_leaked", "map_errors", "pool_exhausted"):
        if g.get(k, 0):
            p.append(f"guest {k}={g[k]}")
    # What the guest left shared is what EL2 left shared. (Pages mapped and
    # unmapped between two drains are never shared at all, so only the
    # net counts must agree.)
    # A chunk the bounce pool grew by is shared with SHARE (not counted
    # in hcall_share): EL2 counts its pages too.
    grown = g.get("pool_grow_pages", 0)
    net_g = g.get("pages_shared", 0) - g.get("pages_unshared", 0) + grown
    net_h = h.get("pages_shared", 0) - h.get("pages_unshared", 0)
    if net_g != net_h:
        p.append(f"the guest's shares changed by {net_g} pages, EL2's by {net_h}")
    # Revocations are completed by invalidations, at most one per page and
    # at least one per batch.
    inval, unshared = h.get("invalidations", 0), h.get("pages_unshared", 0)
    if (unshared and not inval) or inval > unshared:
        p.append(f"EL2 unshared {unshared} pages with {inval} invalidations")
    if mode == "share":
        if h.get("records", 0) > g.get("ring_records", 0):
            p.append(f"guest published {g.get('ring_records', 0)} records, EL2 read {h.get('records', 0)}")
        for k in ("records", "pages_shared", "pages_unshared", "invalidations"):
            if h.get(k, 0) == 0:
                p.append(f"EL2 counted no {k} during the workload: {h}")
    if mode == "bounce" and (g.get("bounced", 0) == 0 or h.get("pages_shared", 0) != grown):
        p.append(f"bounce mode: bounced={g.get('bounced')} EL2 pages_shared={h.get('pages_shared')}")
    for k in ("refused", "absent", "bad_records"):
        if h.get(k, 0):
            p.append(f"EL2 {k}={h[k]}: {h}")
    return p


def guest_passed(s):
    """Problems with the guest's own run: a failed check, no results, a
    kernel panic or oops, or an end other than a clean power-off."""
    p = [f"guest check failed: {t}" for r, t in s.results if r != "PASS"]
    if not s.results:
        p.append("the guest reported no results (did its /init run?)")
    if s.panics:
        p.append("guest kernel: " + s.panics[0])
    if s.stats["guest_exit"] != "poweroff" or s.rc != 0:
        p.append(f"guest ended with {s.stats['guest_exit']}, VMM exit status {s.rc} "
                 "(want poweroff, 0)")
    return p


def check_fault(s):
    """EL2 failed one revocation: the guest contained it and lost nothing."""
    p = []
    st, adv = s.stats, s.stats["adversary"]
    if s.name == "fault-panic":
        # The default policy: panic before any of the memory is reused.
        if not any(PANIC_MESSAGE in line for line in s.panics):
            p.append(f"no pviommu panic after the failed revocation (guest {st['guest_exit']}); "
                     f"last guest result: {s.results[-1] if s.results else 'none'}")
        if st["guest_exit"] != "reset":
            p.append(f"guest ended with {st['guest_exit']} (want reset, after its panic)")
    else:
        p += guest_passed(s)
        h = s.pviommu.get(("end", "hyp"), {})
        if not h.get("refused"):
            p.append(f"EL2 counted no refused revocation: {h}")
    # Nothing the guest verified before the failure is lost.
    if not s.guest_blocks and s.name != "fault-exit-stop":
        p.append("the guest verified no block before the failure")
    for i, sha in sorted(s.guest_blocks.items()):
        if i >= len(s.host_blocks) or s.host_blocks[i] != sha:
            p.append(f"block {i} the guest verified differs in the host's file")
            break
    if adv["violations"] or adv["denied"] == 0:
        p.append(f"host read private guest memory: {adv}")
    return p


def delta(s, side):
    """The pviommu counters of ``side`` over the workload (end - start)."""
    start, end = s.pviommu.get(("start", side)), s.pviommu.get(("end", side))
    if not end:
        return {}
    start = start or {}
    return {k: v - start.get(k, 0) for k, v in end.items()}


def fmt(t):
    return "-" if t is None else f"{t:.1f} s"


def report(host_init, host_done, scen, names, total):
    print(f"# host boot (QEMU start to host /init): {fmt(host_init)}")
    for n in names:
        s = scen.get(n)
        if not s:
            print(f"# {n}: did not start")
            continue
        boot = s.guest_init - s.begin if s.guest_init and s.begin else None
        work = s.guest_done - s.guest_init if s.guest_done and s.guest_init else None
        whole = s.end - s.begin if s.end and s.begin else None
        print(f"# {n}: guest boot {fmt(boot)}, workload {fmt(work)}, scenario {fmt(whole)}")
        for r, t in s.results:
            print(f"#   {r} {t}")
        if s.stats:
            st = s.stats
            b, a, e = st["blk"], st["adversary"], st["exits"]
            print(f"#   vmm: exit={st['guest_exit']} rc={s.rc} exits={e['total']} (mmio {e['mmio']}, "
                  f"hypercall {e['hypercall']}, other {e['other']}), requests={b['requests']} "
                  f"ok={b['ok']} ioerr={b['ioerr']} faults={b['request_faults']}+{b['ring_faults']} "
                  f"read={b['bytes_read']} written={b['bytes_written']} pool={st['restricted_pool_mib']}MiB")
            print(f"#   adversary: attempts={a['attempts']} denied={a['denied']} "
                  f"violations={a['violations']} skipped_shared={a['skipped_shared']}")
            print(f"#   PKVM-VMM-STATS {json.dumps(st, separators=(',', ':'))}")
        for side in ("guest", "hyp"):
            d = delta(s, side)
            if d:
                print(f"#   pviommu {side} (workload): " + " ".join(f"{k}={v}" for k, v in sorted(d.items())))
        for line in s.logs:
            print(f"#   guest: {line}")
    print(f"# total: {total:.1f} s (host done at {fmt(host_done)})")


def main():
    global SCENARIO_TIMEOUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                    help="repeatable; default: " + ", ".join(DEFAULT_SCENARIOS))
    ap.add_argument("--timeout", type=float, default=1500,
                    help="all host boots together (default 1500 s)")
    ap.add_argument("--scenario-timeout", type=int, default=SCENARIO_TIMEOUT,
                    help=f"one VMM run (default {SCENARIO_TIMEOUT} s)")
    ap.add_argument("--kernel", help="arm64 Image (default: the cache's current-arm64 build)")
    ap.add_argument("--busybox", help="static arm64 busybox (default: scripts/arm64-userland.sh)")
    ap.add_argument("--vmm-args", default="", help="extra pkvm-vmm options for every scenario (e.g. --verbose)")
    ap.add_argument("--guest-append", default="", help="extra guest kernel command line")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--results", help="write 'passed failed skipped' counts here (make check)")
    ap.add_argument("--quiet", action="store_true", help="do not echo the console")
    args = ap.parse_args()
    names = args.scenario or DEFAULT_SCENARIOS
    SCENARIO_TIMEOUT = args.scenario_timeout

    kernel = find_kernel(args.kernel)
    busybox = find_busybox(args.busybox)
    say("building pkvm-vmm for " + TARGET)
    vmm = build_vmm()
    out = tempfile.mkdtemp(prefix="pviommu-pkvm-")
    # One host boot per host command line, in the order first named.
    groups = {}
    for n in names:
        groups.setdefault(SCENARIOS[n][2], []).append(n)
    try:
        problems, scen, total, consoles = [], {}, 0.0, []
        deadline = time.monotonic() + args.timeout
        for i, (host_extra, group) in enumerate(groups.items()):
            work = os.path.join(out, f"boot{i}")
            os.makedirs(work)
            initrd, guest_size = build_images(work, busybox, kernel, vmm, group,
                                              args.vmm_args, args.guest_append)
            say(f"host initramfs {os.path.getsize(initrd) >> 10} KiB (guest initramfs "
                f"{guest_size >> 10} KiB); booting the pKVM host under TCG "
                f"({', '.join(group)}){' with ' + host_extra if host_extra else ''}")
            log = os.path.join(work, "console.log")
            left = max(60.0, deadline - time.monotonic())
            con, timed_out, took = boot(qemu_args(kernel, initrd, host_extra), log, left,
                                        not args.quiet)
            total += took
            consoles.append((con, log))
            host_init, host_done, got, found = parse(con.lines)
            scen.update(got)
            report(host_init, host_done, got, group, took)
            problems += found
            if timed_out:
                problems.append(f"host boot {i} timed out after {left:.0f} s")
            if host_init is None:
                problems.append(f"host boot {i} never reached its /init")
        passed = failed = 0
        for n in names:
            mine = [f"{n}: scenario did not start"] if n not in scen else \
                [f"{n}: {q}" for q in check(scen[n])]
            problems += mine
            passed, failed = (passed, failed + 1) if mine else (passed + 1, failed)
        for q in problems:
            print(f"# problem: {q}")
        if problems:
            for con, log in consoles:
                print(f"# console of {log} (last 30 lines):")
                for _, line in con.lines[-30:]:
                    print("#   " + line[:300])
            print("# full console logs are in the work directory"
                  + ("" if args.keep else " (removed; use --keep)"))
        if problems and not failed:
            failed = 1
        print(f"# all host boots: {total:.1f} s")
        print(f"pkvm: {passed} passed, {failed} failed")
        if args.results:
            with open(args.results, "w") as f:
                f.write(f"{passed} {failed} 0\n")
        return 1 if problems else 0
    finally:
        if args.keep:
            say(f"work directory kept: {out}")
        else:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TestError as e:
        print(f"pviommu: error: {e}", file=sys.stderr)
        sys.exit(1)
