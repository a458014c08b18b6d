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
have() { command -v "$1" >/dev/null 2>&1; }

# Tools the tests use, and the Debian packages that have them (several
# packages to a tool: space-separated). rvs-bench's test also drives the
# peers: Open vSwitch, and DPDK testpmd with its af_xdp driver (a plugin
# package of its own).
declare -A pkg_of=(
    [ip]=iproute2 [ss]=iproute2 [ping]=iputils-ping [iperf3]=iperf3
    [tcpdump]=tcpdump [ethtool]=ethtool [pgrep]=procps [man]=man-db
    [etcd]=etcd-server [openssl]=openssl
    # rvs-cni's test delegates IPAM to the real host-local plugin.
    [/usr/lib/cni/host-local]=containernetworking-plugins
    # ipMasq's test reads the NAT rules rvs-cni writes with nft.
    [nft]=nftables
    [ovs-vswitchd]=openvswitch-switch [dpdk-testpmd]="dpdk-dev librte-net-af-xdp23"
)
missing=()
for tool in "${!pkg_of[@]}"; do
    # shellcheck disable=SC2206 # split on purpose
    have "$tool" || missing+=(${pkg_of[$tool]})
done
# testpmd without its af_xdp driver cannot run the benchmark.
if have dpdk-testpmd && ! ldconfig -p | grep -q librte_net_af_xdp.so; then
    missing+=(librte-net-af-xdp23)
fi
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [[ $EUID -ne 0 ]] || ! have apt-get; then
        echo "test.sh: missing packages: ${missing[*]} (run as root on Debian/Ubuntu to install them)" >&2
        exit 1
    fi
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! have cargo && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! have cargo; then
    echo "test.sh: cargo not found: install Rust (https://rustup.rs), then run this again" >&2
    exit 1
fi
if have rustup; then
    for c in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
    done
fi
if [[ $EUID -ne 0 ]]; then
    echo "test.sh: not root: integration tests will be skipped (or fail under CI=true)" >&2
fi

start=$SECONDS
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
say "cargo build --release"
# Builds rvsctl too, which the integration tests find next to rvsd.
cargo build --release --workspace
say "cargo test --release"
cargo test --release --workspace
if [[ ${CI:-} == true ]]; then
    # Each fuzz target for a bounded time (about 3 min of building, under
    # 2 min of fuzzing); longer runs: scripts/fuzz.sh 600, RELIABILITY.md.
    say "fuzz targets, ${RVS_FUZZ_SECS:-20} s each"
    scripts/fuzz.sh "${RVS_FUZZ_SECS:-20}"
fi
say "all checks passed in $((SECONDS - start)) s"
