//! IP-MAC bindings through the control socket: static ones added and
//! removed (saved in the bridge's configuration, what rvs-cni's ADD and
//! DEL call), and every binding listed with where it came from.

use super::State;
use crate::datapath::{Datapath, NeighSource};
use rvs_proto::config::StaticNeigh;
use rvs_proto::status::{NeighEntryInfo, NeighList, NeighTableInfo};
use rvs_proto::{self as proto, ErrorKind};
use std::net::IpAddr;

impl<D: Datapath> State<D> {
    /// Adds a static binding. An identical one is `Exists` (so
    /// `--may-exist` passes); another MAC for the address is refused, so
    /// nothing is silently rebound.
    pub(super) fn neigh_add(
        &mut self,
        bridge: &str,
        ip: &str,
        mac: &str,
        vlan: u16,
        port: Option<String>,
    ) -> Result<(), String> {
        let i = self.bridge_idx(bridge)?;
        if let Some(p) = &port {
            self.port_in_bridge(i, p)?;
        }
        let ip = proto::parse_neigh_ip(ip)?;
        let mac = proto::parse_mac(mac, true)?;
        proto::check_vlan(vlan)?;
        if let Some(old) = self.static_neigh(i, ip, vlan) {
            return Err(match old.mac.parse::<proto::MacAddr>() {
                Ok(m) if m == mac => format!("{ip} is already bound to {mac} in VLAN {vlan} of bridge {bridge:?}"),
                _ => format!(
                    "{ip} is bound to {} in VLAN {vlan} of bridge {bridge:?}; remove it with `rvsctl neigh del` first",
                    old.mac
                ),
            });
        }
        if let Some(why) = self.down_bridges.get(bridge) {
            return Err(format!("bridge {bridge:?} is down ({why})"));
        }
        self.dp.neigh_add(bridge, ip, vlan, mac)?;
        let mut new = self.config.clone();
        new.bridges[i].neighbors.push(StaticNeigh { ip, mac: mac.to_string(), vlan, port });
        self.commit(new, |s| {
            let _ = s.dp.neigh_del(bridge, ip, vlan);
        })
    }

    /// Removes the binding of an address: a static one from the
    /// configuration too, a learned or remote one from the table only (a
    /// remote one comes back while its node publishes it).
    pub(super) fn neigh_del(&mut self, bridge: &str, ip: &str, vlan: u16) -> Result<(), String> {
        let i = self.bridge_idx(bridge)?;
        let ip = proto::parse_neigh_ip(ip)?;
        proto::check_vlan(vlan)?;
        let live = !self.down_bridges.contains_key(bridge);
        let removed = if live { self.dp.neigh_del(bridge, ip, vlan)? } else { None };
        let Some(old) = self.static_neigh(i, ip, vlan).cloned() else {
            return match removed {
                Some(_) => Ok(()),
                None => Err(format!("no binding for {ip} in VLAN {vlan} of bridge {bridge:?}")),
            };
        };
        let mut new = self.config.clone();
        new.bridges[i].neighbors.retain(|n| !(n.ip == ip && n.vlan == vlan));
        self.commit(new, |s| {
            if removed == Some(NeighSource::Static) {
                if let Ok(mac) = proto::parse_mac(&old.mac, true) {
                    let _ = s.dp.neigh_add(bridge, ip, vlan, mac);
                }
            }
        })
    }

    /// Every binding of one bridge or all, by bridge, VLAN and address.
    pub(super) fn neigh_show(&self, bridge: Option<&str>) -> Result<NeighList, String> {
        if let Some(b) = bridge {
            self.bridge_idx(b)?;
        }
        let mut out = NeighList::default();
        for br in self.config.bridges.iter().filter(|b| bridge.is_none_or(|want| want == b.name)) {
            if self.down_bridges.contains_key(&br.name) {
                continue;
            }
            let view = self.dp.neigh_list(&br.name)?;
            out.tables.push(NeighTableInfo { bridge: br.name.clone(), learned: view.learned, limit: view.limit });
            let mut entries: Vec<NeighEntryInfo> = view
                .bindings
                .into_iter()
                .map(|(b, age)| NeighEntryInfo {
                    bridge: br.name.clone(),
                    vlan: b.vid.0,
                    ip: b.ip,
                    mac: b.mac.to_string(),
                    source: b.source.name().to_string(),
                    age_secs: (b.source == NeighSource::Learned).then_some(age),
                    node: (b.source == NeighSource::Remote)
                        .then(|| self.remote_neigh.get(&(br.name.clone(), b.ip, b.vid.0)).cloned())
                        .flatten(),
                })
                .collect();
            entries.sort_by_key(|e| (e.vlan, e.ip));
            out.entries.extend(entries);
        }
        Ok(out)
    }

    /// The kind of a neigh request's failure, should it fail.
    pub(super) fn neigh_presence(&self, bridge: &str, ip: &str, vlan: u16, mac: Option<&str>) -> Option<ErrorKind> {
        let Ok(i) = self.bridge_idx(bridge) else { return Some(ErrorKind::NotFound) };
        let ip = proto::parse_neigh_ip(ip).ok()?;
        match mac {
            Some(mac) => {
                let same = self.static_neigh(i, ip, vlan)?.mac.parse::<proto::MacAddr>().ok()?;
                (proto::parse_mac(mac, true).ok()? == same).then_some(ErrorKind::Exists)
            }
            None => {
                let in_table = self
                    .dp
                    .neigh_list(bridge)
                    .is_ok_and(|v| v.bindings.iter().any(|(b, _)| b.ip == ip && b.vid.0 == vlan));
                (self.static_neigh(i, ip, vlan).is_none() && !in_table).then_some(ErrorKind::NotFound)
            }
        }
    }

    fn static_neigh(&self, i: usize, ip: IpAddr, vlan: u16) -> Option<&StaticNeigh> {
        self.config.bridges[i].neighbors.iter().find(|n| n.ip == ip && n.vlan == vlan)
    }

    /// Puts a bridge's static bindings back into the datapath.
    pub(super) fn replay_neigh(&mut self, bridge: &str, neighbors: &[StaticNeigh]) {
        for n in neighbors {
            let res = proto::parse_mac(&n.mac, true).and_then(|mac| self.dp.neigh_add(bridge, n.ip, n.vlan, mac));
            if let Err(e) = res {
                tracing::warn!("binding {} -> {} VLAN {} of bridge {bridge:?} not restored: {e}", n.ip, n.mac, n.vlan);
            }
        }
    }
}
