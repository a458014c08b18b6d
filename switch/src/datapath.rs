//! The boundary between the control plane and the packet path.
//!
//! The control state machine (`state.rs`) validates requests against the
//! configuration and calls these methods for their effects; the real
//! implementation (`dp.rs`) owns ports and polling threads, and tests use a
//! fake. Each method either does all of its change or none of it, and its
//! error is one line fit to show a user.

use crate::config::{BridgeConfig, PortConfig, UplinkConfig};
pub use rvs_dataplane::capture::{CaptureRing, Direction};
use rvs_dataplane::stats::PortCounters;
use rvs_dataplane::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;

/// A change the packet path refused, as one line for the user.
pub type DpResult<T> = Result<T, String>;

/// The packet path, as the control plane drives it.
pub trait Datapath {
    /// Creates a bridge with no ports.
    fn add_bridge(&mut self, br: &BridgeConfig) -> DpResult<()>;
    /// Changes a bridge's aging time or MAC limit.
    fn set_bridge(&mut self, br: &BridgeConfig) -> DpResult<()>;
    /// Removes a bridge; its ports are removed first by the caller.
    fn del_bridge(&mut self, name: &str) -> DpResult<()>;
    /// Opens the port and starts switching on it.
    fn add_port(&mut self, bridge: &str, port: &PortConfig) -> DpResult<()>;
    /// Stops switching on the port and closes it (a tap device stays).
    fn del_port(&mut self, name: &str) -> DpResult<()>;
    /// Adds (or replaces) a static FDB entry.
    fn fdb_add(&mut self, bridge: &str, mac: MacAddr, vlan: u16, port: &str) -> DpResult<()>;
    /// Removes an FDB entry, static or learned. Ok(false) if there was none.
    fn fdb_del(&mut self, bridge: &str, mac: MacAddr, vlan: u16) -> DpResult<bool>;
    /// Removes learned entries (of one port if given); returns how many.
    fn fdb_flush(&mut self, bridge: &str, port: Option<&str>) -> DpResult<usize>;
    /// The FDB of a bridge.
    fn fdb_show(&self, bridge: &str) -> DpResult<Vec<FdbEntryInfo>>;
    /// Run-time state of every port.
    fn port_status(&self) -> Vec<PortStatus>;
    /// Counters of every port.
    fn port_stats(&self) -> Vec<PortStatsInfo>;
    /// Polling threads and what they do.
    fn threads(&self) -> Vec<ThreadInfo>;
    /// Periodic housekeeping (MAC aging); called about once a second.
    fn tick(&mut self);

    /// Attaches to an underlay interface for VXLAN.
    fn add_uplink(&mut self, up: &UplinkConfig) -> DpResult<()> {
        Err(format!("uplink {:?}: VXLAN is not supported by this datapath", up.name))
    }
    /// Detaches from an underlay interface (no VXLAN port may use it).
    fn del_uplink(&mut self, name: &str) -> DpResult<()> {
        Err(format!("unknown uplink {name:?}"))
    }
    /// Replaces the remote VTEP list of a VXLAN port, live.
    fn set_remotes(&mut self, port: &str, remotes: &[IpAddr]) -> DpResult<()> {
        let _ = remotes;
        Err(format!("port {port:?} is not a VXLAN port"))
    }
    /// Run-time state of every uplink.
    fn uplink_status(&self) -> Vec<UplinkStatus> {
        Vec::new()
    }
    /// The flow cache entries of every polling thread.
    fn flows(&self) -> Vec<FlowInfo> {
        Vec::new()
    }
    /// Empties every polling thread's flow cache.
    fn flows_flush(&mut self) {}
    /// Runs `frame` as if received on `port` (of `bridge`, or an uplink)
    /// through the packet path's own decision code, without sending or
    /// learning anything, and says what would happen at each step.
    fn trace(&self, bridge: &str, port: &str, frame: &[u8]) -> DpResult<TraceResult> {
        let _ = (bridge, frame);
        Err(format!("cannot trace on {port:?} in this datapath"))
    }
    /// Starts copying what `port` (or an uplink) receives and/or sends into
    /// a capture ring that the caller drains; replaces a running capture.
    fn capture_start(&mut self, port: &str, dir: Direction, snaplen: u32) -> DpResult<Arc<CaptureRing>> {
        let _ = (dir, snaplen);
        Err(format!("cannot capture on {port:?} in this datapath"))
    }
    /// Stops the capture on `port`.
    fn capture_stop(&mut self, port: &str) {
        let _ = port;
    }
    /// MACs this host has behind VXLAN port `port`'s bridge in the port's
    /// VLAN, not learned through a tunnel: what it advertises to peers.
    fn local_macs(&self, port: &str) -> DpResult<Vec<(MacAddr, u16)>> {
        Err(format!("port {port:?} is not a VXLAN port"))
    }
    /// Installs MACs that peers advertise behind VXLAN port `port`: each
    /// (mac, vlan, remote VTEP) replaces what the previous call installed;
    /// entries for VTEPs not among the port's remotes are skipped.
    fn set_remote_macs(&mut self, port: &str, macs: &[(MacAddr, u16, IpAddr)]) -> DpResult<()> {
        let _ = macs;
        Err(format!("port {port:?} is not a VXLAN port"))
    }
    /// Moves receive queue `queue` of port (or uplink) `port` to the
    /// polling thread on `core`, without disturbing other queues.
    fn pmd_assign(&mut self, port: &str, queue: u32, core: usize) -> DpResult<()> {
        let _ = (queue, core);
        Err(format!("cannot move queues of {port:?} in this datapath"))
    }
}

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
    /// Per queue: (queue id, polling thread core).
    pub queues: Vec<(u32, usize)>,
    /// VXLAN: largest inner frame payload (MTU) that fits the uplink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_mtu: Option<u32>,
    /// VXLAN: the remote VTEPs and their next hops.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<RemoteStatus>,
}

/// Counters of one port, summed over threads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatsInfo {
    /// Port name.
    pub name: String,
    /// Bridge name.
    pub bridge: String,
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Source MACs not learned because of the bridge's limit.
    pub learn_refused: u64,
    /// Received frames sent on to one port (uplink: to a tunnel port).
    /// Every received frame is forwarded, flooded or dropped at ingress.
    #[serde(default)]
    pub forwarded: u64,
    /// Received frames flooded in their bridge and VLAN.
    #[serde(default)]
    pub flooded: u64,
    /// Frames the kernel dropped before rvs received them (AF_XDP: receive
    /// ring full, frame larger than a buffer); not in `rx_packets`.
    #[serde(default)]
    pub kernel_drops: u64,
    /// Drops by reason name; reasons with a zero count are left out.
    pub drops: Vec<(String, u64)>,
    /// Times the interface under the port went away.
    #[serde(default)]
    pub link_downs: u64,
}

impl PortStatsInfo {
    /// Builds the user-facing form from counters.
    pub fn from_counters(name: &str, bridge: &str, c: &PortCounters) -> PortStatsInfo {
        PortStatsInfo {
            name: name.to_string(),
            bridge: bridge.to_string(),
            rx_packets: c.rx_packets,
            rx_bytes: c.rx_bytes,
            tx_packets: c.tx_packets,
            tx_bytes: c.tx_bytes,
            learn_refused: c.learn_refused,
            forwarded: c.forwarded,
            flooded: c.flooded,
            kernel_drops: c.kernel_drops,
            drops: rvs_dataplane::stats::DropReason::ALL
                .iter()
                .zip(c.drops)
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.name().to_string(), n))
                .collect(),
            link_downs: 0,
        }
    }
}

/// One polling thread.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadInfo {
    /// Core it is pinned to.
    pub core: usize,
    /// Receive queues it polls: (port name, queue id).
    pub rx_queues: Vec<(String, u32)>,
    /// Frames received.
    pub packets: u64,
    /// Nanoseconds in rounds that moved frames.
    pub busy_ns: u64,
    /// Nanoseconds in rounds that found nothing.
    pub idle_ns: u64,
    /// TSC cycles in rounds that moved frames (0 where no TSC).
    #[serde(default)]
    pub busy_cycles: u64,
    /// TSC cycles in rounds that found nothing.
    #[serde(default)]
    pub idle_cycles: u64,
    /// Flow cache hits.
    #[serde(default)]
    pub cache_hits: u64,
    /// Flow cache misses (decisions taken by the full pipeline).
    #[serde(default)]
    pub cache_misses: u64,
    /// Flow cache entries replaced by another flow.
    #[serde(default)]
    pub cache_evictions: u64,
    /// Flow cache entries in use.
    #[serde(default)]
    pub cache_entries: u64,
}
