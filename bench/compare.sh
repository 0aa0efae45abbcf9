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

field() { grep -E "$1" | head -1 | awk '{print $NF=="secs." ? $(NF-1) : $NF}'; }

run() { # endpoints args... -> "rps p50 p99"
  local eps=$1; shift
  local out; out=$("$CTL" --endpoints="$eps" bench "$@")
  local rps p50 p99
  rps=$(echo "$out" | grep 'Requests/sec' | awk '{print $2}')
  p50=$(echo "$out" | grep ' 50% in' | awk '{print $3}')
  p99=$(echo "$out" | grep ' 99% in' | awk '{print $3}')
  echo "$rps $p50 $p99"
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
LOADS
rss() { ps -o rss= -p "$(cat "$WORK/$1.pid")" | tr -d ' '; }
echo "RSS after the run (first member): etcd $(rss etcd1) KiB, oxetcd $(rss ox1) KiB"
