//! Issue 2, test 3: a MAC that moves from one port to another is followed
//! within a second.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn traffic_follows_a_moved_mac() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    // Host M has two interfaces, each on its own port; its address and MAC
    // move from the first to the second.
    let m = Netns::new();
    let p1 = Veth::new(&m, &["198.18.3.1/24"]);
    let p2 = Veth::new(&m, &[]);
    m.ip(&["link", "set", &p2.inner, "down"]);
    let c = Host::on_veth("198.18.3.3/24");
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    rvsd.add_port("br0", &p1.host, &["--type", "afxdp"]);
    rvsd.add_port("br0", &p2.host, &["--type", "afxdp"]);
    rvsd.add_host("br0", &c, &[]);

    assert!(ping_settled(&c.ns, "198.18.3.1", 3));
    let mac = m.mac(&p1.inner);
    let port_of = |mac: &str| {
        json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "br0"])).into_iter().find(|e| e.mac == mac).map(|e| e.port)
    };
    assert_eq!(port_of(&mac).as_deref(), Some(p1.host.as_str()));

    // Move.
    m.ip(&["link", "set", &p1.inner, "down"]);
    m.ip(&["addr", "flush", "dev", &p1.inner]);
    m.ip(&["link", "set", &p2.inner, "address", &mac]);
    m.addr_add(&p2.inner, "198.18.3.1/24");
    let t = Instant::now();
    assert!(ping_within(&m, &c.ip, Duration::from_secs(1)), "moved host got no reply within 1 s");
    println!("first reply after the move: {:?}", t.elapsed());
    assert_eq!(port_of(&mac).as_deref(), Some(p2.host.as_str()), "FDB not moved");
    assert!(ping_within(&c.ns, "198.18.3.1", Duration::from_secs(1)));
    assert!(ping(&c.ns, "198.18.3.1", 3));
}
