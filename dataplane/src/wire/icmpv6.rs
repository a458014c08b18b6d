//! ICMPv6 neighbour discovery (RFC 4861): a view over a neighbour
//! solicitation or advertisement (the ICMPv6 message, after the IPv6
//! header), the values it parses into, and the ICMPv6 checksum.

use super::checksum::{fold, sum};
use super::ethernet::MacAddr;
use std::net::Ipv6Addr;

/// IPv6 next-header number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// ICMPv6 type of a neighbour solicitation.
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// ICMPv6 type of a neighbour advertisement.
pub const NEIGHBOR_ADVERT: u8 = 136;
/// The hop limit every ND message is sent and must arrive with.
pub const ND_HOP_LIMIT: u8 = 255;
/// Length of an NS or NA before its options.
pub const ND_LEN: usize = 24;
/// Length of a link-layer-address option for Ethernet.
pub const LLADDR_OPT_LEN: usize = 8;
/// Option type of a source link-layer address.
pub const OPT_SOURCE_LLADDR: u8 = 1;
/// Option type of a target link-layer address.
pub const OPT_TARGET_LLADDR: u8 = 2;
/// NA flag: sent by a router.
pub const FLAG_ROUTER: u8 = 0x80;
/// NA flag: an answer to a solicitation.
pub const FLAG_SOLICITED: u8 = 0x40;
/// NA flag: replace a cached link-layer address.
pub const FLAG_OVERRIDE: u8 = 0x20;

const TYPE: usize = 0;
const CODE: usize = 1;
const CHECKSUM: std::ops::Range<usize> = 2..4;
const FLAGS: usize = 4;
const TARGET: std::ops::Range<usize> = 8..24;

/// A view of a neighbour solicitation or advertisement.
#[derive(Debug)]
pub struct NdMessage<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> NdMessage<T> {
    /// A view of `b` if it starts with a whole NS or NA of code 0 (any
    /// other ICMPv6 message is `None`); then no accessor can panic. `b`
    /// should end where the IPv6 payload ends, so options are read no
    /// further.
    #[inline]
    pub fn new_checked(b: T) -> Option<NdMessage<T>> {
        let s = b.as_ref();
        let ok = s.len() >= ND_LEN && matches!(s[TYPE], NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT) && s[CODE] == 0;
        ok.then_some(NdMessage(b))
    }

    /// `NEIGHBOR_SOLICIT` or `NEIGHBOR_ADVERT`.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.0.as_ref()[TYPE]
    }

    /// The R, S and O flags of an NA (0 for an NS).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.0.as_ref()[FLAGS] & (FLAG_ROUTER | FLAG_SOLICITED | FLAG_OVERRIDE)
    }

    /// The target address.
    #[inline]
    pub fn target(&self) -> Ipv6Addr {
        let b: [u8; 16] = self.0.as_ref()[TARGET].try_into().unwrap_or([0; 16]);
        Ipv6Addr::from(b)
    }

    /// The Ethernet address of the first link-layer-address option of
    /// type `kind`, if the options hold one. A malformed option list (an
    /// option of length 0, or one running past the end) ends the search.
    #[inline]
    pub fn lladdr(&self, kind: u8) -> Option<MacAddr> {
        let mut opts = &self.0.as_ref()[ND_LEN..];
        while let [t, n, ..] = *opts {
            let len = usize::from(n) * 8;
            if len == 0 || len > opts.len() {
                return None;
            }
            if t == kind && len == LLADDR_OPT_LEN {
                let m = &opts[2..8];
                return Some(MacAddr([m[0], m[1], m[2], m[3], m[4], m[5]]));
            }
            opts = &opts[len..];
        }
        None
    }
}

/// A neighbour solicitation or advertisement as values (one option: the
/// link-layer address, source for an NS, target for an NA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdRepr {
    /// `NEIGHBOR_SOLICIT` or `NEIGHBOR_ADVERT`.
    pub msg_type: u8,
    /// NA flags (0 for an NS).
    pub flags: u8,
    /// The target address.
    pub target: Ipv6Addr,
    /// The link-layer-address option, if any.
    pub lladdr: Option<MacAddr>,
}

impl NdRepr {
    /// The values of a checked view.
    pub fn parse<T: AsRef<[u8]>>(m: &NdMessage<T>) -> NdRepr {
        let kind = if m.msg_type() == NEIGHBOR_SOLICIT { OPT_SOURCE_LLADDR } else { OPT_TARGET_LLADDR };
        NdRepr { msg_type: m.msg_type(), flags: m.flags(), target: m.target(), lladdr: m.lladdr(kind) }
    }

    /// Bytes `emit` writes.
    pub fn len(&self) -> usize {
        ND_LEN + if self.lladdr.is_some() { LLADDR_OPT_LEN } else { 0 }
    }

    /// Always false: a message has its fixed part.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the message into `buf[..self.len()]`, its checksum for an
    /// IPv6 header from `src` to `dst` included.
    pub fn emit(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
        let b = &mut buf[..self.len()];
        b.fill(0);
        b[TYPE] = self.msg_type;
        b[FLAGS] = self.flags;
        b[TARGET].copy_from_slice(&self.target.octets());
        if let Some(mac) = self.lladdr {
            let kind = if self.msg_type == NEIGHBOR_SOLICIT { OPT_SOURCE_LLADDR } else { OPT_TARGET_LLADDR };
            b[ND_LEN] = kind;
            b[ND_LEN + 1] = 1;
            b[ND_LEN + 2..ND_LEN + 8].copy_from_slice(&mac.0);
        }
        let c = checksum(src, dst, b);
        b[CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}

/// The ICMPv6 checksum of `msg` (its checksum field taken as zero) sent
/// from `src` to `dst`.
pub fn checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc += msg.len() as u64 + u64::from(PROTO_ICMPV6);
    acc = sum(acc, msg.get(..CHECKSUM.start).unwrap_or(msg));
    acc = sum(acc, msg.get(CHECKSUM.end..).unwrap_or(&[]));
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    fn ns() -> NdRepr {
        NdRepr { msg_type: NEIGHBOR_SOLICIT, flags: 0, target: "2001:2::2".parse().unwrap(), lladdr: Some(MAC) }
    }

    #[test]
    fn emit_then_parse_with_a_valid_checksum() {
        let (src, dst): (Ipv6Addr, Ipv6Addr) = ("2001:2::1".parse().unwrap(), "ff02::1:ff00:2".parse().unwrap());
        let mut b = [0u8; 32];
        ns().emit(&mut b, src, dst);
        let m = NdMessage::new_checked(&b[..]).unwrap();
        assert_eq!(NdRepr::parse(&m), ns());
        // Checked by etherparse's own ICMPv6 checksum.
        let ty = etherparse::Icmpv6Type::Unknown { type_u8: NEIGHBOR_SOLICIT, code_u8: 0, bytes5to8: [0; 4] };
        let want = ty.calc_checksum(src.octets(), dst.octets(), &b[8..]).unwrap();
        assert_eq!(u16::from_be_bytes([b[2], b[3]]), want);
    }

    #[test]
    fn truncated_and_odd_options_never_panic() {
        let mut b = [0u8; 48];
        ns().emit(&mut b, Ipv6Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED);
        for n in 0..ND_LEN {
            assert!(NdMessage::new_checked(&b[..n]).is_none());
        }
        for n in ND_LEN..b.len() {
            let m = NdMessage::new_checked(&b[..n]).unwrap();
            let want = if n >= 32 { Some(MAC) } else { None };
            assert_eq!(m.lladdr(OPT_SOURCE_LLADDR), want, "{n} bytes");
        }
        // An option of length 0 ends the list; so does one running over.
        let mut zero = b;
        zero[ND_LEN + 1] = 0;
        assert_eq!(NdMessage::new_checked(&zero[..]).unwrap().lladdr(OPT_SOURCE_LLADDR), None);
        let mut over = b;
        over[ND_LEN + 1] = 200;
        assert_eq!(NdMessage::new_checked(&over[..]).unwrap().lladdr(OPT_SOURCE_LLADDR), None);
        // A first option of another type is skipped.
        let mut two = [0u8; 40];
        two[..ND_LEN].copy_from_slice(&b[..ND_LEN]);
        two[ND_LEN] = 14; // nonce
        two[ND_LEN + 1] = 1;
        two[32..40].copy_from_slice(&b[24..32]);
        assert_eq!(NdMessage::new_checked(&two[..]).unwrap().lladdr(OPT_SOURCE_LLADDR), Some(MAC));
        let mut other = b;
        other[TYPE] = 128;
        assert!(NdMessage::new_checked(&other[..]).is_none(), "an echo request");
        other[TYPE] = NEIGHBOR_SOLICIT;
        other[CODE] = 1;
        assert!(NdMessage::new_checked(&other[..]).is_none(), "code 1");
    }
}
