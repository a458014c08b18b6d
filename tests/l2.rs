//! Issue 2, test 1: switching between two AF_XDP-port hosts and a tap-port
//! host; MAC learning and counters.

mod common;

use common::*;

#[test]
fn three_hosts_afxdp_and_tap() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.1.1/24");
    let b = Host::on_veth("198.18.1.2/24");
    let c = Host::on_tap("198.18.1.3/24");
    let rvsd = Rvsd::start();
    rvsd.bridge_with("br0", &[&a, &b, &c]);

    let hosts = [&a, &b, &c];
    for x in hosts {
        for y in hosts {
            if x.ip != y.ip {
                assert!(ping_settled(&x.ns, &y.ip, 3), "ping {} -> {}", x.ip, y.ip);
            }
        }
    }

    // IPv6 too (neighbour discovery is multicast: flooded).
    for (h, addr) in [(&a, "2001:2::1/64"), (&b, "2001:2::2/64"), (&c, "2001:2::3/64")] {
        h.ns.addr_add(&h.dev, addr);
    }
    assert!(ping_settled(&a.ns, "2001:2::3", 3), "ping 2001:2::1 -> 2001:2::3");
    assert!(ping_settled(&c.ns, "2001:2::2", 3), "ping 2001:2::3 -> 2001:2::2");

    let fdb = json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "br0"]));
    for h in hosts {
        let mac = h.mac();
        assert!(
            fdb.iter().any(|e| e.mac == mac && e.port == h.port()),
            "{mac} of {} not learned on {}: {fdb:?}",
            h.ip,
            h.port()
        );
    }
    println!("{}", rvsd.ctl_ok(&["fdb", "show", "br0"]));

    let before = rvsd.ctl_json(&["stats"]);
    assert!(ping(&a.ns, &c.ip, 3));
    assert!(ping(&b.ns, &a.ip, 3));
    let after = rvsd.ctl_json(&["stats"]);
    for h in hosts {
        let (x, y) = (json::port_stat(&before, h.port()), json::port_stat(&after, h.port()));
        assert!(
            y.rx_packets >= x.rx_packets + 3 && y.tx_packets >= x.tx_packets + 3,
            "counters of {} did not move: {x:?} -> {y:?}",
            h.port()
        );
    }
    println!("{}", rvsd.ctl_ok(&["stats"]));
}

/// Issue 14: `port del` of a tap rvsd created removes the device, also
/// after a restart (rvsd records that it made it); a tap that existed
/// before `port add` was adopted, and stays.
#[test]
fn port_del_removes_the_taps_rvsd_created_only() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let made = Host::on_tap("198.18.75.1/24");
    let adopted = Host::on_tap("198.18.75.2/24");
    adopted.ns.ip(&["tuntap", "add", "dev", &adopted.dev, "mode", "tap"]);
    let mut rvsd = Rvsd::start();
    rvsd.bridge_with("br0", &[&made, &adopted]);
    assert!(ping_settled(&made.ns, &adopted.ip, 3), "no ping between the taps");
    let show = rvsd.ctl_json(&["show"]).to_string();
    assert!(show.contains(r#""tap_created":true"#), "{show}");
    // Over a restart the tap is found, not made: rvsd still knows it is its.
    rvsd.restart();
    rvsd.ctl_ok(&["port", "del", "br0", &made.dev]);
    assert!(!made.ns.has_link(&made.dev), "the tap rvsd created outlived its port");
    rvsd.ctl_ok(&["port", "del", "br0", &adopted.dev]);
    assert!(adopted.ns.has_link(&adopted.dev), "the adopted tap was removed");
}
