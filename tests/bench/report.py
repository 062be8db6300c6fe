# SPDX-License-Identifier: GPL-2.0
"""make bench's report: bench.md, bench.rst and the plots, written from
the raw boots and ``analysis.analyse``'s result. Every figure comes from
the run; the text around them states what was measured and how."""

import os
import re
import sys

import analysis as A

LABEL = {
    "share": "share", "share-auto": "share-auto", "bounce": "bounce", "sync": "sync", "unprotected": "unprot",
    "viommu-strict": "vIOMMU strict", "viommu-lazy": "vIOMMU lazy",
    "unprotected-qemu": "unprot (QEMU)",
}
VERDICT = {"met": "met", "missed": "**missed**", "inconclusive": "inconclusive",
           "missing": "missing (did not run)"}


def config_order(raw):
    """The configurations in the order they were given (JSON sorts keys)."""
    order = raw["params"].get("configs") or []
    return [c for c in order if c in raw["configs"]] + sorted(
        c for c in raw["configs"] if c not in order)


def fmt(v, nd=2):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != 0 and abs(v) < 10 ** -nd:
            return "%.2g" % v
        return "%.*f" % (nd, v)
    return str(v)


def sig(v):
    """Three significant figures, for figures spanning decades."""
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    return "%.3g" % v if abs(v) < 1000 else "%.0f" % v


def ci(s, nd=2, pct=False):
    """median [lo, hi] of a summary."""
    if not s or s.get("median") is None:
        return "n/a"
    if s["n"] == 1:
        return "%s (1 round)" % fmt(s["median"], nd)
    return "%s [%s, %s]" % (fmt(s["median"], nd), fmt(s["lo"], nd), fmt(s["hi"], nd))


def wl_label(w):
    m = re.match(r"(rand)?(read|write)-(\w+)-qd(\d+)-j(\d+)$", w)
    if not m:
        return w
    s = "%s%s %s" % ("rand" if m.group(1) else "", m.group(2), m.group(3).upper().replace(
        "K", " KiB").replace("M", " MiB"))
    if m.group(4) != "1" or m.group(5) != "1":
        s += " (depth %s, %s jobs)" % (m.group(4), m.group(5))
    return s


def order_workloads(names):
    def key(w):
        m = re.match(r"(rand)?(read|write)-(\w+)-qd(\d+)-j(\d+)$", w)
        if not m:
            return (9, w)
        return (int(m.group(4)), int(m.group(5)), bool(m.group(1)),
                A.SIZE_BYTES.get(m.group(3), 0), m.group(2))
    return sorted(names, key=key)


def timed(names):
    return [w for w in order_workloads(names) if re.match(r".*-qd\d+-j\d+$", w)]


def markdown(raw, res):
    L = []
    m, p = raw["machine"], raw["params"]
    cfgs = config_order(raw)
    st = res["status"]
    idx_ok = {c: st[c]["ok"] for c in cfgs}
    L.append("# pviommu benchmark, %s" % raw["date"])
    L.append("")
    L.append("Commit `%s`; guest kernel `%s`%s; machine: %s, %s CPUs shared with other work "
             "(load %s at the start, %s at the end), host kernel %s; %s, `%s`; %s; guest %s. "
             "`make bench` took %.0f s (%d boots: %d rounds of %d configurations, %g s per "
             "fio job)." % (
                 m["commit"], guest_kernel(raw),
                 " (built %s)" % m["kernel_built"] if m.get("kernel_built") else "",
                 m["cpu"], m["nproc"],
                 "/".join("%.1f" % x for x in m.get("loadavg_start") or []) or "n/a",
                 "/".join("%.1f" % x for x in m.get("loadavg_end") or []) or "n/a",
                 m["host_kernel"], m["qemu"], m["accel"], m["fio"], m["guest"],
                 raw["total_seconds"], len(raw["boots"]), p["rounds"], len(cfgs),
                 p["runtime_s"]))
    L.append("")
    L.append("Under TCG every guest instruction is emulated and an exit is a host thread "
             "round trip, so absolute figures say little about hardware; what this run "
             "establishes are ratios between configurations in the same round, and the "
             "per-event costs of the model below. Each ratio is the median over rounds of "
             "the per-round ratio, with its %.1f %% order-statistic interval in brackets "
             "(with %d rounds: the smallest and largest of the per-round ratios)." % (
                 100 * A.median_ci([1] * p["rounds"])[2] if p["rounds"] else 0, p["rounds"]))
    L.append("")

    # ---- targets
    L.append("## Targets")
    L.append("")
    L.append("Met: the whole interval clears the threshold; missed: it lies wholly below; "
             "inconclusive: it straddles the threshold (or fewer than %d rounds succeeded)." %
             res["min_rounds"])
    L.append("")
    L.append("| target | verdict | per cell: median [interval] |")
    L.append("|---|---|---|")
    for t in res["targets"]:
        if t["cells"]:
            det = "; ".join("%s %s%s" % (c["label"], ci(c), "" if c["verdict"] == t["verdict"]
                                         else " (%s)" % c["verdict"]) for c in t["cells"])
            if t["target"].startswith("one SYNC"):
                c = t["cells"][0]
                det += "; one SYNC %s µs, bouncing 16 KiB %s µs (map_bench)" % (
                    ci(c["sync_us"], 1), ci(c["bounce16_us"], 1))
                mm = (res["model"] or {}).get("sync_vs_16k_model")
                if mm:
                    det += "; model: SYNC %s µs vs 16 KiB copied %s µs" % (
                        fmt(mm["sync_us"], 1), fmt(mm["bounce16_us"], 1))
        else:
            det = t["detail"]
        L.append("| %s | %s | %s |" % (t["target"], VERDICT[t["verdict"]], det))
    L.append("")
    L.append("Ratios are of fio throughput (IOPS), depth 1, one job, sequential, in the "
             "same round. The first target holds only if every one of its ten cells does "
             "(each cell at its own interval; no correction for the number of cells). One "
             "SYNC: share's map_bench unmap of a one-page buffer (`unmap_page` and the SYNC "
             "that ends the buffer); bouncing 16 KiB: half of bounce's map_bench map + unmap "
             "of a four-page buffer (DMA_BIDIRECTIONAL copies in at map and out at unmap), "
             "both from the same round. The two counts are exact over every bracketed "
             "workload of every share boot: map-path hypercalls are SHARE and APPLY calls, "
             "SYNCs forced by a full ring and pool growth; virtio buffers are the refhyp "
             "disk's requests.")
    L.append("")
    thr = sorted({i.split(" ", 1)[1] for b in raw["boots"] if b["config"] == "share-auto"
                  for i in b["info"] if i.startswith("bounce_threshold ")})
    if thr:
        L.append("share-auto's thresholds as the driver measured them at each boot (bytes; "
                 "buffers below bounce): " + "; ".join("`%s`" % t for t in thr) + ".")
        L.append("")
    missing = [c for c in cfgs if st[c]["missing"]]
    if missing or res["missing_workloads"]:
        L.append("Missing: " + "; ".join(
            ["configuration %s (no successful boot: %s)" % (c, "; ".join(st[c]["problems"][:3]))
             for c in missing] + ["workload " + w for w in res["missing_workloads"]]) + ".")
        L.append("")

    # ---- like for like
    L.append("## Like for like: backends and segments")
    L.append("")
    L.append("share, bounce, sync and unprot run on the reference hypervisor's vhost-user-blk "
             "disk (enforcing for the three pviommu modes, `--no-enforce` and dma-direct for "
             "unprot). virtio-iommu cannot run on that disk (the refhyp's vhost-user backend "
             "has no IOTLB support), so vIOMMU strict and lazy run on QEMU's own virtio-blk "
             "and are compared only with unprot (QEMU), the same disk without an IOMMU. Both "
             "disks offer one queue of %d, 254 data segments per request, indirect "
             "descriptors, no event index and no request merging. Before fio starts, the guest "
             "isolates the pages it will allocate next (`fragment`: of %d MiB it allocates, it "
             "frees every odd frame whose neighbours it holds), so every page of an I/O buffer "
             "is a segment of its own; transparent huge pages are off in the guest kernel. "
             "The segments are counted, not assumed: the refhyp disk counts data descriptors "
             "per request; in every configuration the guest counts block-layer requests per "
             "I/O and, from `/proc/PID/pagemap`, physically adjacent pages in the fio job's "
             "memory (`layout`)." % (p["queue_size"], p["fragment_mib"]))
    L.append("")
    L.append("| workload | pages/I/O | " + " | ".join(
        "%s: req/I/O, seg/req, adj" % LABEL.get(c, c) for c in cfgs) + " |")
    L.append("|---|---:|" + "---|" * len(cfgs))
    tb = res["tables"]
    for w in timed({w for c in tb for w in tb[c]}):
        if not w.endswith("-j1") or "-qd1-" not in w:
            continue
        size = A.SIZE_BYTES.get(w.split("-")[1])
        row = [wl_label(w), str(size // 4096) if size else "n/a"]
        for c in cfgs:
            t = tb.get(c, {}).get(w, {})
            row.append("%s, %s, %s" % (fmt((t.get("requests_per_io") or {}).get("median"), 2),
                                       fmt((t.get("segments_per_request") or {}).get("median"), 1),
                                       fmt((t.get("layout_adjacent") or {}).get("median"), 0)))
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append("req/I/O: block requests per fio I/O (guest, `/sys/block/vda/stat`); seg/req: data "
             "descriptors per request (refhyp disk only; n/a on QEMU's); adj: physically "
             "adjacent page pairs anywhere in the fio job's anonymous memory (0: no two pages "
             "of any buffer can merge; a non-zero count bounds how many segments fewer than "
             "pages an I/O could have had). At 1 MiB a request would need 256 segments, over "
             "the 254 both disks allow, so the block layer splits it in two in every "
             "configuration.")
    L.append("")

    # ---- throughput
    L.append("## Throughput and paired ratios")
    L.append("")
    L.append("IOPS: median over rounds [smallest, largest]. Ratios: median of per-round ratios "
             "[interval]. Ratios marked (QEMU disk) compare configurations on QEMU's virtio-blk "
             "only; the normalised row divides share/unprot by vIOMMU/unprot (QEMU) round by "
             "round, each protected configuration over the unprotected run of its own disk.")
    L.append("")
    L.append("| workload | " + " | ".join("%s IOPS" % LABEL.get(c, c) for c in cfgs) + " |")
    L.append("|---|" + "---:|" * len(cfgs))
    for w in timed({w for c in tb for w in tb[c]}):
        row = [wl_label(w)]
        for c in cfgs:
            s = tb.get(c, {}).get(w, {}).get("iops")
            row.append("%s [%s, %s]" % (sig(s["median"]), sig(min(s["values"])),
                                        sig(max(s["values"]))) if s else
                       ("missing" if st[c]["missing"] else "n/a"))
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    rt = res["ratios"]
    keys = []
    for w in rt:
        for k in rt[w]:
            if k not in keys:
                keys.append(k)
    order = [k for k, _ in [("share/bounce", 0), ("share/sync", 0), ("share/unprotected", 0),
                            ("share-auto/share", 0), ("share-auto/bounce", 0),
                            ("bounce/unprotected", 0), ("sync/unprotected", 0),
                            ("viommu-strict/unprotected-qemu", 0),
                            ("viommu-lazy/unprotected-qemu", 0),
                            ("share/viommu-strict (normalised)", 0),
                            ("share/viommu-lazy (normalised)", 0),
                            ("unprotected/unprotected-qemu", 0)] if k in keys]

    def kl(k):
        k = k.replace("unprotected-qemu", "unprot (QEMU)").replace("unprotected", "unprot")
        return k.replace("viommu-", "vIOMMU ") + (" (QEMU disk)" if "(QEMU)" in k and "/" in k
                                                 and k.startswith("vIOMMU") else "")
    L.append("| workload | " + " | ".join(kl(k) for k in order) + " |")
    L.append("|---|" + "---|" * len(order))
    for w in timed(rt):
        L.append("| " + " | ".join([wl_label(w)] + [ci((rt[w].get(k) or {}).get("iops"))
                                                   for k in order]) + " |")
    L.append("")
    L.append("unprot/unprot (QEMU) compares the two disks with no protection at all: how far "
             "apart the backends themselves are, which is why no ratio mixes them.")
    L.append("")

    # ---- CPU
    L.append("## Host CPU time per I/O")
    L.append("")
    L.append("CPU time of QEMU (all threads: the vCPUs and QEMU's own disk) and of the refhyp "
             "(the mailbox and its disk), from `/proc/PID/stat` at the workload's marks, per "
             "fio I/O, µs, median over rounds. QEMU's share is scaled to fio's runtime within "
             "the bracket (the bracket also holds the job's start and the marks, during which "
             "the vCPU is busy); the refhyp's is taken whole. The clock tick is 10 ms, so "
             "workloads with few I/Os are coarse.")
    L.append("")
    L.append("| workload | " + " | ".join("%s QEMU+refhyp" % LABEL.get(c, c) for c in cfgs) +
             " | share/bounce CPU | share/unprot CPU |")
    L.append("|---|" + "---:|" * len(cfgs) + "---|---|")
    for w in timed({w for c in tb for w in tb[c]}):
        row = [wl_label(w)]
        for c in cfgs:
            t = tb.get(c, {}).get(w, {})
            q, r = t.get("cpu_qemu_us_per_io"), t.get("cpu_refhyp_us_per_io")
            row.append("%s+%s" % (sig(q["median"]), sig(r["median"])) if q and r else
                       (sig(q["median"]) + "+0" if q else "n/a"))
        row.append(ci((rt.get(w, {}).get("share/bounce") or {}).get("cpu_us_per_io")))
        row.append(ci((rt.get(w, {}).get("share/unprotected") or {}).get("cpu_us_per_io")))
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    # ---- counters
    L.append("## What each I/O cost, counted")
    L.append("")
    L.append("Median over rounds, per fio I/O: hypercall exits (refhyp), SYNCs per virtio "
             "request (guest `hcall_sync` over the device's requests), bytes copied through "
             "the bounce pool (guest `bounced_bytes`), ring records (guest). A read "
             "bounces twice: the driver fills the slot at map too, so that a short device "
             "write cannot hand the caller stale pool bytes. The few bytes share and sync "
             "copy are the sub-page request header and status byte.")
    L.append("")
    L.append("| workload | config | exits/I/O | SYNC/request | bytes copied/I/O | records/I/O |")
    L.append("|---|---|---:|---:|---:|---:|")
    for w in timed({w for c in tb for w in tb[c]}):
        if "-qd1-j1" not in w:
            continue
        for c in ("share", "bounce", "sync"):
            t = tb.get(c, {}).get(w)
            if not t:
                continue
            sr = A.median([A.div((b["workloads"].get(w, {}).get("guest") or {}).get("hcall_sync"),
                                 (b["workloads"].get(w, {}).get("hyp") or {}).get(
                                     "device.requests"))
                           for b in raw["boots"] if b["config"] == c and b["ok"]])
            L.append("| %s | %s | %s | %s | %s | %s |" % (
                wl_label(w), c, fmt((t.get("hcalls_per_io") or {}).get("median"), 2),
                fmt(sr, 3), sig((t.get("bytes_copied_per_io") or {}).get("median")),
                fmt((t.get("records_per_io") or {}).get("median"), 1)))
    L.append("")

    # ---- map bench
    L.append("## Map and unmap latency")
    L.append("")
    L.append("µs per call, median over rounds [smallest, largest]. pviommu modes: the "
             "driver's debugfs `map_bench` (%d iterations of `map_page`, then `unmap_page` "
             "and the buffer's `unmap_flush`, DMA_BIDIRECTIONAL, with the real hypervisor). "
             "Others: the kernel's `dma_map_benchmark` on QEMU's `pci-testdev` (%d s, one "
             "thread), dma-direct or iommu-dma over virtio-iommu." % (
                 p["mapbench_iterations"], p["dmb_seconds"]))
    L.append("")
    pages = sorted(set(p["mapbench_pages"]) | set(p["dmb_pages"]))
    L.append("| config | " + " | ".join("%d page%s map / unmap" % (g, "s" if g > 1 else "")
                                         for g in pages) + " |")
    L.append("|---|" + "---|" * len(pages))
    for c in cfgs:
        row = [LABEL.get(c, c)]
        for g in pages:
            vals = {"map": [], "unmap": []}
            for b in raw["boots"]:
                if b["config"] != c or not b["ok"]:
                    continue
                w = b["workloads"].get("mapbench-g%d" % g) or b["workloads"].get("dmb-g%d" % g)
                lat = (w or {}).get("latency") or {}
                for k in vals:
                    if lat.get(k + "_us") is not None:
                        vals[k].append(lat[k + "_us"])
            row.append("%s / %s" % (sig(A.median(vals["map"])), sig(A.median(vals["unmap"])))
                       if vals["map"] else "n/a")
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    # ---- model
    md = res["model"]
    L.append("## Cost model (fitted to this run)")
    L.append("")
    if md.get("error"):
        L.append("Not fitted: %s." % md["error"])
    else:
        L.append("Time per I/O of every depth-1 single-job fio workload on the refhyp disk "
                 "(share, share-auto, bounce, sync, unprot) and time per map_bench iteration, %d "
                 "observations from rounds %s, fitted by non-negative least squares on "
                 "relative error to the events the run counted per I/O. Intervals: 5-95 %% "
                 "over %d bootstrap resamples of rounds. Fit: RMS relative residual %s, "
                 "R² %s on the log scale." % (
                     md["n_rows"], ", ".join(str(r) for r in md["rounds"]), A.BOOTSTRAP,
                     fmt(md["rms_rel"], 3), fmt(md["r2_log"], 3)))
        L.append("")
        L.append("| event | cost under TCG [5 %, 95 %] | what |")
        L.append("|---|---|---|")
        for t in md["terms"]:
            k = A.SCALE.get(t["term"], 1.0)
            L.append("| %s | %s [%s, %s] %s | %s |" % (
                t["term"], sig(t["est"] * k), sig(t["lo"] * k), sig(t["hi"] * k), t["unit"],
                t["what"]))
        L.append("")
        L.append("Events that always come together in this run cannot be told apart: every "
                 "descriptor is one 4 KiB page, so per-byte costs of moving data through the "
                 "backend are in `descriptor`; an invalidation always comes with the call that "
                 "makes it (a SYNC in share, an UNSHARE in sync), so it is in `sync_exit` and "
                 "`call_exit`; share writes %s ring records and %s table entries per page in "
                 "the fio workloads, and map_bench's multi-page buffers (one record, many table "
                 "writes) are what separates the two. The residuals are large because the "
                 "other work on the machine changes the cost of an exit (a host thread "
                 "wake-up) from one minute to the next, which no per-event constant can follow." % (
                     fmt(md.get("records_per_page"), 2), fmt(md.get("table_writes_per_page"), 2)))
        L.append("")
        L.append("Residuals (measured − model, relative; median over rounds), worst first:")
        L.append("")
        L.append("| config | workload | measured µs | model µs | residual |")
        L.append("|---|---|---:|---:|---:|")
        for r in sorted(md["residuals"], key=lambda r: -abs(r["rel"]))[:12]:
            L.append("| %s | %s | %s | %s | %+.0f %% |" % (
                r["config"], wl_label(r["workload"]), sig(r["y"]), sig(r["pred"]),
                100 * r["rel"]))
        L.append("")
        cm = res.get("crossover_measured") or {}
        if cm:
            L.append("**Crossover measured in this run:** " + "; ".join(
                "%ss: share faster than bounce (interval above 1) %s; per size %s" % (
                    op, ("from %s up" % cm[op]["from"]) if cm[op]["from"] else
                    "at no size up to 1 MiB",
                    ", ".join("%s %s (%s)" % (sz, fmt(m, 2), v) for sz, v, m in cm[op]["cells"]))
                for op in A.OPS if op in cm) + ".")
            L.append("")
        cx = md.get("crossover_tcg")
        if cx:
            if cx["kib"] is not None:
                where = "sharing wins above %s KiB [%s, %s] (bootstrap 5-95 %% of the " \
                        "resamples where it wins at all)" % (
                            sig(cx["kib"]), sig(cx["lo_kib"]), sig(cx["hi_kib"]))
            else:
                where = "sharing never wins: per page, its records and table writes cost " \
                        "more than copying 4 KiB"
                if cx["lo_kib"] is not None:
                    where += " (in the resamples where it does win, above %s to %s KiB)" % (
                        sig(cx["lo_kib"]), sig(cx["hi_kib"]))
            L.append("**Crossover under TCG (model):** sharing a buffer in place costs one "
                     "SYNC (with %s invalidations), plus, per page, %s records and %s table "
                     "writes; bouncing it costs 4 KiB copied per page. With the fitted "
                     "costs, %s; in %.0f %% of the bootstrap resamples sharing never wins. "
                     "Compare the measured crossover above." % (
                         fmt(md["invalidations_per_buffer"], 2), fmt(md["records_per_page"], 2),
                         fmt(md["table_writes_per_page"], 2), where,
                         100 * cx["never_fraction"]))
            L.append("")
        pj = md.get("projection") or {}
        L.append("**Projection to arm64 hardware (a model, not a measurement).** The same "
                 "structure with published figures in place of TCG's: sharing pays one exit "
                 "and one TLB invalidation per buffer plus the per-page work callgrind counted "
                 "in this run (%s instructions per page shared and unshared: two map-path "
                 "passes and %s drained records); bouncing pays a memcpy of each 4 KiB. Each "
                 "figure is drawn log-uniformly from its range (%d draws):" % (
                     sig(pj.get("insns_per_page")), fmt(pj.get("records_per_page"), 2),
                     pj.get("samples", 0)))
        L.append("")
        if pj.get("error"):
            L.append("Not computed: %s." % pj["error"])
        else:
            L.append("| figure | range | source |")
            L.append("|---|---|---|")
            for k, h in pj["hardware"].items():
                L.append("| %s (%s) | %s – %s | %s |" % (k, h["what"], sig(h["range"][0]),
                                                     sig(h["range"][1]), h["source"]))
            L.append("")
            L.append("Projected crossover: sharing in place beats bouncing above **%s KiB** "
                     "(median; 90 %% of draws between %s and %s KiB; central case %s KiB); "
                     "in %.1f %% of draws bouncing always wins. It rests on the exit and "
                     "invalidation costs, which dominate; pKVM's own per-page stage-2 updates "
                     "are not in the callgrind count and would move it up." % (
                         sig(pj.get("median_kib")), sig(pj.get("lo_kib")), sig(pj.get("hi_kib")),
                         sig(pj.get("central_kib")), 100 * pj.get("never_fraction", 0)))
        L.append("")

    # ---- runs
    L.append("## Runs")
    L.append("")
    L.append("| config | boots ok | median boot s | problems |")
    L.append("|---|---:|---:|---|")
    for c in cfgs:
        secs = [b["seconds"] for b in raw["boots"] if b["config"] == c]
        L.append("| %s | %d/%d | %s | %s |" % (c, st[c]["ok"], st[c]["boots"],
                                               fmt(A.median(secs), 0),
                                               "; ".join(st[c]["problems"][:3]) or "none"))
    L.append("")
    groups = sorted({i for b in raw["boots"] if b["config"].startswith("viommu") and b["ok"]
                     for i in b["info"] if i.startswith("disk_pci")})
    if groups:
        L.append("virtio-iommu boots: the disk's IOMMU group in each (`disk_pci`): %s." %
                 "; ".join("`%s`" % g for g in groups))
        L.append("")
    L.append("Left out of this run: %s." % "; ".join(left_out(raw, res)))
    L.append("")
    cg = raw.get("callgrind")
    L.append("callgrind (`hyp-abi/bench/callgrind.sh`, instructions): %s." % (
        ", ".join("%s %s" % (k, fmt(v, 1)) for k, v in sorted(cg.items())) if cg else "n/a"))
    L.append("")
    return "\n".join(L)


def guest_kernel(raw):
    for b in raw["boots"]:
        for i in b["info"]:
            if i.startswith("kernel "):
                return i[7:]
    return "n/a"


def left_out(raw, res):
    out = []
    if res["missing_workloads"]:
        out.append("queue depth 16 (`qd16.fio`): the guest kernel has neither CONFIG_AIO "
                   "nor CONFIG_IO_URING (see `kernel/pviommu-guest.config`)")
    if "viommu-lazy" not in raw["configs"]:
        out.append("virtio-iommu lazy (`--config viommu-lazy` adds it: 5 more boots)")
    out.append("fio jobs run %g s each, one job size per point (4 KiB to 1 MiB sequential, "
               "4 KiB random, 64 KiB with two jobs): the 25-minute budget of 2 cores" %
               raw["params"]["runtime_s"])
    out.append("a second buffer layout (physically contiguous buffers): segments per request "
               "are held at one per page in every configuration")
    return out


def md_to_rst(md):
    """The report in reStructuredText: headings, pipe tables as
    list-tables, code spans as literals."""
    out = []
    lines = md.splitlines()
    i = 0
    marks = {1: "=", 2: "-"}

    def inline(t):
        return re.sub(r"`([^`]+)`", r"``\1``", t)

    while i < len(lines):
        line = lines[i]
        mh = re.match(r"^(#+) (.*)$", line)
        if mh:
            title = inline(mh.group(2))
            out += [title, marks.get(len(mh.group(1)), "~") * len(title), ""]
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
        out.append(inline(line))
        i += 1
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- plots

def plot(raw, res, outdir):
    """bench-throughput.png (IOPS against size per direction, median with
    the range over rounds) and bench-ratios.png (share over bounce, sync
    and unprotected with intervals and the targets' thresholds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tb, rt = res["tables"], res["ratios"]
    cfgs = config_order(raw)
    xs = [A.SIZE_BYTES[s] // 1024 for s in A.SIZES]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, op in zip(axes, A.OPS):
        for c in cfgs:
            med, lo, hi, xx = [], [], [], []
            for s, x in zip(A.SIZES, xs):
                v = tb.get(c, {}).get(A.seq(op, s), {}).get("iops")
                if v:
                    xx.append(x)
                    med.append(v["median"] * A.SIZE_BYTES[s] / 1e6)
                    lo.append(min(v["values"]) * A.SIZE_BYTES[s] / 1e6)
                    hi.append(max(v["values"]) * A.SIZE_BYTES[s] / 1e6)
            if xx:
                ax.errorbar(xx, med, yerr=[[m - a for m, a in zip(med, lo)],
                                           [b - m for m, b in zip(med, hi)]],
                            marker="o", capsize=3, label=LABEL.get(c, c),
                            linestyle="--" if raw["configs"][c]["backend"] == "qemu" else "-")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels(["%d KiB" % x if x < 1024 else "1 MiB" for x in xs])
        ax.set_xlabel("block size (one request at a time, O_DIRECT)")
        ax.set_title("sequential %s" % op)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("MB/s (median, range over rounds)")
    axes[1].legend(fontsize=8)
    fig.suptitle("pviommu bench %s: dashed = QEMU's disk, solid = refhyp disk (TCG)" %
                 raw["date"])
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "bench-throughput.png"), dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, op in zip(axes, A.OPS):
        for k, lab in (("share/bounce", "share / bounce"), ("share/sync", "share / sync"),
                       ("share/unprotected", "share / unprot")):
            med, lo, hi, xx = [], [], [], []
            for s, x in zip(A.SIZES, xs):
                v = (rt.get(A.seq(op, s), {}).get(k) or {}).get("iops")
                if v and v["median"]:
                    xx.append(x)
                    med.append(v["median"])
                    lo.append(v["lo"])
                    hi.append(v["hi"])
            if xx:
                ax.errorbar(xx, med, yerr=[[m - a for m, a in zip(med, lo)],
                                           [b - m for m, b in zip(med, hi)]],
                            marker="o", capsize=3, label=lab)
        for y, lab in ((1.0, "1"), (1.2, "1.2 (256 KiB target)"), (1.5, "1.5 (1 MiB target)"),
                       (0.9, "0.9 (vs unprot, 1 MiB)")):
            ax.axhline(y, color="grey", linewidth=0.8, linestyle=":")
            ax.text(xs[0], y, " " + lab, fontsize=7, va="bottom", color="grey")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels(["%d KiB" % x if x < 1024 else "1 MiB" for x in xs])
        ax.set_title("sequential %s: paired ratios" % op)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("throughput ratio (median, interval)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "bench-ratios.png"), dpi=90)
    plt.close(fig)


def write(raw, res, outdir):
    md = markdown(raw, res)
    try:
        import matplotlib  # noqa: F401
        plot(raw, res, outdir)
        md += "\n![throughput](bench-throughput.png)\n\n![ratios](bench-ratios.png)\n"
    except ImportError:
        md += "\nNo plots: matplotlib is not installed for %s (`make setup` installs it).\n" % (
            sys.executable)
    with open(os.path.join(outdir, "bench.md"), "w") as f:
        f.write(md)
    # Without the images: Documentation/performance.rst includes this file
    # and shows the plots itself (an included file's image paths are the
    # includer's).
    rst = md_to_rst(re.sub(r"\n!\[\w+\]\([^)]+\)\n", "\n", md))
    with open(os.path.join(outdir, "bench.rst"), "w") as f:
        f.write(rst)
