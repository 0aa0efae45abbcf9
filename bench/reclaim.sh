#!/usr/bin/env bash
# Disk reclaimed by compaction and defragment, real etcd 3.4 and oxetcd one after the other
# (one member each): write KEYS keys of 256 B (random, a different value every put, so that
# oxetcd's compression gains nothing a real store would not), overwrite each once, then
# compact (physical) at the current revision and defragment. Prints the data dir size after the writes, after the
# compaction and after the defragment, how long each took, and the worst latency a client
# saw meanwhile (one client's serializable ranges during each, p99/max in ms). Times are wall clock
# and the member's CPU (user+system seconds).
#
#   bench/reclaim.sh TARGET_DIR [KEYS]     (TARGET_DIR: a release build with oxetcd, oxetcdctl)
set -euo pipefail
T=${1:-${CARGO_TARGET_DIR:-target}}/release
KEYS=${2:-1000000}
MEMBERS=1
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

size() { du -sb "$WORK/$1" | awk '{printf "%.2f", $1 / 1e9}'; }
now() { date +%s.%N; }
hz=$(getconf CLK_TCK)
cpu() { awk -v hz="$hz" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$(cat "$WORK/$1.pid")/stat"; }

printf "%-7s %9s %11s %11s %11s %14s %14s %16s %16s\n" kind keys "written GB" "compact GB" \
  "defrag GB" "compact s/cpu" "defrag s/cpu" "compact p99/max" "defrag p99/max"
for kind in etcd ox; do
  k=etcd; [ $kind = ox ] && k=oxetcd
  eps=$(start $k $kind)
  for _ in 1 2; do
    "$CTL" --endpoints="$eps" bench put --total "$KEYS" --key-space-size "$KEYS" \
      --sequential-keys --key-size 8 --val-size 256 --unique-values --clients 64 --conns 8 >/dev/null
  done
  written=$(size ${kind}1)
  rev=$(ETCDCTL_API=3 etcdctl --endpoints="$eps" get x -w json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
  # Client latency while compaction and defragment run: one client doing serializable ranges
  # back to back (rounds of 300) in the background during each.
  load_start() {
    rm -f "$WORK/stop"; : >"$WORK/during-$1"
    ( while [ ! -f "$WORK/stop" ]; do
        "$CTL" --endpoints="$eps" -w json bench range x --consistency s --total 300 \
          --clients 1 --conns 1 >>"$WORK/during-$1" 2>/dev/null; echo >>"$WORK/during-$1"
      done ) &
    load=$!
    sleep 1
  }
  load_stop() { touch "$WORK/stop"; wait $load || true; }
  latency() {
    python3 - "$WORK/during-$1" <<'PY'
import json, sys
p99, worst = 0.0, 0.0
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line)
    pct = {d["percent"]: d["latency"] for d in r.get("latency_distribution", [])}
    p99, worst = max(p99, pct.get(99.0, 0)), max(worst, r.get("slowest", 0))
print(f"{p99 * 1000:.1f}/{worst * 1000:.1f}")
PY
  }
  load_start compact
  c0=$(cpu ${kind}1); t0=$(now)
  ETCDCTL_API=3 etcdctl --endpoints="$eps" --command-timeout=600s compaction --physical "$rev" >/dev/null
  tc=$(now); c1=$(cpu ${kind}1)
  load_stop
  compacted=$(size ${kind}1)
  load_start defrag
  c1=$(cpu ${kind}1); t1=$(now)
  ETCDCTL_API=3 etcdctl --endpoints="$eps" --command-timeout=600s defrag >/dev/null
  t2=$(now); c2=$(cpu ${kind}1)
  load_stop
  defragged=$(size ${kind}1)
  during="$(latency compact) $(latency defrag)"
  python3 - "$kind" "$KEYS" "$written" "$compacted" "$defragged" "$t0" "$t1" "$t2" "$during" "$c0" "$c1" "$c2" "$tc" <<'PY'
import sys
kind, keys, w, c, d, t0, t1, t2, during, c0, c1, c2, tc = sys.argv[1:]
comp = f"{float(tc)-float(t0):.1f}/{float(c1)-float(c0):.1f}"
defr = f"{float(t2)-float(t1):.1f}/{float(c2)-float(c1):.1f}"
dc, dd = during.split()
print(f"{kind:<7} {int(keys):9d} {w:>11} {c:>11} {d:>11} {comp:>14} {defr:>14} {dc:>16} {dd:>16}")
PY
  kill "$(cat "$WORK/${kind}1.pid")"
  sleep 1
done
