# Shared start of the demo scripts; source it, then call demo_setup.
#
# demo_setup NAME TOOL=PACKAGE...
#   Requires root, installs the Debian packages of missing tools (as
#   scripts/test.sh does), builds rvsd, rvsctl and rvs-cni with cargo when
#   it is there (as the user who ran sudo), and sets $bin to the folder
#   holding them. Exits with a one-line error otherwise.
# shellcheck source=scripts/setup-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup-lib.sh"

demo_setup() {
    local name=$1
    shift
    if [[ $EUID -ne 0 ]]; then
        echo "$name: run as root (sudo scripts/$name)" >&2
        exit 1
    fi
    need_tools "$name" gcc=gcc "$@"
    bin="${CARGO_TARGET_DIR:-target}/release"
    if find_cargo "$name" 2>/dev/null; then
        echo "building release binaries (cargo build --release)..."
        "${as_user[@]}" cargo build --release --quiet -p rvs-switch -p rvs-ctl -p rvs-cni
    elif [[ ! -x $bin/rvsd || ! -x $bin/rvsctl ]]; then
        echo "$name: no cargo and no built binaries in $bin" >&2
        exit 1
    fi
}
