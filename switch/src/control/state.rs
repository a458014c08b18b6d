//! The control state machine: validates each request against the
//! configuration, applies it to the datapath, and persists it.
//!
//! Every change follows the same order: validate everything, call the
//! datapath, and only if that succeeded write the new configuration to the
//! db; the reply goes out after the db write. A failed db write undoes the
//! datapath change (best effort) and fails the request, so the db, the
//! in-memory configuration and the datapath agree after every reply.

use crate::datapath::{CaptureRing, Datapath, Direction};
use crate::db;
use rvs_dataplane::wire::MacAddr;
use rvs_proto::config::{self, BridgeConfig, Config, IfAddr, PortConfig, PortType, PortVlan, StaticMac, UplinkConfig};
use rvs_proto::status::{
    FdbCursor, FdbPage, FlowInfo, PortStatsInfo, PortStatus, ThreadInfo, TraceResult, UplinkStatus, FDB_PAGE_MAX,
};
use rvs_proto::{
    self as proto, BridgeShow, BridgeSummary, CaptureDirection, Command, ErrorKind, FlushResult, PingResult, PortShow,
    Reply, Request, ShowResult, UplinkShow,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod changes;
mod membership;
mod neigh;
mod views;

/// The daemon's configuration, its db file and the datapath it drives.
pub struct State<D: Datapath> {
    config: Config,
    db_path: PathBuf,
    dp: D,
    /// Bridges in the configuration that the datapath does not have, and why.
    down_bridges: HashMap<String, String>,
    /// Ports in the configuration that the datapath does not have, and why.
    down_ports: HashMap<String, String>,
    /// Uplinks in the configuration that the datapath does not have, and why.
    down_uplinks: HashMap<String, String>,
    /// The cluster agent, when this node is in a cluster.
    cluster: Option<crate::cluster::Cluster>,
    /// The other nodes, as the agent last read them.
    peers: crate::cluster::PeerView,
    /// Remotes the cluster gave VXLAN ports configured without any.
    cluster_remotes: HashMap<String, Vec<IpAddr>>,
    /// Ports and uplinks with a capture running, and its ring.
    captures: HashMap<String, Arc<CaptureRing>>,
    /// Frames that ended captures dropped, per port (for the metric).
    capture_drops: HashMap<String, u64>,
    /// Remote IP-MAC bindings installed from the cluster: (bridge, IP,
    /// VLAN) → the node that publishes it.
    remote_neigh: HashMap<(String, IpAddr, u16), String>,
    /// Per bridge, why the last install of remote bindings fell short (a
    /// full table), so that it is logged once, not every tick.
    remote_neigh_error: HashMap<String, String>,
    /// Ticks since the start, to do some housekeeping less often.
    ticks: u64,
}

/// Container ports are checked for a gone container every this many ticks.
const GC_TICKS: u64 = 5;

/// The log line for a request that changes the configuration (or the log
/// filter), None for one that only reads.
fn change_line(cmd: &Command) -> Option<String> {
    Some(match cmd {
        Command::BridgeAdd { bridge, gateway, .. } if !gateway.is_empty() => {
            format!("bridge {bridge} added, gateway {}", join_addrs(gateway))
        }
        Command::BridgeAdd { bridge, .. } => format!("bridge {bridge} added"),
        Command::BridgeDel { bridge } => format!("bridge {bridge} deleted with its ports"),
        Command::BridgeSet { bridge, aging_secs, max_macs, gateway } => {
            let mut what = Vec::new();
            match gateway.as_deref() {
                Some([]) => what.push("no gateway".to_string()),
                Some(g) => what.push(format!("gateway {}", join_addrs(g))),
                None => {}
            }
            if let Some(a) = aging_secs {
                what.push(format!("aging {a} s"));
            }
            if let Some(m) = max_macs {
                what.push(format!("max MACs {m}"));
            }
            format!("bridge {bridge} set: {}", what.join(", "))
        }
        Command::PortAdd { bridge, port } => {
            format!("port {} ({}) added to bridge {bridge}", port.name, port.kind.name())
        }
        Command::PortDel { bridge, port } => format!("port {port} removed from bridge {bridge}"),
        Command::PortSetRemotes { bridge, port, remotes, .. } => {
            format!("port {port} of bridge {bridge}: remote VTEPs now [{}]", join(remotes))
        }
        Command::UplinkAdd { uplink } => format!("uplink {} added", uplink.name),
        Command::UplinkDel { uplink } => format!("uplink {uplink} removed"),
        Command::FdbAdd { bridge, mac, vlan, port } => {
            format!("static MAC {mac} VLAN {vlan} on port {port} of bridge {bridge}")
        }
        Command::FdbDel { bridge, mac, vlan } => format!("MAC {mac} VLAN {vlan} removed from bridge {bridge}"),
        Command::NeighAdd { bridge, ip, mac, vlan, port } => match port {
            Some(p) => format!("{ip} bound to {mac} in VLAN {vlan} of bridge {bridge} (port {p})"),
            None => format!("{ip} bound to {mac} in VLAN {vlan} of bridge {bridge}"),
        },
        Command::NeighDel { bridge, ip, vlan } => {
            format!("binding of {ip} in VLAN {vlan} removed from bridge {bridge}")
        }
        Command::PmdAssign { port, queue, core } => format!("queue {queue} of {port} assigned to core {core}"),
        Command::LogLevel { filter } => format!("log filter set to {filter:?}"),
        _ => return None,
    })
}

/// Interface addresses as `a/p, b/q`.
fn join_addrs(addrs: &[IfAddr]) -> String {
    addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
}

/// Addresses as `a, b, c`.
fn join(ips: &[IpAddr]) -> String {
    ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ")
}

/// What a receive queue belongs to, by index into the configuration.
enum QueueOwner {
    /// Bridge index, port index.
    Port(usize, usize),
    /// Uplink index.
    Uplink(usize),
}

fn unknown_bridge(name: &str) -> String {
    format!("unknown bridge {name:?}")
}

fn same_entry(m: &StaticMac, mac: MacAddr, vlan: u16) -> bool {
    m.vlan == vlan && proto::parse_mac(&m.mac, false).ok() == Some(mac)
}

impl<D: Datapath> State<D> {
    /// Loads the db at `db_path` and replays it into `dp`: uplinks first (a
    /// VXLAN port needs the uplink serving its local address), then bridges
    /// with their ports. Each uplink and port that comes back gets its
    /// receive queues moved to the polling threads `pmd_assign` chose. An
    /// uplink, bridge, port, static MAC or queue move the datapath refuses
    /// is reported on stderr and kept in the configuration (shown as down,
    /// with why), and tried again every tick (`retry_down`); only an
    /// unreadable db is an error.
    pub fn restore(db_path: &Path, dp: D) -> Result<State<D>, String> {
        let config = db::load(db_path)?;
        let bridges = config.bridges.clone();
        let uplinks = config.uplinks.clone();
        let mut st = State {
            config,
            db_path: db_path.to_path_buf(),
            dp,
            down_bridges: HashMap::new(),
            down_ports: HashMap::new(),
            down_uplinks: HashMap::new(),
            cluster: None,
            peers: Default::default(),
            cluster_remotes: HashMap::new(),
            captures: HashMap::new(),
            capture_drops: HashMap::new(),
            remote_neigh: HashMap::new(),
            remote_neigh_error: HashMap::new(),
            ticks: 0,
        };
        for up in &uplinks {
            st.replay_uplink(up);
        }
        for br in &bridges {
            st.replay_bridge(br);
        }
        Ok(st)
    }

    /// The configuration as last saved.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The datapath.
    pub fn datapath(&self) -> &D {
        &self.dp
    }

    /// The datapath, mutably (e.g. to stop it at shutdown).
    pub fn datapath_mut(&mut self) -> &mut D {
        &mut self.dp
    }

    /// Gives the datapath back, e.g. to shut it down.
    pub fn into_datapath(self) -> D {
        self.dp
    }

    /// Frequent housekeeping: the kernel executors follow what was learned.
    pub fn sync(&mut self) {
        self.dp.sync();
    }

    /// Periodic housekeeping; call about once a second.
    pub fn tick(&mut self) {
        self.dp.tick();
        self.retry_down();
        self.ticks += 1;
        if self.ticks.is_multiple_of(GC_TICKS) {
            self.collect_gone_containers();
        }
        self.sync_cluster(true);
    }

    /// Removes each container port whose interface is gone: its container
    /// ended without a CNI DEL (killed runtime, crashed host tooling), and
    /// the port would otherwise stay in the configuration forever.
    fn collect_gone_containers(&mut self) {
        let gone: Vec<(String, PortConfig)> = self
            .config
            .bridges
            .iter()
            .flat_map(|b| b.ports.iter().map(move |p| (b, p)))
            .filter(|(_, p)| p.owner.is_some() && self.dp.device_gone(p))
            .map(|(b, p)| (b.name.clone(), p.clone()))
            .collect();
        for (bridge, p) in gone {
            let owner = p.owner.as_ref().map_or("", |o| o.container.as_str());
            match self.port_del(&bridge, &p.name) {
                Ok(()) => tracing::info!(
                    target: crate::obs::log::CONFIG,
                    "port del {bridge} {}: container {owner} is gone (no {} any more)",
                    p.name,
                    p.device()
                ),
                Err(e) => tracing::warn!("port {}: container {owner} is gone, but the port stays: {e}", p.name),
            }
        }
    }

    /// Tries again each configured uplink, bridge and port that is down
    /// because the datapath refused it (at restore, or since): an interface
    /// not there yet at boot, an uplink address not configured yet. Uplinks
    /// first, as at restore: a tunnel needs the uplink of its address.
    fn retry_down(&mut self) {
        if self.down_uplinks.is_empty() && self.down_bridges.is_empty() && self.down_ports.is_empty() {
            return;
        }
        let uplinks: Vec<UplinkConfig> =
            self.config.uplinks.iter().filter(|u| self.down_uplinks.contains_key(&u.name)).cloned().collect();
        for up in &uplinks {
            self.replay_uplink(up);
        }
        let bridges = self.config.bridges.clone();
        for br in &bridges {
            if self.down_bridges.contains_key(&br.name) {
                self.replay_bridge(br);
                continue;
            }
            let down: Vec<&PortConfig> = br.ports.iter().filter(|p| self.down_ports.contains_key(&p.name)).collect();
            for p in down {
                self.replay_port(br, p);
            }
        }
    }

    /// Answers one request; an accepted change is logged in one line.
    pub fn handle(&mut self, req: Request) -> Reply {
        if let Err(e) = proto::check_version(req.version) {
            return Reply::err(e);
        }
        let tunnels_change = matches!(
            req.cmd,
            Command::PortAdd { .. }
                | Command::PortDel { .. }
                | Command::PortSetRemotes { .. }
                | Command::BridgeDel { .. }
        );
        if let Command::PortAdd { port: PortConfig { name, .. }, .. } | Command::PortDel { port: name, .. } = &req.cmd {
            let name = name.clone();
            self.forget_cluster_port(&name);
        }
        let change = change_line(&req.cmd);
        let reply = self.answer(req.cmd);
        if tunnels_change {
            // A tunnel added or emptied of remotes takes the cluster's now.
            self.sync_cluster(false);
        }
        if let (true, Some(line)) = (reply.ok, change) {
            tracing::info!(target: crate::obs::log::CONFIG, "{line}");
        }
        reply
    }

    /// The kind of `cmd`'s failure, should it fail: it adds what already
    /// exists, or names what does not (for `--may-exist`, `--if-exists`
    /// and exit codes automation can tell apart).
    fn presence(&self, cmd: &Command) -> Option<ErrorKind> {
        let bridge = |b: &str| self.bridge_idx(b).is_ok();
        let port = |p: &str| self.port_loc(p).is_some();
        let uplink = |u: &str| self.config.uplinks.iter().any(|x| x.name == u);
        match cmd {
            Command::BridgeAdd { bridge: b, .. } if bridge(b) => Some(ErrorKind::Exists),
            Command::PortAdd { port: p, .. } if port(&p.name) || uplink(&p.name) => Some(ErrorKind::Exists),
            Command::UplinkAdd { uplink: u } if uplink(&u.name) || port(&u.name) => Some(ErrorKind::Exists),
            Command::BridgeDel { bridge: b }
            | Command::BridgeSet { bridge: b, .. }
            | Command::FdbShow { bridge: b, .. }
            | Command::FdbFlush { bridge: b, .. }
                if !bridge(b) =>
            {
                Some(ErrorKind::NotFound)
            }
            Command::PortDel { bridge: b, port: p } | Command::PortSetRemotes { bridge: b, port: p, .. }
                if !bridge(b) || !port(p) =>
            {
                Some(ErrorKind::NotFound)
            }
            Command::UplinkDel { uplink: u } if !uplink(u) => Some(ErrorKind::NotFound),
            Command::NeighAdd { bridge: b, ip, vlan, mac, .. } => self.neigh_presence(b, ip, *vlan, Some(mac)),
            Command::NeighDel { bridge: b, ip, vlan } => self.neigh_presence(b, ip, *vlan, None),
            Command::NeighShow { bridge: Some(b) } if !bridge(b) => Some(ErrorKind::NotFound),
            _ => None,
        }
    }

    fn answer(&mut self, cmd: Command) -> Reply {
        match self.presence(&cmd) {
            Some(kind) => self.dispatch(cmd).with_kind(kind),
            None => self.dispatch(cmd),
        }
    }

    fn dispatch(&mut self, cmd: Command) -> Reply {
        match cmd {
            Command::BridgeAdd { bridge, aging_secs, max_macs, gateway } => {
                Reply::from_result(self.bridge_add(bridge, aging_secs, max_macs, gateway))
            }
            Command::BridgeDel { bridge } => Reply::from_result(self.bridge_del(&bridge)),
            Command::BridgeList => Reply::from_result(Ok(self.bridge_list())),
            Command::BridgeSet { bridge, aging_secs, max_macs, gateway } => {
                Reply::from_result(self.bridge_set(&bridge, aging_secs, max_macs, gateway))
            }
            Command::PortAdd { bridge, port } => Reply::from_result(self.port_add(&bridge, port)),
            Command::PortDel { bridge, port } => Reply::from_result(self.port_del(&bridge, &port)),
            Command::PortSetRemotes { bridge, port, remotes, expect_remotes } => {
                Reply::from_result(self.port_set_remotes(&bridge, &port, remotes, expect_remotes))
            }
            Command::UplinkAdd { uplink } => Reply::from_result(self.uplink_add(uplink)),
            Command::UplinkDel { uplink } => Reply::from_result(self.uplink_del(&uplink)),
            Command::UplinkList => Reply::from_result(Ok(self.uplink_list())),
            Command::Show => Reply::from_result(Ok(self.show())),
            Command::FdbShow { bridge, after, limit } => Reply::from_result(self.fdb_show(&bridge, after, limit)),
            Command::FdbAdd { bridge, mac, vlan, port } => Reply::from_result(self.fdb_add(&bridge, &mac, vlan, &port)),
            Command::FdbDel { bridge, mac, vlan } => Reply::from_result(self.fdb_del(&bridge, &mac, vlan)),
            Command::FdbFlush { bridge, port } => Reply::from_result(self.fdb_flush(&bridge, port.as_deref())),
            Command::NeighAdd { bridge, ip, mac, vlan, port } => {
                Reply::from_result(self.neigh_add(&bridge, &ip, &mac, vlan, port))
            }
            Command::NeighDel { bridge, ip, vlan } => Reply::from_result(self.neigh_del(&bridge, &ip, vlan)),
            Command::NeighShow { bridge } => Reply::from_result(self.neigh_show(bridge.as_deref())),
            Command::Stats { port } => Reply::from_result(self.stats(port.as_deref())),
            Command::PmdShow => Reply::from_result(Ok(self.dp.threads())),
            Command::PmdAssign { port, queue, core } => Reply::from_result(self.pmd_assign(&port, queue, core)),
            Command::FlowsShow => Reply::from_result(Ok(self.flows_show())),
            Command::FlowsFlush => {
                self.dp.flows_flush();
                Reply::from_result(Ok(()))
            }
            Command::ClusterShow => Reply::from_result(Ok(self.cluster_show())),
            // The control server answers this itself and turns the
            // connection into a stream; other callers cannot stream.
            Command::Capture { .. } => Reply::err("capture needs a connection to the control socket"),
            Command::LogLevel { filter } => Reply::from_result(crate::obs::log::set(&filter)),
            Command::Trace { bridge, port, frame } => Reply::from_result(self.trace(&bridge, &port, &frame)),
            Command::Ping => Reply::from_result(Ok(PingResult {
                daemon_version: env!("CARGO_PKG_VERSION").to_string(),
                protocol_versions: proto::SUPPORTED_VERSIONS.to_vec(),
            })),
        }
    }

    // ---- lookups ----

    fn bridge_idx(&self, name: &str) -> Result<usize, String> {
        self.config.bridges.iter().position(|b| b.name == name).ok_or_else(|| unknown_bridge(name))
    }

    /// (bridge index, port index) of a port in any bridge.
    fn port_loc(&self, name: &str) -> Option<(usize, usize)> {
        self.config
            .bridges
            .iter()
            .enumerate()
            .find_map(|(i, b)| b.ports.iter().position(|p| p.name == name).map(|j| (i, j)))
    }

    fn uplink_idx(&self, name: &str) -> Option<usize> {
        self.config.uplinks.iter().position(|u| u.name == name)
    }

    /// Index of `port` in bridge `i`, or an error saying where it is.
    fn port_in_bridge(&self, i: usize, port: &str) -> Result<usize, String> {
        let br = &self.config.bridges[i];
        if let Some(j) = br.ports.iter().position(|p| p.name == port) {
            return Ok(j);
        }
        Err(match self.port_loc(port) {
            Some((k, _)) => format!("port {port:?} is in bridge {:?}, not {:?}", self.config.bridges[k].name, br.name),
            None => format!("unknown port {port:?} in bridge {:?}", br.name),
        })
    }

    // ---- replay ----

    /// Puts an uplink into the datapath, noting why if it fails.
    fn replay_uplink(&mut self, up: &UplinkConfig) {
        match self.dp.add_uplink(up) {
            Err(e) => note_down(&mut self.down_uplinks, "uplink", &up.name, e),
            Ok(()) => {
                note_up(&mut self.down_uplinks, "uplink", &up.name);
                self.replay_pmd("uplink", &up.name, &up.pmd);
            }
        }
    }

    /// Puts a bridge, its ports and static MACs into the datapath, noting
    /// what failed and why.
    fn replay_bridge(&mut self, br: &BridgeConfig) {
        if let Err(e) = self.dp.add_bridge(br) {
            for p in &br.ports {
                self.down_ports.insert(p.name.clone(), format!("bridge {:?} is down", br.name));
            }
            note_down(&mut self.down_bridges, "bridge", &br.name, e);
            return;
        }
        note_up(&mut self.down_bridges, "bridge", &br.name);
        self.replay_neigh(&br.name, &br.neighbors);
        for p in &br.ports {
            self.replay_port(br, p);
        }
    }

    /// Puts a port and its static MACs into the datapath.
    fn replay_port(&mut self, br: &BridgeConfig, p: &PortConfig) {
        if let Err(e) = self.dp.add_port(&br.name, p) {
            note_down(&mut self.down_ports, "port", &p.name, e);
            return;
        }
        note_up(&mut self.down_ports, "port", &p.name);
        for m in br.static_macs.iter().filter(|m| m.port == p.name) {
            let res = proto::parse_mac(&m.mac, true).and_then(|mac| self.dp.fdb_add(&br.name, mac, m.vlan, &m.port));
            if let Err(e) = res {
                tracing::warn!("static MAC {} VLAN {} on port {:?} not restored: {e}", m.mac, m.vlan, m.port);
            }
        }
        self.replay_pmd("port", &p.name, &p.pmd);
    }

    /// Moves the queues of a port or uplink that just came (back) up to the
    /// polling threads the configuration names. A queue the datapath will
    /// not move is a warning: it keeps polling where the datapath put it,
    /// and the assignment stays in the configuration for the next restart.
    fn replay_pmd(&mut self, what: &str, name: &str, pmd: &[(u32, usize)]) {
        for &(queue, core) in pmd {
            if let Err(e) = self.dp.pmd_assign(name, queue, core) {
                tracing::warn!(
                    "queue {queue} of {what} {name:?} not moved to core {core}: {e}; kept in the configuration"
                );
            }
        }
    }

    /// Saves `new` and makes it current; on failure runs `undo` and fails.
    fn commit(&mut self, new: Config, undo: impl FnOnce(&mut Self)) -> Result<(), String> {
        match db::save(&self.db_path, &new) {
            Ok(()) => {
                self.config = new;
                Ok(())
            }
            Err(e) => {
                undo(self);
                Err(format!("{e} (the change was undone)"))
            }
        }
    }
}

/// Records why `name` is down; a warning when that is news (it is tried
/// again every tick, and a reason that stays is said once).
fn note_down(down: &mut HashMap<String, String>, what: &str, name: &str, why: String) {
    if down.get(name) != Some(&why) {
        tracing::warn!(target: crate::obs::log::LINK, "{what} {name:?} is down: {why}; kept in the configuration, tried again every second");
    }
    down.insert(name.to_string(), why);
}

/// Forgets why `name` was down, saying it came up if it was.
fn note_up(down: &mut HashMap<String, String>, what: &str, name: &str) {
    if let Some(why) = down.remove(name) {
        tracing::info!(target: crate::obs::log::LINK, "{what} {name:?} is up (it was down: {why})");
    }
}

#[cfg(test)]
mod tests;
