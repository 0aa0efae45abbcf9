#!/usr/bin/env bash
# The proxy's cost. A 3-member etcd 3.4 cluster and a 3-member oxetcd cluster (fresh data dirs,
# same disk, loopback); each workload runs against the leader directly, through a proxy of
# the same family (`etcd grpc-proxy start` for etcd, oxetcd-proxy for oxetcd), and through
# oxetcd-proxy in front of etcd. The same load generator (oxetcdctl bench) drives all.
#
#   bench/proxy.sh [TARGET_DIR]   (release build; default $CARGO_TARGET_DIR or target)
#
# Prints req/s and p50/p99 per target, each proxy's throughput relative to its leader, and the
# CPU (user + system, from /proc) per request of the proxy and of all members of the cluster.
set -euo pipefail
T=${1:-${CARGO_TARGET_DIR:-target}}/release
MEMBERS=3
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

leader_of() { # endpoints -> the leader's endpoint
  ETCDCTL_API=3 etcdctl --endpoints="$1" endpoint status -w json | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    if s["Status"]["leader"] == s["Status"]["header"]["member_id"]:
        print(s["Endpoint"])'
}

start_proxy() { # kind endpoints name -> the proxy's endpoint
  local kind=$1 eps=$2 name=$3 port
  port=$(free_port)
  if [ "$kind" = etcd ]; then
    etcd grpc-proxy start --endpoints="$eps" --listen-addr="127.0.0.1:$port" > "$WORK/$name.log" 2>&1 &
  else
    "$T/oxetcd-proxy" --endpoints="$eps" --listen-addr="127.0.0.1:$port" > "$WORK/$name.log" 2>&1 &
  fi
  echo $! > "$WORK/$name.pid"
  for _ in $(seq 1 200); do
    ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$port" endpoint health >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "127.0.0.1:$port"
}

E=$(start etcd etcd)
O=$(start oxetcd ox)
EL=$(leader_of "$E")
OL=$(leader_of "$O")
EP=$(start_proxy etcd "$E" etcdproxy)
OP=$(start_proxy oxetcd "$O" oxproxy)
XP=$(start_proxy oxetcd "$E" oxproxy-etcd)

ms() { python3 -c "print(f'{$1*1000:.1f}/{$2*1000:.1f}')"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
HZ=$(getconf CLK_TCK)
us_per() { python3 -c "print(f'{($1)*1e6/$HZ/$2:.0f}')"; }
printf "%-40s %-24s %10s %14s %8s %9s %10s\n" workload target "req/s" "p50/p99 ms" "vs leader" \
  "proxy µs" "members µs"
while IFS='|' read -r name total args; do
  [ -z "$name" ] && continue
  for t in "etcd leader|$EL|e|" "etcd grpc-proxy|$EP|e|etcdproxy" \
           "oxetcd-proxy -> etcd|$XP|e|oxproxy-etcd" \
           "oxetcd leader|$OL|o|" "oxetcd-proxy -> oxetcd|$OP|o|oxproxy"; do
    IFS='|' read -r label ep fam proc <<<"$t"
    if [ "$fam" = e ]; then cl=etcd; else cl=ox; fi
    c0=$(cluster_ticks $cl)
    p0=0; [ -n "$proc" ] && p0=$(ticks_of "$proc")
    # shellcheck disable=SC2086
    read -r rps p50 p99 <<<"$(run "$ep" $args)"
    c1=$(cluster_ticks $cl)
    p1=0; [ -n "$proc" ] && p1=$(ticks_of "$proc")
    case "$label" in
      "etcd leader") base_e=$rps; rel=1.00 ;;
      "oxetcd leader") base_o=$rps; rel=1.00 ;;
      *) if [ "$fam" = e ]; then rel=$(ratio "$rps" "$base_e"); else rel=$(ratio "$rps" "$base_o"); fi ;;
    esac
    pus=-; [ -n "$proc" ] && pus=$(us_per "$p1 - $p0" "$total")
    printf "%-40s %-24s %10.0f %14s %8s %9s %10s\n" "$name" "$label" "$rps" "$(ms "$p50" "$p99")" \
      "$rel" "$pus" "$(us_per "$c1 - $c0" "$total")"
  done
done <<'LOADS'
put, 1 client, 1 conn|2000|--clients 1 --conns 1 put --total 2000 --key-space-size 100000 --sequential-keys
put, 100 clients, 10 conns|20000|--clients 100 --conns 10 put --total 20000 --key-space-size 100000
range linearizable, 100 clients|20000|--clients 100 --conns 10 range 00000001 --total 20000 --consistency l
range serializable, 100 clients|20000|--clients 100 --conns 10 range 00000001 --total 20000 --consistency s
watch-latency, 1000 watchers (puts/s; event ms)|1000|--conns 10 watch-latency --watchers 1000 --streams 10 --put-total 1000 --put-rate 0
LOADS
