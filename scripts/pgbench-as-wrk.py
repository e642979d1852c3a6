#!/usr/bin/env python3
"""PostgreSQL's latencies from a kept run of ../shared/anchors/pg-sync-writes.sh, counted both
the way pgbench counts them (each transaction once, as the anchor prints) and the way wrk 4.x
counts clusterd's: after the run, wrk adds made-up samples for every latency of at least twice
the mean interval between one connection's requests (its coordinated-omission correction,
`stats_correct` in wrk.c), so one slow request counts several times.

Usage: KEEP=1 ../shared/anchors/pg-sync-writes.sh, then
       python3 scripts/pgbench-as-wrk.py /tmp/pg-sync-writes.XXXXXX
"""
import glob
import os
import sys


def percentile(values, p):
    # As the anchor's pct(): the value at rank round(n * p), at least the first.
    values = sorted(values)
    return values[max(int(len(values) * p + 0.5), 1) - 1]


def as_wrk_counts(latencies, duration_us, connections):
    """wrk 4.1.0's stats_correct: each latency n >= 2 * interval adds n - interval,
    n - 2 * interval, ... while above the interval."""
    interval = int(duration_us / (len(latencies) / connections))
    counted = list(latencies)
    for n in latencies:
        if n >= 2 * interval:
            m = n - interval
            while m > interval:
                counted.append(m)
                m -= interval
    return counted, interval


def main(kept):
    runs = sorted(glob.glob(os.path.join(kept, "out", "pg-*-*")))
    if not runs:
        sys.exit(f"no pgbench runs under {kept}/out (was the anchor run with KEEP=1?)")
    print("run (round-clients)  transactions  interval   p50 ms  p99 ms | as wrk counts: samples  p50 ms  p99 ms")
    for run in runs:
        latencies, clients, start, end = [], set(), None, None
        for log in glob.glob(os.path.join(run, "tx.*")):
            for line in open(log):
                f = line.split()
                if len(f) < 6 or not f[2].isdigit():
                    continue
                latencies.append(int(f[2]))
                clients.add(f[0])
                at = int(f[4]) * 1_000_000 + int(f[5])
                start = at - int(f[2]) if start is None else min(start, at - int(f[2]))
                end = at if end is None else max(end, at)
        if not latencies:
            continue
        counted, interval = as_wrk_counts(latencies, end - start, len(clients))
        print(f"{os.path.basename(run):20} {len(latencies):13} {interval:6} us {percentile(latencies, .5) / 1e3:8.3f}"
              f" {percentile(latencies, .99) / 1e3:7.3f} | {len(counted):22} {percentile(counted, .5) / 1e3:7.3f}"
              f" {percentile(counted, .99) / 1e3:7.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
