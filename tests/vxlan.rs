//! Issue 3: the VXLAN overlay between hosts, each host a namespace of its
//! own. One side is rvs (rvsd running inside the host's namespace, an
//! uplink and a tunnel port); the other a Linux kernel vxlan device on a
//! kernel bridge, or a second rvsd. Nothing is configured on either side
//! but the tunnel: no static ARP, neighbour or FDB entries anywhere.

mod common;

use common::*;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const VNI: &str = "42";
/// Inner MTU of the hosts: what fits the 1500-byte underlay after
/// encapsulation (50 bytes over IPv4, 70 over IPv6), as Flannel sets it.
const MTU_V4: &str = "1450";
const MTU_V6: &str = "1430";

/// The two ends of the underlay, IPv4 and IPv6.
struct Underlay {
    rvs: &'static str,
    peer: &'static str,
    prefix: u8,
    inner_mtu: &'static str,
}

const V4: Underlay = Underlay { rvs: "198.18.200.1", peer: "198.18.200.2", prefix: 24, inner_mtu: MTU_V4 };
const V6: Underlay = Underlay { rvs: "2001:2:0:200::1", peer: "2001:2:0:200::2", prefix: 64, inner_mtu: MTU_V6 };

/// The first echo request is answered (ARP across the tunnel included):
/// one ping, waiting up to 5 s for its reply.
fn first_ping(from: &Guest, to: &Guest) -> bool {
    from.ns.run(&["ping", "-n", "-q", "-c", "1", "-W", "5", &to.ip]).status.success()
}

/// Sets up rvs in `machine` as a VTEP: bridge br0, the uplink `ul`, the
/// tunnel port vx42 toward `peer`, and an AF_XDP port per name in `ports`.
fn configure_rvs(rvsd: &Rvsd, local: &str, peer: &str, ports: &[&str]) {
    rvsd.add_bridge("br0");
    rvsd.ctl_ok(&["uplink", "add", "ul"]);
    rvsd.add_port("br0", "vx42", &["--type", "vxlan", "--vni", VNI, "--local", local, "--remote", peer]);
    for p in ports {
        rvsd.add_port("br0", p, &["--type", "afxdp"]);
    }
}

/// rvs on one host and a kernel vxlan VTEP on the other, two guests
/// behind each. Fields drop top to bottom: rvsd stops before its
/// interfaces go away.
struct KernelPeer {
    rvsd: Rvsd,
    a: [Guest; 2],
    b: [Guest; 2],
    rvs_host: Netns,
    peer_host: Netns,
}

impl KernelPeer {
    fn new(u: &Underlay) -> KernelPeer {
        let rvs_host = Netns::new();
        let peer_host = Netns::new();
        veth_between(&rvs_host, "ul", &peer_host, "ul");
        rvs_host.addr_add("ul", &format!("{}/{}", u.rvs, u.prefix));
        peer_host.addr_add("ul", &format!("{}/{}", u.peer, u.prefix));
        configure_kernel_vtep(&peer_host, "br0", "vx42", VNI, u.peer, u.rvs);
        let a = [
            Guest::new(&rvs_host, "pa0", "198.18.20.1/24", u.inner_mtu),
            Guest::new(&rvs_host, "pa1", "198.18.20.2/24", u.inner_mtu),
        ];
        let b = [
            Guest::new(&peer_host, "pb0", "198.18.20.11/24", u.inner_mtu),
            Guest::new(&peer_host, "pb1", "198.18.20.12/24", u.inner_mtu),
        ];
        for p in ["pb0", "pb1"] {
            peer_host.ip(&["link", "set", p, "master", "br0"]);
        }
        let rvsd = Rvsd::start_in(&rvs_host);
        configure_rvs(&rvsd, u.rvs, u.peer, &["pa0", "pa1"]);
        KernelPeer { rvsd, a, b, rvs_host, peer_host }
    }

    /// rvs's uplink MAC (where the peer sends its VXLAN frames).
    fn rvs_ul_mac(&self) -> [u8; 6] {
        parse_mac(&self.rvs_host.mac("ul"))
    }
}

/// iperf3 for 2 s from `c1` to `s1`, then from `c2` to `s2`: both carry TCP.
fn iperf3_both_ways(c1: &Guest, s1: &Guest, c2: &Guest, s2: &Guest) {
    for (client, server) in [(c1, s1), (c2, s2)] {
        let _srv = Iperf3Server::start(&server.ns, &server.ip);
        let bps =
            iperf3(&client.ns, &server.ip, 2).unwrap_or_else(|e| panic!("iperf3 {} -> {}: {e}", client.ip, server.ip));
        println!("iperf3 {} -> {}: {:.2} Gbit/s", client.ip, server.ip, bps / 1e9);
        assert!(bps > 0.0);
    }
}

/// Every guest in `far` is in `rvsd`'s FDB behind vx42, from VTEP `vtep`.
fn assert_learned_behind_tunnel(rvsd: &Rvsd, far: &[Guest], vtep: &str) {
    let fdb = json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "br0"]));
    for g in far {
        let mac = g.mac();
        assert!(
            fdb.iter().any(|e| e.mac == mac && e.port == "vx42" && e.remote.as_deref() == Some(vtep)),
            "{mac} of {} not learned behind vx42 from {vtep}: {fdb:?}",
            g.ip
        );
    }
}

/// No static neighbour entry on any interface of `ns`.
fn assert_no_static_neighbours(ns: &Netns) {
    let perm = ns.ip(&["neigh", "show", "nud", "permanent"]);
    assert!(perm.trim().is_empty(), "static neighbour entries in {}: {perm}", ns.name);
}

#[test]
fn kernel_vxlan_peer_ping_and_iperf3_both_ways() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let t = KernelPeer::new(&V4);
    let (a, b) = (&t.a, &t.b);

    // First packets in both directions: a0 → b0 (rvs encapsulates first),
    // then b1 → a1 (the kernel does, toward a host rvs has not seen yet).
    assert!(first_ping(&a[0], &b[0]), "first ping rvs side -> kernel side\n{}", t.rvsd.log_text());
    assert!(first_ping(&b[1], &a[1]), "first ping kernel side -> rvs side\n{}", t.rvsd.log_text());
    for (x, y) in [(&a[0], &b[1]), (&a[1], &b[0]), (&b[0], &a[0]), (&b[1], &a[1]), (&a[0], &a[1])] {
        assert!(ping_settled(&x.ns, &y.ip, 3), "ping {} -> {}", x.ip, y.ip);
    }

    // TCP both ways, hosts with their default offloads.
    iperf3_both_ways(&a[0], &b[0], &b[1], &a[1]);
    // The kernel side's MACs were learned behind the tunnel, with their VTEP.
    assert_learned_behind_tunnel(&t.rvsd, b, V4.peer);
    let text = t.rvsd.ctl_ok(&["fdb", "show", "br0"]);
    assert!(text.contains(V4.peer), "fdb show does not name the remote VTEP:\n{text}");
    println!("{text}");
    // Nothing but the tunnel was configured on either host.
    assert_no_static_neighbours(&t.rvs_host);
    assert_no_static_neighbours(&t.peer_host);
    // The kernel VTEP's own table ("self") has one static entry: the
    // tunnel's default destination.
    let kfdb = t.peer_host.ok(&["bridge", "fdb", "show", "dev", "vx42"]);
    for line in kfdb.lines().filter(|l| l.contains(" self") && (l.contains("permanent") || l.contains("static"))) {
        assert!(line.starts_with("00:00:00:00:00:00 "), "static FDB entry on the kernel VTEP: {line}");
    }
    println!("{}", t.rvsd.ctl_ok(&["stats"]));
}

#[test]
fn uplink_keeps_the_hosts_own_traffic() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let t = KernelPeer::new(&V4);
    let shown = t.rvs_host.ip(&["-o", "link", "show", "ul"]);
    assert!(shown.split_whitespace().any(|w| w.starts_with("xdp")), "no XDP program on the uplink: {shown}");

    // The uplink's own address answers ping and TCP from the underlay...
    assert!(ping_settled(&t.peer_host, V4.rvs, 3), "ping the uplink's own address");
    {
        let _srv = Iperf3Server::start(&t.rvs_host, V4.rvs);
        let bps = iperf3(&t.peer_host, V4.rvs, 1).unwrap_or_else(|e| panic!("TCP to the uplink's address: {e}"));
        assert!(bps > 0.0);
    }
    // ... while the overlay runs over the same interface.
    assert!(first_ping(&t.a[0], &t.b[0]), "overlay ping");
    assert!(ping(&t.peer_host, V4.rvs, 3), "ping the uplink's own address with the overlay in use");
    let up = json::port_stat(&t.rvsd.ctl_json(&["stats"]), "ul");
    assert!(up.rx_packets > 0 && up.tx_packets > 0, "no VXLAN through the uplink: {up:?}");
    assert_eq!(up.drops.get("not_vxlan").copied().unwrap_or(0), 0, "host traffic reached rvs: {up:?}");
}

/// One VXLAN frame as parsed off the wire.
#[derive(Debug)]
struct Outer {
    src_port: u16,
    inner_dst_port: Option<u16>,
}

/// Checks the outer headers of a frame rvs sent toward `peer`, and
/// returns its UDP source port and the inner UDP destination port.
fn check_outer(frame: &[u8], rvs_mac: &str, peer_mac: &str) -> Outer {
    let p = SlicedPacket::from_ethernet(frame).expect("outer frame parses");
    let eth = match p.link {
        Some(etherparse::LinkSlice::Ethernet2(e)) => e,
        l => panic!("not Ethernet II: {l:?}"),
    };
    assert_eq!(format_mac(&eth.source()), rvs_mac, "outer source MAC is the uplink's");
    assert_eq!(format_mac(&eth.destination()), peer_mac, "outer destination MAC is the next hop's");
    let ip = match &p.net {
        Some(NetSlice::Ipv4(ip)) => ip.header(),
        n => panic!("not IPv4: {n:?}"),
    };
    assert!(ip.dont_fragment(), "DF not set");
    assert_eq!(ip.ttl(), 64, "outer TTL");
    assert_eq!(ip.source(), parse_ip(V4.rvs));
    assert_eq!(ip.destination(), parse_ip(V4.peer));
    let udp = match &p.transport {
        Some(TransportSlice::Udp(u)) => u,
        t => panic!("not UDP: {t:?}"),
    };
    assert_eq!(udp.destination_port(), 4789, "outer destination port");
    assert!((49152..=65535).contains(&udp.source_port()), "source port {} outside 49152-65535", udp.source_port());
    assert_eq!(udp.checksum(), 0, "UDP checksum over IPv4 is 0");
    let vx = udp.payload();
    assert!(vx.len() >= 8 + 14, "VXLAN payload cut short");
    assert_eq!(vx[0], 0x08, "VXLAN flags: I only");
    assert_eq!(u32::from_be_bytes([0, vx[4], vx[5], vx[6]]), 42, "VNI");
    let inner = SlicedPacket::from_ethernet(&vx[8..]).expect("inner frame parses");
    let inner_dst_port = match inner.transport {
        Some(TransportSlice::Udp(u)) => Some(u.destination_port()),
        _ => None,
    };
    Outer { src_port: udp.source_port(), inner_dst_port }
}

fn format_mac(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[test]
fn wire_format_dstport_vni_df_and_per_flow_source_ports() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let t = KernelPeer::new(&V4);
    assert!(first_ping(&t.a[0], &t.b[0]), "overlay ping");

    // Eight inner UDP flows (destination ports 10001..10008), two
    // datagrams each, read on the peer's underlay interface.
    const FLOWS: u16 = 8;
    let filter = format!("udp and src host {} and dst port 4789", V4.rvs);
    let cap = PcapCapture::start(&t.peer_host, "ul", 1000, &[&filter]);
    let (a_mac, b_mac) = (parse_mac(&t.a[0].mac()), parse_mac(&t.b[0].mac()));
    let flows: Vec<Vec<u8>> = (1..=FLOWS)
        .map(|i| {
            let b = PacketBuilder::ethernet2(a_mac, b_mac)
                .ipv4(parse_ip(&t.a[0].ip), parse_ip(&t.b[0].ip), 64)
                .udp(40000 + i, 10000 + i);
            let mut f = Vec::new();
            b.write(&mut f, b"flow").expect("build inner frame");
            f
        })
        .collect();
    send_raw(&t.a[0].ns, "eth0", &[flows.clone(), flows].concat());
    std::thread::sleep(Duration::from_millis(500));
    let frames = cap.finish(Duration::from_secs(2));

    let (rvs_mac, peer_mac) = (t.rvs_host.mac("ul"), t.peer_host.mac("ul"));
    let mut port_of: BTreeMap<u16, BTreeSet<u16>> = BTreeMap::new();
    for f in &frames {
        let o = check_outer(f, &rvs_mac, &peer_mac);
        if let Some(p) = o.inner_dst_port.filter(|p| (10001..=10000 + FLOWS).contains(p)) {
            port_of.entry(p).or_default().insert(o.src_port);
        }
    }
    println!("inner destination port -> outer source ports: {port_of:?}");
    assert_eq!(port_of.len(), usize::from(FLOWS), "not every flow was seen on the wire: {port_of:?}");
    for (flow, ports) in &port_of {
        assert_eq!(ports.len(), 1, "flow to port {flow} used several source ports: {ports:?}");
    }
    let distinct: BTreeSet<u16> = port_of.values().flatten().copied().collect();
    assert!(distinct.len() >= 4, "{FLOWS} flows share only {} source ports: {port_of:?}", distinct.len());
}

/// A VXLAN frame from the peer host to rvs's uplink: `flags`, `vni`, an
/// inner frame, outer IPv4 from `src` to `dst`, UDP port 4789.
fn vxlan_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: &str, dst: &str, flags: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut payload = vec![flags, 0, 0, 0];
    payload.extend_from_slice(&(vni << 8).to_be_bytes());
    payload.extend_from_slice(inner);
    let b = PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(parse_ip(src), parse_ip(dst), 64).udp(50000, 4789);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, &payload).expect("build VXLAN frame");
    out
}

/// An inner broadcast ARP request from a MAC that must never be learned.
const BOGUS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];

fn udp_no_ports(ns: &Netns) -> u64 {
    // /proc/net/snmp: a "Udp:" header line, then a "Udp:" value line.
    let snmp = ns.ok(&["cat", "/proc/net/snmp"]);
    let lines: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    let (names, values) = (lines[0].split_whitespace(), lines[1].split_whitespace());
    names.zip(values).find(|(n, _)| *n == "NoPorts").and_then(|(_, v)| v.parse().ok()).expect("Udp NoPorts")
}

#[test]
fn bad_vxlan_input_is_dropped_and_counted() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let t = KernelPeer::new(&V4);
    assert!(first_ping(&t.a[0], &t.b[0]), "overlay ping before");
    // A second address on the uplink that is not a VTEP.
    t.rvs_host.ip(&["addr", "add", "198.18.200.3/24", "dev", "ul"]);

    let (to, from) = (t.rvs_ul_mac(), parse_mac(&t.peer_host.mac("ul")));
    let inner = arp_request(BOGUS_MAC, [198, 18, 20, 99], [198, 18, 20, 1], None);
    let good = |flags, vni, inner: &[u8]| vxlan_frame(to, from, V4.peer, V4.rvs, flags, vni, inner);
    const N: u64 = 5;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("vxlan_unknown_vni", good(0x08, 43, &inner)),
        ("vxlan_bad_flags", good(0x0c, 42, &inner)),
        ("vxlan_bad_flags", good(0x00, 42, &inner)),
        ("vxlan_truncated", good(0x08, 42, &inner[..10])),
        ("vxlan_unknown_vtep", vxlan_frame(to, from, "198.18.200.9", V4.rvs, 0x08, 42, &inner)),
    ];
    let before = t.rvsd.ctl_json(&["stats"]);
    let no_ports_before = udp_no_ports(&t.rvs_host);
    for (_, f) in &cases {
        send_raw(&t.peer_host, "ul", &vec![f.clone(); N as usize]);
    }
    // To an address of the uplink that is no VTEP: the kernel's, not ours.
    let stray = vxlan_frame(to, from, V4.peer, "198.18.200.3", 0x08, 42, &inner);
    send_raw(&t.peer_host, "ul", &vec![stray; N as usize]);
    std::thread::sleep(Duration::from_millis(500));

    let after = t.rvsd.ctl_json(&["stats"]);
    let mut expect: BTreeMap<&str, u64> = BTreeMap::new();
    for (reason, _) in &cases {
        *expect.entry(reason).or_default() += N;
    }
    for (reason, n) in &expect {
        let got = json::drops_total(&after, reason) - json::drops_total(&before, reason);
        assert_eq!(got, *n, "drops counted as {reason}\n{}", t.rvsd.ctl_ok(&["stats"]));
    }
    // The stray frames were left to the kernel (no socket there: NoPorts).
    assert!(udp_no_ports(&t.rvs_host) >= no_ports_before + N, "the kernel did not get the stray VXLAN frames");
    let fdb = json::fdb_entries(&t.rvsd.ctl_json(&["fdb", "show", "br0"]));
    assert!(!fdb.iter().any(|e| e.mac == "02:00:00:00:00:99"), "a bad frame's source was learned: {fdb:?}");

    // An inner frame too large for the tunnel: dropped and counted, not
    // fragmented. a0's MTU goes up to 1500, the tunnel carries 1450.
    t.a[0].ns.ip(&["link", "set", "eth0", "mtu", "1500"]);
    let mtu_before = json::drops_total(&t.rvsd.ctl_json(&["stats"]), "tunnel_mtu");
    let big =
        t.a[0].ns.run(&["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", "-s", "1472", "-M", "do", &t.b[0].ip]);
    assert!(!big.status.success(), "a 1500-byte packet crossed a 1450-byte tunnel");
    let mtu_drops = json::drops_total(&t.rvsd.ctl_json(&["stats"]), "tunnel_mtu") - mtu_before;
    assert_eq!(mtu_drops, 3, "oversize inner frames counted as tunnel_mtu");
    let shown = t.rvsd.ctl_ok(&["show"]);
    assert!(shown.contains("inner MTU 1450"), "show does not tell the tunnel's inner MTU:\n{shown}");

    // And the overlay still works.
    assert!(ping(&t.a[0].ns, &t.b[0].ip, 3), "overlay ping after the bad input");
    assert!(t.rvsd.ctl(&["ping"]).status.success(), "rvsd stopped answering");
}

#[test]
fn ipv6_underlay() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let t = KernelPeer::new(&V6);
    let cap = PcapCapture::start(
        &t.peer_host,
        "ul",
        4,
        &["ip6", "and", "udp", "dst", "port", "4789", "and", "src", "host", V6.rvs],
    );
    assert!(first_ping(&t.a[0], &t.b[0]), "first ping over IPv6, rvs side first\n{}", t.rvsd.log_text());
    assert!(first_ping(&t.b[1], &t.a[1]), "first ping over IPv6, kernel side first");
    assert!(ping_settled(&t.a[1].ns, &t.b[0].ip, 3), "ping over IPv6");
    let frames = cap.finish(Duration::from_secs(2));
    assert!(!frames.is_empty(), "no IPv6 VXLAN frames from rvs on the wire");
    for f in &frames {
        let p = SlicedPacket::from_ethernet(f).expect("outer frame parses");
        let Some(NetSlice::Ipv6(ip)) = &p.net else { panic!("not IPv6: {:?}", p.net) };
        let Some(TransportSlice::Udp(udp)) = &p.transport else { panic!("not UDP") };
        assert_eq!(ip.header().hop_limit(), 64);
        let want = udp.to_header().calc_checksum_ipv6(&ip.header().to_header(), udp.payload()).unwrap();
        assert_ne!(udp.checksum(), 0, "UDP checksum over IPv6 must be set");
        assert_eq!(udp.checksum(), want, "UDP checksum over IPv6");
        assert!((49152..=65535).contains(&udp.source_port()));
    }
    let shown = t.rvsd.ctl_ok(&["show"]);
    assert!(shown.contains("inner MTU 1430"), "IPv6 tunnel's inner MTU:\n{shown}");
    let _srv = Iperf3Server::start(&t.b[0].ns, &t.b[0].ip);
    let bps = iperf3(&t.a[0].ns, &t.b[0].ip, 1).expect("iperf3 over the IPv6 underlay");
    println!("iperf3 over IPv6 underlay: {:.2} Gbit/s", bps / 1e9);
}

#[test]
fn rvs_to_rvs() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let h1 = Netns::new();
    let h2 = Netns::new();
    veth_between(&h1, "ul", &h2, "ul");
    h1.addr_add("ul", "198.18.200.1/24");
    h2.addr_add("ul", "198.18.200.2/24");
    let a = [Guest::new(&h1, "pa0", "198.18.20.1/24", MTU_V4), Guest::new(&h1, "pa1", "198.18.20.2/24", MTU_V4)];
    let b = [Guest::new(&h2, "pb0", "198.18.20.11/24", MTU_V4), Guest::new(&h2, "pb1", "198.18.20.12/24", MTU_V4)];
    let r1 = Rvsd::start_in(&h1);
    let r2 = Rvsd::start_in(&h2);
    configure_rvs(&r1, "198.18.200.1", "198.18.200.2", &["pa0", "pa1"]);
    configure_rvs(&r2, "198.18.200.2", "198.18.200.1", &["pb0", "pb1"]);

    assert!(first_ping(&a[0], &b[0]), "first ping h1 -> h2\n{}\n{}", r1.log_text(), r2.log_text());
    assert!(first_ping(&b[1], &a[1]), "first ping h2 -> h1");
    for (x, y) in [(&a[0], &b[1]), (&a[1], &b[0]), (&b[0], &a[0])] {
        assert!(ping_settled(&x.ns, &y.ip, 3), "ping {} -> {}", x.ip, y.ip);
    }
    iperf3_both_ways(&a[0], &b[0], &b[1], &a[1]);
    assert_learned_behind_tunnel(&r1, &b, "198.18.200.2");
    assert_learned_behind_tunnel(&r2, &a, "198.18.200.1");
    assert_no_static_neighbours(&h1);
    assert_no_static_neighbours(&h2);
}

/// Two pings from `from` to `to` both go unanswered (ping fails only when
/// no reply at all came).
fn unreachable(from: &Guest, to: &Guest) -> bool {
    !from.ns.run(&["ping", "-n", "-q", "-c", "2", "-i", "0.3", "-W", "1", &to.ip]).status.success()
}

#[test]
fn several_vnis_live_changes_and_restart() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (h, k) = (Netns::new(), Netns::new());
    veth_between(&h, "ul", &k, "ul");
    h.addr_add("ul", "198.18.200.1/24");
    k.addr_add("ul", "198.18.200.2/24");
    configure_kernel_vtep(&k, "br42", "vx42", "42", "198.18.200.2", "198.18.200.1");
    configure_kernel_vtep(&k, "br43", "vx43", "43", "198.18.200.2", "198.18.200.1");
    // One subnet over two VNIs: only the VNI keeps a0/b0 apart from a1/b1.
    let a = [Guest::new(&h, "pa0", "198.18.20.1/24", MTU_V4), Guest::new(&h, "pa1", "198.18.20.2/24", MTU_V4)];
    let b = [Guest::new(&k, "pb0", "198.18.20.11/24", MTU_V4), Guest::new(&k, "pb1", "198.18.20.12/24", MTU_V4)];
    k.ip(&["link", "set", "pb0", "master", "br42"]);
    k.ip(&["link", "set", "pb1", "master", "br43"]);
    let mut rvsd = Rvsd::start_in(&h);
    rvsd.ctl_ok(&["uplink", "add", "ul"]);
    for (br, vx, vni, port) in [("br0", "vx42", "42", "pa0"), ("br1", "vx43", "43", "pa1")] {
        rvsd.add_bridge(br);
        rvsd.add_port(
            br,
            vx,
            &["--type", "vxlan", "--vni", vni, "--local", "198.18.200.1", "--remote", "198.18.200.2"],
        );
        rvsd.add_port(br, port, &["--type", "afxdp"]);
    }
    assert!(first_ping(&a[0], &b[0]), "VNI 42");
    assert!(first_ping(&a[1], &b[1]), "VNI 43");
    assert!(unreachable(&a[0], &b[1]), "VNI 42 reached a host on VNI 43");

    // Remote changes take effect live.
    rvsd.ctl_ok(&["port", "remote", "add", "br0", "vx42", "198.18.200.9"]);
    assert!(ping_settled(&a[0].ns, &b[0].ip, 3), "with a second (absent) remote");
    let shown = rvsd.ctl_ok(&["show"]);
    assert!(shown.contains("198.18.200.9"), "show lacks the added remote:\n{shown}");
    rvsd.ctl_ok(&["port", "set", "br0", "vx42", "--no-remotes"]);
    assert!(unreachable(&a[0], &b[0]), "VNI 42 still carried with no remotes");
    assert!(ping(&a[1].ns, &b[1].ip, 2), "VNI 43 disturbed by a change to VNI 42");
    rvsd.ctl_ok(&["port", "set", "br0", "vx42", "--remote", "198.18.200.2"]);
    assert!(ping_settled(&a[0].ns, &b[0].ip, 3), "remote restored");

    // Deleting a tunnel port stops its VNI, and only that one.
    rvsd.ctl_ok(&["port", "del", "br1", "vx43"]);
    assert!(unreachable(&a[1], &b[1]), "VNI 43 carried after port del");
    assert!(ping(&a[0].ns, &b[0].ip, 2), "VNI 42 disturbed by deleting VNI 43");
    rvsd.add_port(
        "br1",
        "vx43",
        &["--type", "vxlan", "--vni", "43", "--local", "198.18.200.1", "--remote", "198.18.200.2"],
    );
    assert!(ping_settled(&a[1].ns, &b[1].ip, 3), "VNI 43 back");

    // The overlay configuration survives a restart.
    rvsd.restart();
    let shown = rvsd.ctl_ok(&["show"]);
    for what in ["VNI 42", "VNI 43", "198.18.200.2"] {
        assert!(shown.contains(what), "{what} lost in the restart:\n{shown}");
    }
    assert!(ping_settled(&a[0].ns, &b[0].ip, 3), "VNI 42 after restart");
    assert!(ping_settled(&a[1].ns, &b[1].ip, 3), "VNI 43 after restart");
}

/// Issue 14: a 9,000-byte underlay. rvs offers the inner MTU its buffers
/// carry (1,728: 1,792-byte buffers less 50 bytes of outer headers and the
/// inner Ethernet header), not 8,950; inside it pings cross, beyond it the
/// frame is dropped and counted (`tunnel_mtu`), and the daemon carries on.
#[test]
fn a_jumbo_uplink_offers_what_a_buffer_carries() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (rvs_host, peer_host) = (Netns::new(), Netns::new());
    veth_between(&rvs_host, "ul", &peer_host, "ul");
    for ns in [&rvs_host, &peer_host] {
        ns.ip(&["link", "set", "ul", "mtu", "9000"]);
    }
    rvs_host.addr_add("ul", "198.18.210.1/24");
    peer_host.addr_add("ul", "198.18.210.2/24");
    configure_kernel_vtep(&peer_host, "br0", "vx42", VNI, "198.18.210.2", "198.18.210.1");
    let a = Guest::new(&rvs_host, "pa0", "198.18.21.1/24", "9000");
    let b = Guest::new(&peer_host, "pb0", "198.18.21.2/24", "9000");
    rvs_host.ip(&["link", "set", "pa0", "mtu", "9000"]);
    peer_host.ip(&["link", "set", "pb0", "mtu", "9000"]);
    peer_host.ip(&["link", "set", "pb0", "master", "br0"]);
    peer_host.ip(&["link", "set", "vx42", "mtu", "8950"]);
    let rvsd = Rvsd::start_in(&rvs_host);
    configure_rvs(&rvsd, "198.18.210.1", "198.18.210.2", &["pa0"]);
    let show = rvsd.ctl_json(&["show"]);
    let port = &show["bridges"][0]["ports"].as_array().unwrap().iter().find(|p| p["config"]["name"] == "vx42").cloned();
    assert_eq!(port.as_ref().map(|p| p["status"]["inner_mtu"].clone()), Some(1728.into()), "{show}");
    assert!(rvsd.ctl_ok(&["show"]).contains("inner MTU 1728"));

    assert!(first_ping(&a, &b), "no ping across the tunnel\n{}", rvsd.log_text());
    // 1,700 bytes of payload: a 1,728-byte IP packet, the largest that fits.
    let fits = a.ns.run(&["ping", "-n", "-q", "-c", "3", "-W", "2", "-M", "do", "-s", "1700", &b.ip]);
    assert!(fits.status.success(), "1728-byte packets lost\n{}", rvsd.ctl_ok(&["stats"]));
    let before = json::drops_total(&rvsd.ctl_json(&["stats"]), "tunnel_mtu");
    let big = a.ns.run(&["ping", "-n", "-q", "-c", "3", "-W", "1", "-M", "do", "-s", "1701", &b.ip]);
    assert!(!big.status.success(), "a 1729-byte packet crossed");
    let after = json::drops_total(&rvsd.ctl_json(&["stats"]), "tunnel_mtu");
    assert_eq!(after - before, 3, "{}", rvsd.ctl_ok(&["stats"]));
    assert!(first_ping(&a, &b), "rvsd stopped forwarding\n{}", rvsd.log_text());
}

/// Issue 14: learned MACs behind a tunnel name their remote VTEP by its
/// place in the tunnel's list. Changing the list used to flush the FDB and
/// then publish the new list, so MACs learned in between kept indices into
/// the old list and pointed at the wrong VTEP until they sent again. Here
/// 50,000 sources stream in from the peer (198.18.200.2; each sends again
/// only after the others) while the list is reordered ten times; right
/// after each change no MAC behind the tunnel may point elsewhere.
#[test]
fn a_remote_list_change_leaves_no_mac_behind_the_wrong_vtep() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let t = KernelPeer::new(&V4);
    assert!(first_ping(&t.a[0], &t.b[0]), "overlay ping");
    // A second address of the peer: a remote that resolves.
    const OTHER: &str = "198.18.200.3";
    t.peer_host.addr_add("ul", &format!("{OTHER}/24"));
    let order = [[V4.peer, OTHER], [OTHER, V4.peer]];
    t.rvsd.ctl_ok(&["port", "set", "br0", "vx42", "--remote", order[0][0], "--remote", order[0][1]]);
    // A big table: flushing it takes a while, and the polling threads
    // learn meanwhile (the window the old order left open).
    t.rvsd.ctl_ok(&["bridge", "set", "br0", "--max-macs", "1048576"]);

    // Inner frames from 50,000 sources to b0 (behind the tunnel: dropped as
    // hairpins after learning), as the peer's VXLAN frames.
    let (rvs_mac, peer_mac) = (t.rvs_ul_mac(), parse_mac(&t.peer_host.mac("ul")));
    let b0 = parse_mac(&t.b[0].mac());
    let mut rng = Rng(0x5eed);
    let frames: Vec<Vec<u8>> = (0..50_000)
        .map(|_| {
            let mut src = rng.bytes(6);
            src[0] = (src[0] & 0xfe) | 0x02;
            let mut inner = b0.to_vec();
            inner.extend_from_slice(&src);
            inner.extend_from_slice(&[0x88, 0xb5]);
            inner.resize(60, 0x77);
            vxlan_frame(rvs_mac, peer_mac, V4.peer, V4.rvs, 0x08, 42, &inner)
        })
        .collect();
    let sources: BTreeSet<String> = frames.iter().map(|f| format_mac(&f[56..62].try_into().unwrap())).collect();
    let stream = blast_raw(&t.peer_host, "ul", frames, Duration::from_secs(8));
    std::thread::sleep(Duration::from_millis(500));
    let mut stale_total = 0;
    let mut learned_total = 0;
    for round in 1..=10 {
        let list = order[round % 2];
        t.rvsd.ctl_ok(&["port", "set", "br0", "vx42", "--remote", list[0], "--remote", list[1]]);
        let fdb = json::fdb_entries(&t.rvsd.ctl_json(&["fdb", "show", "br0"]));
        let ours: Vec<_> = fdb.iter().filter(|e| sources.contains(&e.mac)).collect();
        let stale = ours.iter().filter(|e| e.port != "vx42" || e.remote.as_deref() != Some(V4.peer)).count();
        println!("change {round} to {list:?}: {} sources learned, {stale} behind the wrong VTEP", ours.len());
        stale_total += stale;
        learned_total += ours.len();
    }
    let (sent, _) = stream.join().expect("stream thread");
    println!("{sent} frames streamed");
    assert!(learned_total > 0, "no source was learned: the stream did not reach rvs");
    assert_eq!(stale_total, 0, "MACs pointed at a VTEP they were not behind right after a change");
}

/// Issue 14: a tunnel whose local address is not on the uplink yet when
/// rvsd starts (the underlay configured late at boot) is shown down with
/// why, and comes up by itself once the address is there.
#[test]
fn a_tunnel_whose_address_comes_late_comes_up() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let mut t = KernelPeer::new(&V4);
    assert!(first_ping(&t.a[0], &t.b[0]), "overlay ping");
    t.rvsd.stop();
    let addr = format!("{}/{}", V4.rvs, V4.prefix);
    t.rvs_host.ip(&["addr", "del", &addr, "dev", "ul"]);
    t.rvsd.restart();
    let state = |rvsd: &Rvsd| {
        let show = rvsd.ctl_json(&["show"]);
        show["bridges"][0]["ports"][0]["status"]["state"].as_str().unwrap_or("missing").to_string()
    };
    let s = state(&t.rvsd);
    assert_eq!(s, format!("down: local address {} is not configured on any uplink (add it to the underlay interface, and the interface with `rvsctl uplink add IFACE`)", V4.rvs));
    t.rvs_host.addr_add("ul", &addr);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while state(&t.rvsd) != "up" && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(state(&t.rvsd), "up", "the tunnel did not come up:\n{}", t.rvsd.log_text());
    assert!(first_ping(&t.a[0], &t.b[0]), "overlay ping once the address is back");
}
