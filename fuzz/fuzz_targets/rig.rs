//! A switch in memory for the fuzz targets: one polling thread, three local
//! ports (access VLAN 1, access VLAN 10, trunk 10,20 with native 1), an
//! uplink and a VXLAN port (VNI 42, IPv4) with two remote VTEPs, the second
//! without a resolved next hop. The bridge learns at most 16 MACs.
#![allow(dead_code)]

use rvs_dataplane::fdb::Fdb;
use rvs_dataplane::pmd::{Command, Handoff, LocalPort, Pmd, PmdOptions};
use rvs_dataplane::port::mem::{mem_port, MemHandle};
use rvs_dataplane::port::{Pool, Port};
use rvs_dataplane::snapshot::{
    BridgeInfo, PortInfo, PortKind, Remote, Snapshot, Tunnel, VlanMode, VlanSet, Vtep, NO_BRIDGE, TX_ANY,
};
use rvs_dataplane::stats::{PortStats, ThreadStats};
use rvs_dataplane::wire::vxlan::{OuterTemplate, PORT};
use rvs_dataplane::wire::MacAddr;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

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

pub fn snapshot(fdb: Arc<Fdb>) -> Snapshot {
    let trunk = VlanMode::Trunk { allowed: [10, 20].into_iter().collect::<VlanSet>(), native: Some(1) };
    let tunnel = Tunnel {
        vni: VNI,
        local: ip(1),
        dst_port: PORT,
        uplink: UPLINK as u16,
        max_inner_frame: 1450,
        remotes: vec![
            Remote {
                ip: ip(2),
                outer: OuterTemplate::new(UPLINK_MAC, MacAddr([2, 0, 0, 0, 9, 2]), ip(1), ip(2), PORT, 64, VNI),
            },
            Remote { ip: ip(3), outer: None },
        ],
    };
    let info = |id: u16, bridge, vlan, kind| PortInfo { id, bridge, vlan, name: format!("p{id}"), kind };
    let infos = vec![
        info(0, 0, VlanMode::Access(1), PortKind::Plain),
        info(1, 0, VlanMode::Access(10), PortKind::Plain),
        info(2, 0, trunk, PortKind::Plain),
        info(3, NO_BRIDGE, VlanMode::Access(1), PortKind::Uplink),
        info(4, 0, VlanMode::Access(1), PortKind::Vxlan(Arc::new(tunnel))),
    ];
    let refs: Vec<&PortInfo> = infos.iter().filter(|p| p.bridge == 0).collect();
    let br = BridgeInfo::new(0, "br0", fdb, &refs);
    Snapshot {
        generation: 1,
        tx_thread: vec![0, 0, 0, 0, TX_ANY],
        vteps: vec![Vtep { local: ip(1), dst_port: PORT, vni: VNI, port: TUNNEL as u16 }],
        ports: infos.into_iter().map(Some).collect(),
        bridges: vec![Some(br)],
    }
}

pub fn rig() -> Rig {
    let (tx, rx) = crossbeam::channel::unbounded();
    let mut pmd = Pmd::new(
        0,
        Pool::new(256).unwrap(),
        rx,
        Handoff::new(1, 4),
        Arc::new(ThreadStats::default()),
        Instant::now(),
        PmdOptions::default(),
    );
    let fdb = Arc::new(Fdb::new(MAX_MACS));
    let (mut handles, mut stats) = (Vec::new(), Vec::new());
    for id in 0..=TUNNEL as u16 {
        let st = Arc::new(PortStats::default());
        let port: Option<Box<dyn Port>> = if usize::from(id) < TUNNEL {
            let (p, h) = mem_port();
            handles.push(h);
            Some(Box::new(p))
        } else {
            None
        };
        tx.send(Command::AddPort(LocalPort { id, queue: 0, rx: port.is_some(), port, stats: st.clone() })).unwrap();
        stats.push(st);
    }
    let snap = Arc::new(snapshot(fdb.clone()));
    tx.send(Command::Snapshot(snap)).unwrap();
    assert!(pmd.apply_commands());
    let free0 = pmd.pool_free();
    Rig { pmd, handles, stats, fdb, free0, tx }
}
