# Shared start of test.sh and the demos; source it. They run as root (the
# tests and demos build namespaces, veths, taps and XDP programs), often
# through sudo from a user who installed Rust with rustup.

have() { command -v "$1" >/dev/null 2>&1; }

# need_tools NAME TOOL=PACKAGE...
#   Installs with apt-get (noninteractive, only what is missing) the Debian
#   packages of the tools not found; a tool that needs several packages
#   names them joined by '+'. Exits with a one-line error when it cannot.
need_tools() {
    local name=$1 pair missing=()
    shift
    for pair in "$@"; do
        # shellcheck disable=SC2206 # split on purpose
        have "${pair%%=*}" || missing+=(${pair#*=})
    done
    ((${#missing[@]})) || return 0
    mapfile -t missing < <(printf '%s\n' "${missing[@]//+/$'\n'}" | sort -u)
    if [[ $EUID -ne 0 ]] || ! have apt-get; then
        echo "$name: missing packages: ${missing[*]} (run as root on Debian/Ubuntu to install them)" >&2
        exit 1
    fi
    printf '\n==> %s: installing %s\n' "$name" "${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# find_cargo NAME
#   Makes cargo runnable: from PATH, else from ~/.cargo/bin, else, under
#   sudo, from the invoking user's ~/.cargo/bin with their rustup. Sets
#   `as_user`, the prefix that runs a build as the user who ran sudo, so
#   that target/ stays theirs (empty when not under sudo). Fails, saying
#   so, when there is no cargo.
find_cargo() {
    local name=$1 home
    as_user=()
    if [[ -n ${SUDO_USER:-} && $SUDO_USER != root && $EUID -eq 0 ]]; then
        home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        if [[ -x $home/.cargo/bin/cargo ]]; then
            export PATH="$home/.cargo/bin:$PATH" CARGO_HOME="$home/.cargo" RUSTUP_HOME="$home/.rustup"
        fi
        # runuser keeps the environment (PATH, CARGO_HOME, RUSTUP_HOME, CI)
        # but HOME, which becomes theirs.
        as_user=(runuser -u "$SUDO_USER" --)
    fi
    if ! have cargo && [[ -x $HOME/.cargo/bin/cargo ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! have cargo; then
        echo "$name: cargo not found: install Rust with rustup (https://rustup.rs), then run this again" >&2
        return 1
    fi
}

# give_back_target
#   Under sudo, hands back to the user anything root made under target/
#   (test runs as root may add a file or two).
give_back_target() {
    if ((${#as_user[@]})) && [[ -d ${CARGO_TARGET_DIR:-target} ]]; then
        find "${CARGO_TARGET_DIR:-target}" -user 0 -print0 | xargs -0r chown "$SUDO_USER:"
    fi
}
