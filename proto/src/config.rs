//! The configuration model: what `rvsctl` changes and the db persists.

pub use crate::ifaddr::IfAddr;
use serde::{Deserialize, Serialize};

/// Default MAC aging time in seconds.
pub const DEFAULT_AGING_SECS: u32 = 300;
/// Default per-bridge limit on learned MACs.
pub const DEFAULT_MAX_MACS: u32 = 8192;

/// The whole persisted configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version of the db file.
    pub version: u32,
    /// Bridges in creation order.
    #[serde(default)]
    pub bridges: Vec<BridgeConfig>,
    /// Underlay interfaces carrying VXLAN, restored before the bridges.
    #[serde(default)]
    pub uplinks: Vec<UplinkConfig>,
    /// Cluster membership through etcd, if this node is in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// The other nodes of the cluster as last read from etcd (their
    /// VTEPs, not their MACs): after a restart while etcd is down, tunnels
    /// without configured remotes take them until etcd answers. Absent in
    /// older dbs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_peers: Vec<crate::cluster::NodeRecord>,
    /// The rvsd that wrote the file (`rvsd 0.1.0`), so that an older one
    /// can say which version it would need. Set on save, dropped on load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
}

/// An underlay interface: rvs takes the VXLAN frames for its VTEPs from it
/// and sends encapsulated frames on it; the host keeps every other use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// Interface name.
    pub name: String,
    /// Number of queues to open (default: all rx queues).
    #[serde(default)]
    pub queues: Option<u32>,
    /// XDP attach mode.
    #[serde(default)]
    pub xdp_mode: XdpMode,
    /// Receive queues moved to a chosen polling thread (`pmd_assign`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pmd: PmdAssignments,
}

impl UplinkConfig {
    /// An uplink using every rx queue, in the automatic XDP mode.
    pub fn new(name: &str) -> UplinkConfig {
        UplinkConfig { name: name.to_string(), queues: None, xdp_mode: XdpMode::Auto, pmd: Vec::new() }
    }
}

/// Receive queues pinned to polling threads: (queue id, core), sorted by
/// queue, one entry per queue. Queues not listed go where the datapath
/// places them.
pub type PmdAssignments = Vec<(u32, usize)>;

/// Records that `queue` polls on `core`, replacing an earlier choice.
pub fn set_pmd(pmd: &mut PmdAssignments, queue: u32, core: usize) {
    match pmd.iter_mut().find(|(q, _)| *q == queue) {
        Some(e) => e.1 = core,
        None => {
            pmd.push((queue, core));
            pmd.sort_unstable_by_key(|&(q, _)| q);
        }
    }
}

/// Default VXLAN UDP destination port (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// Default TTL (IPv4) or hop limit (IPv6) of encapsulated frames.
pub const DEFAULT_TTL: u8 = 64;

/// The tunnel of a VXLAN port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanConfig {
    /// VXLAN network identifier, 0..=16777215.
    pub vni: u32,
    /// Local VTEP address: an address of an uplink interface.
    pub local: std::net::IpAddr,
    /// Remote VTEPs (head-end replication list); same family as `local`.
    #[serde(default)]
    pub remotes: Vec<std::net::IpAddr>,
    /// UDP destination port.
    #[serde(default = "default_vxlan_port")]
    pub dstport: u16,
    /// TTL / hop limit of the outer header.
    #[serde(default = "default_ttl")]
    pub ttl: u8,
}

impl VxlanConfig {
    /// A tunnel with the default UDP port and TTL.
    pub fn new(vni: u32, local: std::net::IpAddr, remotes: Vec<std::net::IpAddr>) -> VxlanConfig {
        VxlanConfig { vni, local, remotes, dstport: VXLAN_PORT, ttl: DEFAULT_TTL }
    }

    /// What identifies the tunnel on the wire: no two ports may share it.
    pub fn key(&self) -> (std::net::IpAddr, u16, u32) {
        (self.local, self.dstport, self.vni)
    }
}

fn default_vxlan_port() -> u16 {
    VXLAN_PORT
}

fn default_ttl() -> u8 {
    DEFAULT_TTL
}

/// Current db format version.
pub const CONFIG_VERSION: u32 = 1;

/// One bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Bridge name.
    pub name: String,
    /// Seconds a learned MAC lives without traffic.
    #[serde(default = "default_aging")]
    pub aging_secs: u32,
    /// Learned-MAC limit.
    #[serde(default = "default_max_macs")]
    pub max_macs: u32,
    /// Ports in creation order.
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    /// Static FDB entries.
    #[serde(default)]
    pub static_macs: Vec<StaticMac>,
    /// Static IP-MAC bindings (ARP and ND are answered from them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neighbors: Vec<StaticNeigh>,
}

fn default_aging() -> u32 {
    DEFAULT_AGING_SECS
}

fn default_max_macs() -> u32 {
    DEFAULT_MAX_MACS
}

impl BridgeConfig {
    /// A bridge with default settings and no ports.
    pub fn new(name: &str) -> BridgeConfig {
        BridgeConfig {
            name: name.to_string(),
            aging_secs: DEFAULT_AGING_SECS,
            max_macs: DEFAULT_MAX_MACS,
            ports: Vec::new(),
            static_macs: Vec::new(),
            neighbors: Vec::new(),
        }
    }
}

/// Port backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortType {
    /// AF_XDP sockets on an existing interface.
    Afxdp,
    /// A tap device rvsd creates or adopts.
    Tap,
    /// A VXLAN tunnel over an uplink (its settings in `PortConfig.vxlan`).
    Vxlan,
    /// The bridge's own port in rvsd's namespace, as docker0's address or
    /// OVS's internal port: a tap named after the bridge holding its
    /// gateway addresses (`PortConfig.addresses`). rvsd makes it when the
    /// bridge gets a gateway; it is not added or removed as a port.
    Internal,
}

impl PortType {
    /// The `type` name users write and see: "afxdp", "tap" or "vxlan".
    pub fn name(self) -> &'static str {
        match self {
            PortType::Afxdp => "afxdp",
            PortType::Tap => "tap",
            PortType::Vxlan => "vxlan",
            PortType::Internal => "internal",
        }
    }
}

/// XDP attach mode for AF_XDP ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic.
    #[default]
    Auto,
    /// Native mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// Which executor carries a port's known-unicast frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FastPath {
    /// The default: `tc` for an AF_XDP port (where the kernel has tcx,
    /// else `off`), `off` for the other kinds.
    #[default]
    Auto,
    /// Every frame goes through rvs's polling threads.
    Off,
    /// The port's XDP program forwards frames to known MACs on other
    /// AF_XDP ports itself (no copy to userspace); the rest go to rvs.
    Xdp,
    /// A tc ingress program forwards them as skbs, keeping GSO/TSO and
    /// offloaded checksums (the port has no XDP program); the rest reach
    /// rvs through the port's miss device.
    Tc,
}

impl FastPath {
    /// The name users write.
    pub fn name(self) -> &'static str {
        match self {
            FastPath::Auto => "auto",
            FastPath::Off => "off",
            FastPath::Xdp => "xdp",
            FastPath::Tc => "tc",
        }
    }

    /// The executor a port of `kind` gets: `Auto` decided.
    pub fn resolve(self, kind: PortType) -> FastPath {
        match (self, kind) {
            (FastPath::Auto, PortType::Afxdp) => FastPath::Tc,
            // A tunnel's kernel path: encapsulated by its senders' executors,
            // decapsulated by its uplink's XDP program.
            (FastPath::Auto, PortType::Vxlan) => FastPath::Xdp,
            (FastPath::Auto, _) => FastPath::Off,
            (explicit, _) => explicit,
        }
    }
}

/// VLAN handling of a port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum PortVlan {
    /// Access port in one VLAN (1 when not given).
    Access {
        /// The VLAN.
        vlan: u16,
    },
    /// Trunk carrying these VLANs tagged, and `native` untagged if set.
    Trunk {
        /// Tagged VLANs.
        vlans: Vec<u16>,
        /// Untagged VLAN.
        #[serde(default)]
        native: Option<u16>,
    },
}

impl Default for PortVlan {
    fn default() -> Self {
        PortVlan::Access { vlan: 1 }
    }
}

/// One port of a bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Interface name (the tap's name for tap ports).
    pub name: String,
    /// Backend.
    #[serde(rename = "type")]
    pub kind: PortType,
    /// VLAN handling.
    #[serde(default)]
    pub vlan: PortVlan,
    /// AF_XDP: number of queues to open (default: all rx queues of the interface).
    #[serde(default)]
    pub queues: Option<u32>,
    /// AF_XDP: attach mode.
    #[serde(default)]
    pub xdp_mode: XdpMode,
    /// AF_XDP: the kernel executor for frames to known MACs.
    #[serde(default, skip_serializing_if = "is_auto")]
    pub fast_path: FastPath,
    /// Tap: network namespace the tap lives in: a name under
    /// /var/run/netns, or the path of a namespace file (a container's
    /// `/proc/PID/ns/net` or `/run/netns/NAME`).
    #[serde(default)]
    pub netns: Option<String>,
    /// Tap: the device's name when it is not the port's (a container's
    /// `eth0`, which many containers share in their own namespaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// VXLAN: the tunnel (required for, and only for, `type: vxlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<VxlanConfig>,
    /// Receive queues moved to a chosen polling thread (`pmd_assign`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pmd: PmdAssignments,
    /// At most this many MACs learned on this port (the bridge's limit
    /// still applies); none: only the bridge's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_macs: Option<u32>,
    /// Tap: rvsd created the device (`port del` removes it); false for a
    /// tap that existed and was adopted, which stays. Set by rvsd, not by
    /// the request.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tap_created: bool,
    /// Internal: the gateway addresses the port holds in rvsd's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IfAddr>,
    /// The container the port belongs to, for ports a CNI plugin made:
    /// shown by `rvsctl show`, and rvsd removes the port once the
    /// container's interface is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<PortOwner>,
}

/// The attachment a container port serves, as the CNI runtime names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortOwner {
    /// CNI_CONTAINERID.
    pub container: String,
    /// CNI_IFNAME: the interface inside the container.
    pub ifname: String,
    /// The CNI network's name (`name` in its configuration).
    pub network: String,
}

fn is_auto(f: &FastPath) -> bool {
    *f == FastPath::Auto
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl PortConfig {
    /// An AF_XDP port on interface `name`, in `vlan`, with every other
    /// setting at its default (all queues, XDP mode auto, the default
    /// executor).
    pub fn afxdp(name: &str, vlan: PortVlan) -> PortConfig {
        PortConfig {
            name: name.into(),
            kind: PortType::Afxdp,
            vlan,
            queues: None,
            xdp_mode: XdpMode::Auto,
            fast_path: FastPath::Auto,
            netns: None,
            vxlan: None,
            pmd: Vec::new(),
            max_macs: None,
            tap_created: false,
            addresses: Vec::new(),
            ifname: None,
            owner: None,
        }
    }

    /// A tap port `name` (rvsd creates the device unless it exists), in
    /// `vlan`.
    pub fn tap(name: &str, vlan: PortVlan) -> PortConfig {
        PortConfig { kind: PortType::Tap, ..PortConfig::afxdp(name, vlan) }
    }

    /// The name of the kernel interface under the port: a tap's `ifname`
    /// if it has one, else the port's name.
    pub fn device(&self) -> &str {
        self.ifname.as_deref().unwrap_or(&self.name)
    }

    /// A VXLAN port `name` with settings `v`, in `vlan`.
    pub fn vxlan(name: &str, v: VxlanConfig, vlan: PortVlan) -> PortConfig {
        PortConfig { kind: PortType::Vxlan, vxlan: Some(v), ..PortConfig::afxdp(name, vlan) }
    }

    /// The internal (gateway) port of bridge `bridge`, holding `addresses`.
    pub fn internal(bridge: &str, addresses: Vec<IfAddr>) -> PortConfig {
        PortConfig { kind: PortType::Internal, addresses, ..PortConfig::afxdp(bridge, PortVlan::default()) }
    }
}

impl BridgeConfig {
    /// The bridge's internal (gateway) port, if it has a gateway.
    pub fn gateway_port(&self) -> Option<&PortConfig> {
        self.ports.iter().find(|p| p.kind == PortType::Internal)
    }

    /// The bridge's gateway addresses (none: no gateway).
    pub fn gateway(&self) -> &[IfAddr] {
        self.gateway_port().map_or(&[], |p| &p.addresses)
    }
}

/// A static FDB entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticMac {
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// VLAN.
    pub vlan: u16,
    /// Port name.
    pub port: String,
}

/// A static IP-MAC binding of a bridge (`rvsctl neigh add`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticNeigh {
    /// IPv4 or IPv6 address.
    pub ip: std::net::IpAddr,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// VLAN.
    pub vlan: u16,
    /// The port it belongs to (a container's, bound by rvs-cni): removed
    /// with the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

/// VLAN of a binding or an FDB entry when none is given.
pub const DEFAULT_VLAN: u16 = 1;

/// Default lease TTL, seconds.
pub const DEFAULT_LEASE_TTL: u32 = 10;
/// Accepted lease TTLs, seconds.
pub const LEASE_TTL_RANGE: std::ops::RangeInclusive<u32> = 2..=3600;

/// Cluster membership settings (persisted in the db).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd client endpoints, `http://host:port`.
    pub etcd: Vec<String>,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// Lease TTL in seconds: how long a dead node lingers.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_secs: u32,
    /// etcd TLS and authentication (files by path; no secret itself).
    #[serde(default, skip_serializing_if = "EtcdAuth::is_empty")]
    pub auth: EtcdAuth,
}

/// How rvsd proves itself to etcd and checks etcd's certificate, named as
/// etcdctl's flags. Every field is optional: none of them is plain http.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdAuth {
    /// CA certificates (PEM) that etcd's server certificate must chain to;
    /// needed for `https://` endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<String>,
    /// Client certificate (PEM) for mutual TLS, with `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// The client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// etcd user (etcd v3 auth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// File holding the user's password (else `RVS_ETCD_PASSWORD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

impl EtcdAuth {
    /// True when nothing is set: plain http, no user.
    pub fn is_empty(&self) -> bool {
        *self == EtcdAuth::default()
    }
}

fn default_lease_ttl() -> u32 {
    DEFAULT_LEASE_TTL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_pmd_keeps_one_sorted_entry_per_queue() {
        let mut pmd = PmdAssignments::new();
        set_pmd(&mut pmd, 3, 1);
        set_pmd(&mut pmd, 0, 2);
        set_pmd(&mut pmd, 3, 5);
        assert_eq!(pmd, vec![(0, 2), (3, 5)]);
    }
}
