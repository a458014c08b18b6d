//! What rvsd reports about its running state: ports, uplinks, polling
//! threads, counters, the FDB, flow caches and traces.

use rvs_dataplane::stats::{DropReason, PortCounters, ThreadStats};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering::Relaxed;

/// What the packet path would do with a frame, step by step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceResult {
    /// Each stage in order: (stage, what happened).
    pub steps: Vec<(String, String)>,
    /// The decision: "output", "flood" or "drop:REASON".
    pub decision: String,
    /// Where copies of the frame would go.
    pub outputs: Vec<TraceOutput>,
    /// The traced frame, as hex (what to send to see the real thing).
    #[serde(default)]
    pub frame: String,
}

/// One place a traced frame would be sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceOutput {
    /// Egress port.
    pub port: String,
    /// VLAN tag handling: "none", "push N", "pop", "rewrite N".
    pub tag: String,
    /// For a VXLAN port: the encapsulation toward one remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<TraceVxlan>,
    /// Set if this copy would be dropped, with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<String>,
}

/// The outer headers a traced frame would get.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceVxlan {
    /// Remote VTEP.
    pub remote: String,
    /// Outer source address.
    pub local: String,
    /// The uplink the encapsulated frame leaves through.
    #[serde(default)]
    pub uplink: String,
    /// The uplink's MAC (outer source).
    #[serde(default)]
    pub src_mac: String,
    /// Next-hop MAC (outer destination), if resolved.
    pub next_hop_mac: Option<String>,
    /// VNI.
    pub vni: u32,
    /// UDP source port chosen from the inner flow's hash.
    pub udp_src: u16,
    /// UDP destination port.
    pub udp_dst: u16,
    /// TTL / hop limit.
    pub ttl: u8,
}

/// One flow cache entry as shown to users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowInfo {
    /// Core of the polling thread that holds it.
    pub core: usize,
    /// Bridge.
    pub bridge: String,
    /// Ingress port.
    pub in_port: String,
    /// For frames from a tunnel: the remote VTEP they came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Source MAC.
    pub src: String,
    /// Destination MAC.
    pub dst: String,
    /// VLAN the frames were classified into.
    pub vlan: u16,
    /// The cached decision: "output:PORT", "output:PORT->VTEP", "flood", or "drop:REASON".
    pub action: String,
    /// Frames that used this entry.
    pub hits: u64,
}

/// Run-time state of one uplink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkStatus {
    /// Interface name.
    pub name: String,
    /// "up", or "down: <why>".
    pub state: String,
    /// "native" or "generic".
    pub xdp_mode: String,
    /// Interface MTU.
    pub mtu: u32,
    /// Local VTEP addresses rvs takes VXLAN frames for.
    pub vteps: Vec<String>,
    /// Per queue: (queue id, polling thread core).
    pub queues: Vec<(u32, usize)>,
}

/// A remote VTEP of a VXLAN port as shown to users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteStatus {
    /// Remote VTEP address.
    pub ip: String,
    /// MAC of the next hop toward it, once resolved.
    pub next_hop_mac: Option<String>,
}

/// One FDB entry as shown to users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntryInfo {
    /// MAC address.
    pub mac: String,
    /// VLAN.
    pub vlan: u16,
    /// Port name.
    pub port: String,
    /// True for static entries.
    pub is_static: bool,
    /// Seconds since the MAC was last seen (0 for static entries).
    pub age_secs: u32,
    /// For MACs behind a VXLAN port: the remote VTEP they were learned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// Most entries in one page of `fdb_show`, and the default.
pub const FDB_PAGE_MAX: u32 = 4096;

/// Where a page of `fdb_show` ends: its last entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbCursor {
    /// VLAN of the last entry.
    pub vlan: u16,
    /// MAC of the last entry.
    pub mac: String,
}

/// One IP-MAC binding in `neigh_show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighEntryInfo {
    /// Bridge name.
    pub bridge: String,
    /// VLAN.
    pub vlan: u16,
    /// The address.
    pub ip: std::net::IpAddr,
    /// The MAC it is bound to.
    pub mac: String,
    /// `static`, `learned` or `remote`.
    pub source: String,
    /// Learned bindings: seconds since last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u32>,
    /// Remote bindings: the node that published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A bridge's neighbour table in `neigh_show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighTableInfo {
    /// Bridge name.
    pub bridge: String,
    /// Learned bindings it holds.
    pub learned: u32,
    /// The most learned bindings it keeps (more are refused and counted
    /// as `neigh_refused` on the port they were seen on).
    pub limit: u32,
}

/// The result of `neigh_show`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighList {
    /// Each bridge's table.
    pub tables: Vec<NeighTableInfo>,
    /// The bindings, by bridge, VLAN and address.
    pub entries: Vec<NeighEntryInfo>,
}

/// One page of a bridge's FDB, ordered by VLAN then MAC.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbPage {
    /// The entries.
    pub entries: Vec<FdbEntryInfo>,
    /// Where the next page starts (`after`), if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<FdbCursor>,
    /// Entries in the whole table.
    pub total: usize,
}

/// Run-time state of one port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    /// Port name.
    pub name: String,
    /// Bridge name.
    pub bridge: String,
    /// "afxdp" or "tap".
    pub kind: String,
    /// "up", or "down: <why>".
    pub state: String,
    /// AF_XDP: "native" or "generic"; empty for tap.
    pub xdp_mode: String,
    /// The executor of its known-unicast frames: "xdp", or "off" (rvs's
    /// polling threads carry every frame).
    #[serde(default)]
    pub fast_path: String,
    /// Per queue: (queue id, polling thread core).
    pub queues: Vec<(u32, usize)>,
    /// MACs learned on this port (static entries not counted).
    #[serde(default)]
    pub learned_macs: u32,
    /// VXLAN: largest inner frame payload (MTU) that fits the uplink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_mtu: Option<u32>,
    /// VXLAN: the remote VTEPs and their next hops.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<RemoteStatus>,
}

/// Frames and bytes the kernel executor carried for a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelShare {
    /// Frames the kernel took in on the port and forwarded.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames the kernel sent out of the port.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
}

impl KernelShare {
    /// Each counter's name and meaning.
    pub const COUNTERS: [(&'static str, &'static str); 4] = [
        ("rx_packets", "Frames the kernel executor took in on the port and forwarded itself."),
        ("rx_bytes", "Bytes of the frames the kernel executor took in on the port."),
        ("tx_packets", "Frames the kernel executor sent out of the port."),
        ("tx_bytes", "Bytes of the frames the kernel executor sent out of the port."),
    ];

    /// The values, in [`Self::COUNTERS`] order.
    pub fn values(&self) -> [u64; 4] {
        [self.rx_packets, self.rx_bytes, self.tx_packets, self.tx_bytes]
    }
}

/// Drops as an object keyed by reason, or as the list of (reason, count)
/// pairs rvsd sent before.
fn drops_by_reason<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Drops {
        ByReason(std::collections::BTreeMap<String, u64>),
        Pairs(Vec<(String, u64)>),
    }
    Ok(match Drops::deserialize(d)? {
        Drops::ByReason(m) => m,
        Drops::Pairs(v) => v.into_iter().collect(),
    })
}

macro_rules! define_port_stats_info {
    ($($(#[doc = $doc:literal])* $field:ident,)*) => {
        /// Counters of one port, summed over threads. Every received frame
        /// is forwarded, flooded or dropped at ingress.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub struct PortStatsInfo {
            /// Port name.
            pub name: String,
            /// Bridge name.
            pub bridge: String,
            $($(#[doc = $doc])* #[serde(default)] pub $field: u64,)*
            /// Drops by reason name (`{"runt": 2}`); reasons with a zero
            /// count are left out. Older rvsd sent a list of pairs, which
            /// still reads.
            #[serde(default, deserialize_with = "drops_by_reason")]
            pub drops: std::collections::BTreeMap<String, u64>,
            /// Times the interface under the port went away.
            #[serde(default)]
            pub link_downs: u64,
            /// What the kernel carried for the port without rvs's polling
            /// threads (not in the counters above).
            #[serde(default)]
            pub kernel: KernelShare,
        }

        impl PortStatsInfo {
            /// The user-facing form of a port's counters.
            pub fn new(name: &str, bridge: &str, c: &PortCounters) -> PortStatsInfo {
                PortStatsInfo {
                    name: name.to_string(),
                    bridge: bridge.to_string(),
                    $($field: c.$field,)*
                    drops: DropReason::ALL
                        .iter()
                        .zip(c.drops)
                        .filter(|(_, n)| *n > 0)
                        .map(|(r, n)| (r.name().to_string(), n))
                        .collect(),
                    link_downs: 0,
                    kernel: KernelShare::default(),
                }
            }

            /// Each counter's name and meaning, in declaration order (drops
            /// and link downs apart).
            pub const COUNTERS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), concat!($($doc),*).trim_ascii()),)*];

            /// The counters' values, in [`Self::COUNTERS`] order.
            pub fn counter_values(&self) -> Vec<u64> {
                vec![$(self.$field),*]
            }
        }
    };
}

rvs_dataplane::with_port_counters!(define_port_stats_info);

macro_rules! define_thread_info {
    ($($(#[doc = $doc:literal])* $field:ident => $metric:literal, $kind:literal, $scale:literal;)*) => {
        /// One polling thread.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct ThreadInfo {
            /// Core it is pinned to.
            pub core: usize,
            /// Receive queues it polls: (port name, queue id).
            pub rx_queues: Vec<(String, u32)>,
            $($(#[doc = $doc])* #[serde(default)] pub $field: u64,)*
        }

        impl ThreadInfo {
            /// A thread on `core` polling `rx_queues`, with its counters read
            /// from `stats`.
            pub fn new(core: usize, rx_queues: Vec<(String, u32)>, stats: &ThreadStats) -> ThreadInfo {
                ThreadInfo { core, rx_queues, $($field: stats.$field.load(Relaxed),)* }
            }

            /// Each counter's metric name, kind (`counter` or `gauge`),
            /// meaning, and how many of its units make one of the metric's
            /// base unit (1_000_000_000 for nanoseconds exported as
            /// seconds), in declaration order.
            pub const METRICS: &'static [(&'static str, &'static str, &'static str, u64)] =
                &[$(($metric, $kind, concat!($($doc),*).trim_ascii(), $scale),)*];

            /// The counters' values, in [`Self::METRICS`] order.
            pub fn counter_values(&self) -> Vec<u64> {
                vec![$(self.$field),*]
            }
        }
    };
}

rvs_dataplane::with_thread_counters!(define_thread_info);
