#!/usr/bin/env bash
# The cost of auth: real etcd 3.4 and oxetcd side by side (one member each), each workload run
# with auth disabled, then with auth enabled as a non-root user whose role grants readwrite on
# every key (so each request goes through the permission check, not root's shortcut).
#
#   bench/auth.sh TARGET_DIR      (TARGET_DIR: a release build with oxetcd and oxetcdctl)
#
# For each workload, kind and mode: req/s, p50/p99, and server CPU per request (user+system
# time of the member over the run, divided by the requests).
set -euo pipefail
T=${1:-${CARGO_TARGET_DIR:-target}}/release
MEMBERS=1
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

hz=$(getconf CLK_TCK)

enable_auth() { # endpoint
  local c=(env ETCDCTL_API=3 etcdctl --endpoints="$1")
  "${c[@]}" user add root:rootpw >/dev/null
  "${c[@]}" role add root >/dev/null
  "${c[@]}" user grant-role root root >/dev/null
  "${c[@]}" user add bench:benchpw >/dev/null
  "${c[@]}" role add all >/dev/null
  "${c[@]}" role grant-permission all readwrite "" --from-key >/dev/null
  "${c[@]}" user grant-role bench all >/dev/null
  "${c[@]}" auth enable >/dev/null
}

E=$(start etcd etcd)
O=$(start oxetcd ox)
printf "%-34s %-7s %-4s %10s %16s %14s\n" workload kind auth "req/s" "p50/p99 ms" "CPU us/req"
for mode in off on; do
  user=()
  if [ "$mode" = on ]; then
    enable_auth "$E"
    enable_auth "$O"
    user=(--user=bench:benchpw)
  fi
  while IFS='|' read -r name total args; do
    [ -z "$name" ] && continue
    for kind in etcd ox; do
      eps=$E; [ $kind = ox ] && eps=$O
      before=$(ticks_of ${kind}1)
      # shellcheck disable=SC2086
      read -r rps p50 p99 <<<"$(run "$eps" ${user[@]+"${user[@]}"} $args --total "$total")"
      after=$(ticks_of ${kind}1)
      python3 - "$name" "$kind" "$mode" "$rps" "$p50" "$p99" "$before" "$after" "$hz" "$total" <<'PY'
import sys
name, kind, mode, rps, p50, p99, b, a, hz, total = sys.argv[1:]
cpu_us = (int(a) - int(b)) / int(hz) * 1e6 / int(total)
print(f"{name:<34} {kind:<7} {mode:<4} {float(rps):10.0f} {float(p50)*1000:7.2f}/{float(p99)*1000:<8.2f} {cpu_us:14.0f}")
PY
    done
  done <<'LOADS'
put, 100 clients, 10 conns|20000|--clients 100 --conns 10 put --key-space-size 100000
range linearizable, 100 clients|20000|--clients 100 --conns 10 range 00000001 --consistency l
range serializable, 100 clients|20000|--clients 100 --conns 10 range 00000001 --consistency s
LOADS
done
