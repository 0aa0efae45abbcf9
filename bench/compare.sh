#!/usr/bin/env bash
# Side-by-side load test: real etcd 3.4 (Debian's etcd-server) and oxetcd, one member each,
# fresh data dirs on the same disk, loopback, both fsyncing every commit. The same load
# generator (oxetcdctl bench) drives both, alternating per workload.
#
#   bench/compare.sh [TARGET_DIR] [MEMBERS]   (TARGET_DIR default: $CARGO_TARGET_DIR or target,
#                                              release build; MEMBERS: 1 or 3, default 1)
#
# ONLY=<regex> runs the workloads whose name matches it (ONLY=lease: the keep-alives alone).
#
# Prints one table row per workload: req/s and p50/p99 of each, the ratio, and the CPU time of
# all members of each cluster per request (µs; user + system, from /proc).
set -euo pipefail
T=${1:-${CARGO_TARGET_DIR:-target}}/release
MEMBERS=${2:-1}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

E=$(start etcd etcd)
O=$(start oxetcd ox)
# The first member leads in both clusters (the single-client rows talk to it).
if [ "$MEMBERS" -gt 1 ]; then
  lead_on_first "$E"
  lead_on_first "$O"
fi
HZ=$(getconf CLK_TCK)
echo "$MEMBERS member(s) each"
printf "%-44s %12s %12s %7s %18s %18s %9s %9s\n" workload "etcd req/s" "oxetcd req/s" ratio \
  "etcd p50/p99 ms" "oxetcd p50/p99 ms" "etcd µs" "ox µs"
while IFS='|' read -r name total args; do
  [ -z "$name" ] && continue
  [[ -n "${ONLY:-}" && ! "$name" =~ $ONLY ]] && continue
  e0=$(cluster_ticks etcd)
  # shellcheck disable=SC2086
  read -r er ep50 ep99 <<<"$(run "$E" $args)"
  e1=$(cluster_ticks etcd)
  o0=$(cluster_ticks ox)
  # shellcheck disable=SC2086
  read -r or op50 op99 <<<"$(run "$O" $args)"
  o1=$(cluster_ticks ox)
  ratio=$(python3 -c "print(f'{$or/$er:.2f}')")
  ms() { python3 -c "print(f'{$1*1000:.1f}/{$2*1000:.1f}')"; }
  us() { python3 -c "print(f'{($2-$1)*1e6/$HZ/$total:.0f}' if $total else '-')"; }
  printf "%-44s %12.0f %12.0f %7s %18s %18s %9s %9s\n" "$name" "$er" "$or" "$ratio" \
    "$(ms "$ep50" "$ep99")" "$(ms "$op50" "$op99")" "$(us "$e0" "$e1")" "$(us "$o0" "$o1")"
done <<'LOADS'
put, 1 client, 1 conn|2000|--clients 1 --conns 1 put --total 2000 --key-space-size 100000 --sequential-keys
put, 100 clients, 10 conns|20000|--clients 100 --conns 10 put --total 20000 --key-space-size 100000
range linearizable, 100 clients|20000|--clients 100 --conns 10 range 00000001 --total 20000 --consistency l
range serializable, 100 clients|20000|--clients 100 --conns 10 range 00000001 --total 20000 --consistency s
txn-put (1 op), 100 clients, 10 conns|20000|--clients 100 --conns 10 txn-put --total 20000 --key-space-size 100000
watch-latency, 1000 watchers (puts/s; event ms)|1000|--conns 10 watch-latency --watchers 1000 --streams 10 --put-total 1000 --put-rate 0
lease-keepalive, 100 clients, 10 conns|20000|--clients 100 --conns 10 lease-keepalive --total 20000
watch-get, 10000 watchers, 10 streams (gets/s)|0|--conns 10 watch-get --watchers 10000 --streams 10 --events 8
LOADS
rss() { ps -o rss= -p "$(cat "$WORK/$1.pid")" | tr -d ' '; }
echo "RSS after the run (first member): etcd $(rss etcd1) KiB, oxetcd $(rss ox1) KiB"
