//! Issue 6, test 6: the interface under an AF_XDP port goes away and comes
//! back. The port goes down (counted) while the others keep switching, and
//! re-attaches by itself when an interface of that name returns.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The `status.state` of port `name` in `rvsctl show --json`.
fn state_of(show: &Value, name: &str) -> String {
    show["bridges"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b["ports"].as_array().into_iter().flatten())
        .find(|p| p["config"]["name"] == name)
        .map(|p| p["status"]["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(5), "{what}: not within 5 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("{what}: after {:?}", t.elapsed());
}

#[test]
fn port_goes_down_with_its_interface_and_comes_back() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.12.1/24");
    let c = Host::on_veth("198.18.12.3/24");
    // B's interface is recreated later under the same names and MAC.
    let bns = Netns::new();
    let b = Veth::new(&bns, &["198.18.12.2/24"]);
    let bmac = bns.mac(&b.inner);
    let mut rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    rvsd.add_host("br0", &a, &[]);
    rvsd.add_host("br0", &c, &[]);
    rvsd.add_port("br0", &b.host, &["--type", "afxdp"]);
    assert!(ping_settled(&a.ns, "198.18.12.2", 3));
    assert!(ping_settled(&a.ns, &c.ip, 3));

    // B's interface disappears.
    run_ok(&["ip", "link", "del", &b.host]);
    wait_for("port marked down", || state_of(&rvsd.ctl_json(&["show"]), &b.host).starts_with("down"));
    assert!(rvsd.alive());
    assert!(ping(&a.ns, &c.ip, 3), "other ports stopped switching while one was down");
    let stats = rvsd.ctl_json(&["stats"]);
    let downs = stats
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == b.host.as_str())
        .and_then(|p| p["link_downs"].as_u64());
    assert_eq!(downs, Some(1), "the loss of the interface is counted: {stats}");

    // It comes back with the same name and MAC: the port re-attaches.
    run_ok(&["ip", "link", "add", &b.host, "type", "veth", "peer", "name", &b.inner, "netns", &bns.name]);
    bns.ip(&["link", "set", &b.inner, "address", &bmac]);
    run_ok(&["ip", "link", "set", &b.host, "up"]);
    bns.ip(&["link", "set", &b.inner, "up"]);
    bns.addr_add(&b.inner, "198.18.12.2/24");
    wait_for("port up again", || state_of(&rvsd.ctl_json(&["show"]), &b.host) == "up");
    assert!(ping_settled(&a.ns, "198.18.12.2", 3), "no traffic after the interface came back");
    assert!(ping_settled(&bns, &a.ip, 3));
}

/// The `status.state` of uplink `name` in `rvsctl show --json`.
fn uplink_state(show: &Value, name: &str) -> String {
    show["uplinks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["config"]["name"] == name)
        .map(|u| u["status"]["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// A kernel vxlan VTEP (VNI 42 toward `remote`) on bridge br0 of `host`,
/// over its interface `ul`; the guest port `pb0` on the same bridge.
fn kernel_vtep(host: &Netns, local: &str, remote: &str) {
    let _ = host.run(&["ip", "link", "del", "vx42"]);
    host.ip(&["link", "add", "vx42", "type", "vxlan", "id", "42", "local", local, "remote", remote, "dstport", "4789"]);
    host.ip(&["link", "set", "vx42", "master", "br0"]);
    host.ip(&["link", "set", "vx42", "up"]);
}

/// The uplink under a VXLAN port goes away and comes back: the tunnel
/// stops (local ports keep switching), the loss is counted, and the
/// overlay works again once an interface of that name returns.
#[test]
fn uplink_goes_down_with_its_interface_and_comes_back() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (rvs_ip, peer_ip) = ("198.18.201.1", "198.18.201.2");
    let rvs_host = Netns::new();
    let peer_host = Netns::new();
    let underlay = |rvs_host: &Netns, peer_host: &Netns| {
        veth_between(rvs_host, "ul", peer_host, "ul");
        rvs_host.addr_add("ul", &format!("{rvs_ip}/24"));
        peer_host.addr_add("ul", &format!("{peer_ip}/24"));
        kernel_vtep(peer_host, peer_ip, rvs_ip);
    };
    peer_host.ip(&["link", "add", "br0", "type", "bridge"]);
    peer_host.ip(&["link", "set", "br0", "up"]);
    underlay(&rvs_host, &peer_host);
    let guest = |machine: &Netns, port: &str, cidr: &str| {
        let ns = Netns::new();
        veth_between(machine, port, &ns, "eth0");
        ns.ip(&["link", "set", "eth0", "mtu", "1450"]);
        ns.addr_add("eth0", cidr);
        ns
    };
    let a = guest(&rvs_host, "pa0", "198.18.21.1/24");
    let a2 = guest(&rvs_host, "pa1", "198.18.21.2/24");
    let b = guest(&peer_host, "pb0", "198.18.21.11/24");
    peer_host.ip(&["link", "set", "pb0", "master", "br0"]);
    let rvsd = Rvsd::start_in(&rvs_host);
    rvsd.add_bridge("br0");
    rvsd.ctl_ok(&["uplink", "add", "ul"]);
    rvsd.add_port("br0", "vx42", &["--type", "vxlan", "--vni", "42", "--local", rvs_ip, "--remote", peer_ip]);
    rvsd.add_port("br0", "pa0", &["--type", "afxdp"]);
    rvsd.add_port("br0", "pa1", &["--type", "afxdp"]);
    assert!(ping_settled(&a, "198.18.21.11", 3), "overlay before the flap\n{}", rvsd.log_text());

    rvs_host.ip(&["link", "del", "ul"]);
    wait_for("uplink marked down", || uplink_state(&rvsd.ctl_json(&["show"]), "ul").starts_with("down"));
    assert!(ping(&a, "198.18.21.2", 3), "local ports stopped switching while the uplink was down");
    let downs = rvsd
        .ctl_json(&["stats"])
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "ul")
        .and_then(|p| p["link_downs"].as_u64());
    assert_eq!(downs, Some(1), "the loss of the uplink is counted");

    underlay(&rvs_host, &peer_host);
    wait_for("uplink up again", || uplink_state(&rvsd.ctl_json(&["show"]), "ul") == "up");
    assert!(ping_settled(&a, "198.18.21.11", 3), "no overlay after the uplink came back\n{}", rvsd.log_text());
    assert!(ping_settled(&b, "198.18.21.2", 3));
    drop(rvsd);
    drop((a, a2, b));
}
