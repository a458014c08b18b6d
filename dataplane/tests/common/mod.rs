//! What the dataplane's kernel tests share: when they run, and `ip`.

#![allow(dead_code)]

use std::process::{Command, Stdio};

/// True if `test` may run (root and iproute2); see
/// [`rvs_dataplane::testing::require_root`].
pub fn privileged(test: &str) -> bool {
    rvs_dataplane::testing::require_root(test, &["ip"])
}

/// Runs `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Runs `ip ARGS` for cleanup: failures are fine.
pub fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// `ip -o link show dev X` mentions an XDP program.
pub fn has_xdp(dev: &str) -> bool {
    let out = Command::new("ip").args(["-o", "link", "show", "dev", dev]).output().expect("running ip");
    assert!(out.status.success(), "no link {dev}");
    String::from_utf8_lossy(&out.stdout).contains(" xdp")
}

/// True once `dev` has no XDP program, waiting up to 10 s: the kernel may
/// free a closed bpf_link from a work queue, later on a busy machine.
pub fn xdp_gone(dev: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while has_xdp(dev) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    true
}
