//! What rvs writes into the kernel's maps, byte for byte as the programs
//! read it: the MAC table (one entry per MAC, VLAN and bridge learned on a
//! local port), each port's configuration, and the per-CPU counters of
//! what the kernel carried.

use std::mem::{offset_of, size_of};

use crate::ids::{BridgeId, PortId, Vid};
use crate::snapshot::{PortInfo, VlanMode, VLAN_COUNT};
use crate::wire::MacAddr;

/// Key of the kernel MAC table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MacKey {
    /// The MAC, as on the wire.
    pub mac: [u8; 6],
    /// VLAN, host order.
    pub vid: u16,
    /// Bridge, host order.
    pub bridge: u16,
    /// Zero: the hash compares every byte.
    pub pad: u16,
}

impl MacKey {
    /// The key of `mac` in VLAN `vid` of `bridge`.
    pub fn new(bridge: BridgeId, mac: MacAddr, vid: Vid) -> MacKey {
        MacKey { mac: mac.0, vid: vid.0, bridge: bridge.0, pad: 0 }
    }

    /// A key read back from the map.
    pub fn from_bytes(b: &[u8; size_of::<MacKey>()]) -> MacKey {
        MacKey {
            mac: b[..6].try_into().expect("6 bytes"),
            vid: u16::from_ne_bytes([b[6], b[7]]),
            bridge: u16::from_ne_bytes([b[8], b[9]]),
            pad: 0,
        }
    }

    /// The key's bytes, as the map stores them.
    pub fn bytes(&self) -> [u8; size_of::<MacKey>()] {
        let mut b = [0u8; size_of::<MacKey>()];
        b[..6].copy_from_slice(&self.mac);
        b[6..8].copy_from_slice(&self.vid.to_ne_bytes());
        b[8..10].copy_from_slice(&self.bridge.to_ne_bytes());
        b
    }
}

/// Offset of [`MacKey::vid`].
pub const KEY_VID: i16 = offset_of!(MacKey, vid) as i16;
/// Offset of [`MacKey::bridge`].
pub const KEY_BRIDGE: i16 = offset_of!(MacKey, bridge) as i16;

/// Value of the kernel MAC table: the local port the MAC was learned on,
/// and when the kernel last saw it send (the clock map's value, rvsd's
/// seconds; 0 if it has not), so that aging does not forget a MAC whose
/// traffic only the kernel carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MacValue {
    /// The port, host order.
    pub port: u16,
    /// [`MAC_STATIC`] for a static entry.
    pub flags: u16,
    /// Last seen as a source by the kernel, host order.
    pub seen: u32,
}

impl MacValue {
    /// The value for a MAC at `port`, not yet seen by the kernel.
    pub fn new(port: PortId) -> MacValue {
        MacValue { port: port.0, flags: 0, seen: 0 }
    }

    /// The value's bytes.
    pub fn bytes(&self) -> [u8; size_of::<MacValue>()] {
        let mut b = [0u8; size_of::<MacValue>()];
        b[..2].copy_from_slice(&self.port.to_ne_bytes());
        b[2..4].copy_from_slice(&self.flags.to_ne_bytes());
        b[4..8].copy_from_slice(&self.seen.to_ne_bytes());
        b
    }

    /// A value read back from the map.
    pub fn from_bytes(b: &[u8; size_of::<MacValue>()]) -> MacValue {
        MacValue {
            port: u16::from_ne_bytes([b[0], b[1]]),
            flags: u16::from_ne_bytes([b[2], b[3]]),
            seen: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// Offset of [`MacValue::port`].
pub const VAL_PORT: i16 = offset_of!(MacValue, port) as i16;
/// Offset of [`MacValue::flags`].
pub const VAL_FLAGS: i16 = offset_of!(MacValue, flags) as i16;
/// [`MacValue::flags`]: a static entry (a source seen elsewhere does not
/// move it, so the kernel keeps it).
pub const MAC_STATIC: u16 = 1;
/// Offset of [`MacValue::seen`].
pub const VAL_SEEN: i16 = offset_of!(MacValue, seen) as i16;

/// [`PortEntry::flags`]: the kernel may take frames arriving on the port.
pub const PORT_INGRESS: u8 = 1;
/// [`PortEntry::flags`]: the kernel may send frames out of the port (its
/// device is in the redirect map and in [`PortEntry::ifindex`]).
pub const PORT_EGRESS: u8 = 2;
/// [`PortEntry::mode`] of an access port.
pub const MODE_ACCESS: u8 = 0;
/// [`PortEntry::mode`] of a trunk port.
pub const MODE_TRUNK: u8 = 1;
/// [`PortEntry::bridge`] of a port in no bridge.
pub const NO_BRIDGE: u16 = u16::MAX;

/// A port's configuration as the programs read it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortEntry {
    /// Its bridge, or [`NO_BRIDGE`].
    pub bridge: u16,
    /// [`PORT_INGRESS`] and [`PORT_EGRESS`].
    pub flags: u8,
    /// [`MODE_ACCESS`] or [`MODE_TRUNK`].
    pub mode: u8,
    /// An access port's VLAN, or a trunk's native VLAN (0: none).
    pub pvid: u16,
    /// Zero.
    pub pad: u16,
    /// The port's device, which the `tc` executor sends to (0: none).
    pub ifindex: u32,
    /// A trunk's allowed VLANs: bit `v % 8` of byte `v / 8`.
    pub allowed: [u8; VLAN_COUNT / 8],
}

impl PortEntry {
    /// The entry of a port that is in no bridge: the kernel leaves its
    /// frames alone.
    pub const NONE: PortEntry = PortEntry {
        bridge: NO_BRIDGE,
        flags: 0,
        mode: MODE_ACCESS,
        pvid: 0,
        pad: 0,
        ifindex: 0,
        allowed: [0; VLAN_COUNT / 8],
    };

    /// The entry of `port`; `flags` says which directions the kernel may
    /// carry for it, `ifindex` is its device (0: none).
    pub fn new(port: &PortInfo, flags: u8, ifindex: u32) -> PortEntry {
        let Some(bridge) = port.bridge else { return PortEntry::NONE };
        let mut e = PortEntry { bridge: bridge.0, flags, ifindex, ..PortEntry::NONE };
        match &port.vlan {
            VlanMode::Access(v) => e.pvid = v.0,
            VlanMode::Trunk { allowed, native } => {
                e.mode = MODE_TRUNK;
                e.pvid = native.map_or(0, |v| v.0);
                for v in allowed.iter() {
                    e.allowed[v.index() / 8] |= 1 << (v.index() % 8);
                }
            }
        }
        e
    }

    /// The entry's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; size_of::<PortEntry>()];
        b[0..2].copy_from_slice(&self.bridge.to_ne_bytes());
        b[2] = self.flags;
        b[3] = self.mode;
        b[4..6].copy_from_slice(&self.pvid.to_ne_bytes());
        b[8..12].copy_from_slice(&self.ifindex.to_ne_bytes());
        b[12..].copy_from_slice(&self.allowed);
        b
    }
}

/// Offset of [`PortEntry::bridge`].
pub const PORT_BRIDGE: i16 = offset_of!(PortEntry, bridge) as i16;
/// Offset of [`PortEntry::flags`].
pub const PORT_FLAGS: i16 = offset_of!(PortEntry, flags) as i16;
/// Offset of [`PortEntry::mode`].
pub const PORT_MODE: i16 = offset_of!(PortEntry, mode) as i16;
/// Offset of [`PortEntry::pvid`].
pub const PORT_PVID: i16 = offset_of!(PortEntry, pvid) as i16;
/// Offset of [`PortEntry::ifindex`].
pub const PORT_IFINDEX: i16 = offset_of!(PortEntry, ifindex) as i16;
/// Offset of [`PortEntry::allowed`].
pub const PORT_ALLOWED: i16 = offset_of!(PortEntry, allowed) as i16;

/// What the kernel carried for one port, on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Frames the kernel took in on the port and forwarded.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames the kernel sent out of the port.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
}

impl KernelCounters {
    /// The counters summed over the per-CPU slots of a map value.
    pub fn sum(per_cpu: &[u8]) -> KernelCounters {
        let slot = size_of::<KernelCounters>();
        per_cpu.chunks_exact(slot).fold(KernelCounters::default(), |a, c| {
            let at = |i: usize| u64::from_ne_bytes(c[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            KernelCounters {
                rx_packets: a.rx_packets + at(0),
                rx_bytes: a.rx_bytes + at(1),
                tx_packets: a.tx_packets + at(2),
                tx_bytes: a.tx_bytes + at(3),
            }
        })
    }
}

/// Offset of [`KernelCounters::rx_packets`].
pub const CNT_RX_PACKETS: i16 = offset_of!(KernelCounters, rx_packets) as i16;
/// Offset of [`KernelCounters::rx_bytes`].
pub const CNT_RX_BYTES: i16 = offset_of!(KernelCounters, rx_bytes) as i16;
/// Offset of [`KernelCounters::tx_packets`].
pub const CNT_TX_PACKETS: i16 = offset_of!(KernelCounters, tx_packets) as i16;
/// Offset of [`KernelCounters::tx_bytes`].
pub const CNT_TX_BYTES: i16 = offset_of!(KernelCounters, tx_bytes) as i16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{PortKind, VlanSet};

    #[test]
    fn layouts_are_what_the_programs_read() {
        assert_eq!((size_of::<MacKey>(), KEY_VID, KEY_BRIDGE), (12, 6, 8));
        assert_eq!((size_of::<MacValue>(), VAL_PORT, VAL_SEEN), (8, 0, 4));
        assert_eq!(
            (size_of::<PortEntry>(), PORT_FLAGS, PORT_MODE, PORT_PVID, PORT_IFINDEX, PORT_ALLOWED),
            (524, 2, 3, 4, 8, 12)
        );
        assert_eq!((size_of::<KernelCounters>(), CNT_TX_BYTES), (32, 24));
    }

    #[test]
    fn keys_and_values_encode_in_place() {
        let k = MacKey::new(BridgeId(3), MacAddr([2, 0, 0, 0, 0, 9]), Vid(10));
        let b = k.bytes();
        assert_eq!(&b[..6], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), 10);
        assert_eq!(u16::from_ne_bytes([b[8], b[9]]), 3);
        assert_eq!(&b[10..], &[0, 0]);
        assert_eq!(MacKey::from_bytes(&b), k);
        let v = MacValue { seen: 77, flags: MAC_STATIC, ..MacValue::new(PortId(5)) };
        assert_eq!(MacValue::from_bytes(&v.bytes()), v);
    }

    #[test]
    fn port_entries_follow_the_vlan_mode() {
        let port = |vlan| PortInfo {
            id: PortId(1),
            bridge: Some(BridgeId(2)),
            vlan,
            name: "p1".into(),
            kind: PortKind::Plain,
        };
        let a = PortEntry::new(&port(VlanMode::Access(Vid(7))), PORT_INGRESS, 0);
        assert_eq!((a.bridge, a.flags, a.mode, a.pvid, a.ifindex), (2, PORT_INGRESS, MODE_ACCESS, 7, 0));
        assert!(a.allowed.iter().all(|b| *b == 0));
        let allowed: VlanSet = [Vid(1), Vid(9), Vid(4094)].into_iter().collect();
        let t = PortEntry::new(&port(VlanMode::Trunk { allowed, native: Some(Vid(9)) }), PORT_EGRESS, 33);
        assert_eq!((t.mode, t.pvid), (MODE_TRUNK, 9));
        assert_eq!((t.allowed[0], t.allowed[1], t.allowed[511]), (0b10, 0b10, 0b0100_0000));
        assert_eq!(t.bytes().len(), 524);
        assert_eq!(u32::from_ne_bytes(t.bytes()[8..12].try_into().unwrap()), 33);
        assert_eq!(&t.bytes()[12..], &t.allowed[..]);
        let none = PortInfo { bridge: None, ..port(VlanMode::Access(Vid(1))) };
        assert_eq!(PortEntry::new(&none, PORT_INGRESS, 4), PortEntry::NONE);
    }

    #[test]
    fn counters_sum_over_cpus() {
        let mut b = vec![0u8; 64];
        b[0] = 1;
        b[8] = 60;
        b[32] = 2;
        b[56] = 9;
        let c = KernelCounters::sum(&b);
        assert_eq!((c.rx_packets, c.rx_bytes, c.tx_packets, c.tx_bytes), (3, 60, 0, 9));
    }
}
