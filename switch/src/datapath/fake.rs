//! A datapath for tests of the control plane: keeps its tables in maps,
//! opens nothing, and fails on request.

use super::*;
use crate::datapath::DpResult;
use rvs_proto::status::{FdbCursor, FdbEntryInfo, RemoteStatus};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

/// What the fake holds; shared so a test can look inside after moving
/// the fake into a `State`.
#[derive(Default, Debug)]
pub struct Inner {
    /// Bridges by name.
    pub bridges: BTreeMap<String, BridgeConfig>,
    /// Ports by name: (bridge, configuration).
    pub ports: BTreeMap<String, (String, PortConfig)>,
    /// IP-MAC bindings: (bridge, IP, VLAN) → (MAC, source).
    pub neigh: BTreeMap<(String, IpAddr, u16), (MacAddr, NeighSource)>,
    /// FDB entries: (bridge, MAC, VLAN) → (port, static).
    pub fdb: BTreeMap<(String, MacAddr, u16), (String, bool)>,
    /// Uplinks by name.
    pub uplinks: BTreeMap<String, UplinkConfig>,
    /// Every successful add_uplink/add_bridge/add_port, in order.
    pub log: Vec<String>,
    /// add_port and add_uplink fail for these names, like a missing interface.
    pub missing: HashSet<String>,
    /// The next mutating call fails with this message.
    pub fail_next: Option<String>,
    /// Calls of `tick`.
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
    /// Cores with polling threads, and the cores queues 0 and 1 of every
    /// port are polled on until moved; `None`: [`FAKE_CORES`], both on 1.
    pub layout: Option<(Vec<usize>, [usize; FAKE_QUEUES as usize])>,
    /// The XDP mode ports report; `None`: generic.
    pub xdp_mode: Option<String>,
    /// Learned entries as a test wants them shown (remote, age), after the
    /// table's own; a flush of their bridge removes them.
    pub learned: Vec<(String, FdbEntryInfo)>,
    /// The polling threads as a test wants them shown; empty: one on core
    /// 1 polling queue 0 of every port.
    pub threads: Vec<ThreadInfo>,
}

/// Cores the fake has polling threads on, unless a test says otherwise.
pub const FAKE_CORES: [usize; 2] = [1, 2];
/// Receive queues of every fake port and uplink.
pub const FAKE_QUEUES: u32 = 2;

impl Inner {
    fn cores(&self) -> &[usize] {
        self.layout.as_ref().map_or(&FAKE_CORES[..], |l| &l.0[..])
    }

    fn queues(&self, name: &str) -> Vec<(u32, usize)> {
        let home = self.layout.as_ref().map_or([1; FAKE_QUEUES as usize], |l| l.1);
        (0..FAKE_QUEUES)
            .map(|q| (q, self.pmd.get(&(name.to_string(), q)).copied().unwrap_or(home[q as usize])))
            .collect()
    }
}

/// The fake; clones share one [`Inner`].
#[derive(Clone, Default)]
pub struct FakeDp(pub Arc<Mutex<Inner>>);

impl FakeDp {
    /// What it holds, locked.
    pub fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap()
    }
    fn check(&self) -> DpResult<()> {
        match self.inner().fail_next.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    /// Every entry of `bridge`, static and learned, unordered.
    fn fdb_entries(&self, bridge: &str) -> Vec<FdbEntryInfo> {
        let g = self.inner();
        let table =
            g.fdb.iter().filter(|((b, _, _), _)| b == bridge).map(|((_, mac, vlan), (port, st))| FdbEntryInfo {
                mac: mac.to_string(),
                vlan: *vlan,
                port: port.clone(),
                is_static: *st,
                age_secs: 0,
                remote: None,
            });
        let learned = g.learned.iter().filter(|(b, _)| b == bridge).map(|(_, e)| e.clone());
        table.chain(learned).collect()
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
    fn device_gone(&self, port: &PortConfig) -> bool {
        self.inner().missing.contains(port.device())
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
    fn set_addresses(&mut self, port: &str, addrs: &[rvs_proto::config::IfAddr]) -> DpResult<()> {
        self.check()?;
        match self.inner().ports.get_mut(port) {
            Some((_, p)) if p.kind == rvs_proto::config::PortType::Internal => {
                p.addresses = addrs.to_vec();
                Ok(())
            }
            _ => Err("fake: no internal port".into()),
        }
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
    fn neigh_add(&mut self, bridge: &str, ip: IpAddr, vlan: u16, mac: MacAddr) -> DpResult<()> {
        self.check()?;
        self.inner().neigh.insert((bridge.to_string(), ip, vlan), (mac, NeighSource::Static));
        Ok(())
    }
    fn neigh_del(&mut self, bridge: &str, ip: IpAddr, vlan: u16) -> DpResult<Option<NeighSource>> {
        self.check()?;
        Ok(self.inner().neigh.remove(&(bridge.to_string(), ip, vlan)).map(|(_, s)| s))
    }
    fn neigh_list(&self, bridge: &str) -> DpResult<NeighView> {
        let g = self.inner();
        let bindings = g
            .neigh
            .iter()
            .filter(|((b, _, _), _)| b == bridge)
            .map(|((_, ip, vlan), (mac, source))| {
                let b =
                    Binding { ip: *ip, vid: rvs_dataplane::ids::Vid(*vlan), mac: *mac, source: *source, last_seen: 0 };
                (b, 0)
            })
            .collect();
        Ok(NeighView { learned: 0, limit: rvs_dataplane::neigh::DEFAULT_LIMIT, bindings })
    }
    fn set_remote_neigh(&mut self, bridge: &str, bindings: &[(IpAddr, u16, MacAddr)]) -> DpResult<()> {
        let mut g = self.inner();
        g.neigh.retain(|(b, _, _), (_, s)| b != bridge || *s != NeighSource::Remote);
        for &(ip, vlan, mac) in bindings {
            g.neigh.entry((bridge.to_string(), ip, vlan)).or_insert((mac, NeighSource::Remote));
        }
        Ok(())
    }
    fn fdb_flush(&mut self, bridge: &str, port: Option<&str>) -> DpResult<usize> {
        self.check()?;
        let mut g = self.inner();
        let before = g.fdb.len() + g.learned.len();
        g.fdb.retain(|(b, _, _), (p, st)| *st || b != bridge || port.is_some_and(|want| want != p));
        g.learned.retain(|(b, e)| b != bridge || port.is_some_and(|want| want != e.port));
        Ok(before - g.fdb.len() - g.learned.len())
    }
    fn fdb_page(&self, bridge: &str, after: Option<(u16, MacAddr)>, limit: usize) -> DpResult<FdbPage> {
        let mut all = self.fdb_entries(bridge);
        all.sort_by(|a, b| (a.vlan, &a.mac).cmp(&(b.vlan, &b.mac)));
        let total = all.len();
        let after = after.map(|(v, m)| (v, m.to_string()));
        let mut rest: Vec<FdbEntryInfo> =
            all.into_iter().filter(|e| after.as_ref().is_none_or(|a| (e.vlan, &e.mac) > (a.0, &a.1))).collect();
        let more = rest.len() > limit;
        rest.truncate(limit);
        let next = rest.last().filter(|_| more).map(|e| FdbCursor { vlan: e.vlan, mac: e.mac.clone() });
        Ok(FdbPage { entries: rest, next, total })
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
                xdp_mode: g.xdp_mode.clone().unwrap_or_else(|| "generic".into()),
                fast_path: p.fast_path.resolve(p.kind).name().into(),
                queues: g.queues(n),
                learned_macs: 0,
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
                arp_suppressed: 0,
                nd_suppressed: 0,
                neigh_refused: 0,
                drops: [("runt".to_string(), 2)].into(),
                link_downs: 0,
                kernel: Default::default(),
            })
            .collect()
    }
    fn threads(&self) -> Vec<ThreadInfo> {
        let g = self.inner();
        if !g.threads.is_empty() {
            return g.threads.clone();
        }
        vec![ThreadInfo {
            core: 1,
            rx_queues: g.ports.keys().map(|n| (n.clone(), 0)).collect(),
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
        if !g.cores().contains(&core) || g.no_thread.contains(&core) {
            return Err(format!("no polling thread on core {core}"));
        }
        g.pmd.insert((port.to_string(), queue), core);
        g.log.push(format!("pmd {port}/{queue}->{core}"));
        Ok(())
    }
}
