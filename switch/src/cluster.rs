//! Overlay membership through etcd, the way Flannel keeps a lease per node.
//!
//! Each rvsd registers its node under a lease it keeps alive, publishes the
//! VTEPs it serves and the MACs it has behind them, and watches the other
//! nodes'. Key layout (version 1, under `/rvs/v1/`; values are JSON):
//!
//! | key | value |
//! | --- | --- |
//! | `/rvs/v1/nodes/NODE` | `{"node": NODE, "vteps": [{"vni": 42, "addr": "198.18.200.1", "dstport": 4789}]}` |
//! | `/rvs/v1/macs/VNI/NODE/PART` | `{"vtep": "198.18.200.1", "macs": [{"mac": "02:..", "vlan": 1}], "neigh": [{"ip": "198.18.0.2", "mac": "02:..", "vlan": 1}]}` |
//!
//! Beside its MACs a node publishes the IP-MAC bindings of its hosts
//! (static ones and those learned on local ports), which the others
//! install as `remote` bindings to answer ARP and ND with; they go in
//! parts of their own after the MACs' (at most [`NEIGH_PER_PART`] each, and
//! [`MAX_RECORD_NEIGH`] in all) and are checked like the MACs.
//!
//! A node's MACs on a VNI are split into parts 0, 1, ... of at most
//! [`MACS_PER_PART`] MACs (under [`MAC_PART_BYTES`] of JSON each), so a MAC
//! flood never makes a value near etcd's request limit (1.5 MiB by default)
//! and never breaks a node's session or lease; readers merge the parts. A
//! node advertises at most its bridge's MAC limit on a VNI (and never more
//! than [`MAX_RECORD_MACS`], what readers take). Keys of the older layout
//! without a part (`macs/VNI/NODE`, from before the split) are ignored
//! and counted as rejected: they expire with their writer's lease.
//!
//! Every key of a node hangs on that node's lease: when the node dies (or
//! is cut off) for longer than the lease TTL, etcd deletes its keys and the
//! others drop it. A clean stop revokes the lease, so peers drop it at once.
//!
//! All etcd I/O runs on the agent's own threads (one for the lease and
//! updates, one for the watch); the control loop only swaps a [`LocalView`]
//! in and a [`PeerView`] out once a tick, so a slow or dead etcd never
//! stalls configuration or forwarding. With etcd unreachable, what was
//! learned last stays in force; the agent reconnects with backoff and
//! resynchronises (re-grants the lease and re-publishes if it was lost).

pub mod etcd;
mod tls;

use etcd::{Client, Kv};
use rvs_dataplane::wire::MacAddr;
use rvs_proto::cluster::{ClusterStatus, MacRecord, MacsRecord, NeighRecord, NodeRecord, VtepRecord, PREFIX};
use rvs_proto::config::ClusterConfig;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Local MACs are published at most this often.
const MAC_PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Most VTEPs a node record may name.
const MAX_RECORD_VTEPS: usize = 256;
/// Most MACs a node may advertise on one VNI (all parts together).
pub const MAX_RECORD_MACS: usize = 65_536;
/// Most bytes of JSON in one MAC record part: well under etcd's default
/// request limit of 1.5 MiB.
pub const MAC_PART_BYTES: usize = 256 << 10;
/// The longest MAC entry in JSON, with its comma:
/// `{"mac":"02:00:00:00:00:01","vlan":4094},`.
const MAC_JSON_MAX: usize = 40;
/// Room for the record around its MACs: `{"vtep":"IPv6 text","macs":[]}`.
const RECORD_JSON_MAX: usize = 96;
/// MACs in one part: a full part of the longest entries fits in
/// [`MAC_PART_BYTES`].
pub const MACS_PER_PART: usize = (MAC_PART_BYTES - RECORD_JSON_MAX) / MAC_JSON_MAX;

/// Most IP-MAC bindings a node may advertise on one VNI (all parts).
pub const MAX_RECORD_NEIGH: usize = 65_536;
/// The longest binding in JSON, with its comma:
/// `{"ip":"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff","mac":"02:00:00:00:00:01","vlan":4094},`.
const NEIGH_JSON_MAX: usize = 87;
/// Bindings in one part: a full part of the longest fits in
/// [`MAC_PART_BYTES`] (with room for the empty `"macs":[]`).
pub const NEIGH_PER_PART: usize = (MAC_PART_BYTES - RECORD_JSON_MAX - 12) / NEIGH_JSON_MAX;

/// A full re-read of the prefix even without watch events.
const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// The MACs a node advertises on a VNI behind a bridge that learns at
/// most `bridge_limit`: `macs` sorted, at most that many (static entries
/// may take a bridge past its limit) and at most [`MAX_RECORD_MACS`].
pub fn advertised(mut macs: Vec<MacRecord>, bridge_limit: u32) -> Vec<MacRecord> {
    macs.sort();
    macs.dedup();
    macs.truncate(MAX_RECORD_MACS.min(bridge_limit as usize));
    macs
}

/// The bindings a node advertises on a VNI: sorted, at most
/// [`MAX_RECORD_NEIGH`].
pub fn advertised_neigh(mut neigh: Vec<NeighRecord>) -> Vec<NeighRecord> {
    neigh.sort();
    neigh.dedup();
    neigh.truncate(MAX_RECORD_NEIGH);
    neigh
}

/// `rec` split into parts of at most [`MACS_PER_PART`] MACs, then parts
/// of at most [`NEIGH_PER_PART`] bindings, in order; none when it has
/// neither.
fn mac_parts(rec: &MacsRecord) -> Vec<MacsRecord> {
    let macs = rec.macs.chunks(MACS_PER_PART).map(|c| MacsRecord { vtep: rec.vtep, macs: c.to_vec(), neigh: vec![] });
    let neigh =
        rec.neigh.chunks(NEIGH_PER_PART).map(|c| MacsRecord { vtep: rec.vtep, macs: vec![], neigh: c.to_vec() });
    macs.chain(neigh).collect()
}

/// The key of part `part` of `node`'s MACs on `vni`.
fn macs_key(vni: u32, node: &str, part: usize) -> String {
    format!("{PREFIX}macs/{vni}/{node}/{part}")
}

/// What this node serves, as the control loop sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalView {
    /// Its VTEPs, sorted.
    pub vteps: Vec<VtepRecord>,
    /// Per VNI: the VTEP address and the MACs behind it.
    pub macs: BTreeMap<u32, MacsRecord>,
}

/// What the other nodes serve, as last read from etcd.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerView {
    /// Other nodes by name.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Per (VNI, node): its MACs.
    pub macs: BTreeMap<(u32, String), MacsRecord>,
    /// Records left out, each with why (never installed).
    pub rejected: Vec<String>,
    /// True for the view saved in the db at the last sync, in force after
    /// a start until etcd answers.
    pub from_db: bool,
}

impl PeerView {
    /// Remote VTEP addresses for a local tunnel on `vni` at `local`/`dstport`:
    /// every other node's VTEP on that VNI, same family, sorted.
    pub fn remotes_for(&self, vni: u32, local: IpAddr, dstport: u16) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .nodes
            .values()
            .flat_map(|n| n.vteps.iter())
            .filter(|t| t.vni == vni && t.dstport == dstport && t.addr.is_ipv4() == local.is_ipv4() && t.addr != local)
            .map(|t| t.addr)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// MACs the other nodes advertise on `vni`: (mac, vlan, VTEP).
    pub fn macs_for(&self, vni: u32) -> Vec<(MacAddr, u16, IpAddr)> {
        self.macs
            .iter()
            .filter(|((v, node), _)| *v == vni && self.nodes.contains_key(node))
            .flat_map(|(_, r)| r.macs.iter().map(|m| (m.mac, m.vlan, r.vtep)))
            .collect()
    }

    /// IP-MAC bindings the other nodes advertise on `vni`, each with its
    /// node: (ip, mac, vlan, node).
    pub fn neigh_for(&self, vni: u32) -> Vec<(IpAddr, MacAddr, u16, String)> {
        self.macs
            .iter()
            .filter(|((v, node), _)| *v == vni && self.nodes.contains_key(node))
            .flat_map(|((_, node), r)| r.neigh.iter().map(move |n| (n.ip, n.mac, n.vlan, node.clone())))
            .collect()
    }

    /// The view saved in the db: the nodes other than `me`, each checked
    /// as one read from etcd (a hand-edited db is no more trusted); no
    /// MACs (peers' MACs are learned again from traffic).
    pub fn saved(nodes: &[NodeRecord], me: &str) -> PeerView {
        let mut view = PeerView { from_db: true, ..PeerView::default() };
        for rec in nodes.iter().filter(|n| n.node != me) {
            match node_fault(&rec.node, rec) {
                None => {
                    view.nodes.insert(rec.node.clone(), rec.clone());
                }
                Some(why) => view.rejected.push(format!("saved node {:?}: {why}", rvs_proto::one_line(&rec.node))),
            }
        }
        view
    }

    /// What the db keeps of this view: the nodes' records.
    pub fn to_saved(&self) -> Vec<NodeRecord> {
        self.nodes.values().cloned().collect()
    }

    /// Reads the view out of every key under [`PREFIX`], leaving out
    /// `me`, and anything malformed or implausible (another writer's bug,
    /// or a hostile one, is not installed): see [`node_fault`] and
    /// [`macs_fault`]. What was left out, and why, is in `rejected`.
    fn from_kvs(kvs: &[Kv], me: &str) -> PeerView {
        let mut view = PeerView::default();
        let mut macs = Vec::new();
        for kv in kvs {
            let Some(rest) = kv.key.strip_prefix(PREFIX) else { continue };
            if let Some(node) = rest.strip_prefix("nodes/") {
                if node == me {
                    continue;
                }
                match serde_json::from_str::<NodeRecord>(&kv.value) {
                    Ok(rec) => match node_fault(node, &rec) {
                        None => {
                            view.nodes.insert(node.to_string(), rec);
                        }
                        Some(why) => view.rejected.push(format!("{}: {why}", kv.key)),
                    },
                    Err(e) => view.rejected.push(format!("{}: {}", kv.key, rvs_proto::one_line(e))),
                }
            } else if let Some(rest) = rest.strip_prefix("macs/") {
                let mut fields = rest.splitn(3, '/');
                let (vni, node, part) = (fields.next().unwrap_or(""), fields.next(), fields.next());
                let Some(node) = node.filter(|n| *n != me) else {
                    if node.is_none() {
                        view.rejected.push(format!("{}: not a MAC record key", kv.key));
                    }
                    continue;
                };
                let Some(part) = part else {
                    view.rejected.push(format!("{}: old key layout without a part (ignored)", kv.key));
                    continue;
                };
                match (vni.parse::<u32>(), part.parse::<usize>(), serde_json::from_str::<MacsRecord>(&kv.value)) {
                    (Ok(vni), Ok(part), Ok(rec)) => macs.push((kv.key.as_str(), vni, node, part, rec)),
                    (Err(_), _, _) => view.rejected.push(format!("{}: not a VNI", kv.key)),
                    (_, Err(_), _) => view.rejected.push(format!("{}: not a part number", kv.key)),
                    (_, _, Err(e)) => view.rejected.push(format!("{}: {}", kv.key, rvs_proto::one_line(e))),
                }
            }
        }
        // After every node record: a MAC record's VTEP must be its node's.
        // Parts merge in part order, up to the cap for all of them.
        macs.sort_by_key(|m| (m.1, m.2, m.3));
        for (key, vni, node, _, rec) in macs {
            let merged = view.macs.get(&(vni, node.to_string())).map_or((0, 0), |r| (r.macs.len(), r.neigh.len()));
            let why = macs_fault(view.nodes.get(node), vni, &rec)
                .or_else(|| {
                    (merged.0 + rec.macs.len() > MAX_RECORD_MACS)
                        .then(|| format!("its parts hold over {MAX_RECORD_MACS} MACs"))
                })
                .or_else(|| {
                    (merged.1 + rec.neigh.len() > MAX_RECORD_NEIGH)
                        .then(|| format!("its parts hold over {MAX_RECORD_NEIGH} bindings"))
                });
            match why {
                None => match view.macs.entry((vni, node.to_string())) {
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(rec);
                    }
                    std::collections::btree_map::Entry::Occupied(mut e) if e.get().vtep == rec.vtep => {
                        e.get_mut().macs.extend(rec.macs);
                        e.get_mut().neigh.extend(rec.neigh);
                    }
                    std::collections::btree_map::Entry::Occupied(_) => {
                        view.rejected.push(format!("{key}: VTEP {} differs from the other parts'", rec.vtep))
                    }
                },
                Some(why) => view.rejected.push(format!("{key}: {why}")),
            }
        }
        view
    }
}

/// Why an address cannot be a remote VTEP, if it cannot.
fn addr_fault(a: IpAddr) -> Option<&'static str> {
    let bad = match a {
        IpAddr::V4(v) => v.is_unspecified() || v.is_loopback() || v.is_multicast() || v.is_broadcast(),
        IpAddr::V6(v) => v.is_unspecified() || v.is_loopback() || v.is_multicast(),
    };
    bad.then_some("not a unicast address")
}

/// What is wrong with node `node`'s record, if anything: another node's
/// name, too many VTEPs, a VTEP that is no unicast address, a VNI beyond 24
/// bits, UDP port 0.
fn node_fault(node: &str, rec: &NodeRecord) -> Option<String> {
    if rec.node != node {
        return Some(format!("names node {:?}", rvs_proto::one_line(&rec.node)));
    }
    if rec.vteps.len() > MAX_RECORD_VTEPS {
        return Some(format!("{} VTEPs (at most {MAX_RECORD_VTEPS})", rec.vteps.len()));
    }
    rec.vteps.iter().find_map(|t| {
        let why = addr_fault(t.addr)
            .or((t.vni > 0xff_ffff).then_some("VNI beyond 24 bits"))
            .or((t.dstport == 0).then_some("UDP port 0"))?;
        Some(format!("VTEP {} VNI {}: {why}", t.addr, t.vni))
    })
}

/// What is wrong with a node's MAC record on `vni`, if anything: a node
/// with no record (or gone), a VTEP that is not that node's on `vni`, too
/// many MACs or bindings, a MAC that is not unicast, a VLAN outside
/// 1..=4094, a binding's address no host can own.
fn macs_fault(node: Option<&NodeRecord>, vni: u32, rec: &MacsRecord) -> Option<String> {
    let node_ok = node?;
    if rec.neigh.len() > MAX_RECORD_NEIGH {
        return Some(format!("{} bindings (at most {MAX_RECORD_NEIGH})", rec.neigh.len()));
    }
    let bad_neigh = rec.neigh.iter().find_map(|n| {
        let why = if rvs_proto::parse_neigh_ip(&n.ip.to_string()).is_err() {
            "not a host address"
        } else if n.mac.is_multicast() || n.mac.0 == [0; 6] {
            "not a unicast MAC"
        } else if !(1..=4094).contains(&n.vlan) {
            "VLAN outside 1..=4094"
        } else {
            return None;
        };
        Some(format!("binding {} -> {} VLAN {}: {why}", n.ip, n.mac, n.vlan))
    });
    mac_fault(node_ok, vni, rec).or(bad_neigh)
}

/// [`macs_fault`] for the VTEP and the MACs.
fn mac_fault(node: &NodeRecord, vni: u32, rec: &MacsRecord) -> Option<String> {
    if !node.vteps.iter().any(|t| t.vni == vni && t.addr == rec.vtep) {
        return Some(format!("VTEP {} is not the node's on VNI {vni}", rec.vtep));
    }
    if rec.macs.len() > MAX_RECORD_MACS {
        return Some(format!("{} MACs (at most {MAX_RECORD_MACS})", rec.macs.len()));
    }
    rec.macs.iter().find_map(|m| {
        let why = if m.mac.is_multicast() || m.mac.0 == [0; 6] {
            "not a unicast MAC"
        } else if !(1..=4094).contains(&m.vlan) {
            "VLAN outside 1..=4094"
        } else {
            return None;
        };
        Some(format!("MAC {} VLAN {}: {why}", m.mac, m.vlan))
    })
}

struct Shared {
    status: ClusterStatus,
    state_since: Instant,
    peers: PeerView,
    /// Bumped whenever `peers` changes.
    generation: u64,
}

/// The running agent; stops (revoking its lease) when dropped.
pub struct Cluster {
    cfg: ClusterConfig,
    shared: Arc<Mutex<Shared>>,
    local_tx: Sender<LocalView>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    seen_generation: u64,
}

impl Cluster {
    /// Starts the agent for `cfg` (checked first).
    pub fn start(cfg: ClusterConfig) -> Result<Cluster, String> {
        let client = Client::new(&cfg)?;
        let shared = Arc::new(Mutex::new(Shared {
            status: ClusterStatus { state: "connecting".into(), ..Default::default() },
            state_since: Instant::now(),
            peers: PeerView::default(),
            generation: 0,
        }));
        let (local_tx, local_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let agent = Agent {
            client,
            node: cfg.node.clone(),
            ttl: cfg.lease_ttl_secs,
            shared: shared.clone(),
            stop: stop.clone(),
            local_rx,
            local: LocalView::default(),
            lease: 0,
            published: Published::default(),
        };
        let thread = std::thread::Builder::new()
            .name("rvs-cluster".into())
            .spawn(move || agent.run())
            .map_err(|e| format!("starting the cluster agent: {e}"))?;
        Ok(Cluster { cfg, shared, local_tx, stop, thread: Some(thread), seen_generation: 0 })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// Hands the agent what this node serves now (it publishes changes).
    pub fn publish(&self, local: LocalView) {
        let _ = self.local_tx.send(local);
    }

    /// The peers, if they changed since the last call.
    pub fn peers_if_changed(&mut self) -> Option<PeerView> {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if s.generation == self.seen_generation {
            return None;
        }
        self.seen_generation = s.generation;
        Some(s.peers.clone())
    }

    /// The agent's status.
    pub fn status(&self) -> ClusterStatus {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        ClusterStatus { since_secs: s.state_since.elapsed().as_secs(), ..s.status.clone() }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Events the agent waits for.
enum Wake {
    /// The watch saw a change under the prefix.
    Changed,
    /// The watch ended (error or etcd gone).
    WatchEnded(String),
}

struct Agent {
    client: Client,
    node: String,
    ttl: u32,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    local_rx: Receiver<LocalView>,
    /// What this node serves (latest from the control loop).
    local: LocalView,
    /// Current lease (0: none).
    lease: i64,
    /// What the keys on `lease` hold: kept across reconnections while the
    /// lease lives, so parts left over from before are deleted.
    published: Published,
}

/// What this node's keys in etcd hold, as far as the agent knows: what
/// it wrote under its current lease.
#[derive(Default)]
struct Published {
    vteps: Vec<VtepRecord>,
    /// The MAC view these parts were made from.
    macs: BTreeMap<u32, MacsRecord>,
    /// Per VNI: the parts written (keys `macs/VNI/NODE/0..len`).
    parts: BTreeMap<u32, Vec<MacsRecord>>,
}

/// One connected stretch: the watch, the timers.
struct Session {
    last_keepalive: Instant,
    last_mac_publish: Instant,
    last_sync: Instant,
    wake_rx: Receiver<Wake>,
    watch_stop: Arc<AtomicBool>,
    watch: Option<JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.watch_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.watch.take() {
            let _ = t.join();
        }
    }
}

/// `backoff` cut by up to half, by the sub-second part of `now`: nodes
/// that lost etcd together do not all come back in the same instant.
fn jittered(backoff: Duration, now: SystemTime) -> Duration {
    let nanos = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    backoff.mul_f64(0.5 + f64::from(nanos % 1_000_000) / 2_000_000.0)
}

impl Agent {
    fn run(mut self) {
        let mut backoff = Duration::from_millis(250);
        while !self.stop.load(Ordering::Relaxed) {
            match self.connect() {
                Ok(mut session) => {
                    backoff = Duration::from_millis(250);
                    let err = self.serve(&mut session);
                    drop(session);
                    match err {
                        Some(e) => self.set_state("disconnected", Some(e)),
                        None => break, // stopping
                    }
                }
                Err(e) => self.set_state("disconnected", Some(e)),
            }
            self.sleep(jittered(backoff, SystemTime::now()));
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        if self.lease != 0 {
            // Leave at once rather than after the TTL.
            let _ = self.client.lease_revoke(self.lease);
        }
    }

    fn sleep(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stop.load(Ordering::Relaxed) && Instant::now() < end {
            self.take_local(Duration::from_millis(100));
        }
    }

    /// Takes the latest local view, waiting up to `wait` for one.
    fn take_local(&mut self, wait: Duration) {
        match self.local_rx.recv_timeout(wait) {
            Ok(v) => self.local = v,
            Err(RecvTimeoutError::Timeout) => return,
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(wait);
                return;
            }
        }
        while let Ok(v) = self.local_rx.try_recv() {
            self.local = v;
        }
    }

    fn set_state(&self, state: &str, error: Option<String>) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if s.status.state != state {
            s.state_since = Instant::now();
            match &error {
                Some(e) => tracing::warn!(target: crate::obs::log::DAEMON, "cluster: {state}: {e}"),
                None => tracing::info!(target: crate::obs::log::DAEMON, "cluster: {state} as node {}", self.node),
            }
        }
        s.status.state = state.to_string();
        s.status.error = error;
        s.status.lease = self.lease;
        if state == "connected" {
            s.status.connects += 1;
        }
    }

    /// (Re)joins: keeps or re-grants the lease, publishes everything, reads
    /// the peers and starts watching.
    fn connect(&mut self) -> Result<Session, String> {
        let ctx = |e: std::io::Error| e.to_string();
        if self.lease != 0 && self.client.lease_keepalive(self.lease).map_err(ctx)?.is_none() {
            self.lease = 0;
        }
        if self.lease == 0 {
            self.lease = self.client.lease_grant(self.ttl).map_err(ctx)?;
            // The old lease's keys are gone with it.
            self.published = Published::default();
        }
        let mut session = Session {
            last_keepalive: Instant::now(),
            last_mac_publish: Instant::now(),
            last_sync: Instant::now(),
            wake_rx: mpsc::channel().1,
            watch_stop: Arc::new(AtomicBool::new(false)),
            watch: None,
        };
        self.publish_all(&mut session, true)?;
        let rev = self.sync()?;
        let (wake_tx, wake_rx) = mpsc::channel();
        session.wake_rx = wake_rx;
        session.watch = Some(self.start_watch(rev + 1, wake_tx, session.watch_stop.clone())?);
        self.set_state("connected", None);
        Ok(session)
    }

    fn start_watch(&self, from: i64, wake: Sender<Wake>, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>, String> {
        let client = self.client.clone();
        std::thread::Builder::new()
            .name("rvs-etcd-watch".into())
            .spawn(move || {
                let w = wake.clone();
                let r = client.watch_prefix(PREFIX, from, &stop, || {
                    let _ = w.send(Wake::Changed);
                });
                let why = match r {
                    Ok(()) => "watch stream ended".to_string(),
                    Err(e) => e.to_string(),
                };
                let _ = wake.send(Wake::WatchEnded(why));
            })
            .map_err(|e| format!("starting the etcd watch: {e}"))
    }

    /// Runs a connected session until an error (returned) or stop (None).
    fn serve(&mut self, s: &mut Session) -> Option<String> {
        let keepalive_every = Duration::from_secs(u64::from(self.ttl).div_ceil(3).max(1));
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            self.take_local(Duration::from_millis(100));
            let mut resync = s.last_sync.elapsed() >= RESYNC_EVERY;
            loop {
                match s.wake_rx.try_recv() {
                    Ok(Wake::Changed) => resync = true,
                    Ok(Wake::WatchEnded(why)) => return Some(why),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return Some("watch thread gone".into()),
                }
            }
            if s.last_keepalive.elapsed() >= keepalive_every {
                match self.client.lease_keepalive(self.lease) {
                    Ok(Some(_)) => s.last_keepalive = Instant::now(),
                    Ok(None) => {
                        // Expired while we could not reach etcd: rejoin.
                        self.lease = 0;
                        return Some("lease expired; rejoining".into());
                    }
                    Err(e) => return Some(e.to_string()),
                }
            }
            if let Err(e) = self.publish_all(s, false) {
                return Some(e);
            }
            if resync {
                if let Err(e) = self.sync() {
                    return Some(e);
                }
                s.last_sync = Instant::now();
            }
        }
    }

    /// Writes what changed in the local view (MACs at most once a second;
    /// everything when `all`): changed MAC parts are put, parts beyond a
    /// VNI's new count (or of a VNI gone) deleted.
    fn publish_all(&mut self, s: &mut Session, all: bool) -> Result<(), String> {
        let ctx = |e: std::io::Error| e.to_string();
        let p = &mut self.published;
        if all || p.vteps != self.local.vteps {
            let rec = NodeRecord { node: self.node.clone(), vteps: self.local.vteps.clone() };
            let value = serde_json::to_string(&rec).expect("records serialize");
            self.client.put(&format!("{PREFIX}nodes/{}", self.node), &value, self.lease).map_err(ctx)?;
            p.vteps = self.local.vteps.clone();
        }
        if !all && (p.macs == self.local.macs || s.last_mac_publish.elapsed() < MAC_PUBLISH_EVERY) {
            return Ok(());
        }
        let vnis: std::collections::BTreeSet<u32> = self.local.macs.keys().chain(p.parts.keys()).copied().collect();
        for vni in vnis {
            let want = self.local.macs.get(&vni).map(mac_parts).unwrap_or_default();
            let had = p.parts.get(&vni).map_or(&[][..], Vec::as_slice);
            for (i, part) in want.iter().enumerate() {
                if all || had.get(i) != Some(part) {
                    let value = serde_json::to_string(part).expect("records serialize");
                    self.client.put(&macs_key(vni, &self.node, i), &value, self.lease).map_err(ctx)?;
                }
            }
            for i in want.len()..had.len() {
                self.client.delete(&macs_key(vni, &self.node, i)).map_err(ctx)?;
            }
            // Per VNI, once written: a failure later leaves the rest as known.
            if want.is_empty() {
                p.parts.remove(&vni);
            } else {
                p.parts.insert(vni, want);
            }
        }
        p.macs = self.local.macs.clone();
        s.last_mac_publish = Instant::now();
        Ok(())
    }

    /// Reads every peer; returns the store's revision.
    fn sync(&mut self) -> Result<i64, String> {
        let range = self.client.range_prefix(PREFIX).map_err(|e| e.to_string())?;
        tracing::debug!("etcd: read {} keys under {PREFIX} in {} pages", range.kvs.len(), range.pages);
        let view = PeerView::from_kvs(&range.kvs, &self.node);
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        for why in view.rejected.iter().filter(|r| !s.peers.rejected.contains(r)) {
            tracing::warn!("etcd record ignored: {why}");
        }
        s.status.rejected_records = view.rejected.len() as u64;
        // The first read counts as a change even when it finds no peer:
        // it replaces the view saved in the db.
        if s.peers != view || s.generation == 0 {
            s.peers = view;
            s.generation += 1;
        }
        s.status.last_sync_unix = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_secs());
        Ok(range.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> Kv {
        Kv { key: k.into(), value: v.into() }
    }

    #[test]
    fn peer_view_from_keys() {
        let kvs = vec![
            kv("/rvs/v1/nodes/h1", r#"{"node":"h1","vteps":[{"vni":42,"addr":"198.18.200.1","dstport":4789}]}"#),
            kv(
                "/rvs/v1/nodes/h2",
                r#"{"node":"h2","vteps":[{"vni":42,"addr":"198.18.200.2","dstport":4789},{"vni":7,"addr":"2001:2::2","dstport":4789}]}"#,
            ),
            kv("/rvs/v1/nodes/bad", "not json"),
            kv("/rvs/v1/macs/42/h2/0", r#"{"vtep":"198.18.200.2","macs":[{"mac":"02:00:00:00:00:02","vlan":1}]}"#),
            kv("/rvs/v1/macs/42/gone/0", r#"{"vtep":"198.18.200.9","macs":[{"mac":"02:00:00:00:00:09","vlan":1}]}"#),
            kv("/rvs/v1/macs/x/h2/0", "{}"),
            kv("/rvs/v1/macs/42/h1/0", r#"{"vtep":"198.18.200.1","macs":[]}"#),
        ];
        let v = PeerView::from_kvs(&kvs, "h1");
        assert_eq!(v.nodes.keys().collect::<Vec<_>>(), vec!["h2"], "self and malformed records left out");
        let local: IpAddr = "198.18.200.1".parse().unwrap();
        assert_eq!(v.remotes_for(42, local, 4789), vec!["198.18.200.2".parse::<IpAddr>().unwrap()]);
        assert!(v.remotes_for(42, local, 8472).is_empty(), "another UDP port");
        assert!(v.remotes_for(7, local, 4789).is_empty(), "another address family");
        let macs = v.macs_for(42);
        assert_eq!(macs.len(), 1, "MACs of nodes without a node record are ignored: {macs:?}");
        assert_eq!(macs[0].0, "02:00:00:00:00:02".parse().unwrap());
        assert_eq!(v.rejected.len(), 2, "the malformed records are named: {:?}", v.rejected);
    }

    #[test]
    fn backoff_is_jittered_within_half() {
        let b = Duration::from_secs(4);
        let at = |ns: u32| jittered(b, SystemTime::UNIX_EPOCH + Duration::new(1, ns));
        let waits: Vec<Duration> = (0..50).map(|i| at(i * 19_997)).collect();
        assert!(waits.iter().all(|w| *w >= b / 2 && *w <= b), "{waits:?}");
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() > 40, "{distinct:?}");
    }

    /// Records no rvs would write are left out, each named with why.
    #[test]
    fn implausible_records_are_rejected() {
        let node = |name: &str, vteps: &str| {
            kv(&format!("/rvs/v1/nodes/{name}"), &format!(r#"{{"node":"{name}","vteps":[{vteps}]}}"#))
        };
        let vtep = |addr: &str| format!(r#"{{"vni":42,"addr":"{addr}","dstport":4789}}"#);
        let macs = |node: &str, vtep: &str, macs: &str| {
            kv(&format!("/rvs/v1/macs/42/{node}/0"), &format!(r#"{{"vtep":"{vtep}","macs":[{macs}]}}"#))
        };
        let mac = |m: &str, vlan: u16| format!(r#"{{"mac":"{m}","vlan":{vlan}}}"#);
        let many: Vec<String> =
            (0..=MAX_RECORD_VTEPS).map(|i| vtep(&format!("198.18.{}.{}", i / 250, 1 + i % 250))).collect();
        let kvs = vec![
            node("good", &vtep("198.18.200.2")),
            node("mc", &vtep("224.0.0.1")),
            node("bcast", &vtep("255.255.255.255")),
            node("zero", &vtep("0.0.0.0")),
            node("lo6", &vtep("::1")),
            node("bigvni", r#"{"vni":16777216,"addr":"198.18.200.3","dstport":4789}"#),
            node("port0", r#"{"vni":42,"addr":"198.18.200.4","dstport":0}"#),
            node("crowd", &many.join(",")),
            kv("/rvs/v1/nodes/liar", r#"{"node":"good","vteps":[]}"#),
            macs("good", "198.18.200.2", &mac("02:00:00:00:00:02", 1)),
            macs("good2", "198.18.200.2", &mac("02:00:00:00:00:03", 1)),
        ];
        let v = PeerView::from_kvs(&kvs, "me");
        assert_eq!(v.nodes.keys().collect::<Vec<_>>(), vec!["good"], "{:?}", v.rejected);
        assert_eq!(v.rejected.len(), 8, "{:?}", v.rejected);
        assert!(v.rejected.iter().any(|r| r.contains("nodes/liar") && r.contains("names node")), "{:?}", v.rejected);
        assert!(
            v.rejected.iter().any(|r| r.contains("nodes/crowd") && r.contains("VTEPs (at most")),
            "{:?}",
            v.rejected
        );
        assert_eq!(v.macs_for(42).len(), 1);

        // MAC records: the VTEP must be the node's; MACs unicast, VLANs valid.
        for (vtep_addr, m, why) in [
            ("198.18.200.9", mac("02:00:00:00:00:02", 1), "is not the node's"),
            ("198.18.200.2", mac("01:00:5e:00:00:01", 1), "not a unicast MAC"),
            ("198.18.200.2", mac("00:00:00:00:00:00", 1), "not a unicast MAC"),
            ("198.18.200.2", mac("02:00:00:00:00:02", 0), "VLAN outside"),
            ("198.18.200.2", mac("02:00:00:00:00:02", 4095), "VLAN outside"),
        ] {
            let v = PeerView::from_kvs(&[node("good", &vtep("198.18.200.2")), macs("good", vtep_addr, &m)], "me");
            assert!(v.macs_for(42).is_empty(), "{m} via {vtep_addr} installed");
            assert!(v.rejected.len() == 1 && v.rejected[0].contains(why), "{:?}", v.rejected);
        }
        let flood: Vec<String> = (0..=MAX_RECORD_MACS as u32)
            .map(|i| mac(&format!("02:00:{:02x}:{:02x}:{:02x}:01", i >> 16, (i >> 8) & 0xff, i & 0xff), 1))
            .collect();
        let v = PeerView::from_kvs(
            &[node("good", &vtep("198.18.200.2")), macs("good", "198.18.200.2", &flood.join(","))],
            "me",
        );
        assert!(v.macs_for(42).is_empty() && v.rejected[0].contains("MACs (at most"), "{:?}", v.rejected);
    }

    fn mac(i: usize, vlan: u16) -> MacRecord {
        let b = (i as u32).to_be_bytes();
        MacRecord { mac: MacAddr([0x02, 0xaa, b[0], b[1], b[2], b[3]]), vlan }
    }

    /// A MAC flood's record is split into parts that each stay under
    /// MAC_PART_BYTES even with the longest entries; a reader merges them
    /// back whole; the old layout and odd parts are left out, named.
    #[test]
    fn mac_records_split_into_parts_and_merge_back() {
        let vtep: IpAddr = "2001:2:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        let rec = MacsRecord { vtep, macs: (0..MACS_PER_PART * 2 + 5).map(|i| mac(i, 4094)).collect(), neigh: vec![] };
        let parts = mac_parts(&rec);
        assert_eq!(parts.iter().map(|p| p.macs.len()).collect::<Vec<_>>(), vec![MACS_PER_PART, MACS_PER_PART, 5]);
        for p in &parts {
            let len = serde_json::to_string(p).unwrap().len();
            assert!(len <= MAC_PART_BYTES, "a part of {len} bytes");
        }
        assert!(mac_parts(&MacsRecord { vtep, macs: vec![], neigh: vec![] }).is_empty());

        let node = kv(
            "/rvs/v1/nodes/h2",
            &serde_json::to_string(&NodeRecord {
                node: "h2".into(),
                vteps: vec![VtepRecord { vni: 42, addr: vtep, dstport: 4789 }],
            })
            .unwrap(),
        );
        let mut kvs = vec![node];
        // In reverse: parts merge by number, not as given.
        for (i, p) in parts.iter().enumerate().rev() {
            kvs.push(kv(&macs_key(42, "h2", i), &serde_json::to_string(p).unwrap()));
        }
        let other = MacsRecord { vtep: "2001:2::9".parse().unwrap(), macs: vec![mac(1 << 30, 1)], neigh: vec![] };
        kvs.push(kv(&macs_key(42, "h2", 7), &serde_json::to_string(&other).unwrap()));
        kvs.push(kv("/rvs/v1/macs/42/h2", &serde_json::to_string(&parts[2]).unwrap()));
        kvs.push(kv("/rvs/v1/macs/42/h2/x", &serde_json::to_string(&parts[2]).unwrap()));
        let v = PeerView::from_kvs(&kvs, "h1");
        let got: Vec<MacRecord> = v.macs_for(42).into_iter().map(|(mac, vlan, _)| MacRecord { mac, vlan }).collect();
        assert_eq!(got, rec.macs, "every part, merged in part order");
        assert_eq!(v.rejected.len(), 3, "{:?}", v.rejected);
        assert!(v.rejected.iter().any(|r| r.contains("old key layout")), "{:?}", v.rejected);
        assert!(v.rejected.iter().any(|r| r.contains("not a part number")), "{:?}", v.rejected);
        assert!(v.rejected.iter().any(|r| r.contains("is not the node's")), "{:?}", v.rejected);

        // Parts that together pass the cap: the part that crosses it is out.
        let many = MacsRecord { vtep, macs: (0..MAX_RECORD_MACS + 1).map(|i| mac(i, 1)).collect(), neigh: vec![] };
        let mut kvs = vec![kvs[0].clone()];
        for (i, p) in mac_parts(&many).iter().enumerate() {
            kvs.push(kv(&macs_key(42, "h2", i), &serde_json::to_string(p).unwrap()));
        }
        let v = PeerView::from_kvs(&kvs, "h1");
        assert!(v.macs_for(42).len() <= MAX_RECORD_MACS);
        assert!(v.rejected.iter().any(|r| r.contains("parts hold over")), "{:?}", v.rejected);
    }

    /// Bindings travel in parts of their own after the MACs', each part
    /// under MAC_PART_BYTES with the longest entries, and merge back; a
    /// hostile binding (no host address, group MAC, bad VLAN) or too many
    /// of them leave the part out, named, never installed.
    #[test]
    fn bindings_are_published_in_parts_and_checked() {
        let vtep: IpAddr = "2001:2:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        let long = |i: usize| NeighRecord {
            ip: IpAddr::V6(std::net::Ipv6Addr::new(
                0x2001,
                0xffff,
                0xffff,
                0xffff,
                0xffff,
                0xffff,
                0xffff,
                0xf000 | i as u16,
            )),
            mac: MacAddr([0x02, 0xff, 0xff, 0xff, 0xff, 0xff]),
            vlan: 4094,
        };
        assert_eq!(serde_json::to_string(&long(0)).unwrap().len() + 1, NEIGH_JSON_MAX, "the longest binding");
        let rec = MacsRecord { vtep, macs: vec![mac(1, 1)], neigh: (0..NEIGH_PER_PART + 3).map(long).collect() };
        let parts = mac_parts(&rec);
        assert_eq!(
            parts.iter().map(|p| (p.macs.len(), p.neigh.len())).collect::<Vec<_>>(),
            vec![(1, 0), (0, NEIGH_PER_PART), (0, 3)]
        );
        for p in &parts {
            assert!(serde_json::to_string(p).unwrap().len() <= MAC_PART_BYTES);
        }
        let node = kv(
            "/rvs/v1/nodes/h2",
            &serde_json::to_string(&NodeRecord {
                node: "h2".into(),
                vteps: vec![VtepRecord { vni: 42, addr: vtep, dstport: 4789 }],
            })
            .unwrap(),
        );
        let mut kvs = vec![node.clone()];
        for (i, p) in parts.iter().enumerate() {
            kvs.push(kv(&macs_key(42, "h2", i), &serde_json::to_string(p).unwrap()));
        }
        let v = PeerView::from_kvs(&kvs, "h1");
        assert!(v.rejected.is_empty(), "{:?}", v.rejected);
        let got = v.neigh_for(42);
        assert_eq!(got.len(), NEIGH_PER_PART + 3);
        assert_eq!(got[0], (long(0).ip, long(0).mac, 4094, "h2".to_string()));
        assert!(v.neigh_for(7).is_empty());

        let part =
            |neigh: &str| kv(&macs_key(42, "h2", 0), &format!(r#"{{"vtep":"{vtep}","macs":[],"neigh":[{neigh}]}}"#));
        for (bad, why) in [
            (r#"{"ip":"224.0.0.1","mac":"02:00:00:00:00:01","vlan":1}"#, "not a host address"),
            (r#"{"ip":"0.0.0.0","mac":"02:00:00:00:00:01","vlan":1}"#, "not a host address"),
            (r#"{"ip":"::1","mac":"02:00:00:00:00:01","vlan":1}"#, "not a host address"),
            (r#"{"ip":"198.18.0.2","mac":"ff:ff:ff:ff:ff:ff","vlan":1}"#, "not a unicast MAC"),
            (r#"{"ip":"198.18.0.2","mac":"02:00:00:00:00:01","vlan":4095}"#, "VLAN outside"),
            (r#"{"ip":"nope","mac":"02:00:00:00:00:01","vlan":1}"#, "invalid"),
        ] {
            let v = PeerView::from_kvs(&[node.clone(), part(bad)], "h1");
            assert!(v.neigh_for(42).is_empty(), "{bad} installed");
            assert!(v.rejected.len() == 1 && v.rejected[0].contains(why), "{bad}: {:?}", v.rejected);
        }
        // Parts that together pass the cap: the part that crosses it is out.
        let many = MacsRecord {
            vtep,
            macs: vec![],
            neigh: (0..MAX_RECORD_NEIGH + 1)
                .map(|i| NeighRecord {
                    ip: IpAddr::V4((0xc612_0000 + i as u32).into()),
                    mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    vlan: 1,
                })
                .collect(),
        };
        let mut kvs = vec![node];
        for (i, p) in mac_parts(&many).iter().enumerate() {
            kvs.push(kv(&macs_key(42, "h2", i), &serde_json::to_string(p).unwrap()));
        }
        let v = PeerView::from_kvs(&kvs, "h1");
        assert!(v.neigh_for(42).len() <= MAX_RECORD_NEIGH);
        assert!(v.rejected.iter().any(|r| r.contains("over 65536 bindings")), "{:?}", v.rejected);
        // What a node advertises is capped too.
        assert_eq!(advertised_neigh(many.neigh.clone()).len(), MAX_RECORD_NEIGH);
    }

    /// What a node advertises: sorted, at most its bridge's limit, and at
    /// most what readers take.
    #[test]
    fn advertised_macs_are_capped() {
        let macs: Vec<MacRecord> = (0..100).rev().map(|i| mac(i, 1)).collect();
        let a = advertised(macs.clone(), 60);
        assert_eq!(a.len(), 60);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(advertised(macs, 1 << 20).len(), 100);
        let flood: Vec<MacRecord> = (0..MAX_RECORD_MACS + 10).map(|i| mac(i, 1)).collect();
        assert_eq!(advertised(flood, 1 << 20).len(), MAX_RECORD_MACS);
    }
}
