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

/// Issue 16: `rvsctl --json stats` gives drops as an object keyed by
/// reason, and `stats --interval` prints per-second rates until
/// interrupted (one JSON object per line with --json).
#[test]
fn stats_drops_by_reason_and_rates_per_interval() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.1.11/24");
    let b = Host::on_veth("198.18.1.12/24");
    let rvsd = Rvsd::start();
    rvsd.bridge_with("br0", &[&a, &b]);
    assert!(ping_settled(&a.ns, &b.ip, 1));
    // A frame from a broadcast source MAC: dropped, counted under its reason.
    let mut bad = vec![0xff; 12];
    bad.extend_from_slice(&[0x88, 0xb5, 0, 0]);
    send_raw(&a.ns, &a.dev, &[bad]);
    let t0 = std::time::Instant::now();
    let drops = loop {
        let v = rvsd.ctl_json(&["stats", a.port()]);
        let d = v[0]["drops"].clone();
        if d.get("bad_src_mac").is_some() || t0.elapsed() > std::time::Duration::from_secs(10) {
            break d;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(drops.is_object() && drops["bad_src_mac"] == 1, "drops: {drops}");

    // Rates: a ping flood from a to b while rvsctl prints every 0.5 s.
    let mut flood = ChildGuard(a.ns.cmd(&["ping", "-q", "-i", "0.002", "-w", "30", &b.ip]).spawn().unwrap());
    let mut child = std::process::Command::new(rvsctl_bin())
        .arg("--socket")
        .arg(&rvsd.socket)
        .args(["--json", "stats", "--interval", "0.5"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut rx = Vec::new();
    for _ in 0..3 {
        let line = lines.next().expect("a line per interval").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!((v["interval_secs"].as_f64().unwrap() - 0.5).abs() < 0.4, "{v}");
        let p = v["ports"].as_array().unwrap().iter().find(|p| p["name"] == a.port()).cloned().unwrap();
        rx.push(p["rx_pps"].as_f64().unwrap());
        assert!(p["rx_bps"].as_f64().unwrap() >= p["rx_pps"].as_f64().unwrap() * 8.0 * 60.0, "{p}");
    }
    assert!(rx.iter().all(|&r| r > 0.0), "no rate while pinging: {rx:?}");
    // SAFETY: signals our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success(), "rvsctl stats --interval ends with 0 on Ctrl-C");
    let _ = flood.0.kill();

    let e = one_line_error("--interval 0", &rvsd.ctl(&["stats", "--interval", "0"]));
    assert!(e.contains("invalid interval"), "{e}");
}
