//! The real packet path behind [`Datapath`]: polling threads, their frame
//! pools (one UMEM each), the ports' sockets and XDP programs.
//!
//! Everything here runs on the control thread. A change opens what it needs
//! (sockets, taps) first, so a failure leaves nothing half-done, then hands
//! port queues to their polling threads and publishes a new snapshot. A
//! removal unpublishes first and waits until every thread runs the new
//! snapshot, so no thread can still learn or send on a port being closed.
//!
//! Uplinks are AF_XDP ports in no bridge whose XDP program takes only VXLAN
//! frames for local VTEPs. A VXLAN port has no I/O of its own: its frames
//! leave through its uplink, toward next hops resolved from the kernel's
//! routes and neighbours, re-checked every tick.

use crate::datapath::{CaptureRing, Datapath, Direction, DpResult};
use crate::netlink;
use crossbeam::channel::{self, Sender};
use rvs_dataplane::fdb::{Fdb, Learn, NO_REMOTE};
use rvs_dataplane::flow_cache::FlowKey;
use rvs_dataplane::pipeline::Action;
use rvs_dataplane::pipeline::{self, TagEdit};
use rvs_dataplane::pmd::{Command, Handoff, LocalPort, Pmd, PmdOptions};
use rvs_dataplane::port::afxdp::{self, AfXdpPort, Umem, XdpProgram};
use rvs_dataplane::port::tap::TapPort;
use rvs_dataplane::port::Pool;
use rvs_dataplane::snapshot::{
    BridgeId, BridgeInfo, PortId, PortInfo, PortKind, Remote, Snapshot, Tunnel, VlanMode, Vtep, NO_BRIDGE, TX_ANY,
};
use rvs_dataplane::stats::{DropReason, PortCounters, PortStats, ThreadStats};
use rvs_dataplane::wire::vxlan::{OuterTemplate, OVERHEAD_V4, OVERHEAD_V6};
use rvs_dataplane::wire::MacAddr;
use rvs_dataplane::wire::{vlan, vxlan, EthernetFrame};
use rvs_proto::config::{BridgeConfig, PortConfig, PortType, PortVlan, UplinkConfig, VxlanConfig, XdpMode};
use rvs_proto::status::{
    FdbEntryInfo, FlowInfo, PortStatsInfo, PortStatus, RemoteStatus, ThreadInfo, TraceOutput, TraceResult, TraceVxlan,
    UplinkStatus,
};
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Frames in each polling thread's pool (2 KiB each).
const POOL_FRAMES: u32 = 16384;
/// Parcels for frames crossing between threads.
const HANDOFF_PARCELS: usize = 4096;
/// Frames a capture buffers before it counts drops.
const CAPTURE_RING: usize = 4096;
/// How long a configuration change waits for the kernel to resolve the
/// next hop toward a new remote VTEP (a veth answers in well under 1 ms).
const RESOLVE_WAIT: Duration = Duration::from_millis(100);

struct Thread {
    core: usize,
    tx: Sender<Command>,
    stats: Arc<ThreadStats>,
    umem: Arc<Umem>,
    join: Option<JoinHandle<()>>,
}

struct Bridge {
    name: String,
    fdb: Arc<Fdb>,
    aging_secs: u32,
}

struct Port {
    name: String,
    bridge: BridgeId,
    kind: PortType,
    vlan: VlanMode,
    /// (queue, thread index) of every handle, receiving or not.
    handles: Vec<(u32, usize, bool)>,
    /// Counters per thread holding a handle.
    stats: Vec<Arc<PortStats>>,
    xdp: Option<XdpProgram>,
    role: Role,
    /// For AF_XDP ports and uplinks: the interface under them.
    link: Option<Link>,
}

/// The interface under an AF_XDP port, watched so the port goes down when
/// it disappears and comes back when an interface of that name returns.
struct Link {
    ifindex: u32,
    mode: XdpMode,
    queues: Option<u32>,
    uplink: bool,
    /// Why the port is down, if it is.
    down: Option<String>,
    /// How many times it went down.
    downs: u64,
}

/// An XDP program and the sockets opened on its interface's queues.
type Attached = (XdpProgram, Vec<(u32, usize, AfXdpPort)>);

/// What a port does besides switching frames as they are.
enum Role {
    Plain,
    Uplink { mac: MacAddr, mtu: u32 },
    Vxlan(Vx),
}

/// A VXLAN port's run-time state.
struct Vx {
    cfg: VxlanConfig,
    uplink: PortId,
    remotes: Vec<RemoteState>,
    /// MACs installed from peers' advertisements (mac, vlan).
    advertised: Vec<(MacAddr, u16)>,
}

/// A remote VTEP and what we know of the way to it.
struct RemoteState {
    ip: IpAddr,
    next_hop: Option<MacAddr>,
    outer: Option<OuterTemplate>,
}

/// Polling threads and the ports they serve.
pub struct Dp {
    start: Instant,
    threads: Vec<Thread>,
    bridges: Vec<Option<Bridge>>,
    ports: Vec<Option<Port>>,
    generation: u64,
    /// The snapshot the polling threads run (for traces).
    snap: Arc<Snapshot>,
}

impl Dp {
    /// Starts one polling thread per core in `cores`, each pinned to it.
    pub fn start(cores: &[usize], opts: PmdOptions) -> Result<Dp, String> {
        let available: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().iter().map(|c| c.id).collect();
        if cores.is_empty() {
            return Err("--cores lists no core".into());
        }
        if cores.len() > 64 {
            return Err("--cores lists more than 64 cores".into());
        }
        for c in cores {
            if !available.contains(c) {
                return Err(format!("core {c} is not available to rvsd (available: {available:?})"));
            }
        }
        let start = Instant::now();
        let handoff = Handoff::new(cores.len(), HANDOFF_PARCELS);
        let mut threads = Vec::new();
        for (i, &core) in cores.iter().enumerate() {
            let pool = Pool::new(POOL_FRAMES).map_err(|e| format!("allocating frame memory for core {core}: {e}"))?;
            let umem = Umem::new(pool.region().clone()).map_err(|e| format!("preparing UMEM for core {core}: {e}"))?;
            let (tx, rx) = channel::unbounded();
            let stats = Arc::new(ThreadStats::default());
            let pmd = Pmd::new(i as u8, pool, rx, handoff.clone(), stats.clone(), start, opts);
            let join = std::thread::Builder::new()
                .name(format!("pmd{core}"))
                .spawn(move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        tracing::warn!("could not pin the polling thread to core {core}");
                    }
                    pmd.run();
                })
                .map_err(|e| format!("starting the polling thread for core {core}: {e}"))?;
            threads.push(Thread { core, tx, stats, umem, join: Some(join) });
        }
        Ok(Dp { start, threads, bridges: Vec::new(), ports: Vec::new(), generation: 0, snap: Arc::default() })
    }

    /// Stops every polling thread and closes every port (XDP programs are
    /// detached; tap devices stay).
    pub fn shutdown(&mut self) {
        for t in &self.threads {
            let _ = t.tx.send(Command::Stop);
        }
        for t in &mut self.threads {
            if let Some(j) = t.join.take() {
                let _ = j.join();
            }
        }
        self.ports.clear();
    }

    fn now(&self) -> u32 {
        self.start.elapsed().as_secs() as u32
    }

    fn bridge_id(&self, name: &str) -> DpResult<BridgeId> {
        self.bridges
            .iter()
            .position(|b| b.as_ref().is_some_and(|b| b.name == name))
            .map(|i| i as BridgeId)
            .ok_or_else(|| format!("unknown bridge \"{name}\""))
    }

    fn port_id(&self, name: &str) -> DpResult<PortId> {
        self.ports
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.name == name))
            .map(|i| i as PortId)
            .ok_or_else(|| format!("unknown port \"{name}\""))
    }

    fn port_name(&self, id: PortId) -> String {
        self.ports.get(id as usize).and_then(Option::as_ref).map_or_else(|| format!("#{id}"), |p| p.name.clone())
    }

    /// Builds and sends a snapshot of the current configuration, and waits
    /// until every thread runs it.
    fn publish(&mut self) {
        self.generation += 1;
        let ports: Vec<Option<PortInfo>> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.as_ref().map(|p| PortInfo {
                    id: i as PortId,
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
                        ports.iter().flatten().filter(|p| p.bridge == i as BridgeId).collect();
                    BridgeInfo::new(i as BridgeId, &b.name, b.fdb.clone(), &members)
                })
            })
            .collect();
        let tx_thread = self
            .ports
            .iter()
            .map(|p| match p {
                Some(p) if p.kind == PortType::Tap || p.kind == PortType::Vxlan => TX_ANY,
                Some(p) => p.handles.first().map_or(TX_ANY, |h| h.1 as u8),
                None => TX_ANY,
            })
            .collect();
        let vteps = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p.as_ref().map(|p| &p.role) {
                Some(Role::Vxlan(vx)) => {
                    Some(Vtep { local: vx.cfg.local, dst_port: vx.cfg.dstport, vni: vx.cfg.vni, port: i as PortId })
                }
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
    fn port_kind(&self, p: &Port) -> PortKind {
        match &p.role {
            Role::Plain => PortKind::Plain,
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

    /// The address of remote `r` of tunnel port `port`, if it is one.
    fn remote_ip(&self, port: PortId, r: u16) -> Option<String> {
        match self.ports.get(port as usize).and_then(Option::as_ref).map(|p| &p.role) {
            Some(Role::Vxlan(vx)) if r != NO_REMOTE => vx.remotes.get(usize::from(r)).map(|x| x.ip.to_string()),
            _ => None,
        }
    }

    /// What sending a traced frame to port `out` (toward remote `remote`
    /// of a tunnel, or every remote) does: the same checks, tag edit and
    /// encapsulation choices the polling loop makes.
    fn trace_output(
        &self,
        snap: &Snapshot,
        out: PortId,
        remote: u16,
        v: &pipeline::Verdict,
        frame: &[u8],
    ) -> Vec<TraceOutput> {
        let name = self.port_name(out);
        let Some(info) = snap.port(out) else {
            return vec![TraceOutput { port: name, dropped: Some("port_down".into()), ..Default::default() }];
        };
        if !info.vlan.carries(v.vid) {
            return vec![TraceOutput { port: name, dropped: Some("vlan_filtered".into()), ..Default::default() }];
        }
        let edit = pipeline::tag_edit(v.tagged, v.vid, info.vlan.egress_tagged(v.vid));
        let tag = match edit {
            TagEdit::Keep => "none".to_string(),
            TagEdit::Push(vid) => format!("push {vid}"),
            TagEdit::Pop => "pop".to_string(),
            TagEdit::Rewrite(vid) => format!("rewrite {vid}"),
        };
        let PortKind::Vxlan(t) = &info.kind else {
            return vec![TraceOutput { port: name, tag, ..Default::default() }];
        };
        // The frame as it will be encapsulated, for its length and hash.
        let mut buf = vec![0u8; 4];
        buf.extend_from_slice(frame);
        let (off, len) = match edit {
            TagEdit::Push(vid) => (vlan::push(&mut buf, 4, frame.len(), vid).unwrap_or(4), frame.len() + 4),
            TagEdit::Pop => (vlan::pop(&mut buf, 4, frame.len()).unwrap_or(4), frame.len().saturating_sub(4)),
            TagEdit::Rewrite(vid) => {
                vlan::set_vid(&mut buf[4..], vid);
                (4, frame.len())
            }
            TagEdit::Keep => (4, frame.len()),
        };
        let inner = &buf[off..off + len];
        if len as u32 > t.max_inner_frame {
            return vec![TraceOutput { port: name, tag, dropped: Some("tunnel_mtu".into()), ..Default::default() }];
        }
        let sport = vxlan::src_port(vxlan::flow_hash(inner));
        let remotes: Vec<usize> = match remote {
            NO_REMOTE => (0..t.remotes.len()).collect(),
            r => vec![usize::from(r)],
        };
        let ttl = match self.ports.get(out as usize).and_then(Option::as_ref).map(|p| &p.role) {
            Some(Role::Vxlan(vx)) => vx.cfg.ttl,
            _ => 0,
        };
        let src_mac = match self.ports.get(t.uplink as usize).and_then(Option::as_ref).map(|p| &p.role) {
            Some(Role::Uplink { mac, .. }) => mac.to_string(),
            _ => String::new(),
        };
        remotes
            .into_iter()
            .map(|r| {
                let rem = t.remotes.get(r);
                TraceOutput {
                    port: name.clone(),
                    tag: tag.clone(),
                    vxlan: rem.map(|x| TraceVxlan {
                        remote: x.ip.to_string(),
                        local: t.local.to_string(),
                        uplink: self.port_name(t.uplink),
                        src_mac: src_mac.clone(),
                        next_hop_mac: self.next_hop_of(out, r).map(|m| m.to_string()),
                        vni: t.vni,
                        udp_src: sport,
                        udp_dst: t.dst_port,
                        ttl,
                    }),
                    dropped: match rem {
                        Some(x) if x.outer.is_some() => None,
                        _ => Some("no_neighbor".into()),
                    },
                }
            })
            .collect()
    }

    fn next_hop_of(&self, port: PortId, r: usize) -> Option<MacAddr> {
        match self.ports.get(port as usize).and_then(Option::as_ref).map(|p| &p.role) {
            Some(Role::Vxlan(vx)) => vx.remotes.get(r).and_then(|x| x.next_hop),
            _ => None,
        }
    }

    /// The uplink's MTU, if `id` is an uplink.
    fn uplink_mtu(&self, id: PortId) -> Option<u32> {
        match self.ports.get(id as usize).and_then(Option::as_ref).map(|p| &p.role) {
            Some(Role::Uplink { mtu, .. }) => Some(*mtu),
            _ => None,
        }
    }

    /// Largest inner frame (Ethernet header included) that fits the uplink
    /// once encapsulated: the outer IP packet must fit the MTU.
    fn max_inner_frame(&self, vx: &Vx) -> u32 {
        let mtu = self.uplink_mtu(vx.uplink).unwrap_or(0);
        let outer_ip = if vx.cfg.local.is_ipv4() { OVERHEAD_V4 } else { OVERHEAD_V6 } - 14;
        mtu.saturating_sub(outer_ip as u32)
    }

    /// Finds the next hop toward every remote of tunnel `id` and rebuilds
    /// the outer headers; starts the kernel's resolution where it has none.
    /// Returns true if anything changed.
    fn resolve_remotes(&mut self, id: PortId) -> bool {
        let Some(Some(port)) = self.ports.get(id as usize) else { return false };
        let Role::Vxlan(vx) = &port.role else { return false };
        let Some(Some(up)) = self.ports.get(vx.uplink as usize) else { return false };
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
        let Some(Some(port)) = self.ports.get_mut(id as usize) else { return false };
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
    fn resolve_remotes_now(&mut self, id: PortId) {
        self.resolve_remotes(id);
        let end = Instant::now() + RESOLVE_WAIT;
        while self.has_unresolved(id) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
            self.resolve_remotes(id);
        }
    }

    fn has_unresolved(&self, id: PortId) -> bool {
        matches!(self.ports.get(id as usize), Some(Some(Port { role: Role::Vxlan(vx), .. }))
            if vx.remotes.iter().any(|r| r.outer.is_none()))
    }

    /// The uplink that has `addr` configured.
    fn uplink_with(&self, addr: IpAddr) -> DpResult<PortId> {
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(p @ Port { role: Role::Uplink { .. }, .. }) = p {
                if netlink::interface_addrs(&p.name).is_ok_and(|a| a.contains(&addr)) {
                    return Ok(i as PortId);
                }
            }
        }
        Err(format!(
            "local address {addr} is not configured on any uplink (add it to the underlay interface, \
             and the interface with `rvsctl uplink add IFACE`)"
        ))
    }

    /// True if a VXLAN port other than `except` listens on (`local`, `port`).
    fn vtep_in_use(&self, local: IpAddr, port: u16, except: PortId) -> bool {
        self.ports.iter().enumerate().any(|(i, p)| {
            i != except as usize
                && matches!(p.as_ref().map(|p| &p.role), Some(Role::Vxlan(vx)) if vx.cfg.local == local && vx.cfg.dstport == port)
        })
    }

    fn free_port_id(&mut self) -> DpResult<PortId> {
        let id = match self.ports.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.ports.len() < 4096 => {
                self.ports.push(None);
                self.ports.len() - 1
            }
            None => return Err("too many ports (4096)".into()),
        };
        Ok(id as PortId)
    }

    fn bridge_name(&self, id: BridgeId) -> &str {
        self.bridges.get(id as usize).and_then(Option::as_ref).map_or("", |b| b.name.as_str())
    }

    fn open_vxlan(&self, id: PortId, cfg: &PortConfig) -> DpResult<Port> {
        let vcfg =
            cfg.vxlan.clone().ok_or_else(|| format!("port {:?}: a VXLAN port needs its tunnel settings", cfg.name))?;
        let uplink = self.uplink_with(vcfg.local)?;
        let up = self.ports[uplink as usize].as_ref().expect("uplink_with found it");
        if let Some(xdp) = &up.xdp {
            xdp.add_vtep(vcfg.local, vcfg.dstport)
                .map_err(|e| format!("steering VTEP {}:{} on {}: {e}", vcfg.local, vcfg.dstport, up.name))?;
        }
        let mut port = Port {
            name: cfg.name.clone(),
            bridge: 0,
            kind: PortType::Vxlan,
            vlan: VlanMode::Access(1),
            handles: Vec::new(),
            stats: Vec::new(),
            xdp: None,
            link: None,
            role: Role::Vxlan(Vx {
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

    /// The thread with the fewest receive queues.
    fn least_loaded(&self) -> usize {
        let mut load = vec![0usize; self.threads.len()];
        for p in self.ports.iter().flatten() {
            for &(_, t, rx) in &p.handles {
                if rx {
                    load[t] += 1;
                }
            }
        }
        (0..load.len()).min_by_key(|&i| (load[i], i)).unwrap_or(0)
    }

    fn remove_handles(&self, id: PortId, port: &Port) {
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
    fn remove_port(&mut self, id: PortId) {
        let Some(port) = self.ports[id as usize].take() else { return };
        self.publish();
        // A capture must not outlive its port: the id may be reused.
        for t in &self.threads {
            let _ = t.tx.send(Command::StopCapture { id });
        }
        self.remove_handles(id, &port);
        if let Some(b) = self.bridges.get(port.bridge as usize).and_then(Option::as_ref) {
            b.fdb.forget_port(id);
        }
        if let Role::Vxlan(vx) = &port.role {
            if !self.vtep_in_use(vx.cfg.local, vx.cfg.dstport, id) {
                if let Some(xdp) =
                    self.ports.get(vx.uplink as usize).and_then(Option::as_ref).and_then(|u| u.xdp.as_ref())
                {
                    let _ = xdp.remove_vtep(vx.cfg.local, vx.cfg.dstport);
                }
            }
        }
        drop(port); // detaches an XDP program
    }

    fn open_afxdp(&self, id: PortId, cfg: &PortConfig) -> DpResult<Port> {
        self.open_xsk(id, &cfg.name, cfg.xdp_mode, cfg.queues, false)
    }

    /// AF_XDP sockets on every queue of `name`, spread over the threads,
    /// behind the redirect program (or the VTEP-only one for an uplink).
    fn open_xsk(&self, id: PortId, name: &str, mode: XdpMode, queues: Option<u32>, uplink: bool) -> DpResult<Port> {
        let ifindex = afxdp::iface::ifindex(name).map_err(|e| e.to_string())?;
        let attached = self.attach_xsk(name, mode, queues, uplink)?;
        let mut port = Port {
            name: name.to_string(),
            bridge: 0,
            kind: PortType::Afxdp,
            vlan: VlanMode::Access(1),
            handles: Vec::new(),
            stats: Vec::new(),
            xdp: None,
            role: Role::Plain,
            link: Some(Link { ifindex, mode, queues, uplink, down: None, downs: 0 }),
        };
        self.hand_out(id, &mut port, attached);
        Ok(port)
    }

    /// Gives the opened sockets to their threads and the program to `port`.
    fn hand_out(&self, id: PortId, port: &mut Port, (xdp, opened): Attached) {
        for (q, t, sock) in opened {
            let stats = Arc::new(PortStats::default());
            port.stats.push(stats.clone());
            port.handles.push((q, t, true));
            let lp = LocalPort { id, queue: q, port: Some(Box::new(sock)), rx: true, stats };
            let _ = self.threads[t].tx.send(Command::AddPort(lp));
        }
        port.xdp = Some(xdp);
    }

    /// Attaches the program to `name` and opens a socket per queue, spread
    /// over the threads; nothing is handed to a thread yet.
    fn attach_xsk(&self, name: &str, mode: XdpMode, queues: Option<u32>, uplink: bool) -> DpResult<Attached> {
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
        let xdp = match uplink {
            true => XdpProgram::attach_uplink(name, mode, queues),
            false => XdpProgram::attach(name, mode, queues),
        }
        .map_err(|e| e.to_string())?;
        let mut opened = Vec::new();
        let base = self.least_loaded();
        for q in 0..queues {
            // Spread queues over threads, starting with the least loaded.
            let t = (base + q as usize) % self.threads.len();
            let sock = AfXdpPort::open(name, q, &self.threads[t].umem).map_err(|e| format!("{name} queue {q}: {e}"))?;
            sock.register(&xdp).map_err(|e| format!("{name} queue {q}: {e}"))?;
            opened.push((q, t, sock));
        }
        Ok((xdp, opened))
    }

    /// Takes AF_XDP ports whose interface went away down (counted), and
    /// brings back those whose interface is there again. True if anything
    /// changed.
    fn watch_links(&mut self) -> bool {
        let mut changed = false;
        for i in 0..self.ports.len() {
            let Some(port) = self.ports[i].as_ref() else { continue };
            let Some(link) = port.link.as_ref() else { continue };
            let now_index = afxdp::iface::ifindex(&port.name).ok();
            let id = i as PortId;
            match (&link.down, now_index) {
                (None, Some(ix)) if ix == link.ifindex => {}
                (None, _) => {
                    let mut port = self.ports[i].take().expect("checked above");
                    self.remove_handles(id, &port);
                    port.handles.clear();
                    port.xdp = None; // the link died with the interface, or detaches now
                                     // MACs learned behind it are gone with it.
                    if let Some(b) = self.bridges.get(port.bridge as usize).and_then(Option::as_ref) {
                        b.fdb.flush(Some(id));
                    }
                    let link = port.link.as_mut().expect("checked above");
                    link.down = Some("interface gone".into());
                    link.downs += 1;
                    tracing::warn!(target: crate::log::LINK, "interface {} went away; port down until it returns", port.name);
                    self.ports[i] = Some(port);
                    changed = true;
                }
                (Some(_), Some(ix)) => {
                    let (mode, queues, uplink) = (link.mode, link.queues, link.uplink);
                    let name = port.name.clone();
                    let Ok(attached) = self.attach_xsk(&name, mode, queues, uplink) else { continue };
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
                    tracing::info!(target: crate::log::LINK, "interface {name} is back; port up again");
                    self.ports[i] = Some(port);
                    changed = true;
                }
                (Some(_), None) => {}
            }
        }
        changed
    }

    fn open_tap(&self, id: PortId, cfg: &PortConfig) -> DpResult<Port> {
        let tap = TapPort::open(&cfg.name, cfg.netns.as_deref()).map_err(|e| e.to_string())?;
        let rx_thread = self.least_loaded();
        let mut handles = Vec::new();
        for t in 0..self.threads.len() {
            let h = if t == rx_thread { None } else { Some(tap.try_clone().map_err(|e| e.to_string())?) };
            handles.push(h);
        }
        let mut port = Port {
            name: cfg.name.clone(),
            bridge: 0,
            kind: PortType::Tap,
            vlan: VlanMode::Access(1),
            handles: Vec::new(),
            stats: Vec::new(),
            xdp: None,
            role: Role::Plain,
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
}

fn port_state(p: &Port) -> String {
    match p.link.as_ref().and_then(|l| l.down.as_ref()) {
        Some(why) => format!("down: {why}"),
        None => "up".into(),
    }
}

fn xdp_mode_name(p: &Port) -> String {
    match p.xdp.as_ref().map(XdpProgram::attached_mode) {
        Some(afxdp::XdpMode::Generic) => "generic".into(),
        Some(_) => "native".into(),
        None => String::new(),
    }
}

fn vlan_mode(v: &PortVlan) -> VlanMode {
    match v {
        PortVlan::Access { vlan } => VlanMode::Access(*vlan),
        PortVlan::Trunk { vlans, native } => {
            VlanMode::Trunk { allowed: vlans.iter().copied().collect(), native: *native }
        }
    }
}

impl Drop for Dp {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Datapath for Dp {
    fn add_bridge(&mut self, br: &BridgeConfig) -> DpResult<()> {
        if self.bridge_id(&br.name).is_ok() {
            return Err(format!("bridge \"{}\" already exists", br.name));
        }
        let b = Bridge { name: br.name.clone(), fdb: Arc::new(Fdb::new(br.max_macs)), aging_secs: br.aging_secs };
        match self.bridges.iter().position(Option::is_none) {
            Some(i) => self.bridges[i] = Some(b),
            None if self.bridges.len() < usize::from(u16::MAX) => self.bridges.push(Some(b)),
            None => return Err("too many bridges".into()),
        }
        self.publish();
        Ok(())
    }

    fn set_bridge(&mut self, br: &BridgeConfig) -> DpResult<()> {
        let id = self.bridge_id(&br.name)?;
        let b = self.bridges[id as usize].as_mut().expect("bridge_id found it");
        b.aging_secs = br.aging_secs;
        if br.max_macs <= b.fdb.capacity_limit() {
            b.fdb.set_limit(br.max_macs);
            return Ok(());
        }
        // A larger limit needs a larger table: carry the entries over.
        let fdb = Arc::new(Fdb::new(br.max_macs));
        for e in b.fdb.entries() {
            if e.is_static {
                fdb.add_static(e.mac, e.vid, e.port, e.last_seen);
            } else {
                fdb.learn(e.mac, e.vid, e.port, e.last_seen);
            }
        }
        b.fdb = fdb;
        self.publish();
        Ok(())
    }

    fn del_bridge(&mut self, name: &str) -> DpResult<()> {
        let id = self.bridge_id(name)?;
        if self.ports.iter().flatten().any(|p| p.bridge == id) {
            return Err(format!("bridge \"{name}\" still has ports"));
        }
        self.bridges[id as usize] = None;
        self.publish();
        Ok(())
    }

    fn add_port(&mut self, bridge: &str, cfg: &PortConfig) -> DpResult<()> {
        let bid = self.bridge_id(bridge)?;
        if self.port_id(&cfg.name).is_ok() {
            return Err(format!("port \"{}\" already exists", cfg.name));
        }
        let id = self.free_port_id()?;
        let mut port = match cfg.kind {
            PortType::Afxdp => self.open_afxdp(id, cfg)?,
            PortType::Tap => self.open_tap(id, cfg)?,
            PortType::Vxlan => self.open_vxlan(id, cfg)?,
        };
        port.bridge = bid;
        port.vlan = vlan_mode(&cfg.vlan);
        self.ports[id as usize] = Some(port);
        self.resolve_remotes_now(id);
        self.publish();
        Ok(())
    }

    fn del_port(&mut self, name: &str) -> DpResult<()> {
        let id = self.port_id(name)?;
        if matches!(self.ports[id as usize].as_ref().map(|p| &p.role), Some(Role::Uplink { .. })) {
            return Err(format!("{name:?} is an uplink (remove it with `rvsctl uplink del`)"));
        }
        self.remove_port(id);
        Ok(())
    }

    fn fdb_add(&mut self, bridge: &str, mac: MacAddr, vlan: u16, port: &str) -> DpResult<()> {
        let bid = self.bridge_id(bridge)?;
        let pid = self.port_id(port)?;
        let now = self.now();
        let b = self.bridges[bid as usize].as_ref().expect("bridge_id found it");
        if !b.fdb.add_static(mac, vlan, pid, now) {
            return Err(format!("the FDB of bridge \"{bridge}\" is full"));
        }
        Ok(())
    }

    fn fdb_del(&mut self, bridge: &str, mac: MacAddr, vlan: u16) -> DpResult<bool> {
        let bid = self.bridge_id(bridge)?;
        Ok(self.bridges[bid as usize].as_ref().expect("bridge_id found it").fdb.remove(mac, vlan))
    }

    fn fdb_flush(&mut self, bridge: &str, port: Option<&str>) -> DpResult<usize> {
        let bid = self.bridge_id(bridge)?;
        let pid = port.map(|p| self.port_id(p)).transpose()?;
        Ok(self.bridges[bid as usize].as_ref().expect("bridge_id found it").fdb.flush(pid))
    }

    fn add_uplink(&mut self, up: &UplinkConfig) -> DpResult<()> {
        if self.port_id(&up.name).is_ok() {
            return Err(format!("{:?} is already in use as a port or uplink", up.name));
        }
        let (mtu, mac) = netlink::link_info(&up.name).map_err(|e| format!("uplink {}: {e}", up.name))?;
        let id = self.free_port_id()?;
        let mut port = self.open_xsk(id, &up.name, up.xdp_mode, up.queues, true)?;
        port.bridge = NO_BRIDGE;
        port.role = Role::Uplink { mac, mtu };
        self.ports[id as usize] = Some(port);
        self.publish();
        Ok(())
    }

    fn del_uplink(&mut self, name: &str) -> DpResult<()> {
        let id = self.port_id(name).map_err(|_| format!("unknown uplink {name:?}"))?;
        if !matches!(self.ports[id as usize].as_ref().map(|p| &p.role), Some(Role::Uplink { .. })) {
            return Err(format!("{name:?} is not an uplink"));
        }
        if let Some(user) = self.ports.iter().flatten().find(|p| matches!(&p.role, Role::Vxlan(vx) if vx.uplink == id))
        {
            return Err(format!("uplink {name:?} carries VXLAN port {:?}; delete that first", user.name));
        }
        self.remove_port(id);
        Ok(())
    }

    fn set_remotes(&mut self, port: &str, remotes: &[IpAddr]) -> DpResult<()> {
        let id = self.port_id(port)?;
        let p = self.ports[id as usize].as_mut().expect("port_id found it");
        let Role::Vxlan(vx) = &mut p.role else { return Err(format!("port {port:?} is not a VXLAN port")) };
        vx.cfg.remotes = remotes.to_vec();
        vx.remotes = remotes.iter().map(|&ip| RemoteState { ip, next_hop: None, outer: None }).collect();
        let bridge = p.bridge;
        self.resolve_remotes_now(id);
        // Learned entries point into the old list by index: gone before
        // the new list is published.
        if let Some(b) = self.bridges.get(bridge as usize).and_then(Option::as_ref) {
            b.fdb.flush(Some(id));
        }
        self.publish();
        Ok(())
    }

    fn uplink_status(&self) -> Vec<UplinkStatus> {
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
                                Role::Vxlan(vx) if vx.uplink == i as PortId => Some(vx.cfg.local.to_string()),
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

    fn fdb_show(&self, bridge: &str) -> DpResult<Vec<FdbEntryInfo>> {
        let bid = self.bridge_id(bridge)?;
        let now = self.now();
        let mut entries: Vec<FdbEntryInfo> = self.bridges[bid as usize]
            .as_ref()
            .expect("bridge_id found it")
            .fdb
            .entries()
            .into_iter()
            .map(|e| FdbEntryInfo {
                mac: e.mac.to_string(),
                vlan: e.vid,
                port: self.port_name(e.port),
                is_static: e.is_static,
                age_secs: if e.is_static { 0 } else { now.saturating_sub(e.last_seen) },
                remote: match self.ports.get(e.port as usize).and_then(Option::as_ref).map(|p| &p.role) {
                    Some(Role::Vxlan(vx)) if e.remote != NO_REMOTE => {
                        vx.remotes.get(usize::from(e.remote)).map(|r| r.ip.to_string())
                    }
                    _ => None,
                },
            })
            .collect();
        entries.sort_by(|a, b| (a.vlan, &a.mac).cmp(&(b.vlan, &b.mac)));
        Ok(entries)
    }

    fn port_status(&self) -> Vec<PortStatus> {
        self.ports
            .iter()
            .flatten()
            .filter(|p| !matches!(p.role, Role::Uplink { .. }))
            .map(|p| PortStatus {
                name: p.name.clone(),
                bridge: self.bridge_name(p.bridge).to_string(),
                kind: match p.kind {
                    PortType::Afxdp => "afxdp".into(),
                    PortType::Tap => "tap".into(),
                    PortType::Vxlan => "vxlan".into(),
                },
                state: port_state(p),
                xdp_mode: xdp_mode_name(p),
                queues: p.handles.iter().filter(|h| h.2).map(|&(q, t, _)| (q, self.threads[t].core)).collect(),
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

    fn port_stats(&self) -> Vec<PortStatsInfo> {
        self.ports
            .iter()
            .flatten()
            .map(|p| {
                let mut c = PortCounters::default();
                for s in &p.stats {
                    c.accumulate(&s.read());
                }
                let bridge = match p.role {
                    Role::Uplink { .. } => "(uplink)",
                    _ => self.bridge_name(p.bridge),
                };
                let mut info = crate::datapath::port_stats_info(&p.name, bridge, &c);
                info.link_downs = p.link.as_ref().map_or(0, |l| l.downs);
                info
            })
            .collect()
    }

    fn threads(&self) -> Vec<ThreadInfo> {
        self.threads
            .iter()
            .enumerate()
            .map(|(i, t)| ThreadInfo {
                core: t.core,
                rx_queues: self
                    .ports
                    .iter()
                    .flatten()
                    .flat_map(|p| p.handles.iter().filter(|h| h.1 == i && h.2).map(|h| (p.name.clone(), h.0)))
                    .collect(),
                packets: t.stats.packets.load(Relaxed),
                busy_ns: t.stats.busy_ns.load(Relaxed),
                idle_ns: t.stats.idle_ns.load(Relaxed),
                busy_cycles: t.stats.busy_cycles.load(Relaxed),
                idle_cycles: t.stats.idle_cycles.load(Relaxed),
                cache_hits: t.stats.cache_hits.load(Relaxed),
                cache_misses: t.stats.cache_misses.load(Relaxed),
                cache_evictions: t.stats.cache_evictions.load(Relaxed),
                cache_entries: t.stats.cache_entries.load(Relaxed),
            })
            .collect()
    }

    fn flows(&self) -> Vec<FlowInfo> {
        let mut out = Vec::new();
        for t in &self.threads {
            let (tx, rx) = channel::bounded(1);
            if t.tx.send(Command::DumpFlows(tx)).is_err() {
                continue;
            }
            let Ok(flows) = rx.recv_timeout(Duration::from_secs(2)) else { continue };
            for f in flows {
                let port = self.ports.get(f.key.ingress() as usize).and_then(Option::as_ref);
                let remote_ip = |p: Option<&Port>, r: u16| match p.map(|p| &p.role) {
                    Some(Role::Vxlan(vx)) if r != NO_REMOTE => vx.remotes.get(usize::from(r)).map(|x| x.ip.to_string()),
                    _ => None,
                };
                let action = match f.verdict.action {
                    Action::Unicast(o) => {
                        let out_port = self.ports.get(o as usize).and_then(Option::as_ref);
                        match remote_ip(out_port, f.verdict.remote) {
                            Some(ip) => format!("output:{}->{ip}", self.port_name(o)),
                            None => format!("output:{}", self.port_name(o)),
                        }
                    }
                    Action::Flood(_) => "flood".to_string(),
                    Action::Drop(r) => format!("drop:{}", r.name()),
                };
                out.push(FlowInfo {
                    core: t.core,
                    bridge: port.map_or_else(String::new, |p| self.bridge_name(p.bridge).to_string()),
                    in_port: self.port_name(f.key.ingress()),
                    remote: remote_ip(port, f.key.remote()),
                    src: f.key.src().to_string(),
                    dst: f.key.dst().to_string(),
                    vlan: f.verdict.vid,
                    action,
                    hits: f.hits,
                });
            }
        }
        out
    }

    fn trace(&self, bridge: &str, port: &str, frame: &[u8]) -> DpResult<TraceResult> {
        let id = self.port_id(port)?;
        let p = self.ports[id as usize].as_ref().expect("port_id found it");
        let is_uplink = matches!(p.role, Role::Uplink { .. });
        if !is_uplink && self.bridge_name(p.bridge) != bridge {
            return Err(format!("port {port:?} is not in bridge {bridge:?}"));
        }
        let snap = self.snap.clone();
        let now = self.now();
        let mut steps = Vec::new();
        let mut step = |stage: &str, what: String| steps.push((stage.to_string(), what));
        step("input", format!("{} bytes on {port}", frame.len()));
        let hex = rvs_proto::framedesc::to_hex(frame);
        let (mut ingress, mut remote, mut frame) = (id, NO_REMOTE, frame.to_vec());
        if is_uplink {
            match pipeline::decap(&snap, &frame) {
                Ok(x) => {
                    let via = match self.ports.get(x.port as usize).and_then(Option::as_ref).map(|p| &p.role) {
                        Some(Role::Vxlan(vx)) => vx.remotes.get(usize::from(x.remote)).map(|r| r.ip.to_string()),
                        _ => None,
                    };
                    step(
                        "decap",
                        format!(
                            "VXLAN from {} to tunnel port {}: inner frame of {} bytes",
                            via.unwrap_or_default(),
                            self.port_name(x.port),
                            x.len
                        ),
                    );
                    frame = frame[x.inner..x.inner + x.len].to_vec();
                    (ingress, remote) = (x.port, x.remote);
                }
                Err(r) => {
                    step("decap", format!("dropped: {}", r.name()));
                    return Ok(TraceResult {
                        steps,
                        decision: format!("drop:{}", r.name()),
                        outputs: Vec::new(),
                        frame: hex,
                    });
                }
            }
        }
        match EthernetFrame::new_checked(&frame[..]) {
            Some(eth) => step(
                "parse",
                format!(
                    "{} > {}, {}",
                    eth.src(),
                    eth.dst(),
                    match vlan::parse(&frame) {
                        Ok(vlan::Tag::Dot1q { vid, pcp_dei }) => format!("802.1Q vlan {vid} pcp {}", pcp_dei >> 1),
                        Ok(vlan::Tag::Untagged) => format!("ethertype {:#06x}", eth.ethertype()),
                        Err(e) => format!("bad VLAN tag ({e:?})"),
                    }
                ),
            ),
            None => step("parse", "shorter than an Ethernet header".into()),
        }
        let v = pipeline::dry_run(&snap, ingress, remote, &frame, now);
        if v.vid != 0 {
            step(
                "vlan",
                format!("VLAN {}{}", v.vid, if v.tagged { " (tagged on arrival)" } else { " (untagged on arrival)" }),
            );
        } else if let Action::Drop(r @ (DropReason::VlanFiltered | DropReason::BadVlan)) = v.action {
            let carries = match snap.port(ingress).map(|p| &p.vlan) {
                Some(VlanMode::Access(a)) => format!("an access port of VLAN {a}"),
                Some(VlanMode::Trunk { allowed, native }) => {
                    let list: Vec<String> = allowed.iter().map(|x| x.to_string()).collect();
                    let native = native.map(|n| format!(", untagged in {n}")).unwrap_or_default();
                    format!("a trunk of VLANs {}{native}", list.join(","))
                }
                None => "not in a bridge".to_string(),
            };
            step("vlan", format!("{}: {} is {carries}", r.name(), self.port_name(ingress)));
        }
        if let Some(l) = v.learn {
            let here = self.port_name(ingress);
            step(
                "learn",
                match l {
                    Learn::Known | Learn::Refreshed => format!("source MAC known on {here}"),
                    Learn::New => format!("source MAC would be learned on {here}"),
                    Learn::Moved { from } => {
                        format!("source MAC would move to {here} from {}", self.port_name(from.port))
                    }
                    Learn::Refused => "source MAC not learned: the bridge is at its MAC limit".to_string(),
                    Learn::Static => "source MAC not moved: a static entry holds it elsewhere".to_string(),
                },
            );
        }
        let br = self.ports.get(ingress as usize).and_then(Option::as_ref).and_then(|p| snap.bridge(p.bridge));
        if let (Some(eth), Some(br)) = (EthernetFrame::new_checked(&frame[..]), br) {
            if v.vid != 0 && !eth.dst().is_multicast() {
                step(
                    "fdb",
                    match br.fdb.lookup_dest(eth.dst(), v.vid) {
                        Some(d) => {
                            let at = self.port_name(d.port);
                            let via =
                                self.remote_ip(d.port, d.remote).map(|ip| format!(" via {ip}")).unwrap_or_default();
                            // Trace is rare: a scan for the entry's age is fine here.
                            let entry = br.fdb.entries().into_iter().find(|e| e.mac == eth.dst() && e.vid == v.vid);
                            let how = match entry {
                                Some(e) if e.is_static => ", static".to_string(),
                                Some(e) => format!(", learned {} s ago", now.saturating_sub(e.last_seen)),
                                None => String::new(),
                            };
                            format!("hit: {} vlan {} on {at}{via}{how}", eth.dst(), v.vid)
                        }
                        None => format!("miss: {} vlan {} unknown", eth.dst(), v.vid),
                    },
                );
            } else if v.vid != 0 {
                step("fdb", format!("{} is a group address: no lookup", eth.dst()));
            }
        }
        if let Some(key) = FlowKey::of(ingress, remote, &frame) {
            let mut found = None;
            for t in &self.threads {
                let (tx, rx) = channel::bounded(1);
                if t.tx.send(Command::PeekFlow(key, tx)).is_ok() {
                    if let Ok(Some((_, hits))) = rx.recv_timeout(Duration::from_secs(1)) {
                        found = Some((t.core, hits));
                        break;
                    }
                }
            }
            step(
                "flow cache",
                match found {
                    Some((core, hits)) => format!("hit on core {core} ({hits} frames so far)"),
                    None => "miss: the next such frame takes the full pipeline, then is cached".into(),
                },
            );
        }
        let (decision, targets): (String, Vec<(PortId, u16)>) = match v.action {
            Action::Drop(r) => (format!("drop:{}", r.name()), Vec::new()),
            Action::Unicast(o) => ("output".into(), vec![(o, v.remote)]),
            Action::Flood(b) => (
                "flood".into(),
                snap.bridge(b)
                    .map(|b| {
                        b.flood_set(v.vid).iter().filter(|m| m.port != ingress).map(|m| (m.port, NO_REMOTE)).collect()
                    })
                    .unwrap_or_default(),
            ),
        };
        step("decision", decision.clone());
        let mut outputs = Vec::new();
        for (o, r) in targets {
            outputs.extend(self.trace_output(&snap, o, r, &v, &frame));
        }
        Ok(TraceResult { steps, decision, outputs, frame: hex })
    }

    fn capture_start(&mut self, port: &str, dir: Direction, snaplen: u32) -> DpResult<Arc<CaptureRing>> {
        let id = self.port_id(port)?;
        let ring = CaptureRing::new(CAPTURE_RING, snaplen, dir);
        for t in &self.threads {
            let _ = t.tx.send(Command::StartCapture { id, ring: ring.clone() });
        }
        Ok(ring)
    }

    fn capture_stop(&mut self, port: &str) {
        if let Ok(id) = self.port_id(port) {
            for t in &self.threads {
                let _ = t.tx.send(Command::StopCapture { id });
            }
        }
    }

    fn local_macs(&self, port: &str) -> DpResult<Vec<(MacAddr, u16)>> {
        let id = self.port_id(port)?;
        let p = self.ports[id as usize].as_ref().expect("port_id found it");
        if !matches!(p.role, Role::Vxlan(_)) {
            return Err(format!("port {port:?} is not a VXLAN port"));
        }
        let Some(b) = self.bridges.get(p.bridge as usize).and_then(Option::as_ref) else { return Ok(Vec::new()) };
        let is_tunnel = |q: PortId| {
            matches!(self.ports.get(q as usize).and_then(Option::as_ref).map(|x| &x.role), Some(Role::Vxlan(_)))
        };
        let mut macs: Vec<(MacAddr, u16)> = b
            .fdb
            .entries()
            .into_iter()
            .filter(|e| !is_tunnel(e.port) && p.vlan.carries(e.vid))
            .map(|e| (e.mac, e.vid))
            .collect();
        macs.sort();
        Ok(macs)
    }

    fn set_remote_macs(&mut self, port: &str, macs: &[(MacAddr, u16, IpAddr)]) -> DpResult<()> {
        let id = self.port_id(port)?;
        let now = self.now();
        let p = self.ports[id as usize].as_mut().expect("port_id found it");
        let Role::Vxlan(vx) = &mut p.role else { return Err(format!("port {port:?} is not a VXLAN port")) };
        let Some(b) = self.bridges.get(p.bridge as usize).and_then(Option::as_ref) else { return Ok(()) };
        let mut installed = Vec::new();
        for &(mac, vid, ip) in macs {
            let Some(r) = vx.remotes.iter().position(|x| x.ip == ip) else { continue };
            // Learned, not static: refreshed by every call, aged out if the
            // peer stops advertising, and real traffic may still move it.
            b.fdb.learn_at(mac, vid, rvs_dataplane::fdb::Dest { port: id, remote: r as u16 }, now);
            installed.push((mac, vid));
        }
        for &(mac, vid) in &vx.advertised {
            if !installed.contains(&(mac, vid)) && b.fdb.lookup(mac, vid) == Some(id) {
                b.fdb.remove(mac, vid);
            }
        }
        vx.advertised = installed;
        Ok(())
    }

    fn flows_flush(&mut self) {
        for t in &self.threads {
            let _ = t.tx.send(Command::FlushFlows);
        }
    }

    fn pmd_assign(&mut self, port: &str, queue: u32, core: usize) -> DpResult<()> {
        let id = self.port_id(port)?;
        let target = self
            .threads
            .iter()
            .position(|t| t.core == core)
            .ok_or_else(|| format!("no polling thread on core {core} (rvsd --cores)"))?;
        let p = self.ports[id as usize].as_ref().expect("port_id found it");
        let Some(&(_, from, _)) = p.handles.iter().find(|h| h.0 == queue && h.2) else {
            return Err(format!("{port:?} has no receive queue {queue}"));
        };
        if from == target {
            return Ok(());
        }
        if p.kind == PortType::Tap {
            // Every thread holds a handle on a tap; only who receives moves.
            let _ = self.threads[from].tx.send(Command::SetRx { id, rx: false });
            let _ = self.threads[target].tx.send(Command::SetRx { id, rx: true });
            let p = self.ports[id as usize].as_mut().expect("port_id found it");
            for h in p.handles.iter_mut() {
                h.2 = h.1 == target;
            }
            return Ok(());
        }
        if p.xdp.is_none() {
            return Err(format!("{port:?} has no queues to move"));
        }
        // An AF_XDP socket lives in its thread's UMEM: close it there, then
        // open the queue again in the target thread's UMEM.
        let (done_tx, done_rx) = channel::bounded(1);
        let _ = self.threads[from].tx.send(Command::RemoveQueue { id, queue, done: done_tx });
        let _ = done_rx.recv_timeout(Duration::from_secs(5));
        let p = self.ports[id as usize].as_mut().expect("port_id found it");
        p.handles.retain(|h| h.0 != queue);
        let name = p.name.clone();
        let xdp = p.xdp.as_ref().expect("checked above");
        let open =
            |t: usize| AfXdpPort::open(&name, queue, &self.threads[t].umem).and_then(|s| s.register(xdp).map(|()| s));
        // If the target thread cannot take it, the queue goes back home.
        let (sock, placed, result) = match open(target) {
            Ok(s) => (s, target, Ok(())),
            Err(e) => {
                let back =
                    open(from).map_err(|e2| format!("{name} queue {queue}: {e}; and back on its thread: {e2}"))?;
                (back, from, Err(format!("{name} queue {queue}: {e}")))
            }
        };
        let stats = Arc::new(PortStats::default());
        p.stats.push(stats.clone());
        p.handles.push((queue, placed, true));
        let lp = LocalPort { id, queue, port: Some(Box::new(sock)), rx: true, stats };
        let _ = self.threads[placed].tx.send(Command::AddPort(lp));
        self.publish();
        result
    }

    fn tick(&mut self) {
        let now = self.now();
        for b in self.bridges.iter().flatten() {
            b.fdb.age(now, b.aging_secs);
        }
        let tunnels: Vec<PortId> = (0..self.ports.len())
            .filter(|&i| matches!(self.ports[i].as_ref().map(|p| &p.role), Some(Role::Vxlan(_))))
            .map(|i| i as PortId)
            .collect();
        let mut changed = self.watch_links();
        for id in tunnels {
            changed |= self.resolve_remotes(id);
        }
        if changed {
            self.publish();
        }
    }
}
