#!/usr/bin/env bash
# Failover under load: a 3-member cluster takes a steady stream of puts through its two
# followers; 2 s in, the leader is killed with SIGKILL. The slowest put is how long writes
# were unavailable to a client; errors are puts that failed instead of waiting. Runs etcd 3.4
# and oxetcd the same way, one after the other.
#
#   bench/failover.sh [TARGET_DIR] [RUNS]   (release build; default $CARGO_TARGET_DIR or target; 3 runs)
set -euo pipefail
T=${1:-${CARGO_TARGET_DIR:-target}}/release
RUNS=${2:-3}
MEMBERS=3
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

leader_index() { # endpoints -> 1-based position of the leader in the list
  ETCDCTL_API=3 etcdctl --endpoints="$1" endpoint status -w json | python3 -c '
import json, sys
st = json.load(sys.stdin)
for i, s in enumerate(st):
    if s["Status"]["leader"] == s["Status"]["header"]["member_id"]:
        print(i + 1)'
}

printf "%-8s %4s %12s %10s %12s %8s  %s\n" kind run "slowest ms" "p99 ms" "puts/s" errors "first error"
for run_no in $(seq 1 "$RUNS"); do
  for kind in etcd oxetcd; do
    prefix="$kind$run_no"
    eps=$(start "$kind" "$prefix")
    li=$(leader_index "$eps")
    followers=$(echo "$eps" | tr ',' '\n' | sed "${li}d" | paste -sd,)
    "$CTL" --endpoints="$followers" -w json bench --clients 10 --conns 2 put --total 8000 \
      --rate 1000 --key-space-size 100000 > "$WORK/$prefix.json" &
    bench=$!
    sleep 2
    kill -9 "$(cat "$WORK/$prefix$li.pid")"
    wait "$bench"
    python3 - "$WORK/$prefix.json" "$kind" "$run_no" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
pct = {d["percent"]: d["latency"] for d in r.get("latency_distribution", [])}
print(f'{sys.argv[2]:<8} {sys.argv[3]:>4} {r.get("slowest", 0)*1000:12.0f} {pct.get(99.0, 0)*1000:10.1f} {r.get("requests_per_sec", 0):12.0f} {r.get("errors", 0):8}  {r.get("first_error", "")}')
PY
    for p in "$WORK/$prefix"*.pid; do kill "$(cat "$p")" 2>/dev/null || true; rm -f "$p"; done
  done
done
