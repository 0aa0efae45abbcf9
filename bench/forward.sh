#!/usr/bin/env bash
# Forwarded requests: 3 members of real etcd 3.4 and of oxetcd (optionally also an older oxetcd
# build, for before/after comparisons), the load sent to one follower so that every write is
# forwarded to the leader and every linearizable read asks it for a read index.
#
#   bench/forward.sh TARGET_DIR [OLD_BIN_DIR]   (TARGET_DIR: release build; OLD_BIN_DIR: a
#                                                 directory with an older oxetcd binary)
#
# For each workload and kind: req/s, p50/p99, CPU per request (user+system time of all three
# members over the run, divided by the requests), and how many TCP connections the members
# opened to the leader's peer port during the run (distinct local ports seen in /proc/net/tcp).
set -euo pipefail
T=${1:-${CARGO_TARGET_DIR:-target}}/release
OLD=${2:-}
MEMBERS=3
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
NEW_T=$T

cpu_ticks() { # prefix -> user+system clock ticks of all its members
  local total=0 p
  for p in "$WORK/$1"*.pid; do
    read -r u s < <(awk '{print $14, $15}' "/proc/$(cat "$p")/stat")
    total=$((total + u + s))
  done
  echo "$total"
}

follower_and_leader_port() { # prefix endpoints -> "follower-endpoint leader-peer-port"
  local prefix=$1 eps=$2
  python3 - "$eps" "$WORK" "$prefix" <<'PY'
import json, os, subprocess, sys
env = {**os.environ, "ETCDCTL_API": "3"}
eps, work, prefix = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
st = {}
for e in eps:
    out = subprocess.run(["etcdctl", "--endpoints=" + e, "endpoint", "status", "-w", "json"],
                         capture_output=True, text=True, env=env).stdout
    s = json.loads(out)[0]["Status"]
    st[e] = (s["header"]["member_id"], s["leader"])
leader = next(e for e, (m, l) in st.items() if m == l)
follower = next(e for e in eps if e != leader)
# The leader's peer port: its member list entry.
out = subprocess.run(["etcdctl", "--endpoints=" + leader, "member", "list", "-w", "json"],
                     capture_output=True, text=True, env=env).stdout
lid = st[leader][0]
peer = next(m["peerURLs"][0] for m in json.loads(out)["members"] if m["ID"] == lid)
print(follower, peer.rsplit(":", 1)[1])
PY
}

conns_during() { # port pidfile-of-load -> distinct local ports of established connections to port
  local port=$1 hex seen=""
  hex=$(printf '%04X' "$port")
  while kill -0 "$2" 2>/dev/null; do
    seen="$seen $(awk -v h=":$hex" '$4=="01" && substr($3, length($3)-4)==h {split($2,a,":"); print a[2]}' /proc/net/tcp /proc/net/tcp6 2>/dev/null | tr '\n' ' ')"
    sleep 0.05
  done
  echo "$seen" | tr ' ' '\n' | sed '/^$/d' | sort -u | wc -l
}

kinds=(etcd new)
[ -n "$OLD" ] && kinds=(etcd old new)
declare -A EPS
for k in "${kinds[@]}"; do
  case $k in
    etcd) EPS[$k]=$(start etcd etcd) ;;
    old) EPS[$k]=$(T=$OLD start oxetcd old) ;;
    new) EPS[$k]=$(start oxetcd new) ;;
  esac
done
T=$NEW_T
echo "3 members each; load on a follower; CPU = all members' user+system time / requests"
printf "%-34s %-5s %9s %14s %12s %7s\n" workload kind "req/s" "p50/p99 ms" "CPU us/req" conns
while IFS='|' read -r name total args; do
  [ -z "$name" ] && continue
  for k in "${kinds[@]}"; do
    prefix=$k
    read -r f port <<<"$(follower_and_leader_port "$prefix" "${EPS[$k]}")"
    before=$(cpu_ticks "$prefix")
    out=$(mktemp)
    # shellcheck disable=SC2086
    (run "$f" $args > "$out") &
    load=$!
    conns=$(conns_during "$port" "$load")
    wait "$load"
    read -r rps p50 p99 < "$out"
    after=$(cpu_ticks "$prefix")
    cpu=$(python3 -c "t=$(getconf CLK_TCK); print(f'{($after-$before)/t/$total*1e6:.0f}')")
    ms=$(python3 -c "print(f'{$p50*1000:.1f}/{$p99*1000:.1f}')")
    printf "%-34s %-5s %9.0f %14s %12s %7s\n" "$name" "$k" "$rps" "$ms" "$cpu" "$conns"
  done
done <<'LOADS'
put, 1 client|2000|--clients 1 --conns 1 put --total 2000 --key-space-size 100000 --sequential-keys
put, 100 clients, 10 conns|20000|--clients 100 --conns 10 put --total 20000 --key-space-size 100000
range linearizable, 100 clients|20000|--clients 100 --conns 10 range 00000001 --total 20000 --consistency l
LOADS
