//! The polling loop over in-memory ports.
use super::*;
use crate::fdb::Fdb;
use crate::ids::Vid;
use crate::port::mem::{mem_port, MemHandle};
use crate::snapshot::{VlanMode, VlanSet};
use crate::testing::frame_between as frame;
use crate::wire::MacAddr;

struct Rig {
    pmd: Pmd,
    handles: Vec<MemHandle>,
    stats: Vec<Arc<PortStats>>,
    tx: Sender<Command>,
}

fn rig(modes: Vec<VlanMode>) -> Rig {
    let (mut pmd, tx) = crate::testing::pmd();
    let snap = crate::testing::one_bridge(Arc::new(Fdb::new(64)), 1, modes);
    let (handles, stats) = crate::testing::attach(&mut pmd, &tx, snap);
    Rig { pmd, handles, stats, tx }
}

#[test]
fn floods_then_forwards_and_returns_every_buffer() {
    let mut r = rig(vec![VlanMode::Access(Vid(1)); 3]);
    let free0 = r.pmd.pool_free();
    r.handles[0].inject(&frame(0xb, 0xa, None));
    r.pmd.poll_once();
    assert_eq!(r.handles[1].take_sent(), vec![frame(0xb, 0xa, None)]);
    assert_eq!(r.handles[2].take_sent(), vec![frame(0xb, 0xa, None)]);
    assert!(r.handles[0].take_sent().is_empty(), "never back to the ingress port");
    r.handles[1].inject(&frame(0xa, 0xb, None));
    r.pmd.poll_once();
    assert_eq!(r.handles[0].take_sent().len(), 1);
    assert!(r.handles[2].take_sent().is_empty(), "learned: no flood");
    assert_eq!(r.pmd.pool_free(), free0);
    assert_eq!(r.stats[0].read().rx_packets, 1);
    assert_eq!(r.stats[0].read().tx_packets, 1);
    assert_eq!((r.stats[0].read().flooded, r.stats[0].read().forwarded), (1, 0));
    assert_eq!((r.stats[1].read().flooded, r.stats[1].read().forwarded), (0, 1));
}

#[test]
fn trunk_tags_and_access_untags() {
    let trunk = VlanMode::Trunk { allowed: [10, 20].map(Vid).into_iter().collect::<VlanSet>(), native: None };
    let mut r = rig(vec![VlanMode::Access(Vid(10)), VlanMode::Access(Vid(20)), trunk]);
    r.handles[0].inject(&frame(0xff, 0xa, None));
    r.pmd.poll_once();
    assert_eq!(r.handles[2].take_sent(), vec![frame(0xff, 0xa, Some(10))]);
    assert!(r.handles[1].take_sent().is_empty(), "VLAN 20 is isolated from 10");
    r.handles[2].inject(&frame(0xff, 0xc, Some(20)));
    r.pmd.poll_once();
    assert_eq!(r.handles[1].take_sent(), vec![frame(0xff, 0xc, None)]);
    assert!(r.handles[0].take_sent().is_empty());
}

#[test]
fn bad_frames_are_counted_not_forwarded() {
    let mut r = rig(vec![VlanMode::Access(Vid(1)); 2]);
    let free0 = r.pmd.pool_free();
    r.handles[0].inject(&[1, 2, 3]);
    r.handles[0].inject(&frame(0xb, 0xa, Some(7)));
    let mut mc = frame(0xb, 0xa, None);
    mc[6] = 1;
    r.handles[0].inject(&mc);
    r.pmd.poll_once();
    assert!(r.handles[1].take_sent().is_empty());
    let c = r.stats[0].read();
    assert_eq!(c.drops[DropReason::Runt as usize], 1);
    assert_eq!(c.drops[DropReason::VlanFiltered as usize], 1);
    assert_eq!(c.drops[DropReason::BadSrcMac as usize], 1);
    assert_eq!(c.rx_packets, c.forwarded + c.flooded + c.total_drops());
    assert_eq!(r.pmd.pool_free(), free0);
}

#[test]
fn captures_what_ports_receive_and_send() {
    use crate::capture::{CaptureRing, Direction};
    let mut r = rig(vec![VlanMode::Access(Vid(1)); 2]);
    let rx = CaptureRing::new(8, 2048, Direction::In);
    let tx = CaptureRing::new(8, 20, Direction::Both);
    r.tx.send(Command::StartCapture { id: PortId(0), ring: rx.clone() }).unwrap();
    r.tx.send(Command::StartCapture { id: PortId(1), ring: tx.clone() }).unwrap();
    r.pmd.apply_commands();
    let f = frame(0xff, 0xa, None);
    r.handles[0].inject(&f);
    r.pmd.poll_once();
    let got = rx.take().unwrap();
    assert_eq!((got.bytes(), got.out), (&f[..], false));
    let sent = tx.take().unwrap();
    assert_eq!((sent.bytes(), sent.orig_len, sent.out), (&f[..20], f.len() as u32, true));
    assert!(rx.take().is_none() && tx.take().is_none());
    r.tx.send(Command::StopCapture { id: PortId(0) }).unwrap();
    r.pmd.apply_commands();
    r.handles[0].inject(&f);
    r.pmd.poll_once();
    assert!(rx.take().is_none(), "captured after stop");
}

/// A port that receives nothing, reports `kernel_drops`, asks for
/// `demand` receive buffers and records the share it is given.
#[derive(Default)]
struct Stub {
    kernel_drops: Arc<std::sync::atomic::AtomicU64>,
    demand: u32,
    share: Arc<std::sync::atomic::AtomicU32>,
}

impl Port for Stub {
    fn recv(&mut self, _: &mut Pool, _: &mut [Desc]) -> std::io::Result<usize> {
        Ok(0)
    }
    fn send(&mut self, pool: &mut Pool, frames: &[Desc]) -> usize {
        frames.iter().for_each(|d| pool.free(d.addr));
        0
    }
    fn flush(&mut self, _: &mut Pool) -> std::io::Result<()> {
        Ok(())
    }
    fn release(&mut self, _: &mut Pool) {}
    fn kernel_drops(&self) -> u64 {
        self.kernel_drops.load(Relaxed)
    }
    fn fill_demand(&self) -> u32 {
        self.demand
    }
    fn set_fill_share(&mut self, buffers: u32) {
        self.share.store(buffers, Relaxed);
    }
}

#[test]
fn kernel_drops_are_added_up_across_socket_reopens() {
    let r = rig(vec![VlanMode::Access(Vid(1))]);
    let mut pmd = r.pmd;
    let total = Arc::new(std::sync::atomic::AtomicU64::new(5));
    let st = Arc::new(PortStats::default());
    let lp = |st: &Arc<PortStats>| LocalPort {
        id: PortId(0),
        queue: 1,
        port: Some(Box::new(Stub { kernel_drops: total.clone(), ..Stub::default() })),
        rx: true,
        stats: st.clone(),
    };
    r.tx.send(Command::AddPort(lp(&st))).unwrap();
    pmd.apply_commands();
    pmd.publish_kernel_drops();
    total.store(7, Relaxed);
    pmd.publish_kernel_drops();
    assert_eq!(st.read().kernel_drops, 7);
    // The socket opened anew: its total starts again from zero.
    let (done, wait) = crossbeam::channel::bounded(1);
    r.tx.send(Command::RemoveQueue { id: PortId(0), queue: 1, done }).unwrap();
    r.tx.send(Command::AddPort(lp(&st))).unwrap();
    pmd.apply_commands();
    wait.recv().unwrap();
    total.store(2, Relaxed);
    pmd.publish_kernel_drops();
    assert_eq!(st.read().kernel_drops, 9);
}

#[test]
fn full_tx_ring_counts_drops() {
    let mut r = rig(vec![VlanMode::Access(Vid(1)); 2]);
    r.handles[1].limit_tx(Some(1));
    r.handles[0].inject(&frame(0xff, 0xa, None));
    r.handles[0].inject(&frame(0xff, 0xa, None));
    r.pmd.poll_once();
    assert_eq!(r.handles[1].take_sent().len(), 1);
    assert_eq!(r.stats[1].read().drops[DropReason::TxFull as usize], 1);
}

#[test]
fn removed_port_stops_and_frees() {
    let mut r = rig(vec![VlanMode::Access(Vid(1)); 2]);
    let free0 = r.pmd.pool_free();
    let (done_tx, done_rx) = crossbeam::channel::bounded(1);
    r.tx.send(Command::RemovePort { id: PortId(1), done: done_tx }).unwrap();
    assert!(r.pmd.apply_commands());
    done_rx.recv().unwrap();
    r.handles[0].inject(&frame(0xff, 0xa, None));
    r.handles[1].inject(&frame(0xff, 0xb, None));
    r.pmd.poll_once();
    assert!(r.handles[1].take_sent().is_empty());
    assert_eq!(r.pmd.pool_free(), free0);
    let _ = MacAddr::BROADCAST;
}

/// Two polling threads over one bridge: p0 (on thread 0) and p1 (on
/// thread 1) in these VLAN modes; frames between them cross the handoff.
fn two_threads(modes: [VlanMode; 2]) -> (Pmd, Pmd, MemHandle, MemHandle, Arc<PortStats>) {
    let (tx0, rx0) = crossbeam::channel::unbounded();
    let (tx1, rx1) = crossbeam::channel::unbounded();
    let handoff = Handoff::new(2, 8);
    let mk = |i, rx| {
        Pmd::new(
            i,
            Pool::new(64).unwrap(),
            rx,
            handoff.clone(),
            Arc::new(ThreadStats::default()),
            Instant::now(),
            PmdOptions::default(),
        )
    };
    let (mut a, mut b) = (mk(0, rx0), mk(1, rx1));
    let mut snap = crate::testing::one_bridge(Arc::new(Fdb::new(64)), 1, modes);
    snap.tx_thread = vec![0, 1];
    let snap = Arc::new(snap);
    let (p0, h0) = mem_port();
    let (p1, h1) = mem_port();
    let st = Arc::new(PortStats::default());
    tx0.send(Command::AddPort(LocalPort {
        id: PortId(0),
        queue: 0,
        port: Some(Box::new(p0)),
        rx: true,
        stats: st.clone(),
    }))
    .unwrap();
    tx1.send(Command::AddPort(LocalPort {
        id: PortId(1),
        queue: 0,
        port: Some(Box::new(p1)),
        rx: true,
        stats: st.clone(),
    }))
    .unwrap();
    tx0.send(Command::Snapshot(snap.clone())).unwrap();
    tx1.send(Command::Snapshot(snap)).unwrap();
    a.apply_commands();
    b.apply_commands();
    (a, b, h0, h1, st)
}

#[test]
fn frames_cross_threads_through_the_handoff() {
    let (mut a, mut b, h0, h1, _) = two_threads([VlanMode::Access(Vid(1)), VlanMode::Access(Vid(1))]);
    h0.inject(&frame(0xff, 0xa, None));
    a.poll_once();
    b.poll_once();
    assert_eq!(h1.take_sent(), vec![frame(0xff, 0xa, None)]);
    assert!(h0.take_sent().is_empty());
}

/// A frame of the largest size that gains a tag on its way out no longer
/// fits a buffer: dropped and counted, on either side of the handoff, and
/// the thread lives on.
#[test]
fn a_frame_grown_past_a_buffer_is_dropped_as_oversize() {
    let trunk = VlanMode::Trunk { allowed: [Vid(1)].into_iter().collect::<VlanSet>(), native: None };
    let (mut a, mut b, h0, h1, st) = two_threads([VlanMode::Access(Vid(1)), trunk]);
    let mut big = frame(0xff, 0xa, None);
    big.resize(crate::port::MAX_FRAME, 0);
    h0.inject(&big);
    a.poll_once();
    b.poll_once();
    assert!(h1.take_sent().is_empty());
    assert_eq!(st.read().drops[DropReason::Oversize as usize], 1);
    // A frame that fits still goes through.
    h0.inject(&frame(0xff, 0xa, None));
    a.poll_once();
    b.poll_once();
    assert_eq!(h1.take_sent(), vec![frame(0xff, 0xa, Some(1))]);
}

/// p0 and p1 local ports, p2 the uplink, p3 a VXLAN port (VNI 42) to
/// three remote VTEPs, all on one thread.
fn tunnel_rig() -> (Pmd, Vec<MemHandle>, Vec<Arc<PortStats>>, Vec<std::net::IpAddr>) {
    use crate::snapshot::{Remote, Tunnel, Vtep};
    use crate::wire::vxlan::{OuterTemplate, PORT};
    let ip = |last: u8| std::net::IpAddr::from([198, 18, 9, last]);
    let remotes = vec![ip(2), ip(3), ip(4)];
    let up = MacAddr([2, 0, 0, 0, 9, 1]);
    let tunnel = Tunnel {
        vni: 42,
        local: ip(1),
        dst_port: PORT,
        uplink: PortId(2),
        max_inner_frame: 1464,
        remotes: remotes
            .iter()
            .enumerate()
            .map(|(i, &r)| Remote {
                ip: r,
                outer: OuterTemplate::new(up, MacAddr([2, 0, 0, 0, 9, 0x10 + i as u8]), ip(1), r, PORT, 64, 42),
            })
            .collect(),
    };
    use crate::testing::port;
    let ports = vec![
        port(0, VlanMode::Access(Vid(1)), PortKind::Plain),
        port(1, VlanMode::Access(Vid(1)), PortKind::Plain),
        port(2, VlanMode::Access(Vid(1)), PortKind::Uplink),
        port(3, VlanMode::Access(Vid(1)), PortKind::Vxlan(Arc::new(tunnel))),
    ];
    let vteps = vec![Vtep { local: ip(1), dst_port: PORT, vni: 42, port: PortId(3) }];
    let snap = crate::testing::world(Arc::new(Fdb::new(64)), 1, ports, vteps);
    let (mut pmd, tx) = crate::testing::pmd();
    let (handles, stats) = crate::testing::attach(&mut pmd, &tx, snap);
    (pmd, handles, stats, remotes)
}

/// The remote VTEP (outer IPv4 destination) of each encapsulated frame.
fn outer_dsts(frames: &[Vec<u8>]) -> Vec<std::net::IpAddr> {
    frames.iter().map(|f| crate::wire::vxlan::decap(f).expect("a VXLAN frame").dst).collect()
}

#[test]
fn tunnel_floods_to_every_remote_learns_and_never_returns() {
    use crate::wire::vxlan::OuterTemplate;
    let (mut pmd, h, stats, remotes) = tunnel_rig();
    let free0 = pmd.pool_free();
    // A broadcast from a local host: to p1, and once to every remote.
    h[0].inject(&frame(0xff, 0xa, None));
    pmd.poll_once();
    assert_eq!(h[1].take_sent().len(), 1);
    let out = h[2].take_sent();
    assert_eq!(outer_dsts(&out), remotes, "head-end replication to every remote");
    for f in &out {
        assert_eq!(&f[crate::wire::vxlan::OVERHEAD_V4..], &frame(0xff, 0xa, None)[..], "inner frame unchanged");
    }

    // A broadcast from behind remote 1 (198.18.9.3): to the local
    // ports only, never back into the tunnel (split horizon).
    let from_remote = |src: u8, dst: u8| {
        let t = OuterTemplate::new(
            MacAddr([2, 0, 0, 0, 9, 0x11]),
            MacAddr([2, 0, 0, 0, 9, 1]),
            remotes[1],
            std::net::IpAddr::from([198, 18, 9, 1]),
            crate::wire::vxlan::PORT,
            64,
            42,
        )
        .unwrap();
        let inner = frame(dst, src, None);
        let mut buf = vec![0u8; t.len()];
        buf.extend(&inner);
        let off = t.encap(&mut buf, t.len(), inner.len(), 50000).unwrap();
        buf[off..].to_vec()
    };
    h[2].inject(&from_remote(0xc, 0xff));
    pmd.poll_once();
    assert_eq!(h[0].take_sent(), vec![frame(0xff, 0xc, None)]);
    assert_eq!(h[1].take_sent(), vec![frame(0xff, 0xc, None)]);
    assert!(h[2].take_sent().is_empty(), "flooded back across the tunnel");
    assert_eq!(stats[3].read().rx_packets, 1, "decapsulated frames count on the tunnel port");

    // Its source was learned behind remote 1: a reply goes there alone.
    h[0].inject(&frame(0xc, 0xa, None));
    pmd.poll_once();
    assert_eq!(outer_dsts(&h[2].take_sent()), vec![remotes[1]]);
    assert!(h[1].take_sent().is_empty(), "known unicast flooded");
    assert_eq!(pmd.pool_free(), free0, "every buffer returned");
}

#[test]
fn tunnel_drops_what_does_not_fit_and_bad_vxlan() {
    let (mut pmd, h, stats, _) = tunnel_rig();
    let free0 = pmd.pool_free();
    let mut big = frame(0xff, 0xa, None);
    big.resize(1465, 0);
    h[0].inject(&big);
    pmd.poll_once();
    assert!(h[2].take_sent().is_empty(), "an oversize inner frame was encapsulated");
    assert_eq!(h[1].take_sent().len(), 1, "local ports still get it");
    assert_eq!(stats[3].read().drops[DropReason::TunnelMtu as usize], 1);
    h[2].inject(&[0u8; 60]);
    pmd.poll_once();
    assert_eq!(stats[2].read().drops[DropReason::NotVxlan as usize], 1);
    assert_eq!(pmd.pool_free(), free0);
}

#[test]
fn receive_buffers_are_shared_out_so_no_socket_is_left_without() {
    let r = rig(vec![VlanMode::Access(Vid(1))]);
    let mut pmd = r.pmd;
    let budget = fill_budget(256);
    assert_eq!(budget, 128, "the rig's pool has 256 buffers");
    let shares: Vec<_> = (0..12).map(|_| Arc::new(std::sync::atomic::AtomicU32::new(u32::MAX))).collect();
    let add = |q: usize, demand: u32| {
        let port = Box::new(Stub { demand, share: shares[q].clone(), ..Stub::default() });
        let lp = LocalPort { id: PortId(0), queue: q as u32, port: Some(port), rx: true, stats: Arc::default() };
        r.tx.send(Command::AddPort(lp)).unwrap();
    };
    // Two sockets fit: each gets what it asks for.
    add(0, 60);
    add(1, 60);
    pmd.apply_commands();
    assert_eq!((shares[0].load(Relaxed), shares[1].load(Relaxed)), (60, 60));
    // Twelve do not: the budget is split, every socket gets some.
    for q in 2..12 {
        add(q, 60);
    }
    pmd.apply_commands();
    let got: Vec<u32> = shares.iter().map(|s| s.load(Relaxed)).collect();
    assert!(got.iter().all(|&s| s == 128 / 12), "shares {got:?}");
    assert!(pmd.stats.fill_share.load(Relaxed) <= u64::from(budget));
    // Sockets leave: the others get their full demand back.
    for q in 2..12 {
        let (done, _wait) = crossbeam::channel::bounded(1);
        r.tx.send(Command::RemoveQueue { id: PortId(0), queue: q, done }).unwrap();
    }
    pmd.apply_commands();
    assert_eq!((shares[0].load(Relaxed), shares[1].load(Relaxed)), (60, 60));
    assert_eq!(pmd.stats.fill_share.load(Relaxed), 120);
    assert_eq!(max_rx_sockets(16384), 64, "rvsd's 16,384-buffer pools feed 64 sockets a thread");
}

/// A frame handed off under a snapshot that still had its port, to a
/// thread that has removed the port meanwhile (`port del` while frames
/// are in flight): counted as `port_down` on the port, never lost
/// silently. Found by the `multi` fuzz target.
#[test]
fn a_parcel_for_a_port_removed_in_flight_is_counted() {
    let (mut pmds, txs) = crate::testing::pmds(2, 8, 64);
    let mut snap = crate::testing::one_bridge(Arc::new(Fdb::new(64)), 1, vec![VlanMode::Access(Vid(1)); 2]);
    snap.tx_thread = vec![0, 1];
    let (h, stats) = crate::testing::attach_threads(&mut pmds, &txs, snap);
    let free0: Vec<usize> = pmds.iter().map(Pmd::pool_free).collect();
    h[0].as_ref().unwrap().inject(&frame(0xff, 0xa, None));
    pmds[0].poll_once();
    let (done, _) = crossbeam::channel::bounded(1);
    txs[1].send(Command::RemovePort { id: PortId(1), done }).unwrap();
    assert!(pmds[1].apply_commands());
    assert_eq!(pmds[1].poll_once(), 1, "the parcel was taken");
    assert_eq!(stats[1][0].read().drops[DropReason::PortDown as usize], 1);
    assert_eq!(pmds.iter().map(Pmd::pool_free).collect::<Vec<_>>(), free0);
}

#[test]
fn arp_and_nd_for_bound_addresses_are_answered_back_and_counted() {
    use crate::responder;
    use crate::testing::{arp, solicit};
    use crate::wire::arp::OP_REQUEST;
    use std::net::{Ipv4Addr, Ipv6Addr};
    let trunk = VlanMode::Trunk { allowed: [10].map(Vid).into_iter().collect::<VlanSet>(), native: None };
    let mut r = rig(vec![VlanMode::Access(Vid(10)), VlanMode::Access(Vid(10)), trunk]);
    let free0 = r.pmd.pool_free();
    let (a, b) = (MacAddr([2, 0, 0, 0, 0, 0xa]), MacAddr([2, 0, 0, 0, 0, 0xb]));
    let (ip_a, ip_b) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
    let (v6a, v6b): (Ipv6Addr, Ipv6Addr) = ("2001:2::1".parse().unwrap(), "2001:2::2".parse().unwrap());
    let neigh = r.pmd.snap.bridge(crate::ids::BridgeId(0)).unwrap().neigh.clone();
    neigh.add_static(ip_b.into(), Vid(10), b, 0);
    neigh.add_static(v6b.into(), Vid(10), b, 0);

    for (port, tag) in [(0, None), (2, Some(10))] {
        let req = arp(OP_REQUEST, a, ip_a, ip_b, tag);
        r.handles[port].inject(&req);
        r.pmd.poll_once();
        let mut want = req.clone();
        want.resize(req.len() + 64, 0);
        let n = responder::answer(&mut want, req.len(), &neigh, Vid(10)).unwrap();
        want.truncate(n);
        assert_eq!(r.handles[port].take_sent(), vec![want], "the reply, back where the request came from");
        let ns = solicit(a, v6a, v6b, true, tag);
        r.handles[port].inject(&ns);
        r.pmd.poll_once();
        let sent = r.handles[port].take_sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0][6..12], b.0, "an advertisement from the bound MAC");
        for other in (0..3).filter(|p| *p != port) {
            assert!(r.handles[other].take_sent().is_empty(), "port {other}: a suppressed request was flooded");
        }
    }
    let (c0, c2) = (r.stats[0].read(), r.stats[2].read());
    assert_eq!((c0.arp_suppressed, c0.nd_suppressed, c0.flooded), (1, 1, 0));
    assert_eq!((c2.arp_suppressed, c2.nd_suppressed), (1, 1));
    // An unknown target is flooded as before.
    r.handles[0].inject(&arp(OP_REQUEST, a, ip_a, Ipv4Addr::new(198, 18, 0, 9), None));
    r.pmd.poll_once();
    assert_eq!(r.handles[1].take_sent().len(), 1);
    assert_eq!(r.stats[0].read().flooded, 1);
    assert_eq!(r.pmd.pool_free(), free0);
}

#[test]
fn a_full_neighbour_table_counts_refusals() {
    use crate::testing::arp;
    use crate::wire::arp::OP_REPLY;
    let mut r = rig(vec![VlanMode::Access(Vid(1)); 2]);
    let limit = crate::neigh::DEFAULT_LIMIT;
    let a = MacAddr([2, 0, 0, 0, 0, 0xa]);
    let mut sent = 0;
    while sent < limit + 10 {
        for _ in 0..BATCH {
            let ip = std::net::Ipv4Addr::from(0xc612_0000 + sent);
            r.handles[0].inject(&arp(OP_REPLY, a, ip, ip, None));
            sent += 1;
        }
        r.pmd.poll_once();
        r.handles[1].take_sent();
    }
    let neigh = r.pmd.snap.bridge(crate::ids::BridgeId(0)).unwrap().neigh.clone();
    assert_eq!(neigh.learned(), limit);
    assert_eq!(r.stats[0].read().neigh_refused, u64::from(sent - limit));
}
