#!/usr/bin/env bash
# Helpers shared by the benchmark scripts: start etcd or oxetcd members, run the load
# generator. Source it after setting T (release binaries) and MEMBERS; MEMBER_ARGS, if set, is
# added to every member's command line; OXETCD, if set, is the oxetcd binary (another build, for
# an A/B run).
CTL=$T/oxetcdctl
OXETCD=${OXETCD:-$T/oxetcd}
WORK=$(mktemp -d /tmp/oxetcd-bench.XXXX)
# The members are started from $(...) subshells, so they are not our jobs: stop them by pid.
cleanup() {
  for p in "$WORK"/*.pid; do [ -f "$p" ] && { kill "$(cat "$p")" 2>/dev/null || true; }; done
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # kind prefix -> prints the client endpoints, comma-separated
  local kind=$1 prefix=$2 i cluster="" eps=""
  local bin=etcd; [ "$kind" = oxetcd ] && bin=$OXETCD
  local cps=() pps=()
  for i in $(seq 1 "$MEMBERS"); do
    cps+=("$(free_port)"); pps+=("$(free_port)")
    cluster="$cluster${cluster:+,}$prefix$i=http://127.0.0.1:${pps[-1]}"
  done
  for i in $(seq 1 "$MEMBERS"); do
    local cp=${cps[$((i-1))]} pp=${pps[$((i-1))]}
    "$bin" --name "$prefix$i" --data-dir "$WORK/$prefix$i" --initial-cluster-token "$prefix" \
      --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
      --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
      --initial-cluster "$cluster" ${MEMBER_ARGS:-} > "$WORK/$prefix$i.log" 2>&1 &
    echo $! > "$WORK/$prefix$i.pid"
    eps="$eps${eps:+,}127.0.0.1:$cp"
  done
  for _ in $(seq 1 200); do
    ETCDCTL_API=3 etcdctl --endpoints="$eps" endpoint health >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "$eps"
}

# Moves leadership to the first member (etcdctl move-leader; etcd 3.4 and oxetcd alike): a
# workload on one connection talks to the first member, and whether it leads (a follower
# forwards) decides its latency more than the build does.
lead_on_first() { # endpoints
  local eps=$1
  ETCDCTL_API=3 etcdctl --endpoints="$eps" endpoint status -w json | python3 -c '
import json, sys
st = json.load(sys.stdin)
leader = next(s["Endpoint"] for s in st if s["Status"]["leader"] == s["Status"]["header"]["member_id"])
if leader != st[0]["Endpoint"]:
    print(leader, format(st[0]["Status"]["header"]["member_id"], "x"))' | while read -r leader id; do
    ETCDCTL_API=3 etcdctl --endpoints="$leader" move-leader "$id" >/dev/null
  done
}

# CPU clock ticks (user + system) of one process started here (its pid file's name), and of
# every member of a cluster started with `start KIND PREFIX`.
ticks_of() {
  local pid
  pid=$(cat "$WORK/$1.pid")
  if [ ! -r "/proc/$pid/stat" ]; then
    # A member that is gone says why in its log.
    echo "$1 (pid $pid) is not running; the end of its log:" >&2
    tail -20 "$WORK/$1.log" >&2
    return 1
  fi
  awk '{print $14 + $15}' "/proc/$pid/stat"
}
cluster_ticks() { # prefix
  local t=0 i
  for i in $(seq 1 "$MEMBERS"); do t=$((t + $(ticks_of "$1$i"))); done
  echo $t
}

run() { # endpoints args... -> "rps p50 p99" (for watch-latency: put rps, event p50/p99)
  local eps=$1; shift
  "$CTL" --endpoints="$eps" -w json bench "$@" | python3 -c '
import json, sys
r = json.load(sys.stdin)
lat = r["watch"] if "watch" in r else r
rps = (r["put"] if "watch" in r else r).get("requests_per_sec", 0)
pct = {d["percent"]: d["latency"] for d in lat.get("latency_distribution", [])}
errors = (r["put"] if "watch" in r else r).get("errors", 0)
if errors:
    first = r.get("first_error", "")
    print(str(errors) + " requests failed: " + first, file=sys.stderr)
print(rps, pct.get(50.0, 0), pct.get(99.0, 0))'
}

