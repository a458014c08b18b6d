//! Issue 2, test 5: after `kill -9` no XDP program stays attached and tap
//! devices stay; a restart with the same db restores everything.
//! Also SIGTERM: exit 0, XDP detached, taps kept.

mod common;

use common::*;

#[test]
fn kill9_leaves_no_xdp_and_restart_restores() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.5.1/24");
    let b = Host::on_veth("198.18.5.2/24");
    let c = Host::on_tap("198.18.5.3/24");
    let mut rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    rvsd.add_bridge("br1");
    for h in [&a, &b, &c] {
        rvsd.add_host("br0", h, &[]);
    }
    assert!(ping_settled(&a.ns, &b.ip, 3));
    assert!(ping_settled(&a.ns, &c.ip, 3));
    let devs = [a.port(), b.port()];
    assert_eq!(xdp_attached(&devs).len(), 2, "XDP not attached while running");
    let config = rvsd.show_ports();

    rvsd.kill9();
    let left = no_xdp_left(&devs);
    assert!(left.is_empty(), "XDP still attached after kill -9: {left:?}");
    assert!(c.ns.has_link(&c.dev), "tap gone after kill -9");

    rvsd.restart();
    assert_eq!(rvsd.show_ports(), config, "configuration not restored");
    assert!(ping_settled(&a.ns, &b.ip, 3), "a -> b after restart");
    assert!(ping_settled(&b.ns, &c.ip, 3), "b -> c after restart");

    let st = rvsd.stop().expect("rvsd did not stop on SIGTERM within 3 s");
    assert!(st.success(), "SIGTERM exit status {st}");
    let left = no_xdp_left(&devs);
    assert!(left.is_empty(), "XDP still attached after SIGTERM: {left:?}");
    assert!(c.ns.has_link(&c.dev), "tap gone after SIGTERM");

    rvsd.restart();
    assert_eq!(rvsd.show_ports(), config);
    assert!(ping_settled(&c.ns, &a.ip, 3), "c -> a after second restart");
}

/// The state `show` gives port `port` of br0.
fn port_state(rvsd: &Rvsd, port: &str) -> String {
    let show = rvsd.ctl_json(&["show"]);
    show["bridges"][0]["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["config"]["name"] == port))
        .and_then(|p| p["status"]["state"].as_str())
        .unwrap_or("missing")
        .to_string()
}

/// Issue 14: a port whose interface is not there when rvsd starts (not up
/// yet at boot) is shown down with why, and comes up by itself once the
/// interface appears, without a restart or a command.
#[test]
fn a_port_missing_at_start_comes_up_when_its_interface_appears() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.6.1/24");
    let b = Host::on_veth("198.18.6.2/24");
    let mut rvsd = Rvsd::start();
    rvsd.bridge_with("br0", &[&a, &b]);
    assert!(ping_settled(&a.ns, &b.ip, 3));
    rvsd.stop();

    let b_mac = b.mac();
    run_ok(&["ip", "link", "del", b.port()]);
    rvsd.restart();
    let state = port_state(&rvsd, b.port());
    assert!(state.starts_with("down: ") && state.contains(b.port()), "a missing interface shows as {state:?}");
    assert!(!ping(&a.ns, &b.ip, 1), "b answered without its interface");

    // The interface appears, as it would late at boot (with the MAC it
    // had, as a real one would: a's neighbour entry stays right).
    run_ok(&[
        "ip",
        "link",
        "add",
        b.port(),
        "type",
        "veth",
        "peer",
        "name",
        &b.dev,
        "address",
        &b_mac,
        "netns",
        &b.ns.name,
    ]);
    run_ok(&["ip", "link", "set", b.port(), "up"]);
    b.ns.ip(&["link", "set", &b.dev, "up"]);
    b.ns.addr_add(&b.dev, "198.18.6.2/24");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while port_state(&rvsd, b.port()) != "up" && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(port_state(&rvsd, b.port()), "up", "the port did not come up:\n{}", rvsd.log_text());
    assert!(ping_settled(&a.ns, &b.ip, 3), "a -> b once b's interface is back\n{}", rvsd.ctl_ok(&["stats"]));
    let log = rvsd.log_text();
    assert_eq!(log.matches("is down: ").count(), 1, "the reason was said more than once:\n{log}");
    assert!(log.contains(&format!("port \"{}\" is up (it was down: ", b.port())), "{log}");
}
