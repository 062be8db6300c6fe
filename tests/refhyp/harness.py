#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Boot tests against the reference hypervisor (pviommu-refhyp).

    harness.py [--scenario NAME]... [--timeout S] [--results FILE] [--json FILE]

Each scenario starts the reference hypervisor and QEMU (TCG, q35, guest RAM
in a shared file, ivshmem-doorbell for the mailbox, vhost-user-blk-pci for
the disk), runs the guest workloads of ``tests/refhyp/guest/`` and asserts
on both the guest's TAP and the hypervisor's counters:

- ``share`` / ``bounce`` / ``sync``: the driver in each mode; every test
  point passes and the host view saw no violation;
- ``adversarial``: ``share`` with the adversarial host and the stale-TLB
  model; every attack is denied: on what the guest revoked (its oracle
  reads the guest's table and ring, not the state machine), on pages never
  shared, on the table and ring;
- ``lazy``: the same host against ``pviommu.strict=0``, which skips the
  per-buffer ``SYNC``: the negative control of ``adversarial``, which
  passes only if the adversary reaches pages the guest reused before
  revoking them (the workloads still pass: attacks change no byte);
- ``fault-panic``: the hypervisor fails a ``SYNC``; the guest must panic
  with the pviommu's message (``pviommu.on_revoke_failure=panic``, the
  default) before any memory is reused;
- ``fault-sync`` / ``fault-unshare``: the same with
  ``on_revoke_failure=stop``, for ``SYNC`` or ``UNSHARE``; the guest's
  fail-safe test points (``guest-faults/``) must pass: the disk is
  stopped, nothing written is lost;
- ``classes`` / ``classes-bounce``: QEMU's own virtio-net, -console, -rng,
  -scsi and 9p devices beside the enforcing disk (share and bounce mode):
  every class negotiates ``ACCESS_PLATFORM`` and maps through the pviommu,
  real I/O on each with every byte checked (the host compares the
  console's output and the 9p copy), then all devices busy at once.
  QEMU's backends read guest RAM directly: these are not enforced;
- ``big-guest``: ``share`` in a 5 GiB guest, whose frames reach 7 GiB:
  the driver covers RAM above 4 GiB;
- ``pool-pressure``: ``classes-bounce`` with a 1 MiB initial pool, which
  virtio-net's receive buffers fill: every device still completes its
  I/O because the pool grows by chunks shared with ``SHARE``;
- ``calibrated``: ``share`` with the bounce threshold the driver
  measures at boot (``pviommu.bounce_threshold=0``; the other scenarios pin
  it to one page): the thresholds are checked for sanity and every
  workload passes;
- ``busy-sync`` / ``busy-unshare``: the hypervisor answers ``BUSY`` 200
  times; the guest retries and every workload passes;
- ``devices`` / ``devices-bounce`` / ``devices-sync`` /
  ``devices-adversarial``: the hypervisor's own enforcing vhost-user
  backends for virtio-net, -vsock and -rng (``guest-devices/``): UDP
  datagrams of 64 to 1472 bytes and a TCP stream both ways against the
  backend's userspace TCP/IP peer, a vsock stream both ways against its
  echo, entropy reads; every byte compared in the guest, the stream
  checksums compared with what the peers received, no violation, and
  per class: requests, bytes, violations and time;
- ``devices-plain``: those backends with plain virtio (the negative
  control, as ``plain``): passes only if every class reports violations;
- ``devices-console``: the same plus the console, an enforcing
  vhost-user backend too (``-bounce``, ``-sync``: in those modes), behind
  QEMU's generic
  ``vhost-user-test-device-pci`` (virtio id 3). QEMU 7.2 has no
  vhost-user console and 10.0 does not let users create the generic
  device, so this scenario alone runs Debian trixie-backports' QEMU,
  unpacked into the cache by ``fetch-qemu.sh`` with a private apt
  configuration and run on its own C library. Not run by default;
- ``plain``: plain virtio, no ``iommu_platform`` and no mailbox device (so
  no working pviommu in the guest): the guest never shares
  anything, so the hypervisor must report violations (the negative
  control: it proves the harness catches a guest that bypasses the
  pviommu). The guest's I/O then never completes, so this scenario stops
  as soon as violations are seen.
- ``unenforced``: ``plain`` with ``--no-enforce``: must pass, which shows
  that ``plain`` fails because of the enforcement and nothing else. Not
  run by default.

``--kernel`` and ``--insmod`` boot another kernel whose virtio drivers are
modules (e.g. a distribution kernel), to try the harness and the backend
without the project's kernel; the modules are loaded in the given order
by a first test point.

Every process, socket and shm file is removed on success, failure, timeout
and interruption (``bootlib.Cleanup``). ``--json`` writes each scenario's
counters and timings, for the benchmark to compare modes.
"""

import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "boot"))
import bootlib  # noqa: E402

RAM = "512M"
DISK_MIB = 16
# The bounce threshold is pinned to one page so that every scenario routes
# alike whatever this machine's timings (the driver measures it at boot by
# default); ``calibrated`` runs with the measured one.
CMDLINE = "console=ttyS0 loglevel=4 panic=-1 kunit.enable=0 pviommu.bounce_threshold=4096"
# The driver's mode parameter (drivers/pviommu); share is its default.
MODE_PARAM = "pviommu.mode"
GUEST_LIB = "/etc/refhyp/lib.sh"


class Scenario:
    def __init__(self, name, mode=None, iommu=True, flags=(), expect="pass", cmdline="",
                 scripts="guest", classes=False, ram=RAM, devices=(), qemu=None):
        self.name = name
        # Guest RAM (QEMU's -m syntax).
        self.ram = ram
        # The hypervisor's own enforcing backends this scenario adds (see
        # ``DEVICE_IDS``), with the workloads of guest-devices/.
        self.devices = tuple(devices)
        # Another QEMU for this scenario ("trixie": see fetch-qemu.sh).
        self.qemu = qemu
        # Also give the guest QEMU's own virtio-net, -console, -rng, -scsi
        # and 9p devices (see ``ClassDevices``).
        self.classes = classes
        # The directory of guest workloads under tests/refhyp/.
        self.scripts = scripts
        self.mode = mode
        self.cmdline = cmdline
        # Without iommu_platform the guest gets no mailbox device either:
        # a guest without a working pviommu leaves virtio on dma-direct
        # (the driver refuses a device without ACCESS_PLATFORM otherwise).
        self.iommu = iommu
        self.flags = list(flags)
        self.expect = expect


# Virtio device ids of the enforcing backends beside the disk.
DEVICE_IDS = {"net": 1, "console": 3, "rng": 4, "vsock": 19}
DEVICES = ("net", "vsock", "rng")
# Scenarios not run without --scenario.
NOT_BY_DEFAULT = ("unenforced",)

SCENARIOS = {
    s.name: s
    for s in [
        Scenario("share", mode="share"),
        Scenario("bounce", mode="bounce"),
        # Share mode with one ring record per mapping, as before the
        # virtio core mapped a buffer in one batch: the same workloads
        # pass, and the counters show what batching spares.
        Scenario("share-unbatched", mode="share", cmdline="pviommu.batch_maps=0"),
        # The hypervisor keeps polling the mailbox for 200 us after each
        # call instead of waiting for the next doorbell: calls served by
        # an already running thread (polled_calls), every workload passes.
        Scenario("share-poll", mode="share", flags=["--poll-us", "200"]),
        Scenario("sync", mode="sync"),
        Scenario("adversarial", mode="share", flags=["--adversarial", "--stale-tlb"]),
        # Lazy mode leaves pages the host can still reach (through cached
        # translations) when the guest reuses them: the adversary must
        # catch it. The guest's own checks still pass.
        Scenario("lazy", mode="share", flags=["--adversarial", "--stale-tlb"],
                 expect="allowed", cmdline="pviommu.strict=0"),
        # The bounce threshold measured at boot (the driver's default):
        # buffers below it bounce, the rest share; every workload passes.
        Scenario("calibrated", mode="share", cmdline="pviommu.bounce_threshold=0 PART_MIB=1 ROUNDS=1"),
        # Net, vsock and rng on the hypervisor's enforcing backends.
        Scenario("devices", mode="share", scripts="guest-devices", devices=DEVICES),
        Scenario("devices-bounce", mode="bounce", scripts="guest-devices", devices=DEVICES),
        Scenario("devices-sync", mode="sync", scripts="guest-devices", devices=DEVICES),
        Scenario("devices-adversarial", mode="share", scripts="guest-devices",
                 devices=DEVICES, flags=["--adversarial"]),
        # The negative control of the device backends: plain virtio (no
        # iommu_platform, no mailbox); every class must report violations.
        Scenario("devices-plain", iommu=False, expect="violations", scripts="guest-devices",
                 devices=DEVICES, cmdline="pviommu.required=0"),
        # The console too, on trixie's QEMU, in every mode.
        Scenario("devices-console", mode="share", scripts="guest-devices",
                 devices=DEVICES + ("console",), qemu="trixie"),
        Scenario("devices-console-bounce", mode="bounce", scripts="guest-devices",
                 devices=DEVICES + ("console",), qemu="trixie"),
        Scenario("devices-console-sync", mode="sync", scripts="guest-devices",
                 devices=DEVICES + ("console",), qemu="trixie"),
        # required=0: the driver then leaves virtio alone instead of
        # refusing it, as a kernel without the pviommu would.
        Scenario("plain", iommu=False, expect="violations", cmdline="pviommu.required=0"),
        # Fault injection. By default (on_revoke_failure=panic) a failed
        # revocation panics the guest before the memory can be reused.
        Scenario("fault-panic", mode="share", flags=["--fail-syncs", "1"], expect="panic"),
        # With on_revoke_failure=stop, a failed SYNC (share) or UNSHARE
        # (sync) must stop the disk loudly, with no silent data loss, no
        # panic, no violation.
        Scenario("fault-sync", mode="share", flags=["--fail-syncs", "1"], expect="fault",
                 scripts="guest-faults", cmdline="pviommu.on_revoke_failure=stop"),
        Scenario("fault-unshare", mode="sync", flags=["--fail-unshares", "1"], expect="fault",
                 scripts="guest-faults", cmdline="pviommu.on_revoke_failure=stop"),
        # BUSY is transient (the ABI says retry): the guest retries and
        # every workload passes, nothing is stopped.
        Scenario("busy-sync", mode="share", flags=["--busy-syncs", "200"],
                 cmdline="PART_MIB=1 ROUNDS=1"),
        Scenario("busy-unshare", mode="sync", flags=["--busy-unshares", "200"],
                 cmdline="PART_MIB=1 ROUNDS=1"),
        # Degraded but correct hypervisors: partial progress and slow drains.
        # Every hypercall is slower here, so the workloads are shortened
        # (the kernel hands unknown NAME=value parameters to /init's
        # environment, which the guest scripts read).
        Scenario("partial-unshare", mode="sync", flags=["--partial-unshare", "1"],
                 cmdline="PART_MIB=1 ROUNDS=1"),
        Scenario("drain-delay", mode="share", flags=["--drain-delay-ms", "1"],
                 cmdline="PART_MIB=1 ROUNDS=1"),
        # Every other virtio device class through the pviommu, on QEMU's
        # own backends (they read guest RAM directly: not enforced).
        # A guest above 4 GiB (q35 puts 3 GiB of its 5 above the PCI
        # hole, so frames reach 7 GiB): the table and its state cover them.
        Scenario("big-guest", mode="share", ram="5G", cmdline="PART_MIB=1 ROUNDS=1"),
        Scenario("classes", mode="share", scripts="guest-classes", classes=True),
        Scenario("classes-bounce", mode="bounce", scripts="guest-classes", classes=True),
        # A pool a quarter of the default size: virtio-net's receive
        # buffers hold most of it for good, so the other devices make
        # progress only because the pool grows (40-pool.sh checks it did).
        Scenario("pool-pressure", mode="bounce", scripts="guest-classes", classes=True,
                 cmdline="pviommu.pool_kib=1024 POOL_GROWS=1"),
        # Harness self-test: the same guest with enforcement off passes,
        # so plain's failure is the enforcement's doing.
        Scenario("unenforced", iommu=False, flags=["--no-enforce"], expect="unchecked",
                 cmdline="pviommu.required=0"),
    ]
}


# What the guest prints when it contains a failed revocation by panicking.
PANIC_MESSAGE = ("Kernel panic - not syncing: pviommu: the hypervisor failed to revoke "
                 "the host's access to released memory")

class ClassDevices:
    """QEMU's own virtio-net, -console, -rng, -scsi and 9p devices, each
    with ``iommu_platform=on``, and the host side of their checks: the
    console's output file, a SCSI disk image, and a 9p directory with a
    random pattern the guest reads and copies back.

    QEMU's backends read guest RAM directly, so these prove negotiation and
    mapping through the pviommu and the data's integrity, not enforcement
    (vsock needs /dev/vhost-vsock, which these machines lack)."""

    PATTERN_BYTES = 1 << 20
    MARK = "pviommu-virtio-console-ok"

    def __init__(self, out):
        self.console = os.path.join(out, "hvc0.txt")
        self.scsi = os.path.join(out, "scsi.img")
        self.share = os.path.join(out, "9p")
        os.makedirs(self.share, exist_ok=True)
        with open(self.scsi, "wb") as f:
            f.truncate(8 << 20)
        self.pattern = os.urandom(self.PATTERN_BYTES)
        with open(os.path.join(self.share, "pattern"), "wb") as f:
            f.write(self.pattern)

    def qemu_args(self):
        opt = ",iommu_platform=on,disable-legacy=on"
        return [
            "-netdev", "hubport,id=net0,hubid=0",
            "-device", "virtio-net-pci,netdev=net0" + opt,
            "-device", "virtio-rng-pci" + opt,
            "-chardev", "file,id=hvc0,path=%s" % self.console,
            "-device", "virtio-serial-pci" + opt,
            "-device", "virtconsole,chardev=hvc0",
            "-drive", "file=%s,if=none,format=raw,id=sd0" % self.scsi,
            "-device", "virtio-scsi-pci,id=scsi0" + opt,
            "-device", "scsi-hd,drive=sd0,bus=scsi0.0",
            "-fsdev", "local,id=fs0,path=%s,security_model=none" % self.share,
            "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=share" + opt,
        ]

    def check(self, problems):
        try:
            with open(self.console, "rb") as f:
                if self.MARK.encode() not in f.read():
                    problems.append("virtio-console: the guest's line never reached the host")
        except OSError as e:
            problems.append("virtio-console: %s" % e)
        try:
            with open(os.path.join(self.share, "copy"), "rb") as f:
                if f.read() != self.pattern:
                    problems.append("9p: the guest's copy differs from the pattern")
        except OSError as e:
            problems.append("9p: no copy from the guest (%s)" % e)


class DeviceWorkloads:
    """The guest and host halves of the enforcing backends' workloads:
    the static ``devio`` tool for the initramfs, and the checks of what
    the guest reported against what the backends' peers counted."""

    # What devio prints (see guest-devices/devio.c).
    STREAM = re.compile(r"^# (tcp|vsock): sent (\d+) bytes fnv=([0-9a-f]{8}), "
                        r"received (\d+) bytes fnv=([0-9a-f]{8}), (\d+) ms$", re.M)
    UDP = re.compile(r"^# udp: (\d+) datagrams, (\d+) bytes echoed and compared, (\d+) ms$",
                     re.M)
    CONSOLE = re.compile(r"^# console: wrote (\d+) bytes fnv=([0-9a-f]{8})$", re.M)
    RNG = re.compile(r"^# rng: (\d+) bytes read", re.M)

    def __init__(self, out, devices):
        self.devices = devices
        self.devio = os.path.join(out, "devio")
        src = os.path.join(HERE, "guest-devices", "devio.c")
        try:
            subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", self.devio, src],
                           check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise bootlib.BootError("cannot build guest-devices/devio.c (%s): the device "
                                    "scenarios need gcc and libc6-dev" % e)

    def files(self):
        return {"/bin/devio": self.devio}

    def scripts(self, scripts):
        """The workloads of this scenario's classes only."""
        skip = [] if "console" in self.devices else ["50-console.sh"]
        return [s for s in scripts if os.path.basename(s) not in skip]

    def cmdline(self):
        return "DEVICES=" + ",".join(str(DEVICE_IDS[d]) for d in self.devices)

    def check(self, c, tap, problems):
        """Every class did real I/O with no violation and no failed
        request, and each peer received exactly what the guest sent."""
        if c is None:
            return
        tap = tap.replace("\r", "")
        classes = c.get("classes", {})
        for d in self.devices:
            k = classes.get(d)
            if k is None:
                problems.append("%s: no counters" % d)
                continue
            if k["requests"] == 0:
                problems.append("%s: no request reached the backend" % d)
            for key in ("violations", "requests_failed", "requests_dropped",
                        "malformed_chains"):
                if k[key]:
                    problems.append("%s: %d %s" % (d, k[key], key.replace("_", " ")))
        streams = {m.group(1): m for m in self.STREAM.finditer(tap)}
        peers = {"tcp": ("net", "tcp_last_bytes", "tcp_last_checksum"),
                 "vsock": ("vsock", "last_stream_bytes", "last_stream_checksum")}
        for kind, (cls, nbytes, sum_key) in peers.items():
            if cls not in self.devices:
                continue
            m = streams.get(kind)
            if m is None:
                problems.append("%s: the guest reported no stream" % kind)
                continue
            k = classes.get(cls, {})
            sent, sent_sum = int(m.group(2)), int(m.group(3), 16)
            if (k.get(nbytes), k.get(sum_key)) != (sent, sent_sum):
                problems.append("%s: the guest sent %d bytes (fnv %08x), the peer received "
                                "%s (fnv %s)" % (kind, sent, sent_sum, k.get(nbytes),
                                                 "%08x" % k.get(sum_key, 0)))
        if "net" in self.devices:
            m = self.UDP.search(tap)
            echoed = classes.get("net", {}).get("udp_echoed", 0)
            if m is None or echoed < int(m.group(1)):
                problems.append("udp: %d datagrams echoed by the peer, guest reported %s" % (
                    echoed, m.group(1) if m else "none"))
        if "rng" in self.devices:
            m = self.RNG.search(tap)
            written = classes.get("rng", {}).get("bytes_written", 0)
            if m is None or written < int(m.group(1)):
                problems.append("rng: the backend wrote %d bytes, the guest read %s" % (
                    written, m.group(1) if m else "none"))
        if "console" in self.devices:
            m = self.CONSOLE.search(tap)
            k = classes.get("console", {})
            if m is None or (k.get("bytes_read"), k.get("checksum")) != (
                    int(m.group(1)), int(m.group(2), 16)):
                problems.append("console: the guest wrote %s, the host got %s bytes" % (
                    m.group(0) if m else "nothing", k.get("bytes_read")))

    def all_violated(self, c):
        """Whether every class of the scenario has had a violation."""
        classes = (c or {}).get("classes", {})
        return all(classes.get(d, {}).get("violations", 0) > 0 for d in self.devices)

    @classmethod
    def summary(cls, c, tap):
        """One line per class: requests, bytes, violations, time."""
        classes = (c or {}).get("classes", {})
        tap = tap.replace("\r", "")
        times = {m.group(1): int(m.group(6)) for m in cls.STREAM.finditer(tap)}
        m = cls.UDP.search(tap)
        if m:
            times["udp"] = int(m.group(3))
        lines = []
        for name, k in sorted(classes.items()):
            if not k.get("requests"):
                continue
            t = {"net": "udp %s ms, tcp %s ms" % (times.get("udp"), times.get("tcp")),
                 "vsock": "%s ms" % times.get("vsock")}.get(name, "")
            lines.append("%s: %d requests, %d bytes read, %d written, %d violations%s" % (
                name, k["requests"], k["bytes_read"], k["bytes_written"], k["violations"],
                ", " + t if t else ""))
        return lines


def trixie_qemu():
    """Debian trixie-backports' QEMU, unpacked into the cache (fetched
    on first use by fetch-qemu.sh); its path."""
    r = subprocess.run([os.path.join(HERE, "fetch-qemu.sh")], stdout=subprocess.PIPE,
                       text=True)
    if r.returncode != 0:
        raise bootlib.BootError("cannot fetch trixie's QEMU (fetch-qemu.sh failed)")
    return r.stdout.strip()


_BUILT = []

# Cargo profile of the program; the benchmark (tests/bench) sets "release".
PROFILE = "debug"


def refhyp_binary():
    """The program, built (or found up to date) by cargo once per run: a
    stale binary from an older checkout would test old code."""
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    if not _BUILT:
        release = ["--release"] if PROFILE == "release" else []
        subprocess.run(["cargo", "build", "-q", *release, "-p", "pviommu-refhyp"], cwd=ROOT,
                       check=True)
        _BUILT.append(True)
    return os.path.join(target, PROFILE, "pviommu-refhyp")


class Refhyp:
    """One hypervisor process; its RAM file, sockets and disk are cleaned up
    whatever happens."""

    def __init__(self, out, flags=(), ram=RAM, disk_mib=DISK_MIB, queues=1, devices=()):
        tag = "pviommu-refhyp-%d-%s" % (os.getpid(), os.path.basename(out))
        # The enforcing backends beside the disk: name -> socket.
        self.devices = {d: os.path.join(out, d + ".sock") for d in devices}
        self.console_out = os.path.join(out, "console.out")
        self.ram_file = "/dev/shm/" + tag
        self.ram = ram
        self.ivshmem = os.path.join(out, "ivshmem.sock")
        self.blk = os.path.join(out, "blk.sock")
        self.disk = os.path.join(out, "disk.img")
        self.counters_file = os.path.join(out, "counters.json")
        self.log = os.path.join(out, "refhyp.log")
        for p in (self.ram_file, self.ivshmem, self.blk, self.disk, *self.devices.values()):
            bootlib.Cleanup.add_path(p)
        device_flags = []
        for d, sock in self.devices.items():
            device_flags += ["--%s-socket" % d, sock]
        if "console" in self.devices:
            device_flags += ["--console-out", self.console_out]
        with open(self.disk, "wb") as f:
            f.truncate(disk_mib << 20)
        args = [
            refhyp_binary(),
            "--ram-file", self.ram_file, "--ram-size", ram,
            "--ivshmem-socket", self.ivshmem, "--ivshmem-size", "64K",
            "--blk-socket", self.blk, "--blk-image", self.disk,
            "--blk-queues", str(queues),
            "--counters", self.counters_file, *device_flags, *flags,
        ]
        self.queues = queues
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=log, start_new_session=True,
            )
        bootlib.Cleanup.add_process(self.proc)
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        if line != "READY":
            raise bootlib.BootError("refhyp did not start: %r; %s" % (line, self.read_log()))

    def qemu_args(self, iommu=True, disk=True):
        """QEMU options for the shared RAM, the mailbox (with ``iommu``) and
        the disk (with ``disk``); pass ``machine=MACHINE`` to
        ``bootlib.Qemu`` as well."""
        blk = "vhost-user-blk-pci,chardev=blk0,num-queues=%d" % self.queues
        if iommu:
            blk += ",iommu_platform=on,disable-legacy=on"
        firmware = ["-bios", self.FIRMWARE] if os.path.exists(self.FIRMWARE) else []
        mailbox = [
            "-chardev", "socket,path=%s,id=ivshmem0" % self.ivshmem,
            "-device", "ivshmem-doorbell,chardev=ivshmem0,vectors=1",
        ] if iommu else []
        return [
            *firmware,
            "-object", "memory-backend-file,id=ram,size=%s,mem-path=%s,share=on"
            % (self.ram, self.ram_file),
            *mailbox,
            *(["-chardev", "socket,path=%s,id=blk0" % self.blk, "-device", blk] if disk else []),
            *self.device_args(iommu),
        ]

    # A MAC for the guest's virtio-net (QEMU keeps the config space).
    GUEST_MAC = "52:54:00:12:34:56"

    def device_args(self, iommu=True):
        """QEMU's front ends of the enforcing backends beside the disk."""
        opt = ",iommu_platform=on" if iommu else ""
        # virtio-net on INTx: QEMU 7.2 crashes in msix_set_vector_notifiers()
        # from vhost_net_start() when a vhost-user net device uses MSI-X.
        front = {
            "net": "virtio-net-pci,netdev=net0,mac=%s%s,disable-legacy=on,vectors=0" % (
                self.GUEST_MAC, opt),
            "vsock": "vhost-user-vsock-pci,chardev=vsock-vu%s,disable-legacy=on" % opt,
            # QEMU passes the guest's features to these two unfiltered:
            # no EVENT_IDX, which the backends do not offer.
            "rng": "vhost-user-rng-pci,chardev=rng-vu,event_idx=off" + opt,
            # QEMU's generic vhost-user device: one port, two queues, the
            # 12-byte config space read from the backend.
            "console": "vhost-user-test-device-pci,chardev=console-vu,virtio-id=3,num_vqs=2,"
                       "config_size=12,event_idx=off" + opt,
        }
        args = []
        for d, sock in self.devices.items():
            chardev = d + "-vu"
            args += ["-chardev", "socket,path=%s,id=%s" % (sock, chardev)]
            if d == "net":
                args += ["-netdev", "vhost-user,id=net0,chardev=" + chardev]
            args += ["-device", front[d]]
        return args

    MACHINE = "q35,memory-backend=ram"

    # SeaBIOS drives virtio-blk during POST and busy-waits for a request
    # whose rings the guest never shared: with enforcement the guest never
    # boots. qboot loads the kernel without touching the disk.
    FIRMWARE = "/usr/share/qemu/qboot.rom"

    def counters(self):
        """Asks for the counters (SIGUSR1) and returns them, or None."""
        try:
            os.unlink(self.counters_file)
        except FileNotFoundError:
            pass
        if self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open(self.counters_file) as f:
                    return json.load(f)
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.05)
        return None

    def stop(self):
        """SIGTERM: the program writes its final counters and exits."""
        try:
            os.unlink(self.counters_file)
        except FileNotFoundError:
            pass
        bootlib.Cleanup.stop_process(self.proc)
        try:
            with open(self.counters_file) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def read_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


def run_qemu(qemu, timeout, stop_when=None, poll=1.0):
    """``bootlib.Qemu.run`` with an early stop: ``stop_when()`` is polled
    every ``poll`` seconds and ends the run when true."""
    if stop_when is None:
        return qemu.run(timeout)
    start = time.monotonic()
    with open(qemu.console + ".qemu", "wb") as qemu_log:
        qemu.proc = subprocess.Popen(
            qemu.args, stdin=subprocess.DEVNULL, stdout=qemu_log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    bootlib.Cleanup.add_process(qemu.proc)
    while qemu.proc.poll() is None:
        if time.monotonic() - start > timeout:
            qemu.timed_out = True
            break
        if stop_when():
            break
        time.sleep(poll)
    bootlib.Cleanup.stop_process(qemu.proc)
    qemu.seconds = time.monotonic() - start
    return qemu


def guest_scripts(directory="guest"):
    return sorted(glob.glob(os.path.join(HERE, directory, "[0-9]*.sh")))


INSMOD_SCRIPT = """#!/bin/sh
# Loads the virtio modules of a modular kernel (harness --insmod).
for m in %s; do
	insmod /lib/refhyp-modules/$m || { echo "insmod $m failed"; exit 1; }
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/vda ] || { echo "no /dev/vda after loading the modules"; exit 1; }
"""


def insmod_script(out, modules):
    """A first guest script loading ``modules``; returns (script, files)."""
    names = [os.path.basename(m) for m in modules]
    path = os.path.join(out, "insmod-modules.sh")
    with open(path, "w") as f:
        f.write(INSMOD_SCRIPT % " ".join(names))
    files = {"/lib/refhyp-modules/" + n: m for n, m in zip(names, modules)}
    return path, files


def check_counters(sc, c, problems, tap=""):
    """The hypervisor's side of the verdict."""
    if c is None:
        problems.append("no counters from the hypervisor")
        return
    dev, hyp = c["device"], c["hyp"]
    if sc.expect == "violations":
        if dev["violations"] + dev.get("mapping_faults", 0) == 0:
            problems.append("plain virtio caused no violation: enforcement is not working")
        return
    f = c.get("faults", {})
    if sc.expect == "panic":
        if f.get("syncs_failed", 0) == 0:
            problems.append("no fault was injected")
        if dev["violations"] or hyp["violations"]:
            problems.append("%d violations before the panic" % hyp["violations"])
        return
    if sc.expect == "fault":
        if f.get("syncs_failed", 0) + f.get("unshares_failed", 0) == 0:
            problems.append("no fault was injected")
        if dev["violations"] or hyp["violations"]:
            problems.append("%d violations after a failed unshare" % hyp["violations"])
        return
    if sc.expect == "unchecked":
        if dev["unchecked_accesses"] == 0 or dev["violations"]:
            problems.append("--no-enforce run: %d unchecked accesses, %d violations" % (
                dev["unchecked_accesses"], dev["violations"]))
        return
    if dev["violations"]:
        problems.append("%d device accesses violated the host view" % dev["violations"])
    if dev.get("mapping_faults"):
        problems.append("%d device accesses faulted in the mappings of guest RAM" %
                        dev["mapping_faults"])
    busy = [x for x in ("--busy-syncs", "--busy-unshares") if x in sc.flags]
    if busy and f.get("syncs_busy", 0) + f.get("unshares_busy", 0) == 0:
        problems.append("no BUSY was injected")
    if "--poll-us" in sc.flags and dev.get("polled_calls", 0) == 0:
        problems.append("the polling thread served no call")
    if dev["requests_ioerr"] or dev["requests_dropped"] or dev["malformed_chains"]:
        problems.append("device errors: %d ioerr, %d dropped, %d malformed" % (
            dev["requests_ioerr"], dev["requests_dropped"], dev["malformed_chains"]))
    # The device scenarios leave the disk idle.
    if not sc.devices and (dev["bytes_read"] == 0 or dev["bytes_written"] == 0):
        problems.append("the device moved no data")
    adv = c.get("adversary", {})
    if sc.expect == "allowed":
        # The negative control: a lazy guest reuses pages it has not
        # revoked yet, and the adversary reaches them.
        if adv.get("allowed_reused", 0) == 0:
            problems.append("lazy mode: the adversary reached no reused page (%s)" % adv)
        if dev["adversarial_allowed"] != adv.get("allowed_reused", 0):
            problems.append("lazy mode: %d attacks got through, not on reused pages" % (
                dev["adversarial_allowed"] - adv.get("allowed_reused", 0)))
    elif dev["adversarial_allowed"]:
        problems.append("%d adversarial accesses were allowed: %s" % (
            dev["adversarial_allowed"], adv))
    if "--adversarial" in sc.flags and dev["adversarial_denied"] == 0:
        problems.append("the adversary made no attempt")
    # Strict share mode: one SYNC per virtio buffer (the disk's requests),
    # never one per descriptor; the driver's ring-full drains come on top,
    # and a 4096-record ring does not fill under these workloads.
    if (sc.mode == "share" and "--fail-syncs" not in sc.flags and not sc.classes
            and not sc.devices):
        # The map/unmap microbenchmark's SYNCs are not disk buffers.
        bench = sum(int(n) for n in re.findall(r"(\d+) SYNC, \d+ SHARE, \d+ UNSHARE for", tap))
        # Nor are the empty SYNCs that measured the bounce threshold at
        # boot (the driver's bounce_threshold file, printed by
        # guest/90-pviommu-counters.sh).
        calibration = re.search(r"source measured.*?rounds (\d+)", tap, re.S)
        bench += int(calibration.group(1)) if calibration else 0
        syncs = hyp["calls"].get("sync", 0) - bench
        if syncs > dev["requests"]:
            problems.append("%d SYNCs for %d disk requests: more than one per buffer" % (
                syncs, dev["requests"]))
    # Every refused device access, checked or through the mappings, is a
    # violation of the state machine; the adversary's are not (it probes
    # the mappings, it does not ask the state machine).
    refused = dev["violations"] + dev.get("mapping_faults", 0)
    if hyp["violations"] != refused:
        problems.append("hyp violations %d != device %d + mapping faults %d" % (
            hyp["violations"], dev["violations"], dev.get("mapping_faults", 0)))


def run_scenario(sc, kernel, timeout, append="", modules=(), queues=1):
    out = bootlib.workdir("pviommu-refhyp-%s-" % sc.name)
    initrd = os.path.join(out, "initramfs.cpio")
    scripts = guest_scripts(sc.scripts)
    files = {GUEST_LIB: os.path.join(HERE, "guest", "lib.sh")}
    # Debian's mke2fs for the ext4 workload (guest/35-blk-ext4.sh).
    files.update(bootlib.host_program("/usr/sbin/mke2fs"))
    workloads = DeviceWorkloads(out, sc.devices) if sc.devices else None
    if workloads:
        scripts = workloads.scripts(scripts)
        files.update(workloads.files())
    if modules:
        script, more = insmod_script(out, modules)
        scripts.insert(0, script)
        files.update(more)
    bootlib.build_initramfs(initrd, scripts, files=files)
    qemu_binary = trixie_qemu() if sc.qemu == "trixie" else None
    hyp = Refhyp(out, flags=sc.flags, queues=queues, ram=sc.ram, devices=sc.devices)
    devices = ClassDevices(out) if sc.classes else None
    # Without the pviommu the disk's first read never completes and the
    # boot stops there: the devices' negative control leaves it out.
    disk = not (sc.devices and sc.expect == "violations")
    extra = hyp.qemu_args(sc.iommu, disk) + (devices.qemu_args() if devices else [])
    cmdline = CMDLINE
    if sc.mode:
        cmdline += " %s=%s" % (MODE_PARAM, sc.mode)
    cmdline += " " + sc.cmdline
    if workloads:
        cmdline += " " + workloads.cmdline()
    cmdline = (cmdline + " " + append).strip()
    qemu = bootlib.Qemu(kernel, initrd, cmdline, out, extra_args=extra,
                        memory=sc.ram, smp=2, machine=Refhyp.MACHINE)
    if qemu_binary:
        qemu.args[0] = qemu_binary
    stop_when = None
    if sc.expect == "violations":
        def stop_when():
            c = hyp.counters()
            if workloads:
                return workloads.all_violated(c)
            return bool(c and c["device"]["violations"] > 0)
    run_qemu(qemu, timeout, stop_when)
    counters = hyp.stop()
    console, tap = qemu.read("console"), qemu.read("tap")
    problems = []
    tap_result = None
    if sc.expect in ("pass", "unchecked", "fault", "allowed"):
        tap_result = bootlib.parse_tap(tap)
        problems += tap_result.problems
        problems += ["not ok " + t for t in tap_result.failed]
        if qemu.timed_out:
            problems.append("timed out after %.0f s" % timeout)
    bad = bootlib.panic_in(console)
    if sc.expect == "panic":
        if PANIC_MESSAGE not in console:
            problems.append("no pviommu panic after a failed revocation (%s)" % (
                bad or "the guest went on"))
    elif bad:
        problems.append("kernel reported: " + bad)
    check_counters(sc, counters, problems, tap)
    if devices:
        devices.check(problems)
    if workloads and sc.expect == "violations":
        if not workloads.all_violated(counters):
            problems.append("plain virtio: not every device class caused a violation: %s" % (
                {d: k.get("violations") for d, k in (counters or {}).get("classes", {}).items()}))
    elif workloads:
        workloads.check(counters, tap, problems)
    if os.path.exists(hyp.ram_file):
        problems.append("guest RAM file left in /dev/shm")
    return {
        "scenario": sc.name, "ok": not problems, "problems": problems,
        "seconds": round(qemu.seconds, 1), "counters": counters, "tap": tap,
        "console_tail": console.splitlines()[-30:], "console": console, "refhyp_log": hyp.read_log()[-4000:],
        "skipped": tap_result.skipped if tap_result else [],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--append", default="", help="extra kernel command line")
    ap.add_argument("--results", help="write 'passed failed skipped' counts here")
    ap.add_argument("--json", help="write every scenario's counters here")
    ap.add_argument("--queues", type=int, default=1, help="virtqueues of the disk")
    ap.add_argument("--kernel", help="boot this kernel instead of the project's")
    ap.add_argument("--insmod", action="append", default=[], metavar="KO",
                    help="load this module first (repeat, in dependency order)")
    args = ap.parse_args()

    kernel = args.kernel or bootlib.find_kernel()
    names = args.scenario or [n for n in SCENARIOS if n not in NOT_BY_DEFAULT]
    results = []
    print("TAP version 13")
    print("1..%d" % len(names))
    for i, name in enumerate(names, 1):
        r = run_scenario(SCENARIOS[name], kernel, args.timeout, args.append, args.insmod,
                         args.queues)
        results.append(r)
        for line in r["tap"].splitlines():
            print("#   " + line)
        for p in r["problems"]:
            print("# problem: " + p)
        if not r["ok"]:
            for line in r["console_tail"]:
                print("# console: " + line)
            for line in r["refhyp_log"].splitlines()[-20:]:
                print("# refhyp: " + line)
        dev = (r["counters"] or {}).get("device", {})
        print("# %s: %.1f s, %s requests, %s violations" % (
            name, r["seconds"], dev.get("requests"), dev.get("violations")))
        for line in DeviceWorkloads.summary(r["counters"], r["tap"]):
            print("# %s: %s" % (name, line))
        print("%s %d - %s" % ("ok" if r["ok"] else "not ok", i, name))
    passed = sum(r["ok"] for r in results)
    failed = len(results) - passed
    print("refhyp: %d passed, %d failed" % (passed, failed))
    if args.results:
        with open(args.results, "w") as f:
            f.write("%d %d 0\n" % (passed, failed))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: r[k] for k in ("scenario", "ok", "seconds", "counters", "problems")}
                       for r in results], f, indent=1)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bootlib.BootError as e:
        print("pviommu: error: %s" % e, file=sys.stderr)
        sys.exit(1)
