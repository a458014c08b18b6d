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

use super::State;
use crate::cluster::{Cluster, LocalView, PeerView};
use crate::datapath::Datapath;
use rvs_proto::cluster::{ClusterShow, MacRecord, MacsRecord, PeerShow, TunnelShow, VtepRecord};
use rvs_proto::config::ClusterConfig;
use rvs_proto::config::{PortType, PortVlan};

/// A VXLAN port as cluster membership sees it.
struct Tunnel {
    name: String,
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
            .flat_map(|b| b.ports.iter().map(move |p| (b.max_macs, p)))
            .filter(|(_, p)| p.kind == PortType::Vxlan && !self.down_ports.contains_key(&p.name))
            .filter_map(|(max_macs, p)| {
                let v = p.vxlan.as_ref()?;
                let access = match p.vlan {
                    PortVlan::Access { vlan } => Some(vlan),
                    PortVlan::Trunk { .. } => None,
                };
                let vtep = VtepRecord { vni: v.vni, addr: v.local, dstport: v.dstport };
                Some(Tunnel { name: p.name.clone(), vtep, auto: v.remotes.is_empty(), access, max_macs })
            })
            .collect();
        let mut local = LocalView::default();
        for t in &tunnels {
            let (name, vni) = (&t.name, t.vtep.vni);
            local.vteps.push(t.vtep.clone());
            if let std::collections::btree_map::Entry::Vacant(e) = local.macs.entry(vni) {
                let macs = self.dp.local_macs(name).unwrap_or_default();
                let macs = macs.into_iter().map(|(mac, vlan)| MacRecord { mac, vlan }).collect();
                e.insert(MacsRecord { vtep: t.vtep.addr, macs: crate::cluster::advertised(macs, t.max_macs) });
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
        local.vteps.sort();
        local.vteps.dedup();
        self.cluster_remotes.retain(|name, _| tunnels.iter().any(|t| &t.name == name));
        if let Some(c) = &self.cluster {
            c.publish(local);
        }
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

    /// `cluster show`: the settings, the agent's state, the peers and the
    /// tunnels that take remotes from them.
    pub fn cluster_show(&self) -> ClusterShow {
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
