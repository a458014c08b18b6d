//! The control state machine: validates each request against the
//! configuration, applies it to the datapath, and persists it.
//!
//! Every change follows the same order: validate everything, call the
//! datapath, and only if that succeeded write the new configuration to the
//! db; the reply goes out after the db write. A failed db write undoes the
//! datapath change (best effort) and fails the request, so the db, the
//! in-memory configuration and the datapath agree after every reply.

use crate::config::{BridgeConfig, Config, PortConfig, PortType, PortVlan, StaticMac};
use crate::datapath::{Datapath, FdbEntryInfo, PortStatsInfo, PortStatus, ThreadInfo};
use crate::db;
use crate::proto::{
    self, BridgeShow, BridgeSummary, Command, FlushResult, PingResult, PortShow, Reply, Request, ShowResult,
};
use rvs_dataplane::wire::MacAddr;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The daemon's configuration, its db file and the datapath it drives.
pub struct State<D: Datapath> {
    config: Config,
    db_path: PathBuf,
    dp: D,
    /// Bridges in the configuration that the datapath does not have, and why.
    down_bridges: HashMap<String, String>,
    /// Ports in the configuration that the datapath does not have, and why.
    down_ports: HashMap<String, String>,
}

/// The `type` name of a port backend.
pub fn kind_name(k: PortType) -> &'static str {
    match k {
        PortType::Afxdp => "afxdp",
        PortType::Tap => "tap",
    }
}

fn unknown_bridge(name: &str) -> String {
    format!("unknown bridge {name:?}")
}

fn same_entry(m: &StaticMac, mac: MacAddr, vlan: u16) -> bool {
    m.vlan == vlan && proto::parse_mac(&m.mac, false).ok() == Some(mac)
}

impl<D: Datapath> State<D> {
    /// Loads the db at `db_path` and replays it into `dp`. A bridge, port or
    /// static MAC the datapath refuses is reported on stderr and kept in the
    /// configuration (shown as down); only an unreadable db is an error.
    pub fn restore(db_path: &Path, dp: D) -> Result<State<D>, String> {
        let config = db::load(db_path)?;
        let bridges = config.bridges.clone();
        let mut st = State {
            config,
            db_path: db_path.to_path_buf(),
            dp,
            down_bridges: HashMap::new(),
            down_ports: HashMap::new(),
        };
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
    }

    /// Answers one request.
    pub fn handle(&mut self, req: Request) -> Reply {
        if let Err(e) = proto::check_version(req.version) {
            return Reply::err(e);
        }
        match req.cmd {
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
            Command::Show => Reply::from_result(Ok(self.show())),
            Command::FdbShow { bridge } => Reply::from_result(self.fdb_show(&bridge)),
            Command::FdbAdd { bridge, mac, vlan, port } => Reply::from_result(self.fdb_add(&bridge, &mac, vlan, &port)),
            Command::FdbDel { bridge, mac, vlan } => Reply::from_result(self.fdb_del(&bridge, &mac, vlan)),
            Command::FdbFlush { bridge, port } => Reply::from_result(self.fdb_flush(&bridge, port.as_deref())),
            Command::Stats { port } => Reply::from_result(self.stats(port.as_deref())),
            Command::PmdShow => Reply::from_result(Ok(self.dp.threads())),
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
            eprintln!("rvsd: warning: bridge {:?} not restored: {e}; kept in the configuration", br.name);
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
            eprintln!(
                "rvsd: warning: port {:?} of bridge {:?} not restored: {e}; kept in the configuration",
                p.name, br.name
            );
            self.down_ports.insert(p.name.clone(), e);
            return;
        }
        self.down_ports.remove(&p.name);
        for m in br.static_macs.iter().filter(|m| m.port == p.name) {
            let res = proto::parse_mac(&m.mac, true).and_then(|mac| self.dp.fdb_add(&br.name, mac, m.vlan, &m.port));
            if let Err(e) = res {
                eprintln!("rvsd: warning: static MAC {} VLAN {} on port {:?} not restored: {e}", m.mac, m.vlan, m.port);
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
        if let Some((k, _)) = self.port_loc(&port.name) {
            return Err(format!("port {:?} already exists in bridge {:?}", port.name, self.config.bridges[k].name));
        }
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
                            kind: kind_name(p.kind).to_string(),
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
        ShowResult { bridges, threads: self.dp.threads() }
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
            drops: Vec::new(),
        }])
    }

    /// Polling threads, as `pmd_show` reports them.
    pub fn threads(&self) -> Vec<ThreadInfo> {
        self.dp.threads()
    }
}

/// A Datapath fake for tests: keeps tables in maps and fails on request.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use crate::datapath::DpResult;
    use std::collections::{BTreeMap, HashSet};
    use std::sync::{Arc, Mutex};

    /// What the fake holds; shared so a test can look inside after moving
    /// the fake into a `State`.
    #[derive(Default, Debug)]
    pub(crate) struct Inner {
        pub bridges: BTreeMap<String, BridgeConfig>,
        pub ports: BTreeMap<String, (String, PortConfig)>,
        pub fdb: BTreeMap<(String, MacAddr, u16), (String, bool)>,
        /// add_port fails for these names, like a missing interface.
        pub missing: HashSet<String>,
        /// The next mutating call fails with this message.
        pub fail_next: Option<String>,
        pub ticks: usize,
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
            g.ports.insert(port.name.clone(), (bridge.to_string(), port.clone()));
            Ok(())
        }
        fn del_port(&mut self, name: &str) -> DpResult<()> {
            self.check()?;
            let mut g = self.inner();
            g.fdb.retain(|_, (p, _)| p != name);
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
            self.inner()
                .ports
                .iter()
                .map(|(n, (b, p))| PortStatus {
                    name: n.clone(),
                    bridge: b.clone(),
                    kind: kind_name(p.kind).into(),
                    state: "up".into(),
                    xdp_mode: "generic".into(),
                    queues: vec![(0, 1)],
                    inner_mtu: None,
                    remotes: Vec::new(),
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
                    drops: vec![("runt".into(), 2)],
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
            }]
        }
        fn tick(&mut self) {
            self.inner().ticks += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeDp;
    use super::*;
    use crate::config::XdpMode;
    use crate::db::tests::temp_dir;
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
    fn restore_refuses_corrupt_db() {
        let dir = temp_dir("st-corrupt");
        let db = dir.join("conf.json");
        fs::write(&db, "{not json").unwrap();
        let e = State::restore(&db, FakeDp::default()).err().unwrap();
        assert!(e.contains(&db.display().to_string()));
        assert_eq!(fs::read(&db).unwrap(), b"{not json");
    }
}
