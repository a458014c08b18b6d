#!/usr/bin/env bash
# Runs every check and test of rvs: formatting, clippy, a release build,
# all unit and integration tests, and under CI the fuzz targets briefly.
# Run it as root: the integration tests build network namespaces, veth
# pairs and tap devices, attach XDP and run ping, iperf3 and tcpdump. On
# a fresh Debian 12 it installs the tools it needs (only those missing).
# Exits non-zero on any failure.
#
# With CI=true, an integration test that cannot run (not root, a tool
# missing) fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }
# shellcheck source=scripts/setup-lib.sh
source scripts/setup-lib.sh

# Tools the tests use, and the Debian packages that have them (several
# packages to a tool: joined by '+'); gcc is the linker cargo needs.
# rvs-bench's test also drives the peers: Open vSwitch, and DPDK testpmd
# with its af_xdp driver (a plugin package of its own).
tools=(
    gcc=gcc
    ip=iproute2 ss=iproute2 ping=iputils-ping iperf3=iperf3 tcpdump=tcpdump
    tshark=tshark ethtool=ethtool pgrep=procps man=man-db etcd=etcd-server openssl=openssl
    # rvs-cni's test delegates IPAM to the real host-local plugin.
    /usr/lib/cni/host-local=containernetworking-plugins
    # ipMasq's test reads the NAT rules rvs-cni writes with nft.
    nft=nftables
    # The container tests run podman (CNI backend, runc) with a busybox
    # root file system, and chain the firewall plugin (iptables).
    podman=podman runc=runc busybox=busybox-static iptables=iptables
    # The packaging tests: the unit, the .deb.
    systemd-analyze=systemd dpkg-deb=dpkg
    # rvs-bench's peers.
    ovs-vswitchd=openvswitch-switch dpdk-testpmd=dpdk-dev+librte-net-af-xdp23
)
need_tools test.sh "${tools[@]}"
# testpmd without its af_xdp driver cannot run the benchmark.
if have dpdk-testpmd && ! ldconfig -p | grep -q librte_net_af_xdp.so; then
    need_tools test.sh /nonexistent/librte_net_af_xdp=librte-net-af-xdp23
fi

find_cargo test.sh || exit 1
if have rustup; then
    for c in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$c" || "${as_user[@]}" rustup component add "$c"
    done
fi
if [[ $EUID -ne 0 ]]; then
    echo "test.sh: not root: integration tests will be skipped (or fail under CI=true)" >&2
fi
trap give_back_target EXIT

start=$SECONDS
# Builds run as the user who ran sudo (target/ stays theirs); the tests
# themselves run as root.
say "cargo fmt --check"
"${as_user[@]}" cargo fmt --all -- --check
say "cargo clippy"
"${as_user[@]}" cargo clippy --workspace --all-targets -- -D warnings
say "cargo build --release"
# Builds rvsctl too, which the integration tests find next to rvsd.
"${as_user[@]}" cargo build --release --workspace
"${as_user[@]}" cargo test --release --workspace --no-run
say "Debian package (scripts/deb.sh)"
scripts/deb.sh
say "cargo test --release"
cargo test --release --workspace
if [[ ${CI:-} == true ]]; then
    # Each fuzz target for a bounded time (about 3 min of building, under
    # 2 min of fuzzing); longer runs: scripts/fuzz.sh 600, RELIABILITY.md.
    say "fuzz targets, ${RVS_FUZZ_SECS:-20} s each"
    scripts/fuzz.sh "${RVS_FUZZ_SECS:-20}"
fi
say "all checks passed in $((SECONDS - start)) s"
