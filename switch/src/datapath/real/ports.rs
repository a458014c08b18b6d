//! Opening and closing ports and uplinks: AF_XDP sockets and their XDP
//! program, taps, and the interfaces under them coming and going.

use super::*;

impl Dp {
    pub(super) fn remove_handles(&self, id: PortId, port: &Port) {
        let mut seen = Vec::new();
        for &(_, t, _) in &port.handles {
            if seen.contains(&t) {
                continue;
            }
            seen.push(t);
            let (done_tx, done_rx) = channel::bounded(1);
            if self.threads[t].tx.send(Command::RemovePort { id, done: done_tx }).is_ok() {
                let _ = done_rx.recv_timeout(Duration::from_secs(5));
            }
        }
    }

    /// Unpublishes port `id`, closes its handles and forgets its MACs.
    pub(super) fn remove_port(&mut self, id: PortId) {
        let Some(port) = self.ports[id.index()].take() else { return };
        self.publish();
        // A capture must not outlive its port: the id may be reused.
        for t in &self.threads {
            let _ = t.tx.send(Command::StopCapture { id });
        }
        self.remove_handles(id, &port);
        if let Some(b) = self.bridge(port.bridge) {
            b.fdb.forget_port(id);
            // The id goes to the next port, which has limits of its own.
            let _ = b.fdb.set_port_limit(id, None);
        }
        // Every handle on it is closed: a tap rvsd made goes with its port.
        if let Role::Tap { ifname, netns, created: true } = &port.role {
            if let Err(e) = rvs_dataplane::port::tap::tap_delete(ifname, netns.as_deref()) {
                tracing::warn!("port {}: removing the tap rvsd created: {e}", port.name);
            }
        }
        if let Role::Vxlan(vx) = &port.role {
            if !self.vtep_in_use(vx.cfg.local, vx.cfg.dstport, id) {
                if let Some(xdp) =
                    self.ports.get(vx.uplink.index()).and_then(Option::as_ref).and_then(|u| u.xdp.as_ref())
                {
                    let _ = xdp.remove_vtep(vx.cfg.local, vx.cfg.dstport);
                }
            }
        }
        drop(port); // detaches an XDP program
    }

    /// An AF_XDP port with its executor; the default one (`auto`: tc)
    /// falls back to none where the kernel cannot run it (no tcx before
    /// 6.6), said in the log and in `show`.
    pub(super) fn open_afxdp(&self, id: PortId, cfg: &PortConfig) -> DpResult<Port> {
        let fast = cfg.fast_path.resolve(cfg.kind);
        match self.open_xsk(id, &cfg.name, cfg.xdp_mode, cfg.queues, false, fast) {
            Err(e) if cfg.fast_path == FastPath::Auto && fast != FastPath::Off => {
                tracing::warn!("port {}: no {} executor ({e}); every frame goes through rvs", cfg.name, fast.name());
                self.open_xsk(id, &cfg.name, cfg.xdp_mode, cfg.queues, false, FastPath::Off)
            }
            r => r,
        }
    }

    /// AF_XDP sockets on every queue of `name`, spread over the threads,
    /// behind the redirect program (the VTEP-only one for an uplink, the
    /// xdp executor for a `--fast-path xdp` port).
    pub(super) fn open_xsk(
        &self,
        id: PortId,
        name: &str,
        mode: XdpMode,
        queues: Option<u32>,
        uplink: bool,
        fast: FastPath,
    ) -> DpResult<Port> {
        let ifindex = afxdp::iface::ifindex(name).map_err(|e| e.to_string())?;
        let attached = self.attach_xsk(id, name, mode, queues, uplink, fast)?;
        let mut port = Port {
            name: name.to_string(),
            bridge: None,
            kind: PortType::Afxdp,
            vlan: VlanMode::Access(Vid(1)),
            handles: Vec::new(),
            stats: Vec::new(),
            xdp: None,
            role: Role::Plain,
            link: Some(Link {
                ifindex,
                mode,
                queues,
                uplink,
                fast,
                // Readied once its carrier is up (Dp::sync_kernel_peers).
                peer_ready: false,
                tc: None,
                down: None,
                downs: 0,
            }),
        };
        self.hand_out(id, &mut port, attached);
        Ok(port)
    }

    /// Gives the opened sockets to their threads and the programs to `port`.
    pub(super) fn hand_out(&self, id: PortId, port: &mut Port, (xdp, opened, tc): Attached) {
        for (q, t, sock) in opened {
            let stats = Arc::new(PortStats::default());
            port.stats.push(stats.clone());
            port.handles.push((q, t, true));
            let lp = LocalPort { id, queue: q, port: Some(sock), rx: true, stats };
            let _ = self.threads[t].tx.send(Command::AddPort(lp));
        }
        port.xdp = Some(xdp);
        if let Some(link) = port.link.as_mut() {
            link.tc = tc;
        }
    }

    /// Attaches the program to `name` and opens a socket per queue, spread
    /// over the threads; nothing is handed to a thread yet.
    pub(super) fn attach_xsk(
        &self,
        id: PortId,
        name: &str,
        mode: XdpMode,
        queues: Option<u32>,
        uplink: bool,
        fast: FastPath,
    ) -> DpResult<Attached> {
        let mode = match mode {
            XdpMode::Auto => afxdp::XdpMode::Auto,
            XdpMode::Native => afxdp::XdpMode::Native,
            XdpMode::Generic => afxdp::XdpMode::Generic,
        };
        let available = afxdp::iface::rx_queues(name).map_err(|e| e.to_string())?;
        let queues = queues.unwrap_or(available);
        if queues == 0 || queues > available {
            return Err(format!("{name} has {available} rx queue(s); cannot open {queues}"));
        }
        self.check_rx_room(name, self.least_loaded(), queues)?;
        if fast == FastPath::Tc && !uplink {
            return self.attach_tc(id, name, mode, queues);
        }
        let xdp = match (uplink, fast) {
            (true, _) => XdpProgram::attach_uplink_fast(name, mode, queues, id, &self.kernel),
            (false, FastPath::Xdp) => XdpProgram::attach_fast(name, mode, queues, id, &self.kernel),
            (false, _) => XdpProgram::attach(name, mode, queues),
        }
        .map_err(|e| e.to_string())?;
        let mut opened: Vec<(u32, usize, Box<dyn DpPort>)> = Vec::new();
        let base = self.least_loaded();
        for q in 0..queues {
            // Spread queues over threads, starting with the least loaded.
            let t = (base + q as usize) % self.threads.len();
            opened.push((q, t, self.open_queue(name, &xdp, None, q, t)?));
        }
        Ok((xdp, opened, None))
    }

    /// The socket(s) of queue `q` of port `name` in thread `t`'s UMEM: one
    /// socket steered to by `xdp`; with a `tc` executor (`miss`), a
    /// receiving socket on the miss device and a transmit-only one on
    /// `name` itself (no XDP there: its host keeps GSO).
    pub(super) fn open_queue(
        &self,
        name: &str,
        xdp: &XdpProgram,
        miss: Option<&MissDevice>,
        q: u32,
        t: usize,
    ) -> DpResult<Box<dyn DpPort>> {
        let umem = &self.threads[t].umem;
        let Some(miss) = miss else {
            let sock = AfXdpPort::open(name, q, umem).map_err(|e| format!("{name} queue {q}: {e}"))?;
            sock.register(xdp).map_err(|e| format!("{name} queue {q}: {e}"))?;
            return Ok(Box::new(sock));
        };
        let inner = miss.inner_name().to_string();
        let rx = miss
            .in_private(|| AfXdpPort::open(&inner, q, umem))
            .map_err(|e| format!("port {name}: miss device queue {q}: {e}"))?;
        rx.register(xdp).map_err(|e| format!("port {name}: miss device queue {q}: {e}"))?;
        // Only sent through: no receive buffers.
        let cfg = XskConfig { fill_target: 0, ..XskConfig::default() };
        let tx = AfXdpPort::open_with(name, q, umem, cfg).map_err(|e| format!("{name} queue {q}: {e}"))?;
        Ok(Box::new(SplitPort::new(rx, tx)))
    }

    /// The `tc` executor on `name`: a miss device with one queue per port
    /// queue, the redirect program and a receiving socket per queue at its
    /// far end, a transmit-only socket per queue on `name` itself (no XDP
    /// there: its host keeps GSO), and the program at `name`'s tc ingress.
    fn attach_tc(&self, id: PortId, name: &str, mode: afxdp::XdpMode, queues: u32) -> DpResult<Attached> {
        let ifindex = afxdp::iface::ifindex(name).map_err(|e| e.to_string())?;
        let mtu = afxdp::iface::mtu(name).map_err(|e| e.to_string())?;
        let miss = MissDevice::create(ifindex, queues, mtu).map_err(|e| format!("port {name}: {e}"))?;
        let inner = miss.inner_name().to_string();
        let xdp =
            miss.in_private(|| XdpProgram::attach(&inner, mode, queues)).map_err(|e| format!("port {name}: {e}"))?;
        let mut opened: Vec<(u32, usize, Box<dyn DpPort>)> = Vec::new();
        let base = self.least_loaded();
        for q in 0..queues {
            let t = (base + q as usize) % self.threads.len();
            opened.push((q, t, self.open_queue(name, &xdp, Some(&miss), q, t)?));
        }
        let prog = TcProgram::attach_fast(name, id, &self.kernel, miss.outer_ifindex()).map_err(|e| e.to_string())?;
        Ok((xdp, opened, Some(TcHook { _prog: prog, miss })))
    }

    /// Takes AF_XDP ports whose interface went away down (counted), and
    /// brings back those whose interface is there again. True if anything
    /// changed.
    pub(super) fn watch_links(&mut self) -> bool {
        let mut changed = false;
        for i in 0..self.ports.len() {
            let Some(port) = self.ports[i].as_ref() else { continue };
            let Some(link) = port.link.as_ref() else { continue };
            let now_index = afxdp::iface::ifindex(&port.name).ok();
            let id = PortId(i as u16);
            match (&link.down, now_index) {
                (None, Some(ix)) if ix == link.ifindex => {}
                (None, _) => {
                    let mut port = self.ports[i].take().expect("checked above");
                    self.remove_handles(id, &port);
                    port.handles.clear();
                    // The links died with the interface, or detach now.
                    port.xdp = None;
                    // MACs learned behind it are gone with it.
                    if let Some(b) = self.bridge(port.bridge) {
                        b.fdb.flush(Some(id));
                    }
                    let link = port.link.as_mut().expect("checked above");
                    link.tc = None;
                    link.down = Some("interface gone".into());
                    link.downs += 1;
                    tracing::warn!(target: crate::obs::log::LINK, "interface {} went away; port down until it returns", port.name);
                    self.ports[i] = Some(port);
                    changed = true;
                }
                (Some(_), Some(ix)) => {
                    let (mode, queues, uplink, fast) = (link.mode, link.queues, link.uplink, link.fast);
                    let name = port.name.clone();
                    let Ok(attached) = self.attach_xsk(id, &name, mode, queues, uplink, fast) else { continue };
                    if uplink {
                        for vx in self.ports.iter().flatten().filter_map(|p| match &p.role {
                            Role::Vxlan(vx) if vx.uplink == id => Some(vx),
                            _ => None,
                        }) {
                            let _ = attached.0.add_vtep(vx.cfg.local, vx.cfg.dstport);
                        }
                    }
                    let info = if uplink { netlink::link_info(&name).ok() } else { None };
                    let mut port = self.ports[i].take().expect("checked above");
                    self.hand_out(id, &mut port, attached);
                    if let (Role::Uplink { mtu, mac }, Some((m, a))) = (&mut port.role, info) {
                        (*mtu, *mac) = (m, a);
                    }
                    let link = port.link.as_mut().expect("checked above");
                    (link.ifindex, link.down) = (ix, None);
                    link.peer_ready = false;
                    tracing::info!(target: crate::obs::log::LINK, "interface {name} is back; port up again");
                    self.ports[i] = Some(port);
                    changed = true;
                }
                (Some(_), None) => {}
            }
        }
        changed
    }

    pub(super) fn open_tap(&self, id: PortId, cfg: &PortConfig) -> DpResult<Port> {
        let tap = TapPort::open(cfg.device(), cfg.netns.as_deref()).map_err(|e| e.to_string())?;
        // Made by this open, or by an earlier rvsd (kept over restarts).
        let created = tap.created() || cfg.tap_created;
        let rx_thread = self.least_loaded();
        let mut handles = Vec::new();
        for t in 0..self.threads.len() {
            let h = if t == rx_thread { None } else { Some(tap.try_clone().map_err(|e| e.to_string())?) };
            handles.push(h);
        }
        let mut port = Port {
            name: cfg.name.clone(),
            bridge: None,
            kind: PortType::Tap,
            vlan: VlanMode::Access(Vid(1)),
            handles: Vec::new(),
            stats: Vec::new(),
            xdp: None,
            role: Role::Tap { ifname: cfg.device().to_string(), netns: cfg.netns.clone(), created },
            link: None,
        };
        let mut tap = Some(tap);
        for (t, h) in handles.into_iter().enumerate() {
            let (handle, rx) = match h {
                Some(clone) => (clone, false),
                None => (tap.take().expect("the tap is used once"), true),
            };
            let stats = Arc::new(PortStats::default());
            port.stats.push(stats.clone());
            port.handles.push((0, t, rx));
            let lp = LocalPort { id, queue: 0, port: Some(Box::new(handle)), rx, stats };
            let _ = self.threads[t].tx.send(Command::AddPort(lp));
        }
        Ok(port)
    }

    /// The body of [`Datapath::add_port`].
    pub(super) fn open_port(&mut self, bridge: &str, cfg: &PortConfig) -> DpResult<()> {
        let bid = self.bridge_id(bridge)?;
        if self.port_id(&cfg.name).is_ok() {
            return Err(format!("port \"{}\" already exists", cfg.name));
        }
        let id = self.free_port_id()?;
        let fdb = &self.bridges[bid.index()].as_ref().expect("bridge_id found it").fdb;
        fdb.set_port_limit(id, cfg.max_macs).map_err(|e| format!("port {}: {e}", cfg.name))?;
        let mut port = match cfg.kind {
            PortType::Afxdp => self.open_afxdp(id, cfg)?,
            PortType::Tap => self.open_tap(id, cfg)?,
            PortType::Vxlan => self.open_vxlan(id, cfg)?,
            PortType::Internal => self.open_internal(id, bid, cfg)?,
        };
        port.bridge = Some(bid);
        port.vlan = vlan_mode(&cfg.vlan);
        self.ports[id.index()] = Some(port);
        self.resolve_remotes_now(id);
        self.publish();
        Ok(())
    }

    /// The body of [`Datapath::add_uplink`].
    pub(super) fn open_uplink(&mut self, up: &UplinkConfig) -> DpResult<()> {
        if self.port_id(&up.name).is_ok() {
            return Err(format!("{:?} is already in use as a port or uplink", up.name));
        }
        let (mtu, mac) = netlink::link_info(&up.name).map_err(|e| format!("uplink {}: {e}", up.name))?;
        let id = self.free_port_id()?;
        let mut port = self.open_xsk(id, &up.name, up.xdp_mode, up.queues, true, FastPath::Off)?;
        port.bridge = None;
        port.role = Role::Uplink { mac, mtu };
        self.ports[id.index()] = Some(port);
        self.publish();
        Ok(())
    }

    /// The body of [`Datapath::del_uplink`].
    pub(super) fn close_uplink(&mut self, name: &str) -> DpResult<()> {
        let id = self.port_id(name).map_err(|_| format!("unknown uplink {name:?}"))?;
        if !matches!(self.ports[id.index()].as_ref().map(|p| &p.role), Some(Role::Uplink { .. })) {
            return Err(format!("{name:?} is not an uplink"));
        }
        if let Some(user) = self.ports.iter().flatten().find(|p| matches!(&p.role, Role::Vxlan(vx) if vx.uplink == id))
        {
            return Err(format!("uplink {name:?} carries VXLAN port {:?}; delete that first", user.name));
        }
        self.remove_port(id);
        Ok(())
    }
}

pub(super) fn port_state(p: &Port) -> String {
    match p.link.as_ref().and_then(|l| l.down.as_ref()) {
        Some(why) => format!("down: {why}"),
        None => "up".into(),
    }
}

pub(super) fn xdp_mode_name(p: &Port) -> String {
    if p.link.as_ref().is_some_and(|l| l.fast == FastPath::Tc) {
        return String::new(); // no XDP on the port itself
    }
    match p.xdp.as_ref().map(XdpProgram::attached_mode) {
        Some(afxdp::XdpMode::Generic) => "generic".into(),
        Some(_) => "native".into(),
        None => String::new(),
    }
}

/// For a kernel executor: readies the far end of the port's veth to take
/// frames the xdp executor redirects to it (GRO on, so it has NAPI;
/// without it the kernel drops them). False if that failed: the kernel
/// then sends nothing to the port, and rvs's threads carry its frames.
pub(super) fn ready_peer(name: &str, fast: FastPath) -> bool {
    if fast == FastPath::Off {
        return false;
    }
    match crate::kernel::peer::enable_peer_gro(name) {
        Ok(crate::kernel::peer::PeerGro::Enabled { netns, peer }) => {
            let ns = if netns.is_empty() { "this namespace".to_string() } else { netns };
            tracing::info!("port {name}: GRO on at its veth peer {peer} ({ns}), for the kernel executors");
            true
        }
        Ok(crate::kernel::peer::PeerGro::NotVeth) => true,
        Err(e) => {
            tracing::warn!("port {name}: the kernel will not send to it: {e}");
            false
        }
    }
}

pub(super) fn vlan_mode(v: &PortVlan) -> VlanMode {
    match v {
        PortVlan::Access { vlan } => VlanMode::Access(Vid(*vlan)),
        PortVlan::Trunk { vlans, native } => {
            VlanMode::Trunk { allowed: vlans.iter().copied().map(Vid).collect(), native: native.map(Vid) }
        }
    }
}
