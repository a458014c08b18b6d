//! Issue 13: the `xdp` executor. rvs decides, the port's XDP program
//! carries known unicast between AF_XDP ports, and rvs still sees what it
//! must: first frames after a flush, frames with checksums left to offload
//! (TCP with the hosts' default offloads), and everything on a captured
//! port. Hosts are veths in their own namespaces.

mod common;

use common::*;
use std::time::Duration;

/// What the kernel carried for `port`: (rx, tx) frames, from `rvsctl --json stats`.
fn kernel_share(rvsd: &Rvsd, port: &str) -> (u64, u64) {
    let v = rvsd.ctl_json(&["stats"]);
    let p = v
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == port)
        .unwrap_or_else(|| panic!("no stats for {port}: {v}"));
    let k = &p["kernel"];
    (k["rx_packets"].as_u64().unwrap_or(0), k["tx_packets"].as_u64().unwrap_or(0))
}

/// Two hosts on `--fast-path xdp` ports of bridge br0.
fn pair(net: &str, extra: &[&str]) -> (Host, Host, Rvsd) {
    let a = Host::on_veth(&format!("{net}.1/24"));
    let b = Host::on_veth(&format!("{net}.2/24"));
    let rvsd = Rvsd::start();
    rvsd.ctl_ok(&[&["bridge", "add", "br0"], extra].concat());
    rvsd.add_host("br0", &a, &["--fast-path", "xdp"]);
    rvsd.add_host("br0", &b, &["--fast-path", "xdp"]);
    assert!(ping_settled(&a.ns, &b.ip, 3), "no ping through rvs\n{}", rvsd.log_text());
    // rvsd mirrors what it learned within a control loop round.
    let carried = (0..20).any(|_| {
        let before = kernel_share(&rvsd, a.port()).0;
        assert!(ping(&a.ns, &b.ip, 1));
        kernel_share(&rvsd, a.port()).0 > before
    });
    assert!(carried, "the kernel never took the flow\n{}", rvsd.log_text());
    (a, b, rvsd)
}

#[test]
fn known_unicast_is_carried_by_the_kernel_and_counted() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, rvsd) = pair("198.18.130", &[]);
    let show = rvsd.ctl_ok(&["show"]);
    assert!(show.contains("FAST PATH") && show.contains("xdp"), "{show}");
    let (rx0, _) = kernel_share(&rvsd, a.port());
    let (_, tx0) = kernel_share(&rvsd, b.port());
    assert!(ping(&a.ns, &b.ip, 10), "pings lost");
    let (rx1, _) = kernel_share(&rvsd, a.port());
    let (_, tx1) = kernel_share(&rvsd, b.port());
    assert!(rx1 >= rx0 + 10, "the kernel took {} of 10 echo requests from a", rx1 - rx0);
    assert!(tx1 >= tx0 + 10, "the kernel sent {} of 10 echo requests to b", tx1 - tx0);
    let table = rvsd.ctl_ok(&["stats"]);
    assert!(table.contains("KERNEL RX/TX"), "{table}");
    // Trace names the executor: the kernel for this flow, rvs for a broadcast.
    let flow = format!("dl_src={},dl_dst={}", a.mac(), b.mac());
    let t = rvsd.ctl_ok(&["trace", "br0", a.port(), &flow]);
    assert!(t.contains(&format!("xdp: the kernel carries it to {}", b.port())), "{t}");
    let t = rvsd.ctl_ok(&["trace", "br0", a.port(), &format!("dl_src={},dl_dst=ff:ff:ff:ff:ff:ff", a.mac())]);
    assert!(t.contains("rvs: the xdp executor leaves it to the polling threads"), "{t}");
}

#[test]
fn tcp_with_default_offloads_crosses_the_xdp_executor() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, rvsd) = pair("198.18.131", &[]);
    let _server = Iperf3Server::start(&b.ns, &b.ip);
    let bps = iperf3(&a.ns, &b.ip, 3).unwrap_or_else(|e| panic!("{e}\n{}", rvsd.log_text()));
    println!("iperf3 a -> b, xdp executor: {:.3} Gbit/s", bps / 1e9);
    assert!(bps > 50e6, "TCP at {:.1} Mbit/s (floor 50)", bps / 1e6);
}

#[test]
fn after_a_flush_the_first_frame_reaches_userspace() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, rvsd) = pair("198.18.132", &[]);
    assert!(ping(&a.ns, &b.ip, 3));
    rvsd.ctl_ok(&["fdb", "flush", "br0"]);
    let user = |p: &str| json::port_stat(&rvsd.ctl_json(&["stats"]), p).rx_packets;
    let before = user(a.port());
    assert!(ping(&a.ns, &b.ip, 1));
    assert!(user(a.port()) > before, "the first frame after the flush did not reach rvs");
    // Learned again, the kernel carries the flow once more.
    assert!(ping(&a.ns, &b.ip, 2));
    let (rx0, _) = kernel_share(&rvsd, a.port());
    assert!(ping(&a.ns, &b.ip, 5));
    assert!(kernel_share(&rvsd, a.port()).0 >= rx0 + 5);
}

#[test]
fn a_flow_only_the_kernel_carries_outlives_the_aging_time() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, rvsd) = pair("198.18.133", &["--aging", "2"]);
    // Pings for three aging times: rvs itself sees none of them.
    let ok = a.ns.run(&["ping", "-q", "-c", "30", "-i", "0.2", "-W", "1", &b.ip]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let macs: Vec<String> =
        json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "br0"])).into_iter().map(|e| e.mac).collect();
    assert!(macs.contains(&a.mac()) && macs.contains(&b.mac()), "aged out while the kernel carried them: {macs:?}");
    assert!(kernel_share(&rvsd, a.port()).0 >= 20, "the kernel did not carry the pings");
}

#[test]
fn a_captured_port_gets_all_its_frames_through_rvs() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, rvsd) = pair("198.18.134", &[]);
    assert!(ping(&a.ns, &b.ip, 2));
    // No --count: other frames (IPv6 neighbour discovery) could end it early.
    let mut cap = std::process::Command::new(rvsctl_bin())
        .args(["--socket", rvsd.socket.to_str().expect("utf-8 path"), "capture", b.port(), "-w"])
        .arg("/dev/null")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rvsctl capture");
    // Running once it says so; the kernel path pauses before that.
    let mut err = std::io::BufReader::new(cap.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("capturing on") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut err, &mut line).expect("capture's stderr");
        assert!(n > 0, "rvsctl capture ended before capturing\n{}", rvsd.log_text());
    }
    let (rx0, _) = kernel_share(&rvsd, a.port());
    assert!(ping(&a.ns, &b.ip, 3));
    assert_eq!(kernel_share(&rvsd, a.port()).0, rx0, "the kernel carried frames of a captured port");
    cap.kill().expect("stop the capture");
    let _ = cap.wait();
    // Capture over (rvsd sees the client go): the kernel takes the flow again.
    let resumed = (0..20).any(|_| {
        assert!(ping(&a.ns, &b.ip, 1));
        kernel_share(&rvsd, a.port()).0 > rx0
    });
    assert!(resumed, "the kernel path did not resume after the capture");
}

#[test]
fn kill_9_leaves_no_program_on_the_ports() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, mut rvsd) = pair("198.18.135", &[]);
    rvsd.kill9();
    for h in [&a, &b] {
        let dev = h.port();
        let gone = (0..100).any(|_| {
            let out = run_ok(&["ip", "link", "show", dev]);
            if !out.contains("xdp") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
            false
        });
        assert!(gone, "{dev} still has an XDP program 10 s after kill -9");
    }
}
