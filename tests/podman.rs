//! Issue 15: podman, the real CNI client, runs containers on rvs networks:
//! `podman run --network NET` with NET a conflist whose first plugin is
//! rvs-cni, against a real rvsd. No images: a busybox + iperf3 root file
//! system (see common::podman).

mod common;

use common::podman::{Podman, TOOLS};
use common::*;
use serde_json::json;

fn require() -> bool {
    require_root() && rvs_dataplane::testing::require_root("podman test", TOOLS)
}

/// The host-local IPAM of a network on `subnet` (a /24 in 198.18.0.0/15)
/// handing out `.first` to `.last`.
fn ipam(pm: &Podman, subnet: &str, first: u8, last: u8) -> serde_json::Value {
    let base = subnet.trim_end_matches(".0/24");
    json!({
        "type": "host-local",
        "ranges": [[{"subnet": subnet, "gateway": format!("{base}.1"),
                     "rangeStart": format!("{base}.{first}"), "rangeEnd": format!("{base}.{last}")}]],
        "dataDir": pm.ipam_dir(),
    })
}

/// The host's interfaces whose names our plugin gives veth host ends.
fn rvs_links(host: &Netns) -> Vec<String> {
    let out = host.ip(&["-o", "link", "show"]);
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n.starts_with("rvs") && n.len() == 15 && n[3..].chars().all(|c| c.is_ascii_hexdigit()))
        .collect()
}

/// The containers' ports (not the bridge's gateway port).
fn rvs_ports(rvsd: &Rvsd) -> Vec<String> {
    json::show_ports(&rvsd.ctl_json(&["show"]))
        .into_iter()
        .filter(|(_, p, kind)| !p.is_empty() && kind != "internal")
        .map(|(_, p, _)| p)
        .collect()
}

/// Two containers on one rvs network reach each other and the bridge's
/// gateway, iperf3 runs between them, and `podman rm -f` leaves no port,
/// veth, tap or address: once with AF_XDP ports (veth pairs), once with
/// taps inside the containers.
#[test]
fn two_containers_on_an_rvs_network() {
    if !require() {
        return;
    }
    let _serial = serial();
    let host = Netns::new();
    let rvsd = Rvsd::start_in(&host);
    // Dropped first: its containers go while rvsd still answers their DEL.
    let pm = Podman::new(&host);
    // The bridge's gateway holds the address host-local gives as each
    // subnet's gateway.
    rvsd.ctl_ok(&["bridge", "add", "br0", "--gateway", "198.18.60.1/24", "--gateway", "198.18.61.1/24"]);
    let before = rvs_links(&host);
    for (port_type, subnet) in [("afxdp", "198.18.60.0/24"), ("tap", "198.18.61.0/24")] {
        let net = format!("rvs-{port_type}");
        pm.network(
            &net,
            json!({"bridge": "br0", "socket": rvsd.socket, "portType": port_type, "ipam": ipam(&pm, subnet, 10, 50)}),
        );
        let (c1, c2) = (format!("c1-{}", tag()), format!("c2-{}", tag()));
        pm.start(&c1, &net);
        pm.start(&c2, &net);
        let (ip1, ip2) = (pm.ip(&c1), pm.ip(&c2));
        // The chain ran: the firewall plugin let the addresses through.
        let rules = host.ok(&["iptables-save", "-t", "filter"]);
        assert!(rules.contains(&format!("-d {ip1}/32")) && rules.contains(&format!("-d {ip2}/32")), "{rules}");
        let ports = rvs_ports(&rvsd);
        assert_eq!(ports.len(), 2, "{port_type}: {ports:?}");
        let shown = rvsd.ctl_json(&["show"]);
        for p in shown["bridges"][0]["ports"].as_array().unwrap().iter().filter(|p| p["config"]["type"] != "internal") {
            assert_eq!(p["config"]["type"], port_type);
            assert_eq!(p["config"]["owner"]["network"], net.as_str());
        }
        let eth0 = pm.exec(&c1, &["cat", "/sys/class/net/eth0/type", "/sys/class/net/eth0/tun_flags"]);
        assert_eq!(eth0.status.success(), port_type == "tap", "only a tap has tun_flags: {eth0:?}");

        assert!(pm.ping(&c1, &ip2, 3), "{port_type}: {c1} cannot ping {c2}\n{}", rvsd.log_text());
        assert!(pm.ping(&c2, &ip1, 3), "{port_type}: {c2} cannot ping {c1}");
        let gateway = format!("{}.1", subnet.trim_end_matches(".0/24"));
        for c in [&c1, &c2] {
            assert!(pm.ping(c, &gateway, 2), "{port_type}: {c} cannot ping the gateway {gateway}");
        }
        let server = pm.cmd(&["exec", &c2, "iperf3", "-s", "-1", "-B", &ip2]).spawn().expect("iperf3 -s");
        let mut server = ChildGuard(server);
        let mut done = false;
        for _ in 0..50 {
            let o = pm.exec(&c1, &["iperf3", "-c", &ip2, "-t", "2", "-J"]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            // With -J a refused connection (the server not listening yet)
            // may still exit 0: the error is in the JSON.
            if o.status.success() && v.get("error").is_none() {
                let bytes = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
                assert!(bytes > 0, "{port_type}: iperf3 moved nothing: {v}");
                done = true;
                break;
            }
            // The server may not listen yet.
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        assert!(done, "{port_type}: iperf3 never completed");
        let _ = server.0.wait();

        let netns = [pm.netns(&c1), pm.netns(&c2)];
        pm.ok(&["rm", "-f", "-t", "0", &c1, &c2]);
        assert!(rvs_ports(&rvsd).is_empty(), "{port_type}: ports left: {:?}", rvs_ports(&rvsd));
        assert_eq!(rvs_links(&host), before, "{port_type}: veths left");
        let rules = host.ok(&["iptables-save", "-t", "filter"]);
        assert!(!rules.contains(&format!("{ip1}/32")), "{port_type}: firewall rules left: {rules}");
        assert!(
            cni::reserved(&pm.ipam_dir(), &net).is_empty(),
            "{port_type}: addresses left: {:?}",
            cni::reserved(&pm.ipam_dir(), &net)
        );
        for ns in netns {
            assert!(!std::path::Path::new(&ns).exists(), "{port_type}: namespace {ns} left");
        }
    }
}

/// Networks on one bridge in different VLANs (and one subnet, so that only
/// the VLAN keeps them apart): containers of one VLAN reach each other and
/// not those of the other.
#[test]
fn vlans_keep_container_networks_apart() {
    if !require() {
        return;
    }
    let _serial = serial();
    let host = Netns::new();
    let rvsd = Rvsd::start_in(&host);
    // Dropped first: its containers go while rvsd still answers their DEL.
    let pm = Podman::new(&host);
    rvsd.add_bridge("br0");
    let subnet = "198.18.62.0/24";
    pm.network(
        "rvs-v10",
        json!({"bridge": "br0", "socket": rvsd.socket, "vlan": 10, "ipam": ipam(&pm, subnet, 10, 19)}),
    );
    pm.network(
        "rvs-v20",
        json!({"bridge": "br0", "socket": rvsd.socket, "vlan": 20, "ipam": ipam(&pm, subnet, 20, 29)}),
    );
    let t = tag();
    let (a1, a2, b1) = (format!("a1-{t}"), format!("a2-{t}"), format!("b1-{t}"));
    pm.start(&a1, "rvs-v10");
    pm.start(&a2, "rvs-v10");
    pm.start(&b1, "rvs-v20");
    let vlans: Vec<String> = rvsd.ctl_json(&["show"])["bridges"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["config"]["vlan"]["access"]["vlan"].to_string())
        .collect();
    assert_eq!(vlans, ["10", "10", "20"]);
    let (ip_a2, ip_b1) = (pm.ip(&a2), pm.ip(&b1));
    assert!(pm.ping(&a1, &ip_a2, 2), "same VLAN: {a1} cannot ping {a2}");
    // The other VLAN: not a single answer.
    let o = pm.exec(&a1, &["ping", "-c", "3", "-W", "1", &ip_b1]);
    assert!(!o.status.success(), "{a1} (VLAN 10) reached {b1} (VLAN 20): {}", String::from_utf8_lossy(&o.stdout));
    let o = pm.exec(&b1, &["ping", "-c", "3", "-W", "1", &ip_a2]);
    assert!(!o.status.success(), "{b1} (VLAN 20) reached {a2} (VLAN 10)");
    pm.ok(&["rm", "-f", "-t", "0", &a1, &a2, &b1]);
    assert!(rvs_ports(&rvsd).is_empty());
}
