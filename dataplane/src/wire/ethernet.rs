//! Ethernet II frames and MAC addresses.

use std::fmt;
use std::str::FromStr;

/// A 48-bit IEEE MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// True for group addresses (multicast and broadcast): the I/G bit.
    #[inline]
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 != 0
    }

    /// True for 00:00:00:00:00:00.
    #[inline]
    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }

    /// The address as the low 48 bits of a u64.
    #[inline]
    pub fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The address held in the low 48 bits of `v`.
    #[inline]
    pub fn from_u64(v: u64) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMac(pub String);

impl fmt::Display for BadMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid MAC address {:?} (expected six hex bytes like 02:00:00:00:00:01)", self.0)
    }
}

impl std::error::Error for BadMac {}

impl FromStr for MacAddr {
    type Err = BadMac;

    /// Accepts `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadMac(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || p.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// EtherType values rvs looks at.
pub struct EtherType;

impl EtherType {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buf` if it holds at least a full Ethernet header.
    #[inline]
    pub fn new_checked(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= HEADER_LEN).then_some(EthernetFrame { buf })
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        let b = self.buf.as_ref();
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> MacAddr {
        let b = self.buf.as_ref();
        MacAddr([b[6], b[7], b[8], b[9], b[10], b[11]])
    }

    /// The EtherType (or TPID, for a tagged frame).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[12], b[13]])
    }

    /// Everything after the 14-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }

    /// The whole frame.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }
}

/// The fields of an Ethernet header, with at most one 802.1Q tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Destination address.
    pub dst: MacAddr,
    /// Source address.
    pub src: MacAddr,
    /// The tag's TCI (priority, DEI and VLAN id), for a tagged frame.
    pub tag: Option<u16>,
    /// The EtherType of the payload (after the tag, if any).
    pub ethertype: u16,
}

impl EthernetRepr {
    /// The fields of `frame`'s header; None if a tag is cut short.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Option<EthernetRepr> {
        let b = frame.as_bytes();
        let (tag, ethertype) = match frame.ethertype() {
            EtherType::VLAN => {
                let t = b.get(14..18)?;
                (Some(u16::from_be_bytes([t[0], t[1]])), u16::from_be_bytes([t[2], t[3]]))
            }
            et => (None, et),
        };
        Some(EthernetRepr { dst: frame.dst(), src: frame.src(), tag, ethertype })
    }

    /// Bytes [`Self::emit`] writes: 14, or 18 with a tag.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + if self.tag.is_some() { super::vlan::TAG_LEN } else { 0 }
    }

    /// Writes the header at the start of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`Self::header_len`].
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0..6].copy_from_slice(&self.dst.0);
        buf[6..12].copy_from_slice(&self.src.0);
        let mut et = 12;
        if let Some(tci) = self.tag {
            buf[12..14].copy_from_slice(&EtherType::VLAN.to_be_bytes());
            buf[14..16].copy_from_slice(&tci.to_be_bytes());
            et = 16;
        }
        buf[et..et + 2].copy_from_slice(&self.ethertype.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_print() {
        let m: MacAddr = "02:00:0a:ff:00:01".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0x0a, 0xff, 0, 1]);
        assert_eq!(m.to_string(), "02:00:0a:ff:00:01");
        assert_eq!("02-00-0a-ff-00-01".parse::<MacAddr>().unwrap(), m);
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
        for bad in ["", "02:00", "02:00:00:00:00:00:00", "0g:00:00:00:00:00", "002:00:00:00:00:0", "::::::"] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn short_buffers_are_refused() {
        for n in 0..HEADER_LEN {
            assert!(EthernetFrame::new_checked(&[0u8; 32][..n]).is_none());
        }
        let f = EthernetFrame::new_checked(&[0xffu8; 14][..]).unwrap();
        assert!(f.dst().is_multicast());
        assert!(f.payload().is_empty());
    }

    #[test]
    fn repr_round_trips_with_and_without_a_tag() {
        for tag in [None, Some(0xa00a)] {
            let r = EthernetRepr {
                dst: MacAddr([2, 0, 0, 0, 0, 2]),
                src: MacAddr([2, 0, 0, 0, 0, 1]),
                tag,
                ethertype: EtherType::IPV6,
            };
            let mut b = vec![0u8; r.header_len()];
            r.emit(&mut b);
            assert_eq!(EthernetRepr::parse(&EthernetFrame::new_checked(&b[..]).unwrap()), Some(r));
        }
        let cut = [0x81u8; 16];
        let mut cut = cut.to_vec();
        cut[12..14].copy_from_slice(&EtherType::VLAN.to_be_bytes());
        assert_eq!(EthernetRepr::parse(&EthernetFrame::new_checked(&cut[..]).unwrap()), None);
    }
}
