//! The kernel fast path: rvs decides, the kernel executes.
//!
//! rvs keeps every decision (learning, aging, VLAN rules, flooding, the
//! control commands). What a known-unicast decision needs (the MAC table
//! of local ports and each port's VLAN configuration) is mirrored into BPF
//! maps ([`KernelTables`]), and a program on the port
//! ([`program::program`], at XDP or at tc ingress) forwards the frames
//! whose verdict it can tell for certain, with the same tag edit. Everything else (unknown or moved sources, floods,
//! tunnels, drops) goes to the polling threads as before, so the kernel
//! never decides anything rvs would not.
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
use crate::fdb::Learn;
use crate::ids::{BridgeId, PortId, Vid};
use crate::pipeline::{Action, Verdict};
use crate::port::MAX_FRAME;
use crate::snapshot::{PortInfo, Snapshot};
use crate::wire::MacAddr;
use maps::{KernelCounters, MacKey, MacValue, PortEntry};

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
    max_ports: u32,
}

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
            fdb: bpf::create_map(BPF_MAP_TYPE_HASH, 12, 8, max_macs.max(1), "rvs_kfdb")?,
            devs: bpf::create_map(BPF_MAP_TYPE_DEVMAP, 4, 4, max_ports, "rvs_kdevs")?,
            counters: bpf::create_map(BPF_MAP_TYPE_PERCPU_ARRAY, 4, counters, max_ports, "rvs_kcount")?,
            clock: bpf::create_map(BPF_MAP_TYPE_ARRAY, 4, 4, 1, "rvs_kclock")?,
            forgotten: bpf::create_map(bpf::BPF_MAP_TYPE_LRU_HASH, 12, 4, FORGOTTEN, "rvs_kforgot")?,
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
    /// kernel may send out of it; `ingress` says whether its own program
    /// may take its frames.
    pub fn set_port(&self, port: &PortInfo, ingress: bool, ifindex: Option<u32>) -> io::Result<()> {
        let key = self.index(port.id)?;
        let mut flags = if ingress { maps::PORT_INGRESS } else { 0 };
        match ifindex {
            Some(ifindex) => {
                bpf::map_update(&self.devs, &key, &ifindex.to_ne_bytes())?;
                flags |= maps::PORT_EGRESS;
            }
            None => match bpf::map_delete(&self.devs, &key) {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
                _ => {}
            },
        }
        bpf::map_update(&self.ports, &key, &PortEntry::new(port, flags, ifindex.unwrap_or(0)).bytes())
    }

    /// Forgets port `id`: the kernel neither takes its frames nor sends
    /// to it.
    pub fn clear_port(&self, id: PortId) -> io::Result<()> {
        let key = self.index(id)?;
        bpf::map_update(&self.ports, &key, &PortEntry::NONE.bytes())?;
        match bpf::map_delete(&self.devs, &key) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
            _ => Ok(()),
        }
    }

    /// Records that `mac` in VLAN `vid` of `bridge` is at local port `port`
    /// (keeping the kernel's last-seen time if it had the entry).
    pub fn set_mac(&self, bridge: BridgeId, mac: MacAddr, vid: Vid, port: PortId, is_static: bool) -> io::Result<()> {
        let key = MacKey::new(bridge, mac, vid).bytes();
        let seen = self.seen(bridge, mac, vid)?.unwrap_or(0);
        let flags = if is_static { maps::MAC_STATIC } else { 0 };
        bpf::map_update(&self.fdb, &key, &MacValue { seen, flags, ..MacValue::new(port) }.bytes())
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
        let mut v = [0u8; 8];
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
            match bpf::map_delete(&self.forgotten, &key) {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
                _ => {}
            }
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
        }
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
/// takes frames from the frame's port, `egress_on` whether it sends to a
/// port (the port entries' flags). The property tests hold the program to
/// it; `rvsctl trace` reports it.
///
/// The two executors differ in what an XDP program cannot do: `xdp`
/// leaves to userspace frames bigger than a buffer and frames whose
/// checksum was left to offload (XDP loses that state), while `tc` carries
/// any skb as it is, GSO and offloaded checksums included.
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
    let fits = egress::port_plan(snap, out, v.vid, v.tagged).is_ok();
    let xdp_can = ex == Executor::Tc || (frame.len() <= MAX_FRAME && !checksum_blocks(frame));
    (ingress_on && learned_here && fits && egress_on(out) && xdp_can).then_some(out)
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
