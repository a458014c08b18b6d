//! What tests share, in this crate and the others (unit, integration,
//! fuzz, rvs-bench's): one rule for when kernel tests run, and the frames
//! and snapshots the packet path's tests are built on.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::Sender;

use crate::fdb::Fdb;
use crate::ids::{BridgeId, PortId};
use crate::neigh::NeighTable;
use crate::pmd::{Command, Handoff, LocalPort, Pmd, PmdOptions};
use crate::port::mem::{mem_port, MemHandle};
use crate::port::Pool;
use crate::snapshot::{BridgeInfo, PortInfo, PortKind, Snapshot, VlanMode, Vtep, TX_ANY};
use crate::stats::PortStats;
use crate::wire::arp::ArpRepr;
use crate::wire::icmpv6::{self, NdRepr};
use crate::wire::{EtherType, EthernetRepr, Ipv6Repr, MacAddr};
use std::net::{Ipv4Addr, Ipv6Addr};

/// True if a test that needs root and `tools` may run. Without them it
/// panics under `CI=true` (a CI run must not pass by skipping), and
/// otherwise prints why `what` is skipped and returns false.
pub fn require_root(what: &str, tools: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have_tool(t)).collect();
    if root && missing.is_empty() {
        return true;
    }
    let why = if root { format!("missing tools: {}", missing.join(", ")) } else { "not root".to_string() };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} cannot run under CI=true: {why} (run scripts/test.sh as root)");
    }
    eprintln!("{what}: skipped, needs root ({why})");
    false
}

/// True if `name` is an executable on `PATH` or in the usual system
/// directories (root's PATH may lack /usr/sbin under some runners).
pub fn have_tool(name: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file())).unwrap_or(false)
        || ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().any(|d| Path::new(d).join(name).is_file())
}

/// The MAC `02:00:00:00:00:n` (locally administered unicast), or the
/// broadcast address for `n == 0xff`.
pub fn mac(n: u8) -> MacAddr {
    if n == 0xff {
        MacAddr([0xff; 6])
    } else {
        MacAddr([2, 0, 0, 0, 0, n])
    }
}

/// A 60-byte frame (64 on the wire) from `src` to `dst`, 802.1Q-tagged
/// with the TCI `tag` if given (a VLAN id, or with priority bits), of the
/// local experimental EtherType 0x88b5, its payload 0xab bytes.
pub fn frame(dst: MacAddr, src: MacAddr, tag: Option<u16>) -> Vec<u8> {
    let eth = EthernetRepr { dst, src, tag, ethertype: 0x88b5 };
    let mut f = vec![0xab; eth.header_len() + 46];
    eth.emit(&mut f);
    f
}

/// [`frame`] between the hosts [`mac`] numbers.
pub fn frame_between(dst: u8, src: u8, tag: Option<u16>) -> Vec<u8> {
    frame(mac(dst), mac(src), tag)
}

/// A port of bridge 0 (none for an uplink), named `p{id}`.
pub fn port(id: u16, vlan: VlanMode, kind: PortKind) -> PortInfo {
    let bridge = (!matches!(kind, PortKind::Uplink)).then_some(BridgeId(0));
    PortInfo { id: PortId(id), bridge, vlan, name: format!("p{id}"), kind }
}

/// A snapshot of these ports (ids 0, 1, ... in order) and one bridge (0,
/// "br0") whose MAC table is `fdb` (and its neighbour table empty). Thread 0 sends on every port but the
/// VXLAN ones, which any thread sends through (on their uplink); `vteps`
/// lists the tunnels' local endpoints.
pub fn world(fdb: Arc<Fdb>, generation: u64, ports: Vec<PortInfo>, vteps: Vec<Vtep>) -> Snapshot {
    let members: Vec<&PortInfo> = ports.iter().filter(|p| p.bridge == Some(BridgeId(0))).collect();
    let neigh = Arc::new(NeighTable::new(crate::neigh::DEFAULT_LIMIT));
    let bridge = BridgeInfo::new(BridgeId(0), "br0", fdb, neigh, &members);
    Snapshot {
        generation,
        tx_thread: ports.iter().map(|p| if matches!(p.kind, PortKind::Vxlan(_)) { TX_ANY } else { 0 }).collect(),
        vteps,
        ports: ports.into_iter().map(Some).collect(),
        bridges: vec![Some(bridge)],
    }
}

/// [`world`] of plain ports with these VLAN modes.
pub fn one_bridge(fdb: Arc<Fdb>, generation: u64, modes: impl IntoIterator<Item = VlanMode>) -> Snapshot {
    let ports = modes.into_iter().enumerate().map(|(i, vlan)| port(i as u16, vlan, PortKind::Plain)).collect();
    world(fdb, generation, ports, vec![])
}

/// A polling thread for tests (thread 0, 256 buffers, default options)
/// and the sender of its commands.
pub fn pmd() -> (Pmd, Sender<Command>) {
    let (mut pmds, mut txs) = pmds(1, 4, 256);
    (pmds.remove(0), txs.remove(0))
}

/// `threads` polling threads (numbered 0, 1, ...) of `buffers` buffers
/// each, sharing one [`Handoff`] of `parcels` parcels and one time origin,
/// and the senders of their commands.
pub fn pmds(threads: u8, parcels: usize, buffers: u32) -> (Vec<Pmd>, Vec<Sender<Command>>) {
    let handoff = Handoff::new(threads.into(), parcels);
    let start = Instant::now();
    (0..threads)
        .map(|i| {
            let (tx, rx) = crossbeam::channel::unbounded();
            let pool = Pool::new(buffers).expect("a packet pool");
            (Pmd::new(i, pool, rx, handoff.clone(), Arc::default(), start, PmdOptions::default()), tx)
        })
        .unzip()
}

/// Gives `pmd` every port of `snap` (an in-memory port each, but none for
/// VXLAN ports, which send through their uplink), then `snap`, and applies
/// them. Returns the ports' handles (VXLAN ports skipped) and every port's
/// counters, both in id order.
pub fn attach(pmd: &mut Pmd, tx: &Sender<Command>, snap: Snapshot) -> (Vec<MemHandle>, Vec<Arc<PortStats>>) {
    let (handles, stats) = attach_threads(std::slice::from_mut(pmd), std::slice::from_ref(tx), snap);
    (handles.into_iter().flatten().collect(), stats.into_iter().flatten().collect())
}

/// An in-memory port `id` for a polling thread, counting into `stats`:
/// what [`Command::AddPort`] takes, and the test side.
pub fn mem_local(id: PortId, stats: Arc<PortStats>) -> (LocalPort, MemHandle) {
    let (port, h) = mem_port();
    (LocalPort { id, queue: 0, port: Some(Box::new(port)), rx: true, stats }, h)
}

/// Gives each port of `snap` to the thread its `tx_thread` names (thread 0
/// where any may send) as an in-memory port, and a VXLAN port to every
/// thread without I/O (each sends through the uplink and keeps counters,
/// as rvsd does); then `snap` to every thread, and applies it. `pmds[i]`
/// takes commands from `txs[i]`. Returns by port id its handle (`None` for
/// VXLAN ports) and its counters, one per thread that has the port.
pub fn attach_threads(
    pmds: &mut [Pmd],
    txs: &[Sender<Command>],
    snap: Snapshot,
) -> (Vec<Option<MemHandle>>, Vec<Vec<Arc<PortStats>>>) {
    let (mut handles, mut stats) = (Vec::new(), Vec::new());
    let send = |t: usize, cmd| txs[t].send(cmd).expect("the thread holds the receiver");
    for p in snap.ports.iter().flatten() {
        if matches!(p.kind, PortKind::Vxlan(_)) {
            let st: Vec<Arc<PortStats>> = txs.iter().map(|_| Arc::default()).collect();
            for (t, st) in st.iter().enumerate() {
                send(t, Command::AddPort(LocalPort { id: p.id, queue: 0, rx: false, port: None, stats: st.clone() }));
            }
            handles.push(None);
            stats.push(st);
        } else {
            let st = Arc::new(PortStats::default());
            let (local, h) = mem_local(p.id, st.clone());
            send(snap.tx_thread(p.id).map_or(0, usize::from), Command::AddPort(local));
            handles.push(Some(h));
            stats.push(vec![st]);
        }
    }
    let snap = Arc::new(snap);
    for t in 0..txs.len() {
        send(t, Command::Snapshot(snap.clone()));
    }
    for pmd in pmds {
        assert!(pmd.apply_commands(), "the thread stopped");
    }
    (handles, stats)
}

/// An ARP packet of `op` from `src` (its sender MAC too), broadcast,
/// tagged with `tag` if given, padded to 60 bytes as a NIC sends it.
pub fn arp(op: u16, src: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr, tag: Option<u16>) -> Vec<u8> {
    let eth = EthernetRepr { dst: MacAddr::BROADCAST, src, tag, ethertype: EtherType::ARP };
    let mut f = vec![0u8; 60 + eth.header_len() - 14];
    eth.emit(&mut f);
    let a = ArpRepr { op, sender_mac: src, sender_ip, target_mac: MacAddr([0; 6]), target_ip };
    a.emit(&mut f[eth.header_len()..]);
    f
}

/// A neighbour solicitation from `src` (MAC and address) for `target`,
/// to the target's solicited-node group, with a source link-layer-address
/// option if `slla`, tagged with `tag` if given.
pub fn solicit(src: MacAddr, src_ip: Ipv6Addr, target: Ipv6Addr, slla: bool, tag: Option<u16>) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(t[13]), u16::from_be_bytes([t[14], t[15]]));
    let dst = MacAddr([0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    let eth = EthernetRepr { dst, src, tag, ethertype: EtherType::IPV6 };
    let nd = NdRepr { msg_type: icmpv6::NEIGHBOR_SOLICIT, flags: 0, target, lladdr: slla.then_some(src) };
    let l3 = eth.header_len();
    let mut f = vec![0u8; l3 + Ipv6Repr::LEN + nd.len()];
    eth.emit(&mut f);
    let ip =
        Ipv6Repr { src: src_ip, dst: group, next_header: icmpv6::PROTO_ICMPV6, hop_limit: 255, payload_len: nd.len() };
    ip.emit(&mut f[l3..]);
    nd.emit(&mut f[l3 + Ipv6Repr::LEN..], src_ip, group);
    f
}
