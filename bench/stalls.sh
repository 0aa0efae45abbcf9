#!/usr/bin/env bash
# What one heavy request does to everything else, real etcd 3.4 and oxetcd one after the
# other, each on a store of KEYS keys of 256 B. Meanwhile one client puts on the same member;
# its slowest put says how long writes waited.
#
#   range   1 member: two full unary Ranges, one after the other (their time, the puts).
#   replay  1 member: a watch from revision 1 over every key (the member's peak RSS while it
#           sends the history, the events received, the puts).
#   delete  3 members: one DeleteRange of every key, sent to the leader (its time, the puts,
#           and the leader's raft term before and after: a term that moved is an election).
#
#   bench/stalls.sh TARGET_DIR [KEYS]    (TARGET_DIR: a release build with oxetcd, oxetcdctl)
#
# CASES="range replay delete" picks the cases; KINDS="ox" measures oxetcd alone.
set -euo pipefail
T=${1:-${CARGO_TARGET_DIR:-target}}/release
KEYS=${2:-1000000}
MEMBERS=1
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

load() { # endpoints
  run "$1" put --total "$KEYS" --key-space-size "$KEYS" --sequential-keys --key-size 8 \
    --val-size 256 --unique-values --clients 64 --conns 8 >/dev/null
}
# One client's puts, in the background, into $WORK/puts.json.
start_puts() { # endpoint total
  "$CTL" --endpoints="$1" -w json bench put --total "$2" --clients 1 --key-size 8 \
    --val-size 256 >"$WORK/puts.json" &
  PUTS=$!
}
puts_summary() { # after `wait "$PUTS"` (not in a subshell: the puts are not its child)
  python3 - "$WORK/puts.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
pct = {d["percent"]: d["latency"] for d in r.get("latency_distribution", [])}
print("puts %d/s, p99 %.1f ms, slowest %.0f ms, %d failed" % (
    r.get("requests_per_sec", 0), pct.get(99.0, 0) * 1e3, r.get("slowest", 0) * 1e3,
    r.get("errors", 0)))
EOF
}
term_of() { # endpoint
  ETCDCTL_API=3 etcdctl --endpoints="$1" endpoint status -w json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["raft_term"])'
}
stop_all() {
  for p in "$WORK"/*.pid; do kill "$(cat "$p")" 2>/dev/null || true; done
  sleep 1
  rm -f "$WORK"/*.pid
}
seconds() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }

for case in ${CASES:-range replay delete}; do
  for kind in ${KINDS:-etcd ox}; do
    bin=etcd; [ "$kind" = ox ] && bin=oxetcd
    MEMBERS=1; [ "$case" = delete ] && MEMBERS=3
    E=$(start "$bin" "$kind$case")
    [ "$MEMBERS" -gt 1 ] && lead_on_first "$E"
    L=${E%%,*}
    load "$E"
    case $case in
    range)
      start_puts "$L" 6000
      sleep 0.5
      a=$(seconds env ETCDCTL_API=3 etcdctl --endpoints="$L" --command-timeout=120s get "" --from-key -w protobuf)
      b=$(seconds env ETCDCTL_API=3 etcdctl --endpoints="$L" --command-timeout=120s get "" --from-key -w protobuf)
      wait "$PUTS"
      echo "$case $kind: full ranges ${a} s, ${b} s; $(puts_summary)"
      ;;
    replay)
      pid=$(cat "$WORK/${kind}${case}1.pid")
      start_puts "$L" 4000
      (ETCDCTL_API=3 etcdctl --endpoints="$L" watch --rev 1 --prefix "" 2>/dev/null | wc -l >"$WORK/lines") 2>/dev/null &
      watcher=$!
      peak=0
      # The puts last about as long as the replay; 10 s more for the rest of it.
      end=0
      while kill -0 "$PUTS" 2>/dev/null || [ "$end" -lt 100 ]; do
        kill -0 "$PUTS" 2>/dev/null || end=$((end + 1))
        r=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
        [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.1
      done
      pkill -f "etcdctl --endpoints=$L watch" || true
      wait "$watcher" 2>/dev/null || true
      wait "$PUTS"
      # etcdctl prints four lines per event.
      echo "$case $kind: member peak RSS $((peak / 1024)) MB, $(($(cat "$WORK/lines") / 4)) events received; $(puts_summary)"
      ;;
    delete)
      t0=$(term_of "$L")
      start_puts "$L" 3000
      sleep 0.5
      d=$(seconds env ETCDCTL_API=3 etcdctl --endpoints="$L" --command-timeout=300s del "" --from-key || true)
      wait "$PUTS"
      echo "$case $kind: delete ${d} s; raft term $t0 -> $(term_of "$L"); $(puts_summary)"
      ;;
    esac
    stop_all
  done
done
