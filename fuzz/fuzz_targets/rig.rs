//! A switch in memory for the fuzz targets: one polling thread, three local
//! ports (access VLAN 1, access VLAN 10, trunk 10,20 with native 1), an
//! uplink and a VXLAN port (VNI 42, IPv4) with two remote VTEPs, the second
//! without a resolved next hop. The bridge learns at most 16 MACs.
#![allow(dead_code)]

use rvs_dataplane::fdb::Fdb;
use rvs_dataplane::ids::{PortId, Vid};
use rvs_dataplane::pmd::{Command, Pmd};
use rvs_dataplane::port::mem::MemHandle;
use rvs_dataplane::snapshot::{PortInfo, PortKind, Remote, Snapshot, Tunnel, VlanMode, VlanSet, Vtep};
use rvs_dataplane::stats::{PortCounters, PortStats};
use rvs_dataplane::testing::{self, port};
use rvs_dataplane::wire::vxlan::{OuterTemplate, PORT};
use rvs_dataplane::wire::MacAddr;
use std::net::IpAddr;
use std::sync::Arc;

pub const LOCAL_PORTS: usize = 3;
pub const UPLINK: usize = 3;
pub const TUNNEL: usize = 4;
pub const VNI: u32 = 42;
pub const MAX_MACS: u32 = 16;
pub const UPLINK_MAC: MacAddr = MacAddr([2, 0, 0, 0, 9, 1]);

pub fn ip(last: u8) -> IpAddr {
    IpAddr::from([198, 18, 9, last])
}

/// The outer headers a frame from remote 0 to us carries.
pub fn from_remote0() -> OuterTemplate {
    OuterTemplate::new(MacAddr([2, 0, 0, 0, 9, 2]), UPLINK_MAC, ip(2), ip(1), PORT, 64, VNI).unwrap()
}

pub struct Rig {
    pub pmd: Pmd,
    /// Handles of the local ports and the uplink (index = port id).
    pub handles: Vec<MemHandle>,
    /// Counters of every port (index = port id).
    pub stats: Vec<Arc<PortStats>>,
    pub fdb: Arc<Fdb>,
    pub free0: usize,
    pub tx: crossbeam::channel::Sender<Command>,
}

impl Rig {
    /// Back to the state after `rig()` (learned MACs and cached flows
    /// forgotten) so one rig serves many inputs; counters keep running.
    pub fn reset(&mut self) {
        self.fdb.flush(None);
        self.tx.send(Command::FlushFlows).unwrap();
        assert!(self.pmd.apply_commands());
        for h in &self.handles {
            h.take_sent();
        }
    }
}

/// The ports, in id order.
pub fn ports() -> Vec<PortInfo> {
    let trunk = VlanMode::Trunk { allowed: [10, 20].map(Vid).into_iter().collect::<VlanSet>(), native: Some(Vid(1)) };
    let tunnel = Tunnel {
        vni: VNI,
        local: ip(1),
        dst_port: PORT,
        uplink: PortId(UPLINK as u16),
        max_inner_frame: 1450,
        remotes: vec![
            Remote {
                ip: ip(2),
                outer: OuterTemplate::new(UPLINK_MAC, MacAddr([2, 0, 0, 0, 9, 2]), ip(1), ip(2), PORT, 64, VNI),
            },
            Remote { ip: ip(3), outer: None },
        ],
    };
    vec![
        port(0, VlanMode::Access(Vid(1)), PortKind::Plain),
        port(1, VlanMode::Access(Vid(10)), PortKind::Plain),
        port(2, trunk, PortKind::Plain),
        port(3, VlanMode::Access(Vid(1)), PortKind::Uplink),
        port(4, VlanMode::Access(Vid(1)), PortKind::Vxlan(Arc::new(tunnel))),
    ]
}

/// The local VTEP of the tunnel port.
pub fn vteps() -> Vec<Vtep> {
    vec![Vtep { local: ip(1), dst_port: PORT, vni: VNI, port: PortId(TUNNEL as u16) }]
}

pub fn snapshot(fdb: Arc<Fdb>) -> Snapshot {
    testing::world(fdb, 1, ports(), vteps())
}

pub fn rig() -> Rig {
    let (mut pmd, tx) = testing::pmd();
    let fdb = Arc::new(Fdb::new(MAX_MACS));
    let (handles, stats) = testing::attach(&mut pmd, &tx, snapshot(fdb.clone()));
    let free0 = pmd.pool_free();
    Rig { pmd, handles, stats, fdb, free0, tx }
}

/// What `now` counted since `was` (the counters the targets check).
pub fn since(now: &PortCounters, was: &PortCounters) -> PortCounters {
    PortCounters {
        rx_packets: now.rx_packets - was.rx_packets,
        forwarded: now.forwarded - was.forwarded,
        flooded: now.flooded - was.flooded,
        learn_refused: now.learn_refused - was.learn_refused,
        drops: std::array::from_fn(|i| now.drops[i] - was.drops[i]),
        ..PortCounters::default()
    }
}
