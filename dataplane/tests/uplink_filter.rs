//! The uplink XDP program on a real veth pair (needs root).
//!
//! Each test builds a namespace `rvsf-<tag>-<pid>` holding `rvsf<tag><pid>0`
//! (the "remote host"), paired with `rvsf<tag><pid>1` in the root namespace
//! (the uplink, which carries the VTEP address). Addresses come from
//! 198.18.0.0/15 and 2001:2::/48; a guard removes everything even when the
//! test panics. Without root the tests print a notice and pass, unless
//! `CI=true`, where they fail.

mod common;

use common::{has_xdp, ip, ip_quiet, privileged, xdp_gone};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use rvs_dataplane::port::afxdp::{AfXdpPort, Umem, XdpMode, XdpProgram};
use rvs_dataplane::port::netns::in_netns;
use rvs_dataplane::port::{Desc, Pool, Port};

const VXLAN_PORT: u16 = 4789;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

/// One namespace and its veth pair, removed on drop.
struct Net {
    ns: String,
    /// The root end: the uplink.
    uplink: String,
    /// The uplink's (VTEP) addresses and the namespace's.
    local4: Ipv4Addr,
    remote4: Ipv4Addr,
    local6: Ipv6Addr,
    remote6: Ipv6Addr,
}

impl Net {
    /// `subnet` picks 198.18.<subnet>.0/24 and 2001:2:0:<subnet>::/64, so
    /// that tests running at the same time do not share routes.
    fn new(tag: &str, subnet: u8) -> Net {
        let pid = std::process::id();
        let ns = format!("rvsf-{tag}-{pid}");
        let base = format!("rvsf{tag}{pid}");
        let (inner, uplink) = (format!("{base}0"), format!("{base}1"));
        assert!(uplink.len() < 16, "interface name {uplink} too long");
        let s = subnet as u16;
        let net = Net {
            ns: ns.clone(),
            uplink: uplink.clone(),
            local4: Ipv4Addr::new(198, 18, subnet, 1),
            remote4: Ipv4Addr::new(198, 18, subnet, 2),
            local6: Ipv6Addr::new(0x2001, 2, 0, s, 0, 0, 0, 1),
            remote6: Ipv6Addr::new(0x2001, 2, 0, s, 0, 0, 0, 2),
        };
        // From here on, drop cleans up whatever was made.
        ip(&["netns", "add", &ns]);
        ip(&["link", "add", &uplink, "type", "veth", "peer", "name", &inner, "netns", &ns]);
        ip(&["-n", &ns, "addr", "add", &format!("{}/24", net.remote4), "dev", &inner]);
        ip(&["-n", &ns, "addr", "add", &format!("{}/64", net.remote6), "dev", &inner, "nodad"]);
        ip(&["-n", &ns, "link", "set", &inner, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["addr", "add", &format!("{}/24", net.local4), "dev", &uplink]);
        ip(&["addr", "add", &format!("{}/64", net.local6), "dev", &uplink, "nodad"]);
        ip(&["link", "set", &uplink, "up"]);
        net
    }

    /// `ping` from the namespace (`from_ns`) or from the root namespace.
    fn ping(&self, from_ns: bool, to: IpAddr) {
        let mut cmd = if from_ns {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &self.ns, "ping"]);
            c
        } else {
            Command::new("ping")
        };
        let out = cmd.args(["-c", "3", "-i", "0.2", "-W", "2"]).arg(to.to_string()).output().expect("running ping");
        let text = String::from_utf8_lossy(&out.stdout);
        let side = if from_ns { "namespace" } else { "root" };
        assert!(
            out.status.success() && text.contains(" 0% packet loss"),
            "ping from the {side} to {to} with the uplink program attached failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A UDP socket of the namespace's host, bound to its address `from`.
    fn udp_in_ns(&self, from: IpAddr) -> UdpSocket {
        in_netns(Some(&self.ns), || UdpSocket::bind(SocketAddr::new(from, 0))).expect("UDP socket in the namespace")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        ip_quiet(&["link", "del", &self.uplink]);
        ip_quiet(&["netns", "del", &self.ns]);
    }
}

/// A kernel UDP socket on the uplink's address, with a short read timeout.
fn kernel_udp(addr: IpAddr, port: u16) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(addr, port))
        .unwrap_or_else(|e| panic!("binding {addr}:{port} in the root namespace: {e}"));
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    s
}

/// What the kernel socket got, if anything, within its read timeout.
fn kernel_got(s: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    match s.recv(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => panic!("kernel UDP recv: {e}"),
    }
}

/// A frame taken by AF_XDP, reduced to what the test checks.
#[derive(Debug)]
struct Taken {
    dst: IpAddr,
    dport: Option<u16>,
    payload: Vec<u8>,
    frame: Vec<u8>,
}

fn parse(frame: &[u8]) -> Taken {
    let p = SlicedPacket::from_ethernet(frame).unwrap_or_else(|e| panic!("unparsable frame {frame:02x?}: {e}"));
    let dst = match &p.net {
        Some(NetSlice::Ipv4(v4)) => IpAddr::V4(v4.header().destination_addr()),
        Some(NetSlice::Ipv6(v6)) => IpAddr::V6(v6.header().destination_addr()),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let (dport, payload) = match &p.transport {
        Some(TransportSlice::Udp(u)) => (Some(u.destination_port()), u.payload().to_vec()),
        _ => (None, Vec::new()),
    };
    Taken { dst, dport, payload, frame: frame.to_vec() }
}

/// Polls `port` until `want` frames arrived or `wait` passed.
fn take(port: &mut AfXdpPort, pool: &mut Pool, want: usize, wait: Duration) -> Vec<Taken> {
    let mut got = Vec::new();
    let mut buf = [Desc::default(); 32];
    let deadline = Instant::now() + wait;
    while got.len() < want && Instant::now() < deadline {
        port.flush(pool).expect("flush");
        let n = port.recv(pool, &mut buf).expect("recv");
        for d in &buf[..n] {
            got.push(parse(pool.data(*d)));
            pool.free(d.addr);
        }
        if n == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    got
}

fn uplink_takes_only_vtep_traffic(tag: &str, subnet: u8, mode: XdpMode) {
    let net = Net::new(tag, subnet);
    let (l4, l6) = (IpAddr::V4(net.local4), IpAddr::V6(net.local6));
    let (r4, r6) = (IpAddr::V4(net.remote4), IpAddr::V6(net.remote6));

    let prog = XdpProgram::attach_uplink(&net.uplink, mode, 1).expect("attach_uplink");
    let expect = if mode == XdpMode::Generic { XdpMode::Generic } else { XdpMode::Native };
    assert_eq!(prog.attached_mode(), expect);
    assert!(prog.is_uplink());
    assert!(has_xdp(&net.uplink));
    prog.add_vtep(l4, VXLAN_PORT).unwrap();
    prog.add_vtep(l6, VXLAN_PORT).unwrap();

    let mut pool = Pool::new(1024).unwrap();
    let umem = Umem::new(pool.region().clone()).unwrap();
    let mut port = AfXdpPort::open(&net.uplink, 0, &umem).expect("open AF_XDP socket");
    port.register(&prog).expect("register");
    port.flush(&mut pool).unwrap();

    // The kernel side: VTEP ports that must stay silent, one that must not.
    let k4 = kernel_udp(l4, VXLAN_PORT);
    let k6 = kernel_udp(l6, VXLAN_PORT);
    let control = kernel_udp(l4, VXLAN_PORT + 1);

    // The host keeps its connectivity: ARP, ND, ICMP both ways.
    net.ping(true, l4);
    net.ping(false, r4);
    net.ping(true, l6);
    net.ping(false, r6);

    // TCP, even to the VXLAN port number, reaches the kernel.
    let listener = TcpListener::bind(SocketAddr::new(l4, VXLAN_PORT)).expect("TCP listener on the VTEP port");
    let dest = SocketAddr::new(l4, VXLAN_PORT);
    let mut client = in_netns(Some(&net.ns), || TcpStream::connect_timeout(&dest, Duration::from_secs(3)))
        .expect("TCP connect from the namespace");
    client.write_all(b"rvsf-tcp").unwrap();
    let (mut server, _) = listener.accept().unwrap();
    server.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 8];
    server.read_exact(&mut buf).expect("TCP data through the uplink");
    assert_eq!(&buf, b"rvsf-tcp");
    server.write_all(b"ok").unwrap();
    let mut ok = [0u8; 2];
    client.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    client.read_exact(&mut ok).expect("TCP reply");
    drop((client, server, listener));

    // UDP: to the VTEPs it goes to AF_XDP, to another port to the kernel.
    let s4 = net.udp_in_ns(r4);
    let s6 = net.udp_in_ns(r6);
    s4.send_to(b"rvsf-vxlan-v4", (l4, VXLAN_PORT)).unwrap();
    s6.send_to(b"rvsf-vxlan-v6", (l6, VXLAN_PORT)).unwrap();
    s4.send_to(b"rvsf-control", (l4, VXLAN_PORT + 1)).unwrap();

    let taken = take(&mut port, &mut pool, 2, Duration::from_secs(3));
    for t in &taken {
        assert!(
            t.dport == Some(VXLAN_PORT) && (t.dst == l4 || t.dst == l6),
            "AF_XDP took a frame that is not VTEP traffic: {t:?}"
        );
    }
    let v4 = taken.iter().find(|t| t.payload == b"rvsf-vxlan-v4");
    let v6 = taken.iter().find(|t| t.payload == b"rvsf-vxlan-v6");
    assert!(v4.is_some() && v6.is_some(), "VTEP datagrams missing on the AF_XDP socket: {taken:?}");
    assert_eq!(kernel_got(&control).as_deref(), Some(&b"rvsf-control"[..]), "kernel lost UDP to another port");
    assert_eq!(kernel_got(&k4), None, "the kernel got IPv4 VTEP traffic too");
    assert_eq!(kernel_got(&k6), None, "the kernel got IPv6 VTEP traffic too");

    // With a socket in slot 0 the production program really redirects.
    let frame4 = v4.unwrap().frame.clone();
    assert_eq!(prog.test_run(&frame4).unwrap(), XDP_REDIRECT);
    assert_eq!(prog.test_run(&v6.unwrap().frame).unwrap(), XDP_REDIRECT);

    // Removing the IPv4 VTEP hands its traffic back to the kernel.
    prog.remove_vtep(l4, VXLAN_PORT).unwrap();
    assert_eq!(prog.test_run(&frame4).unwrap(), XDP_PASS);
    let e = prog.remove_vtep(l4, VXLAN_PORT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    s4.send_to(b"rvsf-after-remove", (l4, VXLAN_PORT)).unwrap();
    assert_eq!(kernel_got(&k4).as_deref(), Some(&b"rvsf-after-remove"[..]), "removed VTEP still taken");
    let late = take(&mut port, &mut pool, 1, Duration::from_millis(200));
    assert!(late.is_empty(), "AF_XDP took traffic of a removed VTEP: {late:?}");

    port.release(&mut pool);
    drop(port);
    assert_eq!(pool.free_count(), pool.frames() as usize, "release() did not return every frame");
    drop(prog);
    assert!(xdp_gone(&net.uplink), "{} still has an XDP program", net.uplink);
}

#[test]
fn native_uplink_takes_only_vtep_traffic() {
    if privileged("native_uplink_takes_only_vtep_traffic") {
        uplink_takes_only_vtep_traffic("n", 40, XdpMode::Auto);
    }
}

#[test]
fn generic_uplink_takes_only_vtep_traffic() {
    if privileged("generic_uplink_takes_only_vtep_traffic") {
        uplink_takes_only_vtep_traffic("g", 41, XdpMode::Generic);
    }
}

#[test]
fn vtep_table_errors_are_clear() {
    if !privileged("vtep_table_errors_are_clear") {
        return;
    }
    let net = Net::new("e", 42);
    let vtep = IpAddr::V4(net.local4);

    let plain = XdpProgram::attach(&net.uplink, XdpMode::Auto, 1).unwrap();
    assert!(!plain.is_uplink());
    let e = plain.add_vtep(vtep, VXLAN_PORT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        e.to_string(),
        format!("{}: adding VTEP {vtep}:4789: not an uplink program (attach it with attach_uplink)", net.uplink)
    );
    // Only one program per interface, whichever kind.
    let e = XdpProgram::attach_uplink(&net.uplink, XdpMode::Auto, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    drop(plain);

    let e = XdpProgram::attach_uplink("rvsfmissing0", XdpMode::Auto, 1).unwrap_err();
    assert_eq!(e.to_string(), "no interface named rvsfmissing0");

    let prog = XdpProgram::attach_uplink(&net.uplink, XdpMode::Auto, 1).unwrap();
    for i in 0..XdpProgram::MAX_VTEPS {
        prog.add_vtep(IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 42, 0, 0, 1, i as u16)), VXLAN_PORT).unwrap();
    }
    // Adding one already there still works when full; a new one does not.
    prog.add_vtep(IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 42, 0, 0, 1, 0)), VXLAN_PORT).unwrap();
    let e = prog.add_vtep(vtep, VXLAN_PORT).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: adding VTEP {vtep}:4789: table full (256 VTEPs at most)", net.uplink));
    let e = prog.remove_vtep(vtep, 8472).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: removing VTEP {vtep}:8472: not registered", net.uplink));
}
