#!/usr/bin/env bash
# Containers on rvs: podman (Debian's, CNI backend) runs two containers on
# an rvs network. rvs-cni attaches each (a veth taken with AF_XDP), host-local
# gives the addresses, and the bridge's gateway port (a tap named after the
# bridge, holding 198.18.70.1) is their default route. The containers ping
# each other and the gateway, run iperf3 between them, and reach a web
# server on the host; then `podman rm -f` and a check that nothing is left.
#
# The "host" is a network namespace of its own (rvsd, podman, the gateway
# and the web server all run there), so the machine's own interfaces,
# routes and podman state are not touched. No image is pulled: containers
# run from a busybox + iperf3 root file system. Removes everything on exit
# (also on Ctrl-C or failure). Run as root. Addresses: 198.18.70.0/24.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/demo-lib.sh
source scripts/demo-lib.sh
demo_setup demo-containers.sh ip=iproute2 podman=podman runc=runc busybox=busybox-static iperf3=iperf3 \
    nsenter=util-linux /usr/lib/cni/host-local=containernetworking-plugins
[[ -x $bin/rvs-cni ]] || {
    echo "demo-containers.sh: no rvs-cni in $bin" >&2
    exit 1
}

id=$$
tmp=$(mktemp -d "/tmp/rvs-demo-containers.XXXXXX")
host="rvdk-$id-host"
subnet=198.18.70.0/24
gw=198.18.70.1
rvsd_pid=
web_pid=

inhost() { ip netns exec "$host" "$@"; }
ctl() { "$bin/rvsctl" --socket "$tmp/rvsd.sock" "$@"; }
# nsenter --net, not ip netns exec: that remounts /sys, and runc then finds
# no cgroups.
pm() {
    CONTAINERS_CONF=$tmp/containers.conf nsenter --net="/var/run/netns/$host" podman --root "$tmp/root" \
        --runroot "$tmp/runroot" --runtime runc --cgroup-manager cgroupfs "$@"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    ((rc != 0)) && [[ -s $tmp/rvsd.log ]] && { echo "--- rvsd log:" >&2; tail -n 15 "$tmp/rvsd.log" >&2; }
    [[ -d $tmp/root ]] && pm rm -f -t 0 --all >/dev/null 2>&1
    [[ -n $web_pid ]] && kill -TERM "$web_pid" 2>/dev/null && wait "$web_pid" 2>/dev/null
    # rvsd detaches its programs and removes the gateway tap on SIGTERM.
    [[ -n $rvsd_pid ]] && kill -TERM "$rvsd_pid" 2>/dev/null && wait "$rvsd_pid" 2>/dev/null
    ip netns pids "$host" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    ip netns del "$host" 2>/dev/null
    grep -o " $tmp[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== the host: namespace $host, rvsd, bridge br0 with gateway $gw/24"
ip netns add "$host"
inhost ip link set lo up
inhost sysctl -qw net.ipv4.ip_forward=1
cores=1
[[ $(nproc) -ge 2 ]] || cores=0
# Not through inhost: $! must be rvsd itself (ip netns exec execs it), for
# the SIGTERM at the end.
ip netns exec "$host" "$bin/rvsd" --cores "$cores" --socket "$tmp/rvsd.sock" --db "$tmp/rvsd.json" 2>"$tmp/rvsd.log" &
rvsd_pid=$!
for _ in $(seq 100); do ctl ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "+ rvsctl bridge add br0 --gateway $gw/24"
ctl bridge add br0 --gateway "$gw/24"

echo "== podman with the CNI backend and an rvs network"
mkdir -p "$tmp/bin" "$tmp/net" "$tmp/rootfs/bin" "$tmp/rootfs/tmp" "$tmp/www"
chmod 1777 "$tmp/rootfs/tmp"
# The runtime finds a plugin by its type: "rvs".
ln -s "$(realpath "$bin/rvs-cni")" "$tmp/bin/rvs"
cat >"$tmp/containers.conf" <<CONF
[containers]
default_ulimits = []
[network]
network_backend = "cni"
cni_plugin_dirs = ["$tmp/bin", "/usr/lib/cni"]
network_config_dir = "$tmp/net"
CONF
cat >"$tmp/net/rvsdemo.conflist" <<CONF
{
  "cniVersion": "1.0.0",
  "name": "rvsdemo",
  "plugins": [
    {
      "type": "rvs",
      "bridge": "br0",
      "socket": "$tmp/rvsd.sock",
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$subnet", "gateway": "$gw"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$tmp/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "tuning"}
  ]
}
CONF
echo "+ cat $tmp/net/rvsdemo.conflist"
cat "$tmp/net/rvsdemo.conflist"
# Root file system: busybox and iperf3 with the libraries they load.
copy_in() {
    local f
    for f in "$1" $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*'); do
        mkdir -p "$tmp/rootfs$(dirname "$f")"
        cp -L "$f" "$tmp/rootfs$f"
    done
}
copy_in "$(command -v busybox)"
mv "$tmp/rootfs$(command -v busybox)" "$tmp/rootfs/bin/busybox" 2>/dev/null || true
for a in sh ping ip sleep cat wget; do ln -sf busybox "$tmp/rootfs/bin/$a"; done
copy_in /usr/bin/iperf3

echo "== two containers"
for c in c1 c2; do
    echo "+ podman run -d --name $c --network rvsdemo --rootfs ROOTFS sleep 3600"
    pm run -d --name "$c" --network rvsdemo --stop-signal KILL --rootfs "$tmp/rootfs" sleep 3600 >/dev/null
done
ip_of() { pm inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
ip1=$(ip_of c1) ip2=$(ip_of c2)
echo "c1: $ip1, c2: $ip2"
echo "+ rvsctl show"
ctl show

declare -A result
failed=0
check() { # NAME COMMAND...: records ok or FAILED
    local name=$1
    shift
    if "$@" >/dev/null 2>&1; then result[$name]=ok; else result[$name]=FAILED; failed=1; fi
    echo "$name: ${result[$name]}"
}
echo "== traffic"
check "c1 -> c2 ping" pm exec c1 ping -c 3 -W 2 "$ip2"
check "c2 -> c1 ping" pm exec c2 ping -c 3 -W 2 "$ip1"
check "c1 -> gateway ping" pm exec c1 ping -c 3 -W 2 "$gw"
check "c2 -> gateway ping" pm exec c2 ping -c 3 -W 2 "$gw"
# A process on the host: a web server on the gateway's address.
echo "hello from the host" >"$tmp/www/index.html"
ip netns exec "$host" busybox httpd -f -p "$gw:8080" -h "$tmp/www" &
web_pid=$!
sleep 0.3
page=$(pm exec c1 wget -q -O - "http://$gw:8080/" 2>/dev/null || true)
[[ $page == "hello from the host" ]] && result["c1 -> host web server"]="ok: \"$page\"" ||
    { result["c1 -> host web server"]=FAILED; failed=1; }
echo "c1 -> host web server: ${result["c1 -> host web server"]}"
pm exec -d c2 iperf3 -s -1 -B "$ip2" >/dev/null
rate=FAILED
for _ in $(seq 20); do
    if out=$(pm exec c1 iperf3 -c "$ip2" -t 3 -f g 2>/dev/null) && grep -q receiver <<<"$out"; then
        rate=$(awk '/receiver/ { print $(NF-2), $(NF-1) }' <<<"$out")
        break
    fi
    sleep 0.2
done
[[ $rate == FAILED ]] && failed=1
result["c1 -> c2 iperf3 (TCP)"]=$rate
echo "c1 -> c2 iperf3: $rate"

echo "== podman rm -f c1 c2"
pm rm -f -t 0 c1 c2 >/dev/null
left_ports=$(ctl --json show | grep -c '"owner"' || true)
left_veths=$(inhost ip -o link show | grep -c ': rvs[0-9a-f]\{12\}' || true)
left_addrs=$(find "$tmp/ipam" -name '198.*' 2>/dev/null | wc -l)
if [[ $left_ports == 0 && $left_veths == 0 && $left_addrs == 0 ]]; then
    result["podman rm -f leaves nothing"]=ok
else
    result["podman rm -f leaves nothing"]="FAILED: $left_ports ports, $left_veths veths, $left_addrs addresses"
    failed=1
fi
echo "ports, veths, addresses left: $left_ports, $left_veths, $left_addrs"

echo
echo "== summary"
printf '%-30s %s\n' CHECK RESULT
for k in "c1 -> c2 ping" "c2 -> c1 ping" "c1 -> gateway ping" "c2 -> gateway ping" \
    "c1 -> host web server" "c1 -> c2 iperf3 (TCP)" "podman rm -f leaves nothing"; do
    printf '%-30s %s\n' "$k" "${result[$k]}"
done
if ((failed)); then
    echo "some checks failed" >&2
    exit 1
fi
echo "all checks passed; cleaning up"
