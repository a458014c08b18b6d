//! VXLAN ports: their uplink, their remotes and the next hop toward each,
//! and the MACs exchanged with peers.

use super::*;

impl Dp {
    pub(super) fn next_hop_of(&self, port: PortId, r: usize) -> Option<MacAddr> {
        match self.ports.get(port.index()).and_then(Option::as_ref).map(|p| &p.role) {
            Some(Role::Vxlan(vx)) => vx.remotes.get(r).and_then(|x| x.next_hop),
            _ => None,
        }
    }

    /// The uplink's MTU, if `id` is an uplink.
    pub(super) fn uplink_mtu(&self, id: PortId) -> Option<u32> {
        match self.ports.get(id.index()).and_then(Option::as_ref).map(|p| &p.role) {
            Some(Role::Uplink { mtu, .. }) => Some(*mtu),
            _ => None,
        }
    }

    /// Largest inner frame (Ethernet header included) that fits the uplink
    /// once encapsulated, and a buffer.
    pub(super) fn max_inner_frame(&self, vx: &Vx) -> u32 {
        let mtu = self.uplink_mtu(vx.uplink).unwrap_or(0);
        vxlan::max_inner_frame(mtu, !vx.cfg.local.is_ipv4(), MAX_FRAME)
    }

    /// Finds the next hop toward every remote of tunnel `id` and rebuilds
    /// the outer headers; starts the kernel's resolution where it has none.
    /// Returns true if anything changed.
    pub(super) fn resolve_remotes(&mut self, id: PortId) -> bool {
        let Some(Some(port)) = self.ports.get(id.index()) else { return false };
        let Role::Vxlan(vx) = &port.role else { return false };
        let Some(Some(up)) = self.ports.get(vx.uplink.index()) else { return false };
        let Role::Uplink { mac: up_mac, .. } = up.role else { return false };
        let up_name = up.name.clone();
        let cfg = vx.cfg.clone();
        let found: Vec<Option<MacAddr>> = vx
            .remotes
            .iter()
            .map(|r| match netlink::resolve(r.ip) {
                Ok(nh) if nh.ifname == up_name => {
                    if nh.mac.is_none() {
                        let _ = netlink::trigger_resolution(nh.ifindex, nh.gateway.unwrap_or(r.ip));
                    }
                    nh.mac
                }
                // No route, or one through another interface: our frames
                // leave only through the uplink, so nothing to send to.
                _ => None,
            })
            .collect();
        let Some(Some(port)) = self.ports.get_mut(id.index()) else { return false };
        let Role::Vxlan(vx) = &mut port.role else { return false };
        let mut changed = false;
        for (r, mac) in vx.remotes.iter_mut().zip(found) {
            if r.next_hop != mac || (mac.is_some() && r.outer.is_none()) {
                r.next_hop = mac;
                r.outer =
                    mac.and_then(|m| OuterTemplate::new(up_mac, m, cfg.local, r.ip, cfg.dstport, cfg.ttl, cfg.vni));
                changed = true;
            }
        }
        changed
    }

    /// `resolve_remotes` on a configuration change, giving the kernel a
    /// moment to answer the solicitations it started, so the tunnel's first
    /// frames find their next hop rather than a `no_neighbor` drop. A remote
    /// still unresolved then is picked up by a later tick.
    pub(super) fn resolve_remotes_now(&mut self, id: PortId) {
        self.resolve_remotes(id);
        let end = Instant::now() + RESOLVE_WAIT;
        while self.has_unresolved(id) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
            self.resolve_remotes(id);
        }
    }

    pub(super) fn has_unresolved(&self, id: PortId) -> bool {
        matches!(self.ports.get(id.index()), Some(Some(Port { role: Role::Vxlan(vx), .. }))
            if vx.remotes.iter().any(|r| r.outer.is_none()))
    }

    /// The uplink that has `addr` configured.
    pub(super) fn uplink_with(&self, addr: IpAddr) -> DpResult<PortId> {
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(p @ Port { role: Role::Uplink { .. }, .. }) = p {
                if netlink::interface_addrs(&p.name).is_ok_and(|a| a.contains(&addr)) {
                    return Ok(PortId(i as u16));
                }
            }
        }
        Err(format!(
            "local address {addr} is not configured on any uplink (add it to the underlay interface, \
             and the interface with `rvsctl uplink add IFACE`)"
        ))
    }

    /// True if a VXLAN port other than `except` listens on (`local`, `port`).
    pub(super) fn vtep_in_use(&self, local: IpAddr, port: u16, except: PortId) -> bool {
        self.ports.iter().enumerate().any(|(i, p)| {
            i != except.index()
                && matches!(p.as_ref().map(|p| &p.role), Some(Role::Vxlan(vx)) if vx.cfg.local == local && vx.cfg.dstport == port)
        })
    }

    pub(super) fn open_vxlan(&self, id: PortId, cfg: &PortConfig) -> DpResult<Port> {
        let vcfg =
            cfg.vxlan.clone().ok_or_else(|| format!("port {:?}: a VXLAN port needs its tunnel settings", cfg.name))?;
        // Checked: never tc (proto::check).
        let fast = cfg.fast_path.resolve(PortType::Vxlan);
        let uplink = self.uplink_with(vcfg.local)?;
        let up = self.ports[uplink.index()].as_ref().expect("uplink_with found it");
        if let Some(xdp) = &up.xdp {
            xdp.add_vtep(vcfg.local, vcfg.dstport)
                .map_err(|e| format!("steering VTEP {}:{} on {}: {e}", vcfg.local, vcfg.dstport, up.name))?;
        }
        let mut port = Port {
            name: cfg.name.clone(),
            bridge: None,
            kind: PortType::Vxlan,
            vlan: VlanMode::Access(Vid(1)),
            handles: Vec::new(),
            stats: Vec::new(),
            xdp: None,
            link: None,
            role: Role::Vxlan(Vx {
                fast,
                remotes: vcfg.remotes.iter().map(|&ip| RemoteState { ip, next_hop: None, outer: None }).collect(),
                cfg: vcfg,
                uplink,
                advertised: Vec::new(),
            }),
        };
        // Every thread may send through the tunnel: each keeps counters.
        for t in 0..self.threads.len() {
            let stats = Arc::new(PortStats::default());
            port.stats.push(stats.clone());
            port.handles.push((0, t, false));
            let lp = LocalPort { id, queue: 0, port: None, rx: false, stats };
            let _ = self.threads[t].tx.send(Command::AddPort(lp));
        }
        Ok(port)
    }

    /// The body of [`Datapath::set_remotes`].
    pub(super) fn replace_remotes(&mut self, port: &str, remotes: &[IpAddr]) -> DpResult<()> {
        let id = self.port_id(port)?;
        let p = self.ports[id.index()].as_mut().expect("port_id found it");
        let Role::Vxlan(vx) = &mut p.role else { return Err(format!("port {port:?} is not a VXLAN port")) };
        vx.cfg.remotes = remotes.to_vec();
        vx.remotes = remotes.iter().map(|&ip| RemoteState { ip, next_hop: None, outer: None }).collect();
        let bridge = p.bridge;
        self.resolve_remotes_now(id);
        // Learned entries point into the remote list by index. Once every
        // thread runs the new list (publishing waits for that), flushing
        // takes each entry learned under the old one, those learned while
        // the change was on its way included. The kernel keeps the old
        // list's entries and headers, consistent, until then; it loses the
        // tunnel's MACs before it gets the new headers.
        self.publish_to_threads();
        if let Some(b) = self.bridge(bridge) {
            b.fdb.flush(Some(id));
        }
        self.sync_kernel_fdb();
        self.sync_kernel_ports();
        Ok(())
    }

    /// The body of [`Datapath::local_macs`].
    pub(super) fn advertised_macs(&self, port: &str) -> DpResult<Vec<(MacAddr, u16)>> {
        let id = self.port_id(port)?;
        let p = self.ports[id.index()].as_ref().expect("port_id found it");
        if !matches!(p.role, Role::Vxlan(_)) {
            return Err(format!("port {port:?} is not a VXLAN port"));
        }
        let Some(b) = self.bridge(p.bridge) else { return Ok(Vec::new()) };
        let is_tunnel = |q: PortId| {
            matches!(self.ports.get(q.index()).and_then(Option::as_ref).map(|x| &x.role), Some(Role::Vxlan(_)))
        };
        let mut macs: Vec<(MacAddr, u16)> = b
            .fdb
            .entries()
            .into_iter()
            .filter(|e| !is_tunnel(e.port) && p.vlan.carries(e.vid))
            .map(|e| (e.mac, e.vid.0))
            .collect();
        macs.sort();
        Ok(macs)
    }

    /// The body of [`Datapath::set_remote_macs`].
    pub(super) fn install_remote_macs(&mut self, port: &str, macs: &[(MacAddr, u16, IpAddr)]) -> DpResult<()> {
        let id = self.port_id(port)?;
        let now = self.now();
        let p = self.ports[id.index()].as_mut().expect("port_id found it");
        let Role::Vxlan(vx) = &mut p.role else { return Err(format!("port {port:?} is not a VXLAN port")) };
        let Some(b) = p.bridge.and_then(|i| self.bridges.get(i.index())).and_then(Option::as_ref) else {
            return Ok(());
        };
        // Sets, not lists: a peer may advertise tens of thousands of MACs.
        let remotes: HashMap<IpAddr, u16> = vx.remotes.iter().enumerate().map(|(i, x)| (x.ip, i as u16)).collect();
        let mut installed = HashSet::new();
        for &(mac, vid, ip) in macs {
            let Some(&r) = remotes.get(&ip) else { continue };
            // Learned, not static: refreshed by every call, aged out if the
            // peer stops advertising, and real traffic may still move it.
            b.fdb.learn_at(mac, Vid(vid), rvs_dataplane::fdb::Dest { port: id, remote: r }, now);
            installed.insert((mac, vid));
        }
        for &(mac, vid) in &vx.advertised {
            if !installed.contains(&(mac, vid)) && b.fdb.lookup(mac, Vid(vid)) == Some(id) {
                b.fdb.remove(mac, Vid(vid));
            }
        }
        vx.advertised = installed.into_iter().collect();
        Ok(())
    }
}
