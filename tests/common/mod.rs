//! Shared harness of the integration tests: network namespaces, veth pairs,
//! a running `rvsd`, `rvsctl`, ping, iperf3, tcpdump and a raw frame sender.
//!
//! Every resource is a guard that removes what it made on drop (also when
//! a test panics). Declare namespaces and veths first and the [`Rvsd`]
//! last, so the daemon stops before its interfaces go away.
//!
//! Tests need root and iproute2, ping, iperf3 and tcpdump: without them a
//! test prints "skipped: needs root" and passes, except under `CI=true`,
//! where it fails (CI must never skip quietly).
//!
//! What the tests assume about `rvsctl --json` output lives in [`json`],
//! and nowhere else.
#![allow(dead_code)]

use rvs_dataplane::wire::{EtherType, EthernetRepr, MacAddr};
use std::ffi::CString;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub mod cni;
pub mod json;
pub mod podman;

/// True if the test may run (root, and the tools the harness uses); see
/// [`rvs_dataplane::testing::require_root`].
pub fn require_root() -> bool {
    rvs_dataplane::testing::require_root("integration test", &["ip", "ping", "iperf3", "tcpdump"])
}

/// Serializes tests that run an `rvsd`: a 2-core machine cannot poll for
/// several daemons at once. Take it first thing in a test and hold it.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A short tag unique in this machine for the life of this process:
/// pid and a counter in base 36 (at most 7 characters).
pub fn tag() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{}{}", base36(std::process::id()), base36(N.fetch_add(1, Ordering::Relaxed)))
}

fn base36(mut n: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap()
}

/// Runs a command, returns its output (panics only if it cannot start).
pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A network namespace named `rvst<pid>x<n>`, deleted (with whatever
/// processes still run in it) on drop.
#[derive(Debug)]
pub struct Netns {
    /// The name under /var/run/netns.
    pub name: String,
}

impl Netns {
    /// Creates the namespace and sets its loopback up.
    pub fn new() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("rvst{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        run_ok(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A command to run inside the namespace.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs a command inside the namespace.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap_or_else(|e| panic!("cannot run {args:?} in {}: {e}", self.name))
    }

    /// Runs a command inside the namespace that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{args:?} in {} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `ip -n NS ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        run_ok(&v)
    }

    /// True if interface `dev` exists in the namespace.
    pub fn has_link(&self, dev: &str) -> bool {
        run(&["ip", "-n", &self.name, "link", "show", "dev", dev]).status.success()
    }

    /// The MAC address of `dev` in the namespace, lower case.
    pub fn mac(&self, dev: &str) -> String {
        let out = self.ip(&["-j", "link", "show", "dev", dev]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
        v[0]["address"].as_str().expect("address in ip -j link output").to_lowercase()
    }

    /// Adds `addr` (CIDR; IPv6 without duplicate address detection) to `dev`
    /// and sets it up.
    pub fn addr_add(&self, dev: &str, addr: &str) {
        if addr.contains(':') {
            self.ip(&["addr", "add", addr, "dev", dev, "nodad"]);
        } else {
            self.ip(&["addr", "add", addr, "dev", dev]);
        }
        self.ip(&["link", "set", dev, "up"]);
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(o) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: plain signal to a process that lives in our
                    // test namespace (started by this test).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// A veth pair: `host` in the root namespace (the end a switch port takes)
/// and `inner` inside a namespace, both up. Deleted on drop.
#[derive(Debug)]
pub struct Veth {
    /// Root-namespace end.
    pub host: String,
    /// End inside the namespace.
    pub inner: String,
    /// The namespace `inner` is in.
    pub ns: String,
}

impl Veth {
    /// A pair with `inner` in `ns` carrying `addrs` (CIDR, IPv4 from
    /// 198.18.0.0/15 or IPv6 from 2001:2::/48).
    pub fn new(ns: &Netns, addrs: &[&str]) -> Veth {
        Veth::with_queues(ns, addrs, 1)
    }

    /// Like [`Veth::new`], with `queues` receive and `queues` transmit
    /// queues on both ends (veth here allows at most 2; XDP attaches to an
    /// end only if it has as many rx queues as the peer has tx queues).
    pub fn with_queues(ns: &Netns, addrs: &[&str], queues: u32) -> Veth {
        let t = tag();
        let (host, inner) = (format!("rv{t}h"), format!("rv{t}n"));
        let q = queues.to_string();
        let nq = ["numrxqueues", &q, "numtxqueues", &q];
        let mut args = vec!["ip", "link", "add", &host];
        args.extend_from_slice(&nq);
        args.extend_from_slice(&["type", "veth", "peer", "name", &inner]);
        args.extend_from_slice(&nq);
        args.extend_from_slice(&["netns", &ns.name]);
        run_ok(&args);
        let v = Veth { host, inner, ns: ns.name.clone() };
        run_ok(&["ip", "link", "set", &v.host, "up"]);
        ns.ip(&["link", "set", &v.inner, "up"]);
        for a in addrs {
            ns.addr_add(&v.inner, a);
        }
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.host]);
    }
}

/// Connects namespaces `a` and `b` with a veth pair, `a_dev` in `a` and
/// `b_dev` in `b`, both up (the pair goes away with either namespace).
pub fn veth_between(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) {
    run_ok(&["ip", "link", "add", a_dev, "netns", &a.name, "type", "veth", "peer", "name", b_dev, "netns", &b.name]);
    a.ip(&["link", "set", a_dev, "up"]);
    b.ip(&["link", "set", b_dev, "up"]);
}

/// A host behind a switch: a namespace whose `eth0` has one address.
pub struct Guest {
    pub ns: Netns,
    pub ip: String,
}

impl Guest {
    /// A host with `eth0` (address `cidr`, MTU `mtu`) whose other end is
    /// `port` in namespace `machine`.
    pub fn new(machine: &Netns, port: &str, cidr: &str, mtu: &str) -> Guest {
        let ns = Netns::new();
        veth_between(machine, port, &ns, "eth0");
        ns.ip(&["link", "set", "eth0", "mtu", mtu]);
        ns.addr_add("eth0", cidr);
        Guest { ns, ip: cidr.split('/').next().unwrap().to_string() }
    }

    pub fn mac(&self) -> String {
        self.ns.mac("eth0")
    }
}

/// A Linux host with the Flannel-style setup: kernel bridge `bridge` with
/// a vxlan device `dev` (VNI `vni`, dstport 4789) toward `remote` over `ul`.
pub fn configure_kernel_vtep(machine: &Netns, bridge: &str, dev: &str, vni: &str, local: &str, remote: &str) {
    machine.ip(&["link", "add", bridge, "type", "bridge"]);
    machine.ip(&["link", "set", bridge, "up"]);
    machine.ip(&[
        "link", "add", dev, "type", "vxlan", "id", vni, "local", local, "remote", remote, "dstport", "4789", "dev",
        "ul",
    ]);
    machine.ip(&["link", "set", dev, "master", bridge]);
    machine.ip(&["link", "set", dev, "up"]);
}

/// A host: its own namespace with one interface and one address.
#[derive(Debug)]
pub struct Host {
    /// The host's veth, if it has one (tap hosts do not).
    pub veth: Option<Veth>,
    /// The host's namespace.
    pub ns: Netns,
    /// The host's interface inside `ns`.
    pub dev: String,
    /// The host's address, without prefix length.
    pub ip: String,
    cidr: String,
}

impl Host {
    /// A host on a veth pair; the switch port is `self.port()`.
    pub fn on_veth(cidr: &str) -> Host {
        Host::on_veth_queues(cidr, 1)
    }

    /// A host on a veth pair with `queues` rx and tx queues on both ends
    /// (see [`Veth::with_queues`]); the switch port is `self.port()`.
    pub fn on_veth_queues(cidr: &str, queues: u32) -> Host {
        let ns = Netns::new();
        let veth = Veth::with_queues(&ns, &[cidr], queues);
        Host {
            dev: veth.inner.clone(),
            veth: Some(veth),
            ns,
            ip: cidr.split('/').next().unwrap().to_string(),
            cidr: cidr.to_string(),
        }
    }

    /// A host whose interface will be a tap that rvsd creates in its
    /// namespace (`rvsctl port add BR <dev> --type tap --netns <ns>`);
    /// call [`Host::configure_tap`] once it exists.
    pub fn on_tap(cidr: &str) -> Host {
        Host {
            veth: None,
            ns: Netns::new(),
            dev: format!("rvt{}", tag()),
            ip: cidr.split('/').next().unwrap().to_string(),
            cidr: cidr.to_string(),
        }
    }

    /// Gives the tap its address (the tap must exist).
    pub fn configure_tap(&self) {
        self.ns.addr_add(&self.dev, &self.cidr);
    }

    /// The name of the switch port for this host: the veth's root end, or
    /// the tap.
    pub fn port(&self) -> &str {
        match &self.veth {
            Some(v) => &v.host,
            None => &self.dev,
        }
    }

    /// The host's MAC address.
    pub fn mac(&self) -> String {
        self.ns.mac(&self.dev)
    }
}

/// `ping -c COUNT -i 0.2 -W 1 ADDR` from `ns`: true if every reply came.
pub fn ping(ns: &Netns, addr: &str, count: u32) -> bool {
    ns.run(&["ping", "-n", "-q", "-c", &count.to_string(), "-i", "0.2", "-W", "1", addr]).status.success()
}

/// Pings from `ns` every 0.1 s until one reply comes or `within` (whole
/// seconds, at least 1) passes.
pub fn ping_within(ns: &Netns, addr: &str, within: Duration) -> bool {
    let secs = within.as_secs_f64().ceil().max(1.0) as u64;
    ns.run(&["ping", "-n", "-q", "-c", "1", "-i", "0.1", "-w", &secs.to_string(), addr]).status.success()
}

/// Waits (up to 10 s) until `ns` reaches `addr`, then requires
/// `count` pings out of `count` to succeed.
pub fn ping_settled(ns: &Netns, addr: &str, count: u32) -> bool {
    ping_within(ns, addr, Duration::from_secs(10)) && ping(ns, addr, count)
}

/// Kills and reaps a child process on drop.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Waits up to `timeout` for the child to exit; kills it otherwise.
    /// Returns stdout (if piped) and whether it exited by itself.
    pub fn finish(mut self, timeout: Duration) -> (String, bool) {
        let end = Instant::now() + timeout;
        let mut exited = false;
        while Instant::now() < end {
            if self.0.try_wait().ok().flatten().is_some() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut out = String::new();
        if let Some(mut s) = self.0.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        (out, exited)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An iperf3 server for one test in `ns` on `addr`; killed on drop.
pub struct Iperf3Server(ChildGuard);

impl Iperf3Server {
    /// Starts `iperf3 -s -1 -B addr` and waits until it listens.
    pub fn start(ns: &Netns, addr: &str) -> Iperf3Server {
        let child = ns
            .cmd(&["iperf3", "-s", "-1", "-B", addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iperf3 server");
        let guard = ChildGuard(child);
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            let out = ns.run(&["ss", "-Hltn", "sport", "=", ":5201"]);
            if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return Iperf3Server(guard);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("iperf3 server in {} did not start listening", ns.name);
    }
}

/// Runs `iperf3 -c addr -t secs -J` from `ns` (against an
/// [`Iperf3Server`]) and returns the received rate in bit/s.
pub fn iperf3(ns: &Netns, addr: &str, secs: u32) -> Result<f64, String> {
    let o = ns.run(&["iperf3", "-c", addr, "-t", &secs.to_string(), "-J"]);
    let text = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("iperf3 output is not JSON ({e}): {text}"))?;
    if let Some(err) = v["error"].as_str() {
        return Err(format!("iperf3: {err}"));
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| format!("no end.sum_received.bits_per_second in: {text}"))
}

/// A running `tcpdump -l -n -e -i DEV -c COUNT FILTER...` (root namespace
/// if `ns` is None), started and ready to capture.
pub struct Tcpdump(ChildGuard);

impl Tcpdump {
    /// Starts tcpdump and waits for "listening on".
    pub fn start(ns: Option<&Netns>, dev: &str, count: u32, filter: &[&str]) -> Tcpdump {
        Tcpdump::start_dir(ns, dev, "in", count, filter)
    }

    /// Like `start`, for frames in direction `dir` ("in", "out" or "inout").
    pub fn start_dir(ns: Option<&Netns>, dev: &str, dir: &str, count: u32, filter: &[&str]) -> Tcpdump {
        let c = count.to_string();
        let mut args = vec!["tcpdump", "-l", "-n", "-e", "-Q", dir, "-i", dev, "-c", &c];
        args.extend_from_slice(filter);
        let mut cmd = match ns {
            Some(ns) => ns.cmd(&args),
            None => {
                let mut c = Command::new(args[0]);
                c.args(&args[1..]);
                c
            }
        };
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start tcpdump");
        let stderr = child.stderr.take().unwrap();
        let guard = ChildGuard(child);
        let mut lines = BufReader::new(stderr).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("listening on") => break,
                Some(Ok(_)) => continue,
                _ => panic!("tcpdump on {dev} did not start"),
            }
        }
        // Keep draining stderr so tcpdump never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Tcpdump(guard)
    }

    /// Waits up to `timeout` for the capture to end; returns its lines.
    pub fn finish(self, timeout: Duration) -> Vec<String> {
        let (out, _) = self.0.finish(timeout);
        out.lines().map(str::to_string).collect()
    }
}

/// A running `tcpdump -U -w FILE` on `dev` in `ns`, started and ready.
pub struct PcapCapture {
    dump: Tcpdump,
    /// Where the frames are written.
    pub file: PathBuf,
}

impl PcapCapture {
    /// Starts capturing `count` frames that match `filter` into a file in
    /// the temporary directory.
    pub fn start(ns: &Netns, dev: &str, count: u32, filter: &[&str]) -> PcapCapture {
        let file = std::env::temp_dir().join(format!("rvst-{}.pcap", tag()));
        let f = file.to_str().expect("utf-8 temp path").to_string();
        let mut args = vec!["-U", "-Z", "root", "-w", &f];
        args.extend_from_slice(filter);
        PcapCapture { dump: Tcpdump::start_dir(Some(ns), dev, "inout", count, &args), file }
    }

    /// Waits up to `timeout` for `count` frames (or stops the capture),
    /// then returns the frames captured.
    pub fn finish(self, timeout: Duration) -> Vec<Vec<u8>> {
        self.dump.finish(timeout);
        let frames = read_pcap(&self.file);
        let _ = std::fs::remove_file(&self.file);
        frames
    }
}

/// The frames of a classic pcap file (either byte order, any timestamp
/// precision); panics on a malformed file.
pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(data.len() >= 24, "{}: no pcap header", path.display());
    let le = match &data[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        m => panic!("{}: not a pcap file (magic {m:02x?})", path.display()),
    };
    let u32_at = |off: usize| {
        let b: [u8; 4] = data[off..off + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let len = u32_at(off + 8) as usize;
        let start = off + 16;
        assert!(start + len <= data.len(), "{}: record cut short", path.display());
        frames.push(data[start..start + len].to_vec());
        off = start + len;
    }
    frames
}

/// An AF_PACKET socket bound for sending out of one interface of a
/// namespace. Open it on the thread that sends: it moves that thread into
/// the namespace.
struct RawSocket {
    fd: OwnedFd,
    sll: libc::sockaddr_ll,
}

impl RawSocket {
    /// Joins `ns_path`'s network namespace (this thread only) and opens a
    /// send-only raw socket on `dev` there.
    fn open_in(ns_path: &CString, dev: &CString) -> Result<RawSocket, String> {
        let err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
        // SAFETY: opens a path given as a valid C string; checked below.
        let nsfd = unsafe { libc::open(ns_path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if nsfd < 0 {
            return Err(err("open netns"));
        }
        // SAFETY: `nsfd` was just opened and is owned by nothing else.
        let nsfd = unsafe { OwnedFd::from_raw_fd(nsfd) };
        // SAFETY: joins the namespace on the calling thread only.
        if unsafe { libc::setns(nsfd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(err("setns"));
        }
        // SAFETY: `dev` is a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(dev.as_ptr()) };
        if ifindex == 0 {
            return Err(err("if_nametoindex"));
        }
        // SAFETY: plain socket creation; checked below. Protocol 0: send only.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(err("socket(AF_PACKET)"));
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain old data; zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        Ok(RawSocket { fd, sll })
    }

    /// Sends one frame (with SOCK_RAW it carries its own header: only the
    /// interface in `sll` matters).
    fn send(&self, f: &[u8]) -> std::io::Result<()> {
        // SAFETY: `f` and `sll` are valid for the lengths given and live
        // across the call.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                0,
                (&self.sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

fn netns_path(ns: &Netns) -> CString {
    CString::new(format!("/var/run/netns/{}", ns.name)).unwrap()
}

/// Sends raw Ethernet frames out of `dev` in namespace `ns` through an
/// AF_PACKET socket (the kernel pads frames shorter than 14 bytes to 14).
pub fn send_raw(ns: &Netns, dev: &str, frames: &[Vec<u8>]) {
    let (path, cdev) = (netns_path(ns), CString::new(dev).unwrap());
    let frames = frames.to_vec();
    std::thread::spawn(move || -> Result<(), String> {
        let sock = RawSocket::open_in(&path, &cdev)?;
        for f in &frames {
            sock.send(f).map_err(|e| format!("sendto ({} bytes): {e}", f.len()))?;
        }
        Ok(())
    })
    .join()
    .expect("raw sender thread")
    .unwrap_or_else(|e| panic!("send_raw on {dev} in {}: {e}", ns.name));
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s.split(':').map(|x| u8::from_str_radix(x, 16).expect("hex")).collect();
    v.try_into().expect("six bytes")
}

/// Parses a dotted IPv4 address (prefix length ignored).
pub fn parse_ip(s: &str) -> [u8; 4] {
    let a: std::net::Ipv4Addr = s.split('/').next().unwrap().parse().expect("IPv4");
    a.octets()
}

/// A broadcast ARP request "who has `target` tell `src_ip`" from
/// `src_mac`, 802.1Q-tagged with `vlan` if given (this kernel has no VLAN
/// devices, so tagged traffic is made by hand and sent with [`send_raw`]).
pub fn arp_request(src_mac: [u8; 6], src_ip: [u8; 4], target: [u8; 4], vlan: Option<u16>) -> Vec<u8> {
    let eth = EthernetRepr { dst: MacAddr::BROADCAST, src: MacAddr(src_mac), tag: vlan, ethertype: EtherType::ARP };
    let mut f = vec![0; eth.header_len()];
    eth.emit(&mut f);
    // Ethernet/IPv4, address lengths 6 and 4, a request.
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&src_ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

/// Where the rvs binaries are: `rvsd` as Cargo built it for this test, and
/// `rvsctl` next to it (built by `cargo build --workspace`, same profile).
pub fn rvsd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rvsd"))
}

/// `rvsctl`, next to `rvsd`.
pub fn rvsctl_bin() -> PathBuf {
    let p = rvsd_bin().with_file_name("rvsctl");
    assert!(
        p.is_file(),
        "{} not found: build it first with `cargo build --workspace` in the \
         same profile (scripts/test.sh does)",
        p.display()
    );
    p
}

/// Runs `rvsctl --socket SOCKET ARGS`.
pub fn rvsctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(rvsctl_bin()).arg("--socket").arg(socket).args(args).stdin(Stdio::null()).output().expect("run rvsctl")
}

/// The cores to give rvsd: core 1 where there are two or more (core 0
/// stays for the kernel, ping and iperf3), else core 0.
pub fn default_cores() -> String {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n >= 2 { "1" } else { "0" }.to_string()
}

/// A running `rvsd` with its own socket and db in a temporary directory;
/// stopped on drop (SIGTERM, SIGKILL after 3 s). Its stderr goes to a file
/// that is printed if the test fails.
pub struct Rvsd {
    child: Option<Child>,
    /// Temporary directory holding socket, db and log.
    pub dir: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// The configuration db.
    pub db: PathBuf,
    /// rvsd's stderr.
    pub log: PathBuf,
    cores: String,
    netns: Option<String>,
    /// More rvsd options, kept for restarts.
    extra: Vec<String>,
}

impl Rvsd {
    /// Starts rvsd on [`default_cores`] and waits until it answers.
    pub fn start() -> Rvsd {
        Rvsd::start_on(&default_cores())
    }

    /// Starts rvsd with `--cores cores` and waits until it answers.
    pub fn start_on(cores: &str) -> Rvsd {
        Rvsd::spawn_new(cores, None, &[])
    }

    /// Starts rvsd on [`default_cores`] with extra options (e.g.
    /// `--metrics ADDR:PORT`) and waits until it answers.
    pub fn start_with(extra: &[&str]) -> Rvsd {
        Rvsd::spawn_new(&default_cores(), None, extra)
    }

    /// Starts rvsd inside network namespace `ns` (a host of its own: its
    /// ports and uplinks are interfaces of `ns`), on [`default_cores`].
    pub fn start_in(ns: &Netns) -> Rvsd {
        Rvsd::spawn_new(&default_cores(), Some(&ns.name), &[])
    }

    /// [`Rvsd::start_in`] with extra options.
    pub fn start_in_with(ns: &Netns, extra: &[&str]) -> Rvsd {
        Rvsd::spawn_new(&default_cores(), Some(&ns.name), extra)
    }

    fn spawn_new(cores: &str, netns: Option<&str>, extra: &[&str]) -> Rvsd {
        let dir = std::env::temp_dir().join(format!("rvst-{}", tag()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut d = Rvsd {
            child: None,
            socket: dir.join("rvsd.sock"),
            db: dir.join("conf.json"),
            log: dir.join("rvsd.log"),
            dir,
            cores: cores.to_string(),
            netns: netns.map(str::to_string),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("rvsd log file");
        // `ip netns exec` execs rvsd in place: the child's pid is rvsd's.
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(rvsd_bin());
                c
            }
            None => Command::new(rvsd_bin()),
        };
        let child = cmd
            .arg("--cores")
            .arg(&self.cores)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--db")
            .arg(&self.db)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rvsd");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rvsd exited at start ({st}):\n{}", self.log_text());
            }
            if self.socket.exists() && self.ctl(&["bridge", "list"]).status.success() {
                return;
            }
            if Instant::now() > end {
                panic!("rvsd did not answer within 10 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// rvsd's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("rvsd not running").id()
    }

    /// What rvsd wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `rvsctl --socket ... ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        rvsctl(&self.socket, args)
    }

    /// Runs an rvsctl command that must succeed; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(
            o.status.success(),
            "rvsctl {args:?} failed ({}): {}\n--- rvsd log ---\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs `rvsctl --json ARGS`, which must succeed, and parses stdout.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut v = vec!["--json"];
        v.extend_from_slice(args);
        let out = self.ctl_ok(&v);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("rvsctl --json {args:?}: not JSON ({e}): {out}"))
    }

    /// `rvsctl bridge add BR`, which must succeed.
    pub fn add_bridge(&self, br: &str) {
        self.ctl_ok(&["bridge", "add", br]);
    }

    /// `rvsctl port add BR PORT ARGS...` (e.g. `--type afxdp --vlan 10`),
    /// which must succeed. An AF_XDP port gets `--fast-path off` unless
    /// `args` name an executor: these tests are about what rvs's own
    /// pipeline does with every frame; tests/fastpath.rs covers the kernel
    /// executors (and the default).
    pub fn add_port(&self, br: &str, port: &str, args: &[&str]) {
        let mut v = vec!["port", "add", br, port];
        v.extend_from_slice(args);
        if args.windows(2).any(|w| w == ["--type", "afxdp"]) && !args.contains(&"--fast-path") {
            v.extend_from_slice(&["--fast-path", "off"]);
        }
        self.ctl_ok(&v);
    }

    /// Adds bridge `br` with `hosts` on it, each on a default port.
    pub fn bridge_with(&self, br: &str, hosts: &[&Host]) {
        self.add_bridge(br);
        for h in hosts {
            self.add_host(br, h, &[]);
        }
    }

    /// Adds `host`'s port to `br`: AF_XDP for a veth host, a tap in the
    /// host's namespace (then given the host's address) for a tap host.
    /// `args` are extra options such as `--vlan 10`.
    pub fn add_host(&self, br: &str, host: &Host, args: &[&str]) {
        let mut v: Vec<&str> = Vec::new();
        if host.veth.is_some() {
            v.extend_from_slice(&["--type", "afxdp"]);
        } else {
            v.extend_from_slice(&["--type", "tap", "--netns", &host.ns.name]);
        }
        v.extend_from_slice(args);
        self.add_port(br, host.port(), &v);
        if host.veth.is_none() {
            assert!(host.ns.has_link(&host.dev), "tap {} not created in {}", host.dev, host.ns.name);
            host.configure_tap();
        }
    }

    /// `rvsctl --json show`, reduced to (bridge, port, type) triples.
    pub fn show_ports(&self) -> std::collections::BTreeSet<(String, String, String)> {
        json::show_ports(&self.ctl_json(&["show"]))
    }

    /// Waits up to `within` for rvsd to exit by itself: its status, or
    /// None if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + within;
        while std::time::Instant::now() < end {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// True while the rvsd process is alive.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills rvsd with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops rvsd with SIGTERM (SIGKILL after 3 s); its exit status, or
    /// None if it had to be killed.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: signals our own child, which has not been reaped yet.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Starts rvsd again (after `kill9` or `stop`) with the same socket
    /// and db, and waits until it answers.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }
}

impl Drop for Rvsd {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- rvsd log ({}) ---\n{}", self.log.display(), self.log_text());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs rvsd with `extra` options (own socket and db in a temporary
/// directory) where it must refuse to start, and returns its output. Were
/// it to start instead, `timeout` ends it after 10 s.
pub fn rvsd_refusing(extra: &[&str]) -> Output {
    let dir = std::env::temp_dir().join(format!("rvst-r-{}", tag()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (socket, db) = (dir.join("s"), dir.join("c.json"));
    let (cores, bin) = (default_cores(), rvsd_bin());
    let mut args = vec![
        "timeout",
        "10",
        bin.to_str().expect("utf-8 path"),
        "--cores",
        &cores,
        "--socket",
        socket.to_str().expect("utf-8 path"),
        "--db",
        db.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    let _ = std::fs::remove_dir_all(&dir);
    o
}

/// Asserts that a command failed with one non-empty line on stderr, and
/// returns that line.
pub fn one_line_error(what: &str, o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert!(!o.status.success(), "{what}: succeeded, expected an error");
    assert!(!err.is_empty(), "{what}: failed with an empty stderr");
    assert!(!err.contains('\n'), "{what}: error is not one line:\n{err}");
    err
}

/// Interfaces in the root namespace that have an XDP program attached
/// (`ip -o link` shows `xdp`, `xdpgeneric`, `xdpdrv` or `xdpoffload`).
pub fn xdp_attached(devs: &[&str]) -> Vec<String> {
    devs.iter()
        .filter(|d| {
            let out = String::from_utf8_lossy(&run(&["ip", "-o", "link", "show", "dev", d]).stdout).into_owned();
            out.split_whitespace().any(|w| matches!(w, "xdp" | "xdpgeneric" | "xdpdrv" | "xdpoffload"))
        })
        .map(|d| d.to_string())
        .collect()
}

/// Waits up to 2 s for every XDP program on `devs` to go; returns the
/// interfaces that still have one.
pub fn no_xdp_left(devs: &[&str]) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let left = xdp_attached(devs);
        if left.is_empty() || Instant::now() > end {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Linux bridge in the root namespace (for testing the harness itself
/// without rvsd); deleted on drop.
pub struct LinuxBridge {
    /// Bridge device name.
    pub name: String,
}

impl LinuxBridge {
    /// Creates the bridge, up, with `ports` enslaved.
    pub fn new(ports: &[&str]) -> LinuxBridge {
        let name = format!("rvb{}", tag());
        run_ok(&["ip", "link", "add", &name, "type", "bridge"]);
        let br = LinuxBridge { name };
        for p in ports {
            run_ok(&["ip", "link", "set", p, "master", &br.name]);
        }
        run_ok(&["ip", "link", "set", &br.name, "up"]);
        br
    }
}

impl Drop for LinuxBridge {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.name]);
    }
}

/// Sends `frames` (cycled) out of `dev` in `ns` as fast as one thread can
/// for `dur`, from a thread of its own: a tight AF_PACKET `sendto` loop.
/// The handle yields (frames sent, sends refused by the kernel).
pub fn blast_raw(ns: &Netns, dev: &str, frames: Vec<Vec<u8>>, dur: Duration) -> std::thread::JoinHandle<(u64, u64)> {
    let (path, cdev) = (netns_path(ns), CString::new(dev).unwrap());
    let name = format!("{dev} in {}", ns.name);
    std::thread::spawn(move || {
        let sock = RawSocket::open_in(&path, &cdev).unwrap_or_else(|e| panic!("blast_raw on {name}: {e}"));
        let (mut sent, mut refused) = (0u64, 0u64);
        let end = Instant::now() + dur;
        while Instant::now() <= end {
            for f in &frames {
                match sock.send(f) {
                    Ok(()) => sent += 1,
                    Err(e) => {
                        if refused == 0 {
                            eprintln!("blast_raw: first refused send ({} bytes): {e}", f.len());
                        }
                        refused += 1;
                    }
                }
            }
        }
        (sent, refused)
    })
}

/// `ping -c COUNT -i 1 -W 2 ADDR` from `ns`: (sent, replies received).
pub fn ping_count(ns: &Netns, addr: &str, count: u32) -> (u32, u32) {
    let o = ns.run(&["ping", "-n", "-q", "-c", &count.to_string(), "-i", "1", "-W", "2", addr]);
    ping_summary(&String::from_utf8_lossy(&o.stdout))
}

/// `(transmitted, received)` from ping's summary line.
pub fn ping_summary(out: &str) -> (u32, u32) {
    let line = out.lines().find(|l| l.contains("packets transmitted")).unwrap_or_default();
    let num = |word: &str| {
        line.split(',')
            .find(|p| p.contains(word))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (num("transmitted"), num("received"))
}

/// A small deterministic random number generator (xorshift64*), so a
/// failing run can be repeated with the same frames.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Per port in `rvsctl --json stats`: (rx, forwarded, flooded, drops by
/// reason, learn_refused).
pub fn accounting(v: &serde_json::Value, port: &str) -> (u64, u64, u64, std::collections::BTreeMap<String, u64>, u64) {
    let p = v
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == port)
        .unwrap_or_else(|| panic!("no port {port} in stats: {v}"));
    let n = |k: &str| p[k].as_u64().unwrap_or(0);
    let s = json::port_stat(v, port);
    (n("rx_packets"), n("forwarded"), n("flooded"), s.drops, n("learn_refused"))
}

/// Drop reasons counted after the forwarding decision (on egress, or for
/// copies), which are not part of a received frame's own accounting.
pub const AFTER_DECISION: [&str; 4] = ["tx_full", "no_buffer", "tunnel_mtu", "no_neighbor"];
