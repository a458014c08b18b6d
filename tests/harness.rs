//! Tests of the test harness itself, with a Linux bridge standing in for
//! rvsd: namespaces, veths, ping, iperf3, tcpdump, the raw sender and
//! cleanup. Plus the JSON readers on the shapes rvsctl is expected to print.

mod common;

use common::json;
use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn json_readers_accept_expected_shapes() {
    let fdb = json!([
        {"mac": "02:00:00:00:00:01", "vlan": 1, "port": "a", "is_static": false, "age_secs": 3},
        {"mac": "02:00:00:00:00:02", "vlan": 10, "port": "b", "is_static": true, "age_secs": 0}
    ]);
    let e = json::fdb_entries(&fdb);
    assert_eq!(e.len(), 2);
    assert_eq!(e[1].vlan, 10);
    assert_eq!(json::fdb_entries(&json!({"entries": fdb})), e);

    let stats = json!([
        {"name": "a", "bridge": "br0", "rx_packets": 5, "rx_bytes": 300, "tx_packets": 7,
         "tx_bytes": 400, "learn_refused": 0, "drops": [["runt", 2], ["bad_vlan", 1]]},
        {"name": "b", "bridge": "br0", "rx_packets": 1, "rx_bytes": 60, "tx_packets": 0,
         "tx_bytes": 0, "learn_refused": 0, "drops": {"bad_vlan": 4}}
    ]);
    assert_eq!(json::port_stat(&stats, "a").tx_packets, 7);
    assert_eq!(json::drops_total(&stats, "bad_vlan"), 5);
    assert_eq!(json::drops_total(&json!({"ports": stats}), "runt"), 2);

    let show = json!({"bridges": [
        {"name": "br0", "ports": [{"name": "a", "type": "afxdp"}, {"name": "t", "type": "tap"}]},
        {"name": "br1", "ports": []}
    ]});
    let s = json::show_ports(&show);
    assert!(s.contains(&("br0".into(), "t".into(), "tap".into())));
    assert!(s.contains(&("br1".into(), "".into(), "".into())));
    let real = json!({"bridges": [{"name": "br0", "aging_secs": 300, "max_macs": 8192,
        "static_macs": [], "ports": [{
            "config": {"name": "a", "type": "afxdp", "vlan": {"access": {"vlan": 1}},
                       "queues": null, "xdp_mode": "auto", "netns": null},
            "status": {"name": "a", "bridge": "br0", "kind": "afxdp", "state": "up",
                       "xdp_mode": "native", "queues": [[0, 1]]}}]}],
        "threads": []});
    assert!(json::show_ports(&real).contains(&("br0".into(), "a".into(), "afxdp".into())));
    let keyed = json!({"bridges": {"br0": {"ports": {"a": {"type": "afxdp"}}}}});
    assert!(json::show_ports(&keyed).contains(&("br0".into(), "a".into(), "afxdp".into())));

    assert!(json::is_error_reply(r#"{"ok":false,"error":"bad request"}"#));
    assert!(!json::is_error_reply(r#"{"ok":true,"result":[]}"#));
    assert!(!json::is_error_reply("garbage"));
}

#[test]
fn tags_are_short_and_unique() {
    let a = tag();
    let b = tag();
    assert_ne!(a, b);
    // Interface names: "rv" + tag + one letter, plus ".NNNN" for VLANs.
    assert!(2 + a.len() + 1 + 5 <= 15, "{a}");
}

#[test]
fn harness_with_linux_bridge() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (ns_names, devs);
    {
        let a = Host::on_veth("198.18.0.1/24");
        let b = Host::on_veth("198.18.0.2/24");
        let t = Host::on_veth("198.18.0.3/24");
        let br = LinuxBridge::new(&[a.port(), b.port(), t.port()]);
        ns_names = vec![a.ns.name.clone(), b.ns.name.clone(), t.ns.name.clone()];
        devs = vec![a.port().to_string(), t.port().to_string(), br.name.clone()];

        for (x, y) in [(&a, &b), (&b, &a), (&a, &t), (&t, &b)] {
            assert!(ping_settled(&x.ns, &y.ip, 3), "{} -> {}", x.ip, y.ip);
        }
        assert!(!ping(&a.ns, "198.18.0.99", 1), "ping of nobody succeeded");
        assert!(a.mac().len() == 17 && a.mac() != b.mac());

        // iperf3 and its JSON.
        let _srv = Iperf3Server::start(&b.ns, &b.ip);
        let bps = iperf3(&a.ns, &b.ip, 1).expect("iperf3");
        println!("linux bridge, iperf3 a -> b: {:.2} Gbit/s", bps / 1e9);
        assert!(bps > 50e6);

        // Hand-made tagged frames cross the (VLAN-unaware) bridge tagged,
        // and tcpdump shows the tag.
        let cap = Tcpdump::start(Some(&t.ns), &t.dev, 1, &["vlan", "and", "arp"]);
        let req =
            arp_request(parse_mac("02:00:00:00:0a:04"), parse_ip("198.18.10.4"), parse_ip("198.18.10.1"), Some(10));
        send_raw(&a.ns, &a.dev, &[req]);
        let lines = cap.finish(Duration::from_secs(3));
        assert!(lines.iter().any(|l| l.contains("vlan 10") && l.contains("198.18.10.1")), "no tagged frame: {lines:?}");

        // The raw sender: odd frames reach the wire as sent.
        // (Captured on the sending side: a receiving kernel drops a cut
        // VLAN tag before tcpdump sees it; XDP sees it first.)
        let cap = Tcpdump::start_dir(Some(&a.ns), &a.dev, "out", 3, &["ether", "src", "01:00:5e:00:00:01"]);
        let mut mcast_src = vec![0xff; 6];
        mcast_src.extend_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1, 0x88, 0xb5]);
        mcast_src.resize(60, 0);
        let mut bad_vlan = mcast_src.clone();
        bad_vlan.truncate(16);
        bad_vlan[12..14].copy_from_slice(&[0x81, 0x00]);
        send_raw(&a.ns, &a.dev, &[mcast_src.clone(), bad_vlan, mcast_src]);
        let lines: Vec<String> =
            cap.finish(Duration::from_secs(3)).into_iter().filter(|l| !l.starts_with('\t')).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("[|vlan]")), "{lines:?}");
    }
    // Everything is gone.
    let nss = run_ok(&["ip", "netns", "list"]);
    for n in &ns_names {
        assert!(!nss.contains(n.as_str()), "namespace {n} left");
    }
    for d in &devs {
        assert!(!run(&["ip", "link", "show", "dev", d]).status.success(), "{d} left");
    }
}
