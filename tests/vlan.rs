//! Issue 2, test 2: VLAN isolation between access ports, and a trunk port
//! that reaches both VLANs with 802.1Q tags.
//!
//! This kernel has neither 802.1Q devices nor a VLAN-filtering bridge, so
//! the trunk host speaks tagged by hand: it sends tagged ARP requests with
//! an AF_PACKET socket and tcpdump on its interface shows the tagged
//! replies that rvs sends it.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn access_ports_isolate_and_trunk_carries_tags() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a10 = Host::on_veth("198.18.10.1/24");
    let b10 = Host::on_veth("198.18.10.2/24");
    // c20 shares the IP subnet of VLAN 10 (so a10 tries to reach it) and
    // has an address in VLAN 20's subnet for the trunk.
    let c20 = Host::on_veth("198.18.10.3/24");
    c20.ns.ip(&["addr", "add", "198.18.20.3/24", "dev", &c20.dev]);
    let tns = Netns::new();
    let trunk = Veth::new(&tns, &[]);
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    rvsd.add_host("br0", &a10, &["--vlan", "10"]);
    rvsd.add_host("br0", &b10, &["--vlan", "10"]);
    rvsd.add_host("br0", &c20, &["--vlan", "20"]);
    rvsd.add_port("br0", &trunk.host, &["--type", "afxdp", "--trunk", "10,20"]);

    assert!(ping_settled(&a10.ns, &b10.ip, 3), "same VLAN");
    assert!(ping_settled(&b10.ns, &a10.ip, 3), "same VLAN");
    assert!(!ping_within(&a10.ns, &c20.ip, Duration::from_secs(2)), "VLAN 10 reached VLAN 20");
    assert!(!ping_within(&c20.ns, &a10.ip, Duration::from_secs(2)), "VLAN 20 reached VLAN 10");

    // The trunk host asks, tagged, for a host in each VLAN; the replies
    // come back tagged with the right VLAN.
    // Captures match only frames to the trunk host's MAC: the access
    // hosts' own ARP retries also flood to the trunk and must not use up
    // the capture's count.
    const TMAC: &str = "02:00:00:00:99:04";
    let tmac = parse_mac(TMAC);
    let cap = Tcpdump::start(Some(&tns), &trunk.inner, 2, &["ether", "dst", TMAC, "and", "vlan", "and", "arp"]);
    send_raw(
        &tns,
        &trunk.inner,
        &[
            arp_request(tmac, parse_ip("198.18.10.4"), parse_ip(&a10.ip), Some(10)),
            arp_request(tmac, parse_ip("198.18.20.4"), parse_ip("198.18.20.3"), Some(20)),
        ],
    );
    let lines = cap.finish(Duration::from_secs(3));
    let has = |vlan: &str, ip: &str| lines.iter().any(|l| l.contains(vlan) && l.contains(&format!("Reply {ip} is-at")));
    assert!(has("vlan 10,", &a10.ip), "no tagged reply from VLAN 10: {lines:?}");
    assert!(has("vlan 20,", "198.18.20.3"), "no tagged reply from VLAN 20: {lines:?}");

    // Asked in the wrong VLAN, nobody answers; a VLAN the trunk does not
    // carry is filtered and counted.
    let before = json::drops_total(&rvsd.ctl_json(&["stats"]), "vlan_filtered");
    let cap = Tcpdump::start(Some(&tns), &trunk.inner, 1, &["ether", "dst", TMAC]);
    send_raw(
        &tns,
        &trunk.inner,
        &[
            arp_request(tmac, parse_ip("198.18.10.4"), parse_ip(&a10.ip), Some(20)),
            arp_request(tmac, parse_ip("198.18.10.4"), parse_ip(&a10.ip), Some(30)),
        ],
    );
    let lines = cap.finish(Duration::from_secs(2));
    assert!(lines.is_empty(), "answered across VLANs: {lines:?}");
    let after = json::drops_total(&rvsd.ctl_json(&["stats"]), "vlan_filtered");
    assert!(after > before, "VLAN 30 on the trunk not counted as vlan_filtered");
}
