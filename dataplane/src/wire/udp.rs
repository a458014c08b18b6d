//! A view of a UDP header, and its fields as values (`UdpRepr`).

use std::ops::Range;

/// Length of the header.
pub const HEADER_LEN: usize = 8;

const SRC_PORT: Range<usize> = 0..2;
const DST_PORT: Range<usize> = 2..4;
const LENGTH: Range<usize> = 4..6;
/// Where the checksum lies in the header.
pub const CHECKSUM: Range<usize> = 6..8;

/// A UDP header at the start of a buffer.
#[derive(Clone, Copy, Debug)]
pub struct UdpHeader<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> UdpHeader<T> {
    /// The header at the start of `b`, which has at least [`HEADER_LEN`]
    /// bytes.
    #[inline]
    pub fn new_checked(b: T) -> Option<UdpHeader<T>> {
        (b.as_ref().len() >= HEADER_LEN).then_some(UdpHeader(b))
    }

    fn get(&self, r: Range<usize>) -> u16 {
        let b = self.0.as_ref();
        u16::from_be_bytes([b[r.start], b[r.start + 1]])
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.get(SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.get(DST_PORT)
    }

    /// Length of header and payload.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.get(LENGTH))
    }

    /// True if the length field is 0 (which no valid datagram has).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The checksum field (0: none, allowed over IPv4).
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.get(CHECKSUM)
    }

    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.0.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpHeader<T> {
    fn set(&mut self, r: Range<usize>, v: u16) {
        self.0.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        self.set(SRC_PORT, v)
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        self.set(DST_PORT, v)
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, v: u16) {
        self.set(LENGTH, v)
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set(CHECKSUM, v)
    }
}

/// The fields of a UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Bytes of payload after the header.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Bytes [`Self::emit`] writes.
    pub const LEN: usize = HEADER_LEN;

    /// The fields of a header whose length covers at least the header.
    pub fn parse<T: AsRef<[u8]>>(h: &UdpHeader<T>) -> Option<UdpRepr> {
        let payload_len = h.len().checked_sub(Self::LEN)?;
        Some(UdpRepr { src_port: h.src_port(), dst_port: h.dst_port(), payload_len })
    }

    /// Writes the header, checksum 0, into the first [`Self::LEN`] bytes
    /// of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than that, or the datagram is over 65535 bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut h = UdpHeader(&mut buf[..Self::LEN]);
        h.set_src_port(self.src_port);
        h.set_dst_port(self.dst_port);
        h.set_len(u16::try_from(Self::LEN + self.payload_len).expect("UDP datagram of at most 65535 bytes"));
        h.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let r = UdpRepr { src_port: 1234, dst_port: 4789, payload_len: 50 };
        let mut b = [0xaau8; 8];
        r.emit(&mut b);
        assert_eq!(b, [0x04, 0xd2, 0x12, 0xb5, 0, 58, 0, 0]);
        let h = UdpHeader::new_checked(&b[..]).unwrap();
        assert_eq!((h.src_port(), h.dst_port(), h.len(), h.checksum()), (1234, 4789, 58, 0));
        assert_eq!(UdpRepr::parse(&h), Some(r));
    }

    #[test]
    fn short_or_inconsistent_headers_are_refused() {
        assert!(UdpHeader::new_checked(&[0u8; 7][..]).is_none());
        let h = UdpHeader::new_checked(&[0, 1, 0, 2, 0, 7, 0, 0][..]).unwrap();
        assert_eq!(UdpRepr::parse(&h), None, "a length shorter than the header");
    }
}
