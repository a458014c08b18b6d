//! Issue 5: `rvsctl trace` says what the switch does with a frame, and the
//! switch then does exactly that with the real frame: a learned unicast, an
//! unknown unicast (flooded), a VLAN-filtered drop, a frame flooded into a
//! VXLAN tunnel (outer headers and UDP source port checked on the wire),
//! and a VXLAN frame traced on the uplink, decapsulated and delivered.
//! Addresses: 198.18.60.0/24 (hosts), 198.18.61.0/24 (underlay).
//!
//! Frames are UDP to port 39999 from made-up MACs, so the namespaces' own
//! traffic never matches the tcpdump filters.

mod common;

use common::*;
use rvs_dataplane::wire::ip::PROTO_UDP;
use rvs_dataplane::wire::{self, EthernetRepr, IpRepr, MacAddr, UdpRepr};
use std::time::{Duration, Instant};

const A: &str = "02:00:00:60:00:0a";
const B: &str = "02:00:00:60:00:0b";
const C: &str = "02:00:00:60:00:0c";
const UNKNOWN: &str = "02:00:00:60:00:99";

fn udp(src: &str, dst: &str, vlan: Option<u16>) -> String {
    let tag = vlan.map(|v| format!("in_vlan={v},")).unwrap_or_default();
    format!("{tag}dl_src={src},dl_dst={dst},nw_src=198.18.60.10,nw_dst=198.18.60.11,tp_src=1234,tp_dst=39999")
}

fn trace(rvsd: &Rvsd, port: &str, frame: &str) -> serde_json::Value {
    rvsd.ctl_json(&["trace", "brt", port, frame])
}

fn ports(v: &serde_json::Value) -> Vec<String> {
    let mut p: Vec<String> = json::trace_outputs(v).into_iter().map(|o| o.port).collect();
    p.sort();
    p
}

/// Polls `f` until it returns true or 10 s pass.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn trace_matches_what_the_switch_does() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let h1 = Host::on_veth("198.18.60.1/24");
    let h2 = Host::on_veth("198.18.60.2/24");
    let h3 = Host::on_veth("198.18.60.3/24");
    let h4 = Host::on_veth("198.18.60.4/24");
    let under = Netns::new();
    let up = Veth::new(&under, &["198.18.61.2/24"]);
    run_ok(&["ip", "addr", "add", "198.18.61.1/24", "dev", &up.host]);
    let rvsd = Rvsd::start();
    rvsd.add_bridge("brt");
    for h in [&h1, &h2, &h3] {
        rvsd.add_host("brt", h, &["--vlan", "10"]);
    }
    rvsd.add_host("brt", &h4, &["--vlan", "20"]);
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };

    // Learned unicast: B is learned behind h2, then A -> B goes to h2 only.
    send_raw(&h2.ns, &h2.dev, &[json::trace_frame(&trace(&rvsd, h2.port(), &udp(B, "ff:ff:ff:ff:ff:ff", None)))]);
    wait_for("B to be learned", || {
        json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "brt"])).iter().any(|e| e.mac == B && e.port == h2.port())
    });
    let t = trace(&rvsd, h1.port(), &udp(A, B, None));
    assert_eq!(json::trace_decision(&t), "output", "{t}");
    assert_eq!(ports(&t), vec![h2.port().to_string()], "{t}");
    let fdb = json::trace_step(&t, "fdb").unwrap_or_default();
    assert!(fdb.starts_with("hit") && fdb.contains(h2.port()), "{t}");
    let at2 = Tcpdump::start(Some(&h2.ns), &h2.dev, 1, &["udp", "dst", "port", "39999"]);
    let at3 = Tcpdump::start(Some(&h3.ns), &h3.dev, 1, &["udp", "dst", "port", "39999"]);
    send_raw(&h1.ns, &h1.dev, &[json::trace_frame(&t)]);
    let seen2 = at2.finish(Duration::from_secs(5));
    assert!(
        seen2.iter().any(|l| l.starts_with(&format!("{A} > {B}")) || l.contains(&format!("{A} > {B}"))),
        "{seen2:?}"
    );
    // h3 must not have it: a broadcast sent after it on the same path is
    // the first such frame h3 sees.
    send_raw(&h1.ns, &h1.dev, &[json::trace_frame(&trace(&rvsd, h1.port(), &udp(A, "ff:ff:ff:ff:ff:ff", None)))]);
    let seen3 = at3.finish(Duration::from_secs(5));
    assert_eq!(seen3.len(), 1, "{seen3:?}");
    assert!(seen3[0].contains("> ff:ff:ff:ff:ff:ff"), "the unicast to B also reached h3: {seen3:?}");

    // Unknown unicast: flooded to the other ports of VLAN 10, and it
    // arrives at each of them.
    let t = trace(&rvsd, h1.port(), &udp(A, UNKNOWN, None));
    assert_eq!(json::trace_decision(&t), "flood", "{t}");
    assert_eq!(ports(&t), sorted(vec![h2.port().to_string(), h3.port().to_string()]), "{t}");
    assert!(json::trace_step(&t, "fdb").unwrap_or_default().starts_with("miss"), "{t}");
    let caps: Vec<Tcpdump> =
        [&h2, &h3].iter().map(|h| Tcpdump::start(Some(&h.ns), &h.dev, 1, &["ether", "dst", UNKNOWN])).collect();
    send_raw(&h1.ns, &h1.dev, &[json::trace_frame(&t)]);
    for c in caps {
        let seen = c.finish(Duration::from_secs(5));
        assert!(seen.iter().any(|l| l.contains(&format!("> {UNKNOWN}"))), "flood did not arrive: {seen:?}");
    }

    // A tag for VLAN 20 on an access port of VLAN 10: dropped and counted.
    let t = trace(&rvsd, h1.port(), &udp(A, B, Some(20)));
    assert_eq!(json::trace_decision(&t), "drop:vlan_filtered", "{t}");
    assert!(json::trace_outputs(&t).is_empty(), "{t}");
    assert!(json::trace_step(&t, "vlan").unwrap_or_default().contains("an access port of VLAN 10"), "{t}");
    let filtered = || json::port_stat(&rvsd.ctl_json(&["stats"]), h1.port()).drops.get("vlan_filtered").copied();
    let before = filtered().unwrap_or(0);
    send_raw(&h1.ns, &h1.dev, &[json::trace_frame(&t)]);
    wait_for("the vlan_filtered drop to be counted", || filtered().unwrap_or(0) == before + 1);

    // VXLAN: a flood in VLAN 10 also goes into the tunnel; the outer
    // headers and UDP source port on the wire are the traced ones.
    rvsd.ctl_ok(&["uplink", "add", &up.host]);
    rvsd.add_port(
        "brt",
        "vxt",
        &["--type", "vxlan", "--vni", "6001", "--local", "198.18.61.1", "--remote", "198.18.61.2", "--vlan", "10"],
    );
    let frame = udp(A, UNKNOWN, None);
    let mut t = trace(&rvsd, h1.port(), &frame);
    wait_for("the next hop toward the remote VTEP", || {
        t = trace(&rvsd, h1.port(), &frame);
        json::trace_outputs(&t).iter().any(|o| o.port == "vxt" && o.dropped.is_none())
    });
    assert_eq!(json::trace_decision(&t), "flood", "{t}");
    assert_eq!(ports(&t), sorted(vec![h2.port().to_string(), h3.port().to_string(), "vxt".to_string()]), "{t}");
    let vx = json::trace_outputs(&t).into_iter().find(|o| o.port == "vxt").unwrap();
    let (remote, src_mac, next_hop, sport, vni) = vx.vxlan.expect("vxlan details");
    assert_eq!((remote.as_str(), vni), ("198.18.61.2", 6001), "{t}");
    assert_eq!(src_mac, run_ok(&["cat", &format!("/sys/class/net/{}/address", up.host)]).trim(), "{t}");
    assert_eq!(next_hop, under.mac(&up.inner), "{t}");
    // The inner UDP destination port sits 52 bytes into the outer UDP header.
    let wire =
        Tcpdump::start(Some(&under), &up.inner, 1, &["udp", "dst", "port", "4789", "and", "udp[52:2]", "=", "39999"]);
    send_raw(&h1.ns, &h1.dev, &[json::trace_frame(&t)]);
    let seen = wire.finish(Duration::from_secs(5));
    let line = seen.first().cloned().unwrap_or_default();
    assert!(line.contains(&format!("{src_mac} > {next_hop}")), "outer MACs differ from the trace: {seen:?}");
    assert!(
        line.contains(&format!("198.18.61.1.{sport} > 198.18.61.2.4789")),
        "outer addresses or UDP source port {sport} differ from the trace: {seen:?}"
    );
    assert!(line.contains("vni 6001"), "{seen:?}");

    // And back: a VXLAN frame from the remote VTEP, traced on the uplink,
    // is decapsulated and goes to B's port, where the real one arrives.
    let inner = rvs_proto::framedesc::parse(&udp(C, B, None)).unwrap();
    let outer =
        vxlan_frame(parse_mac(&src_mac), parse_mac(&next_hop), ([198, 18, 61, 2], [198, 18, 61, 1]), 6001, &inner);
    let hex: String = outer.iter().map(|b| format!("{b:02x}")).collect();
    let t = rvsd.ctl_json(&["trace", "brt", &up.host, &format!("hex={hex}")]);
    assert!(json::trace_step(&t, "decap").unwrap_or_default().contains("from 198.18.61.2 to tunnel port vxt"), "{t}");
    assert_eq!(json::trace_decision(&t), "output", "{t}");
    assert_eq!(ports(&t), vec![h2.port().to_string()], "{t}");
    let at2 = Tcpdump::start(Some(&h2.ns), &h2.dev, 1, &["udp", "dst", "port", "39999"]);
    send_raw(&under, &up.inner, &[outer]);
    let seen = at2.finish(Duration::from_secs(5));
    assert!(seen.iter().any(|l| l.contains(&format!("{C} > {B}"))), "decapsulated frame did not reach B: {seen:?}");
}

/// An IPv4 VXLAN frame (`macs` = (dst, src), `ips` = (src, dst)) to port
/// 4789 carrying `inner`.
fn vxlan_frame(dst: [u8; 6], src: [u8; 6], ips: ([u8; 4], [u8; 4]), vni: u32, inner: &[u8]) -> Vec<u8> {
    let eth = EthernetRepr { dst: MacAddr(dst), src: MacAddr(src), tag: None, ethertype: 0 };
    let ip = IpRepr::new(ips.0.into(), ips.1.into(), PROTO_UDP, 64, 0).expect("one family");
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&(vni << 8).to_be_bytes());
    payload.extend_from_slice(inner);
    wire::udp_frame(eth, ip, UdpRepr { src_port: 50000, dst_port: 4789, payload_len: 0 }, &payload)
}

#[test]
fn trace_refuses_bad_input() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let h1 = Host::on_veth("198.18.60.21/24");
    let rvsd = Rvsd::start();
    rvsd.add_bridge("brt");
    rvsd.add_host("brt", &h1, &[]);
    for (args, want) in [
        (vec!["trace", "brt", h1.port(), "dl_src=02:00:00:00:00:01"], "dl_dst=MAC is missing"),
        (vec!["trace", "brt", h1.port(), "zz"], "not a hex digit"),
        (vec!["trace", "nobr", h1.port(), &udp(A, B, None)], "unknown bridge"),
        (vec!["trace", "brt", "nope0", &udp(A, B, None)], "unknown port"),
    ] {
        let e = one_line_error(&format!("{args:?}"), &rvsd.ctl(&args));
        assert!(e.contains(want), "{args:?}: {e}");
    }
    // A runt is traced, not refused: the pipeline drops it.
    let t = rvsd.ctl_json(&["trace", "brt", h1.port(), "hex=0102030405"]);
    assert_eq!(json::trace_decision(&t), "drop:runt", "{t}");
    let text = rvsd.ctl_ok(&["trace", "brt", h1.port(), &udp(A, B, None)]);
    assert!(text.contains("decision") && text.contains("flood"), "{text}");
}
