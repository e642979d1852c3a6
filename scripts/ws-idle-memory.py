#!/usr/bin/env python3
"""Memory per idle WebSocket connection: opens 1,000 idle event-stream sessions
(/api/v1/ws/events), then, on a fresh server, 1,000 GraphQL connections with one subscription
each (/graphql/ws, graphql-transport-ws), and prints the server's RSS growth per connection.

Run it against the release binary (the figures of issue 15 are release figures):

    cargo build --release
    python3 scripts/ws-idle-memory.py target/release/clusterd

Options: --sessions N (default 1000), --port P (default 18111), --warmup N (default 100: opened
first and kept open, so one-time allocations are not counted), --kind events|graphql|both.
Each kind gets its own server, started from a scratch directory (its ./data is its own) with
CLUSTERD_WS__MAX_SESSIONS raised above what is opened; the script raises its own open-file limit,
which the server inherits. Only the Python standard library is used.
"""

import argparse
import base64
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS: is the server running?")


def text_frame(text):
    """A masked client text frame (RFC 6455 §5.2); the messages sent here are short."""
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def connect(host, port, path, protocol=None):
    sock = socket.create_connection((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    offer = f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else ""
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"the server closed the upgrade on {path}")
        head += chunk
    status_line = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status_line:
        raise RuntimeError(f"upgrade on {path} refused: {status_line!r}")
    return sock, head.split(b"\r\n\r\n", 1)[1]


def read_until(sock, buf, needle):
    while needle not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"connection ended before {needle!r}")
        buf += chunk
    return buf


def open_session(host, port, kind):
    if kind == "events":
        sock, buf = connect(host, port, "/api/v1/ws/events")
        read_until(sock, buf, b'"subscribed"')
    else:
        sock, buf = connect(host, port, "/graphql/ws", "graphql-transport-ws")
        sock.sendall(text_frame('{"type":"connection_init"}'))
        read_until(sock, buf, b"connection_ack")
        sock.sendall(text_frame('{"id":"1","type":"subscribe","payload":{"query":"subscription { events { seq } }"}}'))
    return sock


def get_json(host, port, path):
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as res:
        return json.load(res)


def wait_until(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def measure(binary, kind, sessions, warmup, port):
    host = "127.0.0.1"
    with tempfile.TemporaryDirectory(prefix="ws-idle-") as scratch:
        env = dict(os.environ)
        env["CLUSTERD_WS__MAX_SESSIONS"] = str(2 * (sessions + warmup) + 100)
        env["CLUSTERD_SERVER__BIND"] = f"{host}:{port}"
        log = open(os.path.join(scratch, "server.log"), "w")
        server = subprocess.Popen([os.path.abspath(binary), "serve"], cwd=scratch, env=env, stdout=log, stderr=log)
        socks = []
        try:
            wait_until("the server to answer /health", lambda: healthy(host, port))
            # An event session is registered when it says `subscribed`; a GraphQL subscription
            # is counted in /metrics once the registry has taken it. /metrics is the same size
            # however many sessions are open, so reading it costs the same before and after.
            registered = lambda n: kind == "events" or graphql_subscriptions(host, port) >= n
            for _ in range(warmup):
                socks.append(open_session(host, port, kind))
            wait_until("the warm-up subscriptions", lambda: registered(warmup))
            before = rss_kib(server.pid)
            for _ in range(sessions):
                socks.append(open_session(host, port, kind))
            wait_until("every subscription to register", lambda: registered(warmup + sessions))
            after = rss_kib(server.pid)
        finally:
            for sock in socks:
                sock.close()
            server.terminate()
            server.wait(timeout=30)
            log.close()
    per_session = (after - before) * 1024 / sessions
    label = "event-stream sessions" if kind == "events" else "GraphQL connections, one subscription each"
    print(f"{kind}: {sessions} idle {label}: RSS {before} KiB -> {after} KiB, {per_session:.0f} bytes per session")
    return per_session


def graphql_subscriptions(host, port):
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as res:
        for line in res.read().decode().splitlines():
            if line.startswith("clusterd_graphql_subscriptions_active "):
                return float(line.split()[1])
    raise RuntimeError("/metrics has no clusterd_graphql_subscriptions_active")


def healthy(host, port):
    try:
        get_json(host, port, "/health")
        return True
    except OSError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", help="the clusterd binary, e.g. target/release/clusterd")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--port", type=int, default=18111)
    parser.add_argument("--kind", choices=["events", "graphql", "both"], default="both")
    args = parser.parse_args()
    needed = 2 * (args.sessions + args.warmup) + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    kinds = ["events", "graphql"] if args.kind == "both" else [args.kind]
    for kind in kinds:
        measure(args.binary, kind, args.sessions, args.warmup, args.port)


if __name__ == "__main__":
    sys.exit(main())
