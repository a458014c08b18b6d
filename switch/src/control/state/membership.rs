//! The control loop's side of cluster membership: what this node tells the
//! cluster agent it serves, and how the peers' VTEPs and MACs reach the
//! datapath.
//!
//! A VXLAN port configured without `--remote` takes its remotes from the
//! peers serving its VNI; every VXLAN port installs the MACs peers
//! advertise behind its remotes, so known unicast crosses the overlay
//! without flooding. The configuration keeps the empty remote list; the
//! peers' VTEPs as last read from etcd are saved in the db beside it, so
//! that a restart while etcd is down brings such tunnels back with the
//! last known peers (marked stale in `cluster show`) until etcd answers.
//!
//! IP-MAC bindings travel the same way: each node publishes its hosts'
//! (static, and learned on local ports) on every VNI beside its MACs, and
//! installs the others' as `remote` bindings of the tunnel's bridge, gone
//! when their node withdraws them or leaves.

use super::State;
use crate::cluster::{Cluster, LocalView, PeerView};
use crate::datapath::{Datapath, NeighSource};
use rvs_proto::cluster::{ClusterShow, MacRecord, MacsRecord, NeighRecord, PeerShow, TunnelShow, VtepRecord};
use rvs_proto::config::ClusterConfig;
use rvs_proto::config::{PortType, PortVlan};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// A VXLAN port as cluster membership sees it.
struct Tunnel {
    name: String,
    /// Its bridge.
    bridge: String,
    /// Its VNI, local address and UDP port.
    vtep: VtepRecord,
    /// No configured remotes: they come from the cluster.
    auto: bool,
    /// The VLAN of an access port.
    access: Option<u16>,
    /// Its bridge's learned-MAC limit, which caps what it advertises.
    max_macs: u32,
}

impl<D: Datapath> State<D> {
    /// Joins the cluster `cfg` describes: the setting is saved in the db
    /// first, so a restart keeps it.
    pub fn set_cluster(&mut self, cfg: ClusterConfig) -> Result<(), String> {
        rvs_proto::check_cluster(&cfg)?;
        if self.config.cluster.as_ref() != Some(&cfg) {
            let mut new = self.config.clone();
            // Peers saved from another cluster, or as another node, are not ours.
            if new.cluster.as_ref().is_none_or(|c| c.etcd != cfg.etcd || c.node != cfg.node) {
                new.cluster_peers.clear();
            }
            new.cluster = Some(cfg);
            self.commit(new, |_| {})?;
        }
        self.start_cluster()
    }

    /// Starts the agent for the cluster in the configuration, if any and
    /// not running yet.
    pub fn start_cluster(&mut self) -> Result<(), String> {
        match (&self.config.cluster, &self.cluster) {
            (Some(cfg), Some(running)) if running.config() == cfg => Ok(()),
            (Some(cfg), _) => {
                self.cluster = Some(Cluster::start(cfg.clone())?);
                self.peers = PeerView::saved(&self.config.cluster_peers, &cfg.node);
                for why in &self.peers.rejected {
                    tracing::warn!("saved cluster view: {why}; left out");
                }
                Ok(())
            }
            (None, _) => {
                self.cluster = None;
                Ok(())
            }
        }
    }

    /// Once a tick (and after each request): hands the agent the local
    /// view and applies the peers' to the datapath.
    pub(super) fn sync_cluster(&mut self, refresh_macs: bool) {
        let Some(cluster) = self.cluster.as_mut() else { return };
        if let Some(peers) = cluster.peers_if_changed() {
            self.peers = peers;
            self.save_peers();
        }
        let tunnels: Vec<Tunnel> = self
            .config
            .bridges
            .iter()
            .flat_map(|b| b.ports.iter().map(move |p| (b, p)))
            .filter(|(_, p)| p.kind == PortType::Vxlan && !self.down_ports.contains_key(&p.name))
            .filter_map(|(b, p)| {
                let max_macs = b.max_macs;
                let v = p.vxlan.as_ref()?;
                let access = match p.vlan {
                    PortVlan::Access { vlan } => Some(vlan),
                    PortVlan::Trunk { .. } => None,
                };
                let vtep = VtepRecord { vni: v.vni, addr: v.local, dstport: v.dstport };
                let (name, bridge) = (p.name.clone(), b.name.clone());
                Some(Tunnel { name, bridge, vtep, auto: v.remotes.is_empty(), access, max_macs })
            })
            .collect();
        let mut local = LocalView::default();
        for t in &tunnels {
            let (name, vni) = (&t.name, t.vtep.vni);
            local.vteps.push(t.vtep.clone());
            if let std::collections::btree_map::Entry::Vacant(e) = local.macs.entry(vni) {
                let macs = self.dp.local_macs(name).unwrap_or_default();
                let macs = macs.into_iter().map(|(mac, vlan)| MacRecord { mac, vlan }).collect();
                let macs = crate::cluster::advertised(macs, t.max_macs);
                e.insert(MacsRecord { vtep: t.vtep.addr, macs, neigh: self.local_neigh(t) });
            }
            if t.auto {
                let want = self.peers.remotes_for(vni, t.vtep.addr, t.vtep.dstport);
                if self.cluster_remotes.get(name) != Some(&want) && self.dp.set_remotes(name, &want).is_ok() {
                    self.cluster_remotes.insert(name.clone(), want);
                }
            } else {
                self.cluster_remotes.remove(name);
            }
            if refresh_macs {
                // An access port's VLAN is local on each node: the MACs a
                // peer has behind its VNI belong in ours.
                let macs: Vec<_> = self
                    .peers
                    .macs_for(vni)
                    .into_iter()
                    .map(|(mac, vlan, vtep)| (mac, t.access.unwrap_or(vlan), vtep))
                    .collect();
                let _ = self.dp.set_remote_macs(name, &macs);
            }
        }
        if refresh_macs {
            self.install_remote_neigh(&tunnels);
        }
        local.vteps.sort();
        local.vteps.dedup();
        self.cluster_remotes.retain(|name, _| tunnels.iter().any(|t| &t.name == name));
        if let Some(c) = &self.cluster {
            c.publish(local);
        }
    }

    /// The bindings this node advertises behind tunnel `t`: its bridge's
    /// static and learned ones (in the tunnel's VLAN for an access port).
    fn local_neigh(&self, t: &Tunnel) -> Vec<NeighRecord> {
        let Ok(view) = self.dp.neigh_list(&t.bridge) else { return Vec::new() };
        let neigh = view
            .bindings
            .into_iter()
            .map(|(b, _)| b)
            .filter(|b| b.source != NeighSource::Remote && t.access.is_none_or(|v| v == b.vid.0))
            .map(|b| NeighRecord { ip: b.ip, mac: b.mac, vlan: b.vid.0 })
            .collect();
        crate::cluster::advertised_neigh(neigh)
    }

    /// Installs the bindings peers advertise on each tunnel's VNI as
    /// remote bindings of its bridge (an access port's VLAN is local on
    /// each node, as for MACs), replacing what the last sync installed.
    fn install_remote_neigh(&mut self, tunnels: &[Tunnel]) {
        let mut want: BTreeMap<String, Vec<(IpAddr, u16, rvs_dataplane::wire::MacAddr)>> = BTreeMap::new();
        let mut nodes: HashMap<(String, IpAddr, u16), String> = HashMap::new();
        // Bridges that had remote bindings are emptied if no tunnel is left.
        for (bridge, _, _) in self.remote_neigh.keys() {
            want.entry(bridge.clone()).or_default();
        }
        for t in tunnels {
            let list = want.entry(t.bridge.clone()).or_default();
            for (ip, mac, vlan, node) in self.peers.neigh_for(t.vtep.vni) {
                let vlan = t.access.unwrap_or(vlan);
                list.push((ip, vlan, mac));
                nodes.insert((t.bridge.clone(), ip, vlan), node);
            }
        }
        for (bridge, list) in &want {
            match self.dp.set_remote_neigh(bridge, list) {
                Ok(()) => {
                    self.remote_neigh_error.remove(bridge);
                }
                Err(e) => {
                    if self.remote_neigh_error.get(bridge) != Some(&e) {
                        tracing::warn!("remote bindings of bridge {bridge:?}: {e}");
                    }
                    self.remote_neigh_error.insert(bridge.clone(), e);
                }
            }
        }
        self.remote_neigh_error.retain(|b, _| want.contains_key(b));
        self.remote_neigh = nodes;
    }

    /// Saves the peers' VTEPs in the db when they changed (nodes join or
    /// leave: not the MACs, which change all the time).
    fn save_peers(&mut self) {
        let saved = self.peers.to_saved();
        if self.peers.from_db || self.config.cluster_peers == saved {
            return;
        }
        let mut new = self.config.clone();
        new.cluster_peers = saved;
        if let Err(e) = self.commit(new, |_| {}) {
            tracing::warn!("cluster view not saved: {e}");
        }
    }

    /// Forgets what the cluster set on `port` (it is being added or
    /// removed), so the next sync sets it afresh.
    pub(super) fn forget_cluster_port(&mut self, port: &str) {
        self.cluster_remotes.remove(port);
    }

    /// The cluster agent's state and how many other nodes it knows; None
    /// outside a cluster. What the metrics need, without `cluster_show`'s
    /// port and MAC walk.
    pub fn cluster_status(&self) -> Option<(rvs_proto::cluster::ClusterStatus, usize)> {
        self.cluster.as_ref().map(|c| (c.status(), self.peers.nodes.len()))
    }

    pub(super) fn cluster_show(&self) -> ClusterShow {
        let status = self.dp.port_status();
        let tunnels = self
            .config
            .bridges
            .iter()
            .flat_map(|b| b.ports.iter())
            .filter_map(|p| {
                let v = p.vxlan.as_ref()?;
                let remotes = status
                    .iter()
                    .find(|s| s.name == p.name)
                    .map(|s| s.remotes.iter().filter_map(|r| r.ip.parse().ok()).collect())
                    .unwrap_or_default();
                Some(TunnelShow { port: p.name.clone(), vni: v.vni, from_cluster: v.remotes.is_empty(), remotes })
            })
            .collect();
        ClusterShow {
            config: self.config.cluster.clone(),
            status: self.cluster.as_ref().map(Cluster::status),
            peers: self
                .peers
                .nodes
                .iter()
                .map(|(name, rec)| PeerShow {
                    node: name.clone(),
                    vteps: rec.vteps.clone(),
                    macs: self.peers.macs.iter().filter(|((_, n), _)| n == name).map(|(_, r)| r.macs.len()).sum(),
                })
                .collect(),
            peers_from_db: self.peers.from_db,
            tunnels,
        }
    }
}
