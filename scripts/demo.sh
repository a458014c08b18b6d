#!/usr/bin/env bash
# rvs in one minute: three hosts in network namespaces, two on veth pairs
# switched through AF_XDP ports and one on a tap port in its own namespace,
# all on bridge br0 of an rvsd started just for this; and a second host
# machine (namespace k) running the Linux bridge + kernel vxlan setup
# (Flannel's), with host d behind it, joined to br0 over VXLAN VNI 42
# through rvs's uplink. Pings every pair (across the overlay too), runs
# iperf3, shows the learned MACs (remote ones with their VTEP) and the
# counters, prints a summary, and removes everything on exit (also on
# Ctrl-C or failure).
#
# Run as root. Addresses come from 198.18.0.0/15 (benchmarking range).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/demo-lib.sh
source scripts/demo-lib.sh
demo_setup demo.sh ip=iproute2 ping=iputils-ping iperf3=iperf3

id=$$
tmp=$(mktemp -d "/tmp/rvs-demo.XXXXXX")
sock=$tmp/rvsd.sock
declare -A ns=([a]="rvdemo-$id-a" [b]="rvdemo-$id-b" [c]="rvdemo-$id-c" [d]="rvdemo-$id-d" [k]="rvdemo-$id-k")
declare -A ip4=([a]=198.18.100.1 [b]=198.18.100.2 [c]=198.18.100.3 [d]=198.18.100.4)
# a and b: veth pairs, root end = AF_XDP port; c: tap in its namespace;
# d: behind the kernel VTEP in k. The underlay: uplink u <-> k's eth0.
declare -A port=([a]="rvd${id}a" [b]="rvd${id}b" [c]="rvd${id}t" [u]="rvd${id}u")
vtep_rvs=198.18.200.1
vtep_k=198.18.200.2
hosts=(a b c d)
rvsd_pid=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if ((rc != 0)) && [[ -s $tmp/rvsd.log ]]; then
        echo "demo.sh: failed (exit $rc); rvsd log:" >&2
        tail -n 30 "$tmp/rvsd.log" >&2
    fi
    if [[ -n $rvsd_pid ]] && kill -0 "$rvsd_pid" 2>/dev/null; then
        kill -TERM "$rvsd_pid"
        for _ in $(seq 30); do kill -0 "$rvsd_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$rvsd_pid" 2>/dev/null
        wait "$rvsd_pid" 2>/dev/null
    fi
    for h in a b c d k; do
        ip netns pids "${ns[$h]}" 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del "${ns[$h]}" 2>/dev/null # takes the tap and veth ends inside
    done
    for p in a b u; do ip link del "${port[$p]}" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ctl() { "$bin/rvsctl" --socket "$sock" "$@"; }
in_ns() { local h=$1; shift; ip netns exec "${ns[$h]}" "$@"; }

echo "== hosts"
for h in a b c d k; do
    ip netns add "${ns[$h]}"
    ip -n "${ns[$h]}" link set lo up
done
for h in a b; do
    ip link add "${port[$h]}" type veth peer name eth0 netns "${ns[$h]}"
    ip link set "${port[$h]}" up
    ip -n "${ns[$h]}" addr add "${ip4[$h]}/24" dev eth0
    ip -n "${ns[$h]}" link set eth0 up
    echo "host $h: ${ip4[$h]} in ${ns[$h]}, eth0 <-> ${port[$h]} (AF_XDP port)"
done
echo "host c: ${ip4[c]} in ${ns[c]}, tap ${port[c]} (tap port, made by rvsd)"
# The second machine: underlay veth, kernel bridge + vxlan, host d behind.
ip link add "${port[u]}" type veth peer name eth0 netns "${ns[k]}"
ip addr add "$vtep_rvs/24" dev "${port[u]}"
ip link set "${port[u]}" up
ip -n "${ns[k]}" addr add "$vtep_k/24" dev eth0
ip -n "${ns[k]}" link set eth0 up
ip -n "${ns[k]}" link add br0 type bridge
ip -n "${ns[k]}" link add vx42 type vxlan id 42 local "$vtep_k" remote "$vtep_rvs" dstport 4789 dev eth0
ip -n "${ns[k]}" link set vx42 master br0
ip -n "${ns[k]}" link add pd type veth peer name eth0 netns "${ns[d]}"
ip -n "${ns[k]}" link set pd master br0
for dev in br0 vx42 pd; do ip -n "${ns[k]}" link set "$dev" up; done
ip -n "${ns[d]}" addr add "${ip4[d]}/24" dev eth0
ip -n "${ns[d]}" link set eth0 up
echo "host d: ${ip4[d]} in ${ns[d]}, behind a Linux bridge + kernel vxlan (VNI 42) on machine ${ns[k]}"
echo "underlay: ${port[u]} $vtep_rvs (rvs uplink, host traffic stays with the kernel) <-> $vtep_k (${ns[k]})"
# Inner frames must fit the 1500-byte underlay after 50 bytes of VXLAN.
for h in a b d; do ip -n "${ns[$h]}" link set eth0 mtu 1450; done # c: once rvsd made its tap

echo "== rvsd"
cores=1
[[ $(nproc) -ge 2 ]] || cores=0
"$bin/rvsd" --cores "$cores" --socket "$sock" --db "$tmp/conf.json" 2>"$tmp/rvsd.log" &
rvsd_pid=$!
for _ in $(seq 100); do
    ctl bridge list >/dev/null 2>&1 && break
    kill -0 "$rvsd_pid" 2>/dev/null || break
    sleep 0.1
done
if ! ctl bridge list >/dev/null 2>&1; then
    echo "demo.sh: rvsd did not come up" >&2
    exit 1
fi
echo "rvsd pid $rvsd_pid on core $cores, socket $sock"

echo "== configure"
run() { echo "+ rvsctl $*"; ctl "$@"; }
run bridge add br0
run port add br0 "${port[a]}" --type afxdp
run port add br0 "${port[b]}" --type afxdp
run port add br0 "${port[c]}" --type tap --netns "${ns[c]}"
ip -n "${ns[c]}" addr add "${ip4[c]}/24" dev "${port[c]}"
ip -n "${ns[c]}" link set "${port[c]}" mtu 1450 up
run uplink add "${port[u]}"
run port add br0 vx42 --type vxlan --vni 42 --local "$vtep_rvs" --remote "$vtep_k"
run show

echo "== ping every pair"
declare -A result
failed=0
for x in "${hosts[@]}"; do
    for y in "${hosts[@]}"; do
        [[ $x == "$y" ]] && continue
        out=$(in_ns "$x" ping -n -q -c 5 -i 0.2 -W 1 "${ip4[$y]}" 2>&1) || failed=1
        loss=$(grep -o '[0-9.]*% packet loss' <<<"$out" | cut -d' ' -f1 || true)
        result[$x$y]=${loss:-100%}
        printf '%s -> %s: %s loss\n' "$x" "$y" "${result[$x$y]}"
    done
done

# iperf3 from host $1 to host $2 for 3 s; prints Gbit/s.
iperf() {
    in_ns "$2" iperf3 -s -1 -B "${ip4[$2]}" >/dev/null 2>&1 &
    for _ in $(seq 50); do
        in_ns "$2" ss -Hltn 'sport = :5201' | grep -q . && break
        sleep 0.1
    done
    in_ns "$1" iperf3 -c "${ip4[$2]}" -t 3 -f g 2>&1 |
        awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Gbits/sec") print $(i - 1) }'
}
echo "== iperf3 a -> b (L2, AF_XDP ports), 3 s"
gbps=$(iperf a b)
[[ -n $gbps ]] || { gbps="failed"; failed=1; }
echo "a -> b: $gbps Gbit/s"
echo "== iperf3 a -> d (through the VXLAN tunnel to the kernel VTEP), 3 s"
gbps_vx=$(iperf a d)
[[ -n $gbps_vx ]] || { gbps_vx="failed"; failed=1; }
echo "a -> d: $gbps_vx Gbit/s"
echo "== the uplink's own address still answers the underlay (ping $vtep_rvs from ${ns[k]})"
in_ns k ping -n -q -c 2 -i 0.2 -W 1 "$vtep_rvs" | grep -E 'packet loss' || failed=1

echo "== rvsctl fdb show br0"
ctl fdb show br0
echo "== rvsctl stats"
ctl stats

echo
echo "== summary"
printf '%-8s %-8s %-10s %s\n' pair path ping iperf3
for x in "${hosts[@]}"; do
    for y in "${hosts[@]}"; do
        [[ $x == "$y" ]] && continue
        status=ok
        [[ ${result[$x$y]} == 0% ]] || status="loss ${result[$x$y]}"
        path=L2
        [[ $x == d || $y == d ]] && path=VXLAN
        extra=
        [[ $x$y == ab ]] && extra="$gbps Gbit/s"
        [[ $x$y == ad ]] && extra="$gbps_vx Gbit/s"
        printf '%-8s %-8s %-10s %s\n' "$x -> $y" "$path" "$status" "$extra"
    done
done
if ((failed)); then
    echo "some checks failed" >&2
    exit 1
fi
echo "all pairs reachable; cleaning up"

