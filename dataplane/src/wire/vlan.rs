//! 802.1Q tags: reading the tag of a frame, and pushing, popping or
//! rewriting it in place.
//!
//! The edits work on a frame inside a larger buffer (`buf[off..off + len]`)
//! so a push can grow into the headroom in front of the frame instead of
//! moving the payload.

use super::ethernet::{EtherType, HEADER_LEN};
use crate::ids::Vid;

/// Length of an 802.1Q tag.
pub const TAG_LEN: usize = 4;

/// The VLAN view of a frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// No tag.
    Untagged,
    /// An 802.1Q tag (vid 0 is a priority tag).
    Dot1q {
        /// Priority code point and DEI bits (the top 4 bits of the TCI).
        pcp_dei: u8,
        /// VLAN id.
        vid: Vid,
    },
}

/// Why a frame's tag cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagError {
    /// The frame ends inside the tag.
    Truncated,
    /// An 802.1ad (QinQ) outer tag, which rvs does not switch.
    Unsupported,
}

/// Reads the outer tag of an Ethernet frame (at least `HEADER_LEN` long).
#[inline]
pub fn parse(frame: &[u8]) -> Result<Tag, TagError> {
    let tpid = match frame.get(12..14) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => return Err(TagError::Truncated),
    };
    match tpid {
        EtherType::VLAN => {
            // A tag needs its 4 bytes and the inner EtherType after it.
            let t = frame.get(14..18).ok_or(TagError::Truncated)?;
            let tci = u16::from_be_bytes([t[0], t[1]]);
            Ok(Tag::Dot1q { pcp_dei: (tci >> 12) as u8, vid: Vid(tci & 0xfff) })
        }
        EtherType::QINQ => Err(TagError::Unsupported),
        _ => Ok(Tag::Untagged),
    }
}

/// Inserts a tag with `vid` after the MAC addresses of the frame at
/// `buf[off..off + len]`, growing it into the 4 bytes in front. Returns the
/// new offset, or `None` if there is no headroom.
#[inline]
pub fn push(buf: &mut [u8], off: usize, len: usize, vid: Vid) -> Option<usize> {
    if off < TAG_LEN || off + len > buf.len() || len < HEADER_LEN {
        return None;
    }
    let new = off - TAG_LEN;
    buf.copy_within(off..off + 12, new);
    buf[new + 12..new + 14].copy_from_slice(&EtherType::VLAN.to_be_bytes());
    buf[new + 14..new + 16].copy_from_slice(&(vid.0 & 0xfff).to_be_bytes());
    Some(new)
}

/// Removes the outer tag of the frame at `buf[off..off + len]`. Returns the
/// new offset (the frame is then 4 bytes shorter), or `None` if the frame is
/// too short to hold a tag.
#[inline]
pub fn pop(buf: &mut [u8], off: usize, len: usize) -> Option<usize> {
    if len < HEADER_LEN + TAG_LEN || off + len > buf.len() {
        return None;
    }
    buf.copy_within(off..off + 12, off + TAG_LEN);
    Some(off + TAG_LEN)
}

/// Sets the VLAN id of a tagged frame, keeping its priority bits.
#[inline]
pub fn set_vid(frame: &mut [u8], vid: Vid) {
    if let Some(t) = frame.get_mut(14..16) {
        let tci = (u16::from_be_bytes([t[0], t[1]]) & 0xf000) | (vid.0 & 0xfff);
        t.copy_from_slice(&tci.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EthernetRepr, MacAddr};

    fn frame(tag: Option<u16>) -> Vec<u8> {
        let eth =
            EthernetRepr { dst: MacAddr::BROADCAST, src: MacAddr([2, 0, 0, 0, 0, 1]), tag, ethertype: EtherType::IPV4 };
        let mut f = vec![0; eth.header_len()];
        eth.emit(&mut f);
        f.extend([0x45, 0, 0, 20]);
        f
    }

    #[test]
    fn parse_tags() {
        assert_eq!(parse(&frame(None)), Ok(Tag::Untagged));
        assert_eq!(parse(&frame(Some(0x600a))), Ok(Tag::Dot1q { pcp_dei: 6, vid: Vid(10) }));
        let mut qinq = frame(Some(10));
        qinq[12] = 0x88;
        qinq[13] = 0xa8;
        assert_eq!(parse(&qinq), Err(TagError::Unsupported));
        assert_eq!(parse(&frame(Some(10))[..17]), Err(TagError::Truncated));
        assert_eq!(parse(&[0u8; 10]), Err(TagError::Truncated));
    }

    #[test]
    fn push_then_pop_restores_the_frame() {
        let plain = frame(None);
        let mut buf = vec![0u8; 8];
        buf.extend(&plain);
        let off = push(&mut buf, 8, plain.len(), Vid(20)).unwrap();
        assert_eq!(off, 4);
        assert_eq!(&buf[off..off + plain.len() + 4], &frame(Some(20))[..]);
        let off2 = pop(&mut buf, off, plain.len() + 4).unwrap();
        assert_eq!(&buf[off2..], &plain[..]);
    }

    #[test]
    fn edits_refuse_impossible_frames() {
        let mut buf = frame(None);
        let n = buf.len();
        assert_eq!(push(&mut buf, 0, n, Vid(5)), None, "no headroom");
        assert_eq!(pop(&mut buf, 0, 15), None, "too short to hold a tag");
        let mut t = frame(Some(0xe00a));
        set_vid(&mut t, Vid(30));
        assert_eq!(parse(&t), Ok(Tag::Dot1q { pcp_dei: 0xe, vid: Vid(30) }));
    }
}
