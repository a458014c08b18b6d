//! Filling in TCP/UDP checksums that a sender left to offload.
//!
//! A host that sends with checksum offload hands the frame down with only
//! the pseudo-header sum in the L4 checksum field (CHECKSUM_PARTIAL). The
//! kernel loses that state when the frame reaches an AF_XDP ring, so the
//! receiver would drop it as corrupt. We recognise such frames (the field
//! equals the folded pseudo-header sum) and complete the checksum, so TCP
//! works with the hosts left as they are. A frame whose checksum is already
//! complete is left untouched.

use super::ethernet::EtherType;
use super::ip::{
    l3_of, Ipv4Header, Ipv6Header, IPV4_ADDRS, IPV4_MIN_LEN, IPV6_ADDRS, IPV6_LEN, PROTO_TCP as TCP, PROTO_UDP as UDP,
};
use super::udp;

/// Offset of the checksum in a TCP header.
const TCP_CHECKSUM: usize = 16;

/// Adds `data` to a ones'-complement running sum (big-endian 16-bit words).
#[inline]
pub fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Add the four 16-bit words without overflow: split in two halves.
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a running sum to 16 bits (not complemented).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Completes the TCP or UDP checksum of an Ethernet frame (optionally
/// 802.1Q-tagged, IPv4 or IPv6 without extension headers) if the sender
/// left it partial. Returns true if it wrote a checksum.
pub fn complete_partial(frame: &mut [u8]) -> bool {
    let Some((ethertype, l3)) = l3_of(frame) else { return false };
    let (proto, l4, l4_len, addrs) = match ethertype {
        EtherType::IPV4 => match ipv4(frame, l3) {
            Some(x) => x,
            None => return false,
        },
        EtherType::IPV6 => match ipv6(frame, l3) {
            Some(x) => x,
            None => return false,
        },
        _ => return false,
    };
    let field = match proto {
        TCP => l4 + TCP_CHECKSUM,
        UDP => l4 + udp::CHECKSUM.start,
        _ => return false,
    };
    if l4 + l4_len > frame.len() || l4_len < field - l4 + 2 {
        return false;
    }
    let current = u16::from_be_bytes([frame[field], frame[field + 1]]);
    if current == 0 {
        // No UDP checksum (or a TCP one that happens to be 0): a partial
        // field holds the folded pseudo-header sum, never 0 as it includes
        // the length and protocol.
        return false;
    }
    let pseudo_sum = sum(0, &frame[addrs]) + l4_len as u64 + u64::from(proto);
    if current != fold(pseudo_sum) {
        return false;
    }
    let seg = &mut frame[l4..l4 + l4_len];
    let off = field - l4;
    seg[off] = 0;
    seg[off + 1] = 0;
    let mut csum = !fold(sum(pseudo_sum, seg));
    if proto == UDP && csum == 0 {
        csum = 0xffff;
    }
    seg[off..off + 2].copy_from_slice(&csum.to_be_bytes());
    true
}

/// (protocol, L4 offset, L4 length, where its addresses are) of an
/// unfragmented IPv4 packet at `l3`.
fn ipv4(frame: &[u8], l3: usize) -> Option<(u8, usize, usize, std::ops::Range<usize>)> {
    let h = Ipv4Header::new_checked(frame.get(l3..)?)?;
    let (ihl, total) = (h.header_len(), h.total_len());
    if ihl < IPV4_MIN_LEN || total < ihl || h.is_fragment() || l3 + total > frame.len() {
        return None;
    }
    let a = IPV4_ADDRS;
    Some((h.protocol(), l3 + ihl, total - ihl, l3 + a.start..l3 + a.end))
}

/// The same for an IPv6 packet whose next header is TCP or UDP.
fn ipv6(frame: &[u8], l3: usize) -> Option<(u8, usize, usize, std::ops::Range<usize>)> {
    let h = Ipv6Header::new_checked(frame.get(l3..)?)?;
    let payload = h.payload_len();
    if l3 + IPV6_LEN + payload > frame.len() {
        return None;
    }
    let a = IPV6_ADDRS;
    Some((h.next_header(), l3 + IPV6_LEN, payload, l3 + a.start..l3 + a.end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn partialize(frame: &mut [u8], l4: usize, field: usize, pseudo: u16) {
        let _ = l4;
        frame[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
    }

    fn tcp4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .tcp(40000, 5201, 1234, 65535);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn completes_a_partial_tcp_ipv4_checksum() {
        let good = tcp4(b"hello, switch");
        let mut f = good.clone();
        let l4 = 14 + 20;
        let len = f.len() - l4;
        let pseudo = fold(sum(0, &f[14 + 12..14 + 20]) + len as u64 + 6);
        partialize(&mut f, l4, l4 + 16, pseudo);
        assert_ne!(f, good);
        assert!(complete_partial(&mut f));
        assert_eq!(f, good, "the completed checksum equals etherparse's");
    }

    #[test]
    fn leaves_complete_checksums_alone() {
        let good = tcp4(b"odd length!");
        let mut f = good.clone();
        assert!(!complete_partial(&mut f));
        assert_eq!(f, good);
    }

    #[test]
    fn completes_udp_ipv6_and_tagged_frames() {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .single_vlan(10.try_into().unwrap())
            .ipv6(
                [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .udp(1000, 2000);
        let mut good = Vec::new();
        b.write(&mut good, b"payload").unwrap();
        let l3 = 18;
        let l4 = l3 + 40;
        let len = good.len() - l4;
        let pseudo = fold(sum(0, &good[l3 + 8..l3 + 40]) + len as u64 + 17);
        let mut f = good.clone();
        partialize(&mut f, l4, l4 + 6, pseudo);
        assert!(complete_partial(&mut f));
        assert_eq!(f, good);
    }

    #[test]
    fn never_panics_on_short_or_odd_frames() {
        let good = tcp4(b"x");
        for n in 0..good.len() {
            let mut f = good[..n].to_vec();
            complete_partial(&mut f);
        }
        let mut lying = good.clone();
        lying[14 + 2] = 0xff; // total length beyond the frame
        assert!(!complete_partial(&mut lying));
    }
}
