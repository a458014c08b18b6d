//! AF_XDP ports on real veth pairs (needs root).
//!
//! Each test builds its own namespaces and veth pairs, named `rvsx<tag><pid>..`
//! with addresses from 198.18.0.0/15, and a guard removes them even when the
//! test panics. Without root the tests print a notice and pass, unless
//! `CI=true`, where they fail.

mod common;

use common::{has_xdp, ip, ip_quiet, privileged, xdp_gone};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rvs_dataplane::port::afxdp::{AfXdpPort, Umem, XdpMode, XdpProgram};
use rvs_dataplane::port::{Desc, Pool, Port};

/// Namespaces and veth pairs of one test, removed on drop.
struct Net {
    namespaces: Vec<String>,
    links: Vec<String>,
}

impl Net {
    fn empty() -> Net {
        Net { namespaces: Vec::new(), links: Vec::new() }
    }

    /// A namespace `rvsx-<tag>-<pid>-<side>` holding `<base>0` with `addr`,
    /// paired with `<base>1` in the root namespace; returns the root end.
    fn host(&mut self, tag: &str, side: &str, addr: &str) -> String {
        let pid = std::process::id();
        let ns = format!("rvsx-{tag}-{pid}-{side}");
        let base = format!("rvsx{tag}{pid}{side}");
        let (inner, outer) = (format!("{base}0"), format!("{base}1"));
        assert!(outer.len() < 16, "interface name {outer} too long");
        self.namespaces.push(ns.clone());
        ip(&["netns", "add", &ns]);
        self.links.push(outer.clone());
        ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &ns]);
        ip(&["-n", &ns, "addr", "add", addr, "dev", &inner]);
        ip(&["-n", &ns, "link", "set", &inner, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["link", "set", &outer, "up"]);
        outer
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for l in &self.links {
            ip_quiet(&["link", "del", l]);
        }
        for ns in &self.namespaces {
            ip_quiet(&["netns", "del", ns]);
        }
    }
}

/// Forwards between two AF_XDP ports sharing one pool until `stop`;
/// returns the pool after releasing both ports, and the frames forwarded.
fn forward(mut pool: Pool, mut ports: [AfXdpPort; 2], stop: Arc<AtomicBool>) -> (Pool, usize) {
    let mut buf = [Desc::default(); 64];
    let mut forwarded = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        for i in 0..2 {
            let n = ports[i].recv(&mut pool, &mut buf).expect("recv");
            if n > 0 {
                busy = true;
                let (a, b) = ports.split_at_mut(1);
                let out = if i == 0 { &mut b[0] } else { &mut a[0] };
                forwarded += out.send(&mut pool, &buf[..n]);
            }
        }
        for p in ports.iter_mut() {
            p.flush(&mut pool).expect("flush");
        }
        if !busy {
            thread::sleep(Duration::from_micros(200));
        }
    }
    for p in ports.iter_mut() {
        p.release(&mut pool);
    }
    (pool, forwarded)
}

fn ping_through_switch(tag: &str, mode: XdpMode) {
    let mut net = Net::empty();
    let a = net.host(tag, "a", "198.18.0.1/24");
    let b = net.host(tag, "b", "198.18.0.2/24");

    let prog_a = XdpProgram::attach(&a, mode, 1).expect("attach a");
    let prog_b = XdpProgram::attach(&b, mode, 1).expect("attach b");
    let expect = if mode == XdpMode::Generic { XdpMode::Generic } else { XdpMode::Native };
    assert_eq!(prog_a.attached_mode(), expect);
    assert!(has_xdp(&a) && has_xdp(&b));

    let pool = Pool::new(4096).unwrap();
    let umem = Umem::new(pool.region().clone()).unwrap();
    let pa = AfXdpPort::open(&a, 0, &umem).expect("open a");
    let pb = AfXdpPort::open(&b, 0, &umem).expect("open b");
    assert_eq!(umem.sockets(), 2);
    pa.register(&prog_a).unwrap();
    pb.register(&prog_b).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let fwd = thread::spawn(move || forward(pool, [pa, pb], s));

    let ns_a = format!("rvsx-{tag}-{}-a", std::process::id());
    let out = Command::new("ip")
        .args(["netns", "exec", &ns_a, "ping", "-c", "5", "-i", "0.2", "-W", "2"])
        .arg("198.18.0.2")
        .output()
        .expect("running ping");
    stop.store(true, Ordering::Relaxed);
    let (pool, forwarded) = fwd.join().expect("forwarder panicked");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(" 0% packet loss"),
        "ping through the AF_XDP ports failed ({forwarded} frames forwarded):\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 5 requests + 5 replies, plus ARP.
    assert!(forwarded >= 10, "only {forwarded} frames forwarded");
    assert_eq!(pool.free_count(), pool.frames() as usize, "release() did not return every frame");
    assert_eq!(umem.sockets(), 0);

    drop(prog_a);
    drop(prog_b);
    assert!(xdp_gone(&a), "{a} still has an XDP program");
    assert!(xdp_gone(&b), "{b} still has an XDP program");
}

#[test]
fn ping_through_native_afxdp_ports() {
    if privileged("ping_through_native_afxdp_ports") {
        ping_through_switch("n", XdpMode::Auto);
    }
}

#[test]
fn ping_through_generic_afxdp_ports() {
    if privileged("ping_through_generic_afxdp_ports") {
        ping_through_switch("g", XdpMode::Generic);
    }
}

#[test]
fn attach_errors_are_clear() {
    if !privileged("attach_errors_are_clear") {
        return;
    }
    let mut net = Net::empty();
    let a = net.host("e", "a", "198.18.1.1/24");

    let e = XdpProgram::attach("rvsxmissing0", XdpMode::Auto, 1).unwrap_err();
    assert_eq!(e.to_string(), "no interface named rvsxmissing0");

    let first = XdpProgram::attach(&a, XdpMode::Native, 1).unwrap();
    for mode in [XdpMode::Native, XdpMode::Auto, XdpMode::Generic] {
        let e = XdpProgram::attach(&a, mode, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{a} already has an XDP program attached (owned by another program)"),
            "mode {mode:?}"
        );
    }
    assert!(first.register(1, 0).is_err(), "queue beyond the map");
    drop(first);
    assert!(xdp_gone(&a));
    // Free again once the owner let go.
    let again = XdpProgram::attach(&a, XdpMode::Native, 1).unwrap();
    assert!(has_xdp(&a));
    drop(again);

    let pool = Pool::new(64).unwrap();
    let umem = Umem::new(pool.region().clone()).unwrap();
    let e = AfXdpPort::open("rvsxmissing0", 0, &umem).unwrap_err();
    assert_eq!(e.to_string(), "no interface named rvsxmissing0");
    let e = AfXdpPort::open(&a, 7, &umem).unwrap_err();
    assert!(e.to_string().contains("queue 7"), "{e}");
    assert_eq!(umem.sockets(), 0);
}

/// Helper for `link_detaches_when_the_owner_is_killed`: does nothing unless
/// run by it with `RVSX_KILL_HELPER_IF` set.
#[test]
fn kill_helper() {
    let Ok(dev) = std::env::var("RVSX_KILL_HELPER_IF") else {
        return;
    };
    let _prog = XdpProgram::attach(&dev, XdpMode::Auto, 1).expect("helper attach");
    println!("RVSX_ATTACHED");
    thread::sleep(Duration::from_secs(60));
}

#[test]
fn link_detaches_when_the_owner_is_killed() {
    if !privileged("link_detaches_when_the_owner_is_killed") {
        return;
    }
    let mut net = Net::empty();
    let a = net.host("k", "a", "198.18.2.1/24");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_helper", "--nocapture", "--test-threads=1"])
        .env("RVSX_KILL_HELPER_IF", &a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the helper");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attached = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        if line.contains("RVSX_ATTACHED") {
            attached = true;
            break;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    if !attached {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!("helper did not attach: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(has_xdp(&a), "helper attached but {a} shows no XDP program");
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert!(xdp_gone(&a), "XDP program survived its owner's SIGKILL");
}

/// A veth pair with both ends in the root namespace, removed on drop.
fn pair(net: &mut Net, tag: &str) -> (String, String) {
    let pid = std::process::id();
    let (x, y) = (format!("rvsx{tag}{pid}x"), format!("rvsx{tag}{pid}y"));
    net.links.push(x.clone());
    ip(&["link", "add", &x, "type", "veth", "peer", "name", &y]);
    ip(&["link", "set", &x, "up"]);
    ip(&["link", "set", &y, "up"]);
    (x, y)
}

#[test]
fn umem_is_shared_and_registered_again_after_churn() {
    if !privileged("umem_is_shared_and_registered_again_after_churn") {
        return;
    }
    let mut net = Net::empty();
    let (x, y) = pair(&mut net, "u");
    let mut pool = Pool::new(256).unwrap();
    let umem = Umem::new(pool.region().clone()).unwrap();
    let small = rvs_dataplane::port::afxdp::XskConfig { ring_size: 64, fill_target: 32 };
    // x registers, y shares x.
    let mut px = AfXdpPort::open_with(&x, 0, &umem, small).unwrap();
    let mut py = AfXdpPort::open_with(&y, 0, &umem, small).unwrap();
    px.flush(&mut pool).unwrap();
    py.flush(&mut pool).unwrap();
    assert_eq!(px.held() + py.held(), 64);
    // The first socket goes; a new one shares the survivor.
    px.release(&mut pool);
    drop(px);
    assert_eq!(umem.sockets(), 1);
    let mut px = AfXdpPort::open_with(&x, 0, &umem, small).unwrap();
    px.flush(&mut pool).unwrap();
    px.release(&mut pool);
    py.release(&mut pool);
    drop((px, py));
    assert_eq!(umem.sockets(), 0);
    assert_eq!(pool.free_count(), 256);
    // All gone: the next socket registers the region again.
    let mut px = AfXdpPort::open_with(&x, 0, &umem, small).unwrap();
    px.flush(&mut pool).unwrap();
    assert!(px.xdp_stats().is_ok());
    px.release(&mut pool);
    assert!(px.xdp_stats().is_err());
    assert_eq!(pool.free_count(), 256);
}

/// The bulk test's frame `seq`: a length from 60 to 1514 bytes and every
/// byte after the sequence number derived from it, so that a frame that
/// arrives cut, shifted or mixed with another is caught.
fn bulk_frame(seq: u32, f: &mut [u8]) {
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
}

fn bulk_len(seq: u32) -> u32 {
    60 + seq.wrapping_mul(7919) % 1455
}

#[test]
fn bulk_transfer_over_a_veth_pair() {
    if !privileged("bulk_transfer_over_a_veth_pair") {
        return;
    }
    const FRAMES: u32 = 50_000;
    // Frames sent and not yet received. Below the veth's ring (256) and the
    // receiver's fill ring, so the kernel has no reason to drop any: the
    // test paces itself by what arrives, whatever the machine's speed.
    const WINDOW: u32 = 128;
    // No progress for this long is a failure, not a slow machine.
    const STALL: Duration = Duration::from_secs(10);
    let mut net = Net::empty();
    let (x, y) = pair(&mut net, "t");
    let prog = XdpProgram::attach(&y, XdpMode::Auto, 1).unwrap();
    let mut pool = Pool::new(8192).unwrap();
    let umem = Umem::new(pool.region().clone()).unwrap();
    let mut tx = AfXdpPort::open(&x, 0, &umem).unwrap();
    let mut rx = AfXdpPort::open(&y, 0, &umem).unwrap();
    rx.register(&prog).unwrap();

    let mut batch = [Desc::default(); 64];
    let mut got = [Desc::default(); 256];
    let (mut next, mut received, mut waits) = (0u32, 0u32, 0u64);
    let start = Instant::now();
    let mut progress = start;
    rx.flush(&mut pool).unwrap();
    while received < FRAMES {
        assert!(
            progress.elapsed() < STALL,
            "no frame for {STALL:?}: {received} of {FRAMES} received, {next} queued, tx {:?}, rx {:?}",
            tx.counters(),
            rx.xdp_stats().unwrap()
        );
        let room = (FRAMES - next).min(WINDOW - (next - received)).min(batch.len() as u32) as usize;
        let mut n = 0;
        while n < room {
            // A pool momentarily empty is back-pressure: send what we have
            // and take completions back below.
            let Some(chunk) = pool.alloc() else {
                waits += 1;
                break;
            };
            let d = Desc { addr: chunk + rvs_dataplane::port::HEADROOM as u64, len: bulk_len(next + n as u32) };
            bulk_frame(next + n as u32, pool.data_mut(d));
            batch[n] = d;
            n += 1;
        }
        // Those the TX ring has no room for come back to the pool: send
        // them again next round.
        next += tx.send(&mut pool, &batch[..n]) as u32;
        tx.flush(&mut pool).unwrap();
        let n = rx.recv(&mut pool, &mut got).unwrap();
        for d in &got[..n] {
            let f = pool.data(*d);
            if f.len() < 18 || f[12..14] != [0x88, 0xb5] {
                // The host's own traffic on the link (IPv6 ND, MLD).
                pool.free(d.addr);
                continue;
            }
            let seq = u32::from_be_bytes(f[14..18].try_into().unwrap());
            assert_eq!(seq, received, "frames must arrive once each and in order");
            assert_eq!(d.len, bulk_len(seq), "length of frame {seq}");
            let mut want = vec![0u8; d.len as usize];
            bulk_frame(seq, &mut want);
            assert!(f == want.as_slice(), "frame {seq} arrived changed");
            pool.free(d.addr);
            received += 1;
            progress = Instant::now();
        }
        rx.flush(&mut pool).unwrap();
    }
    // The last completions: nothing else is sent now.
    while tx.in_flight() > 0 {
        assert!(progress.elapsed() < STALL, "TX completions missing: {} in flight", tx.in_flight());
        tx.flush(&mut pool).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "bulk: {received} of {FRAMES} received in order in {secs:.2}s ({:.3} Mpps), {waits} waits for buffers, \
         tx {:?}, rx {:?}",
        received as f64 / secs / 1e6,
        tx.counters(),
        rx.xdp_stats().unwrap(),
    );
    tx.release(&mut pool);
    rx.release(&mut pool);
    assert_eq!(pool.free_count(), 8192, "frames lost");
}

#[test]
fn auto_mode_falls_back_to_generic() {
    if !privileged("auto_mode_falls_back_to_generic") {
        return;
    }
    let mut net = Net::empty();
    let (x, y) = pair(&mut net, "m");
    // Native XDP on veth refuses a peer MTU above 3506 (ERANGE).
    ip(&["link", "set", &x, "mtu", "9000"]);
    ip(&["link", "set", &y, "mtu", "9000"]);
    let e = XdpProgram::attach(&x, XdpMode::Native, 1).unwrap_err();
    assert!(e.to_string().starts_with(&format!("{x}: attaching XDP (native): ")), "{e}");
    let prog = XdpProgram::attach(&x, XdpMode::Auto, 1).unwrap();
    assert_eq!(prog.attached_mode(), XdpMode::Generic);
    assert!(has_xdp(&x));
    drop(prog);
    assert!(xdp_gone(&x));
}
