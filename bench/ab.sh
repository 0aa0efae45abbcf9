#!/usr/bin/env bash
# A/B of two oxetcd builds, head to head: two clusters of MEMBERS (default 3) members side by side (fresh data dirs,
# same disk, loopback), the same `oxetcdctl bench` workload run on each in turn, ROUNDS times.
#
#   bench/ab.sh BIN_A BIN_B ROUNDS BENCH_ARGS...   (TARGET_DIR for oxetcdctl: $CARGO_TARGET_DIR
#                                                   or target, release build)
#   e.g. bench/ab.sh /tmp/oxetcd-old /tmp/oxetcd-new 4 --clients 100 --conns 10 put --total 20000
#
# Prints per run: req/s, p50/p99 (ms), CPU (user + system) of the three members per request
# (µs), and the raft entries the run added (the committed index on the first member). Member 1
# leads in both clusters, so a workload on one connection goes to the leader in both.
set -euo pipefail
T=${CARGO_TARGET_DIR:-target}/release
MEMBERS=${MEMBERS:-3}
A=$1 B=$2 ROUNDS=$3
shift 3
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
OXETCD=$A EA=$(start oxetcd a)
OXETCD=$B EB=$(start oxetcd b)
HZ=$(getconf CLK_TCK)
committed() { curl -s "http://${1%%,*}/metrics" | awk '/^etcd_server_proposals_committed_total/ {print $2}'; }
lead_on_first "$EA"
lead_on_first "$EB"
total=$(python3 -c 'import sys; a=sys.argv[1:]; print(a[a.index("--total")+1] if "--total" in a else 0)' "$@")
printf "%-6s %-5s %10s %14s %8s %8s\n" round build "req/s" "p50/p99 ms" "µs/req" entries
for r in $(seq 1 "$ROUNDS"); do
  for c in a b; do
    eps=$EA
    [ $c = b ] && eps=$EB
    t0=$(cluster_ticks $c) i0=$(committed "$eps")
    read -r rps p50 p99 <<<"$(run "$eps" "$@")"
    t1=$(cluster_ticks $c) i1=$(committed "$eps")
    python3 -c "
r, p50, p99, t, n, e = $rps, $p50, $p99, $((t1 - t0)), $total, float('$i1') - float('$i0')
us = f'{t * 1e6 / $HZ / n:.0f}' if n else '-'
print(f'{$r:<6} {\"$c\":<5} {r:10.0f} {p50*1000:>6.1f}/{p99*1000:<7.1f} {us:>8} {e:8.0f}')"
  done
done
