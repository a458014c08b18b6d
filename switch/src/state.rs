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
use rvs_proto::config::{self, BridgeConfig, Config, PortConfig, PortType, PortVlan, StaticMac, UplinkConfig};
use rvs_proto::status::{FdbEntryInfo, FlowInfo, PortStatsInfo, PortStatus, ThreadInfo, TraceResult, UplinkStatus};
use rvs_proto::{
    self as proto, BridgeShow, BridgeSummary, CaptureDirection, Command, FlushResult, PingResult, PortShow, Reply,
    Request, ShowResult, UplinkShow,
};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod membership;

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
    /// Ports and uplinks with a capture running.
    captures: HashSet<String>,
}

/// The log line for a request that changes the configuration (or the log
/// filter), None for one that only reads.
fn change_line(cmd: &Command) -> Option<String> {
    Some(match cmd {
        Command::BridgeAdd { bridge, .. } => format!("bridge {bridge} added"),
        Command::BridgeDel { bridge } => format!("bridge {bridge} deleted with its ports"),
        Command::BridgeSet { bridge, aging_secs, max_macs } => {
            let mut what = Vec::new();
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
        Command::PmdAssign { port, queue, core } => format!("queue {queue} of {port} assigned to core {core}"),
        Command::LogLevel { filter } => format!("log filter set to {filter:?}"),
        _ => return None,
    })
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
    /// is reported on stderr and kept in the configuration (shown as down);
    /// only an unreadable db is an error.
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
            captures: HashSet::new(),
        };
        for up in &uplinks {
            if let Err(e) = st.dp.add_uplink(up) {
                tracing::warn!("uplink {:?} not restored: {e}; kept in the configuration", up.name);
                st.down_uplinks.insert(up.name.clone(), e);
            } else {
                st.replay_pmd("uplink", &up.name, &up.pmd);
            }
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

    /// Periodic housekeeping; call about once a second.
    pub fn tick(&mut self) {
        self.dp.tick();
        self.sync_cluster(true);
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
            tracing::info!(target: crate::log::CONFIG, "{line}");
        }
        reply
    }

    fn answer(&mut self, cmd: Command) -> Reply {
        match cmd {
            Command::BridgeAdd { bridge, aging_secs, max_macs } => {
                Reply::from_result(self.bridge_add(bridge, aging_secs, max_macs))
            }
            Command::BridgeDel { bridge } => Reply::from_result(self.bridge_del(&bridge)),
            Command::BridgeList => Reply::from_result(Ok(self.bridge_list())),
            Command::BridgeSet { bridge, aging_secs, max_macs } => {
                Reply::from_result(self.bridge_set(&bridge, aging_secs, max_macs))
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
            Command::FdbShow { bridge } => Reply::from_result(self.fdb_show(&bridge)),
            Command::FdbAdd { bridge, mac, vlan, port } => Reply::from_result(self.fdb_add(&bridge, &mac, vlan, &port)),
            Command::FdbDel { bridge, mac, vlan } => Reply::from_result(self.fdb_del(&bridge, &mac, vlan)),
            Command::FdbFlush { bridge, port } => Reply::from_result(self.fdb_flush(&bridge, port.as_deref())),
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
            Command::LogLevel { filter } => Reply::from_result(crate::log::set(&filter)),
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

    /// Puts a bridge, its ports and static MACs into the datapath, noting
    /// what failed; failures are warnings on stderr.
    fn replay_bridge(&mut self, br: &BridgeConfig) {
        if let Err(e) = self.dp.add_bridge(br) {
            tracing::warn!("bridge {:?} not restored: {e}; kept in the configuration", br.name);
            for p in &br.ports {
                self.down_ports.insert(p.name.clone(), format!("bridge {:?} is down", br.name));
            }
            self.down_bridges.insert(br.name.clone(), e);
            return;
        }
        self.down_bridges.remove(&br.name);
        for p in &br.ports {
            self.replay_port(br, p);
        }
    }

    /// Puts a port and its static MACs into the datapath.
    fn replay_port(&mut self, br: &BridgeConfig, p: &PortConfig) {
        if let Err(e) = self.dp.add_port(&br.name, p) {
            tracing::warn!("port {:?} of bridge {:?} not restored: {e}; kept in the configuration", p.name, br.name);
            self.down_ports.insert(p.name.clone(), e);
            return;
        }
        self.down_ports.remove(&p.name);
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

    // ---- commands ----

    fn bridge_add(&mut self, name: String, aging: Option<u32>, max_macs: Option<u32>) -> Result<(), String> {
        proto::check_name("bridge", &name)?;
        if self.bridge_idx(&name).is_ok() {
            return Err(format!("bridge {name:?} already exists"));
        }
        let mut br = BridgeConfig::new(&name);
        if let Some(a) = aging {
            proto::check_aging(a)?;
            br.aging_secs = a;
        }
        if let Some(m) = max_macs {
            proto::check_max_macs(m)?;
            br.max_macs = m;
        }
        self.dp.add_bridge(&br)?;
        let mut new = self.config.clone();
        new.bridges.push(br);
        self.commit(new, |s| {
            let _ = s.dp.del_bridge(&name);
        })
    }

    fn bridge_set(&mut self, name: &str, aging: Option<u32>, max_macs: Option<u32>) -> Result<(), String> {
        let i = self.bridge_idx(name)?;
        if aging.is_none() && max_macs.is_none() {
            return Err("nothing to change (give an aging time or a MAC limit)".to_string());
        }
        let old = self.config.bridges[i].clone();
        let mut br = old.clone();
        if let Some(a) = aging {
            proto::check_aging(a)?;
            br.aging_secs = a;
        }
        if let Some(m) = max_macs {
            proto::check_max_macs(m)?;
            br.max_macs = m;
        }
        if br == old {
            return Ok(());
        }
        let live = !self.down_bridges.contains_key(name);
        if live {
            self.dp.set_bridge(&br)?;
        }
        let mut new = self.config.clone();
        new.bridges[i] = br;
        self.commit(new, |s| {
            if live {
                let _ = s.dp.set_bridge(&old);
            }
        })
    }

    fn bridge_del(&mut self, name: &str) -> Result<(), String> {
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

    fn bridge_list(&self) -> Vec<BridgeSummary> {
        self.config
            .bridges
            .iter()
            .map(|b| BridgeSummary {
                name: b.name.clone(),
                aging_secs: b.aging_secs,
                max_macs: b.max_macs,
                ports: b.ports.len(),
            })
            .collect()
    }

    fn port_add(&mut self, bridge: &str, mut port: PortConfig) -> Result<(), String> {
        let i = self.bridge_idx(bridge)?;
        if let PortVlan::Trunk { vlans, .. } = &mut port.vlan {
            vlans.sort_unstable();
            vlans.dedup();
        }
        proto::check_port(&port)?;
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
        let name = port.name.clone();
        let mut new = self.config.clone();
        new.bridges[i].ports.push(port);
        self.commit(new, |s| {
            let _ = s.dp.del_port(&name);
        })?;
        self.down_ports.remove(&name);
        Ok(())
    }

    fn port_del(&mut self, bridge: &str, port: &str) -> Result<(), String> {
        let i = self.bridge_idx(bridge)?;
        let j = self.port_in_bridge(i, port)?;
        let br = self.config.bridges[i].clone();
        let p = br.ports[j].clone();
        let live = !self.down_ports.contains_key(port);
        if live {
            self.dp.del_port(port)?;
        }
        let mut new = self.config.clone();
        new.bridges[i].ports.remove(j);
        new.bridges[i].static_macs.retain(|m| m.port != port);
        self.commit(new, |s| {
            if live {
                s.replay_port(&br, &p);
            }
        })?;
        self.down_ports.remove(port);
        Ok(())
    }

    fn port_set_remotes(
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

    fn uplink_add(&mut self, up: UplinkConfig) -> Result<(), String> {
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

    fn uplink_del(&mut self, name: &str) -> Result<(), String> {
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

    fn uplink_list(&self) -> Vec<UplinkShow> {
        let status = self.dp.uplink_status();
        self.config
            .uplinks
            .iter()
            .map(|u| UplinkShow {
                config: u.clone(),
                status: status.iter().find(|s| s.name == u.name).cloned().unwrap_or_else(|| UplinkStatus {
                    name: u.name.clone(),
                    state: format!(
                        "down: {}",
                        self.down_uplinks.get(&u.name).map(String::as_str).unwrap_or("not in the datapath")
                    ),
                    xdp_mode: String::new(),
                    mtu: 0,
                    vteps: Vec::new(),
                    queues: Vec::new(),
                }),
            })
            .collect()
    }

    fn show(&self) -> ShowResult {
        let status = self.dp.port_status();
        let bridges = self
            .config
            .bridges
            .iter()
            .map(|b| BridgeShow {
                name: b.name.clone(),
                aging_secs: b.aging_secs,
                max_macs: b.max_macs,
                ports: b
                    .ports
                    .iter()
                    .map(|p| PortShow {
                        config: p.clone(),
                        status: status.iter().find(|s| s.name == p.name).cloned().unwrap_or_else(|| PortStatus {
                            name: p.name.clone(),
                            bridge: b.name.clone(),
                            kind: p.kind.name().to_string(),
                            state: format!(
                                "down: {}",
                                self.down_ports.get(&p.name).map(String::as_str).unwrap_or("not in the datapath")
                            ),
                            xdp_mode: String::new(),
                            queues: Vec::new(),
                            inner_mtu: None,
                            remotes: Vec::new(),
                        }),
                    })
                    .collect(),
                static_macs: b.static_macs.clone(),
            })
            .collect();
        ShowResult { uplinks: self.uplink_list(), bridges, threads: self.dp.threads() }
    }

    fn fdb_show(&self, bridge: &str) -> Result<Vec<FdbEntryInfo>, String> {
        self.bridge_idx(bridge)?;
        if self.down_bridges.contains_key(bridge) {
            return Ok(Vec::new());
        }
        self.dp.fdb_show(bridge)
    }

    fn fdb_add(&mut self, bridge: &str, mac: &str, vlan: u16, port: &str) -> Result<(), String> {
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

    fn fdb_del(&mut self, bridge: &str, mac: &str, vlan: u16) -> Result<(), String> {
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

    fn fdb_flush(&mut self, bridge: &str, port: Option<&str>) -> Result<FlushResult, String> {
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

    fn stats(&self, port: Option<&str>) -> Result<Vec<PortStatsInfo>, String> {
        let all = self.dp.port_stats();
        let Some(name) = port else {
            return Ok(all);
        };
        let Some((i, _)) = self.port_loc(name) else {
            return Err(format!("unknown port {name:?}"));
        };
        let mine: Vec<PortStatsInfo> = all.into_iter().filter(|s| s.name == name).collect();
        if !mine.is_empty() {
            return Ok(mine);
        }
        Ok(vec![PortStatsInfo {
            name: name.to_string(),
            bridge: self.config.bridges[i].name.clone(),
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            learn_refused: 0,
            forwarded: 0,
            flooded: 0,
            kernel_drops: 0,
            drops: Vec::new(),
            link_downs: 0,
        }])
    }

    fn trace(&self, bridge: &str, port: &str, frame: &str) -> Result<TraceResult, String> {
        let frame = rvs_proto::framedesc::parse(frame)?;
        let i = self.bridge_idx(bridge)?;
        if self.uplink_idx(port).is_none() {
            self.port_in_bridge(i, port)?;
        }
        for (what, down) in [("port", &self.down_ports), ("uplink", &self.down_uplinks)] {
            if let Some(why) = down.get(port) {
                return Err(format!("{what} {port:?} is down ({why})"));
            }
        }
        self.dp.trace(bridge, port, &frame)
    }

    /// Starts a capture on port or uplink `port` for a streaming client;
    /// one capture per port at a time.
    pub fn capture_start(
        &mut self,
        port: &str,
        dir: CaptureDirection,
        snaplen: u32,
    ) -> Result<Arc<CaptureRing>, String> {
        if !self.has_port(port) {
            return Err(format!("unknown port or uplink {port:?}"));
        }
        for (what, down) in [("port", &self.down_ports), ("uplink", &self.down_uplinks)] {
            if let Some(why) = down.get(port) {
                return Err(format!("{what} {port:?} is down ({why})"));
            }
        }
        if self.captures.contains(port) {
            return Err(format!("a capture already runs on {port:?}"));
        }
        let dir = match dir {
            CaptureDirection::In => Direction::In,
            CaptureDirection::Out => Direction::Out,
            CaptureDirection::Both => Direction::Both,
        };
        let ring = self.dp.capture_start(port, dir, snaplen)?;
        self.captures.insert(port.to_string());
        Ok(ring)
    }

    /// Stops the capture on `port`, if one runs.
    pub fn capture_stop(&mut self, port: &str) {
        if self.captures.remove(port) {
            self.dp.capture_stop(port);
        }
    }

    /// True if `name` is a configured port or uplink.
    pub fn has_port(&self, name: &str) -> bool {
        self.port_loc(name).is_some() || self.uplink_idx(name).is_some()
    }

    /// Polling threads, as `pmd_show` reports them.
    pub fn threads(&self) -> Vec<ThreadInfo> {
        self.dp.threads()
    }

    fn flows_show(&self) -> Vec<FlowInfo> {
        self.dp.flows()
    }

    /// The core now polling `queue` of port or uplink `name`, as the
    /// datapath reports it.
    fn polling_core(&self, name: &str, queue: u32) -> Option<usize> {
        let ports = self.dp.port_status().into_iter().filter(|p| p.name == name).flat_map(|p| p.queues);
        let uplinks = self.dp.uplink_status().into_iter().filter(|u| u.name == name).flat_map(|u| u.queues);
        ports.chain(uplinks).find(|&(q, _)| q == queue).map(|(_, core)| core)
    }

    fn pmd_assign(&mut self, name: &str, queue: u32, core: usize) -> Result<(), String> {
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

/// A Datapath fake for tests: keeps tables in maps and fails on request.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use crate::datapath::DpResult;
    use rvs_proto::status::RemoteStatus;
    use std::collections::{BTreeMap, HashSet};
    use std::sync::{Arc, Mutex};

    /// What the fake holds; shared so a test can look inside after moving
    /// the fake into a `State`.
    #[derive(Default, Debug)]
    pub(crate) struct Inner {
        pub bridges: BTreeMap<String, BridgeConfig>,
        pub ports: BTreeMap<String, (String, PortConfig)>,
        pub fdb: BTreeMap<(String, MacAddr, u16), (String, bool)>,
        pub uplinks: BTreeMap<String, UplinkConfig>,
        /// Every successful add_uplink/add_bridge/add_port, in order.
        pub log: Vec<String>,
        /// add_port and add_uplink fail for these names, like a missing interface.
        pub missing: HashSet<String>,
        /// The next mutating call fails with this message.
        pub fail_next: Option<String>,
        pub ticks: usize,
        /// Queue moves: (port or uplink, queue) → core. Every port and uplink
        /// has queues 0 and 1, polled on core 1 unless moved.
        pub pmd: BTreeMap<(String, u32), usize>,
        /// Cores with no polling thread (the fake has threads on 1 and 2).
        pub no_thread: HashSet<usize>,
        /// The flow caches.
        pub flows: Vec<FlowInfo>,
        /// Running captures (64-frame rings).
        pub captures: BTreeMap<String, Arc<CaptureRing>>,
    }

    /// Cores the fake has polling threads on.
    pub(crate) const FAKE_CORES: [usize; 2] = [1, 2];
    /// Receive queues of every fake port and uplink.
    pub(crate) const FAKE_QUEUES: u32 = 2;

    impl Inner {
        fn queues(&self, name: &str) -> Vec<(u32, usize)> {
            (0..FAKE_QUEUES).map(|q| (q, self.pmd.get(&(name.to_string(), q)).copied().unwrap_or(1))).collect()
        }
    }

    #[derive(Clone, Default)]
    pub(crate) struct FakeDp(pub Arc<Mutex<Inner>>);

    impl FakeDp {
        pub fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
            self.0.lock().unwrap()
        }
        fn check(&self) -> DpResult<()> {
            match self.inner().fail_next.take() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
    }

    impl Datapath for FakeDp {
        fn add_bridge(&mut self, br: &BridgeConfig) -> DpResult<()> {
            self.check()?;
            let mut g = self.inner();
            if g.bridges.contains_key(&br.name) {
                return Err("fake: bridge exists".into());
            }
            g.bridges.insert(br.name.clone(), br.clone());
            g.log.push(format!("bridge {}", br.name));
            Ok(())
        }
        fn set_bridge(&mut self, br: &BridgeConfig) -> DpResult<()> {
            self.check()?;
            match self.inner().bridges.get_mut(&br.name) {
                Some(b) => {
                    *b = br.clone();
                    Ok(())
                }
                None => Err("fake: no bridge".into()),
            }
        }
        fn del_bridge(&mut self, name: &str) -> DpResult<()> {
            self.check()?;
            let mut g = self.inner();
            if g.ports.values().any(|(b, _)| b == name) {
                return Err("fake: bridge has ports".into());
            }
            g.bridges.remove(name).map(|_| ()).ok_or("fake: no bridge".into())
        }
        fn add_port(&mut self, bridge: &str, port: &PortConfig) -> DpResult<()> {
            self.check()?;
            let mut g = self.inner();
            if g.missing.contains(&port.name) {
                return Err(format!("no interface {:?}", port.name));
            }
            if !g.bridges.contains_key(bridge) || g.ports.contains_key(&port.name) {
                return Err("fake: bad add_port".into());
            }
            if let Some(v) = &port.vxlan {
                if g.uplinks.is_empty() {
                    return Err(format!("no uplink serves local address {}", v.local));
                }
            }
            g.ports.insert(port.name.clone(), (bridge.to_string(), port.clone()));
            g.log.push(format!("port {}", port.name));
            Ok(())
        }
        fn del_port(&mut self, name: &str) -> DpResult<()> {
            self.check()?;
            let mut g = self.inner();
            g.fdb.retain(|_, (p, _)| p != name);
            g.pmd.retain(|(p, _), _| p != name);
            g.ports.remove(name).map(|_| ()).ok_or("fake: no port".into())
        }
        fn fdb_add(&mut self, bridge: &str, mac: MacAddr, vlan: u16, port: &str) -> DpResult<()> {
            self.check()?;
            let mut g = self.inner();
            if !g.ports.contains_key(port) {
                return Err("fake: no port".into());
            }
            g.fdb.insert((bridge.to_string(), mac, vlan), (port.to_string(), true));
            Ok(())
        }
        fn fdb_del(&mut self, bridge: &str, mac: MacAddr, vlan: u16) -> DpResult<bool> {
            self.check()?;
            Ok(self.inner().fdb.remove(&(bridge.to_string(), mac, vlan)).is_some())
        }
        fn fdb_flush(&mut self, bridge: &str, port: Option<&str>) -> DpResult<usize> {
            self.check()?;
            let mut g = self.inner();
            let before = g.fdb.len();
            g.fdb.retain(|(b, _, _), (p, st)| *st || b != bridge || port.is_some_and(|want| want != p));
            Ok(before - g.fdb.len())
        }
        fn fdb_show(&self, bridge: &str) -> DpResult<Vec<FdbEntryInfo>> {
            Ok(self
                .inner()
                .fdb
                .iter()
                .filter(|((b, _, _), _)| b == bridge)
                .map(|((_, mac, vlan), (port, st))| FdbEntryInfo {
                    mac: mac.to_string(),
                    vlan: *vlan,
                    port: port.clone(),
                    is_static: *st,
                    age_secs: 0,
                    remote: None,
                })
                .collect())
        }
        fn port_status(&self) -> Vec<PortStatus> {
            let g = self.inner();
            g.ports
                .iter()
                .map(|(n, (b, p))| PortStatus {
                    name: n.clone(),
                    bridge: b.clone(),
                    kind: p.kind.name().into(),
                    state: "up".into(),
                    xdp_mode: "generic".into(),
                    queues: g.queues(n),
                    inner_mtu: p.vxlan.as_ref().map(|v| if v.local.is_ipv4() { 1450 } else { 1430 }),
                    remotes: p
                        .vxlan
                        .iter()
                        .flat_map(|v| &v.remotes)
                        .enumerate()
                        .map(|(k, ip)| RemoteStatus {
                            ip: ip.to_string(),
                            next_hop_mac: (k == 0).then(|| "02:00:00:00:00:fe".to_string()),
                        })
                        .collect(),
                })
                .collect()
        }
        fn port_stats(&self) -> Vec<PortStatsInfo> {
            self.inner()
                .ports
                .iter()
                .map(|(n, (b, _))| PortStatsInfo {
                    name: n.clone(),
                    bridge: b.clone(),
                    rx_packets: 10,
                    rx_bytes: 1000,
                    tx_packets: 5,
                    tx_bytes: 500,
                    learn_refused: 0,
                    forwarded: 3,
                    flooded: 5,
                    kernel_drops: 0,
                    drops: vec![("runt".into(), 2)],
                    link_downs: 0,
                })
                .collect()
        }
        fn threads(&self) -> Vec<ThreadInfo> {
            vec![ThreadInfo {
                core: 1,
                rx_queues: self.inner().ports.keys().map(|n| (n.clone(), 0)).collect(),
                packets: 42,
                busy_ns: 25,
                idle_ns: 75,
                ..ThreadInfo::default()
            }]
        }
        fn tick(&mut self) {
            self.inner().ticks += 1;
        }
        fn capture_start(&mut self, port: &str, dir: Direction, snaplen: u32) -> DpResult<Arc<CaptureRing>> {
            let ring = CaptureRing::new(64, snaplen, dir);
            self.inner().captures.insert(port.to_string(), ring.clone());
            Ok(ring)
        }
        fn capture_stop(&mut self, port: &str) {
            self.inner().captures.remove(port);
        }
        fn add_uplink(&mut self, up: &UplinkConfig) -> DpResult<()> {
            self.check()?;
            let mut g = self.inner();
            if g.missing.contains(&up.name) {
                return Err(format!("no interface {:?}", up.name));
            }
            if g.uplinks.insert(up.name.clone(), up.clone()).is_some() {
                return Err("fake: uplink exists".into());
            }
            g.log.push(format!("uplink {}", up.name));
            Ok(())
        }
        fn del_uplink(&mut self, name: &str) -> DpResult<()> {
            self.check()?;
            let mut g = self.inner();
            if g.uplinks.len() == 1 && g.ports.values().any(|(_, p)| p.vxlan.is_some()) {
                return Err(format!("uplink {name:?} serves the local address of a vxlan port"));
            }
            g.pmd.retain(|(p, _), _| p != name);
            g.uplinks.remove(name).map(|_| ()).ok_or("fake: no uplink".into())
        }
        fn set_remotes(&mut self, port: &str, remotes: &[IpAddr]) -> DpResult<()> {
            self.check()?;
            match self.inner().ports.get_mut(port).and_then(|(_, p)| p.vxlan.as_mut()) {
                Some(v) => {
                    v.remotes = remotes.to_vec();
                    Ok(())
                }
                None => Err("fake: no vxlan port".into()),
            }
        }
        fn uplink_status(&self) -> Vec<UplinkStatus> {
            let g = self.inner();
            g.uplinks
                .values()
                .map(|u| UplinkStatus {
                    name: u.name.clone(),
                    state: "up".into(),
                    xdp_mode: "native".into(),
                    mtu: 1500,
                    vteps: vec!["198.18.1.1".into()],
                    queues: g.queues(&u.name),
                })
                .collect()
        }
        fn flows(&self) -> Vec<FlowInfo> {
            self.inner().flows.clone()
        }
        fn flows_flush(&mut self) {
            self.inner().flows.clear();
        }
        fn pmd_assign(&mut self, port: &str, queue: u32, core: usize) -> DpResult<()> {
            self.check()?;
            let mut g = self.inner();
            if !g.ports.contains_key(port) && !g.uplinks.contains_key(port) {
                return Err(format!("fake: no port {port:?}"));
            }
            if queue >= FAKE_QUEUES {
                return Err(format!("{port:?} has {FAKE_QUEUES} rx queues; there is no queue {queue}"));
            }
            if !FAKE_CORES.contains(&core) || g.no_thread.contains(&core) {
                return Err(format!("no polling thread on core {core}"));
            }
            g.pmd.insert((port.to_string(), queue), core);
            g.log.push(format!("pmd {port}/{queue}->{core}"));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeDp;
    use super::*;
    use crate::db::tests::temp_dir;
    use rvs_proto::config::{VxlanConfig, XdpMode};
    use rvs_proto::status::RemoteStatus;
    use serde_json::Value;
    use std::fs;

    fn port(name: &str) -> PortConfig {
        PortConfig {
            name: name.into(),
            kind: PortType::Afxdp,
            vlan: PortVlan::default(),
            queues: None,
            xdp_mode: XdpMode::Auto,
            netns: None,
            vxlan: None,
            pmd: Vec::new(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn vx(name: &str, vni: u32, local: &str, remotes: &[&str]) -> PortConfig {
        PortConfig {
            name: name.into(),
            kind: PortType::Vxlan,
            vlan: PortVlan::default(),
            queues: None,
            xdp_mode: XdpMode::Auto,
            netns: None,
            vxlan: Some(VxlanConfig::new(vni, ip(local), remotes.iter().map(|r| ip(r)).collect())),
            pmd: Vec::new(),
        }
    }

    fn assign(port: &str, queue: u32, core: usize) -> Command {
        Command::PmdAssign { port: port.into(), queue, core }
    }

    fn up_add(name: &str) -> Command {
        Command::UplinkAdd { uplink: UplinkConfig::new(name) }
    }

    fn set_remotes(br: &str, port: &str, remotes: &[&str]) -> Command {
        Command::PortSetRemotes {
            bridge: br.into(),
            port: port.into(),
            remotes: remotes.iter().map(|r| ip(r)).collect(),
            expect_remotes: None,
        }
    }

    fn setup(tag: &str) -> (State<FakeDp>, FakeDp, PathBuf) {
        let dir = temp_dir(tag);
        let db = dir.join("conf.json");
        let dp = FakeDp::default();
        let st = State::restore(&db, dp.clone()).unwrap();
        (st, dp, db)
    }

    fn run(st: &mut State<FakeDp>, cmd: Command) -> Result<Value, String> {
        let reply = st.handle(Request::new(cmd));
        // Every accepted change is in the db before the reply.
        if reply.ok {
            assert_eq!(&db::load(&st.db_path).unwrap(), st.config());
        }
        reply.into_result()
    }

    fn br_add(name: &str) -> Command {
        Command::BridgeAdd { bridge: name.into(), aging_secs: None, max_macs: None }
    }

    fn p_add(br: &str, p: PortConfig) -> Command {
        Command::PortAdd { bridge: br.into(), port: p }
    }

    #[test]
    fn bridges_and_ports() {
        let (mut st, dp, db) = setup("st-basic");
        run(&mut st, br_add("br0")).unwrap();
        assert_eq!(run(&mut st, br_add("br0")).unwrap_err(), "bridge \"br0\" already exists");
        run(&mut st, br_add("br1")).unwrap();
        run(&mut st, p_add("br0", port("veth-a"))).unwrap();
        assert_eq!(
            run(&mut st, p_add("br1", port("veth-a"))).unwrap_err(),
            "port \"veth-a\" already exists in bridge \"br0\""
        );
        assert_eq!(run(&mut st, p_add("br9", port("x"))).unwrap_err(), "unknown bridge \"br9\"");
        let mut bad = port("veth-b");
        bad.vlan = PortVlan::Access { vlan: 4095 };
        assert_eq!(run(&mut st, p_add("br0", bad)).unwrap_err(), "invalid VLAN 4095 (must be 1..=4094)");
        let mut bad = port("veth-b");
        bad.vlan = PortVlan::Trunk { vlans: vec![], native: None };
        assert!(run(&mut st, p_add("br0", bad)).is_err());
        let mut bad = port("veth-b");
        bad.netns = Some("ns1".into());
        assert!(run(&mut st, p_add("br0", bad)).is_err());
        assert!(run(&mut st, p_add("br0", port("this-name-is-too-long"))).is_err());
        let mut trunk = port("trunk0");
        trunk.vlan = PortVlan::Trunk { vlans: vec![20, 10, 20], native: None };
        run(&mut st, p_add("br1", trunk)).unwrap();
        assert_eq!(st.config().bridges[1].ports[0].vlan, PortVlan::Trunk { vlans: vec![10, 20], native: None });
        assert_eq!(dp.inner().ports.len(), 2);

        // show / list / stats / pmd read.
        let show: ShowResult = serde_json::from_value(run(&mut st, Command::Show).unwrap()).unwrap();
        assert_eq!(show.bridges.len(), 2);
        assert_eq!(show.bridges[0].ports[0].status.state, "up");
        assert_eq!(show.threads.len(), 1);
        let list: Vec<BridgeSummary> = serde_json::from_value(run(&mut st, Command::BridgeList).unwrap()).unwrap();
        assert_eq!(list[0].ports, 1);
        let stats: Vec<PortStatsInfo> =
            serde_json::from_value(run(&mut st, Command::Stats { port: Some("veth-a".into()) }).unwrap()).unwrap();
        assert_eq!(stats.len(), 1);
        assert!(run(&mut st, Command::Stats { port: Some("nope".into()) }).is_err());
        run(&mut st, Command::PmdShow).unwrap();
        run(&mut st, Command::Ping).unwrap();

        // bridge_set
        run(&mut st, Command::BridgeSet { bridge: "br0".into(), aging_secs: Some(60), max_macs: None }).unwrap();
        assert_eq!(dp.inner().bridges["br0"].aging_secs, 60);
        assert!(run(&mut st, Command::BridgeSet { bridge: "br0".into(), aging_secs: Some(0), max_macs: None }).is_err());

        // port_del, wrong bridge
        assert_eq!(
            run(&mut st, Command::PortDel { bridge: "br1".into(), port: "veth-a".into() }).unwrap_err(),
            "port \"veth-a\" is in bridge \"br0\", not \"br1\""
        );
        run(&mut st, Command::PortDel { bridge: "br0".into(), port: "veth-a".into() }).unwrap();
        // bridge_del removes its ports too
        run(&mut st, Command::BridgeDel { bridge: "br1".into() }).unwrap();
        assert!(dp.inner().ports.is_empty());
        assert_eq!(dp.inner().bridges.len(), 1);
        assert_eq!(db::load(&db).unwrap().bridges.len(), 1);
        // wrong version
        let r = st.handle(Request { version: 9, cmd: Command::Ping });
        assert!(r.error.unwrap().contains("unsupported protocol version 9"));
    }

    #[test]
    fn datapath_error_changes_nothing() {
        let (mut st, dp, db) = setup("st-dperr");
        run(&mut st, br_add("br0")).unwrap();
        let before = fs::read(&db).unwrap();
        let cfg = st.config().clone();
        dp.inner().fail_next = Some("no such interface".into());
        assert_eq!(run(&mut st, p_add("br0", port("veth-a"))).unwrap_err(), "no such interface");
        dp.inner().fail_next = Some("boom".into());
        assert!(run(&mut st, Command::BridgeDel { bridge: "br0".into() }).is_err());
        assert_eq!(st.config(), &cfg);
        assert_eq!(fs::read(&db).unwrap(), before);
        assert!(dp.inner().ports.is_empty());
        assert!(dp.inner().bridges.contains_key("br0"));
    }

    #[test]
    fn save_failure_undoes_datapath_change() {
        let (mut st, dp, db) = setup("st-savefail");
        run(&mut st, br_add("br0")).unwrap();
        // A directory where the temporary file goes makes every save fail.
        let mut tmp = db.clone().into_os_string();
        tmp.push(".tmp");
        fs::create_dir(&tmp).unwrap();
        let cfg = st.config().clone();
        let e = run(&mut st, p_add("br0", port("veth-a"))).unwrap_err();
        assert!(e.contains("cannot save configuration database"), "{e}");
        assert!(dp.inner().ports.is_empty());
        assert!(run(&mut st, br_add("br1")).is_err());
        assert!(!dp.inner().bridges.contains_key("br1"));
        assert!(run(&mut st, Command::BridgeDel { bridge: "br0".into() }).is_err());
        assert!(dp.inner().bridges.contains_key("br0"));
        assert_eq!(st.config(), &cfg);
        fs::remove_dir(&tmp).unwrap();
        run(&mut st, p_add("br0", port("veth-a"))).unwrap();
    }

    #[test]
    fn static_macs() {
        let (mut st, dp, _db) = setup("st-fdb");
        run(&mut st, br_add("br0")).unwrap();
        run(&mut st, br_add("br1")).unwrap();
        run(&mut st, p_add("br0", port("p1"))).unwrap();
        run(&mut st, p_add("br1", port("p2"))).unwrap();
        let add = |mac: &str, vlan: u16, port: &str| Command::FdbAdd {
            bridge: "br0".into(),
            mac: mac.into(),
            vlan,
            port: port.into(),
        };
        assert!(run(&mut st, add("01:00:5e:00:00:01", 1, "p1")).is_err());
        assert!(run(&mut st, add("nonsense", 1, "p1")).is_err());
        assert!(run(&mut st, add("02:00:00:00:00:01", 0, "p1")).is_err());
        assert!(run(&mut st, add("02:00:00:00:00:01", 10, "p1")).unwrap_err().contains("does not carry VLAN 10"));
        assert_eq!(
            run(&mut st, add("02:00:00:00:00:01", 1, "p2")).unwrap_err(),
            "port \"p2\" is not in bridge \"br0\""
        );
        run(&mut st, add("02:00:00:00:00:0A", 1, "p1")).unwrap();
        assert_eq!(st.config().bridges[0].static_macs[0].mac, "02:00:00:00:00:0a");
        run(&mut st, add("02:00:00:00:00:0a", 1, "p1")).unwrap();
        assert_eq!(st.config().bridges[0].static_macs.len(), 1);
        let fdb: Vec<FdbEntryInfo> =
            serde_json::from_value(run(&mut st, Command::FdbShow { bridge: "br0".into() }).unwrap()).unwrap();
        assert_eq!(fdb.len(), 1);
        assert!(fdb[0].is_static);
        let flushed: FlushResult =
            serde_json::from_value(run(&mut st, Command::FdbFlush { bridge: "br0".into(), port: None }).unwrap())
                .unwrap();
        assert_eq!(flushed.flushed, 0);
        let del = |mac: &str| Command::FdbDel { bridge: "br0".into(), mac: mac.into(), vlan: 1 };
        run(&mut st, del("02:00:00:00:00:0a")).unwrap();
        assert!(st.config().bridges[0].static_macs.is_empty());
        assert!(dp.inner().fdb.is_empty());
        assert!(run(&mut st, del("02:00:00:00:00:0a")).unwrap_err().contains("no FDB entry"));
        // Deleting the port drops its static entries from the config.
        run(&mut st, add("02:00:00:00:00:0b", 1, "p1")).unwrap();
        run(&mut st, Command::PortDel { bridge: "br0".into(), port: "p1".into() }).unwrap();
        assert!(st.config().bridges[0].static_macs.is_empty());
    }

    #[test]
    fn restore_replays_and_keeps_failed_ports() {
        let (mut st, _dp, db) = setup("st-restore");
        run(&mut st, br_add("br0")).unwrap();
        run(&mut st, p_add("br0", port("p1"))).unwrap();
        run(&mut st, p_add("br0", port("gone"))).unwrap();
        run(
            &mut st,
            Command::FdbAdd { bridge: "br0".into(), mac: "02:00:00:00:00:01".into(), vlan: 1, port: "p1".into() },
        )
        .unwrap();
        let saved = st.config().clone();
        drop(st);

        let dp2 = FakeDp::default();
        dp2.inner().missing.insert("gone".into());
        let mut st2 = State::restore(&db, dp2.clone()).unwrap();
        assert_eq!(st2.config(), &saved);
        {
            let g = dp2.inner();
            assert!(g.bridges.contains_key("br0"));
            assert!(g.ports.contains_key("p1"));
            assert!(!g.ports.contains_key("gone"));
            assert_eq!(g.fdb.len(), 1);
        }
        // The failed port is shown down and stays in the db.
        let show: ShowResult = serde_json::from_value(run(&mut st2, Command::Show).unwrap()).unwrap();
        let gone = &show.bridges[0].ports[1];
        assert!(gone.status.state.starts_with("down: no interface"), "{:?}", gone);
        run(&mut st2, br_add("br1")).unwrap();
        assert_eq!(db::load(&db).unwrap().bridges[0].ports.len(), 2);
        // ...and can be deleted.
        run(&mut st2, Command::PortDel { bridge: "br0".into(), port: "gone".into() }).unwrap();
        st2.tick();
        assert_eq!(dp2.inner().ticks, 1);
    }

    /// Mutated requests never panic and always get a one-line answer, and
    /// whatever was accepted is what the db holds.
    #[test]
    fn mutated_requests_never_panic() {
        let (mut st, _dp, db) = setup("st-fuzz");
        let seeds = [
            r#"{"version":1,"cmd":"bridge_add","bridge":"br0","aging_secs":30}"#,
            r#"{"version":1,"cmd":"port_add","bridge":"br0","port":{"name":"p1","type":"afxdp","vlan":{"trunk":{"vlans":[10,20],"native":1}}}}"#,
            r#"{"version":1,"cmd":"fdb_add","bridge":"br0","mac":"02:00:00:00:00:01","vlan":10,"port":"p1"}"#,
            r#"{"version":1,"cmd":"fdb_del","bridge":"br0","mac":"02:00:00:00:00:01","vlan":10}"#,
            r#"{"version":1,"cmd":"bridge_set","bridge":"br0","max_macs":5}"#,
            r#"{"version":1,"cmd":"stats","port":"p1"}"#,
            r#"{"version":1,"cmd":"port_del","bridge":"br0","port":"p1"}"#,
            r#"{"version":1,"cmd":"uplink_add","uplink":{"name":"eth1","queues":2,"xdp_mode":"native"}}"#,
            r#"{"version":1,"cmd":"port_add","bridge":"br0","port":{"name":"vx4","type":"vxlan","vxlan":{"vni":42,"local":"198.18.1.1","remotes":["198.18.1.2"],"dstport":4789,"ttl":64}}}"#,
            r#"{"version":1,"cmd":"port_set_remotes","bridge":"br0","port":"vx4","remotes":["198.18.1.3","198.18.1.4"]}"#,
            r#"{"version":1,"cmd":"uplink_del","uplink":"eth1"}"#,
            r#"{"version":1,"cmd":"pmd_assign","port":"p1","queue":1,"core":2}"#,
            r#"{"version":1,"cmd":"flows_show"}"#,
            r#"{"version":1,"cmd":"flows_flush"}"#,
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3000 {
            let mut line = seeds[(next() % seeds.len() as u64) as usize].as_bytes().to_vec();
            for _ in 0..(next() % 4) {
                let i = (next() % line.len() as u64) as usize;
                let alphabet = b"0123456789:,{}[]\"abpx -\x00\xff";
                line[i] = alphabet[(next() % alphabet.len() as u64) as usize];
            }
            let reply = match Request::parse(&line) {
                Ok(req) => st.handle(req),
                Err(e) => Reply::err(e),
            };
            assert!(!reply.to_line().contains('\n'));
        }
        assert_eq!(&db::load(&db).unwrap(), st.config());
    }

    #[test]
    fn vxlan_ports() {
        let (mut st, dp, _db) = setup("st-vxlan");
        run(&mut st, br_add("br0")).unwrap();
        run(&mut st, br_add("br1")).unwrap();
        // The datapath needs an uplink for the local address.
        let e = run(&mut st, p_add("br0", vx("vx42", 42, "198.18.1.1", &["198.18.1.2"]))).unwrap_err();
        assert_eq!(e, "no uplink serves local address 198.18.1.1");
        assert!(st.config().bridges[0].ports.is_empty());
        run(&mut st, up_add("eth1")).unwrap();
        run(&mut st, p_add("br0", vx("vx42", 42, "198.18.1.1", &["198.18.1.2", "198.18.1.3"]))).unwrap();
        assert_eq!(dp.inner().ports["vx42"].1.vxlan.as_ref().unwrap().remotes.len(), 2);
        assert_eq!(st.config().bridges[0].ports[0].vxlan.as_ref().unwrap().dstport, 4789);

        let bad = |p: PortConfig| p_add("br0", p);
        let e = run(&mut st, bad(vx("vx1", 16_777_216, "198.18.1.1", &["198.18.1.2"]))).unwrap_err();
        assert_eq!(e, "invalid VNI 16777216 (must be 0..=16777215)");
        let e = run(&mut st, bad(vx("vx1", 1, "198.18.1.1", &["2001:db8::2"]))).unwrap_err();
        assert_eq!(e, "remote 2001:db8::2 and local 198.18.1.1 are of different address families");
        let e = run(&mut st, bad(vx("vx1", 1, "198.18.1.1", &["198.18.1.1"]))).unwrap_err();
        assert_eq!(e, "remote 198.18.1.1 is the local address");
        let e = run(&mut st, bad(vx("vx1", 1, "198.18.1.1", &["198.18.1.2", "198.18.1.2"]))).unwrap_err();
        assert_eq!(e, "remote 198.18.1.2 is given twice");
        for (local, remote) in [
            ("198.18.1.1", "239.1.1.1"),
            ("198.18.1.1", "255.255.255.255"),
            ("198.18.1.1", "0.0.0.0"),
            ("0.0.0.0", "198.18.1.2"),
            ("ff02::1", "2001:db8::2"),
        ] {
            let e = run(&mut st, bad(vx("vx1", 1, local, &[remote]))).unwrap_err();
            assert!(e.contains("a VTEP address must not be"), "{e}");
        }
        let many: Vec<String> = (0..1025).map(|k| format!("10.0.{}.{}", k / 200, k % 200 + 1)).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let e = run(&mut st, bad(vx("vx1", 1, "198.18.1.1", &many))).unwrap_err();
        assert_eq!(e, "too many remotes: 1025 (at most 1024)");
        let mut p = vx("vx1", 1, "198.18.1.1", &[]);
        p.vxlan.as_mut().unwrap().dstport = 0;
        assert_eq!(run(&mut st, bad(p)).unwrap_err(), "invalid UDP port 0 (must be 1..=65535)");
        let mut p = vx("vx1", 1, "198.18.1.1", &[]);
        p.vxlan.as_mut().unwrap().ttl = 0;
        assert_eq!(run(&mut st, bad(p)).unwrap_err(), "invalid TTL 0 (must be 1..=255)");
        let mut p = vx("vx1", 1, "198.18.1.1", &[]);
        p.queues = Some(2);
        assert!(run(&mut st, bad(p)).unwrap_err().contains("queue count applies to afxdp ports only"));
        let mut p = vx("vx1", 1, "198.18.1.1", &[]);
        p.xdp_mode = XdpMode::Native;
        assert!(run(&mut st, bad(p)).is_err());
        let mut p = vx("vx1", 1, "198.18.1.1", &[]);
        p.netns = Some("ns1".into());
        assert!(run(&mut st, bad(p)).is_err());
        let mut p = vx("vx1", 1, "198.18.1.1", &[]);
        p.vxlan = None;
        assert!(run(&mut st, bad(p)).unwrap_err().contains("needs its tunnel settings"));
        let mut p = port("veth-a");
        p.vxlan = vx("x", 1, "198.18.1.1", &[]).vxlan;
        assert!(run(&mut st, bad(p)).unwrap_err().contains("tunnel settings apply to vxlan ports only"));
        // The same (local, dstport, VNI) twice, even in another bridge.
        let e = run(&mut st, p_add("br1", vx("vx43", 42, "198.18.1.1", &["198.18.1.9"]))).unwrap_err();
        assert!(e.starts_with("port \"vx42\" already uses local 198.18.1.1, dstport 4789, VNI 42"), "{e}");
        // Another VNI, another UDP port or another local address is a different tunnel.
        run(&mut st, p_add("br1", vx("vx43", 43, "198.18.1.1", &["198.18.1.9"]))).unwrap();
        let mut p = vx("vx44", 42, "198.18.1.1", &["198.18.1.9"]);
        p.vxlan.as_mut().unwrap().dstport = 8472;
        p.vlan = PortVlan::Trunk { vlans: vec![10, 20], native: None };
        run(&mut st, p_add("br1", p)).unwrap();
        run(&mut st, p_add("br1", vx("vx6", 42, "2001:db8::1", &["2001:db8::2"]))).unwrap();
        assert_eq!(st.config().bridges[1].ports.len(), 3);
        // Names are shared between uplinks and ports.
        assert_eq!(
            run(&mut st, p_add("br0", port("eth1"))).unwrap_err(),
            "\"eth1\" is an uplink; it cannot also be a port"
        );

        let show: ShowResult = serde_json::from_value(run(&mut st, Command::Show).unwrap()).unwrap();
        let p = &show.bridges[0].ports[0];
        assert_eq!(p.config.kind, PortType::Vxlan);
        assert_eq!(p.status.kind, "vxlan");
        assert_eq!(p.status.inner_mtu, Some(1450));
        assert_eq!(p.status.remotes.len(), 2);
        assert_eq!(p.status.remotes[1], RemoteStatus { ip: "198.18.1.3".into(), next_hop_mac: None });
        assert_eq!(show.uplinks.len(), 1);
        assert_eq!(show.uplinks[0].status.state, "up");
    }

    #[test]
    fn set_remotes_live_and_persisted() {
        let (mut st, dp, db) = setup("st-remotes");
        run(&mut st, br_add("br0")).unwrap();
        run(&mut st, up_add("eth1")).unwrap();
        run(&mut st, p_add("br0", vx("vx42", 42, "198.18.1.1", &["198.18.1.2"]))).unwrap();
        run(&mut st, p_add("br0", port("veth-a"))).unwrap();
        // `run` checks the db holds the change before the reply.
        run(&mut st, set_remotes("br0", "vx42", &["198.18.1.3", "198.18.1.4"])).unwrap();
        let want = vec![ip("198.18.1.3"), ip("198.18.1.4")];
        assert_eq!(st.config().bridges[0].ports[0].vxlan.as_ref().unwrap().remotes, want);
        assert_eq!(dp.inner().ports["vx42"].1.vxlan.as_ref().unwrap().remotes, want);
        assert_eq!(db::load(&db).unwrap().bridges[0].ports[0].vxlan.as_ref().unwrap().remotes, want);
        run(&mut st, set_remotes("br0", "vx42", &[])).unwrap();
        assert!(dp.inner().ports["vx42"].1.vxlan.as_ref().unwrap().remotes.is_empty());
        run(&mut st, set_remotes("br0", "vx42", &["198.18.1.2"])).unwrap();

        let before = fs::read(&db).unwrap();
        let cfg = st.config().clone();
        let e = run(&mut st, set_remotes("br0", "veth-a", &["198.18.1.3"])).unwrap_err();
        assert_eq!(e, "port \"veth-a\" is not a vxlan port");
        assert!(run(&mut st, set_remotes("br0", "vx9", &[])).unwrap_err().contains("unknown port"));
        assert!(run(&mut st, set_remotes("br9", "vx42", &[])).unwrap_err().contains("unknown bridge"));
        let e = run(&mut st, set_remotes("br0", "vx42", &["198.18.1.1"])).unwrap_err();
        assert_eq!(e, "remote 198.18.1.1 is the local address");
        assert!(run(&mut st, set_remotes("br0", "vx42", &["2001:db8::1"])).is_err());
        // A stale read-modify-write is refused.
        let stale = Command::PortSetRemotes {
            bridge: "br0".into(),
            port: "vx42".into(),
            remotes: vec![ip("198.18.1.5")],
            expect_remotes: Some(vec![]),
        };
        let e = run(&mut st, stale).unwrap_err();
        assert_eq!(e, "the remotes of port \"vx42\" changed meanwhile (now: 198.18.1.2); try again");
        // The datapath refusing leaves config, db and datapath as they were.
        dp.inner().fail_next = Some("cannot resolve".into());
        assert_eq!(run(&mut st, set_remotes("br0", "vx42", &["198.18.1.7"])).unwrap_err(), "cannot resolve");
        assert_eq!(st.config(), &cfg);
        assert_eq!(fs::read(&db).unwrap(), before);
        assert_eq!(dp.inner().ports["vx42"].1.vxlan.as_ref().unwrap().remotes, vec![ip("198.18.1.2")]);

        // A failed save puts the old list back into the datapath.
        let mut tmp = db.clone().into_os_string();
        tmp.push(".tmp");
        fs::create_dir(&tmp).unwrap();
        assert!(run(&mut st, set_remotes("br0", "vx42", &["198.18.1.8"])).is_err());
        assert_eq!(dp.inner().ports["vx42"].1.vxlan.as_ref().unwrap().remotes, vec![ip("198.18.1.2")]);
        assert_eq!(st.config(), &cfg);
        fs::remove_dir(&tmp).unwrap();
    }

    #[test]
    fn uplinks() {
        let (mut st, dp, db) = setup("st-uplink");
        let mut up = UplinkConfig::new("eth1");
        up.queues = Some(2);
        up.xdp_mode = XdpMode::Generic;
        run(&mut st, Command::UplinkAdd { uplink: up.clone() }).unwrap();
        assert_eq!(db::load(&db).unwrap().uplinks, vec![up.clone()]);
        assert_eq!(dp.inner().uplinks["eth1"], up);
        assert_eq!(run(&mut st, up_add("eth1")).unwrap_err(), "uplink \"eth1\" already exists");
        assert!(run(&mut st, up_add("")).is_err());
        assert!(run(&mut st, up_add("name-far-too-long")).is_err());
        let mut bad = UplinkConfig::new("eth2");
        bad.queues = Some(0);
        assert_eq!(
            run(&mut st, Command::UplinkAdd { uplink: bad }).unwrap_err(),
            "invalid queue count 0 (must be 1..=1024)"
        );
        dp.inner().missing.insert("eth3".into());
        assert_eq!(run(&mut st, up_add("eth3")).unwrap_err(), "no interface \"eth3\"");
        assert_eq!(st.config().uplinks.len(), 1);

        run(&mut st, br_add("br0")).unwrap();
        run(&mut st, p_add("br0", port("veth-a"))).unwrap();
        assert_eq!(
            run(&mut st, up_add("veth-a")).unwrap_err(),
            "\"veth-a\" is a port of bridge \"br0\"; it cannot also be an uplink"
        );
        let list: Vec<UplinkShow> = serde_json::from_value(run(&mut st, Command::UplinkList).unwrap()).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].config, up);
        assert_eq!(list[0].status.vteps, vec!["198.18.1.1".to_string()]);

        // The datapath refuses to drop the uplink under a vxlan port: nothing changes.
        run(&mut st, p_add("br0", vx("vx42", 42, "198.18.1.1", &["198.18.1.2"]))).unwrap();
        let before = fs::read(&db).unwrap();
        let e = run(&mut st, Command::UplinkDel { uplink: "eth1".into() }).unwrap_err();
        assert_eq!(e, "uplink \"eth1\" serves the local address of a vxlan port");
        assert_eq!(fs::read(&db).unwrap(), before);
        assert!(dp.inner().uplinks.contains_key("eth1"));
        run(&mut st, Command::PortDel { bridge: "br0".into(), port: "vx42".into() }).unwrap();
        run(&mut st, Command::UplinkDel { uplink: "eth1".into() }).unwrap();
        assert!(dp.inner().uplinks.is_empty());
        assert!(db::load(&db).unwrap().uplinks.is_empty());
        assert_eq!(run(&mut st, Command::UplinkDel { uplink: "eth1".into() }).unwrap_err(), "unknown uplink \"eth1\"");
    }

    #[test]
    fn restore_uplinks_first_and_keeps_failed_ones() {
        let (mut st, _dp, db) = setup("st-restore-vx");
        run(&mut st, up_add("eth1")).unwrap();
        run(&mut st, up_add("eth2")).unwrap();
        run(&mut st, br_add("br0")).unwrap();
        run(&mut st, p_add("br0", vx("vx42", 42, "198.18.1.1", &["198.18.1.2"]))).unwrap();
        run(&mut st, p_add("br0", port("veth-a"))).unwrap();
        let saved = st.config().clone();
        drop(st);

        let dp2 = FakeDp::default();
        dp2.inner().missing.insert("eth2".into());
        let mut st2 = State::restore(&db, dp2.clone()).unwrap();
        assert_eq!(st2.config(), &saved);
        assert_eq!(dp2.inner().log, ["uplink eth1", "bridge br0", "port vx42", "port veth-a"]);
        let show: ShowResult = serde_json::from_value(run(&mut st2, Command::Show).unwrap()).unwrap();
        assert_eq!(show.uplinks.len(), 2);
        assert_eq!(show.uplinks[0].status.state, "up");
        assert_eq!(show.uplinks[1].status.state, "down: no interface \"eth2\"");
        assert_eq!(show.uplinks[1].config.name, "eth2");
        // The down uplink stays in the db through other changes, and can be deleted.
        run(&mut st2, br_add("br1")).unwrap();
        assert_eq!(db::load(&db).unwrap().uplinks.len(), 2);
        run(&mut st2, Command::UplinkDel { uplink: "eth2".into() }).unwrap();
        assert_eq!(db::load(&db).unwrap().uplinks, vec![UplinkConfig::new("eth1")]);
        drop(st2);

        // With no uplink at all the vxlan port cannot come up: kept, shown down.
        let dp3 = FakeDp::default();
        dp3.inner().missing.insert("eth1".into());
        let mut st3 = State::restore(&db, dp3.clone()).unwrap();
        assert_eq!(dp3.inner().log, ["bridge br0", "port veth-a", "bridge br1"]);
        let show: ShowResult = serde_json::from_value(run(&mut st3, Command::Show).unwrap()).unwrap();
        assert!(show.uplinks[0].status.state.starts_with("down: "));
        let vx42 = &show.bridges[0].ports[0];
        assert_eq!(vx42.status.state, "down: no uplink serves local address 198.18.1.1");
        assert_eq!(vx42.status.kind, "vxlan");
        // Changing the remotes of a down port changes the configuration only.
        run(&mut st3, set_remotes("br0", "vx42", &["198.18.1.3"])).unwrap();
        assert_eq!(st3.config().bridges[0].ports[0].vxlan.as_ref().unwrap().remotes, vec![ip("198.18.1.3")]);
    }

    #[test]
    fn restore_refuses_corrupt_db() {
        let dir = temp_dir("st-corrupt");
        let db = dir.join("conf.json");
        fs::write(&db, "{not json").unwrap();
        let e = State::restore(&db, FakeDp::default()).err().unwrap();
        assert!(e.contains(&db.display().to_string()));
        assert_eq!(fs::read(&db).unwrap(), b"{not json");
    }

    #[test]
    fn pmd_assign_is_live_and_persisted() {
        let (mut st, dp, db) = setup("st-pmd");
        run(&mut st, br_add("br0")).unwrap();
        run(&mut st, p_add("br0", port("veth-a"))).unwrap();
        run(&mut st, p_add("br0", port("veth-b"))).unwrap();
        run(&mut st, up_add("eth1")).unwrap();
        // No assignment yet: nothing about queues in the db file.
        assert!(!fs::read_to_string(&db).unwrap().contains("pmd"));

        // `run` checks the db holds the change before the reply.
        assert_eq!(run(&mut st, assign("veth-a", 1, 2)).unwrap(), Value::Null);
        assert_eq!(st.config().bridges[0].ports[0].pmd, vec![(1, 2)]);
        assert_eq!(dp.inner().pmd[&("veth-a".to_string(), 1)], 2);
        run(&mut st, assign("veth-a", 0, 2)).unwrap();
        run(&mut st, assign("veth-a", 1, 1)).unwrap();
        assert_eq!(st.config().bridges[0].ports[0].pmd, vec![(0, 2), (1, 1)]);
        assert!(st.config().bridges[0].ports[1].pmd.is_empty());
        run(&mut st, assign("eth1", 0, 2)).unwrap();
        assert_eq!(st.config().uplinks[0].pmd, vec![(0, 2)]);
        let saved = db::load(&db).unwrap();
        assert_eq!(saved.bridges[0].ports[0].pmd, vec![(0, 2), (1, 1)]);
        assert_eq!(saved.uplinks[0].pmd, vec![(0, 2)]);
        // On disk: [queue, core] pairs; ports without assignments have no "pmd".
        let file: Value = serde_json::from_slice(&fs::read(&db).unwrap()).unwrap();
        assert_eq!(file["bridges"][0]["ports"][0]["pmd"], serde_json::json!([[0, 2], [1, 1]]));
        assert_eq!(file["uplinks"][0]["pmd"], serde_json::json!([[0, 2]]));
        assert!(file["bridges"][0]["ports"][1].get("pmd").is_none());
        // The same assignment again is fine and changes nothing.
        let before = fs::read(&db).unwrap();
        run(&mut st, assign("eth1", 0, 2)).unwrap();
        assert_eq!(fs::read(&db).unwrap(), before);
        // The show result carries the assignment in the config and the move in the status.
        let show: ShowResult = serde_json::from_value(run(&mut st, Command::Show).unwrap()).unwrap();
        assert_eq!(show.bridges[0].ports[0].config.pmd, vec![(0, 2), (1, 1)]);
        assert_eq!(show.bridges[0].ports[0].status.queues, vec![(0, 2), (1, 1)]);
        assert_eq!(show.uplinks[0].status.queues, vec![(0, 2), (1, 1)]);

        // Refusals leave config, db and datapath as they were.
        let cfg = st.config().clone();
        let moves = dp.inner().pmd.clone();
        assert_eq!(run(&mut st, assign("nope", 0, 1)).unwrap_err(), "unknown port or uplink \"nope\"");
        assert_eq!(run(&mut st, assign("veth-b", 0, 9)).unwrap_err(), "no polling thread on core 9");
        assert_eq!(
            run(&mut st, assign("veth-b", 7, 1)).unwrap_err(),
            "\"veth-b\" has 2 rx queues; there is no queue 7"
        );
        dp.inner().fail_next = Some("cannot move queue".into());
        assert_eq!(run(&mut st, assign("veth-b", 0, 2)).unwrap_err(), "cannot move queue");
        assert_eq!(st.config(), &cfg);
        assert_eq!(fs::read(&db).unwrap(), before);
        assert_eq!(dp.inner().pmd, moves);

        // A failed save moves the queue back where it was polled.
        let mut tmp = db.clone().into_os_string();
        tmp.push(".tmp");
        fs::create_dir(&tmp).unwrap();
        let e = run(&mut st, assign("veth-a", 0, 1)).unwrap_err();
        assert!(e.ends_with("(the change was undone)"), "{e}");
        assert_eq!(dp.inner().pmd[&("veth-a".to_string(), 0)], 2);
        assert_eq!(st.config(), &cfg);
        fs::remove_dir(&tmp).unwrap();

        // Assignments come only from pmd_assign, never with the port or uplink.
        let mut p = port("veth-c");
        p.pmd = vec![(0, 2)];
        let e = run(&mut st, p_add("br0", p)).unwrap_err();
        assert_eq!(e, "port \"veth-c\": queues are assigned with pmd_assign once the port exists");
        let mut up = UplinkConfig::new("eth2");
        up.pmd = vec![(0, 2)];
        let e = run(&mut st, Command::UplinkAdd { uplink: up }).unwrap_err();
        assert_eq!(e, "uplink \"eth2\": queues are assigned with pmd_assign once the uplink exists");
        assert_eq!(st.config(), &cfg);

        // Deleting the port forgets its assignments.
        run(&mut st, Command::PortDel { bridge: "br0".into(), port: "veth-a".into() }).unwrap();
        run(&mut st, p_add("br0", port("veth-a"))).unwrap();
        assert!(st.config().bridges[0].ports[1].pmd.is_empty());
    }

    #[test]
    fn restore_reapplies_pmd_assignments() {
        let (mut st, _dp, db) = setup("st-pmd-restore");
        run(&mut st, up_add("eth1")).unwrap();
        run(&mut st, br_add("br0")).unwrap();
        run(&mut st, p_add("br0", port("veth-a"))).unwrap();
        run(&mut st, p_add("br0", port("veth-b"))).unwrap();
        run(&mut st, assign("eth1", 1, 2)).unwrap();
        run(&mut st, assign("veth-a", 1, 2)).unwrap();
        run(&mut st, assign("veth-a", 0, 2)).unwrap();
        let saved = st.config().clone();
        drop(st);

        // Each port's queues move right after the port comes back, in queue order.
        let dp2 = FakeDp::default();
        let st2 = State::restore(&db, dp2.clone()).unwrap();
        assert_eq!(st2.config(), &saved);
        assert_eq!(
            dp2.inner().log,
            [
                "uplink eth1",
                "pmd eth1/1->2",
                "bridge br0",
                "port veth-a",
                "pmd veth-a/0->2",
                "pmd veth-a/1->2",
                "port veth-b"
            ]
        );
        assert_eq!(st2.datapath().port_status()[0].queues, vec![(0, 2), (1, 2)]);
        drop(st2);

        // A core that lost its thread: a warning, the rest still comes up, and
        // the assignment stays for the next restart.
        let before = fs::read(&db).unwrap();
        let dp3 = FakeDp::default();
        dp3.inner().no_thread.insert(2);
        let mut st3 = State::restore(&db, dp3.clone()).unwrap();
        assert_eq!(st3.config(), &saved);
        assert_eq!(dp3.inner().log, ["uplink eth1", "bridge br0", "port veth-a", "port veth-b"]);
        let show: ShowResult = serde_json::from_value(run(&mut st3, Command::Show).unwrap()).unwrap();
        assert_eq!(show.bridges[0].ports[0].status.state, "up");
        assert_eq!(show.bridges[0].ports[0].status.queues, vec![(0, 1), (1, 1)]);
        assert_eq!(show.bridges[0].ports[0].config.pmd, vec![(0, 2), (1, 2)]);
        assert_eq!(fs::read(&db).unwrap(), before);
        drop(st3);

        // A port that does not come back keeps its assignments and refuses new ones.
        let dp4 = FakeDp::default();
        dp4.inner().missing.insert("veth-a".into());
        let mut st4 = State::restore(&db, dp4.clone()).unwrap();
        assert!(!dp4.inner().log.iter().any(|l| l.starts_with("pmd veth-a")));
        assert_eq!(
            run(&mut st4, assign("veth-a", 0, 1)).unwrap_err(),
            "port \"veth-a\" is down (no interface \"veth-a\"); its queues cannot be moved"
        );
        assert_eq!(st4.config(), &saved);
    }

    #[test]
    fn db_without_pmd_still_loads() {
        let dir = temp_dir("st-pmd-old");
        let db = dir.join("conf.json");
        fs::write(
            &db,
            r#"{"version":1,"uplinks":[{"name":"eth1","queues":null,"xdp_mode":"auto"}],
                "bridges":[{"name":"br0","aging_secs":300,"max_macs":8192,"static_macs":[],
                 "ports":[{"name":"veth-a","type":"afxdp","vlan":{"access":{"vlan":1}},"queues":null,"xdp_mode":"auto","netns":null}]}]}"#,
        )
        .unwrap();
        let dp = FakeDp::default();
        let st = State::restore(&db, dp.clone()).unwrap();
        assert!(st.config().uplinks[0].pmd.is_empty());
        assert!(st.config().bridges[0].ports[0].pmd.is_empty());
        assert!(!dp.inner().log.iter().any(|l| l.starts_with("pmd")));
        // A queue assigned twice is an inconsistent db, refused like a duplicate port.
        fs::write(&db, r#"{"version":1,"uplinks":[{"name":"eth1","pmd":[[0,1],[0,2]]}],"bridges":[]}"#).unwrap();
        let e = State::restore(&db, FakeDp::default()).err().unwrap();
        assert!(e.contains("uplink \"eth1\": queue 0 is assigned to a polling thread twice"), "{e}");
    }

    #[test]
    fn flows_show_and_flush() {
        let (mut st, dp, db) = setup("st-flows");
        run(&mut st, br_add("br0")).unwrap();
        let flow = FlowInfo {
            core: 1,
            bridge: "br0".into(),
            in_port: "vx42".into(),
            remote: Some("198.18.1.2".into()),
            src: "02:00:00:00:00:01".into(),
            dst: "02:00:00:00:00:02".into(),
            vlan: 1,
            action: "output:veth-a".into(),
            hits: 7,
        };
        dp.inner().flows = vec![flow.clone()];
        let v = run(&mut st, Command::FlowsShow).unwrap();
        assert_eq!(v[0]["remote"], "198.18.1.2");
        assert_eq!(v[0]["in_port"], "vx42");
        let flows: Vec<FlowInfo> = serde_json::from_value(v).unwrap();
        assert_eq!(flows, vec![flow]);
        // Flushing is run-time only: the db is not written.
        let before = fs::read(&db).unwrap();
        assert_eq!(run(&mut st, Command::FlowsFlush).unwrap(), Value::Null);
        assert!(dp.inner().flows.is_empty());
        assert_eq!(run(&mut st, Command::FlowsShow).unwrap(), serde_json::json!([]));
        assert_eq!(fs::read(&db).unwrap(), before);
    }
}
