//! Views of IPv4 and IPv6 headers and of the L3 offset of an Ethernet
//! frame: a constructor that checks the length (and, `new_checked`, the
//! version), then named fields instead of raw offsets.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use super::ethernet::{EtherType, HEADER_LEN};
use super::vlan::TAG_LEN;

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// The EtherType of what an Ethernet frame carries and where it starts,
/// past one 802.1Q tag; `None` if the frame is cut short of either.
#[inline]
pub fn l3_of(frame: &[u8]) -> Option<(u16, usize)> {
    let et = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    if et != EtherType::VLAN {
        return Some((et, HEADER_LEN));
    }
    let inner = u16::from_be_bytes(frame.get(16..18)?.try_into().ok()?);
    Some((inner, HEADER_LEN + TAG_LEN))
}

/// An IPv4 header (options included) at the start of a buffer.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Header<'a>(&'a [u8]);

impl<'a> Ipv4Header<'a> {
    /// Length of a header without options.
    pub const MIN_LEN: usize = 20;

    /// The header at the start of `b`, which has at least [`Self::MIN_LEN`]
    /// bytes; the version is not checked.
    #[inline]
    pub fn new(b: &'a [u8]) -> Option<Ipv4Header<'a>> {
        (b.len() >= Self::MIN_LEN).then_some(Ipv4Header(b))
    }

    /// The same, and version 4.
    #[inline]
    pub fn new_checked(b: &'a [u8]) -> Option<Ipv4Header<'a>> {
        Self::new(b).filter(|h| h.0[0] >> 4 == 4)
    }

    /// Header length in bytes (IHL × 4; 20 without options).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.0[0] & 0xf) * 4
    }

    /// Total length of the packet, header included.
    #[inline]
    pub fn total_len(&self) -> usize {
        usize::from(u16::from_be_bytes([self.0[2], self.0[3]]))
    }

    /// A fragment: more fragments follow, or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        u16::from_be_bytes([self.0[6], self.0[7]]) & 0x3fff != 0
    }

    /// The protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.0[9]
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.0[12], self.0[13], self.0[14], self.0[15])
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.0[16], self.0[17], self.0[18], self.0[19])
    }

    /// Where source and destination address lie in the header (for the
    /// TCP/UDP pseudo-header and flow hashes).
    pub const ADDRS: Range<usize> = 12..20;
}

/// An IPv6 header (no extension headers followed) at the start of a
/// buffer.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Header<'a>(&'a [u8]);

impl<'a> Ipv6Header<'a> {
    /// Length of the fixed header.
    pub const LEN: usize = 40;

    /// The header at the start of `b`, which has at least [`Self::LEN`]
    /// bytes; the version is not checked.
    #[inline]
    pub fn new(b: &'a [u8]) -> Option<Ipv6Header<'a>> {
        (b.len() >= Self::LEN).then_some(Ipv6Header(b))
    }

    /// The same, and version 6.
    #[inline]
    pub fn new_checked(b: &'a [u8]) -> Option<Ipv6Header<'a>> {
        Self::new(b).filter(|h| h.0[0] >> 4 == 6)
    }

    /// Length of the payload after the fixed header.
    #[inline]
    pub fn payload_len(&self) -> usize {
        usize::from(u16::from_be_bytes([self.0[4], self.0[5]]))
    }

    /// The header that follows (the payload's protocol when there are no
    /// extension headers).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.0[6]
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(<[u8; 16]>::try_from(&self.0[8..24]).expect("16 bytes"))
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(<[u8; 16]>::try_from(&self.0[24..40]).expect("16 bytes"))
    }

    /// Where source and destination address lie in the header.
    pub const ADDRS: Range<usize> = 8..40;
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp4(tag: Option<u16>) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let mut v = Vec::new();
        match tag {
            Some(t) => b
                .single_vlan(t.try_into().unwrap())
                .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
                .udp(1, 2)
                .write(&mut v, b"x"),
            None => b.ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64).udp(1, 2).write(&mut v, b"x"),
        }
        .unwrap();
        v
    }

    #[test]
    fn l3_is_found_past_one_tag() {
        assert_eq!(l3_of(&udp4(None)), Some((EtherType::IPV4, 14)));
        assert_eq!(l3_of(&udp4(Some(10))), Some((EtherType::IPV4, 18)));
        assert_eq!(l3_of(&udp4(Some(10))[..17]), None, "tag cut short");
        assert_eq!(l3_of(&[0u8; 13]), None);
    }

    #[test]
    fn ipv4_fields() {
        let f = udp4(None);
        let h = Ipv4Header::new_checked(&f[14..]).unwrap();
        assert_eq!((h.header_len(), h.total_len(), h.protocol()), (20, 29, PROTO_UDP));
        assert_eq!((h.src(), h.dst()), (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)));
        assert!(!h.is_fragment());
        assert!(Ipv4Header::new_checked(&f[14..33]).is_none(), "short");
        assert!(Ipv4Header::new_checked(&f[15..]).is_none(), "not version 4");
        assert!(Ipv4Header::new(&f[15..]).is_some(), "new checks only the length");
    }

    #[test]
    fn ipv6_fields() {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(
                [0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .udp(1, 2)
            .write(&mut v, b"x")
            .unwrap();
        let h = Ipv6Header::new_checked(&v[14..]).unwrap();
        assert_eq!((h.payload_len(), h.next_header()), (9, PROTO_UDP));
        assert_eq!(h.dst(), "2001:2::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(h.src(), "2001:2::1".parse::<Ipv6Addr>().unwrap());
        assert!(Ipv6Header::new_checked(&v[14..53]).is_none());
    }
}
