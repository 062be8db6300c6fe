# SPDX-License-Identifier: GPL-2.0
"""Boot the guest kernel under QEMU and collect what it reports.

The pieces every boot test uses:

- ``build_initramfs``: a busybox-static initramfs whose ``/init`` runs the
  test scripts given to it and prints TAP on the second serial port
  (ttyS1), so that kernel messages on the console (ttyS0) never interleave
  with the results;
- ``Qemu``: one QEMU process (TCG unless ``KVM=1``) in its own process
  group, killed with everything it started on every exit path (normal end,
  timeout, exception, SIGINT/SIGTERM of the runner);
- ``parse_tap``: strict TAP parsing: a missing plan, a missing or repeated
  result, or a ``not ok`` is a failure; ``# SKIP`` results are counted
  apart, never as passes.

Harnesses that add processes (the reference hypervisor) register them with
``Cleanup`` so they share the same guarantees.
"""

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BUSYBOX = "/bin/busybox"
INIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "init.sh")


class BootError(Exception):
    """A boot test could not run or its output was unusable."""


class Cleanup:
    """Kills registered process groups and removes registered paths, once,
    on normal exit, on an exception and on SIGINT/SIGTERM."""

    _procs = []
    _paths = []
    _installed = False

    @classmethod
    def install(cls):
        if cls._installed:
            return
        cls._installed = True
        atexit.register(cls.run)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, cls._on_signal)

    @classmethod
    def _on_signal(cls, signum, _frame):
        cls.run()
        sys.exit(128 + signum)

    @classmethod
    def add_process(cls, proc):
        cls.install()
        cls._procs.append(proc)

    @classmethod
    def add_path(cls, path):
        cls.install()
        cls._paths.append(path)

    @classmethod
    def stop_process(cls, proc, grace=3.0):
        """SIGTERM the process group, then SIGKILL what is left."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass

    @classmethod
    def run(cls):
        while cls._procs:
            cls.stop_process(cls._procs.pop())
        while cls._paths:
            path = cls._paths.pop()
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass


def workdir(prefix="pviommu-boot-"):
    """A temporary directory removed at exit."""
    path = tempfile.mkdtemp(prefix=prefix)
    Cleanup.add_path(path)
    return path


def build_initramfs(out, scripts, files=None):
    """Write a newc cpio archive to ``out``.

    ``scripts``: paths of guest test scripts, run in the given order by
    ``/init``; each one is a TAP test point (exit 0 = ok, 77 = skip, other
    = not ok). ``files``: extra ``{guest_path: host_path}`` to include.
    """
    if not os.access(BUSYBOX, os.X_OK):
        raise BootError(f"{BUSYBOX} missing: install busybox-static (make setup)")
    root = tempfile.mkdtemp(prefix="pviommu-initramfs-")
    try:
        for d in ("bin", "dev", "proc", "sys", "tmp", "tests", "etc"):
            os.makedirs(os.path.join(root, d))
        shutil.copy2(BUSYBOX, os.path.join(root, "bin/busybox"))
        os.symlink("busybox", os.path.join(root, "bin/sh"))
        shutil.copy2(INIT, os.path.join(root, "init"))
        os.chmod(os.path.join(root, "init"), 0o755)
        for i, script in enumerate(scripts):
            name = "%02d-%s" % (i, os.path.basename(script))
            shutil.copy2(script, os.path.join(root, "tests", name))
            os.chmod(os.path.join(root, "tests", name), 0o755)
        for guest_path, host_path in (files or {}).items():
            dest = os.path.join(root, guest_path.lstrip("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy2(host_path, dest)
        listing = subprocess.run(
            ["find", "."], cwd=root, check=True, capture_output=True
        ).stdout
        with open(out, "wb") as f:
            subprocess.run(
                ["cpio", "--quiet", "-o", "-H", "newc", "--owner=0:0"],
                cwd=root, input=listing, stdout=f, check=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def host_program(path):
    """A dynamically linked program of the host (Debian's own build, for an
    x86_64 guest) and the shared libraries it loads, as ``files`` for
    :func:`build_initramfs`, each at its host path."""
    real = shutil.which(path) or path
    if not os.access(real, os.X_OK):
        raise BootError(f"{path} missing on the host (make setup installs it)")
    files = {real: real}
    out = subprocess.run(["ldd", real], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            files[m.group(1)] = os.path.realpath(m.group(1))
    return files


def qemu_binary():
    path = shutil.which("qemu-system-x86_64")
    if not path:
        raise BootError("qemu-system-x86_64 not found: install qemu-system-x86 (make setup)")
    return path


def accel_args():
    """TCG by default: KVM hangs on the project's build machines."""
    if os.environ.get("KVM") == "1":
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg"]


class Qemu:
    """One guest boot. ``console`` and ``tap`` are host files that receive
    ttyS0 (kernel console) and ttyS1 (test results)."""

    def __init__(self, kernel, initrd, cmdline, outdir, extra_args=(),
                 memory="512M", smp=2, machine="q35"):
        self.console = os.path.join(outdir, "console.log")
        self.tap = os.path.join(outdir, "tap.log")
        self.args = [
            qemu_binary(), *accel_args(),
            "-machine", machine, "-smp", str(smp),
            "-nodefaults", "-display", "none", "-monitor", "none",
            "-no-reboot",
            "-kernel", kernel, "-initrd", initrd,
            "-append", cmdline,
            "-serial", "file:" + self.console,
            "-serial", "file:" + self.tap,
            *extra_args,
        ]
        if memory is not None:
            self.args[1:1] = ["-m", memory]
        self.proc = None
        self.timed_out = False
        self.seconds = 0.0

    def run(self, timeout):
        """Boot and wait for the guest to reboot (QEMU exits with
        -no-reboot) or for ``timeout`` seconds, then kill QEMU."""
        start = time.monotonic()
        with open(self.console + ".qemu", "wb") as qemu_log:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=qemu_log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        Cleanup.add_process(self.proc)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.timed_out = True
        Cleanup.stop_process(self.proc)
        self.seconds = time.monotonic() - start
        return self

    def read(self, which):
        path = {"console": self.console, "tap": self.tap,
                "qemu": self.console + ".qemu"}[which]
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


TAP_LINE = re.compile(r"^(ok|not ok)\s+(\d+)\s*(?:-\s*)?([^#]*?)\s*(#\s*(\w+).*)?$")


class TapResult:
    def __init__(self):
        self.passed = []
        self.failed = []
        self.skipped = []
        self.problems = []

    @property
    def ok(self):
        return not self.failed and not self.problems and bool(self.passed or self.skipped)


def parse_tap(text):
    """Strict TAP: exactly the planned test points, each once."""
    result = TapResult()
    plan = None
    seen = set()
    for line in text.splitlines():
        line = line.rstrip("\r")
        m = re.match(r"^1\.\.(\d+)$", line)
        if m:
            if plan is not None:
                result.problems.append("second plan line")
            plan = int(m.group(1))
            continue
        m = TAP_LINE.match(line)
        if not m:
            continue
        status, num, name, directive = m.group(1), int(m.group(2)), m.group(3), m.group(5)
        if num in seen:
            result.problems.append(f"test {num} reported twice")
        seen.add(num)
        label = f"{num} {name}".strip()
        if directive and directive.upper() == "SKIP":
            result.skipped.append(label)
        elif status == "ok":
            result.passed.append(label)
        else:
            result.failed.append(label)
    if plan is None:
        result.problems.append("no TAP plan: the guest did not reach its test runner")
    else:
        missing = sorted(set(range(1, plan + 1)) - seen)
        if missing:
            result.problems.append(f"missing results for tests {missing}")
    return result


def find_kernel(arch="x86_64"):
    """The kernel image scripts/kernel.sh built last for ``arch``."""
    cache = os.environ.get("PVIOMMU_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pviommu")
    if arch == "arm64":
        kernel = os.path.join(cache, "current-arm64", "arch/arm64/boot/Image")
        how = "PVIOMMU_ARCH=arm64 scripts/kernel.sh build"
    else:
        kernel = os.path.join(cache, "current", "arch/x86/boot/bzImage")
        how = "make kernel"
    if not os.path.exists(kernel):
        raise BootError(f"{kernel} missing: build the kernel first ({how})")
    return kernel


def panic_in(console):
    """The first line of a kernel panic, oops or BUG in the console log."""
    for line in console.splitlines():
        if re.search(r"Kernel panic|BUG:|Oops|WARNING: CPU|general protection fault", line):
            return line.strip()
    return None
