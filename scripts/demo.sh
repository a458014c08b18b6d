#!/usr/bin/env bash
# rvs in one minute: three hosts in network namespaces, two on veth pairs
# switched through AF_XDP ports and one on a tap port in its own namespace,
# all on bridge br0 of an rvsd started just for this. Pings every pair,
# runs a 3 s iperf3, shows the learned MACs and the counters, prints a
# summary, and removes everything on exit (also on Ctrl-C or failure).
#
# Run as root. Addresses come from 198.18.0.0/15 (benchmarking range).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -ne 0 ]]; then
    echo "demo.sh: run as root (sudo scripts/demo.sh)" >&2
    exit 1
fi
for tool in ip ping iperf3; do
    command -v "$tool" >/dev/null || {
        echo "demo.sh: $tool not found (apt-get install iproute2 iputils-ping iperf3)" >&2
        exit 1
    }
done
if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

bin="${CARGO_TARGET_DIR:-target}/release"
if command -v cargo >/dev/null; then
    echo "building release binaries (cargo build --release)..."
    cargo build --release --quiet -p rvs-switch -p rvs-ctl
elif [[ ! -x $bin/rvsd || ! -x $bin/rvsctl ]]; then
    echo "demo.sh: no cargo and no built binaries in $bin" >&2
    exit 1
fi

id=$$
tmp=$(mktemp -d "/tmp/rvs-demo.XXXXXX")
sock=$tmp/rvsd.sock
declare -A ns=([a]="rvdemo-$id-a" [b]="rvdemo-$id-b" [c]="rvdemo-$id-c")
declare -A ip4=([a]=198.18.100.1 [b]=198.18.100.2 [c]=198.18.100.3)
# a and b: veth pairs, root end = AF_XDP port; c: tap in its namespace.
declare -A port=([a]="rvd${id}a" [b]="rvd${id}b" [c]="rvd${id}t")
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
    for h in a b c; do
        ip netns pids "${ns[$h]}" 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del "${ns[$h]}" 2>/dev/null # takes the tap and veth ends inside
    done
    ip link del "${port[a]}" 2>/dev/null
    ip link del "${port[b]}" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ctl() { "$bin/rvsctl" --socket "$sock" "$@"; }
in_ns() { local h=$1; shift; ip netns exec "${ns[$h]}" "$@"; }

echo "== hosts"
for h in a b c; do
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
ip -n "${ns[c]}" link set "${port[c]}" up
run show

echo "== ping every pair"
declare -A result
failed=0
for x in a b c; do
    for y in a b c; do
        [[ $x == "$y" ]] && continue
        out=$(in_ns "$x" ping -n -q -c 5 -i 0.2 -W 1 "${ip4[$y]}" 2>&1) || failed=1
        loss=$(grep -o '[0-9.]*% packet loss' <<<"$out" | cut -d' ' -f1 || true)
        result[$x$y]=${loss:-100%}
        printf '%s -> %s: %s loss\n' "$x" "$y" "${result[$x$y]}"
    done
done

echo "== iperf3 a -> b, 3 s"
in_ns b iperf3 -s -1 -B "${ip4[b]}" >/dev/null 2>&1 &
for _ in $(seq 50); do
    in_ns b ss -Hltn 'sport = :5201' | grep -q . && break
    sleep 0.1
done
gbps=$(in_ns a iperf3 -c "${ip4[b]}" -t 3 -f g 2>&1 |
    awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Gbits/sec") print $(i - 1) }')
[[ -n $gbps ]] || { gbps="failed"; failed=1; }
echo "a -> b: $gbps Gbit/s"

echo "== rvsctl fdb show br0"
ctl fdb show br0
echo "== rvsctl stats"
ctl stats

echo
echo "== summary"
printf '%-8s %-10s %s\n' pair ping iperf3
for x in a b c; do
    for y in a b c; do
        [[ $x == "$y" ]] && continue
        status=ok
        [[ ${result[$x$y]} == 0% ]] || status="loss ${result[$x$y]}"
        extra=
        [[ $x$y == ab ]] && extra="$gbps Gbit/s"
        printf '%-8s %-10s %s\n' "$x -> $y" "$status" "$extra"
    done
done
if ((failed)); then
    echo "some checks failed" >&2
    exit 1
fi
echo "all pairs reachable; cleaning up"

