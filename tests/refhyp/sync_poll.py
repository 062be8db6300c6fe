#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Does bounded polling pay for SYNC? share against share-poll, interleaved.

Runs the refhyp ``share`` scenario (the mailbox thread sleeps until each
doorbell) and ``share-poll`` (it keeps polling 200 us after each call)
alternately, ROUNDS times each, on the same kernel and workload, and
prints per round and as medians over rounds: the guest's SYNC latency
(median and 90th percentile from its ``sync_latency`` histogram, whose
buckets are powers of two, and the mean), the scenario's wall time, and
how many calls the polling thread served. Ratios are poll/sleep within
a round (the rounds run back to back, so a noisy neighbour hits both).

    tests/refhyp/sync_poll.py [--rounds 5]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import json

HERE = os.path.dirname(os.path.abspath(__file__))
BUCKET = re.compile(r"^#\s+#\s+(?:sync_latency=)?(\d+)-(\d+)us (\d+)$")
TOTALS = re.compile(r"^#\s+#\s+count (\d+) mean_ns (\d+) max_ns (\d+)$")


def histogram(log):
    """The guest's sync_latency buckets [(lo_us, hi_us, n)] and its totals."""
    buckets, totals = [], None
    for line in log.splitlines():
        m = BUCKET.match(line)
        if m:
            buckets.append(tuple(int(x) for x in m.groups()))
            continue
        m = TOTALS.match(line)
        if m and buckets:
            totals = tuple(int(x) for x in m.groups())
            break
    return buckets, totals


def quantile_bucket(buckets, q):
    """The upper bound (us) of the bucket holding quantile ``q``."""
    total = sum(n for _, _, n in buckets)
    seen = 0
    for _, hi, n in buckets:
        seen += n
        if seen >= q * total:
            return hi
    return None


def run(scenario):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "r.json")
        p = subprocess.run([os.path.join(HERE, "harness.py"), "--scenario", scenario,
                            "--json", out], capture_output=True, text=True)
        if p.returncode != 0 or not os.path.exists(out):
            return None
        with open(out) as f:
            result = json.load(f)[0]
    buckets, totals = histogram(p.stdout)
    if not result["ok"] or not buckets or not totals:
        return None
    return {
        "seconds": result["seconds"],
        "p50_us": quantile_bucket(buckets, 0.5),
        "p90_us": quantile_bucket(buckets, 0.9),
        "mean_us": totals[1] / 1000,
        "syncs": totals[0],
        "polled": result["counters"]["device"].get("polled_calls", 0),
        "calls": result["counters"]["device"]["mailbox_calls"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    rows, ratios = [], {"seconds": [], "mean_us": []}
    for r in range(a.rounds):
        sleep, poll = run("share"), run("share-poll")
        if sleep is None or poll is None:
            print(f"round {r + 1}: a scenario failed: missing, not counted")
            continue
        rows.append((sleep, poll))
        for k in ratios:
            ratios[k].append(poll[k] / sleep[k])
        print(f"round {r + 1}: sleep {sleep['seconds']:.1f} s, SYNC p50 <= {sleep['p50_us']} us, "
              f"p90 <= {sleep['p90_us']} us, mean {sleep['mean_us']:.0f} us | "
              f"poll {poll['seconds']:.1f} s, p50 <= {poll['p50_us']} us, "
              f"p90 <= {poll['p90_us']} us, mean {poll['mean_us']:.0f} us, "
              f"{poll['polled']} of {poll['calls']} calls polled", flush=True)
    if not rows:
        print("no round completed")
        return 1
    med = lambda xs: statistics.median(xs)
    for name, i in (("sleep", 0), ("poll", 1)):
        col = [row[i] for row in rows]
        print(f"median {name}: {med([c['seconds'] for c in col]):.1f} s, "
              f"SYNC p50 <= {med([c['p50_us'] for c in col])} us, "
              f"p90 <= {med([c['p90_us'] for c in col])} us, "
              f"mean {med([c['mean_us'] for c in col]):.0f} us")
    print(f"poll/sleep, median of {len(rows)} paired rounds [min, max]: "
          + ", ".join(f"{k} {med(v):.2f} [{min(v):.2f}, {max(v):.2f}]"
                      for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
