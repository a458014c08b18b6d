//! The cluster's records in etcd and what `cluster_show` reports.
//!
//! Key layout (format version 1, under [`PREFIX`]; values are JSON, and
//! other tools may read them):
//!
//! | key | value |
//! | --- | --- |
//! | `/rvs/v1/nodes/NODE` | [`NodeRecord`]: `{"node": NODE, "vteps": [{"vni": 42, "addr": "198.18.200.1", "dstport": 4789}]}` |
//! | `/rvs/v1/macs/VNI/NODE/PART` | [`MacsRecord`]: `{"vtep": "198.18.200.1", "macs": [{"mac": "02:..", "vlan": 1}], "neigh": [{"ip": "198.18.0.2", "mac": "02:..", "vlan": 1}]}` |
//!
//! A node's MACs on a VNI, and the IP-MAC bindings of its hosts there
//! (`neigh`, absent when empty; older readers ignore it), are split over
//! parts 0, 1, ... (each value well under etcd's request limit); a reader
//! merges them.

use crate::config::ClusterConfig;
use crate::MacAddr;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Where the keys live.
pub const PREFIX: &str = "/rvs/v1/";
/// One VTEP a node serves.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VtepRecord {
    /// VNI.
    pub vni: u32,
    /// Local VTEP address.
    pub addr: IpAddr,
    /// UDP destination port.
    pub dstport: u16,
}

/// The value under `/rvs/v1/nodes/NODE`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node name.
    pub node: String,
    /// Its VTEPs.
    pub vteps: Vec<VtepRecord>,
}

/// One advertised MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MacRecord {
    /// The MAC.
    #[serde(with = "mac_text")]
    pub mac: MacAddr,
    /// Its VLAN on the advertising node.
    pub vlan: u16,
}

/// A MAC as `aa:bb:cc:dd:ee:ff` in JSON.
mod mac_text {
    use crate::MacAddr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(mac)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e| serde::de::Error::custom(format!("{e}")))
    }
}

/// One advertised IP-MAC binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NeighRecord {
    /// The address.
    pub ip: IpAddr,
    /// The MAC it is bound to.
    #[serde(with = "mac_text")]
    pub mac: MacAddr,
    /// Its VLAN on the advertising node.
    pub vlan: u16,
}

/// The value under `/rvs/v1/macs/VNI/NODE/PART`: one part of a node's MACs
/// and bindings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacsRecord {
    /// The VTEP the MACs sit behind.
    pub vtep: IpAddr,
    /// The MACs.
    pub macs: Vec<MacRecord>,
    /// IP-MAC bindings of the node's hosts (static and learned).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neigh: Vec<NeighRecord>,
}

/// How the agent stands with etcd.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// `connecting`, `connected` or `disconnected`.
    pub state: String,
    /// The last error, while not connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds since the state last changed.
    pub since_secs: u64,
    /// The lease this node's keys hang on (0: none).
    pub lease: i64,
    /// Times the agent (re)connected.
    pub connects: u64,
    /// When the peers were last read, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_unix: Option<u64>,
    /// Records under the prefix left out at the last read (malformed or
    /// implausible; logged once each).
    #[serde(default)]
    pub rejected_records: u64,
}

/// `cluster_show`: the settings, the agent's state, peers and tunnels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterShow {
    /// The settings, if this rvsd is in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ClusterConfig>,
    /// How the agent stands with etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ClusterStatus>,
    /// Other nodes, as last read.
    pub peers: Vec<PeerShow>,
    /// True while `peers` is the view saved in the db (stale): etcd has
    /// not answered since rvsd started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub peers_from_db: bool,
    /// VXLAN ports and where their remotes come from.
    pub tunnels: Vec<TunnelShow>,
}

/// One other node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerShow {
    /// Node name.
    pub node: String,
    /// Its VTEPs.
    pub vteps: Vec<VtepRecord>,
    /// MACs it advertises, over all VNIs.
    pub macs: usize,
}

/// A VXLAN port's remotes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelShow {
    /// Port name.
    pub port: String,
    /// VNI.
    pub vni: u32,
    /// True if its remotes come from the cluster (none configured).
    pub from_cluster: bool,
    /// The remotes in use.
    pub remotes: Vec<IpAddr>,
}
