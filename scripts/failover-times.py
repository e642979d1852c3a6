#!/usr/bin/env python3
"""Raft failover times, as a client sees them, in both forms, with the default timing.

  python3 scripts/failover-times.py target/release/clusterd [runs]

One process (three nodes, default config): crash the leader through the fault API, time from the
crash request to `failover_completed` on a WebSocket of the nodes stream; restart the old leader
and wait until it follows before the next run. Three processes (config/cluster-3, ports 8081 to
8083): SIGKILL the leader's process, time from the kill to `failover_completed` on a survivor's
WebSocket; start the process again and wait until its node follows. Prints each run and the
median and maximum of each form. Needs `pip install websockets`. Data goes to a scratch directory.
"""

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/clusterd")
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def call(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except OSError:
        return 0, None


def wait_for(what, probe, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = probe()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def leader(port):
    status, body = call(port, "GET", "/api/v1/cluster/status")
    return body.get("leader") if status == 200 and body else None


def follows(port, node):
    status, body = call(port, "GET", "/api/v1/cluster/raft")
    if status != 200:
        return False
    return any(n["node_id"] == node and n["role"] == "follower" and n.get("leader_id") for n in body["nodes"])


async def completed(ws):
    while True:
        m = json.loads(await ws.recv())
        if m.get("type") == "event" and m.get("event_type") == "failover_completed":
            return m["payload"]


async def one_run(port, fail):
    """Opens the stream, then `fail()`s the leader; the seconds to failover_completed."""
    url = f"ws://127.0.0.1:{port}/api/v1/ws/cluster/nodes?event_types=failover_completed"
    async with websockets.connect(url) as ws:
        for _ in range(2):  # welcome, subscribed
            await ws.recv()
        t0 = time.monotonic()
        fail()
        payload = await asyncio.wait_for(completed(ws), 10)
        return time.monotonic() - t0, payload


def report(name, times):
    ms = [t * 1000 for t in times]
    print(f"{name}: {len(ms)} runs, median {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms, min {min(ms):.0f} ms", flush=True)


def one_process():
    d = tempfile.mkdtemp()
    cfg = os.path.join(d, "c.toml")
    with open(cfg, "w") as f:
        f.write(f'[server]\nbind = "127.0.0.1:18080"\n[storage]\ndata_dir = "{d}/data"\n')
    p = subprocess.Popen([BIN, "serve", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    try:
        wait_for("a leader", lambda: leader(18080))
        for i in range(RUNS):
            old = wait_for("a leader", lambda: leader(18080))
            took, payload = asyncio.run(one_run(18080, lambda: call(18080, "POST", "/api/v1/cluster/faults/crash", {"target": old})))
            times.append(took)
            print(f"one process, run {i + 1}: {old} -> {payload['replacement_node']} in {took * 1000:.0f} ms", flush=True)
            call(18080, "POST", "/api/v1/cluster/faults/restart", {"target": old})
            wait_for(f"{old} to follow", lambda: follows(18080, old))
    finally:
        p.terminate()
        p.wait()
    return times


def three_processes():
    d = tempfile.mkdtemp()
    procs = {}

    def start(i):
        with open(os.path.join(ROOT, "config", "cluster-3", f"node-{i}.toml")) as f:
            text = f.read().replace("./data/cluster-3", f"{d}/data")
        cfg = os.path.join(d, f"node-{i}.toml")
        with open(cfg, "w") as f:
            f.write(text)
        procs[i] = subprocess.Popen([BIN, "serve", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    times = []
    try:
        for i in (1, 2, 3):
            start(i)
        wait_for("a leader", lambda: leader(8081))
        for run in range(RUNS):
            old = wait_for("a leader", lambda: leader(8081) or leader(8082))
            n = int(old.split("-")[1])
            survivor = 8081 if n != 1 else 8082
            took, payload = asyncio.run(one_run(survivor, lambda: procs[n].send_signal(signal.SIGKILL)))
            times.append(took)
            print(f"three processes, run {run + 1}: kill -9 {old}'s process -> {payload['replacement_node']} in {took * 1000:.0f} ms", flush=True)
            procs[n].wait()
            start(n)
            wait_for(f"{old} to follow", lambda: follows(8080 + n, old))
    finally:
        for p in procs.values():
            p.terminate()
            p.wait()
    return times


if __name__ == "__main__":
    a = one_process()
    b = three_processes()
    report("one process, crash through the fault API", a)
    report("three processes, SIGKILL of the leader's process", b)
