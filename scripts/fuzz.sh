#!/usr/bin/env bash
# Runs every cargo-fuzz target of rvs for a bounded time each.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60); TARGET names from fuzz/Cargo.toml
# (default all). Installs cargo-fuzz if missing. rvs builds on stable Rust:
# cargo-fuzz needs nightly flags (-Zsanitizer), which RUSTC_BOOTSTRAP=1
# unlocks on the stable compiler. Each target starts from the committed
# seeds in fuzz/seeds/TARGET plus whatever fuzz/corpus/TARGET (ignored by
# git) gathered in earlier runs. A crash leaves its input in
# fuzz/artifacts/TARGET and makes this script exit non-zero; reproduce
# with: RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/FILE
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(frame pipeline multi vxlan_decap proto db)

if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

echo "==> building fuzz targets"
cargo fuzz build -O

failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    echo "==> fuzz $t for ${secs}s"
    # -rss_limit_mb: the whole-switch target keeps a packet pool per input.
    if ! cargo fuzz run -O "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 2>"fuzz/$t.log"; then
        failed+=("$t")
        tail -n 40 "fuzz/$t.log" >&2
    fi
    grep -E '^stat::number_of_executed_units|^stat::new_units_added|^#[0-9]+.*DONE' "fuzz/$t.log" || true
done
if ((${#failed[@]})); then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${secs}s each, no crash"
