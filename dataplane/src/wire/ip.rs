//! Views of IPv4 and IPv6 headers and of the L3 offset of an Ethernet
//! frame: a constructor that checks the length (and, `new_checked`, the
//! version), then named fields instead of raw offsets. The `Repr` types
//! hold a header's fields as values: `parse` reads them from a view,
//! `emit` writes a header from them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use super::checksum::{fold, sum};
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

/// Byte offsets of the IPv4 header's fields.
mod v4 {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Byte offsets of the IPv6 header's fields.
mod v6 {
    use std::ops::Range;
    pub const VERSION: usize = 0;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Length of an IPv4 header without options.
pub const IPV4_MIN_LEN: usize = 20;
/// Where source and destination address lie in an IPv4 header (for the
/// TCP/UDP pseudo-header and flow hashes).
pub const IPV4_ADDRS: Range<usize> = v4::SRC.start..v4::DST.end;
/// Length of the fixed IPv6 header.
pub const IPV6_LEN: usize = 40;
/// Where source and destination address lie in an IPv6 header.
pub const IPV6_ADDRS: Range<usize> = v6::SRC.start..v6::DST.end;

fn be16(b: &[u8], r: Range<usize>) -> u16 {
    u16::from_be_bytes([b[r.start], b[r.start + 1]])
}

/// An IPv4 header (options included) at the start of a buffer.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Header<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> Ipv4Header<T> {
    /// The header at the start of `b`, which has at least [`IPV4_MIN_LEN`]
    /// bytes; the version is not checked.
    #[inline]
    pub fn new(b: T) -> Option<Ipv4Header<T>> {
        (b.as_ref().len() >= IPV4_MIN_LEN).then_some(Ipv4Header(b))
    }

    /// The same, and version 4.
    #[inline]
    pub fn new_checked(b: T) -> Option<Ipv4Header<T>> {
        Self::new(b).filter(|h| h.0.as_ref()[v4::VER_IHL] >> 4 == 4)
    }

    /// Header length in bytes (IHL × 4; 20 without options).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.0.as_ref()[v4::VER_IHL] & 0xf) * 4
    }

    /// Total length of the packet, header included.
    #[inline]
    pub fn total_len(&self) -> usize {
        usize::from(be16(self.0.as_ref(), v4::TOTAL_LEN))
    }

    /// A fragment: more fragments follow, or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        be16(self.0.as_ref(), v4::FLAGS_FRAG) & 0x3fff != 0
    }

    /// The Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        be16(self.0.as_ref(), v4::FLAGS_FRAG) & 0x4000 != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.0.as_ref()[v4::TTL]
    }

    /// The protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.0.as_ref()[v4::PROTOCOL]
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.0.as_ref(), v4::CHECKSUM)
    }

    /// True if the header checksum is right (options included, when the
    /// buffer holds them).
    pub fn verify_checksum(&self) -> bool {
        let b = self.0.as_ref();
        let h = b.get(..self.header_len().max(IPV4_MIN_LEN)).unwrap_or(b);
        fold(sum(0, h)) == 0xffff
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        let b = self.0.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        let b = self.0.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Header<T> {
    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        self.0.as_mut()[v4::TOTAL_LEN].copy_from_slice(&len.to_be_bytes());
    }

    /// Sets the checksum field as it is.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        self.0.as_mut()[v4::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }

    /// Computes and writes the header checksum (of a header without
    /// options).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = !fold(sum(0, &self.0.as_ref()[..IPV4_MIN_LEN]));
        self.set_checksum(c);
    }
}

/// The fields of an IPv4 header without options that rvs reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// Length of the payload after the header.
    pub payload_len: usize,
    /// The Don't Fragment flag.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Bytes [`Self::emit`] writes.
    pub const LEN: usize = IPV4_MIN_LEN;

    /// The fields of a header that is not a fragment, has no options and a
    /// total length that covers the header; None otherwise.
    pub fn parse<T: AsRef<[u8]>>(h: &Ipv4Header<T>) -> Option<Ipv4Repr> {
        if h.header_len() != Self::LEN || h.is_fragment() || h.total_len() < Self::LEN {
            return None;
        }
        Some(Ipv4Repr {
            src: h.src(),
            dst: h.dst(),
            protocol: h.protocol(),
            ttl: h.ttl(),
            payload_len: h.total_len() - Self::LEN,
            dont_frag: h.dont_frag(),
        })
    }

    /// Writes the header, checksum included, into the first
    /// [`Self::LEN`] bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than that, or the payload makes the packet
    /// longer than 65535 bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..Self::LEN];
        b.fill(0);
        b[v4::VER_IHL] = 0x45;
        b[v4::FLAGS_FRAG.start] = if self.dont_frag { 0x40 } else { 0 };
        b[v4::TTL] = self.ttl;
        b[v4::PROTOCOL] = self.protocol;
        b[v4::SRC].copy_from_slice(&self.src.octets());
        b[v4::DST].copy_from_slice(&self.dst.octets());
        let mut h = Ipv4Header(b);
        h.set_total_len(u16::try_from(Self::LEN + self.payload_len).expect("IPv4 packet of at most 65535 bytes"));
        h.fill_checksum();
    }
}

/// An IPv6 header (no extension headers followed) at the start of a
/// buffer.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Header<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> Ipv6Header<T> {
    /// The header at the start of `b`, which has at least [`IPV6_LEN`]
    /// bytes; the version is not checked.
    #[inline]
    pub fn new(b: T) -> Option<Ipv6Header<T>> {
        (b.as_ref().len() >= IPV6_LEN).then_some(Ipv6Header(b))
    }

    /// The same, and version 6.
    #[inline]
    pub fn new_checked(b: T) -> Option<Ipv6Header<T>> {
        Self::new(b).filter(|h| h.0.as_ref()[v6::VERSION] >> 4 == 6)
    }

    /// Length of the payload after the fixed header.
    #[inline]
    pub fn payload_len(&self) -> usize {
        usize::from(be16(self.0.as_ref(), v6::PAYLOAD_LEN))
    }

    /// The header that follows (the payload's protocol when there are no
    /// extension headers).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.0.as_ref()[v6::NEXT_HEADER]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.0.as_ref()[v6::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(<[u8; 16]>::try_from(&self.0.as_ref()[v6::SRC]).expect("16 bytes"))
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(<[u8; 16]>::try_from(&self.0.as_ref()[v6::DST]).expect("16 bytes"))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Header<T> {
    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        self.0.as_mut()[v6::PAYLOAD_LEN].copy_from_slice(&len.to_be_bytes());
    }
}

/// The fields of an IPv6 header that rvs reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// The header that follows.
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Length of the payload after the fixed header.
    pub payload_len: usize,
}

impl Ipv6Repr {
    /// Bytes [`Self::emit`] writes.
    pub const LEN: usize = IPV6_LEN;

    /// The fields of a header.
    pub fn parse<T: AsRef<[u8]>>(h: &Ipv6Header<T>) -> Ipv6Repr {
        Ipv6Repr {
            src: h.src(),
            dst: h.dst(),
            next_header: h.next_header(),
            hop_limit: h.hop_limit(),
            payload_len: h.payload_len(),
        }
    }

    /// Writes the header (traffic class and flow label 0) into the first
    /// [`Self::LEN`] bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than that, or the payload is over 65535 bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..Self::LEN];
        b.fill(0);
        b[v6::VERSION] = 0x60;
        b[v6::NEXT_HEADER] = self.next_header;
        b[v6::HOP_LIMIT] = self.hop_limit;
        b[v6::SRC].copy_from_slice(&self.src.octets());
        b[v6::DST].copy_from_slice(&self.dst.octets());
        Ipv6Header(b).set_payload_len(u16::try_from(self.payload_len).expect("IPv6 payload of at most 65535 bytes"));
    }
}

/// An IPv4 or IPv6 header's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpRepr {
    /// IPv4.
    V4(Ipv4Repr),
    /// IPv6.
    V6(Ipv6Repr),
}

impl IpRepr {
    /// A header from `src` to `dst` (one family; None if they differ)
    /// carrying `payload_len` bytes of `protocol`; IPv4 with Don't
    /// Fragment set.
    pub fn new(src: IpAddr, dst: IpAddr, protocol: u8, ttl: u8, payload_len: usize) -> Option<IpRepr> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                Some(IpRepr::V4(Ipv4Repr { src, dst, protocol, ttl, payload_len, dont_frag: true }))
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                Some(IpRepr::V6(Ipv6Repr { src, dst, next_header: protocol, hop_limit: ttl, payload_len }))
            }
            _ => None,
        }
    }

    /// The EtherType that carries this header.
    pub fn ethertype(&self) -> u16 {
        match self {
            IpRepr::V4(_) => EtherType::IPV4,
            IpRepr::V6(_) => EtherType::IPV6,
        }
    }

    /// Sets the length of the payload after the header.
    pub fn set_payload_len(&mut self, len: usize) {
        match self {
            IpRepr::V4(r) => r.payload_len = len,
            IpRepr::V6(r) => r.payload_len = len,
        }
    }

    /// Bytes [`Self::emit`] writes.
    pub fn header_len(&self) -> usize {
        match self {
            IpRepr::V4(_) => Ipv4Repr::LEN,
            IpRepr::V6(_) => Ipv6Repr::LEN,
        }
    }

    /// Writes the header at the start of `buf` (see the families' `emit`).
    pub fn emit(&self, buf: &mut [u8]) {
        match self {
            IpRepr::V4(r) => r.emit(buf),
            IpRepr::V6(r) => r.emit(buf),
        }
    }
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

    #[test]
    fn reprs_emit_what_a_reference_parser_reads_and_parse_it_back() {
        let (a, b) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
        let r = Ipv4Repr { src: a, dst: b, protocol: PROTO_UDP, ttl: 7, payload_len: 9, dont_frag: true };
        let mut buf = [0xffu8; 20];
        r.emit(&mut buf);
        let (e, _) = etherparse::Ipv4Header::from_slice(&buf).unwrap();
        assert_eq!((e.source, e.destination, e.time_to_live, e.total_len), (a.octets(), b.octets(), 7, 29));
        assert!(e.dont_fragment && !e.more_fragments);
        assert_eq!(e.header_checksum, e.calc_header_checksum());
        let h = Ipv4Header::new_checked(&buf[..]).unwrap();
        assert!(h.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&h), Some(r));
        buf[8] ^= 1;
        assert!(!Ipv4Header::new_checked(&buf[..]).unwrap().verify_checksum());
        buf[6] = 0x20; // more fragments
        assert_eq!(Ipv4Repr::parse(&Ipv4Header::new_checked(&buf[..]).unwrap()), None);

        let (a, b): (Ipv6Addr, Ipv6Addr) = ("2001:2::1".parse().unwrap(), "2001:2::2".parse().unwrap());
        let r = Ipv6Repr { src: a, dst: b, next_header: PROTO_TCP, hop_limit: 3, payload_len: 100 };
        let mut buf = [0xffu8; 40];
        r.emit(&mut buf);
        let (e, _) = etherparse::Ipv6Header::from_slice(&buf).unwrap();
        assert_eq!((e.source_addr(), e.destination_addr(), e.payload_length, e.hop_limit), (a, b, 100, 3));
        assert_eq!((e.traffic_class, u32::from(e.flow_label)), (0, 0));
        assert_eq!(Ipv6Repr::parse(&Ipv6Header::new_checked(&buf[..]).unwrap()), r);
    }

    #[test]
    fn ip_repr_picks_the_family_or_refuses_a_mix() {
        let v4 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
        let v6 = IpAddr::V6("2001:2::1".parse().unwrap());
        assert_eq!(
            IpRepr::new(v4, v4, PROTO_UDP, 64, 0).map(|r| (r.ethertype(), r.header_len())),
            Some((EtherType::IPV4, 20))
        );
        assert_eq!(
            IpRepr::new(v6, v6, PROTO_UDP, 64, 0).map(|r| (r.ethertype(), r.header_len())),
            Some((EtherType::IPV6, 40))
        );
        assert_eq!(IpRepr::new(v4, v6, PROTO_UDP, 64, 0), None);
    }
}
