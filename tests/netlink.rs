//! `rvs_switch::kernel::netlink` against the real kernel: next-hop lookup through
//! the routing and neighbour tables, and neighbour resolution started by
//! `trigger_resolution`, over veth pairs whose root end lives in the root
//! namespace (where rvsd looks its uplinks up). Each test has its own
//! subnets: 198.18.5x.0/24 and 2001:2:0:5x::/64.
//!
//! Needs root: skipped with a notice otherwise, failed under `CI=true`.

mod common;

use common::*;
use rvs_dataplane::wire::MacAddr;
use rvs_switch::kernel::netlink::{self, NextHop, Trigger};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A veth pair with an address on each end: `host` (root namespace) and
/// `inner` (in `ns`). Both go away on drop, with their routes.
struct Pair {
    veth: Veth,
    ns: Netns,
}

impl Pair {
    /// `host_cidrs` go on the root end, `inner_cidrs` on the namespace end
    /// (IPv6 without duplicate address detection on both).
    fn new(host_cidrs: &[&str], inner_cidrs: &[&str]) -> Pair {
        let ns = Netns::new();
        let veth = Veth::new(&ns, inner_cidrs);
        for c in host_cidrs {
            if c.contains(':') {
                run_ok(&["ip", "addr", "add", c, "dev", &veth.host, "nodad"]);
            } else {
                run_ok(&["ip", "addr", "add", c, "dev", &veth.host]);
            }
        }
        let p = Pair { veth, ns };
        if host_cidrs.iter().any(|c| c.contains(':')) {
            p.wait_link_local();
        }
        p
    }

    /// Waits (up to 5 s) until the root end's link-local address has passed
    /// duplicate address detection: the kernel sends neighbour solicitations
    /// it originates itself from the link-local address, and none while that
    /// is tentative (a real uplink is long past this).
    fn wait_link_local(&self) {
        let t0 = Instant::now();
        loop {
            let out = run_ok(&["ip", "-6", "addr", "show", "dev", self.host(), "scope", "link"]);
            if out.contains("fe80") && !out.contains("tentative") {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "link-local address of {} still tentative: {out}",
                self.host()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn host(&self) -> &str {
        &self.veth.host
    }

    fn host_ifindex(&self) -> u32 {
        let s = std::fs::read_to_string(format!("/sys/class/net/{}/ifindex", self.host())).expect("ifindex");
        s.trim().parse().expect("ifindex number")
    }

    fn inner_mac(&self) -> MacAddr {
        self.ns.mac(&self.veth.inner).parse().expect("inner MAC")
    }

    fn host_mac(&self) -> MacAddr {
        let out = run_ok(&["ip", "-j", "link", "show", "dev", self.host()]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
        v[0]["address"].as_str().expect("address").parse().expect("host MAC")
    }

    /// Forgets every neighbour the root end learned.
    fn flush_neighbours(&self) {
        run_ok(&["ip", "neigh", "flush", "dev", self.host()]);
    }
}

/// Runs a cleanup command on drop (a route not tied to a test interface).
struct OnDrop(Vec<&'static str>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = run(&self.0);
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Resolves `dst` every 20 ms until its MAC is `want`; panics after 2 s.
fn poll_mac(dst: IpAddr, want: MacAddr) -> (NextHop, Duration) {
    let t0 = Instant::now();
    loop {
        let nh = netlink::resolve(dst).unwrap_or_else(|e| panic!("{e}"));
        if nh.mac == Some(want) {
            return (nh, t0.elapsed());
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "{dst} not resolved to {want} within 2 s: {nh:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// On-link destination: no neighbour after a flush, none appears on its
/// own, then the kernel resolves it once triggered.
fn on_link(host_cidr: &str, inner_cidr: &str) {
    let p = Pair::new(&[host_cidr], &[inner_cidr]);
    let (local, dst) = (ip(host_cidr.split('/').next().unwrap()), ip(inner_cidr.split('/').next().unwrap()));
    p.flush_neighbours();
    let nh = netlink::resolve(dst).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        nh,
        NextHop { ifindex: p.host_ifindex(), ifname: p.host().to_string(), gateway: None, src: Some(local), mac: None }
    );
    // Nothing else resolves it: without a trigger it stays unknown.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(netlink::resolve(dst).unwrap().mac, None, "neighbour {dst} appeared without a trigger");

    assert_eq!(netlink::trigger_resolution_detailed(nh.ifindex, dst).unwrap(), Trigger::NtfUse);
    let (nh2, took) = poll_mac(dst, p.inner_mac());
    assert_eq!((nh2.ifindex, nh2.gateway), (nh.ifindex, None));
    eprintln!("{dst}: resolved to {} on {} {took:?} after trigger_resolution (NTF_USE)", p.inner_mac(), nh2.ifname);

    // Triggering a resolved neighbour is harmless.
    netlink::trigger_resolution(nh.ifindex, dst).unwrap();
    assert_eq!(netlink::resolve(dst).unwrap().mac, Some(p.inner_mac()));
}

#[test]
fn ipv4_on_link_neighbour_resolved_by_the_kernel() {
    if !require_root() {
        return;
    }
    on_link("198.18.51.1/24", "198.18.51.2/24");
}

#[test]
fn ipv6_on_link_neighbour_resolved_by_the_kernel() {
    if !require_root() {
        return;
    }
    on_link("2001:2:0:51::1/64", "2001:2:0:51::2/64");
}

#[test]
fn routes_via_a_gateway_resolve_the_gateway() {
    if !require_root() {
        return;
    }
    let p = Pair::new(&["198.18.52.1/24", "2001:2:0:52::1/64"], &["198.18.52.2/24", "2001:2:0:52::2/64"]);
    // Deleted with the interface too; the guards cover a failed run midway.
    run_ok(&["ip", "route", "add", "198.18.57.0/24", "via", "198.18.52.2", "dev", p.host()]);
    let _r4 = OnDrop(vec!["ip", "route", "del", "198.18.57.0/24"]);
    run_ok(&["ip", "-6", "route", "add", "2001:2:0:57::/64", "via", "2001:2:0:52::2", "dev", p.host()]);
    let _r6 = OnDrop(vec!["ip", "-6", "route", "del", "2001:2:0:57::/64"]);
    p.flush_neighbours();

    for (dst, gw, src) in
        [("198.18.57.9", "198.18.52.2", "198.18.52.1"), ("2001:2:0:57::9", "2001:2:0:52::2", "2001:2:0:52::1")]
    {
        let nh = netlink::resolve(ip(dst)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            nh,
            NextHop {
                ifindex: p.host_ifindex(),
                ifname: p.host().to_string(),
                gateway: Some(ip(gw)),
                src: Some(ip(src)),
                mac: None
            }
        );
        netlink::trigger_resolution(nh.ifindex, ip(gw)).unwrap();
        let (nh, took) = poll_mac(ip(dst), p.inner_mac());
        assert_eq!(nh.gateway, Some(ip(gw)));
        eprintln!("{dst} via {gw}: resolved to {} {took:?} after trigger_resolution", p.inner_mac());
    }
}

#[test]
fn interface_addresses_and_link_info() {
    if !require_root() {
        return;
    }
    let p = Pair::new(&["198.18.53.1/24", "2001:2:0:53::1/64"], &["198.18.53.2/24"]);
    run_ok(&["ip", "link", "set", "dev", p.host(), "mtu", "1432"]);

    let addrs = netlink::interface_addrs(p.host()).unwrap();
    assert!(addrs.contains(&ip("198.18.53.1")), "{addrs:?}");
    assert!(addrs.contains(&ip("2001:2:0:53::1")), "{addrs:?}");
    assert!(!addrs.contains(&ip("198.18.53.2")), "{addrs:?}");

    assert_eq!(netlink::link_info(p.host()).unwrap(), (1432, p.host_mac()));

    for e in [netlink::link_info("rvnosuchdev0").unwrap_err(), netlink::interface_addrs("rvnosuchdev0").unwrap_err()] {
        assert!(e.to_string().contains("rvnosuchdev0") && e.to_string().contains("No such device"), "{e}");
        eprintln!("error: {e}");
    }
    let e = netlink::link_info("").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");

    // Our own address is no next hop.
    let e = netlink::resolve(ip("198.18.53.1")).unwrap_err();
    assert!(e.to_string().contains("local address"), "{e}");
    eprintln!("error: {e}");
}

#[test]
fn unreachable_destination_is_a_clear_error() {
    if !require_root() {
        return;
    }
    // The root namespace may have a default route: make these unreachable.
    run_ok(&["ip", "route", "add", "unreachable", "198.18.59.0/24"]);
    let _r4 = OnDrop(vec!["ip", "route", "del", "unreachable", "198.18.59.0/24"]);
    run_ok(&["ip", "-6", "route", "add", "unreachable", "2001:2:0:59::/64"]);
    let _r6 = OnDrop(vec!["ip", "-6", "route", "del", "unreachable", "2001:2:0:59::/64"]);
    for dst in ["198.18.59.9", "2001:2:0:59::9"] {
        let e = netlink::resolve(ip(dst)).unwrap_err();
        let s = e.to_string();
        eprintln!("error: {s}");
        assert!(s.starts_with(&format!("route lookup for {dst}: ")), "{s}");
        assert!(s.contains("unreachable") || s.contains("No route to host"), "{s}");
        assert!(!s.contains('\n'), "{s:?}");
        assert!(netlink::kernel_errno(&e).is_some(), "{s}");
    }
    let e = netlink::trigger_resolution(0, ip("198.18.59.9")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
}

/// Without CAP_NET_ADMIN the kernel refuses RTM_NEWNEIGH; the fallback (an
/// empty UDP datagram) still gets the neighbour resolved.
#[test]
fn trigger_without_cap_net_admin_falls_back_to_udp() {
    if !require_root() {
        return;
    }
    let p = Pair::new(&["198.18.54.1/24"], &["198.18.54.2/24"]);
    p.flush_neighbours();
    let (ifindex, dst) = (p.host_ifindex(), ip("198.18.54.2"));
    // Capabilities are per thread on Linux: drop CAP_NET_ADMIN from the
    // effective set of a thread of our own and trigger from there.
    let how = std::thread::spawn(move || {
        drop_effective_cap(CAP_NET_ADMIN);
        netlink::trigger_resolution_detailed(ifindex, dst)
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(how, Trigger::UdpProbe);
    let (_, took) = poll_mac(dst, p.inner_mac());
    eprintln!("{dst}: resolved {took:?} after the UDP fallback");
}

/// linux/capability.h.
const CAP_NET_ADMIN: u32 = 12;

/// Clears capability `cap` from the calling thread's effective set.
fn drop_effective_cap(cap: u32) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut hdr = Header { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget reads `hdr` and writes two Data structs (version 3),
    // both live and properly sized for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut Header, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
    data[(cap / 32) as usize].effective &= !(1 << (cap % 32));
    // SAFETY: as above; capset only reads them. pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
}

/// Addresses and routes as rvs-cni sets them in a container: added over
/// netlink inside a namespace, then read back (and compared with `ip`).
#[test]
fn addresses_and_routes_added_and_listed() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let peer = Netns::new();
    veth_between(&ns, "eth0", &peer, "eth0");
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (got_addrs, got_routes, dup) = rvs_dataplane::port::netns::in_netns(Some(&ns.name), || {
        let index = netlink::find_link("eth0")?.expect("eth0 in the namespace").index;
        netlink::add_address(index, ip("198.18.58.2"), 24)?;
        netlink::add_address(index, ip("2001:2:0:58::2"), 64)?;
        let routes = [
            netlink::Route {
                dst: Some(ip("198.19.58.0")),
                dst_len: 24,
                gateway: Some(ip("198.18.58.1")),
                oif: Some(index),
            },
            netlink::Route { dst: None, dst_len: 0, gateway: Some(ip("198.18.58.254")), oif: Some(index) },
            netlink::Route { dst: Some(ip("2001:2:0:59::")), dst_len: 64, gateway: None, oif: Some(index) },
        ];
        for r in &routes {
            netlink::add_route(r)?;
        }
        let dup = netlink::add_route(&routes[0]).unwrap_err();
        Ok((netlink::link_addrs(index)?, netlink::link_routes(index)?, netlink::kernel_errno(&dup)))
    })
    .unwrap();
    assert!(got_addrs.contains(&(ip("198.18.58.2"), 24)), "{got_addrs:?}");
    assert!(got_addrs.contains(&(ip("2001:2:0:58::2"), 64)), "{got_addrs:?}");
    let has = |dst: Option<&str>, len: u8, gw: Option<&str>| {
        got_routes.iter().any(|r| r.dst == dst.map(ip) && r.dst_len == len && r.gateway == gw.map(ip))
    };
    assert!(has(Some("198.19.58.0"), 24, Some("198.18.58.1")), "{got_routes:?}");
    assert!(has(None, 0, Some("198.18.58.254")), "{got_routes:?}");
    assert!(has(Some("2001:2:0:59::"), 64, None), "{got_routes:?}");
    assert!(has(Some("198.18.58.0"), 24, None), "the prefix route of the address: {got_routes:?}");
    assert_eq!(dup, Some(libc::EEXIST));
    // IPv6 without duplicate address detection: usable at once.
    let shown = ns.ip(&["-6", "-o", "addr", "show", "dev", "eth0"]);
    let line = shown.lines().find(|l| l.contains("2001:2:0:58::2/64")).unwrap_or_else(|| panic!("{shown}"));
    assert!(line.contains("nodad") && !line.contains("tentative"), "{shown}");
    let shown = ns.ip(&["route", "show", "default"]);
    assert!(shown.contains("via 198.18.58.254 dev eth0"), "{shown}");
}
