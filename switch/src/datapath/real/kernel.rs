//! The kernel fast path's tables, kept in step with rvs's own state: each
//! port's entry after every publish, the MAC table whenever a bridge's FDB
//! changed, and, before aging, the last-seen times of sources only the
//! kernel carried.

use super::*;

/// Port ids the kernel tables hold (rvsd's own limit).
pub(super) const KERNEL_PORTS: u32 = 4096;
/// MACs the kernel's table holds over all bridges.
pub(super) const KERNEL_MACS: u32 = 1 << 17;

/// What rvs last wrote into the kernel's MAC table.
#[derive(Default)]
pub(super) struct KernelMirror {
    /// (bridge, MAC, VLAN) → (port and remote, static).
    macs: HashMap<(BridgeId, MacAddr, Vid), (Dest, bool)>,
    /// Each bridge's FDB epoch when last mirrored.
    epochs: HashMap<BridgeId, u64>,
}

impl Dp {
    /// Sets the kernel's clock to rvsd's seconds when they changed.
    pub(super) fn sync_kernel_clock(&mut self) {
        let now = self.now();
        if now != self.kernel_clock {
            match self.kernel.set_clock(now) {
                Ok(()) => self.kernel_clock = now,
                Err(e) => tracing::warn!("kernel fast path: setting its clock: {e}"),
            }
        }
    }

    /// Readies the far end of every executor port's and uplink's veth
    /// once it is up (the kernel may send to the port, or encapsulate
    /// through the uplink, from then on), and stops sending to one whose
    /// carrier went away. Reads each such port's carrier.
    pub(super) fn sync_kernel_peers(&mut self) {
        let mut changed = false;
        for p in self.ports.iter_mut().flatten() {
            let Some(link) = p.link.as_mut().filter(|l| l.fast != FastPath::Off || l.uplink) else { continue };
            let carrier =
                std::fs::read_to_string(format!("/sys/class/net/{}/carrier", p.name)).is_ok_and(|c| c.trim() == "1");
            if carrier && !link.peer_ready {
                link.peer_ready = ports::ready_peer(&p.name, if link.uplink { FastPath::Xdp } else { link.fast });
                changed |= link.peer_ready;
            } else if !carrier && link.peer_ready {
                link.peer_ready = false;
                changed = true;
            }
        }
        if changed {
            self.sync_kernel_ports();
        }
    }

    /// True if some port runs a kernel executor.
    pub(super) fn fast_path_in_use(&self) -> bool {
        self.ports.iter().flatten().any(|p| fast_path_of(p) != FastPath::Off)
    }

    /// Writes every port's entry: the kernel takes a port's frames if its
    /// executor is on, it is up and nobody captures it; it sends to such
    /// ports whose program runs natively and whose veth peer takes
    /// redirected frames.
    pub(super) fn sync_kernel_ports(&self) {
        for (i, info) in self.snap.ports.iter().enumerate() {
            let id = PortId(i as u16);
            let r = match info {
                Some(info) => {
                    let (ingress, egress) = self.kernel_flags(id);
                    self.kernel.set_port(info, ingress, egress)
                }
                None => self.kernel.clear_port(id),
            };
            if let Err(e) = r {
                tracing::warn!("kernel fast path: port {}: {e}", self.port_name(id));
            }
        }
    }

    /// Whether the kernel takes port `id`'s frames, and the device it
    /// sends to it through, if it does. Either executor may send to a
    /// port of either: the xdp one needs the port's far end readied, and a
    /// port's own XDP program running natively.
    ///
    /// A tunnel's frames are taken by its uplink's program, which sends to
    /// it too (encapsulated, out of the uplink): on while the uplink is up
    /// and, for the xdp executor's redirects, its far end readied; off
    /// while the tunnel or its uplink is captured.
    pub(super) fn kernel_flags(&self, id: PortId) -> (bool, Option<u32>) {
        let Some(p) = self.ports.get(id.index()).and_then(Option::as_ref) else { return (false, None) };
        if let Role::Vxlan(vx) = &p.role {
            let up = self.ports.get(vx.uplink.index()).and_then(Option::as_ref).and_then(|u| u.link.as_ref());
            let up = up.filter(|l| l.down.is_none());
            let captured = self.captures.contains(&id) || self.captures.contains(&vx.uplink);
            let ingress = vx.fast != FastPath::Off && up.is_some() && !captured;
            return (ingress, up.filter(|l| ingress && l.peer_ready).map(|l| l.ifindex));
        }
        let link = p.link.as_ref().filter(|l| l.down.is_none() && !l.uplink);
        let ingress = link.is_some_and(|l| l.fast != FastPath::Off) && !self.captures.contains(&id);
        let native = link.is_some_and(|l| l.fast == FastPath::Tc)
            || p.xdp.as_ref().is_some_and(|x| x.attached_mode() == afxdp::XdpMode::Native);
        (ingress, link.filter(|l| ingress && native && l.peer_ready).map(|l| l.ifindex))
    }

    /// The executor of port `id`, if it has one.
    pub(super) fn executor(&self, id: PortId) -> Option<fastpath::Executor> {
        match fast_path_of(self.ports.get(id.index())?.as_ref()?) {
            // A link's executor is resolved when it opens: never Auto.
            FastPath::Off | FastPath::Auto => None,
            FastPath::Xdp => Some(fastpath::Executor::Xdp),
            FastPath::Tc => Some(fastpath::Executor::Tc),
        }
    }

    /// Mirrors into the kernel every bridge's MACs on local ports, where
    /// the FDB changed since the last time. Cheap when nothing changed.
    pub(super) fn sync_kernel_fdb(&mut self) {
        // MACs the programs forgot on a move: no longer in the kernel,
        // whatever we wrote; their bridges are mirrored again now.
        match self.kernel.take_forgotten() {
            Ok(gone) => {
                for k in gone {
                    self.mirror.macs.remove(&k);
                    self.mirror.epochs.remove(&k.0);
                }
            }
            Err(e) => tracing::warn!("kernel fast path: reading forgotten MACs: {e}"),
        }
        let in_use = self.fast_path_in_use();
        if !in_use && self.mirror.macs.is_empty() {
            return;
        }
        let mut wanted: HashMap<(BridgeId, MacAddr, Vid), (Dest, bool)> = HashMap::new();
        let mut changed: Vec<BridgeId> = Vec::new();
        for (i, b) in self.bridges.iter().enumerate() {
            let id = BridgeId(i as u16);
            let Some(b) = b else { continue };
            let epoch = b.fdb.epoch();
            if in_use && self.mirror.epochs.get(&id) == Some(&epoch) {
                continue;
            }
            changed.push(id);
            self.mirror.epochs.insert(id, epoch);
            if !in_use {
                continue;
            }
            for e in b.fdb.entries() {
                wanted.insert((id, e.mac, e.vid), (Dest { port: e.port, remote: e.remote }, e.is_static));
            }
        }
        // Bridges that are gone lose their entries too.
        let live: Vec<BridgeId> =
            self.bridges.iter().enumerate().filter(|(_, b)| b.is_some()).map(|(i, _)| BridgeId(i as u16)).collect();
        self.mirror.epochs.retain(|b, _| live.contains(b));
        let stale: Vec<(BridgeId, MacAddr, Vid)> = self
            .mirror
            .macs
            .keys()
            .filter(|k| !live.contains(&k.0) || (changed.contains(&k.0) && !wanted.contains_key(k)))
            .copied()
            .collect();
        for k in stale {
            self.mirror.macs.remove(&k);
            if let Err(e) = self.kernel.del_mac(k.0, k.1, k.2) {
                tracing::warn!("kernel fast path: removing {} vlan {}: {e}", k.1, k.2);
            }
        }
        for (k, (at, is_static)) in wanted {
            if self.mirror.macs.get(&k) == Some(&(at, is_static)) {
                continue;
            }
            match self.kernel.set_mac(k.0, k.1, k.2, at, is_static) {
                Ok(()) => {
                    self.mirror.macs.insert(k, (at, is_static));
                }
                Err(e) => tracing::warn!("kernel fast path: {} vlan {}: {e}", k.1, k.2),
            }
        }
    }

    /// Refreshes, in `bridge`'s FDB, the MACs the kernel saw send more
    /// recently than rvs did, so that aging keeps them.
    pub(super) fn pull_kernel_seen(&self, bridge: BridgeId, fdb: &Fdb, now: u32, aging: u32) {
        for (&(b, mac, vid), &(at, _)) in &self.mirror.macs {
            if b != bridge {
                continue;
            }
            let Ok(Some(seen)) = self.kernel.seen(b, mac, vid) else { continue };
            let seen = seen.min(now);
            if seen > 0 && now.saturating_sub(seen) < aging {
                fdb.refresh(mac, vid, at, seen);
            }
        }
    }
}

/// A port's executor setting: its link's, or a tunnel's own.
pub(super) fn fast_path_of(p: &Port) -> FastPath {
    match (&p.link, &p.role) {
        (Some(l), _) => l.fast,
        (None, Role::Vxlan(vx)) => vx.fast,
        _ => FastPath::Off,
    }
}

/// The tables, or why rvsd cannot start without them.
pub(super) fn kernel_tables() -> Result<KernelTables, String> {
    KernelTables::new(KERNEL_PORTS, KERNEL_MACS).map_err(|e| format!("creating the kernel fast path's maps: {e}"))
}
