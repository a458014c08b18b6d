//! Against real veths: in a named namespace, in ours, in a process's
//! unnamed one, and not a veth at all. Every name made here carries the
//! test's pid, and a guard removes it all, also when a test fails.

use super::*;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const TOOLS: &[&str] = &["ip", "ethtool"];

/// Names for a fresh veth pair and namespace: this process's id and a
/// counter; the interface names fit in 15 bytes (`rvpa` + 7 + `n` + 2).
fn unique() -> (String, String, String) {
    static N: AtomicU32 = AtomicU32::new(0);
    let (pid, n) = (std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    (format!("rvs-peer-{pid}-{n}"), format!("rvpa{pid}n{n}"), format!("rvpb{pid}n{n}"))
}

/// Runs a command and returns its stdout; panics with its stderr on failure.
fn run(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a test made; removed on drop.
#[derive(Default)]
struct Scratch {
    /// The end of the veth pair in our namespace.
    link: Option<String>,
    /// A namespace made with `ip netns add`.
    netns: Option<String>,
    /// A process holding an unnamed namespace.
    child: Option<Child>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Deleting one end of a veth deletes both; errors (already gone) are fine.
        if let Some(l) = &self.link {
            let _ = Command::new("ip").args(["link", "del", l]).stderr(Stdio::null()).status();
        }
        if let Some(ns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A namespace `rvs-peer-<pid>-<n>` with the peer of a new veth in it,
/// its GRO off; `index` gives both ends that interface index.
fn veth_into_named_netns(s: &mut Scratch, index: Option<&str>) -> (String, String, String) {
    let (ns, a, b) = unique();
    run(&["ip", "netns", "add", &ns]);
    s.netns = Some(ns.clone());
    let mut cmd = vec!["ip", "link", "add", &a];
    cmd.extend(index.map(|i| ["index", i]).into_iter().flatten());
    cmd.extend(["type", "veth", "peer", "name", &b, "netns", &ns]);
    cmd.extend(index.map(|i| ["index", i]).into_iter().flatten());
    run(&cmd);
    s.link = Some(a.clone());
    run(&["ip", "netns", "exec", &ns, "ethtool", "-K", &b, "gro", "off"]);
    assert_eq!(gro(&["ip", "netns", "exec", &ns], &b), "off");
    (ns, a, b)
}

/// `on` or `off`: the peer's GRO as `ethtool -k` reports it, run under `prefix`.
fn gro(prefix: &[&str], ifname: &str) -> String {
    let mut cmd = prefix.to_vec();
    cmd.extend(["ethtool", "-k", ifname]);
    let out = run(&cmd);
    let line = out.lines().find(|l| l.starts_with("generic-receive-offload:")).expect("ethtool -k shows GRO");
    line["generic-receive-offload:".len()..].split_whitespace().next().unwrap_or_default().to_string()
}

#[test]
fn peer_in_named_netns_gets_gro() {
    if !rvs_dataplane::testing::require_root("peer_in_named_netns_gets_gro", TOOLS) {
        return;
    }
    let mut s = Scratch::default();
    let (ns, a, b) = veth_into_named_netns(&mut s, None);
    let want = PeerGro::Enabled { netns: ns.clone(), peer: b.clone() };
    assert_eq!(enable_peer_gro(&a), Ok(want.clone()));
    assert_eq!(gro(&["ip", "netns", "exec", &ns], &b), "on");
    // Again: already on, same answer.
    assert_eq!(enable_peer_gro(&a), Ok(want));
    // Our own end is not touched.
    assert_eq!(gro(&[], &a), "off");
}

#[test]
fn peer_with_our_own_index_in_another_netns() {
    if !rvs_dataplane::testing::require_root("peer_with_our_own_index_in_another_netns", TOOLS) {
        return;
    }
    let mut s = Scratch::default();
    // An index unlikely to be taken, the same for both ends.
    let index = (200_000 + std::process::id() % 1_000_000).to_string();
    let (ns, a, b) = veth_into_named_netns(&mut s, Some(&index));
    let peer = veth_peer(&a).unwrap().unwrap();
    assert_eq!(peer.ifindex.to_string(), index);
    assert!(peer.nsid.is_some());
    assert_eq!(enable_peer_gro(&a), Ok(PeerGro::Enabled { netns: ns.clone(), peer: b.clone() }));
    assert_eq!(gro(&["ip", "netns", "exec", &ns], &b), "on");
}

#[test]
fn peer_in_our_netns_gets_gro() {
    if !rvs_dataplane::testing::require_root("peer_in_our_netns_gets_gro", TOOLS) {
        return;
    }
    let mut s = Scratch::default();
    let (_, a, b) = unique();
    run(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
    s.link = Some(a.clone());
    run(&["ethtool", "-K", &b, "gro", "off"]);
    assert_eq!(veth_peer(&a).unwrap().unwrap().nsid, None);
    assert_eq!(enable_peer_gro(&a), Ok(PeerGro::Enabled { netns: String::new(), peer: b.clone() }));
    assert_eq!(gro(&[], &b), "on");
}

#[test]
fn peer_in_a_process_netns_is_found_through_proc() {
    if !rvs_dataplane::testing::require_root(
        "peer_in_a_process_netns_is_found_through_proc",
        &["ip", "ethtool", "unshare", "nsenter"],
    ) {
        return;
    }
    let mut s = Scratch::default();
    // A namespace with no name: only the process in it holds it.
    let child = Command::new("unshare").args(["--net", "sleep", "60"]).spawn().expect("unshare");
    let pid = child.id().to_string();
    s.child = Some(child);
    let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    let path = format!("/proc/{pid}/ns/net");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::metadata(&path).map(|m| m.ino()).unwrap_or(own) == own {
        assert!(std::time::Instant::now() < deadline, "unshare did not make a namespace");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (_, a, b) = unique();
    run(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b, "netns", &pid]);
    s.link = Some(a.clone());
    let nsenter = ["nsenter", "-t", &pid, "-n"];
    let mut off = nsenter.to_vec();
    off.extend(["ethtool", "-K", &b, "gro", "off"]);
    run(&off);
    assert_eq!(enable_peer_gro(&a), Ok(PeerGro::Enabled { netns: path, peer: b.clone() }));
    assert_eq!(gro(&nsenter, &b), "on");
}

#[test]
fn not_a_veth_is_left_alone() {
    // RTM_GETLINK needs no privilege.
    assert_eq!(enable_peer_gro("lo"), Ok(PeerGro::NotVeth));
    assert_eq!(veth_peer("lo").unwrap(), None);
}

#[test]
fn errors_name_the_interface() {
    let e = enable_peer_gro("rvs-no-such0").unwrap_err();
    assert!(e.starts_with("cannot turn GRO on at the veth peer of rvs-no-such0: "), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn unknown_nsid_is_not_found() {
    // Ids are small and assigned in order; this one is never handed out.
    assert!(find_netns(i32::MAX).is_none());
}
