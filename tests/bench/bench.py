#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""make bench: when does sharing in place beat bouncing? Like for like.

    bench.py [--rounds N] [--runtime S] [--config NAME]... [--doc]
    bench.py --analyse DIR [--doc]

Boots the project's kernel once per configuration and round (QEMU TCG,
q35, 2 vCPUs, 512 MiB in a shared memory file, qboot), round-robin, and
runs the same guest workload in every boot (``guest/bench.sh``): Debian's
fio with the job files of ``fio/`` on the virtio disk, then the pviommu's
``map_bench`` (or the kernel's ``dma_map_benchmark`` without a pviommu).

Configurations and backends (``CONFIGS``):

- ``share``, ``bounce``, ``sync``, ``unprotected``: the reference
  hypervisor's vhost-user-blk disk (``tests/refhyp``, release build),
  enforcing for the three pviommu modes, ``--no-enforce`` and no
  ``iommu_platform`` (dma-direct) for ``unprotected``;
- ``viommu-strict``, ``viommu-lazy``, ``unprotected-qemu``: QEMU's own
  virtio-blk with and without ``virtio-iommu-pci``: the refhyp's backend
  has no vhost-user IOTLB, so virtio-iommu cannot run on it; its ratios
  are taken against ``unprotected-qemu``, the same disk without an IOMMU
  (a matched pair), never against the refhyp's disk.

Both disks offer the same queue (one queue of 256, 254 data segments per
request, indirect descriptors, no event index, no request merging), and
the guest isolates every page it allocates (``guest/fragment.c``), so a
request has one segment per 4 KiB page in every configuration. Segments
are counted: by the refhyp disk (descriptors per request) and, for every
configuration, by the guest (``guest/layout.c``: physically adjacent
pages in the fio job's buffers, and block-layer requests per I/O).

Around every fio job and map_bench run the guest marks the start and end
(``guest/mark.sh``: ttyS2), and the host reads the refhyp's counters
(SIGUSR1) and the CPU time of QEMU and the refhyp (``/proc/PID/stat``)
before answering, so every counter is a difference over exactly one
workload. ``analysis.py`` turns the rounds into paired ratios with
confidence intervals, the targets' verdicts and a cost model;
``report.py`` writes ``bench.md``, ``bench.rst``, ``bench.json`` and plots
into ``$PVIOMMU_CACHE/bench/<date>/`` (``latest`` points at it); ``--doc``
also copies them into ``Documentation/performance/``.

A configuration that cannot run is reported as missing; a missed target
is a result. The exit status is non-zero only if a configuration failed
in every round, or the analysis could not run.
"""

import argparse
import base64
import datetime
import gzip
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "refhyp"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import bootlib  # noqa: E402  (harness puts tests/boot on the path)
import analysis  # noqa: E402
import report  # noqa: E402

CACHE = os.environ.get("PVIOMMU_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pviommu")
DOC_DIR = os.path.join(ROOT, "Documentation", "performance")
FIO_DIR = os.path.join(HERE, "fio")
FIO_FILES = ["seq.fio", "rand.fio", "jobs2.fio", "qd16.fio", "verify.fio"]
MAPBENCH_PAGES = [1, 4, 16, 64]
MAPBENCH_ITERATIONS = 4000
DMB_PAGES = [1, 16]
DMB_SECONDS = 1
DISK_MIB = 64
RAM = harness.RAM
# Pages the guest isolates before fio runs (fragment.c): half of them
# become the isolated free pages every later allocation takes first.
FRAGMENT_MIB = 192
QUEUE_SIZE = 256
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Config:
    def __init__(self, name, backend, label, mode=None, iommu=True, viommu=False, flags=(),
                 cmdline="", baseline=None):
        self.name, self.backend, self.label = name, backend, label
        self.mode, self.iommu, self.viommu = mode, iommu, viommu
        self.flags, self.cmdline = list(flags), cmdline
        # The unprotected configuration on the same disk.
        self.baseline = baseline


CONFIGS = [
    # harness.CMDLINE pins pviommu.bounce_threshold=4096: every buffer
    # that owns its pages is shared in place (share) or with SHARE/UNSHARE
    # calls (sync), whatever its size. share-auto is the driver's default:
    # the threshold it measures at boot decides, per direction, which
    # buffers bounce instead.
    Config("share", "refhyp", "pviommu share", mode="share", baseline="unprotected"),
    Config("share-auto", "refhyp", "pviommu share, measured threshold", mode="share",
           cmdline="pviommu.bounce_threshold=0", baseline="unprotected"),
    Config("bounce", "refhyp", "pviommu bounce", mode="bounce", baseline="unprotected"),
    Config("sync", "refhyp", "pviommu sync", mode="sync", baseline="unprotected"),
    Config("unprotected", "refhyp", "unprotected (refhyp disk)", iommu=False,
           flags=["--no-enforce"], cmdline="pviommu.required=0"),
    Config("viommu-strict", "qemu", "virtio-iommu strict", viommu=True,
           cmdline="pviommu.required=0 iommu.passthrough=0 iommu.strict=1",
           baseline="unprotected-qemu"),
    Config("viommu-lazy", "qemu", "virtio-iommu lazy", viommu=True,
           cmdline="pviommu.required=0 iommu.passthrough=0 iommu.strict=0",
           baseline="unprotected-qemu"),
    Config("unprotected-qemu", "qemu", "unprotected (QEMU disk)", iommu=False,
           cmdline="pviommu.required=0"),
]
BY_NAME = {c.name: c for c in CONFIGS}
# viommu-lazy is left out by default to keep make bench within 25 minutes
# on 2 cores (--config viommu-lazy adds it).
DEFAULT_CONFIGS = [c.name for c in CONFIGS if c.name != "viommu-lazy"]


def log(msg):
    print("bench: " + msg, flush=True)


# ---------------------------------------------------------------- building

def build_static(out, src, includes=()):
    subprocess.run(["gcc", "-static", "-O2", "-Wall", *["-I" + i for i in includes],
                    "-o", out, src], check=True)
    return out


def kernel_source():
    return os.environ.get("KSRC") or os.path.realpath(os.path.join(CACHE, "current", "source"))


def fio_files():
    """Debian's fio and every shared library it loads, as {guest: host}
    paths: the libraries where ldd finds them, the loader where fio's
    PT_INTERP names it."""
    fio = shutil.which("fio")
    if not fio:
        raise bootlib.BootError("fio not found: install Debian's fio (make setup)")
    out = subprocess.run(["ldd", fio], capture_output=True, text=True, check=True).stdout
    files = {"/usr/bin/fio": fio}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (/\S+)", line) or re.match(r"\s*(/\S+) \(0x", line)
        if not m:
            continue
        path = m.group(m.lastindex)
        files[path] = os.path.realpath(path)
        # The loader is looked up by the name in PT_INTERP (/lib64/...).
    if not any(k.startswith("/lib64/ld-linux") for k in files):
        raise bootlib.BootError("ldd %s names no loader: %s" % (fio, out))
    return files


def build_tools(work):
    tools = {}
    for name in ("fragment", "layout", "syscalls"):
        tools[name] = build_static(os.path.join(work, name),
                                   os.path.join(HERE, "guest", name + ".c"))
    src = os.path.join(kernel_source(), "tools/dma/dma_map_benchmark.c")
    hdr = os.path.join(kernel_source(), "include/uapi/linux/map_benchmark.h")
    tools["dmb"] = None
    if os.path.exists(src) and os.path.exists(hdr):
        inc = os.path.join(work, "inc")
        os.makedirs(os.path.join(inc, "linux"), exist_ok=True)
        shutil.copy(hdr, os.path.join(inc, "linux"))
        tools["dmb"] = build_static(os.path.join(work, "dma_map_benchmark"), src, [inc])
    return tools


def build_initramfs(work, tools, conf_text):
    """One initramfs for every boot: the configuration differs only on
    the kernel command line."""
    conf = os.path.join(work, "bench.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    files = {
        "/etc/bench/conf": conf,
        "/usr/local/bin/fragment": tools["fragment"],
        "/usr/local/bin/layout": tools["layout"],
        "/usr/local/bin/syscalls": tools["syscalls"],
        "/usr/local/bin/mark": os.path.join(HERE, "guest", "mark.sh"),
    }
    if tools["dmb"]:
        files["/usr/local/bin/dma_map_benchmark"] = tools["dmb"]
    for f in FIO_FILES:
        files["/etc/bench/fio/" + f] = os.path.join(FIO_DIR, f)
    files.update(fio_files())
    initrd = os.path.join(work, "initramfs.cpio")
    bootlib.build_initramfs(initrd, [os.path.join(HERE, "guest", "bench.sh")], files=files)
    # mark.sh is run by path: keep it executable.
    return initrd


# ---------------------------------------------------------------- control

def proc_cpu(pid):
    """utime + stime of a process, all its threads, in seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def refhyp_counters(hyp, timeout=5.0):
    """The refhyp's counters, asked for with SIGUSR1 (polled closely:
    the guest waits for the answer)."""
    try:
        os.unlink(hyp.counters_file)
    except FileNotFoundError:
        pass
    if hyp.proc.poll() is not None:
        return None
    hyp.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(hyp.counters_file) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.002)
    return None


class Control:
    """The host end of ttyS2: each ``MARK name phase`` line is answered
    with ``ACK`` after ``snapshot()``."""

    def __init__(self, path, snapshot):
        self.path, self.snapshot = path, snapshot
        self.marks, self.errors = {}, []
        bootlib.Cleanup.add_path(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(1.0)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn = None
        while not self.stopping and conn is None:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
        if conn is None:
            return
        conn.settimeout(1.0)
        buf = b""
        while not self.stopping:
            try:
                data = conn.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.decode(errors="replace").strip()
                if not line.startswith("MARK "):
                    continue
                key = line[5:]
                try:
                    if key in self.marks:
                        self.errors.append("mark %s seen twice" % key)
                    self.marks[key] = self.snapshot()
                except Exception as e:  # noqa: BLE001 - reported, never fatal here
                    self.errors.append("%s: %s" % (line, e))
                try:
                    conn.sendall(b"ACK\n")
                except OSError:
                    break
        conn.close()

    def close(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(timeout=5)


# ---------------------------------------------------------------- one boot

def qemu_disk_args(cfg, out, ram_file):
    """QEMU's own virtio-blk, with the refhyp disk's queue: one queue of
    256, seg_max 254 (QEMU derives it from the queue size), no event
    index (the refhyp offers none), no request merging (the refhyp does
    none); with virtio-iommu-pci for the viommu configurations."""
    disk = os.path.join(out, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(DISK_MIB << 20)
    blk = ("virtio-blk-pci,drive=d0,num-queues=1,queue-size=%d,event_idx=off,"
           "request-merging=off" % QUEUE_SIZE)
    if cfg.iommu:
        blk += ",iommu_platform=on,disable-legacy=on"
    args = ["-bios", harness.Refhyp.FIRMWARE] if os.path.exists(harness.Refhyp.FIRMWARE) else []
    args += [
        "-object", "memory-backend-file,id=ram,size=%s,mem-path=%s,share=on" % (RAM, ram_file),
        "-drive", "file=%s,if=none,id=d0,format=raw" % disk,
    ]
    if cfg.viommu:
        args += ["-device", "virtio-iommu-pci"]
    args += ["-device", blk]
    return args


def run_boot(cfg, rnd, kernel, initrd, timeout, outdir):
    out = bootlib.workdir("pviommu-bench-%s-%d-" % (cfg.name, rnd))
    cmdline = harness.CMDLINE
    if cfg.mode:
        cmdline += " %s=%s" % (harness.MODE_PARAM, cfg.mode)
    cmdline = (cmdline + " " + cfg.cmdline).strip()
    hyp = None
    pids = {}
    problems = []
    if cfg.backend == "refhyp":
        try:
            hyp = harness.Refhyp(out, flags=cfg.flags, disk_mib=DISK_MIB)
        except (bootlib.BootError, OSError, subprocess.CalledProcessError) as e:
            return {"config": cfg.name, "round": rnd, "ok": False, "seconds": 0,
                    "problems": ["refhyp did not start: %s" % e], "tap": "", "marks": {}}
        pids["refhyp"] = hyp.proc.pid
        extra = hyp.qemu_args(cfg.iommu)
        # The same queue as QEMU's own disk (vhost-user-blk's default is 128).
        extra = [a + ",queue-size=%d" % QUEUE_SIZE if a.startswith("vhost-user-blk-pci")
                 else a for a in extra]
        machine = harness.Refhyp.MACHINE
    else:
        ram_file = "/dev/shm/pviommu-bench-%d-%s" % (os.getpid(), os.path.basename(out))
        bootlib.Cleanup.add_path(ram_file)
        extra = qemu_disk_args(cfg, out, ram_file)
        machine = "q35,memory-backend=ram"

    def snapshot():
        s = {"t": time.monotonic(), "cpu": {k: proc_cpu(p) for k, p in pids.items()}}
        if hyp:
            s["hyp"] = refhyp_counters(hyp)
        return s

    ctl = Control(os.path.join(out, "ctl.sock"), snapshot)
    extra += ["-chardev", "socket,id=ctl,path=%s" % ctl.path, "-serial", "chardev:ctl",
              "-device", "pci-testdev"]
    qemu = bootlib.Qemu(kernel, initrd, cmdline, out, extra_args=extra, memory=RAM, smp=2,
                        machine=machine)
    # The QEMU pid must be known before the first mark: start it here.
    start = time.monotonic()
    with open(qemu.console + ".qemu", "wb") as qlog:
        qemu.proc = subprocess.Popen(qemu.args, stdin=subprocess.DEVNULL, stdout=qlog,
                                     stderr=subprocess.STDOUT, start_new_session=True)
    bootlib.Cleanup.add_process(qemu.proc)
    pids["qemu"] = qemu.proc.pid
    try:
        qemu.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        qemu.timed_out = True
    bootlib.Cleanup.stop_process(qemu.proc)
    qemu.seconds = time.monotonic() - start
    ctl.close()
    final = hyp.stop() if hyp else None
    tap, console = qemu.read("tap"), qemu.read("console")
    t = bootlib.parse_tap(tap)
    problems += t.problems + ["not ok " + x for x in t.failed]
    if qemu.timed_out:
        problems.append("timed out after %.0f s" % timeout)
    bad = bootlib.panic_in(console)
    if bad:
        problems.append("kernel reported: " + bad)
    problems += ctl.errors
    if final and final.get("device", {}).get("violations"):
        problems.append("%d violations" % final["device"]["violations"])
    if not tap.strip():
        problems.append("no output from the guest; QEMU said: %s" %
                        qemu.read("qemu").strip()[-400:])
    name = "%s-r%d" % (cfg.name, rnd)
    for kind, text in (("tap", tap), ("console", console)):
        with open(os.path.join(outdir, "logs", "%s.%s" % (name, kind)), "w") as f:
            f.write(text)
    return {"config": cfg.name, "round": rnd, "ok": not problems, "t_start": start,
            "seconds": round(qemu.seconds, 1), "problems": problems, "tap": tap,
            "marks": ctl.marks, "final_counters": final, "cmdline": cmdline,
            "console_tail": console.splitlines()[-30:]}


# ---------------------------------------------------------------- parsing

KV = re.compile(r"(\w+)=(\S+)")


def num(v):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def unpack(lines, name):
    """The gzipped, base64 block NAME of the guest's output, as text."""
    try:
        i, j = lines.index(name + ".gz.b64 begin"), lines.index(name + ".gz.b64 end")
    except ValueError:
        return None
    try:
        return gzip.decompress(base64.b64decode("".join(lines[i + 1:j]))).decode(
            "utf-8", "replace")
    except (ValueError, OSError, EOFError):
        return None


def parse_guest(tap):
    """The guest's output: info lines, the bracket log, fio's JSON and
    the map/unmap benchmarks."""
    g = {"info": [], "missing": [], "dbg": {}, "blk": {}, "layout": {}, "errors": [],
         "mapbench": {}, "dmb": {}, "fragment": None, "fio": None}
    lines = [re.sub(r"^#\s?", "", l).rstrip() for l in tap.splitlines()]
    log_text = unpack(lines, "bench.log")
    fio_text = unpack(lines, "fio.json")
    if tap.strip() and log_text is None:
        g["errors"].append("the guest's bracket log is missing or unreadable")
    for line in lines + (log_text or "").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "info":
            g["info"].append(line[5:])
        elif parts[0] == "missing":
            g["missing"].append(line[8:])
        elif parts[0] == "fragment":
            g["fragment"] = {k: num(v) for k, v in KV.findall(line)}
        elif parts[0] == "dbg" and len(parts) >= 3:
            g["dbg"][(parts[1], parts[2])] = {k: num(v) for k, v in KV.findall(line)}
        elif parts[0] == "blk" and len(parts) >= 14:
            g["blk"][(parts[1], parts[2])] = [int(x) for x in parts[3:]]
        elif parts[0] == "layout" and len(parts) >= 2:
            g["layout"].setdefault(parts[1], []).append(
                {k: num(v) for k, v in KV.findall(line)})
        elif parts[0] == "error":
            g["errors"].append(line)
        elif parts[0] == "mapbench":
            m = re.match(r"mapbench g=(\d+) (.*)$", line)
            if m:
                g["mapbench"][int(m.group(1))] = parse_latency(m.group(2))
        elif parts[0] == "dmb" and len(parts) > 1 and parts[1].startswith("g="):
            m = re.match(r"dmb g=(\d+) (.*)$", line)
            if m:
                g["dmb"][int(m.group(1))] = parse_latency(m.group(2))
    if fio_text:
        # fio's own notes (exec_prerun output files) come before the JSON.
        i = fio_text.find("{")
        try:
            g["fio"] = json.loads(fio_text[i:])
        except (ValueError, json.JSONDecodeError) as e:
            g["errors"].append("fio JSON unreadable: %s" % e)
    return g


def parse_latency(text):
    m = re.search(r"average map latency\(us\):\s*([\d.]+)", text)
    u = re.search(r"average unmap latency\(us\):\s*([\d.]+)", text)
    f = re.search(r"failures:(\d+)", text)
    return {"map_us": float(m.group(1)) if m else None,
            "unmap_us": float(u.group(1)) if u else None,
            "failures": int(f.group(1)) if f else None, "raw": text.strip()[:300]}


def flat(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(flat(v, prefix + k + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = v
    return out


def deltas(a, b):
    if a is None or b is None:
        return None
    fa, fb = flat(a), flat(b)
    return {k: fb[k] - fa[k] for k in fa if k in fb}


BLK_FIELDS = ["read_ios", "read_merges", "read_sectors", "read_ticks", "write_ios",
              "write_merges", "write_sectors", "write_ticks", "in_flight", "io_ticks",
              "time_in_queue"]


def fio_job(job):
    """One fio job (or group) in the figures the analysis uses."""
    r, w = job.get("read", {}), job.get("write", {})
    ios = r.get("total_ios", 0) + w.get("total_ios", 0)
    nbytes = r.get("io_bytes", 0) + w.get("io_bytes", 0)
    runtime_ms = max(r.get("runtime", 0), w.get("runtime", 0))
    main = w if w.get("total_ios", 0) > r.get("total_ios", 0) else r
    lat = main.get("lat_ns", {}) or {}
    clat = main.get("clat_ns", {}) or {}
    pct = clat.get("percentile", {}) or {}

    def p(q):
        for k, v in pct.items():
            if abs(float(k) - q) < 1e-6:
                return v / 1000.0
        return None
    return {
        "ios": ios, "bytes": nbytes, "runtime_ms": runtime_ms,
        "iops": ios * 1000.0 / runtime_ms if runtime_ms else None,
        "mbps": nbytes / 1000.0 / runtime_ms if runtime_ms else None,
        "us_per_io": runtime_ms * 1000.0 / ios if ios else None,
        "lat_us": lat.get("mean", 0) / 1000.0 if lat else None,
        "clat_p50_us": p(50.0), "clat_p99_us": p(99.0),
        "usr_cpu": job.get("usr_cpu"), "sys_cpu": job.get("sys_cpu"),
        "error": job.get("error", 0),
    }


def workloads(run, g):
    """Every bracketed workload of one boot: fio's figures, the host's
    and the guest's counter differences, CPU times."""
    jobs = {}
    for job in (g["fio"] or {}).get("jobs", []):
        jobs[job.get("jobname")] = fio_job(job)
    names = sorted({k.rsplit(" ", 1)[0] for k in run["marks"]} |
                   {k[0] for k in g["dbg"]} | set(jobs))
    out = {}
    for name in names:
        w = {"fio": jobs.get(name)}
        h0, h1 = run["marks"].get(name + " begin"), run["marks"].get(name + " end")
        if h0 and h1:
            w["wall_s"] = h1["t"] - h0["t"]
            w["cpu_s"] = {k: (h1["cpu"].get(k) - h0["cpu"][k])
                          if h0["cpu"].get(k) is not None and h1["cpu"].get(k) is not None
                          else None for k in h0["cpu"]}
            w["hyp"] = deltas(h0.get("hyp"), h1.get("hyp"))
        w["guest"] = deltas(g["dbg"].get((name, "begin")), g["dbg"].get((name, "end")))
        b0, b1 = g["blk"].get((name, "begin")), g["blk"].get((name, "end"))
        if b0 and b1:
            w["blk"] = {f: b1[i] - b0[i] for i, f in enumerate(BLK_FIELDS) if i < len(b0)}
        if name in g["layout"]:
            w["layout"] = {"pages": sum(x.get("pages", 0) for x in g["layout"][name]),
                           "adjacent": sum(x.get("adjacent", 0) for x in g["layout"][name]),
                           "jobs": len(g["layout"][name])}
        m = re.match(r"(?:mapbench|dmb)-g(\d+)$", name)
        if m:
            src = g["mapbench"] if name.startswith("mapbench") else g["dmb"]
            w["latency"] = src.get(int(m.group(1)))
        out[name] = w
    return out


def summarise_boot(run):
    g = parse_guest(run["tap"])
    problems = list(run["problems"]) + g["errors"]
    if run["tap"] and g["fio"] is None:
        problems.append("no fio results")
    for job in (g["fio"] or {}).get("jobs", []):
        if job.get("error"):
            problems.append("fio job %s: error %s" % (job.get("jobname"), job.get("error")))
    info = g["info"]
    return {"config": run["config"], "round": run["round"], "seconds": run["seconds"],
            "ok": not problems, "problems": problems, "info": info,
            "missing": g["missing"], "fragment": g["fragment"],
            "workloads": workloads(run, g) if run["tap"] else {},
            "cmdline": run.get("cmdline"), "console_tail": run.get("console_tail", [])}


# ---------------------------------------------------------------- the run

def machine_info():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    qv = subprocess.run([bootlib.qemu_binary(), "--version"], capture_output=True,
                        text=True).stdout.splitlines()[0]
    fio = subprocess.run(["fio", "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"nproc": os.cpu_count(), "cpu": cpu, "host_kernel": platform.release(),
            "qemu": qv, "fio": fio, "accel": " ".join(bootlib.accel_args()),
            "guest": "q35, 2 vCPUs, %s RAM (shared file), qboot, %d MiB disk" % (RAM, DISK_MIB),
            "commit": commit + ("-dirty" if dirty else ""), "loadavg_start": load,
            "kernel_image": os.path.realpath(bootlib.find_kernel()),
            "kernel_built": datetime.datetime.fromtimestamp(
                os.path.getmtime(bootlib.find_kernel()), datetime.timezone.utc).strftime(
                    "%Y-%m-%d %H:%M UTC")}


def callgrind():
    env = dict(os.environ)
    env.setdefault("CARGO_BUILD_JOBS", "1")
    p = subprocess.run([os.path.join(ROOT, "hyp-abi/bench/callgrind.sh")], env=env,
                       capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("callgrind:"):
            return {k: float(v) for k, v in KV.findall(line)}
    log("callgrind.sh failed: %s" % p.stderr[-1000:])
    return None


def expected_seconds(runtime, files):
    """A boot's length: boot, fio start, jobs, map_bench."""
    jobs = 0
    for f in files:
        with open(os.path.join(FIO_DIR, f)) as fh:
            n = len(re.findall(r"^\[(?!global)", fh.read(), re.M))
        jobs += n if f != "verify.fio" else 0
    return 60 + jobs * (runtime + 3) + 30


def publish(outdir, doc):
    latest = os.path.join(CACHE, "bench", "latest")
    if os.path.realpath(latest) == os.path.realpath(outdir):
        pass
    elif os.path.islink(latest) or os.path.exists(latest):
        os.unlink(latest)
    if not os.path.lexists(latest):
        os.symlink(outdir, latest)
    if doc:
        # The report, the plots and the analysis (every per-round figure
        # it used is in it); the raw counters of every boot stay in the
        # cache's bench.json.
        os.makedirs(DOC_DIR, exist_ok=True)
        for n in ("bench.md", "bench.rst", "bench-summary.json") + tuple(
                sorted(x for x in os.listdir(outdir) if x.endswith(".png"))):
            if os.path.exists(os.path.join(outdir, n)):
                shutil.copy(os.path.join(outdir, n), os.path.join(DOC_DIR, n))


def rounded(x):
    """x with every float to 4 significant digits (the summary's size)."""
    if isinstance(x, float):
        return float("%.4g" % x)
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v) for v in x]
    return x


def analyse_and_write(raw, outdir, doc):
    result = analysis.analyse(raw)
    with open(os.path.join(outdir, "bench.json"), "w") as f:
        json.dump({"raw": raw, "analysis": result}, f, indent=1, sort_keys=True, default=str)
    with open(os.path.join(outdir, "bench-summary.json"), "w") as f:
        json.dump(rounded({k: raw[k] for k in raw if k != "boots"} | {
            "boots": [{k: b[k] for k in ("config", "round", "seconds", "ok", "problems")}
                      for b in raw["boots"]], "analysis": result}),
            f, sort_keys=True, separators=(",", ":"), default=str)
    report.write(raw, result, outdir)
    publish(outdir, doc)
    with open(os.path.join(outdir, "bench.md")) as f:
        print(f.read())
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5,
                    help="boots per configuration, interleaved round-robin (at least 5 for "
                         "a verdict)")
    ap.add_argument("--runtime", type=float, default=1.0, help="seconds per timed fio job")
    ap.add_argument("--config", action="append", choices=[c.name for c in CONFIGS])
    ap.add_argument("--fio", action="append", choices=FIO_FILES,
                    help="job files to run (default: all)")
    ap.add_argument("--doc", action="store_true",
                    help="also copy the report into Documentation/performance/")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--analyse", metavar="DIR",
                    help="re-analyse the bench.json of an earlier run into DIR")
    args = ap.parse_args()

    if args.analyse:
        outdir = os.path.realpath(args.analyse)
        with open(os.path.join(outdir, "bench.json")) as f:
            raw = json.load(f)["raw"]
        analyse_and_write(raw, outdir, args.doc)
        return 0

    start = time.monotonic()
    now = datetime.datetime.now(datetime.timezone.utc)
    kernel = bootlib.find_kernel()
    harness.PROFILE = "release"
    outdir = os.path.join(CACHE, "bench", now.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(os.path.join(outdir, "logs"), exist_ok=True)
    names = args.config or DEFAULT_CONFIGS
    files = args.fio or FIO_FILES
    log("building the refhyp (release), the guest tools and the initramfs")
    if any(BY_NAME[n].backend == "refhyp" for n in names):
        harness.refhyp_binary()
    work = bootlib.workdir("pviommu-bench-tools-")
    tools = build_tools(work)
    conf_text = "\n".join([
        "RUNTIME=%g" % args.runtime,
        "FRAGMENT_MIB=%d" % FRAGMENT_MIB,
        "FIO_FILES='%s'" % " ".join(files),
        "MAPBENCH_PAGES='%s'" % " ".join(str(p) for p in MAPBENCH_PAGES),
        "MAPBENCH_ITERATIONS=%d" % MAPBENCH_ITERATIONS,
        "DMB_PAGES='%s'" % " ".join(str(p) for p in DMB_PAGES),
        "DMB_SECONDS=%d" % DMB_SECONDS,
        "",
    ])
    initrd = build_initramfs(work, tools, conf_text)
    log("initramfs %.0f MiB (fio and its %d libraries)" % (
        os.path.getsize(initrd) / 2**20, len(fio_files()) - 1))
    cg = None
    if not args.no_callgrind:
        log("callgrind of the map/unmap core (hyp-abi/bench/callgrind.sh)")
        cg = callgrind()
    timeout = expected_seconds(args.runtime, files) * 2.5
    machine = machine_info()
    boots = []
    for rnd in range(1, args.rounds + 1):
        # Round-robin, starting one configuration later each round: a burst
        # of load on the shared machine hits one round of every
        # configuration, and no configuration always goes first.
        k = (rnd - 1) % len(names)
        for name in names[k:] + names[:k]:
            cfg = BY_NAME[name]
            log("round %d/%d: %s (%s)" % (rnd, args.rounds, name, cfg.label))
            run = run_boot(cfg, rnd, kernel, initrd, timeout, outdir)
            boot = summarise_boot(run)
            boots.append(boot)
            seq = [(k2, w["fio"]) for k2, w in sorted(boot["workloads"].items())
                   if w.get("fio") and k2.endswith("-qd1-j1") and k2.startswith(("read-", "write-"))]
            log("%s r%d: %.0f s%s; %s" % (
                name, rnd, boot["seconds"], "" if boot["ok"] else " FAILED",
                ", ".join("%s %.0f" % (k2.replace("-qd1-j1", ""), f["iops"] or 0)
                          for k2, f in seq[:10]) + " IOPS"))
            for p in boot["problems"]:
                log("%s r%d: problem: %s" % (name, rnd, p))
            if not boot["ok"]:
                for line in boot["console_tail"][-10:]:
                    log("%s r%d: console: %s" % (name, rnd, line))
    raw = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "params": {"rounds": args.rounds, "runtime_s": args.runtime, "fio_files": files,
                   "configs": names, "disk_mib": DISK_MIB, "ram": RAM,
                   "fragment_mib": FRAGMENT_MIB, "queue_size": QUEUE_SIZE,
                   "mapbench_pages": MAPBENCH_PAGES, "mapbench_iterations": MAPBENCH_ITERATIONS,
                   "dmb_pages": DMB_PAGES, "dmb_seconds": DMB_SECONDS,
                   "refhyp_profile": harness.PROFILE},
        "configs": {c.name: {"label": c.label, "backend": c.backend, "mode": c.mode,
                             "iommu": c.iommu, "viommu": c.viommu, "flags": c.flags,
                             "cmdline": c.cmdline, "baseline": c.baseline}
                    for c in CONFIGS if c.name in names},
        "callgrind": cg,
        "boots": boots,
        "total_seconds": round(time.monotonic() - start, 1),
    }
    try:
        raw["machine"]["loadavg_end"] = os.getloadavg()
    except OSError:
        pass
    result = analyse_and_write(raw, outdir, args.doc)
    log("results in %s%s; total %.0f s" % (outdir, " and " + DOC_DIR if args.doc else "",
                                          time.monotonic() - start))
    never = [n for n in names if not any(b["ok"] for b in boots if b["config"] == n)]
    for n in never:
        log("%s: no successful round: reported as missing" % n)
    return 1 if never or result is None else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bootlib.BootError as e:
        print("bench: error: %s" % e, file=sys.stderr)
        sys.exit(1)
