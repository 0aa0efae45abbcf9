#!/usr/bin/env bash
# Side-by-side load test: real etcd 3.4 (Debian's etcd-server) and oxetcd, one member each,
# fresh data dirs on the same disk, loopback, both fsyncing every commit. The same load
# generator (oxetcdctl bench) drives both, alternating per workload.
#
#   bench/compare.sh [TARGET_DIR] [MEMBERS]   (TARGET_DIR default: $CARGO_TARGET_DIR or target,
#                                              release build; MEMBERS: 1 or 3, default 1)
#
# Prints one table row per workload: req/s and p50/p99 of each, and the ratio.
set -euo pipefail
T=${1:-${CARGO_TARGET_DIR:-target}}/release
MEMBERS=${2:-1}
CTL=$T/oxetcdctl
WORK=$(mktemp -d /tmp/oxetcd-bench.XXXX)
# The members are started from $(...) subshells, so they are not our jobs: stop them by pid.
cleanup() {
  for p in "$WORK"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # kind prefix -> prints the client endpoints, comma-separated
  local kind=$1 prefix=$2 i cluster="" eps=""
  local bin=etcd; [ "$kind" = oxetcd ] && bin=$T/oxetcd
  local cps=() pps=()
  for i in $(seq 1 "$MEMBERS"); do
    cps+=("$(free_port)"); pps+=("$(free_port)")
    cluster="$cluster${cluster:+,}$prefix$i=http://127.0.0.1:${pps[-1]}"
  done
  for i in $(seq 1 "$MEMBERS"); do
    local cp=${cps[$((i-1))]} pp=${pps[$((i-1))]}
    "$bin" --name "$prefix$i" --data-dir "$WORK/$prefix$i" --initial-cluster-token "$prefix" \
      --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
      --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
      --initial-cluster "$cluster" > "$WORK/$prefix$i.log" 2>&1 &
    echo $! > "$WORK/$prefix$i.pid"
    eps="$eps${eps:+,}127.0.0.1:$cp"
  done
  for _ in $(seq 1 200); do
    ETCDCTL_API=3 etcdctl --endpoints="$eps" endpoint health >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "$eps"
}

run() { # endpoints args... -> "rps p50 p99" (for watch-latency: put rps, event p50/p99)
  local eps=$1; shift
  "$CTL" --endpoints="$eps" -w json bench "$@" | python3 -c '
import json, sys
r = json.load(sys.stdin)
lat = r["watch"] if "watch" in r else r
rps = (r["put"] if "watch" in r else r).get("requests_per_sec", 0)
pct = {d["percent"]: d["latency"] for d in lat.get("latency_distribution", [])}
errors = (r["put"] if "watch" in r else r).get("errors", 0)
if errors:
    first = r.get("first_error", "")
    print(str(errors) + " requests failed: " + first, file=sys.stderr)
print(rps, pct.get(50.0, 0), pct.get(99.0, 0))'
}

E=$(start etcd etcd)
O=$(start oxetcd ox)
echo "$MEMBERS member(s) each"
printf "%-44s %12s %12s %7s %18s %18s\n" workload "etcd req/s" "oxetcd req/s" ratio "etcd p50/p99 ms" "oxetcd p50/p99 ms"
while IFS='|' read -r name args; do
  [ -z "$name" ] && continue
  # shellcheck disable=SC2086
  read -r er ep50 ep99 <<<"$(run "$E" $args)"
  # shellcheck disable=SC2086
  read -r or op50 op99 <<<"$(run "$O" $args)"
  ratio=$(python3 -c "print(f'{$or/$er:.2f}')")
  ms() { python3 -c "print(f'{$1*1000:.1f}/{$2*1000:.1f}')"; }
  printf "%-44s %12.0f %12.0f %7s %18s %18s\n" "$name" "$er" "$or" "$ratio" "$(ms "$ep50" "$ep99")" "$(ms "$op50" "$op99")"
done <<'LOADS'
put, 1 client, 1 conn|--clients 1 --conns 1 put --total 2000 --key-space-size 100000 --sequential-keys
put, 100 clients, 10 conns|--clients 100 --conns 10 put --total 20000 --key-space-size 100000
range linearizable, 100 clients|--clients 100 --conns 10 range 00000001 --total 20000 --consistency l
range serializable, 100 clients|--clients 100 --conns 10 range 00000001 --total 20000 --consistency s
txn-put (1 op), 100 clients, 10 conns|--clients 100 --conns 10 txn-put --total 20000 --key-space-size 100000
watch-latency, 1000 watchers (puts/s; event ms)|--conns 10 watch-latency --watchers 1000 --streams 10 --put-total 1000 --put-rate 0
LOADS
rss() { ps -o rss= -p "$(cat "$WORK/$1.pid")" | tr -d ' '; }
echo "RSS after the run (first member): etcd $(rss etcd1) KiB, oxetcd $(rss ox1) KiB"
