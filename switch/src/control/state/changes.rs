//! The changes: each validates against the configuration, applies to the
//! datapath, then commits the new configuration to the db.

use super::*;

impl<D: Datapath> State<D> {
    pub(super) fn bridge_add(
        &mut self,
        name: String,
        aging: Option<u32>,
        max_macs: Option<u32>,
        gateway: Vec<IfAddr>,
    ) -> Result<(), String> {
        proto::check_name("bridge", &name)?;
        if self.bridge_idx(&name).is_ok() {
            return Err(format!("bridge {name:?} already exists"));
        }
        let mut br = BridgeConfig::new(&name);
        set_bridge_limits(&mut br, aging, max_macs)?;
        proto::check_gateway(&gateway)?;
        if !gateway.is_empty() {
            self.check_gateway_name(&name)?;
        }
        self.dp.add_bridge(&br)?;
        if !gateway.is_empty() {
            match self.open_gateway(&name, gateway) {
                Ok(p) => br.ports.push(p),
                Err(e) => {
                    let _ = self.dp.del_bridge(&name);
                    return Err(e);
                }
            }
        }
        let with_gateway = !br.ports.is_empty();
        let mut new = self.config.clone();
        new.bridges.push(br);
        self.commit(new, |s| {
            if with_gateway {
                let _ = s.dp.del_port(&name);
            }
            let _ = s.dp.del_bridge(&name);
        })
    }

    /// Ok if bridge `bridge`'s internal port can take the bridge's name:
    /// no port or uplink has it.
    fn check_gateway_name(&self, bridge: &str) -> Result<(), String> {
        if let Some((k, _)) = self.port_loc(bridge) {
            return Err(format!(
                "port {bridge:?} of bridge {:?} has the name bridge {bridge:?}'s gateway port needs",
                self.config.bridges[k].name
            ));
        }
        if self.uplink_idx(bridge).is_some() {
            return Err(format!("uplink {bridge:?} has the name bridge {bridge:?}'s gateway port needs"));
        }
        Ok(())
    }

    /// Opens bridge `bridge`'s internal port holding `addrs`; its config.
    fn open_gateway(&mut self, bridge: &str, addrs: Vec<IfAddr>) -> Result<PortConfig, String> {
        let mut port = PortConfig::internal(bridge, addrs);
        proto::check_port(&port)?;
        self.dp.add_port(bridge, &port).map_err(|e| format!("bridge {bridge:?}: {e}"))?;
        port.tap_created = self.dp.tap_created(bridge);
        Ok(port)
    }

    pub(super) fn bridge_set(
        &mut self,
        name: &str,
        aging: Option<u32>,
        max_macs: Option<u32>,
        gateway: Option<Vec<IfAddr>>,
    ) -> Result<(), String> {
        let i = self.bridge_idx(name)?;
        if aging.is_none() && max_macs.is_none() && gateway.is_none() {
            return Err("nothing to change (give an aging time, a MAC limit or a gateway)".to_string());
        }
        let old = self.config.bridges[i].clone();
        let mut br = old.clone();
        set_bridge_limits(&mut br, aging, max_macs)?;
        let limits_changed = br != old;
        if let Some(g) = &gateway {
            proto::check_gateway(g)?;
        }
        let old_gw = old.ports.iter().position(|p| p.kind == PortType::Internal);
        let gw_change = match (gateway, old_gw) {
            (None, _) => GatewayChange::None,
            (Some(g), None) if g.is_empty() => GatewayChange::None,
            (Some(g), Some(j)) if g.is_empty() => GatewayChange::Remove(j),
            (Some(g), Some(j)) if same_set(&g, &old.ports[j].addresses) => GatewayChange::None,
            (Some(g), None) => GatewayChange::Add(g),
            (Some(g), Some(j)) => GatewayChange::Set(j, g),
        };
        if !limits_changed && matches!(gw_change, GatewayChange::None) {
            return Ok(());
        }
        let live = !self.down_bridges.contains_key(name);
        if let GatewayChange::Add(_) = &gw_change {
            if !live {
                return Err(format!("bridge {name:?} is down; its gateway cannot be added now"));
            }
            self.check_gateway_name(name)?;
        }
        // The gateway port as the datapath has it: a down one changes in
        // the configuration only, and comes back as configured.
        let port_live = live && !self.down_ports.contains_key(name);
        if live && limits_changed {
            self.dp.set_bridge(&br)?;
        }
        let undo_limits = |s: &mut Self| {
            if live && limits_changed {
                let _ = s.dp.set_bridge(&old);
            }
        };
        let applied = match &gw_change {
            GatewayChange::None => Ok(()),
            GatewayChange::Add(g) => self.open_gateway(name, g.clone()).map(|p| br.ports.push(p)),
            GatewayChange::Set(j, g) => {
                let r = if port_live { self.dp.set_addresses(name, g) } else { Ok(()) };
                r.map(|()| br.ports[*j].addresses = g.clone())
            }
            GatewayChange::Remove(j) => {
                let r = if port_live { self.dp.del_port(name) } else { Ok(()) };
                r.map(|()| {
                    br.ports.remove(*j);
                })
            }
        };
        if let Err(e) = applied {
            undo_limits(self);
            return Err(e);
        }
        let mut new = self.config.clone();
        new.bridges[i] = br;
        let old_port = old_gw.map(|j| old.ports[j].clone());
        self.commit(new, |s| {
            match (&gw_change, &old_port) {
                (GatewayChange::Add(_), _) => {
                    let _ = s.dp.del_port(name);
                }
                (GatewayChange::Set(..), Some(p)) if port_live => {
                    let _ = s.dp.set_addresses(name, &p.addresses);
                }
                (GatewayChange::Remove(_), Some(p)) if port_live => s.replay_port(&old, p),
                _ => {}
            }
            undo_limits(s);
        })?;
        if let GatewayChange::Remove(_) = gw_change {
            self.down_ports.remove(name);
        }
        Ok(())
    }

    pub(super) fn bridge_del(&mut self, name: &str) -> Result<(), String> {
        let i = self.bridge_idx(name)?;
        let br = self.config.bridges[i].clone();
        let live = !self.down_bridges.contains_key(name);
        if live {
            let mut removed: Vec<&PortConfig> = Vec::new();
            for p in br.ports.iter().rev() {
                if self.down_ports.contains_key(&p.name) {
                    continue;
                }
                if let Err(e) = self.dp.del_port(&p.name) {
                    for q in removed.into_iter().rev() {
                        self.replay_port(&br, q);
                    }
                    return Err(format!("cannot delete port {:?} of bridge {name:?}: {e}", p.name));
                }
                removed.push(p);
            }
            if let Err(e) = self.dp.del_bridge(name) {
                for q in removed.into_iter().rev() {
                    self.replay_port(&br, q);
                }
                return Err(e);
            }
        }
        let mut new = self.config.clone();
        new.bridges.remove(i);
        self.commit(new, |s| {
            if live {
                s.replay_bridge(&br);
            }
        })?;
        self.down_bridges.remove(name);
        for p in &br.ports {
            self.down_ports.remove(&p.name);
        }
        Ok(())
    }

    pub(super) fn port_add(&mut self, bridge: &str, mut port: PortConfig) -> Result<(), String> {
        let i = self.bridge_idx(bridge)?;
        if let PortVlan::Trunk { vlans, .. } = &mut port.vlan {
            vlans.sort_unstable();
            vlans.dedup();
        }
        proto::check_port(&port)?;
        if port.kind == PortType::Internal {
            return Err(format!(
                "port {:?}: an internal port comes with a bridge's gateway (rvsctl bridge set BRIDGE --gateway ADDR/PREFIX)",
                port.name
            ));
        }
        // rvsd's to say, below: a request cannot make rvsd remove a tap.
        port.tap_created = false;
        if !port.pmd.is_empty() {
            return Err(format!("port {:?}: queues are assigned with pmd_assign once the port exists", port.name));
        }
        if let Some((k, _)) = self.port_loc(&port.name) {
            return Err(format!("port {:?} already exists in bridge {:?}", port.name, self.config.bridges[k].name));
        }
        if self.uplink_idx(&port.name).is_some() {
            return Err(format!("{:?} is an uplink; it cannot also be a port", port.name));
        }
        proto::check_vxlan_unique(&port, self.config.bridges.iter().flat_map(|b| &b.ports))?;
        if let Some(why) = self.down_bridges.get(bridge) {
            return Err(format!("bridge {bridge:?} is down ({why}); delete and re-add it"));
        }
        self.dp.add_port(bridge, &port)?;
        port.tap_created = port.kind == PortType::Tap && self.dp.tap_created(&port.name);
        let name = port.name.clone();
        let mut new = self.config.clone();
        new.bridges[i].ports.push(port);
        self.commit(new, |s| {
            let _ = s.dp.del_port(&name);
        })?;
        self.down_ports.remove(&name);
        Ok(())
    }

    pub(super) fn port_del(&mut self, bridge: &str, port: &str) -> Result<(), String> {
        let i = self.bridge_idx(bridge)?;
        let j = self.port_in_bridge(i, port)?;
        let br = self.config.bridges[i].clone();
        let p = br.ports[j].clone();
        if p.kind == PortType::Internal {
            return Err(format!(
                "port {port:?} is bridge {bridge:?}'s gateway port; remove it with rvsctl bridge set {bridge} --no-gateway"
            ));
        }
        let live = !self.down_ports.contains_key(port);
        if live {
            self.dp.del_port(port)?;
        }
        let mut new = self.config.clone();
        new.bridges[i].ports.remove(j);
        new.bridges[i].static_macs.retain(|m| m.port != port);
        // The port's bindings (a container's addresses) go with it.
        let owned = |n: &config::StaticNeigh| n.port.as_deref() == Some(port);
        let bindings: Vec<config::StaticNeigh> = br.neighbors.iter().filter(|n| owned(n)).cloned().collect();
        new.bridges[i].neighbors.retain(|n| !owned(n));
        let bridge_live = !self.down_bridges.contains_key(bridge);
        if bridge_live {
            for n in &bindings {
                let _ = self.dp.neigh_del(bridge, n.ip, n.vlan);
            }
        }
        self.commit(new, |s| {
            if live {
                s.replay_port(&br, &p);
            }
            if bridge_live {
                for n in &bindings {
                    if let Ok(mac) = proto::parse_mac(&n.mac, true) {
                        let _ = s.dp.neigh_add(bridge, n.ip, n.vlan, mac);
                    }
                }
            }
        })?;
        self.down_ports.remove(port);
        Ok(())
    }

    pub(super) fn port_set_remotes(
        &mut self,
        bridge: &str,
        port: &str,
        remotes: Vec<IpAddr>,
        expect: Option<Vec<IpAddr>>,
    ) -> Result<(), String> {
        let i = self.bridge_idx(bridge)?;
        let j = self.port_in_bridge(i, port)?;
        let p = &self.config.bridges[i].ports[j];
        let Some(old) = p.vxlan.as_ref().filter(|_| p.kind == PortType::Vxlan) else {
            return Err(format!("port {port:?} is not a vxlan port"));
        };
        if let Some(want) = expect {
            if want != old.remotes {
                return Err(format!(
                    "the remotes of port {port:?} changed meanwhile (now: {}); try again",
                    if old.remotes.is_empty() { "none".to_string() } else { join(&old.remotes) }
                ));
            }
        }
        proto::check_remotes(old.local, &remotes)?;
        if remotes == old.remotes {
            return Ok(());
        }
        let old_remotes = old.remotes.clone();
        let live = !self.down_ports.contains_key(port);
        if live {
            self.dp.set_remotes(port, &remotes)?;
        }
        let mut new = self.config.clone();
        if let Some(v) = new.bridges[i].ports[j].vxlan.as_mut() {
            v.remotes = remotes;
        }
        self.commit(new, |s| {
            if live {
                let _ = s.dp.set_remotes(port, &old_remotes);
            }
        })
    }

    pub(super) fn uplink_add(&mut self, up: UplinkConfig) -> Result<(), String> {
        proto::check_uplink(&up)?;
        if !up.pmd.is_empty() {
            return Err(format!("uplink {:?}: queues are assigned with pmd_assign once the uplink exists", up.name));
        }
        if self.uplink_idx(&up.name).is_some() {
            return Err(format!("uplink {:?} already exists", up.name));
        }
        if let Some((k, _)) = self.port_loc(&up.name) {
            return Err(format!(
                "{:?} is a port of bridge {:?}; it cannot also be an uplink",
                up.name, self.config.bridges[k].name
            ));
        }
        self.dp.add_uplink(&up)?;
        let name = up.name.clone();
        let mut new = self.config.clone();
        new.uplinks.push(up);
        self.commit(new, |s| {
            let _ = s.dp.del_uplink(&name);
        })?;
        self.down_uplinks.remove(&name);
        Ok(())
    }

    pub(super) fn uplink_del(&mut self, name: &str) -> Result<(), String> {
        let Some(k) = self.uplink_idx(name) else {
            return Err(format!("unknown uplink {name:?}"));
        };
        let up = self.config.uplinks[k].clone();
        let live = !self.down_uplinks.contains_key(name);
        if live {
            self.dp.del_uplink(name)?;
        }
        let mut new = self.config.clone();
        new.uplinks.remove(k);
        self.commit(new, |s| {
            if live {
                match s.dp.add_uplink(&up) {
                    Ok(()) => s.replay_pmd("uplink", &up.name, &up.pmd),
                    Err(e) => {
                        s.down_uplinks.insert(up.name.clone(), e);
                    }
                }
            }
        })?;
        self.down_uplinks.remove(name);
        Ok(())
    }

    pub(super) fn fdb_add(&mut self, bridge: &str, mac: &str, vlan: u16, port: &str) -> Result<(), String> {
        let i = self.bridge_idx(bridge)?;
        let mac = proto::parse_mac(mac, true)?;
        proto::check_vlan(vlan)?;
        let j = self.port_in_bridge(i, port).map_err(|_| format!("port {port:?} is not in bridge {bridge:?}"))?;
        let br = &self.config.bridges[i];
        if !proto::port_carries(&br.ports[j], vlan) {
            return Err(format!("port {port:?} does not carry VLAN {vlan}"));
        }
        if let Some(why) = self.down_ports.get(port) {
            return Err(format!("port {port:?} is down ({why})"));
        }
        let old = br.static_macs.iter().position(|m| same_entry(m, mac, vlan)).map(|k| br.static_macs[k].clone());
        self.dp.fdb_add(bridge, mac, vlan, port)?;
        let entry = StaticMac { mac: mac.to_string(), vlan, port: port.to_string() };
        let mut new = self.config.clone();
        let macs = &mut new.bridges[i].static_macs;
        match macs.iter_mut().find(|m| same_entry(m, mac, vlan)) {
            Some(m) => *m = entry,
            None => macs.push(entry),
        }
        self.commit(new, |s| match old {
            Some(o) if !s.down_ports.contains_key(&o.port) => {
                let _ = s.dp.fdb_add(bridge, mac, vlan, &o.port);
            }
            _ => {
                let _ = s.dp.fdb_del(bridge, mac, vlan);
            }
        })
    }

    pub(super) fn fdb_del(&mut self, bridge: &str, mac: &str, vlan: u16) -> Result<(), String> {
        let i = self.bridge_idx(bridge)?;
        let mac = proto::parse_mac(mac, false)?;
        proto::check_vlan(vlan)?;
        let old = self.config.bridges[i].static_macs.iter().position(|m| same_entry(m, mac, vlan));
        let removed =
            if self.down_bridges.contains_key(bridge) { false } else { self.dp.fdb_del(bridge, mac, vlan)? };
        let Some(k) = old else {
            return if removed {
                Ok(())
            } else {
                Err(format!("no FDB entry for {mac} in VLAN {vlan} of bridge {bridge:?}"))
            };
        };
        let entry = self.config.bridges[i].static_macs[k].clone();
        let mut new = self.config.clone();
        new.bridges[i].static_macs.remove(k);
        self.commit(new, |s| {
            if removed {
                let _ = s.dp.fdb_add(bridge, mac, vlan, &entry.port);
            }
        })
    }

    pub(super) fn fdb_flush(&mut self, bridge: &str, port: Option<&str>) -> Result<FlushResult, String> {
        let i = self.bridge_idx(bridge)?;
        if let Some(p) = port {
            self.port_in_bridge(i, p)?;
        }
        if self.down_bridges.contains_key(bridge) {
            return Ok(FlushResult { flushed: 0 });
        }
        let flushed = self.dp.fdb_flush(bridge, port)?;
        Ok(FlushResult { flushed })
    }

    pub(super) fn pmd_assign(&mut self, name: &str, queue: u32, core: usize) -> Result<(), String> {
        let (at, what, down) = if let Some((i, j)) = self.port_loc(name) {
            (QueueOwner::Port(i, j), "port", self.down_ports.get(name))
        } else if let Some(k) = self.uplink_idx(name) {
            (QueueOwner::Uplink(k), "uplink", self.down_uplinks.get(name))
        } else {
            return Err(format!("unknown port or uplink {name:?}"));
        };
        if let Some(why) = down {
            return Err(format!("{what} {name:?} is down ({why}); its queues cannot be moved"));
        }
        let old_core = self.polling_core(name, queue);
        self.dp.pmd_assign(name, queue, core)?;
        let mut new = self.config.clone();
        let pmd = match at {
            QueueOwner::Port(i, j) => &mut new.bridges[i].ports[j].pmd,
            QueueOwner::Uplink(k) => &mut new.uplinks[k].pmd,
        };
        config::set_pmd(pmd, queue, core);
        if new == self.config {
            return Ok(());
        }
        self.commit(new, |s| {
            if let Some(c) = old_core {
                let _ = s.dp.pmd_assign(name, queue, c);
            }
        })
    }
}

/// What `bridge_set` does to the bridge's gateway.
enum GatewayChange {
    /// Nothing.
    None,
    /// Makes the internal port, holding these addresses.
    Add(Vec<IfAddr>),
    /// Replaces the addresses of the internal port (at this index).
    Set(usize, Vec<IfAddr>),
    /// Removes the internal port (at this index).
    Remove(usize),
}

/// True if `a` and `b` hold the same addresses, in any order.
fn same_set(a: &[IfAddr], b: &[IfAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// Sets the aging time and MAC limit of `br` that are given, each checked.
fn set_bridge_limits(br: &mut BridgeConfig, aging: Option<u32>, max_macs: Option<u32>) -> Result<(), String> {
    if let Some(a) = aging {
        proto::check_aging(a)?;
        br.aging_secs = a;
    }
    if let Some(m) = max_macs {
        proto::check_max_macs(m)?;
        br.max_macs = m;
    }
    Ok(())
}
