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
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

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
