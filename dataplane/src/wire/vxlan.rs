//! VXLAN (RFC 7348) over IPv4 and IPv6 underlays.
//!
//! Decapsulation parses the outer Ethernet/IP/UDP/VXLAN headers of a frame
//! and says where the inner frame starts. Encapsulation copies a prebuilt
//! outer header ([`OuterTemplate`], made once per remote VTEP by the control
//! thread) into the headroom in front of the inner frame and patches the
//! few fields that vary per frame: lengths, the IPv4 header checksum, the
//! UDP source port, and over IPv6 the UDP checksum.

use super::checksum::{fold, sum};
use super::ethernet::{EtherType, EthernetRepr, MacAddr, HEADER_LEN};
use super::ip::{
    l3_of, IpRepr, Ipv4Header, Ipv6Header, IPV4_ADDRS, IPV4_MIN_LEN, IPV6_ADDRS, IPV6_LEN, PROTO_TCP, PROTO_UDP,
};
use super::udp::{UdpHeader, UdpRepr, HEADER_LEN as UDP_LEN};
use std::net::IpAddr;

/// IANA's VXLAN UDP port.
pub const PORT: u16 = 4789;
/// VXLAN header length.
pub const VXLAN_LEN: usize = 8;
/// Outer headers over IPv4: Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8.
pub const OVERHEAD_V4: usize = HEADER_LEN + IPV4_MIN_LEN + UDP_LEN + VXLAN_LEN;
/// Outer headers over IPv6: Ethernet 14 + IPv6 40 + UDP 8 + VXLAN 8.
pub const OVERHEAD_V6: usize = HEADER_LEN + IPV6_LEN + UDP_LEN + VXLAN_LEN;
/// The I flag: the VNI is valid.
const FLAG_I: u8 = 0x08;

/// Why a frame from the underlay is not a VXLAN frame we accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecapError {
    /// Not IPv4/IPv6 UDP (or an IPv4 fragment, or IPv4 with options).
    NotVxlan,
    /// Headers or the inner frame cut short, or lengths that disagree.
    Truncated,
    /// VXLAN flags other than exactly the I flag.
    BadFlags,
}

/// The outer headers of a VXLAN frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outer {
    /// Outer source address (the remote VTEP).
    pub src: IpAddr,
    /// Outer destination address (should be a local VTEP).
    pub dst: IpAddr,
    /// UDP destination port.
    pub dst_port: u16,
    /// VXLAN network identifier.
    pub vni: u32,
    /// Offset of the inner Ethernet frame.
    pub inner: usize,
    /// Length of the inner frame as the outer headers give it (the frame
    /// may carry Ethernet padding after it).
    pub inner_len: usize,
}

/// Parses the outer headers of `frame` (untagged, or with one 802.1Q tag
/// on a tagged underlay). `Ok` guarantees at least a full inner Ethernet
/// header after `inner`.
pub fn decap(frame: &[u8]) -> Result<Outer, DecapError> {
    let (et, l3) = l3_of(frame).ok_or(DecapError::Truncated)?;
    let (src, dst, udp) = match et {
        EtherType::IPV4 => {
            let h = frame.get(l3..l3 + IPV4_MIN_LEN).ok_or(DecapError::Truncated)?;
            let ip = Ipv4Header::new_checked(h).ok_or(DecapError::NotVxlan)?;
            if ip.header_len() != IPV4_MIN_LEN || ip.protocol() != PROTO_UDP || ip.is_fragment() {
                return Err(DecapError::NotVxlan);
            }
            let total = ip.total_len();
            if total < IPV4_MIN_LEN || l3 + total > frame.len() {
                return Err(DecapError::Truncated);
            }
            (IpAddr::V4(ip.src()), IpAddr::V4(ip.dst()), l3 + IPV4_MIN_LEN)
        }
        EtherType::IPV6 => {
            let h = frame.get(l3..l3 + IPV6_LEN).ok_or(DecapError::Truncated)?;
            let ip = Ipv6Header::new_checked(h).ok_or(DecapError::NotVxlan)?;
            if ip.next_header() != PROTO_UDP {
                return Err(DecapError::NotVxlan);
            }
            if l3 + IPV6_LEN + ip.payload_len() > frame.len() {
                return Err(DecapError::Truncated);
            }
            (IpAddr::V6(ip.src()), IpAddr::V6(ip.dst()), l3 + IPV6_LEN)
        }
        _ => return Err(DecapError::NotVxlan),
    };
    let u = frame.get(udp..udp + UDP_LEN + VXLAN_LEN).ok_or(DecapError::Truncated)?;
    let u = UdpHeader::new_checked(u).ok_or(DecapError::Truncated)?;
    let inner = udp + UDP_LEN + VXLAN_LEN;
    if u.len() < UDP_LEN + VXLAN_LEN + HEADER_LEN || udp + u.len() > frame.len() {
        return Err(DecapError::Truncated);
    }
    let vx = u.payload();
    if vx[0] != FLAG_I {
        return Err(DecapError::BadFlags);
    }
    Ok(Outer {
        src,
        dst,
        dst_port: u.dst_port(),
        vni: u32::from_be_bytes([0, vx[4], vx[5], vx[6]]),
        inner,
        inner_len: u.len() - UDP_LEN - VXLAN_LEN,
    })
}

/// The outer headers toward one remote VTEP, ready to copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OuterTemplate {
    bytes: [u8; OVERHEAD_V6],
    len: u8,
    v6: bool,
    /// IPv4: ones'-complement sum of the header with length and checksum 0.
    /// IPv6: sum of the pseudo-header addresses and next header.
    base: u64,
}

impl OuterTemplate {
    /// Headers from `src_mac` (the uplink) to `dst_mac` (the next hop),
    /// `local` → `remote` (same family), UDP to `dst_port`, with `vni`.
    /// None if the address families differ.
    pub fn new(
        src_mac: MacAddr,
        dst_mac: MacAddr,
        local: IpAddr,
        remote: IpAddr,
        dst_port: u16,
        ttl: u8,
        vni: u32,
    ) -> Option<OuterTemplate> {
        let ip = IpRepr::new(local, remote, PROTO_UDP, ttl, 0)?;
        let eth = EthernetRepr { dst: dst_mac, src: src_mac, tag: None, ethertype: ip.ethertype() };
        let mut b = [0u8; OVERHEAD_V6];
        eth.emit(&mut b);
        ip.emit(&mut b[HEADER_LEN..]);
        let udp = HEADER_LEN + ip.header_len();
        UdpRepr { src_port: 0, dst_port, payload_len: 0 }.emit(&mut b[udp..]);
        b[udp + UDP_LEN] = FLAG_I;
        b[udp + UDP_LEN + 4..udp + UDP_LEN + 7].copy_from_slice(&vni.to_be_bytes()[1..]);
        // What encap adds to per frame: over IPv4 the header's sum with
        // length and checksum 0; over IPv6 the pseudo-header's addresses
        // and next header.
        let h = &mut b[HEADER_LEN..udp];
        let (v6, base) = match ip {
            IpRepr::V4(_) => {
                let mut v = Ipv4Header::new(&mut *h)?;
                v.set_total_len(0);
                v.set_checksum(0);
                (false, sum(0, h))
            }
            IpRepr::V6(_) => (true, sum(0, &h[IPV6_ADDRS]) + u64::from(PROTO_UDP)),
        };
        Some(OuterTemplate { bytes: b, len: (udp + UDP_LEN + VXLAN_LEN) as u8, v6, base })
    }

    /// Bytes the outer headers add.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Never empty; here for symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True for an IPv6 underlay.
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// The outer headers, with the per-frame fields zero.
    pub fn headers(&self) -> &[u8] {
        &self.bytes[..self.len()]
    }

    /// Over IPv4: the header's ones'-complement sum with length and
    /// checksum zero, folded (what the kernel executors add the length to).
    pub fn ipv4_sum(&self) -> Option<u16> {
        (!self.v6).then(|| fold(self.base))
    }

    /// Encapsulates the inner frame at `buf[off..off + len]` in place,
    /// growing it into the headroom in front. Returns the new offset, or
    /// None if the headroom is too small.
    #[inline]
    pub fn encap(&self, buf: &mut [u8], off: usize, len: usize, src_port: u16) -> Option<usize> {
        let h = self.len();
        if off < h || off + len > buf.len() {
            return None;
        }
        let start = off - h;
        let out = &mut buf[start..off + len];
        out[..h].copy_from_slice(&self.bytes[..h]);
        let udp_len = (UDP_LEN + VXLAN_LEN + len) as u16;
        // Fixed offsets per family, so the views' checks fold away.
        if self.v6 {
            const UDP: usize = HEADER_LEN + IPV6_LEN;
            Ipv6Header::new(&mut out[HEADER_LEN..UDP])?.set_payload_len(udp_len);
            let mut u = UdpHeader::new_checked(&mut out[UDP..UDP + UDP_LEN])?;
            u.set_src_port(src_port);
            u.set_len(udp_len);
            // The pseudo-header length, then the UDP header and payload.
            let s = sum(self.base + u64::from(udp_len), &out[UDP..]);
            let c = match !fold(s) {
                0 => 0xffff,
                c => c,
            };
            UdpHeader::new_checked(&mut out[UDP..UDP + UDP_LEN])?.set_checksum(c);
        } else {
            const UDP: usize = HEADER_LEN + IPV4_MIN_LEN;
            let total = udp_len + IPV4_MIN_LEN as u16;
            let mut v = Ipv4Header::new(&mut out[HEADER_LEN..UDP])?;
            v.set_total_len(total);
            v.set_checksum(!fold(self.base + u64::from(total)));
            let mut u = UdpHeader::new_checked(&mut out[UDP..UDP + UDP_LEN])?;
            u.set_src_port(src_port);
            u.set_len(udp_len);
        }
        Some(start)
    }
}

/// Largest inner frame (Ethernet header included) a tunnel carries over an
/// uplink of `mtu` bytes (IPv6 underlay: `v6`): the outer IP packet must
/// fit the MTU, and the whole encapsulated frame one of rvs's buffers
/// (`max_frame`), whatever the MTU.
pub fn max_inner_frame(mtu: u32, v6: bool, max_frame: usize) -> u32 {
    let overhead = if v6 { OVERHEAD_V6 } else { OVERHEAD_V4 };
    let by_mtu = mtu.saturating_sub((overhead - HEADER_LEN) as u32);
    by_mtu.min(max_frame.saturating_sub(overhead) as u32)
}

/// A hash of the inner frame's flow: MACs, and for IP the addresses,
/// protocol and (TCP/UDP) ports, so underlay ECMP/RSS spreads tunnels.
#[inline]
pub fn flow_hash(inner: &[u8]) -> u32 {
    let mut fnv = crate::fnv::Fnv1a::default();
    let mut mix = |bytes: &[u8]| {
        fnv.write(bytes);
    };
    mix(inner.get(..14).unwrap_or(inner));
    let (et, l3) = l3_of(inner).unwrap_or((0, 0));
    let (proto, l4) = match et {
        EtherType::IPV4 => match inner.get(l3..).and_then(Ipv4Header::new) {
            Some(ip) => {
                mix(&inner[l3 + IPV4_ADDRS.start..l3 + IPV4_ADDRS.end]);
                (if ip.is_fragment() { 0 } else { ip.protocol() }, l3 + ip.header_len())
            }
            None => (0, 0),
        },
        EtherType::IPV6 => match inner.get(l3..).and_then(Ipv6Header::new) {
            Some(ip) => {
                mix(&inner[l3 + IPV6_ADDRS.start..l3 + IPV6_ADDRS.end]);
                (ip.next_header(), l3 + IPV6_LEN)
            }
            None => (0, 0),
        },
        _ => (0, 0),
    };
    mix(&[proto]);
    if proto == PROTO_TCP || proto == PROTO_UDP {
        if let Some(ports) = inner.get(l4..l4 + 4) {
            mix(ports);
        }
    }
    let h = fnv.finish();
    (h ^ (h >> 32)) as u32
}

/// The UDP source port for a flow hash, in 49152..=65535 (RFC 7348 §5).
#[inline]
pub fn src_port(hash: u32) -> u16 {
    49152 + (hash % 16384) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const UPLINK: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
    const NEXT_HOP: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);

    fn inner() -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
            .ipv4([198, 19, 0, 1], [198, 19, 0, 2], 64)
            .udp(1234, 5678);
        let mut v = Vec::new();
        b.write(&mut v, b"inner payload").unwrap();
        v
    }

    fn encapped(local: IpAddr, remote: IpAddr, vni: u32) -> Vec<u8> {
        let t = OuterTemplate::new(UPLINK, NEXT_HOP, local, remote, PORT, 64, vni).unwrap();
        let inner = inner();
        let mut buf = vec![0u8; 128];
        buf.extend(&inner);
        let off = t.encap(&mut buf, 128, inner.len(), 50000).unwrap();
        assert_eq!(off, 128 - t.len());
        buf[off..].to_vec()
    }

    #[test]
    fn ipv4_encap_matches_a_reference_build() {
        let l = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1));
        let r = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
        let got = encapped(l, r, 42);
        // The same frame built by etherparse (IPv4 checksum computed by it;
        // UDP checksum zero, as RFC 7348 allows over IPv4).
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vx.extend(inner());
        let mut ip =
            etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::UDP, [198, 18, 1, 1], [198, 18, 1, 2]).unwrap();
        ip.dont_fragment = true;
        let b = PacketBuilder::ethernet2(UPLINK.0, NEXT_HOP.0).ip(etherparse::IpHeaders::Ipv4(ip, Default::default()));
        let mut want = Vec::new();
        b.udp(50000, PORT).write(&mut want, &vx).unwrap();
        // Zero the UDP checksum etherparse filled in.
        want[40] = 0;
        want[41] = 0;
        assert_eq!(got, want);
        let o = decap(&got).unwrap();
        assert_eq!((o.src, o.dst, o.dst_port, o.vni, o.inner), (l, r, PORT, 42, OVERHEAD_V4));
        assert_eq!(&got[o.inner..o.inner + o.inner_len], &inner()[..]);
    }

    #[test]
    fn ipv6_encap_has_a_valid_udp_checksum() {
        let l = IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 1));
        let r = IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 2));
        let got = encapped(l, r, 0xabcdef);
        let p = SlicedPacket::from_ethernet(&got).unwrap();
        let Some(NetSlice::Ipv6(ip6)) = &p.net else { panic!("not IPv6") };
        let Some(TransportSlice::Udp(udp)) = &p.transport else { panic!("not UDP") };
        let want = udp.to_header().calc_checksum_ipv6(&ip6.header().to_header(), udp.payload()).unwrap();
        assert_eq!(udp.checksum(), want);
        assert_eq!(ip6.header().hop_limit(), 64);
        let o = decap(&got).unwrap();
        assert_eq!((o.vni, o.inner), (0xabcdef, OVERHEAD_V6));
    }

    /// A frame Linux's vxlan driver sent (kernel 6.18, captured with
    /// tcpdump): VNI 42, UDP checksum set, DF clear, an MLD report inside.
    const KERNEL_FRAME: &str = "4a9417a9d5948a4944bb3ac308004500007e24920000401101b5c6126402c6126401e22012b5006a54a4\
        0800000000002a0033330000001632e43dcfe37286dd6000000000240001fe8000000000000030e43dfffecfe372ff02000000000000\
        00000000000000163a000502000001008f003ba10000000104000000ff0200000000000000000001ffcfe372";

    #[test]
    fn decap_takes_a_frame_from_the_linux_kernel() {
        let frame: Vec<u8> = (0..KERNEL_FRAME.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&KERNEL_FRAME[i..i + 2], 16).unwrap())
            .collect();
        let o = decap(&frame).unwrap();
        let (src, dst) = (IpAddr::V4(Ipv4Addr::new(198, 18, 100, 2)), IpAddr::V4(Ipv4Addr::new(198, 18, 100, 1)));
        assert_eq!((o.src, o.dst, o.dst_port, o.vni, o.inner), (src, dst, PORT, 42, OVERHEAD_V4));
        let inner = &frame[o.inner..o.inner + o.inner_len];
        assert_eq!(inner.len(), frame.len() - OVERHEAD_V4);
        assert_eq!(&inner[..6], &[0x33, 0x33, 0, 0, 0, 0x16], "inner destination: the MLDv2 group");
    }

    #[test]
    fn decap_accepts_one_outer_vlan_tag() {
        let l = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1));
        let r = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
        let plain = encapped(l, r, 9);
        let mut tagged = plain[..12].to_vec();
        tagged.extend([0x81, 0x00, 0x00, 0x64]);
        tagged.extend(&plain[12..]);
        let o = decap(&tagged).unwrap();
        assert_eq!((o.vni, o.inner), (9, OVERHEAD_V4 + 4));
        assert_eq!(&tagged[o.inner..o.inner + o.inner_len], &inner()[..]);
    }

    #[test]
    fn decap_rejects_bad_input() {
        let l = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1));
        let r = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
        let good = encapped(l, r, 7);
        let mut bad_flags = good.clone();
        bad_flags[OVERHEAD_V4 - 8] = 0x0c;
        assert_eq!(decap(&bad_flags), Err(DecapError::BadFlags));
        let mut no_i = good.clone();
        no_i[OVERHEAD_V4 - 8] = 0;
        assert_eq!(decap(&no_i), Err(DecapError::BadFlags));
        for n in 0..good.len() {
            assert!(decap(&good[..n]).is_err(), "accepted a frame cut at {n}");
        }
        let mut tcp = good.clone();
        tcp[23] = 6;
        assert_eq!(decap(&tcp), Err(DecapError::NotVxlan));
        let mut frag = good;
        frag[20] = 0x20; // MF
        assert_eq!(decap(&frag), Err(DecapError::NotVxlan));
        assert_eq!(decap(&[0u8; 60]), Err(DecapError::NotVxlan));
    }

    #[test]
    fn inner_frames_fit_the_mtu_and_a_buffer() {
        assert_eq!(max_inner_frame(1500, false, 1792), 1464);
        assert_eq!(max_inner_frame(1500, true, 1792), 1444);
        // A jumbo uplink: the buffer is the limit (inner MTU 1742 - 14).
        assert_eq!(max_inner_frame(9000, false, 1792), 1742);
        assert_eq!(max_inner_frame(9000, true, 1792), 1722);
        assert_eq!(max_inner_frame(0, false, 1792), 0);
    }

    #[test]
    fn src_ports_spread_over_flows_and_stay_in_range() {
        let mut seen = std::collections::HashSet::new();
        for port in 0..200u16 {
            let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
                .ipv4([198, 19, 0, 1], [198, 19, 0, 2], 64)
                .tcp(10000 + port, 80, 1, 1000);
            let mut f = Vec::new();
            b.write(&mut f, &[]).unwrap();
            let p = src_port(flow_hash(&f));
            assert!(p >= 49152);
            seen.insert(p);
        }
        assert!(seen.len() > 190, "only {} distinct ports for 200 flows", seen.len());
        assert_eq!(flow_hash(&inner()), flow_hash(&inner()), "stable per flow");
        flow_hash(&[]);
        flow_hash(&[0x81, 0, 0x08]);
    }

    #[test]
    fn mixed_families_make_no_template() {
        let l = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1));
        let r = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!(OuterTemplate::new(UPLINK, NEXT_HOP, l, r, PORT, 64, 1).is_none());
    }
}
