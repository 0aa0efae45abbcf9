#!/usr/bin/env bash
# A large store on one member, real etcd 3.4 and oxetcd one after the other: load KEYS keys of
# 256 B, read them all in one Range, then kill -9 the member and start it again. Prints the
# load rate with the member's CPU per put, its memory after the load (RSS), its peak while
# serving the full range (VmHWM), the time from the restart to a healthy member
# (`/health` true: a leader and the store open), and its memory after the restart; then, on
# oxetcd, the peak of the restarted member while it serves the same full range as a
# RangeStream (etcd 3.7's; 3.4 has none).
#
#   bench/scale.sh TARGET_DIR [KEYS]     (TARGET_DIR: a release build with oxetcd, oxetcdctl)
#
# KINDS="ox" measures oxetcd alone; UNARY=0 skips the unary full range (a store of several GB
# is more than one gRPC message can hold).
set -euo pipefail
T=${1:-${CARGO_TARGET_DIR:-target}}/release
KEYS=${2:-1000000}
MEMBERS=1
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

pid_of() { cat "$WORK/$1.pid"; }
status_mb() { awk -v f="$2:" '$1 == f {printf "%.0f", $2 / 1024}' "/proc/$(pid_of "$1")/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$(pid_of "$1")/stat"; }
# Waits until GET /health on the client URL says true; prints the seconds since $2 (date +%s.%N).
wait_healthy() {
  python3 - "$1" "$2" <<'EOF'
import json, sys, time, urllib.request
start = float(sys.argv[2])
while True:
    try:
        with urllib.request.urlopen("http://" + sys.argv[1] + "/health", timeout=1) as r:
            if json.load(r).get("health") == "true":
                break
    except Exception:
        pass
    time.sleep(0.01)
print("%.2f" % (time.time() - start))
EOF
}

printf "%-5s %8s %9s %9s %10s %11s %9s %10s %10s %11s %9s\n" kind keys "puts/s" "µs/put" \
  "RSS MB" "range HWM" "range s" "restart s" "RSS after" "stream HWM" "stream s"
for kind in ${KINDS:-etcd ox}; do
  k=etcd; bin=etcd
  [ $kind = ox ] && k=oxetcd && bin=$T/oxetcd
  eps=$(start $k $kind)
  ticks0=$(cpu_ticks ${kind}1)
  read -r rps _ _ < <(run "$eps" put --total "$KEYS" --key-space-size "$KEYS" \
    --sequential-keys --key-size 8 --val-size 256 --unique-values --clients 64 --conns 8)
  ticks1=$(cpu_ticks ${kind}1)
  hz=$(getconf CLK_TCK)
  us_put=$(echo "($ticks1 - $ticks0) * 1000000 / $hz / $KEYS" | bc)
  rss=$(status_mb ${kind}1 VmRSS)
  t0=$(date +%s.%N)
  if [ "${UNARY:-1}" = 1 ]; then
    ETCDCTL_API=3 etcdctl --endpoints="$eps" --command-timeout=120s get "" --from-key \
      -w protobuf >/dev/null
  fi
  t1=$(date +%s.%N)
  hwm=$(status_mb ${kind}1 VmHWM)
  # The command line to start it again, as lib.sh started it.
  mapfile -d '' argv <"/proc/$(pid_of ${kind}1)/cmdline"
  kill -9 "$(pid_of ${kind}1)"
  while kill -0 "$(pid_of ${kind}1)" 2>/dev/null; do sleep 0.01; done
  t2=$(date +%s.%N)
  "$bin" "${argv[@]:1}" >>"$WORK/${kind}1.log" 2>&1 &
  echo $! >"$WORK/${kind}1.pid"
  restart=$(wait_healthy "${eps%%,*}" "$t2")
  rss_after=$(status_mb ${kind}1 VmRSS)
  stream_hwm=-; stream_s=-
  if [ $kind = ox ]; then
    # The bench keys are decimal digits: "0" to ":" is all of them.
    t3=$(date +%s.%N)
    "$CTL" --endpoints="$eps" bench range 0 : --total 1 --stream >/dev/null
    stream_s=$(echo "$(date +%s.%N) - $t3" | bc)
    stream_hwm=$(status_mb ${kind}1 VmHWM)
  fi
  printf "%-5s %8d %9.0f %9s %10s %11s %9.1f %10s %10s %11s %9.4s\n" "$kind" "$KEYS" "$rps" \
    "$us_put" "$rss" "$hwm" "$(echo "$t1 - $t0" | bc)" "$restart" "$rss_after" "$stream_hwm" \
    "$stream_s"
  kill "$(pid_of ${kind}1)"
  while kill -0 "$(pid_of ${kind}1)" 2>/dev/null; do sleep 0.05; done
done
