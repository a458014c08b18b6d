//! Issue 2, test 6: bad frames, bad CLI arguments, garbage on the control
//! socket, missing interfaces and interfaces another program's XDP owns.
//! Each gets a clear error or a counted drop, and rvsd goes on forwarding.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Two AF_XDP hosts on br0, pinging each other.
fn two_hosts(net: u8) -> (Host, Host, Rvsd) {
    let a = Host::on_veth(&format!("198.18.6{net}.1/24"));
    let b = Host::on_veth(&format!("198.18.6{net}.2/24"));
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    rvsd.add_host("br0", &a, &[]);
    rvsd.add_host("br0", &b, &[]);
    assert!(ping_settled(&a.ns, &b.ip, 3));
    (a, b, rvsd)
}

#[test]
fn malformed_frames_are_dropped_and_counted() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, mut rvsd) = two_hosts(0);
    let before = rvsd.ctl_json(&["stats"]);

    let src = parse_mac(&a.mac());
    let mut frames = Vec::new();
    // Runts (< 14 bytes) cannot be sent: AF_PACKET refuses frames shorter
    // than the link header with EINVAL. The pipeline's unit tests cover them.
    // A VLAN tag cut short: 802.1Q ethertype, then 2 of the tag's 4 bytes.
    let mut bad_vlan = vec![0xff; 6];
    bad_vlan.extend_from_slice(&src);
    bad_vlan.extend_from_slice(&[0x81, 0x00, 0x00]);
    // A multicast source MAC.
    let mut mcast = vec![0xff; 6];
    mcast.extend_from_slice(&[0x01, 0x00, 0x5e, 0x00, 0x00, 0x01, 0x88, 0xb5]);
    mcast.resize(60, 0);
    for _ in 0..10 {
        frames.push(bad_vlan.clone());
        frames.push(mcast.clone());
    }
    send_raw(&a.ns, &a.dev, &frames);
    std::thread::sleep(Duration::from_millis(500));

    assert!(rvsd.alive(), "rvsd died on bad frames:\n{}", rvsd.log_text());
    let after = rvsd.ctl_json(&["stats"]);
    for reason in ["bad_vlan", "bad_src_mac"] {
        let (x, y) = (json::drops_total(&before, reason), json::drops_total(&after, reason));
        assert!(y >= x + 10, "{reason}: {x} -> {y}, expected 10 more");
    }
    println!("runt drops: {} (the kernel pads short frames)", json::drops_total(&after, "runt"));
    assert!(ping(&a.ns, &b.ip, 3), "forwarding stopped after bad frames");
    assert!(ping(&b.ns, &a.ip, 3));
}

#[test]
fn bad_cli_arguments_change_nothing() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, rvsd) = two_hosts(1);
    let extra = Host::on_veth("198.18.61.3/24");
    let config = rvsd.show_ports();
    let fdb_before = json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "br0"])).len();

    let p = extra.port();
    let cases: Vec<Vec<&str>> = vec![
        vec!["port", "add", "br0", p, "--type", "afxdp", "--vlan", "0"],
        vec!["port", "add", "br0", p, "--type", "afxdp", "--vlan", "4095"],
        vec!["port", "add", "br0", p, "--type", "afxdp", "--trunk", "10,4095"],
        vec!["port", "add", "br0", p, "--type", "nosuchtype"],
        vec!["port", "add", "nobridge", p, "--type", "afxdp"],
        vec!["port", "add", "br0", a.port(), "--type", "afxdp"],
        vec!["fdb", "add", "br0", "zz:00:00:00:00:01", "--vlan", "1", "--port", a.port()],
        vec!["fdb", "add", "br0", "02:00:00:00:01", "--vlan", "1", "--port", a.port()],
        vec!["fdb", "add", "br0", "02:00:00:00:00:01", "--vlan", "0", "--port", a.port()],
        vec!["bridge", "del", "nobridge"],
    ];
    for args in &cases {
        let o = rvsd.ctl(args);
        let err = one_line_error(&format!("rvsctl {args:?}"), &o);
        println!("rvsctl {}: {err}", args.join(" "));
    }
    assert_eq!(rvsd.show_ports(), config, "a refused command changed the config");
    let fdb_after = json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "br0"])).len();
    assert_eq!(fdb_before, fdb_after);
    assert!(ping(&b.ns, &a.ip, 3));
}

#[test]
fn garbage_on_the_control_socket() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, rvsd) = two_hosts(2);

    let mut s = UnixStream::connect(&rvsd.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"not json\n").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).expect("a reply line");
    assert!(json::is_error_reply(&line), "reply to garbage: {line:?}");
    drop(s);

    // Half a request, then hang up; and a huge line: an error or a closed
    // connection, never a dead daemon.
    let mut s = UnixStream::connect(&rvsd.socket).expect("connect");
    s.write_all(b"{\"cmd\": \"bri").unwrap();
    drop(s);
    let mut s = UnixStream::connect(&rvsd.socket).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(&vec![b'x'; 4 << 20]);
    drop(s);

    assert!(rvsd.ctl(&["bridge", "list"]).status.success(), "daemon stopped answering");
    assert!(ping(&a.ns, &b.ip, 3), "forwarding stopped");
}

#[test]
fn missing_interface_is_a_clear_error() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    let name = format!("rvno{}", tag());
    let o = rvsd.ctl(&["port", "add", "br0", &name, "--type", "afxdp"]);
    let err = one_line_error("port add of a missing interface", &o);
    assert!(err.contains(&name), "error does not name the interface: {err}");
    assert!(json::show_ports(&rvsd.ctl_json(&["show"])).iter().all(|(_, p, _)| p != &name));
}

#[test]
fn interface_with_another_xdp_program_is_refused() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, rvsd) = two_hosts(3);
    let other = Rvsd::start();
    other.add_bridge("br0");
    let o = other.ctl(&["port", "add", "br0", a.port(), "--type", "afxdp"]);
    let err = one_line_error("port add of an interface another rvsd owns", &o);
    assert!(err.to_lowercase().contains("xdp"), "error does not mention XDP: {err}");
    drop(other);
    assert!(ping(&a.ns, &b.ip, 3), "first rvsd lost its port");
    drop(rvsd);
}

/// Issue 14: a tap whose MTU is raised past what a buffer holds sends
/// frames rvs must drop: they are counted (`kernel_drops` of the tap
/// port, "frames too big for a buffer") and never forwarded cut short.
#[test]
fn oversize_frames_from_a_tap_are_counted() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.74.1/24");
    let t = Host::on_tap("198.18.74.2/24");
    let rvsd = Rvsd::start();
    rvsd.bridge_with("br0", &[&a, &t]);
    assert!(ping_settled(&t.ns, &a.ip, 3));
    t.ns.ip(&["link", "set", &t.dev, "mtu", "3000"]);
    let drops = |rvsd: &Rvsd| {
        let v = rvsd.ctl_json(&["stats"]);
        v.as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == t.dev.as_str())
            .map_or(0, |p| p["kernel_drops"].as_u64().unwrap_or(0))
    };
    let before = drops(&rvsd);
    let big = t.ns.run(&["ping", "-n", "-q", "-c", "3", "-W", "1", "-M", "do", "-s", "2500", &a.ip]);
    assert!(!big.status.success(), "2,528-byte packets crossed a 1,792-byte buffer");
    // Kernel drop counts are published about once a second.
    let counted = (0..30).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        drops(&rvsd) - before == 3
    });
    assert!(counted, "{} drops counted\n{}", drops(&rvsd) - before, rvsd.ctl_ok(&["stats"]));
    assert!(ping(&t.ns, &a.ip, 2), "forwarding stopped");
}
