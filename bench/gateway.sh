#!/usr/bin/env bash
# The HTTP+JSON gateway: real etcd 3.4's and oxetcd's, side by side (one member each), put and
# range through `/v3/kv/*` (one HTTP/1.1 keep-alive connection per client), with the same loads
# over gRPC for reference.
#
#   bench/gateway.sh TARGET_DIR      (TARGET_DIR: a release build with oxetcd and oxetcdctl)
#
# For each workload, kind and path: req/s, p50/p99, and server CPU per request (user+system
# time of the member over the run, divided by the requests).
set -euo pipefail
T=${1:-${CARGO_TARGET_DIR:-target}}/release
MEMBERS=1
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

hz=$(getconf CLK_TCK)

E=$(start etcd etcd)
O=$(start oxetcd ox)
printf "%-34s %-7s %-8s %10s %16s %14s\n" workload kind path "req/s" "p50/p99 ms" "CPU us/req"
while IFS='|' read -r name total args; do
  [ -z "$name" ] && continue
  for path in gateway grpc; do
    flag=(); [ $path = gateway ] && flag=(--gateway)
    for kind in etcd ox; do
      eps=$E; [ $kind = ox ] && eps=$O
      before=$(ticks_of ${kind}1)
      # shellcheck disable=SC2086
      read -r rps p50 p99 <<<"$(run "$eps" ${flag[@]+"${flag[@]}"} $args --total "$total")"
      after=$(ticks_of ${kind}1)
      python3 - "$name" "$kind" "$path" "$rps" "$p50" "$p99" "$before" "$after" "$hz" "$total" <<'PY'
import sys
name, kind, path, rps, p50, p99, b, a, hz, total = sys.argv[1:]
cpu_us = (int(a) - int(b)) / int(hz) * 1e6 / int(total)
print(f"{name:<34} {kind:<7} {path:<8} {float(rps):10.0f} {float(p50)*1000:7.2f}/{float(p99)*1000:<8.2f} {cpu_us:14.0f}")
PY
    done
  done
done <<'LOADS'
put, 100 clients|20000|--clients 100 --conns 10 put --key-space-size 100000
range linearizable, 100 clients|20000|--clients 100 --conns 10 range 00000001 --consistency l
range serializable, 100 clients|20000|--clients 100 --conns 10 range 00000001 --consistency s
LOADS
