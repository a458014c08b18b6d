//! Publishing: the snapshot of bridges, ports and tunnels the polling
//! threads run, rebuilt and handed to every thread after each change.

use super::*;

impl Dp {
    /// Builds and sends a snapshot of the current configuration, waits
    /// until every thread runs it, then brings the kernel's tables in line.
    pub(super) fn publish(&mut self) {
        self.publish_to_threads();
        self.sync_kernel_ports();
        self.sync_kernel_fdb();
    }

    /// Builds and sends a snapshot of the current configuration, and waits
    /// until every thread runs it (or 2 s have passed).
    pub(super) fn publish_to_threads(&mut self) {
        self.generation += 1;
        let ports: Vec<Option<PortInfo>> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.as_ref().map(|p| PortInfo {
                    id: PortId(i as u16),
                    bridge: p.bridge,
                    vlan: p.vlan.clone(),
                    name: p.name.clone(),
                    kind: self.port_kind(p),
                })
            })
            .collect();
        let bridges = self
            .bridges
            .iter()
            .enumerate()
            .map(|(i, b)| {
                b.as_ref().map(|b| {
                    let members: Vec<&PortInfo> =
                        ports.iter().flatten().filter(|p| p.bridge == Some(BridgeId(i as u16))).collect();
                    BridgeInfo::new(BridgeId(i as u16), &b.name, b.fdb.clone(), b.neigh.clone(), &members)
                })
            })
            .collect();
        let tx_thread = self
            .ports
            .iter()
            .map(|p| match p {
                Some(p) if matches!(p.kind, PortType::Tap | PortType::Internal | PortType::Vxlan) => TX_ANY,
                Some(p) => p.handles.first().map_or(TX_ANY, |h| h.1 as u8),
                None => TX_ANY,
            })
            .collect();
        let vteps = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p.as_ref().map(|p| &p.role) {
                Some(Role::Vxlan(vx)) => Some(Vtep {
                    local: vx.cfg.local,
                    dst_port: vx.cfg.dstport,
                    vni: vx.cfg.vni,
                    port: PortId(i as u16),
                }),
                _ => None,
            })
            .collect();
        let snap = Arc::new(Snapshot { generation: self.generation, ports, bridges, tx_thread, vteps });
        for t in &self.threads {
            let _ = t.tx.send(Command::Snapshot(snap.clone()));
        }
        self.snap = snap;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline
            && self.threads.iter().any(|t| t.stats.generation.load(Relaxed) < self.generation)
        {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// The packet path's view of a port's role.
    pub(super) fn port_kind(&self, p: &Port) -> PortKind {
        match &p.role {
            Role::Plain | Role::Tap { .. } => PortKind::Plain,
            Role::Uplink { .. } => PortKind::Uplink,
            Role::Vxlan(vx) => PortKind::Vxlan(Arc::new(Tunnel {
                vni: vx.cfg.vni,
                local: vx.cfg.local,
                dst_port: vx.cfg.dstport,
                uplink: vx.uplink,
                max_inner_frame: self.max_inner_frame(vx),
                remotes: vx.remotes.iter().map(|r| Remote { ip: r.ip, outer: r.outer.clone() }).collect(),
            })),
        }
    }
}
