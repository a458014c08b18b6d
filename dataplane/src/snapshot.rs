//! The forwarding configuration the polling threads read.
//!
//! The control thread builds a new immutable `Snapshot` for every change and
//! hands each polling thread an `Arc` of it between batches, so the packet
//! path reads configuration without a lock and never sees half a change.
//! Learned MACs are not part of it: they live in each bridge's shared
//! [`Fdb`](crate::fdb::Fdb), which the snapshot points to.

use crate::fdb::Fdb;
use crate::ids::{BridgeId, PortId, Vid};
use crate::neigh::NeighTable;
use crate::wire::vxlan::OuterTemplate;
use std::net::IpAddr;
use std::sync::Arc;

/// Number of VLAN ids (0..4096), for tables indexed by VLAN.
pub const VLAN_COUNT: usize = 4096;

/// A set of VLAN ids.
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet(Box<[u64; VLAN_COUNT / 64]>);

impl VlanSet {
    /// The empty set.
    pub fn new() -> VlanSet {
        VlanSet(Box::new([0; VLAN_COUNT / 64]))
    }

    /// Adds `vid`.
    pub fn insert(&mut self, vid: Vid) {
        let v = vid.index() % VLAN_COUNT;
        self.0[v / 64] |= 1 << (v % 64);
    }

    /// True if `vid` is in the set.
    #[inline]
    pub fn contains(&self, vid: Vid) -> bool {
        let v = vid.index() % VLAN_COUNT;
        self.0[v / 64] & (1 << (v % 64)) != 0
    }

    /// The members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = Vid> + '_ {
        (0..VLAN_COUNT as u16).map(Vid).filter(|v| self.contains(*v))
    }
}

impl Default for VlanSet {
    fn default() -> Self {
        VlanSet::new()
    }
}

impl std::fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<Vid> for VlanSet {
    fn from_iter<I: IntoIterator<Item = Vid>>(iter: I) -> Self {
        let mut s = VlanSet::new();
        for v in iter {
            s.insert(v);
        }
        s
    }
}

/// How a port treats VLANs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VlanMode {
    /// Access port: untagged frames belong to this VLAN; frames leave untagged.
    Access(Vid),
    /// Trunk port: carries the allowed VLANs tagged; untagged frames belong
    /// to `native` if set (and leave untagged), else are dropped.
    Trunk {
        /// VLANs carried tagged.
        allowed: VlanSet,
        /// VLAN of untagged frames, if any.
        native: Option<Vid>,
    },
}

impl VlanMode {
    /// True if the port carries `vid`.
    #[inline]
    pub fn carries(&self, vid: Vid) -> bool {
        match self {
            VlanMode::Access(v) => *v == vid,
            VlanMode::Trunk { allowed, native } => allowed.contains(vid) || *native == Some(vid),
        }
    }

    /// True if frames of `vid` leave this port with a tag.
    #[inline]
    pub fn egress_tagged(&self, vid: Vid) -> bool {
        match self {
            VlanMode::Access(_) => false,
            VlanMode::Trunk { native, .. } => *native != Some(vid),
        }
    }
}

/// A port as the packet path sees it.
#[derive(Clone, Debug)]
pub struct PortInfo {
    /// This port's id.
    pub id: PortId,
    /// The bridge it belongs to (none for uplinks).
    pub bridge: Option<BridgeId>,
    /// VLAN handling.
    pub vlan: VlanMode,
    /// Interface name, for traces and logs.
    pub name: String,
    /// What kind of port it is.
    pub kind: PortKind,
}

/// What a port is, beyond its VLAN handling.
#[derive(Clone, Debug, Default)]
pub enum PortKind {
    /// Frames go in and out as they are (AF_XDP, tap).
    #[default]
    Plain,
    /// A VXLAN tunnel: frames leave encapsulated through an uplink.
    Vxlan(Arc<Tunnel>),
    /// An underlay interface: frames from it are decapsulated.
    Uplink,
}

/// A VXLAN tunnel port's settings.
#[derive(Clone, Debug)]
pub struct Tunnel {
    /// VXLAN network identifier.
    pub vni: u32,
    /// Local VTEP address.
    pub local: IpAddr,
    /// UDP destination port.
    pub dst_port: u16,
    /// The uplink port frames leave through.
    pub uplink: PortId,
    /// Largest inner frame (Ethernet header included) that fits the
    /// uplink's MTU after encapsulation.
    pub max_inner_frame: u32,
    /// Remote VTEPs; FDB entries behind this port index into it.
    pub remotes: Vec<Remote>,
}

/// A remote VTEP.
#[derive(Clone, Debug)]
pub struct Remote {
    /// Its address.
    pub ip: IpAddr,
    /// The outer headers toward it; `None` until its next hop is resolved.
    pub outer: Option<OuterTemplate>,
}

impl Tunnel {
    /// The index of remote `ip`, if it is one of ours.
    #[inline]
    pub fn remote_index(&self, ip: IpAddr) -> Option<u16> {
        self.remotes.iter().position(|r| r.ip == ip).map(|i| i as u16)
    }
}

/// A local VTEP endpoint: frames to (`local`, `dst_port`) with `vni` belong
/// to tunnel port `port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vtep {
    /// Local address.
    pub local: IpAddr,
    /// UDP port.
    pub dst_port: u16,
    /// VNI.
    pub vni: u32,
    /// The tunnel port.
    pub port: PortId,
}

/// One member of a flood set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodMember {
    /// The port.
    pub port: PortId,
    /// Whether the frame leaves this port tagged.
    pub tagged: bool,
}

/// A bridge as the packet path sees it.
#[derive(Debug)]
pub struct BridgeInfo {
    /// This bridge's id.
    pub id: BridgeId,
    /// Bridge name.
    pub name: String,
    /// Learned and static MACs, shared with the control thread and the
    /// other polling threads.
    pub fdb: Arc<Fdb>,
    /// IP → MAC bindings that ARP requests and neighbour solicitations
    /// are answered from, shared like the FDB.
    pub neigh: Arc<NeighTable>,
    /// Per VLAN, the ports a flooded frame goes to (the ingress port is
    /// skipped when flooding). Indexed by VLAN id; empty where unused.
    pub flood: Vec<Box<[FloodMember]>>,
}

impl BridgeInfo {
    /// A bridge with the given ports, flood sets derived from their VLAN modes.
    pub fn new(id: BridgeId, name: &str, fdb: Arc<Fdb>, neigh: Arc<NeighTable>, ports: &[&PortInfo]) -> BridgeInfo {
        let mut flood: Vec<Vec<FloodMember>> = vec![Vec::new(); VLAN_COUNT];
        for p in ports {
            for (vid, members) in flood.iter_mut().enumerate().skip(1).take(4094) {
                let vid = Vid(vid as u16);
                if p.vlan.carries(vid) {
                    members.push(FloodMember { port: p.id, tagged: p.vlan.egress_tagged(vid) });
                }
            }
        }
        let flood = flood.into_iter().map(Vec::into_boxed_slice).collect();
        BridgeInfo { id, name: name.to_string(), fdb, neigh, flood }
    }

    /// The flood set of `vid`.
    #[inline]
    pub fn flood_set(&self, vid: Vid) -> &[FloodMember] {
        self.flood.get(vid.index()).map_or(&[], |b| b)
    }
}

/// Everything the packet path needs to know about configuration.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every change; threads report the one they run.
    pub generation: u64,
    /// Ports by id; `None` for free ids.
    pub ports: Vec<Option<PortInfo>>,
    /// Bridges by id; `None` for free ids.
    pub bridges: Vec<Option<BridgeInfo>>,
    /// Every tunnel's local endpoint, for decapsulation.
    pub vteps: Vec<Vtep>,
    /// Per port id, the polling thread that transmits on it when the
    /// sending thread has no queue of its own there ([`TX_ANY`] for ports
    /// every thread can send on).
    pub tx_thread: Vec<u8>,
}

/// `Snapshot::tx_thread` value for ports any thread transmits on directly.
pub const TX_ANY: u8 = u8::MAX;

impl Snapshot {
    /// The port with id `id`, if it exists.
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortInfo> {
        self.ports.get(id.index()).and_then(Option::as_ref)
    }

    /// The thread that transmits on `id` for others, if one does.
    #[inline]
    pub fn tx_thread(&self, id: PortId) -> Option<u8> {
        self.tx_thread.get(id.index()).copied().filter(|t| *t != TX_ANY)
    }

    /// The tunnel port for a decapsulated frame, if any.
    #[inline]
    pub fn vtep(&self, local: IpAddr, dst_port: u16, vni: u32) -> Option<PortId> {
        self.vteps.iter().find(|v| v.vni == vni && v.local == local && v.dst_port == dst_port).map(|v| v.port)
    }

    /// True if some tunnel listens on (`local`, `dst_port`).
    #[inline]
    pub fn is_local_vtep(&self, local: IpAddr, dst_port: u16) -> bool {
        self.vteps.iter().any(|v| v.local == local && v.dst_port == dst_port)
    }

    /// The bridge with id `id`, if it exists.
    #[inline]
    pub fn bridge(&self, id: BridgeId) -> Option<&BridgeInfo> {
        self.bridges.get(id.index()).and_then(Option::as_ref)
    }
}
