#!/usr/bin/env bash
# rvs on many hosts: three host machines (network namespaces), each running
# its own rvsd with a VXLAN port that has no --remote, and a real etcd
# (Debian's etcd-server) on their shared underlay. The hosts find each
# other through etcd, a guest behind each pings the others across the
# overlay, then one host is killed and the others drop it when its lease
# runs out. Prints `rvsctl cluster show` and a summary; removes everything
# on exit (also on Ctrl-C or failure).
#
# Run as root. Addresses come from 198.18.0.0/15 (benchmarking range).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/demo-lib.sh
source scripts/demo-lib.sh
demo_setup demo-cluster.sh ip=iproute2 ping=iputils-ping etcd=etcd-server

id=$$
tmp=$(mktemp -d "/tmp/rvs-demo-cluster.XXXXXX")
fabric="rvdc-$id-fab"
etcd_ip=198.18.200.254
ttl=4
hosts=(1 2 3)
declare -A pid
ns_h() { echo "rvdc-$id-h$1"; }
ns_g() { echo "rvdc-$id-g$1"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    ((rc != 0)) && for h in "${hosts[@]}"; do
        [[ -s $tmp/h$h.log ]] && { echo "--- rvsd h$h log:" >&2; tail -n 15 "$tmp/h$h.log" >&2; }
    done
    for h in "${hosts[@]}"; do
        [[ -n ${pid[$h]:-} ]] && kill -TERM "${pid[$h]}" 2>/dev/null
    done
    sleep 0.5
    for n in "$fabric" $(for h in "${hosts[@]}"; do ns_h "$h"; ns_g "$h"; done); do
        ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        ip netns del "$n" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ctl() { local h=$1; shift; "$bin/rvsctl" --socket "$tmp/h$h.sock" "$@"; }

echo "== underlay and etcd"
ip netns add "$fabric"
ip -n "$fabric" link set lo up
ip -n "$fabric" link add fab type bridge
ip -n "$fabric" addr add "$etcd_ip/24" dev fab
ip -n "$fabric" link set fab up
ip netns exec "$fabric" etcd --name fabric --data-dir "$tmp/etcd" \
    --listen-client-urls "http://$etcd_ip:2379" --advertise-client-urls "http://$etcd_ip:2379" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster fabric=http://127.0.0.1:2380 >"$tmp/etcd.log" 2>&1 &
disown
for _ in $(seq 100); do
    ip netns exec "$fabric" bash -c "exec 3<>/dev/tcp/$etcd_ip/2379" 2>/dev/null && break
    sleep 0.1
done
echo "etcd on http://$etcd_ip:2379 (namespace $fabric)"

echo "== hosts"
cores=1
[[ $(nproc) -ge 2 ]] || cores=0
for h in "${hosts[@]}"; do
    hn=$(ns_h "$h") gn=$(ns_g "$h")
    ip netns add "$hn"
    ip netns add "$gn"
    ip -n "$hn" link set lo up
    ip -n "$gn" link set lo up
    ip link add ul netns "$hn" type veth peer name "fab$h" netns "$fabric"
    ip -n "$fabric" link set "fab$h" master fab up
    ip -n "$hn" addr add "198.18.200.$h/24" dev ul
    ip -n "$hn" link set ul up
    ip link add pa0 netns "$hn" type veth peer name eth0 netns "$gn"
    ip -n "$hn" link set pa0 up
    ip -n "$gn" addr add "198.18.20.$h/24" dev eth0
    ip -n "$gn" link set eth0 mtu 1450 up
    ip netns exec "$hn" "$bin/rvsd" --cores "$cores" --socket "$tmp/h$h.sock" --db "$tmp/h$h.json" \
        --etcd "http://$etcd_ip:2379" --node "h$h" --lease-ttl "$ttl" 2>"$tmp/h$h.log" &
    pid[$h]=$!
    disown
    for _ in $(seq 100); do ctl "$h" ping >/dev/null 2>&1 && break; sleep 0.1; done
    ctl "$h" bridge add br0
    ctl "$h" uplink add ul
    ctl "$h" port add br0 vx42 --type vxlan --vni 42 --local "198.18.200.$h"
    ctl "$h" port add br0 pa0 --type afxdp
    echo "host h$h: rvsd (VTEP 198.18.200.$h, no --remote), guest 198.18.20.$h"
done
echo "+ rvsctl port add br0 vx42 --type vxlan --vni 42 --local 198.18.200.N   (on each host)"

echo "== waiting for the hosts to find each other"
for _ in $(seq 100); do
    n=$(ctl 1 --json cluster show | grep -c '"node"' || true)
    [[ $n -ge 3 ]] && break
    sleep 0.1
done
echo "+ rvsctl cluster show   (on h1)"
ctl 1 cluster show

echo "== ping every pair of guests across the overlay"
declare -A result
failed=0
for a in "${hosts[@]}"; do
    for b in "${hosts[@]}"; do
        [[ $a == "$b" ]] && continue
        if ip netns exec "$(ns_g "$a")" ping -n -q -c 3 -i 0.2 -W 2 "198.18.20.$b" >/dev/null; then
            result[$a$b]=ok
        else
            result[$a$b]=FAILED
            failed=1
        fi
        echo "g$a -> g$b: ${result[$a$b]}"
    done
done
echo "+ rvsctl fdb show br0   (on h1: remote MACs with their VTEP)"
ctl 1 fdb show br0

echo "== kill -9 host h2's rvsd; h1 and h3 drop it when its lease ($ttl s) runs out"
kill -KILL "${pid[2]}"
unset 'pid[2]'
start=$EPOCHREALTIME
left=no
for _ in $(seq 100); do
    if ! ctl 1 --json cluster show | grep -q '198.18.200.2"'; then
        left=yes
        break
    fi
    sleep 0.1
done
gone_after=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
echo "h2 left h1's view: $left (after ${gone_after} s)"
[[ $left == yes ]] || failed=1
ctl 1 cluster show
ip netns exec "$(ns_g 1)" ping -n -q -c 2 -i 0.2 -W 2 198.18.20.3 >/dev/null && after=ok || { after=FAILED; failed=1; }

echo
echo "== summary"
printf '%-10s %s\n' pair ping
for a in "${hosts[@]}"; do
    for b in "${hosts[@]}"; do
        [[ $a == "$b" ]] && continue
        printf '%-10s %s\n' "g$a -> g$b" "${result[$a$b]}"
    done
done
printf '%-10s %s\n' "g1 -> g3" "$after (after h2 died; h2 dropped: $left)"
if ((failed)); then
    echo "some checks failed" >&2
    exit 1
fi
echo "all checks passed; cleaning up"
