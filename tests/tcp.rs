//! Issue 2, test 4: TCP between two AF_XDP-port hosts whose offloads are
//! left as they are (checksum offload on: rvs must fill the checksums).

mod common;

use common::*;

#[test]
fn iperf3_between_afxdp_hosts_with_default_offloads() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.4.1/24");
    let b = Host::on_veth("198.18.4.2/24");
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    rvsd.add_host("br0", &a, &[]);
    rvsd.add_host("br0", &b, &[]);
    assert!(ping_settled(&a.ns, &b.ip, 3));

    let _server = Iperf3Server::start(&b.ns, &b.ip);
    let bps = iperf3(&a.ns, &b.ip, 3).unwrap_or_else(|e| panic!("{e}"));
    println!("iperf3 a -> b through rvs: {:.3} Gbit/s\n{}", bps / 1e9, rvsd.ctl_ok(&["stats"]));
    assert!(bps > 50e6, "TCP at {:.1} Mbit/s (floor 50)", bps / 1e6);
}
