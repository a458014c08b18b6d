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
use crate::kernel::missdev::MissDevice;
use crate::kernel::netlink;
use crossbeam::channel;
use rvs_dataplane::egress;
use rvs_dataplane::fastpath::{self, KernelTables};
use rvs_dataplane::fdb::{Dest, Fdb, Learn, NO_REMOTE};
use rvs_dataplane::flow_cache::FlowKey;
use rvs_dataplane::ids::{BridgeId, PortId, Vid};
use rvs_dataplane::neigh::{self, NeighTable};
use rvs_dataplane::pipeline::Action;
use rvs_dataplane::pipeline::{self, TagEdit};
use rvs_dataplane::pmd::{max_rx_sockets, Command, Commands, Handoff, LocalPort, Pmd, PmdOptions};
use rvs_dataplane::port::afxdp::{self, AfXdpPort, Umem, XdpProgram, XskConfig};
use rvs_dataplane::port::split::SplitPort;
use rvs_dataplane::port::tap::TapPort;
use rvs_dataplane::port::tc::TcProgram;
use rvs_dataplane::port::{Pool, Port as DpPort, MAX_FRAME};
use rvs_dataplane::snapshot::{BridgeInfo, PortInfo, PortKind, Remote, Snapshot, Tunnel, VlanMode, Vtep, TX_ANY};
use rvs_dataplane::stats::{DropReason, PortCounters, PortStats, ThreadStats};
use rvs_dataplane::wire::vxlan::OuterTemplate;
use rvs_dataplane::wire::MacAddr;
use rvs_dataplane::wire::{vlan, vxlan, EthernetFrame};
use rvs_proto::config::{
    BridgeConfig, FastPath, IfAddr, PortConfig, PortType, PortVlan, UplinkConfig, VxlanConfig, XdpMode,
};
use rvs_proto::status::{
    FdbCursor, FdbEntryInfo, FdbPage, FlowInfo, PortStatsInfo, PortStatus, RemoteStatus, ThreadInfo, TraceOutput,
    TraceResult, TraceVxlan, UplinkStatus,
};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod gateway;
mod kernel;
mod ports;
mod publish;
mod status;
mod threads;
mod trace;
mod tunnels;

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
    tx: Commands,
    stats: Arc<ThreadStats>,
    umem: Arc<Umem>,
    join: Option<JoinHandle<()>>,
}

struct Bridge {
    name: String,
    fdb: Arc<Fdb>,
    /// IP-MAC bindings, aged with the FDB's aging time.
    neigh: Arc<NeighTable>,
    aging_secs: u32,
}

struct Port {
    name: String,
    /// None for uplinks.
    bridge: Option<BridgeId>,
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
    /// The kernel executor in front of its sockets.
    fast: FastPath,
    /// The kernel may send to it: the far end of its veth takes frames
    /// redirected in XDP (GRO turned on there), or it is no veth.
    peer_ready: bool,
    /// The `tc` executor's program and miss device, while up.
    tc: Option<TcHook>,
    /// Why the port is down, if it is.
    down: Option<String>,
    /// How many times it went down.
    downs: u64,
}

/// What a `tc` executor port holds in the kernel besides its sockets.
struct TcHook {
    // Field order is drop order: misses stop before their device goes.
    _prog: TcProgram,
    miss: MissDevice,
}

/// An XDP program, the sockets opened per queue (with their thread), and
/// for a `tc` executor port its program and miss device (the XDP program
/// and the receiving sockets are then on the miss device).
type Attached = (XdpProgram, Vec<(u32, usize, Box<dyn DpPort>)>, Option<TcHook>);

/// What a port does besides switching frames as they are.
enum Role {
    Plain,
    /// A tap (the device `ifname` in `netns`); rvsd removes it with the
    /// port if it `created` it.
    Tap {
        ifname: String,
        netns: Option<String>,
        created: bool,
    },
    Uplink {
        mac: MacAddr,
        mtu: u32,
    },
    Vxlan(Vx),
}

/// A VXLAN port's run-time state.
struct Vx {
    cfg: VxlanConfig,
    /// Whether the kernel carries the tunnel's known unicast (`Xdp`) or
    /// not (`Off`).
    fast: FastPath,
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
    /// The kernel fast path's maps, and what rvs last wrote into them.
    kernel: KernelTables,
    mirror: kernel::KernelMirror,
    /// The last time written to the kernel's clock map.
    kernel_clock: u32,
    /// Ports being captured: the kernel path pauses on them.
    captures: HashSet<PortId>,
    /// Why a polling thread stopped on a panic, once one has.
    failure: Arc<Mutex<Option<String>>>,
    /// Set by SIGUSR1 under `rvsd --debug-faults`: the next tick makes
    /// the first polling thread panic.
    fault: Option<Arc<AtomicBool>>,
}

impl Dp {
    /// Starts one polling thread per core in `cores`, each pinned to it.
    ///
    /// A thread that panics is not restarted: its ports' queues, buffers
    /// and flow state went with it, and a half-working switch is worse
    /// than a restart. The panic is logged, the thread's `failed` gauge
    /// set, [`Dp::failure`] says why, and `stop` is raised so that rvsd
    /// shuts down in order (XDP programs detached) and exits non-zero, for
    /// systemd (`Restart=on-failure`) to start it again.
    pub fn start(cores: &[usize], opts: PmdOptions, stop: Arc<AtomicBool>) -> Result<Dp, String> {
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
        let kernel = kernel::kernel_tables()?;
        let start = Instant::now();
        let handoff = Handoff::new(cores.len(), HANDOFF_PARCELS);
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let mut threads = Vec::new();
        for (i, &core) in cores.iter().enumerate() {
            let pool = Pool::new(POOL_FRAMES).map_err(|e| format!("allocating frame memory for core {core}: {e}"))?;
            let umem = Umem::new(pool.region().clone()).map_err(|e| format!("preparing UMEM for core {core}: {e}"))?;
            let (tx, rx) = channel::unbounded();
            let stats = Arc::new(ThreadStats::default());
            let pmd = Pmd::new(i as u8, pool, rx, handoff.clone(), stats.clone(), start, opts);
            let (failure, stop, thread_stats) = (failure.clone(), stop.clone(), stats.clone());
            let join = std::thread::Builder::new()
                .name(format!("pmd{core}"))
                .spawn(move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        tracing::warn!("could not pin the polling thread to core {core}");
                    }
                    let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pmd.run())) else {
                        return;
                    };
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_string());
                    let why = format!("the polling thread on core {core} stopped: {what}");
                    tracing::error!(target: crate::obs::log::DAEMON, "{why}; shutting down");
                    thread_stats.failed.store(1, Relaxed);
                    failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(why);
                    stop.store(true, Relaxed);
                })
                .map_err(|e| format!("starting the polling thread for core {core}: {e}"))?;
            let tx = Commands::new(tx, handoff.clone(), i);
            threads.push(Thread { core, tx, stats, umem, join: Some(join) });
        }
        Ok(Dp {
            start,
            threads,
            bridges: Vec::new(),
            ports: Vec::new(),
            generation: 0,
            snap: Arc::default(),
            kernel,
            mirror: kernel::KernelMirror::default(),
            kernel_clock: u32::MAX,
            captures: HashSet::new(),
            failure,
            fault: None,
        })
    }

    /// Why a polling thread stopped, if one did (rvsd must exit non-zero).
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fault injection for the supervision test (`rvsd --debug-faults`):
    /// once `flag` is set, the next tick makes the first polling thread
    /// panic.
    pub fn arm_fault_injection(&mut self, flag: Arc<AtomicBool>) {
        self.fault = Some(flag);
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
            .map(|i| BridgeId(i as u16))
            .ok_or_else(|| format!("unknown bridge \"{name}\""))
    }

    fn port_id(&self, name: &str) -> DpResult<PortId> {
        self.ports
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.name == name))
            .map(|i| PortId(i as u16))
            .ok_or_else(|| format!("unknown port \"{name}\""))
    }

    fn port_name(&self, id: PortId) -> String {
        self.ports.get(id.index()).and_then(Option::as_ref).map_or_else(|| format!("#{id}"), |p| p.name.clone())
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
        Ok(PortId(id as u16))
    }

    fn bridge(&self, id: Option<BridgeId>) -> Option<&Bridge> {
        self.bridges.get(id?.index()).and_then(Option::as_ref)
    }

    /// The bridge's name; empty for none (uplinks).
    fn bridge_name(&self, id: Option<BridgeId>) -> &str {
        self.bridge(id).map_or("", |b| b.name.as_str())
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
        let b = Bridge {
            name: br.name.clone(),
            fdb: Arc::new(Fdb::new(br.max_macs)),
            neigh: Arc::new(NeighTable::new(neigh::DEFAULT_LIMIT)),
            aging_secs: br.aging_secs,
        };
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
        let b = self.bridges[id.index()].as_mut().expect("bridge_id found it");
        b.aging_secs = br.aging_secs;
        if br.max_macs <= b.fdb.capacity_limit() {
            b.fdb.set_limit(br.max_macs);
            return Ok(());
        }
        // A larger limit needs a larger table.
        b.fdb = Arc::new(b.fdb.grown(br.max_macs));
        self.publish();
        Ok(())
    }

    fn del_bridge(&mut self, name: &str) -> DpResult<()> {
        let id = self.bridge_id(name)?;
        if self.ports.iter().flatten().any(|p| p.bridge == Some(id)) {
            return Err(format!("bridge \"{name}\" still has ports"));
        }
        self.bridges[id.index()] = None;
        self.publish();
        Ok(())
    }

    fn add_port(&mut self, bridge: &str, cfg: &PortConfig) -> DpResult<()> {
        self.open_port(bridge, cfg)?;
        if cfg.kind == PortType::Vxlan {
            self.gateway_follows_tunnels(self.bridge_id(bridge)?);
        }
        Ok(())
    }

    fn del_port(&mut self, name: &str) -> DpResult<()> {
        let id = self.port_id(name)?;
        let port = self.ports[id.index()].as_ref();
        if matches!(port.map(|p| &p.role), Some(Role::Uplink { .. })) {
            return Err(format!("{name:?} is an uplink (remove it with `rvsctl uplink del`)"));
        }
        let tunnel_of = port.filter(|p| p.kind == PortType::Vxlan).and_then(|p| p.bridge);
        self.remove_port(id);
        if let Some(bid) = tunnel_of {
            self.gateway_follows_tunnels(bid);
        }
        Ok(())
    }

    fn neigh_add(&mut self, bridge: &str, ip: IpAddr, vlan: u16, mac: MacAddr) -> DpResult<()> {
        let bid = self.bridge_id(bridge)?;
        let now = self.now();
        let b = self.bridges[bid.index()].as_ref().expect("bridge_id found it");
        if !b.neigh.add_static(ip, Vid(vlan), mac, now) {
            return Err(format!("the neighbour table of bridge \"{bridge}\" is full"));
        }
        Ok(())
    }

    fn neigh_del(&mut self, bridge: &str, ip: IpAddr, vlan: u16) -> DpResult<Option<neigh::Source>> {
        let bid = self.bridge_id(bridge)?;
        Ok(self.bridges[bid.index()].as_ref().expect("bridge_id found it").neigh.remove(ip, Vid(vlan)))
    }

    fn neigh_list(&self, bridge: &str) -> DpResult<crate::datapath::NeighView> {
        let bid = self.bridge_id(bridge)?;
        let t = &self.bridges[bid.index()].as_ref().expect("bridge_id found it").neigh;
        let now = self.now();
        let bindings = t.entries().into_iter().map(|b| (b, now.saturating_sub(b.last_seen))).collect();
        Ok(crate::datapath::NeighView { learned: t.learned(), limit: t.limit(), bindings })
    }

    fn set_remote_neigh(&mut self, bridge: &str, bindings: &[(IpAddr, u16, MacAddr)]) -> DpResult<()> {
        let bid = self.bridge_id(bridge)?;
        let now = self.now();
        let t = &self.bridges[bid.index()].as_ref().expect("bridge_id found it").neigh;
        let want: HashSet<(IpAddr, u16, MacAddr)> = bindings.iter().copied().collect();
        t.remove_where(|b| b.source == neigh::Source::Remote && !want.contains(&(b.ip, b.vid.0, b.mac)));
        let mut full = 0;
        for &(ip, vlan, mac) in bindings {
            if t.lookup(ip, Vid(vlan)) != Some((mac, neigh::Source::Remote)) && !t.add_remote(ip, Vid(vlan), mac, now) {
                full += 1;
            }
        }
        if full > 0 {
            return Err(format!("the neighbour table of bridge \"{bridge}\" is full: {full} remote bindings left out"));
        }
        Ok(())
    }

    fn fdb_add(&mut self, bridge: &str, mac: MacAddr, vlan: u16, port: &str) -> DpResult<()> {
        let bid = self.bridge_id(bridge)?;
        let pid = self.port_id(port)?;
        let now = self.now();
        let b = self.bridges[bid.index()].as_ref().expect("bridge_id found it");
        if !b.fdb.add_static(mac, Vid(vlan), pid, now) {
            return Err(format!("the FDB of bridge \"{bridge}\" is full"));
        }
        // Control changes reach the kernel before the request returns.
        self.sync_kernel_fdb();
        Ok(())
    }

    fn fdb_del(&mut self, bridge: &str, mac: MacAddr, vlan: u16) -> DpResult<bool> {
        let bid = self.bridge_id(bridge)?;
        let removed = self.bridges[bid.index()].as_ref().expect("bridge_id found it").fdb.remove(mac, Vid(vlan));
        self.sync_kernel_fdb();
        Ok(removed)
    }

    fn fdb_flush(&mut self, bridge: &str, port: Option<&str>) -> DpResult<usize> {
        let bid = self.bridge_id(bridge)?;
        let pid = port.map(|p| self.port_id(p)).transpose()?;
        let n = self.bridges[bid.index()].as_ref().expect("bridge_id found it").fdb.flush(pid);
        self.sync_kernel_fdb();
        Ok(n)
    }

    fn add_uplink(&mut self, up: &UplinkConfig) -> DpResult<()> {
        self.open_uplink(up)
    }

    fn del_uplink(&mut self, name: &str) -> DpResult<()> {
        self.close_uplink(name)
    }

    fn set_remotes(&mut self, port: &str, remotes: &[IpAddr]) -> DpResult<()> {
        self.replace_remotes(port, remotes)
    }

    fn set_addresses(&mut self, port: &str, addrs: &[IfAddr]) -> DpResult<()> {
        self.set_gateway(port, addrs)
    }

    fn uplink_status(&self) -> Vec<UplinkStatus> {
        self.uplink_views()
    }

    fn fdb_page(&self, bridge: &str, after: Option<(u16, MacAddr)>, limit: usize) -> DpResult<FdbPage> {
        self.fdb_view(bridge, after, limit)
    }

    fn port_status(&self) -> Vec<PortStatus> {
        self.port_views()
    }

    fn port_stats(&self) -> Vec<PortStatsInfo> {
        self.port_counters()
    }

    fn threads(&self) -> Vec<ThreadInfo> {
        self.thread_infos()
    }

    fn flows(&self) -> Vec<FlowInfo> {
        self.flow_infos()
    }

    fn trace(&self, bridge: &str, port: &str, frame: &[u8]) -> DpResult<TraceResult> {
        self.trace_frame(bridge, port, frame)
    }

    fn capture_start(&mut self, port: &str, dir: Direction, snaplen: u32) -> DpResult<Arc<CaptureRing>> {
        let id = self.port_id(port)?;
        let ring = CaptureRing::new(CAPTURE_RING, snaplen, dir);
        for t in &self.threads {
            let _ = t.tx.send(Command::StartCapture { id, ring: ring.clone() });
        }
        // Everything the port sends and receives goes through rvs meanwhile.
        self.captures.insert(id);
        self.sync_kernel_ports();
        Ok(ring)
    }

    fn capture_stop(&mut self, port: &str) {
        if let Ok(id) = self.port_id(port) {
            for t in &self.threads {
                let _ = t.tx.send(Command::StopCapture { id });
            }
            if self.captures.remove(&id) {
                self.sync_kernel_ports();
            }
        }
    }

    fn local_macs(&self, port: &str) -> DpResult<Vec<(MacAddr, u16)>> {
        self.advertised_macs(port)
    }

    fn set_remote_macs(&mut self, port: &str, macs: &[(MacAddr, u16, IpAddr)]) -> DpResult<()> {
        self.install_remote_macs(port, macs)
    }

    fn flows_flush(&mut self) {
        for t in &self.threads {
            let _ = t.tx.send(Command::FlushFlows);
        }
    }

    fn device_gone(&self, port: &PortConfig) -> bool {
        let dev = port.device().to_string();
        match rvs_dataplane::port::netns::in_netns(port.netns.as_deref(), move || netlink::find_link(&dev)) {
            Ok(link) => link.is_none(),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    fn tap_created(&self, name: &str) -> bool {
        matches!(
            self.port_id(name).ok().and_then(|id| self.ports[id.index()].as_ref()).map(|p| &p.role),
            Some(Role::Tap { created: true, .. })
        )
    }

    fn pmd_assign(&mut self, port: &str, queue: u32, core: usize) -> DpResult<()> {
        self.move_queue(port, queue, core)
    }

    fn sync(&mut self) {
        self.sync_kernel_clock();
        self.sync_kernel_peers();
        self.sync_kernel_fdb();
    }

    fn tick(&mut self) {
        if self.fault.as_ref().is_some_and(|f| f.swap(false, Relaxed)) {
            if let Some(t) = self.threads.first() {
                let _ = t.tx.send(Command::Panic);
            }
        }
        self.sync_kernel_clock();
        let now = self.now();
        for (i, b) in self.bridges.iter().enumerate() {
            let Some(b) = b else { continue };
            self.pull_kernel_seen(BridgeId(i as u16), &b.fdb, now, b.aging_secs);
            b.fdb.age(now, b.aging_secs);
            b.neigh.age(now, b.aging_secs);
        }
        self.sync_kernel_fdb();
        let tunnels: Vec<PortId> = (0..self.ports.len())
            .filter(|&i| matches!(self.ports[i].as_ref().map(|p| &p.role), Some(Role::Vxlan(_))))
            .map(|i| PortId(i as u16))
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
