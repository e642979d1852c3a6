#!/usr/bin/env bash
# clusterd's Raft-replicated metadata writes against etcd's, on this machine, in one run: first
# ../shared/anchors/etcd-writes.sh (three etcd members on loopback), then the same measurement
# of three clusterd processes (one Raft node each, disk engine, fsync on commit) on loopback:
# wrk PUTs one key with a 33-byte value to the leader's process, 1 connection for 10 s, then
# 64 connections for 15 s. Needs: apt-get install etcd-server etcd-client wrk, and
# `cargo build --release`. Uses ports 23791-23803 (etcd) and 28081-28083 (clusterd).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/target/release/clusterd"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
anchor="$here/../shared/anchors/etcd-writes.sh"
echo "== etcd ($anchor)"
bash "$anchor"

echo "== clusterd (three processes)"
# etcd's run leaves its deleted files' metadata to the journal: flushed first, so that neither
# side's fsyncs wait behind the other's leftovers.
sync; sleep 2
d=$(mktemp -d); cd "$d"
for i in 1 2 3; do
  peers=""
  for j in 1 2 3; do [ "$j" != "$i" ] && peers="$peers${peers:+, }node-$j = \"127.0.0.1:2808$j\""; done
  printf '[server]\nbind = "127.0.0.1:2808%s"\n[storage]\ndata_dir = "%s/n%s"\n[cluster]\nnodes = ["node-1", "node-2", "node-3"]\nhost = ["node-%s"]\npeers = { %s }\n' \
    "$i" "$d" "$i" "$i" "$peers" > n$i.toml
  "$bin" serve --config n$i.toml > n$i.log 2>&1 &
  echo $! > n$i.pid
done
L=""
for _ in $(seq 100); do
  L=$(curl -s 127.0.0.1:28081/api/v1/cluster/status | sed -n 's/.*"leader":"node-\([0-9]\)".*/\1/p')
  [ -n "$L" ] && break
  sleep 0.1
done
echo "leader port 2808$L"
cat > put.lua <<'LUA'
request = function()
  return wrk.format("PUT", "/api/v1/cluster/kv/foo", {["Content-Type"]="application/json"},
    '{"value":"barbarbarbarbarbarbarbarbarbarbar"}')
end
LUA
wrk -t1 -c1 -d10s -s put.lua "http://127.0.0.1:2808$L" | grep -E "Requests/sec|Latency "
wrk -t2 -c64 -d15s --latency -s put.lua "http://127.0.0.1:2808$L" | grep -E "Requests/sec|Latency |50%|99%|Non-2xx"
for i in 1 2 3; do kill "$(cat n$i.pid)"; done
grep -h -E "stepped down|elected leader" n?.log | cut -c1-140
sleep 2; cd /; rm -rf "$d"
