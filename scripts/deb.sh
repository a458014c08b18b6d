#!/usr/bin/env bash
# Builds the Debian package target/debian/rvs_VERSION_ARCH.deb with
# cargo-deb: the release binaries (stripped), the systemd unit,
# /etc/default/rvsd, man pages and shell completions generated from the
# binaries' own definitions. Installs cargo-deb first if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup-lib.sh
source scripts/setup-lib.sh
find_cargo deb.sh || exit 1
have cargo-deb || "${as_user[@]}" cargo install cargo-deb --locked

"${as_user[@]}" cargo build --release --workspace
bin=target/release
assets=target/release/deb-assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/bash" "$assets/zsh" "$assets/fish"
"$bin/rvsd" --man >"$assets/man/rvsd.8"
"$bin/rvsctl" man --dir "$assets/man"
gzip -9n "$assets"/man/*
for b in rvsd rvsctl; do
    if [[ $b == rvsd ]]; then gen=("$bin/rvsd" --completions); else gen=("$bin/rvsctl" completions); fi
    "${gen[@]}" bash >"$assets/bash/$b"
    "${gen[@]}" zsh >"$assets/zsh/_$b"
    "${gen[@]}" fish >"$assets/fish/$b.fish"
done
# cargo-deb strips the binaries it packs (the release profile keeps
# line-level debug info for profiling).
"${as_user[@]}" cargo deb -p rvs-switch --no-build --strip --output target/debian/ "$@" >/dev/null
ls target/debian/rvs_*.deb
