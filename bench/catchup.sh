#!/usr/bin/env bash
# A new member catching up on a large store, real etcd 3.4 and oxetcd one after the other:
# one member with KEYS keys of 256 B (far more entries than the leader keeps in its log, so
# the newcomer gets a snapshot), then `member add` of a learner and its start. Prints the
# store size, how long the learner took to apply everything, and both members' peak memory
# (VmHWM) before and after, and whether the learner got a snapshot.
#
#   bench/catchup.sh TARGET_DIR [KEYS]     (TARGET_DIR: a release build with oxetcd, oxetcdctl)
set -euo pipefail
T=${1:-${CARGO_TARGET_DIR:-target}}/release
KEYS=${2:-1000000}
MEMBERS=1
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

hwm() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$(cat "$WORK/$1.pid")/status"; }
applied() { # endpoint -> raft applied index
  ETCDCTL_API=3 etcdctl --endpoints="$1" endpoint status -w json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["raftAppliedIndex"])' 2>/dev/null || echo 0
}

printf "%-7s %9s %9s %12s %14s %14s %14s %9s\n" kind keys "store GB" "catch-up s" "leader MB" \
  "learner MB" "leader MB before" snapshot
for kind in etcd ox; do
  k=etcd; bin=etcd
  [ $kind = ox ] && k=oxetcd && bin=$T/oxetcd
  eps=$(start $k $kind)
  "$CTL" --endpoints="$eps" bench put --total "$KEYS" --key-space-size "$KEYS" \
    --sequential-keys --key-size 8 --val-size 256 --unique-values --clients 64 --conns 8 >/dev/null
  store=$(du -sb "$WORK/${kind}1" | awk '{printf "%.2f", $1 / 1e9}')
  before=$(hwm ${kind}1)
  cp=$(free_port); pp=$(free_port)
  ETCDCTL_API=3 etcdctl --endpoints="$eps" member add "${kind}2" --learner \
    --peer-urls="http://127.0.0.1:$pp" >/dev/null
  first=$(tr '\0' ' ' </proc/"$(cat "$WORK/${kind}1.pid")"/cmdline | grep -o -- '--initial-cluster [^ ]*' | cut -d' ' -f2)
  target=$(applied "$eps")
  t0=$(date +%s.%N)
  "$bin" --name "${kind}2" --data-dir "$WORK/${kind}2" --initial-cluster-token "$kind" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "$first,${kind}2=http://127.0.0.1:$pp" --initial-cluster-state existing \
    >"$WORK/${kind}2.log" 2>&1 &
  echo $! >"$WORK/${kind}2.pid"
  until [ "$(applied "127.0.0.1:$cp")" -ge "$target" ]; do sleep 0.2; done
  t1=$(date +%s.%N)
  # Whether the learner caught up from a snapshot (the logs' words), not from the log.
  via=no; grep -qiE 'installed snapshot|applied incoming snapshot' "$WORK/${kind}2.log" && via=yes
  printf "%-7s %9d %9s %12.1f %14s %14s %14s %9s\n" "$kind" "$KEYS" "$store" \
    "$(echo "$t1 - $t0" | bc)" "$(hwm ${kind}1)" "$(hwm ${kind}2)" "$before" "$via"
  kill "$(cat "$WORK/${kind}1.pid")" "$(cat "$WORK/${kind}2.pid")"
  sleep 1
done
