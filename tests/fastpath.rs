//! Issue 13: the kernel executors. rvs decides, the port's XDP program
//! (`xdp`) or its tc ingress program (`tc`) carries known unicast between
//! AF_XDP ports, and rvs still sees what it must: first frames after a
//! flush, frames with checksums left to offload (TCP with the hosts'
//! default offloads, through `xdp`), and everything on a captured port.
//! Hosts are veths in their own namespaces. Every test runs once per
//! executor (`xdp::name`, `tc::name`).

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

/// Pings `to` from `from` until the kernel carries one (rvsd mirrors what
/// it learned, and readies the veth peers, within a control loop round).
fn wait_for_kernel(rvsd: &Rvsd, from: &Host, to: &str) {
    let carried = (0..20).any(|_| {
        let before = kernel_share(rvsd, from.port()).0;
        assert!(ping(&from.ns, to, 1));
        kernel_share(rvsd, from.port()).0 > before
    });
    assert!(carried, "the kernel never carried {}'s pings to {to}\n{}", from.port(), rvsd.log_text());
}

/// Runs each named test once per executor: `xdp::NAME` and `tc::NAME`
/// call `NAME("xdp")` and `NAME("tc")`.
macro_rules! per_executor {
    ($($name:ident),* $(,)?) => {
        mod xdp {
            $(#[test] fn $name() { super::$name("xdp") })*
        }
        mod tc {
            $(#[test] fn $name() { super::$name("tc") })*
        }
    };
}

per_executor!(
    known_unicast_is_carried_by_the_kernel_and_counted,
    tcp_with_default_offloads_crosses_the_executor,
    after_a_flush_the_first_frame_reaches_userspace,
    a_flow_only_the_kernel_carries_outlives_the_aging_time,
    a_captured_port_gets_all_its_frames_through_rvs,
    kill_9_leaves_nothing_on_the_ports,
    a_moved_mac_is_followed_within_a_second,
    vlans_stay_apart_in_the_kernel,
    tagged_frames_cross_between_a_trunk_and_an_access_port,
    a_mac_that_moves_and_comes_back_at_once_is_carried_again,
    a_kernel_vxlan_peer_is_reached_through_the_kernel_both_ways,
    a_tap_port_and_an_executor_port_reach_each_other,
);

/// Two hosts on `--fast-path ex` ports of bridge br0.
fn pair(ex: &str, net: &str, extra: &[&str]) -> (Host, Host, Rvsd) {
    let a = Host::on_veth(&format!("{net}.1/24"));
    let b = Host::on_veth(&format!("{net}.2/24"));
    let rvsd = Rvsd::start();
    rvsd.ctl_ok(&[&["bridge", "add", "br0"], extra].concat());
    rvsd.add_host("br0", &a, &["--fast-path", ex]);
    rvsd.add_host("br0", &b, &["--fast-path", ex]);
    assert!(ping_settled(&a.ns, &b.ip, 3), "no ping through rvs\n{}", rvsd.log_text());
    wait_for_kernel(&rvsd, &a, &b.ip);
    (a, b, rvsd)
}

fn known_unicast_is_carried_by_the_kernel_and_counted(ex: &str) {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, rvsd) = pair(ex, "198.18.130", &[]);
    let show = rvsd.ctl_ok(&["show"]);
    assert!(show.contains("FAST PATH") && show.contains(ex), "{show}");
    let (rx0, _) = kernel_share(&rvsd, a.port());
    let (_, tx0) = kernel_share(&rvsd, b.port());
    assert!(ping(&a.ns, &b.ip, 10), "pings lost");
    let (rx1, _) = kernel_share(&rvsd, a.port());
    let (_, tx1) = kernel_share(&rvsd, b.port());
    assert!(rx1 >= rx0 + 10, "the kernel took {} of 10 echo requests from a", rx1 - rx0);
    assert!(tx1 >= tx0 + 10, "the kernel sent {} of 10 echo requests to b", tx1 - tx0);
    let table = rvsd.ctl_ok(&["stats"]);
    assert!(table.contains("KERNEL RX/TX"), "{table}");
    let pmd = rvsd.ctl_ok(&["pmd", "show"]);
    assert!(pmd.contains("kernel executors: ") && pmd.contains("polling threads: "), "{pmd}");
    // Trace names the executor: the kernel for this flow, rvs for a broadcast.
    let flow = format!("dl_src={},dl_dst={}", a.mac(), b.mac());
    let t = rvsd.ctl_ok(&["trace", "br0", a.port(), &flow]);
    assert!(t.contains(&format!("{ex}: the kernel carries it to {}", b.port())), "{t}");
    let t = rvsd.ctl_ok(&["trace", "br0", a.port(), &format!("dl_src={},dl_dst=ff:ff:ff:ff:ff:ff", a.mac())]);
    assert!(t.contains(&format!("rvs: the {ex} executor leaves it to the polling threads")), "{t}");
}

fn tcp_with_default_offloads_crosses_the_executor(ex: &str) {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, rvsd) = pair(ex, "198.18.131", &[]);
    let _server = Iperf3Server::start(&b.ns, &b.ip);
    let bps = iperf3(&a.ns, &b.ip, 3).unwrap_or_else(|e| panic!("{e}\n{}", rvsd.log_text()));
    println!("iperf3 a -> b, {ex} executor: {:.3} Gbit/s", bps / 1e9);
    assert!(bps > 50e6, "TCP at {:.1} Mbit/s (floor 50)", bps / 1e6);
}

fn after_a_flush_the_first_frame_reaches_userspace(ex: &str) {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, rvsd) = pair(ex, "198.18.132", &[]);
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

fn a_flow_only_the_kernel_carries_outlives_the_aging_time(ex: &str) {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, rvsd) = pair(ex, "198.18.133", &["--aging", "2"]);
    // Pings for three aging times: rvs itself sees none of them.
    let ok = a.ns.run(&["ping", "-q", "-c", "30", "-i", "0.2", "-W", "1", &b.ip]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let macs: Vec<String> =
        json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "br0"])).into_iter().map(|e| e.mac).collect();
    assert!(macs.contains(&a.mac()) && macs.contains(&b.mac()), "aged out while the kernel carried them: {macs:?}");
    assert!(kernel_share(&rvsd, a.port()).0 >= 20, "the kernel did not carry the pings");
}

/// `rvsctl capture PORT -w /dev/null`, once it says it is capturing (the
/// kernel path pauses before that). No --count: other frames (IPv6
/// neighbour discovery) could end it early; kill it to stop.
fn start_capture(rvsd: &Rvsd, port: &str) -> std::process::Child {
    let mut cap = std::process::Command::new(rvsctl_bin())
        .args(["--socket", rvsd.socket.to_str().expect("utf-8 path"), "capture", port, "-w"])
        .arg("/dev/null")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rvsctl capture");
    let mut err = std::io::BufReader::new(cap.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("capturing on") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut err, &mut line).expect("capture's stderr");
        assert!(n > 0, "rvsctl capture ended before capturing\n{}", rvsd.log_text());
    }
    cap
}

fn a_captured_port_gets_all_its_frames_through_rvs(ex: &str) {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, rvsd) = pair(ex, "198.18.134", &[]);
    assert!(ping(&a.ns, &b.ip, 2));
    let mut cap = start_capture(&rvsd, b.port());
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

fn kill_9_leaves_nothing_on_the_ports(ex: &str) {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (a, b, mut rvsd) = pair(ex, "198.18.135", &[]);
    let miss_devices =
        |h: &Host| format!("rvsm{}", run_ok(&["cat", &format!("/sys/class/net/{}/ifindex", h.port())]).trim());
    let misses = [miss_devices(&a), miss_devices(&b)];
    if ex == "tc" {
        for m in &misses {
            assert!(std::path::Path::new(&format!("/sys/class/net/{m}")).exists(), "no miss device {m}");
        }
    }
    rvsd.kill9();
    let settled = (0..100).any(|_| {
        let xdp = [&a, &b].iter().any(|h| run_ok(&["ip", "link", "show", h.port()]).contains("xdp"));
        let miss = misses.iter().any(|m| std::path::Path::new(&format!("/sys/class/net/{m}")).exists());
        std::thread::sleep(Duration::from_millis(100));
        !xdp && !miss
    });
    assert!(settled, "an XDP program or a miss device is left 10 s after kill -9");
    // No program is left at tc ingress either: the kernel's own bridge
    // over the two ports carries the hosts' pings (a tc program left
    // behind would take every frame away).
    let br = format!("rvsk{}", std::process::id() % 100_000);
    run_ok(&["ip", "link", "add", &br, "type", "bridge"]);
    let _br = Cleanup(br.clone());
    run_ok(&["ip", "link", "set", &br, "up"]);
    for dev in [a.port(), b.port()] {
        run_ok(&["ip", "link", "set", dev, "master", &br]);
    }
    assert!(ping_settled(&a.ns, &b.ip, 3), "the ports do not carry frames after kill -9: a program is left");
}

/// Deletes a link when dropped.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// Host M (NET.1 on its first interface, p1; nothing on p2) and host C
/// (NET.3), on `--fast-path ex` ports of br0.
fn two_homed(ex: &str, net: &str) -> (Netns, Veth, Veth, Host, Rvsd) {
    let m = Netns::new();
    let p1 = Veth::new(&m, &[&format!("{net}.1/24")]);
    let p2 = Veth::new(&m, &[]);
    let c = Host::on_veth(&format!("{net}.3/24"));
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    for p in [&p1.host, &p2.host] {
        rvsd.add_port("br0", p, &["--type", "afxdp", "--fast-path", ex]);
    }
    rvsd.add_host("br0", &c, &["--fast-path", ex]);
    (m, p1, p2, c, rvsd)
}

fn a_moved_mac_is_followed_within_a_second(ex: &str) {
    if !require_root() {
        return;
    }
    let _serial = serial();
    // Host M has two interfaces on executor ports; its address and MAC
    // move from the first to the second while the kernel carries its
    // traffic with C.
    let (m, p1, p2, c, rvsd) = two_homed(ex, "198.18.136");
    m.ip(&["link", "set", &p2.inner, "down"]);
    assert!(ping_settled(&c.ns, "198.18.136.1", 3));
    let before = kernel_share(&rvsd, c.port()).0;
    assert!(ping(&c.ns, "198.18.136.1", 5));
    assert!(kernel_share(&rvsd, c.port()).0 > before, "the kernel did not carry C's pings before the move");

    let mac = m.mac(&p1.inner);
    m.ip(&["link", "set", &p1.inner, "down"]);
    m.ip(&["addr", "flush", "dev", &p1.inner]);
    m.ip(&["link", "set", &p2.inner, "address", &mac]);
    m.addr_add(&p2.inner, "198.18.136.1/24");
    let t = std::time::Instant::now();
    assert!(ping_within(&m, &c.ip, Duration::from_secs(1)), "moved host got no reply within 1 s");
    assert!(ping_within(&c.ns, "198.18.136.1", Duration::from_secs(1)), "C lost M after the move");
    println!("followed the move in {:?}", t.elapsed());
    let port_of = json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "br0"])).into_iter().find(|e| e.mac == mac);
    assert_eq!(port_of.map(|e| e.port).as_deref(), Some(p2.host.as_str()), "FDB not moved");
    let (_, tx0) = kernel_share(&rvsd, &p2.host);
    assert!(ping(&c.ns, "198.18.136.1", 5));
    assert!(kernel_share(&rvsd, &p2.host).1 > tx0, "the kernel does not send to the MAC's new port");
}

fn vlans_stay_apart_in_the_kernel(ex: &str) {
    if !require_root() {
        return;
    }
    let _serial = serial();
    // c20 shares VLAN 10's subnet, so a10 tries to reach it.
    let a10 = Host::on_veth("198.18.137.1/24");
    let b10 = Host::on_veth("198.18.137.2/24");
    let c20 = Host::on_veth("198.18.137.3/24");
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    rvsd.add_host("br0", &a10, &["--vlan", "10", "--fast-path", ex]);
    rvsd.add_host("br0", &b10, &["--vlan", "10", "--fast-path", ex]);
    rvsd.add_host("br0", &c20, &["--vlan", "20", "--fast-path", ex]);
    assert!(ping_settled(&a10.ns, &b10.ip, 3), "same VLAN");
    wait_for_kernel(&rvsd, &a10, &b10.ip);
    // c20's MAC is learned in VLAN 20 only; nothing crosses.
    assert!(!ping_within(&c20.ns, &a10.ip, Duration::from_secs(2)), "VLAN 20 reached VLAN 10");
    assert!(!ping_within(&a10.ns, &c20.ip, Duration::from_secs(2)), "VLAN 10 reached VLAN 20");
    assert_eq!(kernel_share(&rvsd, c20.port()), (0, 0), "the kernel carried a frame of VLAN 20");
}

fn tagged_frames_cross_between_a_trunk_and_an_access_port(ex: &str) {
    if !require_root() {
        return;
    }
    let _serial = serial();
    // T speaks VLAN 10 tagged by hand (this kernel has no 802.1Q devices):
    // tagged ARP requests from an AF_PACKET socket. A is untagged on an
    // access port of VLAN 10. The kernel pushes the tag toward T and pops
    // it toward A (tc: in the skb's metadata, where the kernel keeps tags).
    const TMAC: &str = "02:00:00:00:99:05";
    let tmac = parse_mac(TMAC);
    let t = Netns::new();
    let tv = Veth::new(&t, &[]);
    let a = Host::on_veth("198.18.138.1/24");
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    rvsd.add_host("br0", &a, &["--vlan", "10", "--fast-path", ex]);
    rvsd.add_port("br0", &tv.host, &["--type", "afxdp", "--trunk", "10,20", "--fast-path", ex]);
    let ask = |dst: Option<[u8; 6]>| {
        let mut f = arp_request(tmac, parse_ip("198.18.138.9"), parse_ip(&a.ip), Some(10));
        if let Some(d) = dst {
            f[..6].copy_from_slice(&d);
        }
        send_raw(&t, &tv.inner, &[f]);
    };

    // A broadcast request teaches rvs T's MAC and, from A's reply, A's;
    // once the kernel knows both MACs, it carries A's replies and pushes
    // the tag. Then unicast requests: rvs answers broadcast ones itself
    // once it knows A's address (ARP suppression), unicast ones go to A.
    let amac = parse_mac(&a.mac());
    let pushed = (0..20).any(|i| {
        let (_, tx0) = kernel_share(&rvsd, &tv.host);
        let cap = Tcpdump::start(Some(&t), &tv.inner, 1, &["ether", "dst", TMAC, "and", "vlan", "10", "and", "arp"]);
        ask(if i == 0 { None } else { Some(amac) });
        let lines = cap.finish(Duration::from_secs(3));
        assert!(!lines.is_empty(), "no tagged reply from A\n{}", rvsd.log_text());
        kernel_share(&rvsd, &tv.host).1 > tx0
    });
    assert!(pushed, "the kernel never carried A's reply to the trunk");

    // A unicast request straight to A: the kernel takes it from the trunk
    // and pops the tag.
    let (rx0, _) = kernel_share(&rvsd, &tv.host);
    let cap = Tcpdump::start(Some(&a.ns), &a.dev, 1, &["ether", "src", TMAC, "and", "arp"]);
    ask(Some(amac));
    let lines = cap.finish(Duration::from_secs(3));
    assert!(lines.len() == 1 && !lines[0].contains("vlan"), "A got {lines:?}");
    assert!(kernel_share(&rvsd, &tv.host).0 > rx0, "the kernel did not take the tagged frame from the trunk");
    // VLAN 20 reaches nobody.
    let cap = Tcpdump::start(Some(&a.ns), &a.dev, 1, &["ether", "src", TMAC]);
    let mut f = arp_request(tmac, parse_ip("198.18.138.9"), parse_ip(&a.ip), Some(20));
    f[..6].copy_from_slice(&amac);
    send_raw(&t, &tv.inner, &[f]);
    assert!(cap.finish(Duration::from_secs(2)).is_empty(), "VLAN 20 reached A");
}

#[test]
fn an_afxdp_port_gets_the_tc_executor_by_default() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.139.1/24");
    let b = Host::on_veth("198.18.139.2/24");
    let t = Host::on_tap("198.18.139.3/24");
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    // Straight through rvsctl: the test helper would ask for `off`.
    for h in [&a, &b] {
        rvsd.ctl_ok(&["port", "add", "br0", h.port(), "--type", "afxdp"]);
    }
    rvsd.add_host("br0", &t, &[]);
    let show = rvsd.ctl_json(&["show"]);
    let executor = |port: &str| {
        let ports = show["bridges"][0]["ports"].as_array().expect("ports").clone();
        let p = ports.into_iter().find(|p| p["config"]["name"] == port).unwrap_or_else(|| panic!("{port}: {show}"));
        assert!(p["config"].get("fast_path").is_none(), "the default is not written out: {p}");
        p["status"]["fast_path"].as_str().expect("fast_path").to_string()
    };
    assert_eq!(executor(a.port()), "tc");
    assert_eq!(executor(t.port()), "off", "a tap has no executor");
    assert!(ping_settled(&a.ns, &b.ip, 3), "{}", rvsd.log_text());
    assert!(ping_settled(&a.ns, &t.ip, 3), "tc port to tap\n{}", rvsd.log_text());
    wait_for_kernel(&rvsd, &a, &b.ip);
}

fn a_mac_that_moves_and_comes_back_at_once_is_carried_again(ex: &str) {
    if !require_root() {
        return;
    }
    let _serial = serial();
    // M lives on p1; one frame from its MAC arrives on p2 and the next
    // on p1 again, back to back: the kernel forgets M at the first, and
    // rvs's table ends where it started, so only the kernel's own note of
    // what it forgot brings M back into its table.
    let (m, p1, p2, c, rvsd) = two_homed(ex, "198.18.140");
    assert!(ping_settled(&c.ns, "198.18.140.1", 3));
    wait_for_kernel(&rvsd, &c, "198.18.140.1");

    let mac = parse_mac(&m.mac(&p1.inner));
    let mut f = arp_request(mac, parse_ip("198.18.140.1"), parse_ip("198.18.140.9"), None);
    f[..6].copy_from_slice(&parse_mac(&c.mac())); // unicast, to C
    send_raw(&m, &p2.inner, std::slice::from_ref(&f));
    send_raw(&m, &p1.inner, &[f]);
    let back = (0..20).any(|_| {
        let (_, tx0) = kernel_share(&rvsd, &p1.host);
        assert!(ping(&c.ns, "198.18.140.1", 1));
        kernel_share(&rvsd, &p1.host).1 > tx0
    });
    assert!(back, "the kernel no longer sends to M after it moved and came back\n{}", rvsd.log_text());
}

/// A host on a `--fast-path ex` port and one behind a Linux kernel vxlan
/// VTEP across the uplink: the kernel encapsulates (the port's executor)
/// and decapsulates (the uplink's XDP program) their known unicast, ping
/// and TCP with the hosts' default offloads.
fn a_kernel_vxlan_peer_is_reached_through_the_kernel_both_ways(ex: &str) {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let (rvs_host, peer_host) = (Netns::new(), Netns::new());
    veth_between(&rvs_host, "ul", &peer_host, "ul");
    rvs_host.addr_add("ul", "198.18.140.1/24");
    peer_host.addr_add("ul", "198.18.140.2/24");
    configure_kernel_vtep(&peer_host, "br0", "vx42", "42", "198.18.140.2", "198.18.140.1");
    let a = Guest::new(&rvs_host, "pa0", "198.18.141.1/24", "1450");
    let b = Guest::new(&peer_host, "pb0", "198.18.141.2/24", "1450");
    peer_host.ip(&["link", "set", "pb0", "master", "br0"]);
    let rvsd = Rvsd::start_in(&rvs_host);
    rvsd.add_bridge("br0");
    rvsd.ctl_ok(&["uplink", "add", "ul"]);
    let vx = ["--type", "vxlan", "--vni", "42", "--local", "198.18.140.1", "--remote", "198.18.140.2"];
    rvsd.add_port("br0", "vx42", &vx);
    rvsd.add_port("br0", "pa0", &["--type", "afxdp", "--fast-path", ex]);
    let show = rvsd.ctl_json(&["show"]);
    assert!(show.to_string().contains(r#""fast_path":"xdp""#), "the tunnel's kernel path: {show}");

    assert!(ping_settled(&a.ns, &b.ip, 3), "no ping across the tunnel\n{}", rvsd.log_text());
    // Both directions reach the kernel once rvs has mirrored the MACs.
    let carried = (0..20).any(|_| {
        let (rx, tx) = kernel_share(&rvsd, "vx42");
        assert!(ping(&a.ns, &b.ip, 1));
        let (rx1, tx1) = kernel_share(&rvsd, "vx42");
        rx1 > rx && tx1 > tx
    });
    assert!(carried, "the kernel never carried pings through vx42 both ways\n{}", rvsd.log_text());
    let (rx0, tx0) = kernel_share(&rvsd, "vx42");
    assert!(ping(&a.ns, &b.ip, 10), "pings lost");
    let (rx1, tx1) = kernel_share(&rvsd, "vx42");
    assert!(tx1 >= tx0 + 10, "the kernel encapsulated {} of 10 echo requests", tx1 - tx0);
    assert!(rx1 >= rx0 + 10, "the kernel decapsulated {} of 10 echo replies", rx1 - rx0);
    // A capture on the uplink sees the tunnel's frames: the kernel leaves
    // them to rvs while it runs.
    let mut cap = start_capture(&rvsd, "ul");
    assert!(ping(&a.ns, &b.ip, 3));
    assert_eq!(kernel_share(&rvsd, "vx42"), (rx1, tx1), "the kernel carried frames past a capture of the uplink");
    cap.kill().expect("stop the capture");
    let _ = cap.wait();
    let resumed = (0..20).any(|_| {
        assert!(ping(&a.ns, &b.ip, 1));
        kernel_share(&rvsd, "vx42").1 > tx1
    });
    assert!(resumed, "the tunnel's kernel path did not resume after the capture");
    let flow = format!("dl_src={},dl_dst={},dl_type=0x0800", a.mac(), b.mac());
    let t = rvsd.ctl_ok(&["trace", "br0", "pa0", &flow]);
    assert!(t.contains(&format!("{ex}: the kernel carries it to vx42")), "{t}");
    // The peer's MAC stays learned behind the tunnel, from its VTEP.
    let fdb = json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "br0"]));
    assert!(fdb.iter().any(|e| e.mac == b.mac() && e.port == "vx42" && e.remote.as_deref() == Some("198.18.140.2")));

    // TCP: segments whose checksum the sender left to offload reach XDP
    // without that state and go to rvs (it completes them), which rules
    // out the xdp executor and, on this veth underlay, decapsulation; the
    // tc executor encapsulates whole GSO skbs.
    for (client, server, dir) in [(&a, &b, "a -> b"), (&b, &a, "b -> a")] {
        let _srv = Iperf3Server::start(&server.ns, &server.ip);
        let (rx, tx) = kernel_share(&rvsd, "vx42");
        let bps = iperf3(&client.ns, &server.ip, 2).unwrap_or_else(|e| panic!("{dir}: {e}\n{}", rvsd.log_text()));
        let (rx1, tx1) = kernel_share(&rvsd, "vx42");
        println!(
            "iperf3 {dir} through vx42, {ex} executor: {:.3} Gbit/s; kernel: {} in, {} out",
            bps / 1e9,
            rx1 - rx,
            tx1 - tx
        );
        assert!(bps > 50e6, "{dir}: TCP at {:.1} Mbit/s (floor 50)", bps / 1e6);
        if ex == "tc" && dir == "a -> b" {
            assert!(tx1 - tx > 100, "{dir}: the kernel encapsulated {} segments", tx1 - tx);
        }
    }
    drop(rvsd);
}

/// A tap port has no executor: between it and an executor port, rvs
/// carries every frame one way and the executor's port sends the other
/// (its misses go to rvs, which writes to the tap).
fn a_tap_port_and_an_executor_port_reach_each_other(ex: &str) {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.142.1/24");
    let t = Host::on_tap("198.18.142.2/24");
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    rvsd.add_host("br0", &a, &["--fast-path", ex]);
    rvsd.add_host("br0", &t, &[]);
    assert!(ping_settled(&a.ns, &t.ip, 3), "a -> tap\n{}", rvsd.log_text());
    assert!(ping_settled(&t.ns, &a.ip, 3), "tap -> a\n{}", rvsd.log_text());
    for (client, server, dir) in [(&a, &t, "a -> tap"), (&t, &a, "tap -> a")] {
        let _srv = Iperf3Server::start(&server.ns, &server.ip);
        let bps = iperf3(&client.ns, &server.ip, 2).unwrap_or_else(|e| panic!("{dir}: {e}\n{}", rvsd.log_text()));
        println!("iperf3 {dir}, {ex} executor: {:.3} Gbit/s", bps / 1e9);
        assert!(bps > 50e6, "{dir}: TCP at {:.1} Mbit/s (floor 50)", bps / 1e6);
    }
    // Nothing for the kernel to carry: the tap is no executor port.
    assert_eq!(kernel_share(&rvsd, a.port()), (0, 0), "{}", rvsd.ctl_ok(&["stats"]));
}
