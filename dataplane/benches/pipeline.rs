//! Pipeline benchmarks: one polling thread's cost per frame, no I/O.
//!
//! A `Pmd` with in-memory replay ports runs its real loop (receive a batch,
//! classify through the flow cache, learn, act, transmit); each iteration
//! is one poll of a 64-frame batch, so criterion's elements/s is frames/s
//! on one core. Cases: learned L2 forward, flood to three ports, VXLAN
//! encap and VXLAN decap, each with 1, 1,000 and 100,000 flows (distinct
//! destination MACs, or source MACs for flood and decap, stamped into one
//! template frame). The copy of each frame into its buffer is included, as
//! the kernel's copy mode charges AF_XDP ports.
//!
//! `cargo bench -p rvs-dataplane --bench pipeline`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rvs_dataplane::fdb::{Dest, Fdb};
use rvs_dataplane::ids::{PortId, Vid};
use rvs_dataplane::pmd::{Command, Handoff, LocalPort, Pmd, PmdOptions, BATCH};
use rvs_dataplane::port::mem::ReplayPort;
use rvs_dataplane::port::{Pool, Port};
use rvs_dataplane::snapshot::{PortInfo, PortKind, Remote, Tunnel, VlanMode, Vtep};
use rvs_dataplane::stats::PortStats;
use rvs_dataplane::testing;
use rvs_dataplane::wire::ip::PROTO_UDP;
use rvs_dataplane::wire::vxlan::{OuterTemplate, PORT};
use rvs_dataplane::wire::{self, EthernetRepr, IpRepr, MacAddr, UdpRepr};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FLOWS: [usize; 3] = [1, 1_000, 100_000];
const LOCAL: [u8; 4] = [198, 18, 9, 1];
const REMOTE: [u8; 4] = [198, 18, 9, 2];
const UPLINK_MAC: MacAddr = MacAddr([2, 0, 0, 0, 9, 1]);
const NEXT_HOP: MacAddr = MacAddr([2, 0, 0, 0, 9, 2]);
const HOST_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);

/// The i-th of many MACs.
fn mac(i: usize) -> MacAddr {
    let b = (i as u32).to_be_bytes();
    MacAddr([2, 0x10, b[0], b[1], b[2], b[3]])
}

/// A 64-byte UDP/IPv4 frame, 198.19.0.1:1234 -> 198.19.0.2:5678.
fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let eth = EthernetRepr { dst, src, tag: None, ethertype: 0 };
    let ip = IpRepr::new([198, 19, 0, 1].into(), [198, 19, 0, 2].into(), PROTO_UDP, 64, 0).expect("one family");
    let f = wire::udp_frame(eth, ip, UdpRepr { src_port: 1234, dst_port: 5678, payload_len: 0 }, &[0x5a; 18]);
    debug_assert_eq!(f.len(), 64);
    f
}

fn template(from: IpAddr, to: IpAddr, src: MacAddr, dst: MacAddr) -> OuterTemplate {
    OuterTemplate::new(src, dst, from, to, PORT, 64, 42).expect("same family")
}

fn encapsulated(inner: &[u8]) -> Vec<u8> {
    let t = template(IpAddr::from(REMOTE), IpAddr::from(LOCAL), NEXT_HOP, UPLINK_MAC);
    let mut buf = vec![0u8; t.len()];
    buf.extend_from_slice(inner);
    let off = t.encap(&mut buf, t.len(), inner.len(), 50000).expect("room for the header");
    buf[off..].to_vec()
}

/// A polling thread and the counters of what its ports sent.
struct Rig {
    pmd: Pmd,
    sent: Vec<Arc<AtomicU64>>,
}

/// What port 0 receives: a template frame, the number of flows, and where
/// the flow number goes in it (the last four bytes of a MAC from [`mac`]).
struct Traffic {
    template: Vec<u8>,
    flows: usize,
    flow_at: usize,
}

/// Offset of the flow number in a frame whose destination MAC is `mac(i)`.
const DST_FLOW: usize = 2;
/// ... and in one whose source MAC is `mac(i)`.
const SRC_FLOW: usize = 8;

/// Builds a thread whose port 0 receives `traffic`; ports with a `kind`
/// other than plain are set up as the benchmark needs (uplink 1, tunnel
/// 2), and `learn` fills the bridge's FDB.
fn rig(ports: Vec<(u16, PortKind)>, traffic: Traffic, learn: impl Fn(&Fdb)) -> Rig {
    let infos: Vec<PortInfo> =
        ports.into_iter().map(|(id, kind)| testing::port(id, VlanMode::Access(Vid(1)), kind)).collect();
    // Sized as rvsd would for the flows (default limit 8192 or more).
    let fdb = Arc::new(Fdb::new(FLOWS[2] as u32 + 64));
    learn(&fdb);
    let (tx, rx) = crossbeam::channel::unbounded();
    let opts = PmdOptions { idle_after: Duration::from_secs(3600), idle_sleep: Duration::ZERO };
    let mut pmd = Pmd::new(0, Pool::new(4096).unwrap(), rx, Handoff::new(1, 4), Arc::default(), Instant::now(), opts);
    let mut sent = Vec::new();
    let mut traffic = Some(traffic);
    for p in &infos {
        let port: Option<Box<dyn Port>> = match p.kind {
            PortKind::Vxlan(_) => None,
            _ => {
                let t = if p.id == PortId(0) { traffic.take() } else { None };
                let (port, counter) = match t {
                    Some(t) => ReplayPort::new(t.template, t.flows as u32, t.flow_at),
                    None => ReplayPort::new(frame(HOST_A, HOST_A), 0, 0),
                };
                sent.push(counter);
                Some(Box::new(port))
            }
        };
        let rx = p.id == PortId(0);
        tx.send(Command::AddPort(LocalPort { id: p.id, queue: 0, port, rx, stats: Arc::new(PortStats::default()) }))
            .unwrap();
    }
    let vteps = vec![Vtep { local: IpAddr::from(LOCAL), dst_port: PORT, vni: 42, port: PortId(2) }];
    let snap = testing::world(fdb, 1, infos, vteps);
    tx.send(Command::Snapshot(Arc::new(snap))).unwrap();
    assert!(pmd.apply_commands());
    Rig { pmd, sent }
}

fn tunnel() -> PortKind {
    PortKind::Vxlan(Arc::new(Tunnel {
        vni: 42,
        local: IpAddr::from(LOCAL),
        dst_port: PORT,
        uplink: PortId(1),
        max_inner_frame: 1464,
        remotes: vec![Remote {
            ip: IpAddr::from(REMOTE),
            outer: Some(template(IpAddr::from(LOCAL), IpAddr::from(REMOTE), UPLINK_MAC, NEXT_HOP)),
        }],
    }))
}

fn l2_forward(flows: usize) -> Rig {
    let traffic = Traffic { template: frame(mac(0), HOST_A), flows, flow_at: DST_FLOW };
    rig(vec![(0, PortKind::Plain), (1, PortKind::Plain)], traffic, |fdb| {
        for i in 0..flows {
            fdb.learn(mac(i), Vid(1), PortId(1), 0);
        }
    })
}

fn flood(flows: usize) -> Rig {
    let traffic = Traffic { template: frame(MacAddr::BROADCAST, mac(0)), flows, flow_at: SRC_FLOW };
    let ports = (0..4).map(|i| (i, PortKind::Plain)).collect();
    rig(ports, traffic, |_| {})
}

fn vxlan_encap(flows: usize) -> Rig {
    let traffic = Traffic { template: frame(mac(0), HOST_A), flows, flow_at: DST_FLOW };
    rig(vec![(0, PortKind::Plain), (1, PortKind::Uplink), (2, tunnel())], traffic, |fdb| {
        for i in 0..flows {
            fdb.learn_at(mac(i), Vid(1), Dest { port: PortId(2), remote: 0 }, 0);
        }
    })
}

fn vxlan_decap(flows: usize) -> Rig {
    // Port 0 is the uplink here: it receives the encapsulated frames.
    let outer = encapsulated(&frame(HOST_A, mac(0)));
    let flow_at = outer.len() - 64 + SRC_FLOW;
    let traffic = Traffic { template: outer, flows, flow_at };
    rig(vec![(0, PortKind::Uplink), (1, PortKind::Plain), (2, tunnel())], traffic, |fdb| {
        fdb.learn(HOST_A, Vid(1), PortId(1), 0);
    })
}

/// A benchmark's name and how to build its thread for a number of flows.
type Case = (&'static str, fn(usize) -> Rig);

fn bench(c: &mut Criterion) {
    let cases: [Case; 4] = [
        ("l2_forward", l2_forward),
        ("flood_3_ports", flood),
        ("vxlan_encap", vxlan_encap),
        ("vxlan_decap", vxlan_decap),
    ];
    for (name, build) in cases {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(BATCH as u64));
        for flows in FLOWS {
            let mut r = build(flows);
            // Warm up: learn, fill the flow cache.
            for _ in 0..(flows / BATCH + 2) {
                r.pmd.poll_once();
            }
            g.bench_with_input(BenchmarkId::from_parameter(flows), &flows, |b, _| b.iter(|| r.pmd.poll_once()));
            let sent: u64 = r.sent.iter().skip(1).map(|s| s.load(Ordering::Relaxed)).sum();
            assert!(sent > 0, "{name}/{flows}: nothing was sent; the benchmark measured drops");
            let c = r.pmd.cache_stats();
            let pct = 100.0 * c.hits as f64 / (c.hits + c.misses).max(1) as f64;
            eprintln!("{name}/{flows}: flow cache hits {pct:.1}% ({} entries)", c.entries);
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
