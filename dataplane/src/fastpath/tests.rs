//! The kernel takes exactly the frames whose verdict it can tell, and
//! does to them what the userspace pipeline would: checked by running the
//! real program (plain `BPF_PROG_TEST_RUN`) beside `pipeline::dry_run`
//! on random worlds and frames.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::*;
use crate::bpf::asm::{TC_ACT_REDIRECT, XDP_PASS, XDP_REDIRECT};
use crate::egress;
use crate::fdb::{Dest, Entry, Fdb, NO_REMOTE};
use crate::pipeline;
use crate::port::MAX_FRAME;
use crate::snapshot::{PortKind, Remote, Snapshot, Tunnel, VlanMode, VlanSet, Vtep};
use crate::testing::{self, port, require_root};
use crate::wire::vxlan::{self, OuterTemplate};
use program::Hook;

const PORTS: u16 = 4;
/// The VXLAN port, after the plain ports and the uplink.
const TUNNEL: u16 = PORTS + 1;
const VNI: u32 = 42;
/// Largest inner frame the tunnel's uplink takes, in the tests.
const MAX_INNER: u32 = 1000;
const LOOPBACK: u32 = 1;
/// What the clock map says in the tests.
const CLOCK: u32 = 77;
/// Both executors, each test runs on.
const EXECUTORS: [Executor; 2] = [Executor::Xdp, Executor::Tc];

/// One port's VLAN mode, picked by a number.
fn mode(pick: u8) -> VlanMode {
    let trunk = |native| VlanMode::Trunk { allowed: [Vid(1), Vid(2), Vid(3)].into_iter().collect::<VlanSet>(), native };
    match pick % 5 {
        0 => VlanMode::Access(Vid(1)),
        1 => VlanMode::Access(Vid(2)),
        2 => trunk(None),
        3 => trunk(Some(Vid(1))),
        _ => VlanMode::Trunk { allowed: [Vid(2)].into_iter().collect(), native: Some(Vid(3)) },
    }
}

/// Underlay addresses: 1 is ours, 2 remote 0 (resolved), 3 remote 1
/// (next hop unresolved), anything else nobody's.
fn vtep(i: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([198, 18, 0, i])
}

/// The tunnel: remote 0 resolved, and (`two`) remote 1 not.
fn tunnel(two: bool) -> Tunnel {
    let outer = OuterTemplate::new(testing::mac(0x70), testing::mac(0x71), vtep(1), vtep(2), vxlan::PORT, 64, VNI);
    Tunnel {
        vni: VNI,
        local: vtep(1),
        dst_port: vxlan::PORT,
        uplink: PortId(PORTS),
        max_inner_frame: MAX_INNER,
        remotes: [Remote { ip: vtep(2), outer }, Remote { ip: vtep(3), outer: None }][..1 + usize::from(two)].to_vec(),
    }
}

/// Where host `h` is learned when it is at port `at`: behind the tunnel,
/// remote 0, but host 5 behind remote 1. A static entry names no remote
/// (as `rvsctl fdb add` writes it).
fn dest(h: u8, at: u16, is_static: bool) -> Dest {
    let remote = if at == TUNNEL && !is_static { u16::from(h == 5) } else { NO_REMOTE };
    Dest { port: PortId(at), remote }
}

/// `inner` as remote `from` (an underlay address) sends it to us.
fn from_remote(from: u8, inner: &[u8]) -> Vec<u8> {
    let t = OuterTemplate::new(testing::mac(0x71), testing::mac(0x70), vtep(from), vtep(1), vxlan::PORT, 64, VNI)
        .expect("one family");
    let mut buf = vec![0u8; t.len()];
    buf.extend_from_slice(inner);
    let start = t.encap(&mut buf, t.len(), inner.len(), 0xc000).expect("headroom");
    buf[start..].to_vec()
}

/// A world: the userspace snapshot, the kernel tables mirroring it, and a
/// loaded program per port, and the uplink's.
struct World {
    ex: Executor,
    fdb: Arc<Fdb>,
    snap: Snapshot,
    tables: KernelTables,
    progs: Vec<OwnedFd>,
    /// The uplink's XDP program, which decapsulates for the tunnel.
    uplink: OwnedFd,
    egress: Vec<bool>,
    /// The MAC entries written to the kernel, as rvsd remembers them.
    mirrored: std::cell::RefCell<Vec<Entry>>,
    _xsks: OwnedFd,
    _vteps: OwnedFd,
}

/// `macs`: (host, vid, port, static) learned into bridge 0; programs for
/// executor `ex`.
fn world(ex: Executor, modes: &[u8], egress: &[bool], macs: &[(u8, u16, u16, bool)]) -> World {
    let fdb = Arc::new(Fdb::new(64));
    for &(host, vid, at, is_static) in macs {
        let (mac, vid, at) = (testing::mac(host), Vid(vid), PortId(at));
        if is_static {
            fdb.add_static_at(mac, vid, dest(host, at.0, true), 0);
        } else {
            fdb.learn_at(mac, vid, dest(host, at.0, false), 0);
        }
    }
    let tables = KernelTables::new(8, 64).expect("kernel tables");
    tables.set_clock(CLOCK).expect("clock");
    let xsks = crate::bpf::create_xskmap(1).expect("xskmap");
    let progs = (0..=PORTS)
        .map(|i| {
            let loaded = match ex {
                Executor::Xdp => {
                    let insns = program::program(Hook::Xdp { xsks: xsks.as_raw_fd() }, PortId(i), &tables.maps());
                    crate::bpf::load_xdp(&insns, "rvs_test_fast")
                }
                Executor::Tc => {
                    let insns = program::program(Hook::Tc { miss: LOOPBACK }, PortId(i), &tables.maps());
                    crate::bpf::load_tc(&insns, "rvs_test_fast")
                }
            };
            loaded.unwrap_or_else(|e| panic!("the verifier refuses the {ex:?} program: {e}"))
        })
        .collect();
    // Any frame for our VTEP that the kernel leaves goes on to the socket.
    let vteps = crate::bpf::create_map(crate::bpf::BPF_MAP_TYPE_HASH, 20, 4, 4, "rvs_test_vteps").expect("vteps");
    let mut vtep_key = [0u8; 20];
    vtep_key[..2].copy_from_slice(&vxlan::PORT.to_be_bytes());
    vtep_key[2..4].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    vtep_key[4..8].copy_from_slice(&[198, 18, 0, 1]);
    crate::bpf::map_update(&vteps, &vtep_key, &1u32.to_ne_bytes()).expect("our VTEP");
    let hook = Hook::Uplink { xsks: xsks.as_raw_fd(), vteps: vteps.as_raw_fd() };
    let uplink = crate::bpf::load_xdp(&program::program(hook, PortId(PORTS), &tables.maps()), "rvs_test_up")
        .unwrap_or_else(|e| panic!("the verifier refuses the uplink program: {e}"));
    let snap = snapshot(&fdb, modes);
    let mut w = World {
        ex,
        fdb,
        snap,
        tables,
        progs,
        uplink,
        egress: vec![],
        mirrored: Default::default(),
        _xsks: xsks,
        _vteps: vteps,
    };
    w.configure(modes, egress);
    w.mirror();
    w
}

/// Ports 0..PORTS in bridge 0 with VLAN modes picked by `modes`, an
/// uplink, and a tunnel through it (its VLAN mode picked by the first two
/// modes together, one remote or two by the last).
fn snapshot(fdb: &Arc<Fdb>, modes: &[u8]) -> Snapshot {
    let mut ports: Vec<_> = (0..PORTS).map(|i| port(i, mode(modes[i as usize]), PortKind::Plain)).collect();
    ports.push(port(PORTS, VlanMode::Access(Vid(1)), PortKind::Uplink));
    ports.push(port(
        TUNNEL,
        mode(modes[0].wrapping_add(modes[1] / 5)),
        PortKind::Vxlan(Arc::new(tunnel(modes[3] & 1 == 1))),
    ));
    let vteps = vec![Vtep { local: vtep(1), dst_port: vxlan::PORT, vni: VNI, port: PortId(TUNNEL) }];
    testing::world(fdb.clone(), 1, ports, vteps)
}

impl World {
    /// New VLAN modes and egress flags for the ports (and, after them,
    /// the tunnel's: on if not given), written to the kernel as rvsd
    /// writes them.
    fn configure(&mut self, modes: &[u8], egress: &[bool]) {
        self.snap = snapshot(&self.fdb, modes);
        self.egress = egress[..PORTS as usize].to_vec();
        self.egress.push(false);
        self.egress.push(egress.get(PORTS as usize).copied().unwrap_or(true));
        for (p, &out) in self.snap.ports.iter().flatten().zip(&self.egress) {
            self.tables.set_port(p, true, out.then_some(LOOPBACK)).expect("port entry");
        }
    }

    /// Writes the FDB into the kernel's table, as rvsd keeps it: entries
    /// gone from the FDB are deleted, the rest (re)written; the program
    /// forgets a source that moved, rvsd puts it back.
    fn mirror(&self) {
        let now: Vec<Entry> = self.fdb.entries();
        for old in self.mirrored.borrow().iter() {
            if !now.iter().any(|e| (e.mac, e.vid) == (old.mac, old.vid)) {
                self.tables.del_mac(BridgeId(0), old.mac, old.vid).expect("MAC entry deleted");
            }
        }
        for e in &now {
            self.tables
                .set_mac(BridgeId(0), e.mac, e.vid, Dest { port: e.port, remote: e.remote }, e.is_static)
                .expect("MAC entry");
        }
        *self.mirrored.borrow_mut() = now;
    }
}

/// What a program did with a frame: sent it to a port (with the frame as
/// it left and, for tc, the tag it left with in the skb), or missed.
#[derive(Debug, PartialEq, Eq)]
enum Ran {
    Sent { frame: Vec<u8>, meta_tag: Option<u16> },
    Missed(Vec<u8>),
}

impl World {
    /// Runs port `ingress`'s program on `f`.
    fn run(&self, ingress: PortId, f: &[u8]) -> Ran {
        self.try_run(ingress, f).unwrap_or_else(|| panic!("test run on {f:02x?} refused"))
    }

    /// Runs port `ingress`'s program on `f`; `None` where the kernel
    /// refuses the test run itself (an skb's test run wants a whole IPv4
    /// header in an IPv4 frame, which a device need not deliver).
    fn try_run(&self, ingress: PortId, f: &[u8]) -> Option<Ran> {
        if ingress == PortId(TUNNEL) {
            return Some(self.decap_run(f));
        }
        let prog = &self.progs[ingress.index()];
        Some(match self.ex {
            Executor::Xdp => {
                let (action, out) = crate::bpf::test_run_frame(prog, f).expect("test run");
                assert!(action == XDP_REDIRECT as u32 || action == XDP_PASS as u32, "xdp action {action}");
                if action == XDP_REDIRECT as u32 {
                    Ran::Sent { frame: out, meta_tag: None }
                } else {
                    Ran::Missed(out)
                }
            }
            Executor::Tc => {
                let r = match crate::bpf::test_run_skb(prog, f) {
                    Ok(r) => r,
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return None,
                    Err(e) => panic!("test run on {f:02x?}: {e}"),
                };
                // Both a hit and a miss are redirects; cb[0] tells them apart.
                assert_eq!(r.retval, TC_ACT_REDIRECT as u32, "tc action");
                if r.cb[0] == 0 {
                    return Some(Ran::Missed(r.frame));
                }
                let tag = r.cb[1];
                // A tag the frame kept in its bytes is no tag in the skb's metadata.
                let in_frame = r.frame.get(12..14) == Some(&[0x81, 0][..]);
                let meta_tag = (tag & 0x10000 != 0 && !in_frame).then_some(tag as u16);
                Ran::Sent { frame: r.frame, meta_tag }
            }
        })
    }

    /// Runs the uplink's program on `f`, a frame from the underlay.
    fn decap_run(&self, f: &[u8]) -> Ran {
        let (action, out) = crate::bpf::test_run_frame(&self.uplink, f).expect("test run");
        assert!(action == XDP_REDIRECT as u32 || action == XDP_PASS as u32, "uplink action {action}");
        if action == XDP_REDIRECT as u32 {
            Ran::Sent { frame: out, meta_tag: None }
        } else {
            Ran::Missed(out)
        }
    }

    /// Whether `ran` sent the frame to `port`, read from the counters that
    /// moved (`before`: port's counters before the run).
    fn sent_to(&self, port: PortId, before: KernelCounters) -> bool {
        self.tables.counters(port).expect("counters").tx_packets == before.tx_packets + 1
    }
}

/// [`frame`]'s `len` for a UDP over IPv4 frame of its natural length.
const IPV4_UDP: usize = 1;
/// [`frame`]'s `len` for a TCP over IPv6 frame of its natural length.
const IPV6_TCP: usize = 2;

/// A frame from host `src` to host `dst` (0xff: broadcast), with a TCI or
/// a QinQ tag, `len` bytes long (or [`IPV4_UDP`], [`IPV6_TCP`]).
fn frame(dst: u8, src: u8, tag: Option<u16>, qinq: bool, len: usize) -> Vec<u8> {
    let mut f = match len {
        IPV4_UDP | IPV6_TCP => {
            let (v6, proto) = if len == IPV6_TCP { (true, 6) } else { (false, 17) };
            let mut f = ip_frame(dst, src, tag, v6, proto, false);
            if qinq {
                f[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
            }
            return f;
        }
        _ => testing::frame(testing::mac(dst), testing::mac(src), tag),
    };
    if qinq {
        f[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
    }
    f.resize(len.max(1), 0xab);
    f
}

/// What userspace would send out, if the kernel may carry it: the egress
/// port (by the library's rule), the frame as it leaves (tag edited, and
/// into a tunnel encapsulated) and the bytes counted for it (a tunnel's:
/// the inner frame's).
fn expected(w: &World, ingress: PortId, f: &[u8]) -> Option<(PortId, Vec<u8>, usize)> {
    // Userspace never sees a frame bigger than a buffer, which tc carries
    // as it is: its decision is the one for the same headers.
    let seen = if w.ex == Executor::Tc { &f[..f.len().min(MAX_FRAME)] } else { f };
    let v = pipeline::dry_run(&w.snap, ingress, NO_REMOTE, seen, 0);
    let out = carries(w.ex, &w.snap, f, &v, true, |p| w.egress[p.index()])?;
    leaving(w, f, &v, out)
}

/// [`expected`] for `outer`, a frame from the underlay, which the
/// uplink's XDP program takes apart whatever the ports' executor.
fn expected_decap(w: &World, outer: &[u8]) -> Option<(PortId, Vec<u8>, usize)> {
    let d = pipeline::decap(&w.snap, outer).ok()?;
    let inner = &outer[d.inner..d.inner + d.len];
    let v = pipeline::dry_run(&w.snap, d.port, d.remote, inner, 0);
    let PortKind::Vxlan(t) = &w.snap.port(d.port)?.kind else { return None };
    let known = kernel_has_remote(t, usize::from(d.remote));
    let out = carries(Executor::Xdp, &w.snap, inner, &v, known, |p| w.egress[p.index()])?;
    leaving(w, inner, &v, out)
}

/// `f` as it leaves through `out` by verdict `v`, and its counted length.
fn leaving(w: &World, f: &[u8], v: &pipeline::Verdict, out: PortId) -> Option<(PortId, Vec<u8>, usize)> {
    let plan = egress::port_plan(&w.snap, out, v.vid, v.tagged).ok()?;
    let mut buf = vec![0u8; 4 + vxlan::OVERHEAD_V6];
    let head = buf.len() - 4;
    buf.extend_from_slice(f);
    let (off, len) = egress::edit_tag(&mut buf[head..], 4, f.len(), plan.edit)?;
    let (off, len) = (off + head, len);
    let PortKind::Vxlan(t) = &plan.port.kind else { return Some((out, buf[off..off + len].to_vec(), len)) };
    let sport = vxlan::src_port(vxlan::flow_hash(&buf[off..off + len]));
    let to = egress::tunnel_plan(t, len, v.remote).ok()?.start;
    let outer = egress::remote_outer(t, to).ok()?;
    let start = outer.encap(&mut buf, off, len, sport)?;
    Some((out, buf[start..off + len].to_vec(), len))
}

/// The frame `f` from `ingress` as the kernel gets it, and [`expected`]
/// of it. From the tunnel: sent by a remote (mostly remote 0, picked by
/// the source MAC's number; 9 is nobody's) and taken apart by the
/// uplink's program.
#[allow(clippy::type_complexity)]
fn want(w: &World, ingress: PortId, f: &[u8]) -> (Vec<u8>, Option<(PortId, Vec<u8>, usize)>) {
    if ingress.0 == TUNNEL {
        let outer = from_remote([2, 2, 2, 3, 9][usize::from(f[11]) % 5], f);
        let want = expected_decap(w, &outer);
        (outer, want)
    } else {
        (f.to_vec(), expected(w, ingress, f))
    }
}

fn check(w: &World, ingress: PortId, f: &[u8]) -> Result<(), TestCaseError> {
    w.mirror();
    let (f, want) = want(w, ingress, f);
    let f = &f;
    let before = want.as_ref().map(|(out, ..)| w.tables.counters(*out).expect("counters"));
    let Some(ran) = w.try_run(ingress, f) else { return Ok(()) };
    match (want, ran) {
        (Some((port, edited, counted)), Ran::Sent { frame, meta_tag }) => {
            // tc pushes a tag into the skb, where the wire will have it.
            let wire = match meta_tag {
                Some(tci) => with_tag(&frame, tci),
                None => frame,
            };
            prop_assert_eq!(&wire, &edited, "tag edit from {} to {}", ingress, port);
            let before = before.expect("read before");
            prop_assert!(w.sent_to(port, before), "sent to port {}", port);
            let after = w.tables.counters(port).expect("counters");
            prop_assert_eq!(after.tx_bytes, before.tx_bytes + counted as u64);
        }
        (Some((port, ..)), Ran::Missed(_)) => {
            prop_assert!(false, "{:?}: kernel missed a frame it can carry from {} to {}", w.ex, ingress, port);
        }
        (None, Ran::Sent { .. }) => {
            prop_assert!(false, "{:?}: kernel took a frame from {} userspace must see", w.ex, ingress);
        }
        (None, Ran::Missed(out)) => prop_assert_eq!(&out[..], &f[..], "a missed frame is left as it came"),
    }
    Ok(())
}

/// `frame` with a tag in front of its ethertype: what the wire carries
/// for an skb whose tag the kernel keeps in its metadata.
fn with_tag(frame: &[u8], tci: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&tci.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// A frame: (ingress, dst host, src host, tag, QinQ, length), either at
/// random or (`aim`) between two learned MACs, sent from where the source
/// was learned with a tag that puts it in the source's VLAN, so that hits
/// are common.
type Spec = (u16, u8, u8, Option<u16>, bool, usize);

fn frames() -> impl Strategy<Value = Vec<(bool, Spec)>> {
    let tag = prop_oneof![Just(None), (0u16..5, 0u16..8).prop_map(|(v, pcp)| Some(pcp << 13 | v))];
    let host = prop_oneof![0u8..6, Just(0xffu8)];
    // Test runs refuse frames under 14 bytes, as no device delivers them.
    let len = prop_oneof![
        4 => Just(60usize),
        1 => 14usize..20,
        1 => Just(MAX_FRAME),
        1 => Just(MAX_FRAME + 1),
        3 => Just(IPV4_UDP),
        2 => Just(IPV6_TCP)
    ];
    let spec = (0..=TUNNEL, host.clone(), host, tag, proptest::bool::weighted(0.05), len);
    proptest::collection::vec((proptest::bool::weighted(0.7), spec), 1..40)
}

/// `spec` aimed between learned MACs (`spec`'s hosts pick them).
fn aimed(w: &World, macs: &[(u8, u16, u16, bool)], spec: Spec) -> Spec {
    let (_, dst, src, tag, qinq, len) = spec;
    let fdb = &w.snap.bridge(BridgeId(0)).expect("bridge 0").fdb;
    // Where each MAC is now (a later entry may have moved it); mostly only
    // those whose port carries their VLAN, as learning from traffic would
    // have it, sometimes the others too (static entries can be anything).
    let carried = |v: u16, at: PortId| w.snap.port(at).is_some_and(|p| p.bridge.is_some() && p.vlan.carries(Vid(v)));
    let valid: Vec<(u8, u16, PortId)> = macs
        .iter()
        .filter_map(|&(h, v, _, _)| Some((h, v, fdb.lookup(testing::mac(h), Vid(v))?)))
        .filter(|&(_, v, at)| dst % 4 == 0 || carried(v, at))
        .collect();
    let Some(&(s_host, vid, at)) = valid.get(usize::from(src) % valid.len().max(1)) else { return spec };
    let peers: Vec<u8> = valid.iter().filter(|m| m.1 == vid && m.0 != s_host).map(|m| m.0).collect();
    let d_host = peers.get(usize::from(dst) % peers.len().max(1)).copied().unwrap_or(dst);
    let pcp = tag.map_or(0, |t| t & 0xe000);
    let tag = match &w.snap.port(at).expect("port").vlan {
        _ if !carried(vid, at) => Some(pcp | vid),
        VlanMode::Access(_) if tag.is_none() => None,
        VlanMode::Access(_) if dst % 2 == 0 => Some(pcp),
        VlanMode::Trunk { native: Some(n), .. } if n.0 == vid && tag.is_none() => None,
        _ => Some(pcp | vid),
    };
    (at.0, d_host, s_host, tag, qinq, len)
}

/// What happens between frames: the FDB and the configuration change,
/// and rvsd mirrors them into the kernel before the next frame.
#[derive(Clone, Debug)]
enum Event {
    Frame(bool, Spec),
    Learn(u8, u16, u16, bool),
    Forget(u8, u16),
    Flush(Option<u16>),
    Modes(Vec<u8>),
    Egress(u16, bool),
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let host = prop_oneof![8 => 0u8..6, 1 => Just(0xffu8)];
    let event = prop_oneof![
        12 => frames().prop_map(|f| f.into_iter().next().expect("at least one")).prop_map(|(aim, spec)| Event::Frame(aim, spec)),
        2 => (host.clone(), 1u16..4, 0..=TUNNEL, proptest::bool::weighted(0.2)).prop_map(|(h, v, p, s)| Event::Learn(h, v, p, s)),
        1 => (host, 1u16..4).prop_map(|(h, v)| Event::Forget(h, v)),
        1 => proptest::option::of(0..=TUNNEL).prop_map(Event::Flush),
        1 => proptest::collection::vec(any::<u8>(), PORTS as usize).prop_map(Event::Modes),
        1 => (0..=PORTS, any::<bool>()).prop_map(|(p, on)| Event::Egress(p, on)),
    ];
    proptest::collection::vec(event, 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random frames, interleaved with FDB and configuration changes, give
    /// the same decision in both executors' programs as in the pipeline.
    #[test]
    fn kernel_decisions_are_the_userspace_decisions(
        modes in proptest::collection::vec(any::<u8>(), PORTS as usize),
        egress in proptest::collection::vec(proptest::bool::weighted(0.8), PORTS as usize + 1),
        // Host 0xff is the broadcast MAC: a static entry could name it.
        macs in proptest::collection::vec((prop_oneof![8 => 0u8..6, 1 => Just(0xff)], 1u16..4, 0..=TUNNEL, proptest::bool::weighted(0.2)), 0..16),
        events in events(),
    ) {
        if !require_root("kernel fast path decisions", &[]) {
            return Ok(());
        }
        for ex in EXECUTORS {
            let mut w = world(ex, &modes, &egress, &macs);
            let (mut modes, mut egress, mut macs) = (modes.clone(), egress.clone(), macs.clone());
            for event in &events {
                match event.clone() {
                    Event::Frame(aim, spec) => {
                        let (ingress, dst, src, tag, qinq, len) = if aim { aimed(&w, &macs, spec) } else { spec };
                        check(&w, PortId(ingress), &frame(dst, src, tag, qinq, len))?;
                    }
                    Event::Learn(h, v, p, is_static) => {
                        let (mac, vid) = (testing::mac(h), Vid(v));
                        if is_static {
                            w.fdb.add_static_at(mac, vid, dest(h, p, true), 0);
                        } else {
                            w.fdb.learn_at(mac, vid, dest(h, p, false), 0);
                        }
                        macs.push((h, v, p, is_static));
                    }
                    Event::Forget(h, v) => {
                        w.fdb.remove(testing::mac(h), Vid(v));
                    }
                    Event::Flush(p) => {
                        w.fdb.flush(p.map(PortId));
                    }
                    Event::Modes(m) => {
                        modes = m;
                        w.configure(&modes, &egress);
                    }
                    // p == PORTS: the tunnel's (the uplink has no egress).
                    Event::Egress(p, on) => {
                        egress[usize::from(p)] = on;
                        w.configure(&modes, &egress);
                    }
                }
                w.mirror();
            }
        }
    }
}

/// The property above is only as good as its hits: over a fixed sample of
/// worlds, the kernel must carry a good share of the aimed frames.
#[test]
fn the_property_sees_hits() {
    if !require_root("kernel fast path", &[]) {
        return;
    }
    for ex in EXECUTORS {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut hits, mut total, mut into_tunnel, mut from_tunnel) = (0, 0, 0, 0);
        for i in 0..32 {
            let macs = proptest::collection::vec((0u8..6, 1u16..4, 0..=TUNNEL, Just(false)), 4..12)
                .new_tree(&mut runner)
                .expect("macs")
                .current();
            // Every mode; the tunnel a trunk with native VLAN 1 and one remote, or
            // in VLAN 1 with two.
            let modes = if i % 2 == 0 { [3, 1, 2, 0] } else { [0, 3, 1, 1] };
            let w = world(ex, &modes, &[true; PORTS as usize], &macs);
            for f in frames().new_tree(&mut runner).expect("frames").current() {
                let (ingress, dst, src, tag, qinq, len) = aimed(&w, &macs, f.1);
                total += 1;
                if let (_, Some((out, ..))) = want(&w, PortId(ingress), &frame(dst, src, tag, qinq, len)) {
                    hits += 1;
                    into_tunnel += usize::from(out.0 == TUNNEL);
                    from_tunnel += usize::from(ingress == TUNNEL);
                }
            }
        }
        assert!(hits * 5 >= total, "{ex:?}: only {hits} of {total} aimed frames can be carried by the kernel");
        eprintln!("{ex:?}: {hits} hits of {total}, {into_tunnel} into the tunnel, {from_tunnel} from it");
        assert!(into_tunnel >= 3, "{ex:?}: only {into_tunnel} of {total} aimed frames into the tunnel");
        assert!(from_tunnel >= 3, "{ex:?}: only {from_tunnel} of {total} aimed frames from the tunnel");
    }
}

#[test]
fn known_unicast_is_carried_with_its_tag_edits_and_counted() {
    if !require_root("kernel fast path", &[]) {
        return;
    }
    // p0 access 1, p1 trunk 1-3 native none, p2 trunk native 1, p3 access 2.
    let macs = [(0xa, 1, 0, false), (0xb, 1, 1, false), (0xc, 1, 2, false), (0xd, 2, 1, true), (0xe, 2, 3, false)];
    for ex in EXECUTORS {
        let w = world(ex, &[0, 2, 3, 1], &[true; 4], &macs);
        let cases = [
            (0, frame(0xb, 0xa, None, false, 60), Some(1)),         // push
            (1, frame(0xa, 0xb, Some(1), false, 64), Some(0)),      // pop
            (1, frame(0xc, 0xb, Some(1), false, 64), Some(2)),      // pop to native
            (2, frame(0xb, 0xc, Some(0x2000), false, 64), Some(1)), // priority tag rewritten
            (3, frame(0xd, 0xe, None, false, 60), Some(1)),         // to a static MAC
            (0, frame(0xc, 0xb, None, false, 60), None),            // source on another port: a move
            (0, frame(0xff, 0xa, None, false, 60), None),           // broadcast
            (0, frame(0x9, 0xa, None, false, 60), None),            // unknown destination
            (0, frame(0xa, 0xa, None, false, 60), None),            // hairpin
            (3, frame(0xb, 0xe, None, false, 60), None),            // VLAN 2 has no 0xb
        ];
        for (ingress, f, out) in cases {
            let want = expected(&w, PortId(ingress), &f).map(|(p, ..)| p.0);
            assert_eq!(want, out, "the case itself, from p{ingress}");
            check(&w, PortId(ingress), &f).unwrap_or_else(|e| panic!("from p{ingress}: {e}"));
        }
        let c = w.tables.counters(PortId(1)).expect("counters");
        assert_eq!((c.rx_packets, c.tx_packets), (2, 3), "{ex:?}");
    }
}

#[test]
fn a_source_the_kernel_forwards_is_seen_and_flags_gate_both_ends() {
    if !require_root("kernel fast path", &[]) {
        return;
    }
    for ex in EXECUTORS {
        let macs = [(0xa, 1, 0, false), (0xb, 1, 1, false)];
        let w = world(ex, &[0, 0, 0, 0], &[true, false, true, true], &macs);
        assert_eq!(w.tables.seen(BridgeId(0), testing::mac(0xa), Vid(1)).unwrap(), Some(0));
        assert!(matches!(w.run(PortId(1), &frame(0xa, 0xb, None, false, 60)), Ran::Sent { .. }), "{ex:?}");
        let seen = w.tables.seen(BridgeId(0), testing::mac(0xb), Vid(1)).unwrap().expect("entry");
        assert_eq!(seen, CLOCK, "the kernel stamps the source it forwarded for with rvsd's clock");
        let missed = |ingress: u16, f: &[u8]| matches!(w.run(PortId(ingress), f), Ran::Missed(_));
        assert!(missed(0, &frame(0xb, 0xa, None, false, 60)), "p1 has no device in the kernel's map");
        // A port the kernel may not take frames from.
        w.tables.set_port(w.snap.port(PortId(1)).unwrap(), false, Some(LOOPBACK)).unwrap();
        assert!(missed(1, &frame(0xa, 0xb, None, false, 60)));
        // Forgotten MACs and ports.
        assert!(w.tables.del_mac(BridgeId(0), testing::mac(0xa), Vid(1)).unwrap());
        assert!(!w.tables.del_mac(BridgeId(0), testing::mac(0xa), Vid(1)).unwrap());
        w.tables.clear_port(PortId(2)).unwrap();
        assert!(w.tables.clear_port(PortId(200)).is_err(), "beyond the tables");
    }
}

/// A TCP or UDP frame from host 0xa to 0xb over IPv4 or IPv6, tagged or
/// not, with its checksum complete, or (`partial`) holding only the
/// pseudo-header sum as a sender using checksum offload leaves it.
fn l4_frame(tag: Option<u16>, v6: bool, protocol: u8, partial: bool) -> Vec<u8> {
    ip_frame(0xb, 0xa, tag, v6, protocol, partial)
}

/// [`l4_frame`] from host `src` to host `dst`.
fn ip_frame(dst_host: u8, src_host: u8, tag: Option<u16>, v6: bool, protocol: u8, partial: bool) -> Vec<u8> {
    use crate::wire::checksum::{fold, sum};
    use crate::wire::{EthernetRepr, IpRepr};
    let (src, dst): (std::net::IpAddr, std::net::IpAddr) = if v6 {
        ("2001:2::1".parse().unwrap(), "2001:2::2".parse().unwrap())
    } else {
        ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap())
    };
    let mut l4 = vec![0u8; if protocol == 6 { 20 } else { 8 }];
    l4[0..4].copy_from_slice(&[0x30, 0x39, 0x00, 0x50]);
    if protocol == 6 {
        l4[12] = 5 << 4;
    } else {
        l4[4..6].copy_from_slice(&(8u16 + 6).to_be_bytes());
    }
    l4.extend_from_slice(b"data!!");
    let ip = IpRepr::new(src, dst, protocol, 64, l4.len()).expect("one family");
    let addrs: Vec<u8> = match (src, dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => [s.octets(), d.octets()].concat(),
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => [s.octets(), d.octets()].concat(),
        _ => unreachable!(),
    };
    let pseudo = sum(0, &addrs) + u64::from(protocol) + l4.len() as u64;
    let field = if protocol == 6 { 16 } else { 6 };
    let c = if partial { fold(pseudo) } else { !fold(sum(pseudo, &l4)) };
    l4[field..field + 2].copy_from_slice(&c.to_be_bytes());
    let (dst, src) = (testing::mac(dst_host), testing::mac(src_host));
    let eth = EthernetRepr { dst, src, tag, ethertype: ip.ethertype() };
    let mut f = vec![0u8; eth.header_len() + ip.header_len()];
    eth.emit(&mut f);
    ip.emit(&mut f[eth.header_len()..]);
    f.extend_from_slice(&l4);
    f
}

/// xdp leaves frames with offloaded checksums to userspace, which
/// completes them; tc carries them as they are (the skb keeps the state).
#[test]
fn frames_left_to_checksum_offload_go_to_userspace_from_xdp_only() {
    if !require_root("kernel fast path", &[]) {
        return;
    }
    for ex in EXECUTORS {
        let macs = [(0xa, 1, 0, false), (0xb, 1, 1, false)];
        // p0 access 1 (untagged in), p2 a trunk of 1-3 without native (tagged in).
        let w = world(ex, &[0, 0, 2, 0], &[true; 4], &macs);
        let w2 = world(ex, &[0, 0, 2, 0], &[true; 4], &[(0xa, 1, 2, false), (0xb, 1, 1, false)]);
        for (world, ingress, tag) in [(&w, 0, None), (&w2, 2, Some(1))] {
            for v6 in [false, true] {
                for protocol in [6, 17] {
                    for partial in [false, true] {
                        let f = l4_frame(tag, v6, protocol, partial);
                        let sent = matches!(world.run(PortId(ingress), &f), Ran::Sent { .. });
                        let want = !partial || ex == Executor::Tc;
                        assert_eq!(sent, want, "{ex:?} v6 {v6} protocol {protocol} partial {partial} tag {tag:?}");
                        // Userspace would complete exactly the partial ones.
                        let mut copy = f.clone();
                        assert_eq!(crate::wire::checksum::complete_partial(&mut copy), partial);
                    }
                }
            }
        }
        // A UDP frame without a checksum (0) is no partial one.
        let mut f = l4_frame(None, false, 17, false);
        let at = 14 + 20 + 6;
        f[at..at + 2].copy_from_slice(&[0, 0]);
        assert!(matches!(w.run(PortId(0), &f), Ran::Sent { .. }));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// IP frames between two learned hosts, whole or cut short, with
    /// their checksums complete, partial, absent or garbled, and their
    /// IPv4 header fields bent: the program takes exactly what the rule
    /// says (the checksum block included).
    #[test]
    fn ip_frames_follow_the_rule(
        frames in proptest::collection::vec(
            (any::<bool>(), prop_oneof![Just(6u8), Just(17u8), Just(1u8)], 0u8..4, any::<bool>(), 0usize..80, any::<u8>(), any::<u16>()),
            1..24,
        ),
    ) {
        if !require_root("kernel fast path decisions", &[]) {
            return Ok(());
        }
        // Host 0xa on the access port p0, or (tagged frames) on the trunk p2.
        for ex in EXECUTORS {
        let w = world(ex, &[0, 0, 2, 0], &[true; 4], &[(0xa, 1, 0, false), (0xb, 1, 1, false)]);
        let w2 = world(ex, &[0, 0, 2, 0], &[true; 4], &[(0xa, 1, 2, false), (0xb, 1, 1, false)]);
        for &(v6, protocol, how, tagged, cut, bend, noise) in &frames {
            let tag = tagged.then_some(1);
            let mut f = l4_frame(tag, v6, if protocol == 1 { 17 } else { protocol }, how == 1);
            let l3 = if tagged { 18 } else { 14 };
            if protocol == 1 {
                f[l3 + if v6 { 6 } else { 9 }] = 1; // ICMP: no checksum to mind
            }
            let l4 = l3 + if v6 { 40 } else { 20 };
            let field = l4 + if protocol == 6 { 16 } else { 6 };
            match how {
                2 => f[field..field + 2].copy_from_slice(&[0, 0]),
                3 => f[field..field + 2].copy_from_slice(&noise.to_be_bytes()),
                _ => {}
            }
            if !v6 && bend % 4 == 0 {
                f[l3] = 0x40 | (bend >> 4); // another IHL, maybe a bad one
            } else if !v6 && bend % 4 == 1 {
                f[l3 + 6] = bend; // fragment bits
            }
            if cut > 0 && cut < f.len() && f.len() - cut >= 14 {
                f.truncate(f.len() - cut);
            }
            let (w, ingress) = if tagged { (&w2, PortId(2)) } else { (&w, PortId(0)) };
            check(w, ingress, &f)?;
        }
        }
    }
}

#[test]
fn a_learned_source_seen_on_another_port_is_forgotten_a_static_one_kept() {
    if !require_root("kernel fast path", &[]) {
        return;
    }
    for ex in EXECUTORS {
        let w = world(ex, &[0, 0, 0, 0], &[true; 4], &[(0xa, 1, 0, false), (0xd, 1, 1, true), (0xb, 1, 3, false)]);
        let missed = |ingress: u16, f: &[u8]| matches!(w.run(PortId(ingress), f), Ran::Missed(_));
        assert!(missed(2, &frame(0xb, 0xa, None, false, 60)), "a move is for rvs to learn");
        assert_eq!(w.tables.mac(BridgeId(0), testing::mac(0xa), Vid(1)).unwrap(), None, "forgotten at once");
        // And said so, once, for rvsd to write back.
        assert_eq!(w.tables.take_forgotten().unwrap(), vec![(BridgeId(0), testing::mac(0xa), Vid(1))]);
        assert_eq!(w.tables.take_forgotten().unwrap(), vec![]);
        assert!(missed(2, &frame(0xb, 0xd, None, false, 60)));
        let kept = w.tables.mac(BridgeId(0), testing::mac(0xd), Vid(1)).unwrap().expect("static entry kept");
        assert_eq!((kept.port, kept.flags), (1, maps::MAC_STATIC));
    }
}

/// The kernel's MAC table holds 100,000 MACs (rvsd sizes it for 131,072),
/// and the program finds any of them.
#[test]
fn a_hundred_thousand_macs_fit_and_are_found() {
    if !require_root("kernel fast path", &[]) {
        return;
    }
    let mac = |i: u32| MacAddr([2, 0xd, (i >> 24) as u8, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    for ex in EXECUTORS {
        let w = world(ex, &[0, 0, 0, 0], &[true; 4], &[(0xa, 1, 0, false)]);
        let tables = KernelTables::new(8, 1 << 17).expect("big tables");
        for p in w.snap.ports.iter().flatten() {
            tables.set_port(p, true, Some(LOOPBACK)).expect("port entry");
        }
        tables.set_mac(BridgeId(0), testing::mac(0xa), Vid(1), Dest::port(PortId(0)), false).expect("source");
        for i in 0..100_000 {
            tables
                .set_mac(BridgeId(0), mac(i), Vid(1), Dest::port(PortId(1 + (i % 3) as u16)), false)
                .expect("MAC entry");
        }
        let prog = match ex {
            Executor::Xdp => crate::bpf::load_xdp(
                &program::program(Hook::Xdp { xsks: w._xsks.as_raw_fd() }, PortId(0), &tables.maps()),
                "rvs_test_big",
            ),
            Executor::Tc => crate::bpf::load_tc(
                &program::program(Hook::Tc { miss: LOOPBACK }, PortId(0), &tables.maps()),
                "rvs_test_big",
            ),
        }
        .expect("program");
        for i in [0, 49_999, 99_999] {
            let out = PortId(1 + (i % 3) as u16);
            let before = tables.counters(out).expect("counters").tx_packets;
            let f = testing::frame(mac(i), testing::mac(0xa), None);
            let sent = match ex {
                Executor::Xdp => crate::bpf::test_run_frame(&prog, &f).expect("test run").0 == XDP_REDIRECT as u32,
                Executor::Tc => crate::bpf::test_run_skb(&prog, &f).expect("test run").cb[0] == u32::from(out.0) + 1,
            };
            assert!(sent, "{ex:?}: MAC {i} of 100,000 not carried");
            assert_eq!(tables.counters(out).expect("counters").tx_packets, before + 1, "{ex:?}: MAC {i}");
        }
    }
}
