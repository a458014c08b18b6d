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
