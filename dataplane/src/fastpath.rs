//! The kernel fast path: rvs decides, the kernel executes.
//!
//! rvs keeps every decision (learning, aging, VLAN rules, flooding, the
//! control commands). What a known-unicast decision needs (the MAC table,
//! each port's VLAN configuration, the tunnels' outer headers and VNIs) is
//! mirrored into BPF maps ([`KernelTables`]), and a program on the port
//! ([`program::program`], at XDP or at tc ingress, and on an uplink for
//! what arrives through a tunnel) forwards the frames whose verdict it can
//! tell for certain, with the same tag edit and encapsulation. Everything
//! else (unknown or moved sources, floods, drops, IPv6 underlays) goes to
//! the polling threads as before, so the kernel never decides anything rvs
//! would not.
//!
//! What the kernel carried is counted per port ([`maps::KernelCounters`]),
//! and a source it saw refreshes the MAC's last-seen time in its map entry,
//! which aging reads back.

pub mod maps;
pub mod program;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::bpf::{self, BPF_MAP_TYPE_DEVMAP, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_ARRAY};
use crate::egress;
use crate::fdb::{Dest, Learn, NO_REMOTE};
use crate::ids::{BridgeId, PortId, Vid};
use crate::pipeline::{Action, TagEdit, Verdict};
use crate::port::MAX_FRAME;
use crate::snapshot::{PortInfo, PortKind, Snapshot, Tunnel};
use crate::wire::ip::l3_of;
use crate::wire::{EtherType, MacAddr};
use maps::{KernelCounters, MacKey, MacValue, OuterEntry, PortEntry};
use std::mem::size_of;

const BPF_MAP_TYPE_ARRAY: u32 = 2;

/// The maps the kernel executes from, shared by every port's program.
#[derive(Debug)]
pub struct KernelTables {
    ports: OwnedFd,
    fdb: OwnedFd,
    devs: OwnedFd,
    counters: OwnedFd,
    clock: OwnedFd,
    forgotten: OwnedFd,
    outers: OwnedFd,
    vnis: OwnedFd,
    max_ports: u32,
}

/// Remote VTEPs over all tunnels whose outer headers the kernel holds.
const OUTERS: u32 = 4096;
/// Tunnels (local VTEP and VNI) the uplink program decapsulates for.
const VNIS: u32 = 4096;

/// Moved MACs the programs forgot that rvsd has not yet written back
/// (more are forgotten first, least recent first: rvsd then rewrites the
/// bridge's whole table, see [`KernelTables::take_forgotten`]).
const FORGOTTEN: u32 = 1024;

impl KernelTables {
    /// Maps for port ids below `max_ports` and at most `max_macs` MACs.
    pub fn new(max_ports: u32, max_macs: u32) -> io::Result<KernelTables> {
        let entry = std::mem::size_of::<PortEntry>() as u32;
        let counters = std::mem::size_of::<KernelCounters>() as u32;
        Ok(KernelTables {
            ports: bpf::create_map(BPF_MAP_TYPE_ARRAY, 4, entry, max_ports, "rvs_kports")?,
            fdb: bpf::create_map(BPF_MAP_TYPE_HASH, 12, size_of::<MacValue>() as u32, max_macs.max(1), "rvs_kfdb")?,
            devs: bpf::create_map(BPF_MAP_TYPE_DEVMAP, 4, 4, max_ports, "rvs_kdevs")?,
            counters: bpf::create_map(BPF_MAP_TYPE_PERCPU_ARRAY, 4, counters, max_ports, "rvs_kcount")?,
            clock: bpf::create_map(BPF_MAP_TYPE_ARRAY, 4, 4, 1, "rvs_kclock")?,
            forgotten: bpf::create_map(bpf::BPF_MAP_TYPE_LRU_HASH, 12, 4, FORGOTTEN, "rvs_kforgot")?,
            outers: bpf::create_map(BPF_MAP_TYPE_HASH, 4, size_of::<OuterEntry>() as u32, OUTERS, "rvs_kouter")?,
            vnis: bpf::create_map(BPF_MAP_TYPE_HASH, 12, 4, VNIS, "rvs_kvni")?,
            max_ports,
        })
    }

    fn index(&self, id: PortId) -> io::Result<[u8; 4]> {
        if u32::from(id.0) >= self.max_ports {
            return Err(io::Error::other(format!("port id {id} beyond the kernel tables' {}", self.max_ports)));
        }
        Ok(u32::from(id.0).to_ne_bytes())
    }

    /// Sets the clock the programs stamp sources with: rvsd's seconds
    /// since it started, the time its FDB counts in.
    pub fn set_clock(&self, now: u32) -> io::Result<()> {
        bpf::map_update(&self.clock, &0u32.to_ne_bytes(), &now.to_ne_bytes())
    }

    /// Makes `port` known to the programs: `ifindex` is its device if the
    /// kernel may send out of it (a tunnel's: its uplink); `ingress` says
    /// whether its own program (a tunnel's: the uplink's) may take its
    /// frames. A tunnel's outer headers and VNI are written too.
    pub fn set_port(&self, port: &PortInfo, ingress: bool, ifindex: Option<u32>) -> io::Result<()> {
        let key = self.index(port.id)?;
        self.set_tunnel(port, ingress, ifindex.is_some())?;
        let mut flags = if ingress { maps::PORT_INGRESS } else { 0 };
        match ifindex {
            Some(ifindex) => {
                bpf::map_update(&self.devs, &key, &ifindex.to_ne_bytes())?;
                flags |= maps::PORT_EGRESS;
            }
            None => ignore_absent(bpf::map_delete(&self.devs, &key))?,
        }
        bpf::map_update(&self.ports, &key, &PortEntry::new(port, flags, ifindex.unwrap_or(0)).bytes())
    }

    /// Forgets port `id`: the kernel neither takes its frames nor sends
    /// to it.
    pub fn clear_port(&self, id: PortId) -> io::Result<()> {
        let key = self.index(id)?;
        self.clear_tunnel(id)?;
        bpf::map_update(&self.ports, &key, &PortEntry::NONE.bytes())?;
        ignore_absent(bpf::map_delete(&self.devs, &key))
    }

    /// A tunnel port's outer headers (one per resolved IPv4 remote) and
    /// its VNI, for the programs to encapsulate (`egress`) and the uplink
    /// program to decapsulate (`ingress`); none for other ports.
    fn set_tunnel(&self, port: &PortInfo, ingress: bool, egress: bool) -> io::Result<()> {
        self.clear_tunnel(port.id)?;
        let PortKind::Vxlan(t) = &port.kind else { return Ok(()) };
        // Decapsulation reads them too: how it knows a remote.
        if egress || ingress {
            for (r, remote) in t.remotes.iter().enumerate() {
                let Some(e) = remote.outer.as_ref().and_then(|o| OuterEntry::new(o, t.max_inner_frame)) else {
                    continue;
                };
                bpf::map_update(&self.outers, &maps::outer_key(port.id, r as u16), &e.bytes())?;
                // A MAC at the tunnel with no remote (a static entry) goes
                // to every remote: with one, that is a unicast the kernel
                // can carry.
                if t.remotes.len() == 1 {
                    bpf::map_update(&self.outers, &maps::outer_key(port.id, NO_REMOTE), &e.bytes())?;
                }
            }
        }
        if let Some(k) = maps::vni_key(t.local, t.dst_port, t.vni).filter(|_| ingress) {
            bpf::map_update(&self.vnis, &k, &u32::from(port.id.0).to_ne_bytes())?;
        }
        Ok(())
    }

    /// Removes port `id`'s outer headers and VNI, if its entry says it was
    /// a tunnel (the maps are walked only then: this runs for every port on
    /// every configuration change).
    fn clear_tunnel(&self, id: PortId) -> io::Result<()> {
        let mut entry = vec![0u8; size_of::<PortEntry>()];
        bpf::map_lookup(&self.ports, &self.index(id)?, &mut entry)?;
        if entry[maps::PORT_FLAGS as usize] & maps::PORT_TUNNEL == 0 {
            return Ok(());
        }
        let outers: Vec<[u8; 4]> =
            keys(&self.outers)?.into_iter().filter(|k| u32::from_ne_bytes(*k) >> 16 == u32::from(id.0)).collect();
        for k in outers {
            ignore_absent(bpf::map_delete(&self.outers, &k))?;
        }
        for k in keys::<12>(&self.vnis)? {
            let mut v = [0u8; 4];
            if bpf::map_lookup(&self.vnis, &k, &mut v).is_ok() && u32::from_ne_bytes(v) == u32::from(id.0) {
                ignore_absent(bpf::map_delete(&self.vnis, &k))?;
            }
        }
        Ok(())
    }

    /// Records that `mac` in VLAN `vid` of `bridge` is at port `port`
    /// (behind remote `remote` of a tunnel, or `NO_REMOTE`), keeping the
    /// kernel's last-seen time if it had the entry.
    pub fn set_mac(&self, bridge: BridgeId, mac: MacAddr, vid: Vid, at: Dest, is_static: bool) -> io::Result<()> {
        let key = MacKey::new(bridge, mac, vid).bytes();
        let seen = self.seen(bridge, mac, vid)?.unwrap_or(0);
        let flags = if is_static { maps::MAC_STATIC } else { 0 };
        let v = MacValue { seen, flags, remote: at.remote, ..MacValue::new(at.port) };
        bpf::map_update(&self.fdb, &key, &v.bytes())
    }

    /// Removes `mac` in VLAN `vid` of `bridge`; false if it was not there.
    pub fn del_mac(&self, bridge: BridgeId, mac: MacAddr, vid: Vid) -> io::Result<bool> {
        match bpf::map_delete(&self.fdb, &MacKey::new(bridge, mac, vid).bytes()) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The entry of `mac` in VLAN `vid` of `bridge`, if the kernel has it.
    pub fn mac(&self, bridge: BridgeId, mac: MacAddr, vid: Vid) -> io::Result<Option<MacValue>> {
        let mut v = [0u8; size_of::<MacValue>()];
        match bpf::map_lookup(&self.fdb, &MacKey::new(bridge, mac, vid).bytes(), &mut v) {
            Ok(()) => Ok(Some(MacValue::from_bytes(&v))),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// When the kernel last saw `mac` send (the clock's value then; 0 if
    /// never), if it has the entry.
    pub fn seen(&self, bridge: BridgeId, mac: MacAddr, vid: Vid) -> io::Result<Option<u32>> {
        Ok(self.mac(bridge, mac, vid)?.map(|v| v.seen))
    }

    /// The MACs the programs forgot since the last call (a source seen on
    /// another port: a move), emptying the list. rvs learns the move from
    /// the frame and mirrors it; but if the MAC moved back, or rvs did not
    /// move it, nothing changed in its table, and only this says the
    /// kernel's copy is gone.
    pub fn take_forgotten(&self) -> io::Result<Vec<(BridgeId, MacAddr, Vid)>> {
        let mut out = Vec::new();
        let mut key = [0u8; 12];
        while bpf::map_next_key(&self.forgotten, None, &mut key)? {
            ignore_absent(bpf::map_delete(&self.forgotten, &key))?;
            let k = MacKey::from_bytes(&key);
            out.push((BridgeId(k.bridge), MacAddr(k.mac), Vid(k.vid)));
            if out.len() > FORGOTTEN as usize * 4 {
                break; // a program forgets faster than we read: enough for now
            }
        }
        Ok(out)
    }

    /// What the kernel carried for port `id`, over every CPU.
    pub fn counters(&self, id: PortId) -> io::Result<KernelCounters> {
        let mut v = vec![0u8; bpf::per_cpu_len(std::mem::size_of::<KernelCounters>() as u32)?];
        bpf::map_lookup(&self.counters, &self.index(id)?, &mut v)?;
        Ok(KernelCounters::sum(&v))
    }

    /// The maps as the programs read them.
    pub fn maps(&self) -> program::Maps {
        program::Maps {
            ports: self.ports.as_raw_fd(),
            fdb: self.fdb.as_raw_fd(),
            devs: self.devs.as_raw_fd(),
            counters: self.counters.as_raw_fd(),
            clock: self.clock.as_raw_fd(),
            forgotten: self.forgotten.as_raw_fd(),
            outers: self.outers.as_raw_fd(),
            vnis: self.vnis.as_raw_fd(),
        }
    }
}

/// Every key of `map` (a small control-path map).
fn keys<const N: usize>(map: &OwnedFd) -> io::Result<Vec<[u8; N]>> {
    let mut out = Vec::new();
    let mut key = [0u8; N];
    let mut prev: Option<[u8; N]> = None;
    while bpf::map_next_key(map, prev.as_ref().map(|k| &k[..]), &mut key)? {
        out.push(key);
        prev = Some(key);
    }
    Ok(out)
}

/// `r`, with "no such entry" as success.
fn ignore_absent(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
        _ => Ok(()),
    }
}

/// Which program carries a port's frames in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    /// The port's XDP program, in front of its AF_XDP socket.
    Xdp,
    /// A tcx ingress program; the port has no XDP, its host keeps GSO.
    Tc,
}

/// The port a port's executor `ex` sends a frame to, if it takes it: the
/// rule [`program::program`] follows, stated over the userspace verdict
/// `v` (from `pipeline::dry_run`). `ingress_on` says whether the kernel
/// takes frames from the frame's port (for a frame decapsulated on an
/// uplink, by the uplink's XDP program: also whether the remote it came
/// from has IPv4 outer headers in the kernel, which is how the program
/// knows the remote), `egress_on` whether it sends to a port (the port
/// entries' flags). The property tests hold the programs to it; `rvsctl
/// trace` reports it.
///
/// The two executors differ in what an XDP program cannot do: `xdp`
/// leaves to userspace frames bigger than a buffer and frames whose
/// checksum was left to offload (XDP loses that state), while `tc` carries
/// any skb as it is, GSO and offloaded checksums included. Into a tunnel,
/// both need the remote's outer headers over IPv4 and an inner frame that
/// fits the uplink (a GSO skb is cut to fit); `tc` takes only IP frames
/// that leave the tunnel untagged (`bpf_skb_adjust_room` encapsulates IP
/// only, and a pushed tag would land on the outer frame).
pub fn carries(
    ex: Executor,
    snap: &Snapshot,
    frame: &[u8],
    v: &Verdict,
    ingress_on: bool,
    egress_on: impl Fn(PortId) -> bool,
) -> Option<PortId> {
    let Action::Unicast(out) = v.action else { return None };
    let learned_here = matches!(v.learn, Some(Learn::Known | Learn::Refreshed));
    let plan = egress::port_plan(snap, out, v.vid, v.tagged).ok()?;
    let xdp_can = ex == Executor::Tc || (frame.len() <= MAX_FRAME && !checksum_blocks(frame));
    let tunnel_can = match &plan.port.kind {
        PortKind::Vxlan(t) => {
            let inner = match plan.edit {
                TagEdit::Push(_) => frame.len() + 4,
                TagEdit::Pop => frame.len() - 4,
                TagEdit::Keep | TagEdit::Rewrite(_) => frame.len(),
            };
            // One copy (no remote, a static entry: to every remote, of
            // which there must be one), toward a resolved IPv4 remote.
            let one = egress::tunnel_plan(t, inner, v.remote).ok().filter(|r| r.len() == 1);
            let ipv4 = one.is_some_and(|r| kernel_has_remote(t, r.start));
            let tc_can = ex == Executor::Xdp
                || (matches!(plan.edit, TagEdit::Keep | TagEdit::Pop)
                    && matches!(l3_of(frame), Some((EtherType::IPV4 | EtherType::IPV6, _))));
            ipv4 && tc_can
        }
        _ => true,
    };
    (ingress_on && learned_here && egress_on(out) && xdp_can && tunnel_can).then_some(out)
}

/// True if the kernel holds remote `r` of tunnel `t`: resolved, over IPv4
/// (the outer headers [`KernelTables`] writes, [`OuterEntry::new`]). Only
/// then can the programs encapsulate toward it, or tell a frame from it.
pub fn kernel_has_remote(t: &Tunnel, r: usize) -> bool {
    egress::remote_outer(t, r).is_ok_and(|o| !o.is_v6())
}

/// True if the program leaves `frame` to userspace for its checksum: a
/// TCP or UDP frame whose checksum field holds only the pseudo-header sum
/// (left to offload), or whose IP or L4 header is cut short. The same
/// arithmetic as the program's, wrap-arounds included.
fn checksum_blocks(frame: &[u8]) -> bool {
    let be = |at: usize| u64::from(u16::from_be_bytes([frame[at], frame[at + 1]]));
    let l3 = if frame.get(12..14) == Some(&[0x81, 0x00]) { 18 } else { 14 };
    let (proto, l4, mut sum) = match frame.get(l3 - 2..l3) {
        Some([0x08, 0x00]) => {
            if frame.len() < l3 + 20 {
                return true;
            }
            let ihl = usize::from(frame[l3] & 0xf) * 4;
            let proto = frame[l3 + 9];
            if frame[l3] >> 4 != 4 || ihl < 20 || be(l3 + 6) & 0x3fff != 0 || !matches!(proto, 6 | 17) {
                return false;
            }
            let len = be(l3 + 2).wrapping_sub(ihl as u64);
            let addrs = (0..4).map(|i| be(l3 + 12 + 2 * i)).fold(0u64, u64::wrapping_add);
            (proto, l3 + ihl, u64::from(proto).wrapping_add(len).wrapping_add(addrs))
        }
        Some([0x86, 0xdd]) => {
            if frame.len() < l3 + 40 {
                return true;
            }
            let proto = frame[l3 + 6];
            if !matches!(proto, 6 | 17) {
                return false;
            }
            let addrs: u64 = (0..16).map(|i| be(l3 + 8 + 2 * i)).sum();
            (proto, l3 + 40, u64::from(proto) + be(l3 + 4) + addrs)
        }
        _ => return false,
    };
    let field = if proto == 17 { l4 + 6 } else { l4 + 16 };
    if frame.len() < field + 2 {
        return true;
    }
    let current = be(field);
    for _ in 0..3 {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    current != 0 && current == sum
}

#[cfg(test)]
mod tests;
