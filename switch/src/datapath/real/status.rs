//! What the datapath reports: ports, uplinks, FDB entries and counters.

use super::kernel::fast_path_of;
use super::ports::{port_state, xdp_mode_name};
use super::*;

impl Dp {
    /// The body of [`Datapath::uplink_status`].
    pub(super) fn uplink_views(&self) -> Vec<UplinkStatus> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Some(p @ Port { role: Role::Uplink { mtu, .. }, .. }) => Some(UplinkStatus {
                    name: p.name.clone(),
                    state: port_state(p),
                    xdp_mode: xdp_mode_name(p),
                    mtu: *mtu,
                    vteps: {
                        let mut v: Vec<String> = self
                            .ports
                            .iter()
                            .flatten()
                            .filter_map(|q| match &q.role {
                                Role::Vxlan(vx) if vx.uplink == PortId(i as u16) => Some(vx.cfg.local.to_string()),
                                _ => None,
                            })
                            .collect();
                        v.sort();
                        v.dedup();
                        v
                    },
                    queues: p.handles.iter().filter(|h| h.2).map(|&(q, t, _)| (q, self.threads[t].core)).collect(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The body of [`Datapath::fdb_page`].
    pub(super) fn fdb_view(&self, bridge: &str, after: Option<(u16, MacAddr)>, limit: usize) -> DpResult<FdbPage> {
        let bid = self.bridge_id(bridge)?;
        let now = self.now();
        let fdb = &self.bridges[bid.index()].as_ref().expect("bridge_id found it").fdb;
        let page = fdb.page(after.map(|(v, m)| (Vid(v), m)), limit);
        let entries: Vec<FdbEntryInfo> = page
            .entries
            .into_iter()
            .map(|e| FdbEntryInfo {
                mac: e.mac.to_string(),
                vlan: e.vid.into(),
                port: self.port_name(e.port),
                is_static: e.is_static,
                age_secs: if e.is_static { 0 } else { now.saturating_sub(e.last_seen) },
                remote: match self.ports.get(e.port.index()).and_then(Option::as_ref).map(|p| &p.role) {
                    Some(Role::Vxlan(vx)) if e.remote != NO_REMOTE => {
                        vx.remotes.get(usize::from(e.remote)).map(|r| r.ip.to_string())
                    }
                    _ => None,
                },
            })
            .collect();
        let next = entries.last().filter(|_| page.more).map(|e| FdbCursor { vlan: e.vlan, mac: e.mac.clone() });
        Ok(FdbPage { entries, next, total: page.total })
    }

    /// The body of [`Datapath::port_status`].
    pub(super) fn port_views(&self) -> Vec<PortStatus> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((PortId(i as u16), p.as_ref()?)))
            .filter(|(_, p)| !matches!(p.role, Role::Uplink { .. }))
            .map(|(id, p)| PortStatus {
                name: p.name.clone(),
                bridge: self.bridge_name(p.bridge).to_string(),
                kind: p.kind.name().into(),
                state: port_state(p),
                xdp_mode: xdp_mode_name(p),
                fast_path: fast_path_of(p).name().to_string(),
                queues: p.handles.iter().filter(|h| h.2).map(|&(q, t, _)| (q, self.threads[t].core)).collect(),
                learned_macs: self.bridge(p.bridge).map_or(0, |b| b.fdb.port_learned(id)),
                inner_mtu: match &p.role {
                    Role::Vxlan(vx) => Some(self.max_inner_frame(vx).saturating_sub(14)),
                    _ => None,
                },
                remotes: match &p.role {
                    Role::Vxlan(vx) => vx
                        .remotes
                        .iter()
                        .map(|r| RemoteStatus { ip: r.ip.to_string(), next_hop_mac: r.next_hop.map(|m| m.to_string()) })
                        .collect(),
                    _ => Vec::new(),
                },
            })
            .collect()
    }

    /// The body of [`Datapath::port_stats`].
    pub(super) fn port_counters(&self) -> Vec<PortStatsInfo> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, p.as_ref()?)))
            .map(|(i, p)| {
                let mut c = PortCounters::default();
                for s in &p.stats {
                    c.accumulate(&s.read());
                }
                let bridge = match p.role {
                    Role::Uplink { .. } => "(uplink)",
                    _ => self.bridge_name(p.bridge),
                };
                let mut info = PortStatsInfo::new(&p.name, bridge, &c);
                info.link_downs = p.link.as_ref().map_or(0, |l| l.downs);
                if let Ok(k) = self.kernel.counters(PortId(i as u16)) {
                    info.kernel = rvs_proto::status::KernelShare {
                        rx_packets: k.rx_packets,
                        rx_bytes: k.rx_bytes,
                        tx_packets: k.tx_packets,
                        tx_bytes: k.tx_bytes,
                    };
                }
                info
            })
            .collect()
    }
}
