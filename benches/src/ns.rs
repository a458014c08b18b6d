//! Network namespaces the harness makes (`rvsb-<pid>-<n><role>`), removed
//! on drop with everything in them, plus a sweep of those left behind by an
//! rvs-bench that was killed.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sh::{self, Result};

const PREFIX: &str = "rvsb-";

/// A named network namespace with loopback up and IPv6 off (so hosts stay
/// silent during a trial). Deleted on drop, with the processes still in it.
#[derive(Debug)]
pub struct Netns {
    /// The name under /var/run/netns.
    pub name: String,
}

impl Netns {
    /// Makes `rvsb-<pid>-<n><role>`.
    pub fn new(role: &str) -> Result<Netns> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("{PREFIX}{}-{}{role}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        sh::run(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        sh::ip(&ns.name, &["link", "set", "lo", "up"])?;
        for key in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
            sh::run_in(&ns.name, &["sysctl", "-qw", key])?;
        }
        Ok(ns)
    }

    /// `ip -n NS ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        sh::ip(&self.name, args)
    }

    /// Runs `args` inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        sh::run_in(&self.name, args)
    }

    /// MAC address of `dev`.
    pub fn mac(&self, dev: &str) -> Result<[u8; 6]> {
        let out = self.ip(&["-j", "link", "show", "dev", dev])?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("ip -j link: {e}"))?;
        let s = v[0]["address"].as_str().ok_or_else(|| format!("{}: no MAC for {dev}", self.name))?;
        parse_mac(s).ok_or_else(|| format!("{}: bad MAC {s:?} for {dev}", self.name))
    }

    /// Opens the namespace file, for `setns`.
    pub fn open(&self) -> Result<OwnedFd> {
        open_netns(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove(&self.name);
    }
}

/// Kills what still runs in `name` (processes this harness started there)
/// and deletes it; veths inside go with it.
fn remove(name: &str) {
    if let Ok(pids) = sh::run(&["ip", "netns", "pids", name]) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            // SAFETY: a plain signal to a process inside a namespace that
            // only this harness uses.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let _ = sh::run(&["ip", "netns", "del", name]);
}

/// Removes namespaces of earlier rvs-bench runs whose process is gone, and
/// returns their names (their daemons' folders go next, see main.rs).
pub fn sweep_stale() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(rvs_dataplane::port::netns::NETNS_DIR) else { return Vec::new() };
    let mut removed = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("rvs-bench: removing namespace {name} left by an earlier run");
            remove(&name);
            removed.push(name);
        }
    }
    removed
}

/// A veth pair `a_dev` in `a` and `b_dev` in `b`, both up, created straight
/// inside the namespaces (nothing in the root namespace).
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str, mtu: u32) -> Result<()> {
    let mtu = mtu.to_string();
    sh::run(&[
        "ip", "link", "add", a_dev, "netns", &a.name, "mtu", &mtu, "type", "veth", "peer", "name", b_dev, "netns",
        &b.name, "mtu", &mtu,
    ])?;
    a.ip(&["link", "set", a_dev, "up"])?;
    b.ip(&["link", "set", b_dev, "up"])?;
    Ok(())
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in m.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

fn open_netns(name: &str) -> Result<OwnedFd> {
    rvs_dataplane::port::netns::open_netns(name).map_err(|e| e.to_string())
}

/// Runs `f` on a thread of its own inside the namespace open as `nsfd`.
pub fn in_netns<T: Send>(nsfd: &OwnedFd, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(nsfd)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err("namespace thread panicked".into()))
    })
}

/// Moves the calling thread into namespace `ns` (for good: call it on a
/// thread of its own).
pub fn enter(ns: &OwnedFd) -> Result<()> {
    // SAFETY: `ns` is an open namespace file; setns changes only the
    // calling thread's network namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs_parse() {
        assert_eq!(super::parse_mac("02:0a:ff:00:01:10"), Some([2, 10, 255, 0, 1, 16]));
        assert_eq!(super::parse_mac("02:0a:ff:00:01"), None);
        assert_eq!(super::parse_mac("02:0a:ff:00:01:10:11"), None);
    }
}
