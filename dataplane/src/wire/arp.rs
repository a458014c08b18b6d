//! ARP for IPv4 over Ethernet (RFC 826): a view over the 28-byte packet
//! and the values it parses into.

use super::ethernet::{EtherType, MacAddr};
use std::net::Ipv4Addr;
use std::ops::Range;

/// Length of an Ethernet/IPv4 ARP packet.
pub const LEN: usize = 28;
/// `op` of a request.
pub const OP_REQUEST: u16 = 1;
/// `op` of a reply.
pub const OP_REPLY: u16 = 2;

const HTYPE: Range<usize> = 0..2;
const PTYPE: Range<usize> = 2..4;
const HLEN: usize = 4;
const PLEN: usize = 5;
const OP: Range<usize> = 6..8;
const SHA: Range<usize> = 8..14;
const SPA: Range<usize> = 14..18;
const THA: Range<usize> = 18..24;
const TPA: Range<usize> = 24..28;
/// Hardware type of Ethernet.
const HTYPE_ETHERNET: u16 = 1;

/// A view of an ARP packet for IPv4 over Ethernet.
#[derive(Debug)]
pub struct ArpPacket<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// A view of `b` if it holds a whole Ethernet/IPv4 ARP packet (other
    /// hardware or protocol types are `None`); then no accessor can panic.
    #[inline]
    pub fn new_checked(b: T) -> Option<ArpPacket<T>> {
        let s = b.as_ref();
        let ok = s.len() >= LEN
            && be16(s, HTYPE) == HTYPE_ETHERNET
            && be16(s, PTYPE) == EtherType::IPV4
            && s[HLEN] == 6
            && s[PLEN] == 4;
        ok.then_some(ArpPacket(b))
    }

    /// The operation (1 request, 2 reply).
    #[inline]
    pub fn op(&self) -> u16 {
        be16(self.0.as_ref(), OP)
    }

    /// Sender hardware address.
    #[inline]
    pub fn sender_mac(&self) -> MacAddr {
        mac(self.0.as_ref(), SHA)
    }

    /// Sender protocol address.
    #[inline]
    pub fn sender_ip(&self) -> Ipv4Addr {
        ip(self.0.as_ref(), SPA)
    }

    /// Target hardware address.
    #[inline]
    pub fn target_mac(&self) -> MacAddr {
        mac(self.0.as_ref(), THA)
    }

    /// Target protocol address.
    #[inline]
    pub fn target_ip(&self) -> Ipv4Addr {
        ip(self.0.as_ref(), TPA)
    }
}

/// The fields of an ARP packet as values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    /// Operation.
    pub op: u16,
    /// Sender hardware address.
    pub sender_mac: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// The values of a checked view.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> ArpRepr {
        ArpRepr {
            op: p.op(),
            sender_mac: p.sender_mac(),
            sender_ip: p.sender_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        }
    }

    /// True for a gratuitous ARP or an ARP probe (RFC 5227): it announces
    /// or checks the sender's own address and must never be answered.
    pub fn is_announcement(&self) -> bool {
        self.sender_ip.is_unspecified() || self.sender_ip == self.target_ip
    }

    /// Writes the packet into `buf[..LEN]` (which must be that long).
    pub fn emit(&self, buf: &mut [u8]) {
        buf[HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        buf[PTYPE].copy_from_slice(&EtherType::IPV4.to_be_bytes());
        buf[HLEN] = 6;
        buf[PLEN] = 4;
        buf[OP].copy_from_slice(&self.op.to_be_bytes());
        buf[SHA].copy_from_slice(&self.sender_mac.0);
        buf[SPA].copy_from_slice(&self.sender_ip.octets());
        buf[THA].copy_from_slice(&self.target_mac.0);
        buf[TPA].copy_from_slice(&self.target_ip.octets());
    }
}

#[inline]
fn be16(s: &[u8], r: Range<usize>) -> u16 {
    u16::from_be_bytes([s[r.start], s[r.start + 1]])
}

#[inline]
fn mac(s: &[u8], r: Range<usize>) -> MacAddr {
    let b = &s[r];
    MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
}

#[inline]
fn ip(s: &[u8], r: Range<usize>) -> Ipv4Addr {
    let b = &s[r];
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ArpRepr {
        ArpRepr {
            op: OP_REQUEST,
            sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(198, 18, 0, 1),
            target_mac: MacAddr([0; 6]),
            target_ip: Ipv4Addr::new(198, 18, 0, 2),
        }
    }

    #[test]
    fn emit_then_parse() {
        let mut b = [0u8; LEN];
        request().emit(&mut b);
        let p = ArpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p), request());
        // The bytes RFC 826 lays out, written by hand.
        let want: [u8; LEN] =
            [0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2];
        assert_eq!(b, want);
    }

    #[test]
    fn short_or_foreign_packets_have_no_view() {
        let mut b = [0u8; LEN];
        request().emit(&mut b);
        for n in 0..LEN {
            assert!(ArpPacket::new_checked(&b[..n]).is_none(), "{n} bytes");
        }
        for (i, v) in [(1, 6u8), (3, 0xdd), (4, 8), (5, 16)] {
            let mut bad = b;
            bad[i] = v;
            assert!(ArpPacket::new_checked(&bad[..]).is_none(), "byte {i} = {v}");
        }
    }

    #[test]
    fn announcements() {
        let mut r = request();
        assert!(!r.is_announcement());
        r.sender_ip = Ipv4Addr::UNSPECIFIED;
        assert!(r.is_announcement(), "probe");
        r.sender_ip = r.target_ip;
        assert!(r.is_announcement(), "gratuitous");
    }
}
