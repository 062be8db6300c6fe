# SPDX-License-Identifier: GPL-2.0
"""make bench's statistics: paired ratios, targets, cost model.

Everything here is computed from the raw boots ``bench.py`` collected;
no figure is typed in, except the published hardware figures of the
projection (``HARDWARE``), each with its source.

Statistics. The unit of replication is the round: one boot of every
configuration, run back to back, round-robin. A comparison of A with B
is the median over rounds of the ratio A/B *within* a round (paired, so
a slow spell of the shared machine that hits one round cancels), with a
distribution-free confidence interval for that median from the order
statistics (the sign test's interval: with n = 5 rounds it is [min, max]
of the five ratios, 93.75 %). A target is *met* when the whole interval
clears its threshold, *missed* when it lies wholly below, and
*inconclusive* when it straddles it or when fewer rounds than the
interval needs (5) succeeded. A configuration with no successful round
is *missing*: no number is made up for it.

Cost model. Per-event costs are fitted, by non-negative least squares on
relative errors, to the time per I/O of every single-job, depth-1 fio
workload on the refhyp's disk and the time per iteration of map_bench,
with the events per I/O the run counted (hypercall exits, ring records,
table writes, bytes copied, descriptors, requests, map calls). Their
uncertainty comes from resampling rounds (bootstrap). The crossover
buffer size above which sharing in place beats bouncing follows from the
fitted exit, record, table-write and copy costs; the hardware projection
puts published arm64 figures in place of TCG's. Both are models and are
labelled so.
"""

import math
import random
import re

# Sizes and directions the targets are stated at (fio job names).
SIZES = ["4k", "16k", "64k", "256k", "1m"]
SIZE_BYTES = {"4k": 4096, "16k": 16384, "64k": 65536, "256k": 262144, "1m": 1048576}
OPS = ["read", "write"]
CONF = 0.90
MIN_ROUNDS = 5
BOOTSTRAP = 400
MONTE_CARLO = 20000


def seq(op, size):
    return "%s-%s-qd1-j1" % (op, size)


# ---------------------------------------------------------------- basics

def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def quantile(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    pos = q * (len(xs) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def binom_cdf(k, n):
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


def median_ci(xs, conf=CONF):
    """Order-statistic interval [x_(k), x_(n-k+1)] for the median: the
    narrowest one whose coverage 1 - 2 P(X <= k-1) is at least ``conf``;
    if even [min, max] falls short, that with its (lower) coverage."""
    xs = sorted(x for x in xs if x is not None)
    n = len(xs)
    if n == 0:
        return None, None, 0.0
    best = (xs[0], xs[-1], 1 - 2 * binom_cdf(0, n) if n > 0 else 0.0)
    for k in range(1, n // 2 + 1):
        cov = 1 - 2 * binom_cdf(k - 1, n)
        if cov >= conf:
            best = (xs[k - 1], xs[n - k], cov)
        else:
            break
    return best


def summary(xs, conf=CONF):
    xs = [x for x in xs if x is not None]
    lo, hi, cov = median_ci(xs, conf)
    return {"n": len(xs), "median": median(xs), "lo": lo, "hi": hi, "coverage": cov,
            "values": xs}


def verdict(s, threshold, higher_is_better=True):
    if s is None or s["n"] == 0:
        return "missing"
    if s["n"] < MIN_ROUNDS or s["coverage"] < CONF:
        return "inconclusive"
    lo, hi = s["lo"], s["hi"]
    if not higher_is_better:
        lo, hi, threshold = -hi, -lo, -threshold
    if lo >= threshold:
        return "met"
    if hi < threshold:
        return "missed"
    return "inconclusive"


def combine(verdicts):
    if not verdicts or all(v == "missing" for v in verdicts):
        return "missing"
    if "missed" in verdicts:
        return "missed"
    if all(v == "met" for v in verdicts):
        return "met"
    return "inconclusive"


def div(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


# ---------------------------------------------------------------- per workload

def workload_figures(w):
    """The figures of one workload in one boot that the report uses."""
    f = w.get("fio") or {}
    hyp = w.get("hyp") or {}
    g = w.get("guest") or {}
    blk = w.get("blk") or {}
    ios = f.get("ios")
    out = {"iops": f.get("iops"), "mbps": f.get("mbps"), "us_per_io": f.get("us_per_io"),
           "lat_us": f.get("lat_us"), "p99_us": f.get("clat_p99_us"), "ios": ios}
    wall, cpu = w.get("wall_s"), w.get("cpu_s") or {}
    runtime = (f.get("runtime_ms") or 0) / 1000.0
    # The bracket also holds the job's set-up and the marks themselves
    # (wall > runtime); QEMU's vCPU is busy throughout, the refhyp only
    # while there is I/O. So QEMU's time is scaled to fio's runtime, the
    # refhyp's is taken whole.
    if ios and wall and runtime:
        q, r = cpu.get("qemu"), cpu.get("refhyp")
        out["cpu_qemu_us_per_io"] = q * min(1.0, runtime / wall) / ios * 1e6 if q is not None else None
        out["cpu_refhyp_us_per_io"] = r / ios * 1e6 if r is not None else None
        out["cpu_us_per_io"] = (out["cpu_qemu_us_per_io"] or 0) + (out["cpu_refhyp_us_per_io"] or 0) \
            if out["cpu_qemu_us_per_io"] is not None else None
        out["bracket_overhead"] = wall / runtime - 1
    if ios:
        req = blk.get("read_ios", 0) + blk.get("write_ios", 0) if blk else None
        out["requests_per_io"] = div(req, ios)
        out["dev_requests_per_io"] = div(hyp.get("device.requests"), ios)
        out["segments_per_request"] = div(hyp.get("device.data_descriptors"),
                                          hyp.get("device.requests"))
        out["hcalls_per_io"] = div(hyp.get("hyp.exits_hypercall"), ios)
        out["bytes_copied_per_io"] = div(g.get("bounced_bytes"), ios) if g else None
        out["records_per_io"] = div(g.get("ring_records"), ios) if g else None
        if g:
            out["syncs"] = g.get("hcall_sync")
            out["map_path_hcalls"] = (g.get("hcall_share", 0) + g.get("hcall_apply", 0) +
                                      g.get("ring_full", 0) + g.get("hcall_pool_share", 0))
            out["maps"] = g.get("maps")
        out["dev_requests"] = hyp.get("device.requests")
    lay = w.get("layout")
    if lay:
        out["layout_pages"], out["layout_adjacent"] = lay["pages"], lay["adjacent"]
    return out


def index(raw):
    """{config: {round: boot}} of the boots that succeeded."""
    out = {}
    for b in raw["boots"]:
        if b["ok"]:
            out.setdefault(b["config"], {})[b["round"]] = b
    return out


def per_round(idx, config, workload, fn):
    """{round: fn(figures)} for one configuration and workload."""
    out = {}
    for rnd, b in idx.get(config, {}).items():
        w = b["workloads"].get(workload)
        if w is None:
            continue
        v = fn(workload_figures(w))
        if v is not None:
            out[rnd] = v
    return out


def paired(idx, num, den, workload, metric="iops"):
    """Per-round ratios num/den of one metric; ``den`` may be a list
    (their per-round maximum, as in share vs the better baseline)."""
    a = per_round(idx, num, workload, lambda f: f.get(metric))
    dens = [den] if isinstance(den, str) else den
    bs = [per_round(idx, d, workload, lambda f: f.get(metric)) for d in dens]
    out = {}
    for rnd, v in a.items():
        if all(rnd in b for b in bs):
            d = max(b[rnd] for b in bs)
            if d:
                out[rnd] = v / d
    return out


def workloads_of(raw):
    names = set()
    for b in raw["boots"]:
        names.update(b["workloads"])
    return sorted(names)


# ---------------------------------------------------------------- targets

def mapbench_cost(idx, config, pages, part):
    """{round: µs} of map_bench at PAGES: 'unmap', 'map' or 'both'."""
    out = {}
    for rnd, b in idx.get(config, {}).items():
        w = b["workloads"].get("mapbench-g%d" % pages) or {}
        lat = w.get("latency") or {}
        m, u = lat.get("map_us"), lat.get("unmap_us")
        if m is None or u is None:
            continue
        out[rnd] = {"unmap": u, "map": m, "both": m + u}[part]
    return out


def targets(raw, idx):
    T = []

    def ratio_target(name, num, den, cells, threshold):
        out = {"target": name, "threshold": threshold, "cells": []}
        for label, wl in cells:
            r = paired(idx, num, den, wl)
            s = summary(list(r.values()))
            s["verdict"] = verdict(s, threshold)
            s["label"] = label
            s["workload"] = wl
            out["cells"].append(s)
        out["verdict"] = combine([c["verdict"] for c in out["cells"]])
        T.append(out)

    ratio_target("share ≥ max(bounce, sync), every size, both directions",
                 "share", ["bounce", "sync"],
                 [("%s %s" % (op, sz), seq(op, sz)) for op in OPS for sz in SIZES], 1.0)
    ratio_target("share ≥ 1.2 × bounce at 256 KiB", "share", "bounce",
                 [("%s 256k" % op, seq(op, "256k")) for op in OPS], 1.2)
    ratio_target("share ≥ 1.5 × bounce at 1 MiB", "share", "bounce",
                 [("%s 1m" % op, seq(op, "1m")) for op in OPS], 1.5)
    ratio_target("share ≥ 0.9 × unprotected at 1 MiB", "share", "unprotected",
                 [("%s 1m" % op, seq(op, "1m")) for op in OPS], 0.9)

    # One SYNC against bouncing 16 KiB, both from map_bench in the same
    # round: share's unmap of a 1-page buffer is unmap_page + the SYNC;
    # bounce's map + unmap of a 4-page buffer copies 16 KiB in and 16 KiB
    # out (DMA_BIDIRECTIONAL), so half of it is one 16 KiB bounce.
    sync_c = mapbench_cost(idx, "share", 1, "unmap")
    b16 = mapbench_cost(idx, "bounce", 4, "both")
    r = {k: (b16[k] / 2) / sync_c[k] for k in sync_c if k in b16 and sync_c[k]}
    s = summary(list(r.values()))
    s.update(verdict=verdict(s, 1.0), label="bounce(16 KiB) / SYNC",
             sync_us=summary(list(sync_c.values())),
             bounce16_us=summary([v / 2 for v in b16.values()]))
    T.append({"target": "one SYNC costs no more than bouncing 16 KiB", "threshold": 1.0,
              "cells": [s], "verdict": s["verdict"]})

    # Exact counts over every bracketed workload of every share boot.
    maps = 0
    parts = {"hcall_share": 0, "hcall_apply": 0, "ring_full": 0, "hcall_pool_share": 0}
    syncs = reqs = 0
    mismatched = []
    strict = []
    for rnd, b in idx.get("share", {}).items():
        strict.append(any("strict unmap" in i for i in b["info"]))
        for name, w in b["workloads"].items():
            g = w.get("guest") or {}
            if not g:
                continue
            maps += g.get("maps", 0)
            for k in parts:
                parts[k] += g.get(k, 0)
            if (w.get("fio") or {}).get("ios"):
                d = (w.get("hyp") or {}).get("device.requests")
                s_ = g.get("hcall_sync", 0)
                if d is not None:
                    syncs += s_
                    reqs += d
                    if s_ != d:
                        mismatched.append("%s r%d: %d SYNCs, %d requests" % (name, rnd, s_, d))
    hc = sum(parts.values())
    if not idx.get("share"):
        v, detail = "missing", "share did not run"
    elif maps == 0:
        v, detail = "missing", "no maps counted"
    else:
        v = "met" if hc == 0 else "missed"
        detail = "%d hypercalls on the map path over %d maps (%s)" % (
            hc, maps, ", ".join("%s %d" % kv for kv in parts.items()))
    T.append({"target": "0 hypercalls per map (share)", "verdict": v, "detail": detail,
              "cells": [], "counts": dict(parts, maps=maps)})
    if not idx.get("share") or reqs == 0:
        v, detail = "missing", "share did not run"
    else:
        v = "met" if not mismatched and all(strict) else "missed"
        detail = "%d SYNCs for %d virtio requests (buffers) over every fio workload of %d " \
                 "rounds%s%s" % (syncs, reqs, len(idx["share"]),
                                 "; strict mode in every boot" if all(strict) else
                                 "; NOT strict in some boot",
                                 "; differ in: " + "; ".join(mismatched[:6]) if mismatched else "")
    T.append({"target": "exactly 1 SYNC per virtio buffer (strict)", "verdict": v,
              "detail": detail, "cells": [], "counts": {"syncs": syncs, "requests": reqs}})
    return T


# ---------------------------------------------------------------- tables

METRICS = ["iops", "mbps", "lat_us", "p99_us", "cpu_us_per_io", "cpu_qemu_us_per_io",
           "cpu_refhyp_us_per_io", "requests_per_io", "dev_requests_per_io",
           "segments_per_request", "hcalls_per_io", "bytes_copied_per_io", "records_per_io",
           "layout_adjacent", "layout_pages", "bracket_overhead"]


def tables(raw, idx):
    """Per configuration and workload: each metric's summary over rounds."""
    out = {}
    for c in raw["configs"]:
        for wl in workloads_of(raw):
            for m in METRICS:
                vals = per_round(idx, c, wl, lambda f, m=m: f.get(m))
                if vals:
                    out.setdefault(c, {}).setdefault(wl, {})[m] = summary(list(vals.values()))
    return out


RATIOS = [("share", "bounce"), ("share", "sync"), ("share", "unprotected"),
          ("share-auto", "share"), ("share-auto", "bounce"), ("share-auto", "unprotected"),
          ("bounce", "unprotected"), ("sync", "unprotected"),
          ("viommu-strict", "unprotected-qemu"), ("viommu-lazy", "unprotected-qemu"),
          ("unprotected", "unprotected-qemu")]


def ratios(raw, idx):
    out = {}
    for wl in workloads_of(raw):
        if wl.startswith(("mapbench", "dmb")):
            continue
        for a, b in RATIOS:
            if a in raw["configs"] and b in raw["configs"]:
                for metric in ("iops", "cpu_us_per_io"):
                    r = paired(idx, a, b, wl, metric)
                    if r:
                        out.setdefault(wl, {}).setdefault("%s/%s" % (a, b), {})[metric] = \
                            summary(list(r.values()))
        # Sharing against virtio-iommu, each over the unprotected run of its
        # own disk: (share/unprotected) / (viommu/unprotected-qemu).
        for v in ("viommu-strict", "viommu-lazy"):
            if all(c in raw["configs"] for c in ("share", "unprotected", v, "unprotected-qemu")):
                s = paired(idx, "share", "unprotected", wl)
                q = paired(idx, v, "unprotected-qemu", wl)
                r = {k: s[k] / q[k] for k in s if k in q and q[k]}
                if r:
                    out.setdefault(wl, {})["share/%s (normalised)" % v] = {
                        "iops": summary(list(r.values()))}
    return out


# ---------------------------------------------------------------- cost model

TERMS = [
    ("io_read", "µs", "fixed cost of one read I/O: fio, the block layer, virtio-blk, the "
     "device (no protection)"),
    ("io_write", "µs", "the same for one write I/O"),
    ("iteration", "µs", "fixed cost of one map_bench iteration (timer reads, call overhead)"),
    ("request", "µs", "one virtio request beyond the first of an I/O (kick exit, completion "
     "interrupt)"),
    ("descriptor", "µs", "one data descriptor, here always one 4 KiB page: the guest's sg entry "
     "and the backend moving its 4 KiB"),
    ("checked_descriptor", "µs", "the enforcing disk's host-view check of one data descriptor "
     "(every configuration but unprot)"),
    ("map_op", "µs", "one pviommu map or unmap call (virtio_map_ops), besides what follows"),
    ("sync_exit", "µs", "one SYNC: doorbell, the refhyp drains the ring and invalidates (waits "
     "for in-flight device accesses), answer"),
    ("call_exit", "µs", "one SHARE or UNSHARE call (sync mode): doorbell, the refhyp changes "
     "the host view (and invalidates, for UNSHARE), answer"),
    ("record", "µs", "one ring record, written by the guest and drained by the hypervisor"),
    ("table_write", "µs", "one table entry changed (a page shared or unshared)"),
    ("copied_byte", "ns", "one byte copied through the bounce pool"),
]
TERM_NAMES = [t[0] for t in TERMS]
SCALE = {"copied_byte": 1000.0}  # report ns per byte


def model_rows(raw, idx):
    """(round, config, workload, y µs, {term: events}) for every
    single-job depth-1 fio workload on the refhyp disk and every
    map_bench run."""
    rows = []
    for c in ("share", "share-auto", "bounce", "sync", "unprotected"):
        for rnd, b in idx.get(c, {}).items():
            for name, w in b["workloads"].items():
                f = w.get("fio") or {}
                hyp = w.get("hyp") or {}
                g = w.get("guest") or {}
                m = re.match(r"(rand)?(read|write)-\w+-qd1-j1$", name)
                if m and f.get("ios") and f.get("us_per_io") and hyp:
                    n = f["ios"]
                    x = {t: 0.0 for t in TERM_NAMES}
                    x["io_" + m.group(2)] = 1.0
                    x["request"] = max(0.0, hyp.get("device.requests", 0) / n - 1.0)
                    x["descriptor"] = hyp.get("device.data_descriptors", 0) / n
                    if c != "unprotected":
                        x["checked_descriptor"] = x["descriptor"]
                    syncs = hyp.get("hyp.calls.sync", 0)
                    x["sync_exit"] = syncs / n
                    x["call_exit"] = (hyp.get("hyp.exits_hypercall", 0) - syncs) / n
                    if g:
                        x["map_op"] = (g.get("maps", 0) + g.get("unmaps", 0)) / n
                        x["record"] = g.get("ring_records", 0) / n
                        x["table_write"] = (g.get("pages_shared", 0) +
                                            g.get("pages_unshared", 0)) / n
                        x["copied_byte"] = g.get("bounced_bytes", 0) / n
                    rows.append((rnd, c, name, f["us_per_io"], x))
                mb = re.match(r"mapbench-g(\d+)$", name)
                lat = w.get("latency") or {}
                if mb and g and lat.get("map_us") is not None and lat.get("unmap_us") is not None:
                    it = raw["params"]["mapbench_iterations"]
                    x = {t: 0.0 for t in TERM_NAMES}
                    x["iteration"] = 1.0
                    x["map_op"] = (g.get("maps", 0) + g.get("unmaps", 0)) / it
                    if hyp:
                        syncs = hyp.get("hyp.calls.sync", 0)
                        x["sync_exit"] = syncs / it
                        x["call_exit"] = (hyp.get("hyp.exits_hypercall", 0) - syncs) / it
                    x["record"] = g.get("ring_records", 0) / it
                    x["table_write"] = (g.get("pages_shared", 0) + g.get("pages_unshared", 0)) / it
                    x["copied_byte"] = g.get("bounced_bytes", 0) / it
                    rows.append((rnd, c, name, lat["map_us"] + lat["unmap_us"], x))
    return rows


def solve(a, b):
    """Solves the small dense system a x = b (Gaussian elimination with
    partial pivoting); None if singular."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[piv][col]) < 1e-300:
            return None
        m[col], m[piv] = m[piv], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            if f:
                for k in range(col, n + 1):
                    m[r][k] -= f * m[col][k]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][k] * x[k] for k in range(r + 1, n))) / m[r][r]
    return x


def nnls_normal(ata, atb, tol=1e-12, max_iter=200):
    """Lawson-Hanson non-negative least squares on the normal equations
    (A'A, A'b): minimises |Ax - b| subject to x >= 0."""
    n = len(atb)
    x = [0.0] * n
    passive = []

    def grad(x):
        return [atb[i] - sum(ata[i][j] * x[j] for j in range(n)) for i in range(n)]

    for _ in range(max_iter):
        w = grad(x)
        cand = [j for j in range(n) if j not in passive and w[j] > tol * max(1.0, abs(atb[j]))]
        if not cand:
            break
        passive.append(max(cand, key=lambda j: w[j]))
        while True:
            sub = solve([[ata[i][j] for j in passive] for i in passive], [atb[i] for i in passive])
            if sub is None:
                passive.pop()
                break
            z = [0.0] * n
            for k, j in enumerate(passive):
                z[j] = sub[k]
            if all(z[j] > 0 for j in passive):
                x = z
                break
            alpha = min(x[j] / (x[j] - z[j]) for j in passive if z[j] <= 0 and x[j] != z[j]) \
                if any(z[j] <= 0 and x[j] != z[j] for j in passive) else 0.0
            x = [x[i] + alpha * (z[i] - x[i]) for i in range(n)]
            passive = [j for j in passive if x[j] > tol]
            for j in range(n):
                if j not in passive:
                    x[j] = 0.0
    return x


def fit(rows, weights_by_round=None):
    """Weighted (1/y: relative errors) NNLS of y on the events; returns
    {term: cost} (µs per event) and the terms that had any events."""
    used = [t for t in TERM_NAMES if any(r[4][t] for r in rows)]
    n = len(used)
    # Columns scaled to unit size so the solver sees comparable numbers.
    scale = [max(abs(r[4][t]) for r in rows) or 1.0 for t in used]
    ata = [[0.0] * n for _ in range(n)]
    atb = [0.0] * n
    for rnd, _c, _w, y, x in rows:
        k = (weights_by_round or {}).get(rnd, 1)
        if not k:
            continue
        v = [x[t] / s / y for t, s in zip(used, scale)]
        for i in range(n):
            atb[i] += k * v[i]  # target is y / y = 1
            for j in range(n):
                ata[i][j] += k * v[i] * v[j]
    beta = nnls_normal(ata, atb)
    return {t: beta[i] / scale[i] for i, t in enumerate(used)}, used


def predict(beta, x):
    return sum(beta.get(t, 0.0) * v for t, v in x.items())


def crossover_pages(fixed_cost, record_cost, tw_cost, byte_cost, records_pp, tw_pp):
    """Pages n above which sharing a buffer in place (a fixed cost per
    buffer: its SYNC and invalidation; per page: records and table
    writes) costs less than bouncing it (per page: 4096 bytes copied).
    None if sharing never wins."""
    per_page = 4096 * byte_cost - records_pp * record_cost - tw_pp * tw_cost
    if per_page <= 0:
        return None
    return fixed_cost / per_page


def share_events_per_page(idx):
    """Records and table writes per page shared, and invalidations per
    buffer, from share's 256 KiB and 1 MiB workloads (the header and
    status pages are shared already)."""
    rec, tw, pages, inv, reqs = 0, 0, 0, 0, 0
    for b in idx.get("share", {}).values():
        for name in (seq(op, s) for op in OPS for s in ("256k", "1m")):
            w = b["workloads"].get(name) or {}
            g, hyp = w.get("guest") or {}, w.get("hyp") or {}
            if g and hyp.get("device.data_descriptors"):
                rec += g.get("ring_records", 0)
                tw += g.get("pages_shared", 0) + g.get("pages_unshared", 0)
                pages += hyp["device.data_descriptors"]
                inv += hyp.get("hyp.invalidations", 0)
                reqs += hyp.get("device.requests", 0)
    if not pages or not reqs:
        return None, None, None
    return rec / pages, tw / pages, inv / reqs


def cost_model(raw, idx):
    rows = model_rows(raw, idx)
    if len(rows) < 2 * len(TERM_NAMES):
        return {"error": "too few observations (%d) for a fit" % len(rows)}
    beta, used = fit(rows)
    res = []
    for rnd, c, w, y, x in rows:
        p = predict(beta, x)
        res.append({"round": rnd, "config": c, "workload": w, "y": y, "pred": p,
                    "rel": (y - p) / y})
    rel = [r["rel"] for r in res]
    rms = math.sqrt(sum(r * r for r in rel) / len(rel))
    # Share of variance explained on the log scale (scale-free across sizes).
    ly = [math.log(r["y"]) for r in res]
    lp = [math.log(max(r["pred"], 1e-9)) for r in res]
    mean = sum(ly) / len(ly)
    ss_tot = sum((a - mean) ** 2 for a in ly)
    ss_res = sum((a - b) ** 2 for a, b in zip(ly, lp))
    r2 = 1 - ss_res / ss_tot if ss_tot else None
    # Residuals per configuration and workload: median over rounds.
    cells = {}
    for r in res:
        cells.setdefault((r["config"], r["workload"]), []).append(r)
    by_cell = [{"config": c, "workload": w, "y": median([r["y"] for r in rs]),
                "pred": median([r["pred"] for r in rs]), "rel": median([r["rel"] for r in rs])}
               for (c, w), rs in sorted(cells.items())]
    # Bootstrap over rounds.
    rounds = sorted({r[0] for r in rows})
    rng = random.Random(20261204)
    boots = []
    rpp, tpp, ipb = share_events_per_page(idx)
    for _ in range(BOOTSTRAP):
        pick = [rng.choice(rounds) for _ in rounds]
        wts = {k: pick.count(k) for k in rounds}
        b, _ = fit(rows, wts)
        boots.append(b)
    ci = {}
    for t in used:
        vals = [b.get(t, 0.0) for b in boots]
        ci[t] = {"est": beta[t], "lo": quantile(vals, 0.05), "hi": quantile(vals, 0.95)}
    out = {"terms": [{"term": t, "unit": u, "what": d, **ci[t]} for t, u, d in TERMS if t in ci],
           "n_rows": len(rows), "rounds": rounds, "rms_rel": rms, "r2_log": r2,
           "residuals": by_cell, "records_per_page": rpp, "table_writes_per_page": tpp,
           "invalidations_per_buffer": ipb}
    # TCG crossover from the fitted costs.
    if rpp is not None and all(t in beta for t in ("sync_exit", "copied_byte")):
        def cross(b):
            return crossover_pages(b.get("sync_exit", 0),
                                   b.get("record", 0), b.get("table_write", 0),
                                   b.get("copied_byte", 0), rpp, tpp)
        est = cross(beta)
        bs = [cross(b) for b in boots]
        finite = [x for x in bs if x is not None]
        out["crossover_tcg"] = {
            "pages": est, "kib": est * 4 if est is not None else None,
            "lo_kib": quantile(finite, 0.05) * 4 if len(finite) > 10 else None,
            "hi_kib": quantile(finite, 0.95) * 4 if len(finite) > 10 else None,
            "never_fraction": 1 - len(finite) / len(bs)}
        out["sync_vs_16k_model"] = {
            "sync_us": beta.get("sync_exit", 0.0),
            "bounce16_us": 16384 * beta.get("copied_byte", 0.0),
        }
    out["projection"] = projection(raw, rpp, tpp)
    return out


# ---------------------------------------------------------------- hardware

# Published figures for the projection, each a range sampled log-uniformly.
HARDWARE = {
    "exit_us": {
        "range": (0.2, 1.0),
        "what": "one SYNC's trap to the hypervisor and back",
        "source": "low end: a hypercall handled at EL2 under pKVM adds about 0.2 µs "
                  "(dma_map_benchmark map, 4 KiB, one thread, 0.3 µs through pKVM's "
                  "paravirtual SMMUv3 against 0.1 µs native, on Morello; M. Saleh, \"KVM: Arm "
                  "SMMUv3 driver for pKVM\" RFC v2, 2024-12); high end: a full VM exit, "
                  "~1,300–2,600 cycles, ~0.5–1 µs (M. Roth, LKML 2012.2/00527; "
                  "kvm-unit-tests vmexit)",
    },
    "tlbi_us": {
        "range": (0.1, 1.0),
        "what": "the SYNC's TLB invalidation and its completion (TLBI + DSB)",
        "source": "anchored on the one invalidation-with-completion figure in the project's "
                  "references: native SMMUv3 dma_map_benchmark unmap, 4 KiB, 0.6 µs (an "
                  "IOMMU TLBI + CMD_SYNC; M. Saleh, IOMMU_DEBUG_PAGEALLOC cover letter); "
                  "broadcast TLBI with DSB is 'not free' and grows with the core count "
                  "(B. Song, Y. Yang, arm64 BATCHED_UNMAP_TLB_FLUSH series, 2022: "
                  "ptep_clear_flush 5.4 % of a page-out benchmark on an 8-core Snapdragon 888, "
                  "17 % on a ~100-core server). An assumption, not a measurement: widen it "
                  "for large machines",
    },
    "copy_ns_per_byte": {
        "range": (1.6e3 / 65536, 5.7e3 / 65536),
        "what": "memcpy into or out of the bounce pool",
        "source": "perf bench mem memcpy, one core, hot: 64 KiB in 1.6–5.7 µs, i.e. "
                  "11.5–41 GB/s (REFERENCES.md); a cold pool is slower, which favours sharing",
    },
    "ns_per_insn": {
        "range": (0.1, 0.5),
        "what": "time per instruction of the per-page share work",
        "source": "IPC 1–3 at 2–3.5 GHz (an assumption), applied to the instruction counts "
                  "callgrind measured in this run (guest map, hypervisor drain)",
    },
}


def projection(raw, rpp, tpp):
    """Crossover buffer size on arm64 hardware: a model. Share pays one
    exit and one invalidation per buffer, and per page the guest's map
    and unmap and the hypervisor's drain of its records; bounce pays a
    4 KiB copy per page. Monte Carlo over the published ranges."""
    cg = raw.get("callgrind") or {}
    if not cg or rpp is None:
        return {"error": "needs callgrind's instruction counts and share's events per page"}
    # Instructions per page shared then unshared: two map-path passes
    # (map1: one-page buffers, no merging) and the drain of each record
    # (scattered: no two records merge).
    insns = 2 * cg.get("map1_insns_per_page", 0) + rpp * cg.get(
        "drain_scattered_insns_per_record", 0)
    rng = random.Random(7)

    def draw(k):
        lo, hi = HARDWARE[k]["range"]
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))

    kib = []
    never = 0
    for _ in range(MONTE_CARLO):
        fixed = (draw("exit_us") + draw("tlbi_us")) * 1000.0          # ns
        per_page = 4096 * draw("copy_ns_per_byte") - insns * draw("ns_per_insn")
        if per_page <= 0:
            never += 1
            continue
        kib.append(fixed / per_page * 4)
    out = {"insns_per_page": insns, "records_per_page": rpp, "samples": MONTE_CARLO,
           "never_fraction": never / MONTE_CARLO, "hardware": HARDWARE}
    if kib:
        out.update(median_kib=quantile(kib, 0.5), lo_kib=quantile(kib, 0.05),
                   hi_kib=quantile(kib, 0.95))
    # Central case: geometric middle of every range.
    mid = {k: math.sqrt(v["range"][0] * v["range"][1]) for k, v in HARDWARE.items()}
    pp = 4096 * mid["copy_ns_per_byte"] - insns * mid["ns_per_insn"]
    out["central_kib"] = ((mid["exit_us"] + mid["tlbi_us"]) * 1000 / pp * 4) if pp > 0 else None
    return out


def measured_crossover(idx):
    """Per direction, from the share/bounce ratios of this run: the
    smallest size from which every larger size is met (share faster,
    interval above 1), and each size's verdict."""
    out = {}
    for op in OPS:
        cells = []
        for sz in SIZES:
            s = summary(list(paired(idx, "share", "bounce", seq(op, sz)).values()))
            cells.append((sz, verdict(s, 1.0), s["median"]))
        above = None
        for sz, v, _m in reversed(cells):
            if v != "met":
                break
            above = sz
        out[op] = {"from": above, "cells": cells}
    return out


# ---------------------------------------------------------------- all

def analyse(raw):
    idx = index(raw)
    configs = list(raw["configs"])
    status = {}
    for c in configs:
        runs = [b for b in raw["boots"] if b["config"] == c]
        ok = [b for b in runs if b["ok"]]
        status[c] = {"boots": len(runs), "ok": len(ok),
                     "missing": not ok,
                     "problems": sorted({p for b in runs for p in b["problems"]})[:8]}
    missing_work = sorted({m for b in raw["boots"] for m in b.get("missing", [])})
    return {
        "status": status,
        "missing_workloads": missing_work,
        "targets": targets(raw, idx),
        "tables": tables(raw, idx),
        "ratios": ratios(raw, idx),
        "model": cost_model(raw, idx),
        "crossover_measured": measured_crossover(idx),
        "conf": CONF,
        "min_rounds": MIN_ROUNDS,
    }
