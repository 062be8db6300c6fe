#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""make bench: pviommu against its baselines and virtio-iommu, in one run.

    bench.py [--seconds S] [--dmb-seconds S] [--config NAME]... [--no-doc]

Boots the project's kernel once per configuration (QEMU TCG, 2 vCPUs,
512 MiB) and runs the same guest workload (``guest/bench.sh``): O_DIRECT
sequential writes then reads at 4 KiB .. 1 MiB (``guest/dio.c``), then
a map/unmap latency benchmark: for the pviommu modes the driver's
``map_bench`` (the mapping operations virtio_ring uses, through the real
hypervisor), for the others the kernel's ``dma_map_benchmark`` bound to
a spare PCI function (``pci-testdev``). Configurations:

- ``share``, ``bounce``, ``sync``: the pviommu driver in that mode on the
  reference hypervisor (``tests/refhyp``, release build, enforcing);
- ``unprotected``: plain virtio (no ``iommu_platform``, dma-direct) on the
  same vhost-user backend with ``--no-enforce``, no mailbox device;
- ``viommu-strict``, ``viommu-lazy``: QEMU's ``virtio-iommu-pci`` and the
  upstream Linux driver (``iommu.strict=1`` / ``0``) over QEMU's own
  ``virtio-blk-pci,iommu_platform=on`` with a raw image.

Around every workload the guest prints its pviommu debugfs counters and
sends ``MARK`` on ttyS2; the host reads the hypervisor's counters (SIGUSR1)
and answers ``ACK``, so both sides' deltas cover exactly that workload.
Results go to ``$PVIOMMU_CACHE/bench/<date>/`` (``bench.md``,
``bench.json``, ``bench.png``) and, unless ``--no-doc``, are copied into
``Documentation/performance/``. Every figure is also given relative to
the baselines of the same run: figures from different runs on a shared
2-core machine are not comparable.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "refhyp"))
import harness  # noqa: E402
import bootlib  # noqa: E402  (harness puts tests/boot on the path)

CACHE = os.environ.get("PVIOMMU_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pviommu")


def kernel_source():
    """The source tree of the kernel ``make kernel`` built last (its
    build directory links it as ``source``)."""
    return os.path.realpath(os.path.join(CACHE, "current", "source"))


KSRC = os.environ.get("KSRC") or kernel_source()
DOC_DIR = os.path.join(ROOT, "Documentation", "performance")

SIZES = [4096, 16384, 65536, 262144, 1048576]
OPS = ["write", "read"]
DMB = [(1, 1), (1, 2), (16, 1), (16, 2)]  # (granule pages, threads)
DISK_MIB = 64
RAM = harness.RAM
BASE_CMDLINE = harness.CMDLINE


class Config:
    def __init__(self, name, kind, label, mode=None, iommu=True, flags=(), cmdline=""):
        self.name, self.kind, self.label = name, kind, label
        self.mode, self.iommu, self.flags, self.cmdline = mode, iommu, list(flags), cmdline


CONFIGS = [
    Config("share", "refhyp", "pviommu share", mode="share"),
    Config("bounce", "refhyp", "pviommu bounce", mode="bounce"),
    Config("sync", "refhyp", "pviommu sync", mode="sync"),
    Config("unprotected", "refhyp", "unprotected (dma-direct)", iommu=False,
           flags=["--no-enforce"], cmdline="pviommu.required=0"),
    Config("viommu-strict", "viommu", "virtio-iommu strict",
           cmdline="pviommu.required=0 iommu.passthrough=0 iommu.strict=1"),
    Config("viommu-lazy", "viommu", "virtio-iommu lazy",
           cmdline="pviommu.required=0 iommu.passthrough=0 iommu.strict=0"),
]
BY_NAME = {c.name: c for c in CONFIGS}


def log(msg):
    print("bench: " + msg, flush=True)


# ---------------------------------------------------------------- building

def build_static(out, src, includes=()):
    cmd = ["gcc", "-static", "-O2", "-Wall", *["-I" + i for i in includes], "-o", out, src]
    subprocess.run(cmd, check=True)
    return out


def build_tools(work):
    """dio and dma_map_benchmark, static, for the initramfs."""
    dio = build_static(os.path.join(work, "dio"), os.path.join(HERE, "guest", "dio.c"))
    # Linux 7.x keeps the tool in tools/dma/ and its header in uapi.
    src = os.path.join(KSRC, "tools/dma/dma_map_benchmark.c")
    hdr = os.path.join(KSRC, "include/uapi/linux/map_benchmark.h")
    if not (os.path.exists(src) and os.path.exists(hdr)):
        raise bootlib.BootError("%s missing: run make kernel (or set KSRC)" % src)
    # The rest of the kernel's include/ clashes with libc, so copy just
    # this one header.
    inc = os.path.join(work, "inc")
    os.makedirs(os.path.join(inc, "linux"), exist_ok=True)
    shutil.copy(hdr, os.path.join(inc, "linux"))
    dmb = build_static(os.path.join(work, "dma_map_benchmark"), src, [inc])
    return dio, dmb


# ---------------------------------------------------------------- control

class Control:
    """The host end of ttyS2: QEMU connects to our socket; each
    ``MARK name`` line is answered with ``ACK`` after ``snapshot()``."""

    def __init__(self, path, snapshot):
        self.path, self.snapshot = path, snapshot
        self.marks = {}
        self.errors = []
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
                try:
                    self.marks[line[5:]] = self.snapshot()
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


# ---------------------------------------------------------------- one config

def run_config(cfg, kernel, tools, conf_text, timeout):
    out = bootlib.workdir("pviommu-bench-%s-" % cfg.name)
    conf = os.path.join(out, "bench.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    initrd = os.path.join(out, "initramfs.cpio")
    bootlib.build_initramfs(initrd, [os.path.join(HERE, "guest", "bench.sh")], files={
        "/etc/bench/conf": conf,
        "/usr/local/bin/dio": tools[0],
        "/usr/local/bin/dma_map_benchmark": tools[1],
    })
    cmdline = BASE_CMDLINE
    if cfg.mode:
        cmdline += " %s=%s" % (harness.MODE_PARAM, cfg.mode)
    cmdline = (cmdline + " " + cfg.cmdline).strip()
    hyp = None
    if cfg.kind == "refhyp":
        hyp = harness.Refhyp(out, flags=cfg.flags, disk_mib=DISK_MIB)
        extra = hyp.qemu_args(cfg.iommu)
        machine = harness.Refhyp.MACHINE
        snapshot = hyp.counters
    else:
        disk = os.path.join(out, "disk.img")
        with open(disk, "wb") as f:
            f.truncate(DISK_MIB << 20)
        extra = [
            "-device", "virtio-iommu-pci",
            "-drive", "file=%s,if=none,id=d0,format=raw" % disk,
            "-device", "virtio-blk-pci,drive=d0,iommu_platform=on,disable-legacy=on",
        ]
        machine = "q35"

        def snapshot():
            return None
    ctl = Control(os.path.join(out, "ctl.sock"), snapshot)
    extra += ["-chardev", "socket,id=ctl,path=%s" % ctl.path, "-serial", "chardev:ctl",
              "-device", "pci-testdev"]
    qemu = bootlib.Qemu(kernel, initrd, cmdline, out, extra_args=extra, memory=RAM, smp=2,
                        machine=machine)
    try:
        qemu.run(timeout)
    finally:
        ctl.close()
        final = hyp.stop() if hyp else None
    tap, console = qemu.read("tap"), qemu.read("console")
    problems = []
    t = bootlib.parse_tap(tap)
    problems += t.problems + ["not ok " + x for x in t.failed]
    if qemu.timed_out:
        problems.append("timed out after %.0f s" % timeout)
    bad = bootlib.panic_in(console)
    if bad:
        problems.append("kernel reported: " + bad)
    problems += ctl.errors
    if hyp and final and final["device"]["violations"]:
        problems.append("%d violations" % final["device"]["violations"])
    if hyp and os.path.exists(hyp.ram_file):
        problems.append("guest RAM file left in /dev/shm")
    return {"config": cfg.name, "seconds": round(qemu.seconds, 1), "tap": tap,
            "console_tail": console.splitlines()[-40:], "marks": ctl.marks,
            "final_counters": final, "problems": problems}


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


def parse_guest(tap):
    dio, dbg, dmb, info = {}, {}, {}, []
    for line in tap.splitlines():
        line = re.sub(r"^#\s?", "", line).strip()
        if line.startswith("dio "):
            kv = {k: num(v) for k, v in KV.findall(line)}
            dio["%s-%d" % (kv["op"], kv["bs"])] = kv
        elif line.startswith("dbg "):
            parts = line.split()
            dbg[(parts[1], parts[2])] = {k: num(v) for k, v in KV.findall(line)}
        elif line.startswith("dmb g="):
            g, t = re.match(r"dmb g=(\d+) t=(\d+)", line).groups()
            # dma_map_benchmark prints a standard deviation, the pviommu's
            # map_bench (same loop over the virtio mapping ops) does not.
            m = re.search(r"average map latency\(us\):([\d.]+)(?: standard deviation:([\d.]+))?",
                          line)
            u = re.search(
                r"average unmap latency\(us\):([\d.]+)(?: standard deviation:([\d.]+))?", line)
            sd = lambda x: float(x.group(2)) if x and x.group(2) else None  # noqa: E731
            dmb["g%s-t%s" % (g, t)] = {
                "map_us": float(m.group(1)) if m else None,
                "map_sd": sd(m),
                "unmap_us": float(u.group(1)) if u else None,
                "unmap_sd": sd(u),
                "raw": line[len("dmb "):].strip(),
            }
        elif line.startswith("info ") or line.startswith("dmb none"):
            info.append(line)
    return dio, dbg, dmb, info


def delta(a, b, path):
    """b - a at a dotted path in two counter dicts, or None."""
    try:
        for k in path.split("."):
            a, b = a[k], b[k]
        return b - a
    except (KeyError, TypeError):
        return None


def div(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


HCALLS = ("hcall_sync", "hcall_share", "hcall_unshare", "hcall_other")


def workload_metrics(name, ios, run, dbg):
    """Per-I/O (or per-map) counters of one workload from both sides."""
    g0, g1 = dbg.get((name, "begin")), dbg.get((name, "end"))
    h0, h1 = run["marks"].get(name + " begin"), run["marks"].get(name + " end")
    m = {}
    if g0 and g1 and all(k in g0 for k in HCALLS):
        gd = {k: g1[k] - g0[k] for k in g0 if isinstance(g0[k], int) and k in g1}
        m["guest"] = gd
        m["guest_hcalls_per_io"] = div(sum(gd[k] for k in HCALLS), ios)
        m["bytes_copied_per_io"] = div(gd.get("bounced_bytes"), ios)
        m["maps"] = gd.get("maps")
        m["unmaps"] = gd.get("unmaps")
        # Hypercalls the map path can issue: SHARE (sync mode) and a SYNC
        # forced by a full ring.
        m["map_path_hcalls"] = gd.get("hcall_share", 0) + gd.get("ring_full", 0)
        m["hcalls_per_map"] = div(m["map_path_hcalls"], gd.get("maps"))
    if h0 and h1:
        m["hyp"] = {
            "exits_hypercall": delta(h0, h1, "hyp.exits_hypercall"),
            "exits_queue_kick": delta(h0, h1, "hyp.exits_queue_kick"),
            "exits_fault": delta(h0, h1, "hyp.exits_fault"),
            "drains": delta(h0, h1, "hyp.drains"),
            "records": delta(h0, h1, "hyp.records_consumed"),
            "invalidations": delta(h0, h1, "hyp.invalidations"),
            "kicks": delta(h0, h1, "device.kicks"),
            "requests": delta(h0, h1, "device.requests"),
            "bytes_read": delta(h0, h1, "device.bytes_read"),
            "bytes_written": delta(h0, h1, "device.bytes_written"),
            "violations": delta(h0, h1, "device.violations"),
        }
        hy = m["hyp"]
        m["hcalls_per_io"] = div(hy["exits_hypercall"], ios)
        m["kicks_per_io"] = div(hy["kicks"], ios)
        m["records_per_drain"] = div(hy["records"], hy["drains"]) if hy["records"] else None
    return m


def best_of(rounds):
    """One configuration's rounds merged: per workload, the round with the
    highest throughput (dma_map_benchmark: the lowest map+unmap time),
    whole, so its counters stay those of the figure shown. Every round's
    throughput stays in ``rounds_mbps``."""
    res = dict(rounds[0])
    res["seconds"] = sum(r["seconds"] for r in rounds)
    res["problems"] = [p for r in rounds for p in r["problems"]]
    res["io"], res["dmb"], res["rounds_mbps"] = {}, {}, {}
    for key in sorted({k for r in rounds for k in r["io"]}):
        have = [r["io"][key] for r in rounds if key in r["io"]]
        res["io"][key] = dict(max(have, key=lambda w: w["mbps"]), rounds=len(have))
        res["rounds_mbps"][key] = [w["mbps"] for w in have]
    for key in sorted({k for r in rounds for k in r["dmb"]}):
        have = [r["dmb"][key] for r in rounds if r["dmb"].get(key, {}).get("map_us") is not None]
        if have:
            res["dmb"][key] = min(have, key=lambda w: w["map_us"] + (w["unmap_us"] or 0))
    return res


def analyse(run):
    dio, dbg, dmb, info = parse_guest(run["tap"])
    res = {"config": run["config"], "seconds": run["seconds"], "problems": run["problems"],
           "info": info, "io": {}, "dmb": {}}
    for key, d in dio.items():
        r = {"mbps": d["mbps"], "us_per_io": d["us_per_io"], "ios": d["ios"],
             "bytes": d["bytes"], "ns": d["ns"]}
        r.update(workload_metrics(key, d["ios"], run, dbg))
        res["io"][key] = r
    for key, d in dmb.items():
        r = dict(d)
        wm = workload_metrics("dmb-" + key, None, run, dbg)
        r["hcalls_per_map"] = wm.get("hcalls_per_map")
        r["maps"] = wm.get("maps")
        if "guest" in wm:
            r["guest"] = wm["guest"]
        if "hyp" in wm:
            r["hyp"] = wm["hyp"]
            r["hyp_hcalls_per_map"] = div(wm["hyp"]["exits_hypercall"], wm.get("maps"))
        res["dmb"][key] = r
    return res


# ---------------------------------------------------------------- report

def fmt(v, nd=1):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != 0 and abs(v) < 0.01:
            return "%.2g" % v
        return "%.*f" % (nd, v)
    return str(v)


def ratio(a, b):
    return None if a is None or not b else a / b


def kib(bs):
    return "%d KiB" % (bs // 1024) if bs < 1048576 else "%d MiB" % (bs // 1048576)


def io_val(results, cfg, op, bs, field):
    r = results.get(cfg)
    if not r:
        return None
    return r["io"].get("%s-%d" % (op, bs), {}).get(field)


def targets(results):
    """The issue's targets, evaluated on this run only."""
    out = []

    def add(name, ok, detail):
        out.append({"target": name, "met": ok, "detail": detail})

    need = all(c in results for c in ("share", "bounce", "sync", "unprotected"))
    if not need:
        add("all", None, "a pviommu or unprotected configuration did not run")
        return out
    ds, ok = [], True
    for op in OPS:
        for bs in (262144, 1048576):
            r = ratio(io_val(results, "share", op, bs, "mbps"),
                      io_val(results, "bounce", op, bs, "mbps"))
            ok = ok and r is not None and r >= 2.0
            ds.append("%s %s %s×" % (op, kib(bs), fmt(r, 2)))
    add("share ≥ 2× bounce throughput at ≥ 256 KiB", ok, "; ".join(ds))
    ds, ok = [], True
    for op in OPS:
        for bs in SIZES:
            s = io_val(results, "share", op, bs, "mbps")
            best = max(io_val(results, "bounce", op, bs, "mbps") or 0,
                       io_val(results, "sync", op, bs, "mbps") or 0)
            r = ratio(s, best)
            if r is None or r < 1.0:
                ok = False
                ds.append("%s %s: %s× of the better baseline" % (op, kib(bs), fmt(r, 2)))
    add("share never below the better of bounce and sync", ok,
        "; ".join(ds) if ds else "share ≥ max(bounce, sync) at every size and direction")
    ds, ok = [], True
    for op in OPS:
        r = ratio(io_val(results, "share", op, 1048576, "mbps"),
                  io_val(results, "unprotected", op, 1048576, "mbps"))
        ok = ok and r is not None and r >= 0.8
        ds.append("%s 1 MiB %s×" % (op, fmt(r, 2)))
    add("share ≥ 0.8× unprotected at 1 MiB", ok, "; ".join(ds))
    maps = hc = 0
    for w in list(results["share"]["io"].values()) + list(results["share"]["dmb"].values()):
        if w.get("maps") is not None:
            maps += w["maps"]
            g = w.get("guest") or {}
            hc += g.get("hcall_share", 0) + g.get("ring_full", 0)
    add("0 hypercalls per map (share)", maps > 0 and hc == 0,
        "%d hypercalls on the map path (SHARE calls + SYNCs forced by a full ring) over %d maps"
        % (hc, maps))
    return out


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
    return {"nproc": os.cpu_count(), "cpu": cpu, "host_kernel": platform.release(),
            "qemu": qv, "accel": " ".join(bootlib.accel_args()),
            "guest": "2 vCPUs, %s RAM, q35, %d MiB disk" % (RAM, DISK_MIB)}


def analysis(res):
    """Why the throughput targets came out as they did, from this run's
    own counters (no figure here is typed in)."""
    if not all(c in res for c in ("share", "bounce")):
        return []
    L = ["", "Why, from this run's counters:", ""]
    sh, bo = res["share"], res["bounce"]
    for op in OPS:
        w = sh["io"].get("%s-%d" % (op, 1048576), {})
        if w.get("hcalls_per_io") is not None:
            L.append("- share, %s 1 MiB: %s hypercalls (`SYNC`) and %s bytes copied per I/O, "
                     "%s µs per I/O; bounce copies %s bytes per I/O in %s µs." % (
                         op, fmt(w["hcalls_per_io"], 1), fmt(w.get("bytes_copied_per_io"), 0),
                         fmt(w["us_per_io"], 0),
                         fmt(io_val(res, "bounce", op, 1048576, "bytes_copied_per_io"), 0),
                         fmt(io_val(res, "bounce", op, 1048576, "us_per_io"), 0)))
    d_sh, d_bo = sh["dmb"].get("g1-t1", {}), bo["dmb"].get("g1-t1", {})
    if d_sh.get("unmap_us") is not None and d_bo.get("map_us") is not None:
        copy = d_bo["map_us"] + d_bo["unmap_us"]
        L.append("- dma_map_benchmark, one 4 KiB buffer: share unmap (one `SYNC` exit) %s µs; "
                 "bounce map+unmap (a 4 KiB copy each way) %s µs, so under this TCG set-up one "
                 "exit costs about %s KiB of bounce copying%s." % (
                     fmt(d_sh["unmap_us"]), fmt(copy),
                     fmt(4 * d_sh["unmap_us"] / copy, 0) if copy else "n/a",
                     "" if not copy else " (REFERENCES.md puts that break-even at 10–20 KiB "
                     "on hardware)"))
    un = res.get("unprotected", {}).get("io", {})
    if d_sh.get("unmap_us") is not None:
        for op in OPS:
            w = sh["io"].get("%s-%d" % (op, 1048576), {})
            u = un.get("%s-%d" % (op, 1048576), {}).get("us_per_io")
            if w.get("hcalls_per_io") is None or u is None:
                continue
            rest = w["us_per_io"] - w["hcalls_per_io"] * d_sh["unmap_us"]
            if rest < 0:
                L.append("- share, %s 1 MiB, estimate: %s `SYNC`s at the %s µs of one "
                         "dma_map_benchmark unmap exceed the %s µs per I/O: the exits "
                         "account for the time (the two were measured at different "
                         "moments of a noisy run, so only roughly)." % (
                             op, fmt(w["hcalls_per_io"], 1), fmt(d_sh["unmap_us"]),
                             fmt(w["us_per_io"], 0)))
                continue
            why = ("the `SYNC` exits account for about all of the gap" if rest <= 1.1 * u else
                   "the rest of the gap is per-page work (the guest's table and ring updates, "
                   "emulated by TCG, and the hypervisor's host-view updates and checks)")
            L.append("- share, %s 1 MiB, estimate: %s µs per I/O minus %s `SYNC`s at the "
                     "%s µs of one dma_map_benchmark unmap leaves %s µs, against %s µs "
                     "unprotected: %s." % (
                         op, fmt(w["us_per_io"], 0), fmt(w["hcalls_per_io"], 1),
                         fmt(d_sh["unmap_us"]), fmt(rest, 0), fmt(u, 0), why))
    L.append("- `virtio_ring` maps and unmaps each descriptor on its own (`map_page`/"
             "`unmap_page` of the pviommu's `virtio_map_ops`) and ends each buffer with one "
             "`unmap_flush`, so strict share pays one `SYNC` per request, however many "
             "segments it has.")
    return L


def map_unmap(d):
    """map + unmap µs of one dma_map_benchmark result, or None."""
    if d.get("map_us") is None:
        return None
    return d["map_us"] + (d.get("unmap_us") or 0)


def markdown(report):
    res = report["results"]
    cfgs = [c for c in CONFIGS if c.name in res]
    L = []
    m = report["machine"]
    L.append("# pviommu benchmark, %s" % report["date"])
    L.append("")
    L.append("Machine: %s, %s CPUs (shared with other work), host kernel %s; %s, accelerator "
             "`%s`; guest %s; total %.0f s. Figures are TCG-emulated and noisy: compare "
             "them only within this run (the ratio columns)." % (
                 m["cpu"], m["nproc"], m["host_kernel"], m["qemu"], m["accel"], m["guest"],
                 report["total_seconds"]))
    L.append("")
    L.append("Workload: one O_DIRECT request at a time, sequential, for %s s per size and "
             "direction (guest `dio`, clock_gettime); writes first, then reads of the same "
             "%d MiB region. Each configuration booted %d times, round-robin; each figure "
             "is the best round of its workload (all rounds in the JSON, `rounds_mbps`), "
             "with that round's counters." % (report["params"]["seconds"], DISK_MIB,
                                               report["params"].get("rounds", 1)))
    L.append("")
    L.append("## Throughput (MB/s) and ratios within this run")
    L.append("")
    base = [("share/bounce", "bounce"), ("share/sync", "sync"), ("share/unprot", "unprotected"),
            ("share/vi-strict", "viommu-strict"), ("share/vi-lazy", "viommu-lazy")]
    base = [b for b in base if b[1] in res]
    L.append("| op | size | " + " | ".join(c.label for c in cfgs) + " | " +
             " | ".join(b[0] for b in base) + " |")
    L.append("|---|---|" + "---:|" * (len(cfgs) + len(base)))
    for op in OPS:
        for bs in SIZES:
            row = [op, kib(bs)] + [fmt(io_val(res, c.name, op, bs, "mbps")) for c in cfgs]
            s = io_val(res, "share", op, bs, "mbps")
            row += [fmt(ratio(s, io_val(res, b, op, bs, "mbps")), 2) for _, b in base]
            L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append("## µs per I/O, and relative to unprotected (lower is better)")
    L.append("")
    L.append("| op | size | " + " | ".join(c.label for c in cfgs) + " | " +
             " | ".join("%s/unprot" % c.name for c in cfgs if c.name != "unprotected") + " |")
    L.append("|---|---|" + "---:|" * (2 * len(cfgs) - ("unprotected" in res)))
    for op in OPS:
        for bs in SIZES:
            row = [op, kib(bs)] + [fmt(io_val(res, c.name, op, bs, "us_per_io")) for c in cfgs]
            u = io_val(res, "unprotected", op, bs, "us_per_io")
            row += [fmt(ratio(io_val(res, c.name, op, bs, "us_per_io"), u), 2)
                    for c in cfgs if c.name != "unprotected"]
            L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append("## Costs per I/O")
    L.append("")
    L.append("Hypercalls and kicks: the reference hypervisor's counters (`exits_hypercall`, "
             "`device.kicks`), read by the host when the guest marks the start and end of "
             "each workload. Bytes copied: the guest's `bounced_bytes`. Records per drain: "
             "ring records the hypervisor consumed per drain. Hypercalls per map: `SHARE` "
             "calls plus ring-full `SYNC`s over `maps` (guest debugfs). "
             "virtio-iommu runs on QEMU's own virtio-blk, which exports no such counters: "
             "n/a there (its map and unmap are virtqueue requests, not hypercalls). "
             "Unprotected has no pviommu in the guest, so no guest counters.")
    L.append("")
    L.append("| config | op | size | hypercalls/I/O | kicks/I/O | bytes copied/I/O | "
             "records/drain | hypercalls/map |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|")
    for c in cfgs:
        if c.kind != "refhyp":
            continue
        for op in OPS:
            for bs in SIZES:
                w = res[c.name]["io"].get("%s-%d" % (op, bs), {})
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    c.name, op, kib(bs), fmt(w.get("hcalls_per_io"), 2),
                    fmt(w.get("kicks_per_io"), 2), fmt(w.get("bytes_copied_per_io"), 0),
                    fmt(w.get("records_per_drain"), 2), fmt(w.get("hcalls_per_map"), 3)))
    L.append("")
    L.append("## Map/unmap latency (µs per map / unmap)")
    L.append("")
    L.append("Both tools report in units of 100 ns (0.0 means below 0.1 µs). The pviommu "
             "rows are its debugfs `map_bench` (2000 rounds, one thread: `map_page`, then "
             "`unmap_page` and `unmap_flush` of the virtio mapping operations, with the real "
             "hypervisor; the pviommu maps only virtio devices, so the DMA API no longer "
             "reaches it); the others are the kernel's `dma_map_benchmark` (`-b 64`, %s s "
             "each) on a spare PCI function (`pci-testdev`): dma-direct (unprotected) or "
             "iommu-dma over virtio-iommu. n/a: map_bench runs one thread." %
             report["params"]["dmb_seconds"])
    L.append("")
    keys = ["g%d-t%d" % (g, t) for g, t in DMB]
    L.append("| config | " + " | ".join("%s map | %s unmap" % (k, k) for k in keys) +
             " | hypercalls/map |")
    L.append("|---|" + "---:|" * (2 * len(keys) + 1))
    for c in cfgs:
        d = res[c.name]["dmb"]
        row = [c.label]
        hc = []
        for k in keys:
            row += [fmt((d.get(k) or {}).get("map_us")), fmt((d.get(k) or {}).get("unmap_us"))]
            if (d.get(k) or {}).get("hcalls_per_map") is not None:
                hc.append(d[k]["hcalls_per_map"])
        row.append(fmt(max(hc), 3) if hc else "n/a")
        L.append("| " + " | ".join(row) + " |")
    if "unprotected" in res:
        L.append("")
        L.append("Relative to unprotected (map+unmap µs):")
        L.append("")
        L.append("| config | " + " | ".join(keys) + " |")
        L.append("|---|" + "---:|" * len(keys))
        ud = res["unprotected"]["dmb"]
        for c in cfgs:
            if c.name == "unprotected":
                continue
            d = res[c.name]["dmb"]
            row = [c.label]
            for k in keys:
                a, b = d.get(k) or {}, ud.get(k) or {}
                row.append(fmt(ratio(map_unmap(a), map_unmap(b)), 2))
            L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | result | detail |")
    L.append("|---|---|---|")
    for t in report["targets"]:
        L.append("| %s | %s | %s |" % (t["target"], {True: "met", False: "**missed**",
                                                     None: "not measured"}[t["met"]], t["detail"]))
    L += analysis(res)
    L.append("")
    L.append("## Map/unmap core, callgrind (userspace, instructions)")
    L.append("")
    L.append("`hyp-abi/bench/callgrind.sh`: `%s`" % (report.get("callgrind") or "n/a (failed)"))
    L.append("")
    L.append("## Runs")
    L.append("")
    for c in cfgs:
        r = res[c.name]
        L.append("- %s: %.0f s%s" % (c.name, r["seconds"],
                                      ("; problems: " + "; ".join(r["problems"]))
                                      if r["problems"] else ""))
        for i in r["info"]:
            if i.startswith(("info iommu_class", "info iommu_group", "info dmb_device",
                             "dmb none")) or \
                    ("iommu" in i and "dmesg" in i):
                L.append("  - `%s`" % i[:160])
    L.append("")
    return "\n".join(L)


def md_to_rst(md):
    """The report in reStructuredText for Documentation/performance.rst:
    headings, pipe tables as list-tables, code spans as literals."""
    out = []
    lines = md.splitlines()
    i = 0
    marks = {1: "=", 2: "-"}

    def inline(t):
        t = re.sub(r"\*\*(.+?)\*\*", r"**\1**", t)
        return re.sub(r"`([^`]+)`", r"``\1``", t)

    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(#+) (.*)$", line)
        if m:
            title = inline(m.group(2))
            out += [title, marks.get(len(m.group(1)), "~") * len(title), ""]
            i += 1
            continue
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.match(r"^:?-+:?$", c) for c in cells if c):
                    rows.append(cells)
                i += 1
            out += [".. list-table::", "   :header-rows: 1", ""]
            for r in rows:
                out.append("   * - " + (inline(r[0]) or "\\"))
                for c in r[1:]:
                    out.append("     - " + (inline(c) or "\\"))
            out.append("")
            continue
        m = re.match(r"^(\s*)- (.*)$", line)
        if m:
            out.append(m.group(1) + "- " + inline(m.group(2)))
            if m.group(1) == "" and i + 1 < len(lines) and lines[i + 1].startswith("  -"):
                out.append("")
            i += 1
            continue
        out.append(inline(line))
        i += 1
    return "\n".join(out) + "\n"


def plot(report, path):
    try:
        import matplotlib
    except ImportError:
        return "matplotlib missing"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    res = report["results"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, op in zip(axes, OPS):
        for c in CONFIGS:
            if c.name not in res:
                continue
            xs = [bs // 1024 for bs in SIZES if io_val(res, c.name, op, bs, "mbps") is not None]
            ys = [io_val(res, c.name, op, bs, "mbps") for bs in SIZES
                  if io_val(res, c.name, op, bs, "mbps") is not None]
            ax.plot(xs, ys, marker="o", label=c.label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([bs // 1024 for bs in SIZES])
        ax.set_xticklabels([kib(bs) for bs in SIZES])
        ax.set_xlabel("block size")
        ax.set_title("O_DIRECT sequential %s" % op)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("MB/s (log)")
    axes[1].legend(fontsize=8)
    fig.suptitle("pviommu bench %s (QEMU TCG, %s CPUs)" % (report["date"],
                                                           report["machine"]["nproc"]))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


VENV = os.path.join(CACHE, "bench-venv")


def plot_anywhere(report, json_path, png_path):
    """Plots in this interpreter if it has matplotlib, else in a venv
    under the cache (created, with matplotlib installed, on first use)."""
    try:
        import matplotlib  # noqa: F401
        return plot(report, png_path)
    except ImportError:
        pass
    py = os.path.join(VENV, "bin", "python")
    try:
        if subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode:
            log("installing matplotlib into %s" % VENV)
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
            subprocess.run([py, "-m", "pip", "install", "-q", "matplotlib"], check=True)
        p = subprocess.run([py, os.path.abspath(__file__), "--plot", json_path, png_path])
        return None if p.returncode == 0 else "plotting failed"
    except (OSError, subprocess.CalledProcessError) as e:
        return "no matplotlib: %s" % e


def callgrind():
    env = dict(os.environ)
    env.setdefault("CARGO_BUILD_JOBS", "1")
    p = subprocess.run([os.path.join(ROOT, "hyp-abi/bench/callgrind.sh")], env=env,
                       capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("callgrind:"):
            return line.strip()
    log("callgrind.sh failed: %s" % (p.stderr[-2000:]))
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5, help="per size and direction")
    ap.add_argument("--dmb-seconds", type=int, default=3)
    ap.add_argument("--config", action="append", choices=[c.name for c in CONFIGS])
    ap.add_argument("--rounds", type=int, default=2,
                    help="boots per configuration, round-robin; the best round counts")
    ap.add_argument("--timeout", type=float, default=400, help="per configuration")
    ap.add_argument("--no-doc", action="store_true", help="do not copy into Documentation/")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--plot", nargs=2, metavar=("JSON", "PNG"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plot:
        with open(args.plot[0]) as f:
            err = plot(json.load(f), args.plot[1])
        if err:
            print("bench: " + err, file=sys.stderr)
        return 1 if err else 0

    start = time.monotonic()
    now = datetime.datetime.now(datetime.timezone.utc)
    kernel = bootlib.find_kernel()
    harness.PROFILE = "release"
    outdir = os.path.join(CACHE, "bench", now.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(outdir, exist_ok=True)
    work = bootlib.workdir("pviommu-bench-tools-")
    tools = build_tools(work)
    conf_text = "\n".join([
        "SIZES='%s'" % " ".join(str(s) for s in SIZES),
        "SECONDS=%s" % args.seconds,
        "MAX_IOS=10000000",
        "REGION=%d" % ((DISK_MIB - 1) << 20),
        "DMB_SECONDS=%d" % args.dmb_seconds,
        # pviommu's map_bench counts iterations, not seconds.
        "DMB_ITERATIONS=2000",
        "DMB_GRANULES='%s'" % " ".join(sorted({str(g) for g, _ in DMB}, key=int)),
        "DMB_THREADS='%s'" % " ".join(sorted({str(t) for _, t in DMB}, key=int)),
        "",
    ])
    cg = None
    if not args.no_callgrind:
        log("callgrind of the map/unmap core (hyp-abi/bench/callgrind.sh)")
        cg = callgrind()
        log(cg or "callgrind: failed")
    results, rounds = {}, {}
    names = args.config or [c.name for c in CONFIGS]
    # Round-robin, so that a burst of load on the shared machine hits one
    # round of every configuration rather than all rounds of one.
    for rnd in range(1, args.rounds + 1):
        for name in names:
            cfg = BY_NAME[name]
            log("%s: round %d/%d: booting (%s)" % (name, rnd, args.rounds, cfg.label))
            run = run_config(cfg, kernel, tools, conf_text, args.timeout)
            res = analyse(run)
            rounds.setdefault(name, []).append(res)
            with open(os.path.join(outdir, "%s-%d.tap" % (name, rnd)), "w") as f:
                f.write(run["tap"])
            summary = ", ".join("%s %s MB/s" % (k, fmt(v["mbps"])) for k, v in sorted(
                res["io"].items(),
                key=lambda kv: (kv[0].split("-")[0], int(kv[0].split("-")[1]))))
            log("%s: %.0f s; %s" % (name, run["seconds"], summary))
            for p in run["problems"]:
                log("%s: problem: %s" % (name, p))
            if run["problems"]:
                for line in run["console_tail"][-15:]:
                    log("%s: console: %s" % (name, line))
    for name in names:
        results[name] = best_of(rounds[name])
    report = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "params": {"seconds": args.seconds, "dmb_seconds": args.dmb_seconds, "sizes": SIZES,
                   "rounds": args.rounds,
                   "disk_mib": DISK_MIB, "ram": RAM, "refhyp_profile": harness.PROFILE},
        "configs": {c.name: {"label": c.label, "kind": c.kind, "cmdline": c.cmdline,
                             "mode": c.mode, "flags": c.flags} for c in CONFIGS if c.name in names},
        "callgrind": cg,
        "results": results,
        "total_seconds": round(time.monotonic() - start, 1),
    }
    report["targets"] = targets(results)
    md = markdown(report)
    with open(os.path.join(outdir, "bench.json"), "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    with open(os.path.join(outdir, "bench.md"), "w") as f:
        f.write(md)
    with open(os.path.join(outdir, "bench.rst"), "w") as f:
        f.write(md_to_rst(md))
    err = plot_anywhere(report, os.path.join(outdir, "bench.json"),
                        os.path.join(outdir, "bench.png"))
    if err:
        log("no plot: " + err)
    latest = os.path.join(CACHE, "bench", "latest")
    if os.path.islink(latest) or os.path.exists(latest):
        os.unlink(latest)
    os.symlink(outdir, latest)
    if not args.no_doc:
        os.makedirs(DOC_DIR, exist_ok=True)
        for n in ("bench.md", "bench.rst", "bench.json", "bench.png"):
            if os.path.exists(os.path.join(outdir, n)):
                shutil.copy(os.path.join(outdir, n), os.path.join(DOC_DIR, n))
    print(md)
    log("results in %s%s; total %.0f s" % (outdir, "" if args.no_doc else " and " + DOC_DIR,
                                          time.monotonic() - start))
    failed = [n for n in names if results[n]["problems"]]
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bootlib.BootError as e:
        print("bench: error: %s" % e, file=sys.stderr)
        sys.exit(1)
