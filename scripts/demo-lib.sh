# Shared start of the demo scripts; source it, then call demo_setup.
#
# demo_setup NAME "TOOL..." "PACKAGE..."
#   Requires root and the tools (naming the Debian packages that have them),
#   builds rvsd and rvsctl with cargo when it is there, and sets $bin to the
#   folder holding them. Exits with a one-line error otherwise.
demo_setup() {
    local name=$1 tools=$2 packages=$3 tool
    if [[ $EUID -ne 0 ]]; then
        echo "$name: run as root (sudo scripts/$name)" >&2
        exit 1
    fi
    for tool in $tools; do
        command -v "$tool" >/dev/null || {
            echo "$name: $tool not found (apt-get install $packages)" >&2
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
        echo "$name: no cargo and no built binaries in $bin" >&2
        exit 1
    fi
}
