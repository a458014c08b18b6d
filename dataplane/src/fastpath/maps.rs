//! What rvs writes into the kernel's maps, byte for byte as the programs
//! read it: the MAC table (one entry per MAC, VLAN and bridge learned on a
//! local port or behind a tunnel's remote), each port's configuration,
//! the tunnels' outer headers and VNIs, and the per-CPU counters of what
//! the kernel carried.

use std::mem::{offset_of, size_of};

use std::net::IpAddr;

use crate::fdb::NO_REMOTE;
use crate::ids::{BridgeId, PortId, Vid};
use crate::snapshot::{PortInfo, PortKind, VlanMode, VLAN_COUNT};
use crate::wire::vxlan::{OuterTemplate, OVERHEAD_V4};
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

/// Value of the kernel MAC table: the port the MAC was learned on (and
/// for a tunnel port, the remote VTEP behind which), and when the kernel
/// last saw it send (the clock map's value, rvsd's seconds; 0 if it has
/// not), so that aging does not forget a MAC whose traffic only the
/// kernel carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MacValue {
    /// The port, host order.
    pub port: u16,
    /// [`MAC_STATIC`] for a static entry.
    pub flags: u16,
    /// Last seen as a source by the kernel, host order.
    pub seen: u32,
    /// The remote VTEP (an index into the tunnel's remotes), or
    /// [`NO_REMOTE`] for a local port.
    pub remote: u16,
    /// Zero.
    pub pad: u16,
}

impl MacValue {
    /// The value for a MAC at local port `port`, not yet seen by the kernel.
    pub fn new(port: PortId) -> MacValue {
        MacValue { port: port.0, flags: 0, seen: 0, remote: NO_REMOTE, pad: 0 }
    }

    /// The value's bytes.
    pub fn bytes(&self) -> [u8; size_of::<MacValue>()] {
        let mut b = [0u8; size_of::<MacValue>()];
        b[..2].copy_from_slice(&self.port.to_ne_bytes());
        b[2..4].copy_from_slice(&self.flags.to_ne_bytes());
        b[4..8].copy_from_slice(&self.seen.to_ne_bytes());
        b[8..10].copy_from_slice(&self.remote.to_ne_bytes());
        b
    }

    /// A value read back from the map.
    pub fn from_bytes(b: &[u8; size_of::<MacValue>()]) -> MacValue {
        MacValue {
            port: u16::from_ne_bytes([b[0], b[1]]),
            flags: u16::from_ne_bytes([b[2], b[3]]),
            seen: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            remote: u16::from_ne_bytes([b[8], b[9]]),
            pad: 0,
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
/// Offset of [`MacValue::remote`].
pub const VAL_REMOTE: i16 = offset_of!(MacValue, remote) as i16;

/// Key of the outer-header map: a tunnel port and one of its remotes.
pub fn outer_key(port: PortId, remote: u16) -> [u8; 4] {
    (u32::from(port.0) << 16 | u32::from(remote)).to_ne_bytes()
}

/// Value of the outer-header map: the headers toward one remote VTEP over
/// IPv4 (the kernel encapsulates only over IPv4; IPv6 underlays stay in
/// userspace, which fills their mandatory UDP checksum), and what the
/// programs patch per frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterEntry {
    /// Ethernet, IPv4, UDP and VXLAN headers, as [`OuterTemplate`] makes
    /// them: IP length and checksum, UDP source port and length zero.
    pub headers: [u8; OUTER_LEN],
    /// Ones'-complement sum of the IPv4 header as it is here, folded to 16
    /// bits: the checksum is `!fold(sum + total length)`.
    pub sum: u32,
    /// Largest inner frame (Ethernet header included) the uplink's MTU
    /// takes once encapsulated.
    pub max_inner: u32,
}

/// Bytes of outer headers over IPv4.
pub const OUTER_LEN: usize = OVERHEAD_V4;
/// Offset of [`OuterEntry::sum`].
pub const OUTER_SUM: i16 = offset_of!(OuterEntry, sum) as i16;
/// Offset of [`OuterEntry::max_inner`].
pub const OUTER_MAX_INNER: i16 = offset_of!(OuterEntry, max_inner) as i16;
/// Where the remote's address lies in [`OuterEntry::headers`] (the outer
/// IPv4 destination).
pub const OUTER_REMOTE_IP: i16 = 14 + 16;

impl OuterEntry {
    /// The entry for `outer`, if the kernel can use it (IPv4).
    pub fn new(outer: &OuterTemplate, max_inner: u32) -> Option<OuterEntry> {
        if outer.is_v6() {
            return None;
        }
        let headers: [u8; OUTER_LEN] = outer.headers().try_into().ok()?;
        Some(OuterEntry { headers, sum: u32::from(outer.ipv4_sum()?), max_inner })
    }

    /// The entry's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; size_of::<OuterEntry>()];
        b[..OUTER_LEN].copy_from_slice(&self.headers);
        b[OUTER_SUM as usize..][..4].copy_from_slice(&self.sum.to_ne_bytes());
        b[OUTER_MAX_INNER as usize..][..4].copy_from_slice(&self.max_inner.to_ne_bytes());
        b
    }
}

/// Key of the VNI map, as the uplink program builds it from a frame: the
/// outer IPv4 destination and UDP destination port (as on the wire) and
/// the VNI's three bytes as on the wire, then a zero.
pub fn vni_key(local: IpAddr, dst_port: u16, vni: u32) -> Option<[u8; 12]> {
    let IpAddr::V4(local) = local.to_canonical() else { return None };
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&local.octets());
    k[4..6].copy_from_slice(&dst_port.to_be_bytes());
    k[8..11].copy_from_slice(&vni.to_be_bytes()[1..]);
    Some(k)
}

/// Offsets in the VNI key.
pub const VNI_KEY_PORT: i16 = 4;
/// Offset of the VNI in the VNI key.
pub const VNI_KEY_VNI: i16 = 8;

/// [`PortEntry::flags`]: the kernel may take frames arriving on the port.
pub const PORT_INGRESS: u8 = 1;
/// [`PortEntry::flags`]: the kernel may send frames out of the port (its
/// device is in the redirect map and in [`PortEntry::ifindex`]).
pub const PORT_EGRESS: u8 = 2;
/// [`PortEntry::flags`]: a VXLAN port: the kernel sends to it by
/// encapsulating toward the remote in the MAC's entry and out of the
/// uplink ([`PortEntry::ifindex`]), and takes from it what the uplink
/// program decapsulated.
pub const PORT_TUNNEL: u8 = 4;
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
    /// carry for it, `ifindex` is its device (0: none). A tunnel's says so
    /// even in no bridge: its outer headers are in the kernel.
    pub fn new(port: &PortInfo, flags: u8, ifindex: u32) -> PortEntry {
        let tunnel = if matches!(port.kind, PortKind::Vxlan(_)) { PORT_TUNNEL } else { 0 };
        let Some(bridge) = port.bridge else { return PortEntry { flags: tunnel, ..PortEntry::NONE } };
        let mut e = PortEntry { bridge: bridge.0, flags: flags | tunnel, ifindex, ..PortEntry::NONE };
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
        assert_eq!((size_of::<MacValue>(), VAL_PORT, VAL_SEEN, VAL_REMOTE), (12, 0, 4, 8));
        assert_eq!((size_of::<OuterEntry>(), OUTER_SUM, OUTER_MAX_INNER), (60, 52, 56));
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
        assert_eq!(v.remote, NO_REMOTE);
        let v = MacValue { remote: 3, ..v };
        assert_eq!(MacValue::from_bytes(&v.bytes()), v);
        assert_eq!(u16::from_ne_bytes([v.bytes()[8], v.bytes()[9]]), 3);
        assert_eq!(outer_key(PortId(2), 5), 0x0002_0005u32.to_ne_bytes());
        let k = vni_key("198.18.0.1".parse().unwrap(), 4789, 0x123456).unwrap();
        assert_eq!(k, [198, 18, 0, 1, 0x12, 0xb5, 0, 0, 0x12, 0x34, 0x56, 0]);
        assert_eq!(vni_key("2001:2::1".parse().unwrap(), 4789, 1), None, "IPv6 underlays stay in userspace");
    }

    #[test]
    fn outer_entries_carry_the_template_and_its_sum() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let t = OuterTemplate::new(MacAddr([2; 6]), MacAddr([4; 6]), ip("198.18.0.1"), ip("198.18.0.2"), 4789, 64, 7)
            .unwrap();
        let e = OuterEntry::new(&t, 1464).unwrap();
        assert_eq!(&e.headers[..], t.headers());
        assert_eq!(&e.headers[OUTER_REMOTE_IP as usize..][..4], &[198, 18, 0, 2]);
        // The checksum the sum gives is the one userspace encap writes.
        let mut buf = vec![0u8; 64 + OUTER_LEN];
        let start = t.encap(&mut buf, OUTER_LEN, 64, 5).unwrap();
        let total = u32::from(u16::from_be_bytes([buf[start + 16], buf[start + 17]]));
        let mut s = e.sum + total;
        s = (s >> 16) + (s & 0xffff);
        s = (s >> 16) + (s & 0xffff);
        assert_eq!(!(s as u16), u16::from_be_bytes([buf[start + 24], buf[start + 25]]));
        let e = e.bytes();
        assert_eq!(u32::from_ne_bytes(e[56..60].try_into().unwrap()), 1464);
        let v6 = OuterTemplate::new(MacAddr([2; 6]), MacAddr([4; 6]), ip("2001:2::1"), ip("2001:2::2"), 4789, 64, 7)
            .unwrap();
        assert_eq!(OuterEntry::new(&v6, 1444), None);
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
