//! Tap port against the real kernel: each test makes its own network
//! namespace, creates taps inside it and removes everything on the way out
//! (also on panic). Needs root; skipped otherwise, except under `CI=true`,
//! where a missing privilege fails the test.

mod common;

use common::privileged;
use rvs_dataplane::port::pool::MAX_FRAME;
use rvs_dataplane::port::tap::{tap_delete, TapPort};
use rvs_dataplane::port::{Desc, Pool, Port, HEADROOM};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A network namespace deleted on drop.
struct Ns(String);

impl Ns {
    fn new() -> Ns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("rvsdt{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Ns(name)
    }

    fn ip(&self, args: &[&str]) -> std::process::Output {
        let mut v = vec!["ip", "-n", &self.0];
        v.extend_from_slice(args);
        run(&v)
    }

    fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.0]);
    }
}

/// Kills and reaps a child on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn sh(args: &[&str]) {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Receives frames until `want` accepts one (returned) or `timeout` passes.
fn recv_until(
    tap: &mut TapPort,
    pool: &mut Pool,
    timeout: Duration,
    mut want: impl FnMut(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let end = Instant::now() + timeout;
    let mut out = [Desc::default(); 16];
    while Instant::now() < end {
        let n = tap.recv(pool, &mut out).expect("recv");
        let mut found = None;
        for d in &out[..n] {
            let f = pool.data(*d).to_vec();
            pool.free(d.addr);
            if found.is_none() && want(&f) {
                found = Some(f);
            }
        }
        if found.is_some() {
            return found;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Copies `frame` into a pool chunk at HEADROOM.
fn put(pool: &mut Pool, frame: &[u8]) -> Desc {
    let chunk = pool.alloc().expect("pool empty");
    let d = Desc { addr: chunk + HEADROOM as u64, len: frame.len() as u32 };
    pool.data_mut(d).copy_from_slice(frame);
    d
}

fn is_arp_request_for(f: &[u8], ip: [u8; 4]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 1] && f[38..42] == ip
}

fn is_echo_request_to(f: &[u8], mac: [u8; 6]) -> bool {
    f.len() >= 42 && f[0..6] == mac && f[12..14] == [0x08, 0x00] && f[23] == 1 && f[34] == 8
}

/// An ARP reply from `mac`/`ip` answering `req`.
fn arp_reply(req: &[u8], mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    let mut r = req[..42].to_vec();
    r[0..6].copy_from_slice(&req[6..12]);
    r[6..12].copy_from_slice(&mac);
    r[20..22].copy_from_slice(&[0, 2]);
    r[22..28].copy_from_slice(&mac);
    r[28..32].copy_from_slice(&ip);
    r[32..38].copy_from_slice(&req[22..28]);
    r[38..42].copy_from_slice(&req[28..32]);
    r
}

/// The echo reply to an IPv4 echo request (no IP options).
fn echo_reply(req: &[u8]) -> Vec<u8> {
    let mut r = req.to_vec();
    r[0..6].copy_from_slice(&req[6..12]);
    r[6..12].copy_from_slice(&req[0..6]);
    r[26..30].copy_from_slice(&req[30..34]);
    r[30..34].copy_from_slice(&req[26..30]);
    r[34] = 0;
    // Type 8 -> 0 lowers the sum by 0x0800: raise the checksum as much.
    let c = u16::from_be_bytes([r[36], r[37]]) as u32 + 0x0800;
    let c = ((c & 0xffff) + (c >> 16)) as u16;
    r[36..38].copy_from_slice(&c.to_be_bytes());
    r
}

#[test]
fn ping_through_tap_in_namespace() {
    if !privileged("tap tests") {
        return;
    }
    let ns = Ns::new();
    let mut tap = TapPort::open("rvstap0", Some(&ns.0)).expect("open tap");
    assert_eq!(tap.netns(), Some(ns.0.as_str()));
    let mut tx = tap.try_clone().expect("clone");
    let o = ns.ip(&["-o", "link", "show", "rvstap0"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(",UP"), "{o:?}");
    sh(&["ip", "-n", &ns.0, "addr", "add", "198.18.200.1/24", "dev", "rvstap0"]);

    let mut pool = Pool::new(64).unwrap();
    let ping =
        ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.200.2"]).stdout(Stdio::null()).spawn().unwrap();
    let mut ping = ChildGuard(ping);

    // Play the peer: answer the kernel's ARP request, then its echo
    // requests, until ping is done.
    let peer_ip = [198, 18, 200, 2];
    let peer_mac = [0x02, 0, 0, 0, 0xc8, 2];
    let (mut arps, mut echoes) = (0, 0);
    let mut out = [Desc::default(); 16];
    let end = Instant::now() + Duration::from_secs(8);
    let status = loop {
        if let Some(st) = ping.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "ping did not finish");
        let n = tap.recv(&mut pool, &mut out).expect("recv");
        for &d in &out[..n] {
            let f = pool.data(d).to_vec();
            pool.free(d.addr);
            let reply = if is_arp_request_for(&f, peer_ip) {
                arps += 1;
                arp_reply(&f, peer_mac, peer_ip)
            } else if is_echo_request_to(&f, peer_mac) {
                echoes += 1;
                echo_reply(&f)
            } else {
                continue;
            };
            let d = put(&mut pool, &reply);
            assert_eq!(tx.send(&mut pool, &[d]), 1);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(arps >= 1, "saw no ARP request");
    assert!(echoes >= 1, "saw no echo request");
    assert!(status.success(), "ping got no reply through the tap");
    assert_eq!(pool.free_count(), 64, "every buffer back in the pool");
}

fn link_exists(ns: &Ns, name: &str) -> bool {
    ns.ip(&["link", "show", name]).status.success()
}

#[test]
fn persists_adopts_and_deletes() {
    if !privileged("tap tests") {
        return;
    }
    let ns = Ns::new();
    drop(TapPort::open("rvstap1", Some(&ns.0)).expect("create"));
    assert!(link_exists(&ns, "rvstap1"), "tap gone after close");

    // Adopted after a restart, and still up.
    let tap = TapPort::open("rvstap1", Some(&ns.0)).expect("adopt");
    let o = ns.ip(&["-o", "link", "show", "rvstap1"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(",UP"), "{o:?}");

    // A second owner is refused while the first holds it.
    let e = TapPort::open("rvstap1", Some(&ns.0)).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    assert!(tap_delete("rvstap1", Some(&ns.0)).is_err());

    drop(tap);
    tap_delete("rvstap1", Some(&ns.0)).expect("delete");
    assert!(!link_exists(&ns, "rvstap1"), "tap left after delete");
}

#[test]
fn adopts_multi_queue_tap() {
    if !privileged("tap tests") {
        return;
    }
    let ns = Ns::new();
    sh(&["ip", "-n", &ns.0, "tuntap", "add", "dev", "rvsmq0", "mode", "tap", "multi_queue"]);
    let tap = TapPort::open("rvsmq0", Some(&ns.0)).expect("adopt multi-queue tap");
    let _second = tap.try_clone().expect("clone");
    drop(tap);
    assert!(link_exists(&ns, "rvsmq0"));
}

#[test]
fn refuses_other_devices() {
    if !privileged("tap tests") {
        return;
    }
    let ns = Ns::new();
    sh(&["ip", "-n", &ns.0, "link", "add", "rvsve0", "type", "veth", "peer", "name", "rvsve1"]);
    let e = TapPort::open("rvsve0", Some(&ns.0)).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("exists and is not a tap device"), "{s}");
    assert!(s.contains(&ns.0), "{s}");

    sh(&["ip", "-n", &ns.0, "tuntap", "add", "dev", "rvstun0", "mode", "tun"]);
    let e = TapPort::open("rvstun0", Some(&ns.0)).unwrap_err();
    assert!(e.to_string().contains("is not a tap device"), "{e}");
}

#[test]
fn drops_frames_larger_than_a_chunk() {
    if !privileged("tap tests") {
        return;
    }
    let ns = Ns::new();
    let mut tap = TapPort::open("rvstap2", Some(&ns.0)).expect("open tap");
    for args in [
        &["link", "set", "rvstap2", "mtu", "4000"][..],
        &["addr", "add", "198.18.201.1/24", "dev", "rvstap2"],
        &["neigh", "add", "198.18.201.2", "lladdr", "02:00:00:00:c9:02", "dev", "rvstap2"],
    ] {
        let o = ns.ip(args);
        assert!(o.status.success(), "{args:?}: {o:?}");
    }
    let mut pool = Pool::new(32).unwrap();
    let big = 2500;
    let o = ns.exec(&["ping", "-c", "1", "-W", "1", "-s", &big.to_string(), "198.18.201.2"]).output().unwrap();
    assert!(!o.status.success());
    let small = ns.exec(&["ping", "-c", "1", "-W", "1", "-s", "100", "198.18.201.2"]).output().unwrap();
    assert!(!small.status.success());
    let f = recv_until(&mut tap, &mut pool, Duration::from_secs(2), |f| f.len() == 14 + 20 + 8 + 100)
        .expect("the small echo request");
    assert!(f.len() <= MAX_FRAME);
    assert_eq!(tap.oversize_drops(), 1, "the big one is counted, not cut");
    assert_eq!(pool.free_count(), 32);
}

#[test]
fn send_skips_runts_and_counts_written() {
    if !privileged("tap tests") {
        return;
    }
    let ns = Ns::new();
    let mut tap = TapPort::open("rvstap3", Some(&ns.0)).expect("open tap");
    let mut pool = Pool::new(8).unwrap();
    let mut good = vec![0xff; 6];
    good.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x88, 0xb5]);
    good.resize(60, 0);
    let frames = [put(&mut pool, &good), put(&mut pool, &[1, 2, 3]), put(&mut pool, &good)];
    assert_eq!(tap.send(&mut pool, &frames), 2);
    assert_eq!(pool.free_count(), 8);
    let o = ns.ip(&["-s", "-j", "link", "show", "rvstap3"]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("\"rx\":{\"bytes\":120,\"packets\":2"), "{s}");
}
