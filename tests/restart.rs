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
