//! The generator's template frame: Ethernet, IPv4, UDP, zero payload up to
//! the frame size, with addresses from 198.18.0.0/15.
//!
//! Flow `i` of a multi-flow run (written by the generator program, see
//! [`crate::progs`]) adds `i` to the little-endian u16 at the
//! end of the source MAC, of the source address and of the UDP source port,
//! and subtracts `i` from the one at the end of the destination address.
//! The two addresses' sum stays the same, so the IPv4 checksum of the
//! template holds for every flow (the ones'-complement sum ignores byte
//! order), and the UDP checksum is 0 (none, allowed for IPv4).

use rvs_dataplane::wire::ethernet::HEADER_LEN;
use rvs_dataplane::wire::ip::PROTO_UDP;
use rvs_dataplane::wire::{self, EtherType, EthernetRepr, IpRepr, Ipv4Repr, MacAddr, UdpRepr};

/// UDP destination port of generated frames (the sink counts only these).
pub const UDP_PORT: u16 = 7777;
/// Source address of flow 0: 198.18.0.1.
pub const SRC_IP: [u8; 4] = [198, 18, 0, 1];
/// Destination address of flow 0: 198.19.0.16 (its low u16 is 0x1000 read
/// little endian, room for 4096 flows counting down).
pub const DST_IP: [u8; 4] = [198, 19, 0, 16];
/// Source MAC of flow 0 (locally administered, unicast).
pub const SRC_MAC: [u8; 6] = [0x02, 0xb0, 0, 0, 0x01, 0];
/// Most flows the template has room for.
pub const MAX_FLOWS: u32 = 4096;
/// End of the last field a flow rewrites (the UDP source port).
pub const FLOW_FIELDS_END: usize = 36;

/// (offset, little-endian u16 value in flow 0, counts down) of each field
/// that changes per flow.
pub fn flow_fields() -> [(usize, u16, bool); 4] {
    let le = |b: [u8; 2]| u16::from_le_bytes(b);
    [
        (10, le([SRC_MAC[4], SRC_MAC[5]]), false),
        (28, le([SRC_IP[2], SRC_IP[3]]), false),
        (32, le([DST_IP[2], DST_IP[3]]), true),
        (34, le(1024u16.to_be_bytes()), false),
    ]
}

/// A frame of `size` bytes on the wire counting the 4-byte FCS (so 64 gives
/// 60 bytes of data) from `SRC_MAC` to `dst_mac`.
pub fn udp_frame(size: usize, dst_mac: [u8; 6]) -> Vec<u8> {
    let len = size.saturating_sub(4).max(60);
    let headers = HEADER_LEN + Ipv4Repr::LEN + UdpRepr::LEN;
    let eth = EthernetRepr { dst: MacAddr(dst_mac), src: MacAddr(SRC_MAC), tag: None, ethertype: EtherType::IPV4 };
    let ip = IpRepr::new(SRC_IP.into(), DST_IP.into(), PROTO_UDP, 64, 0).expect("one family");
    let udp = UdpRepr { src_port: 1024, dst_port: UDP_PORT, payload_len: 0 };
    wire::udp_frame(eth, ip, udp, &vec![0; len - headers])
}

/// Flow `i` of `frame` as the generator program writes it (for tests).
#[cfg(test)]
pub fn flow(frame: &[u8], i: u16) -> Vec<u8> {
    let mut f = frame.to_vec();
    for (off, base, down) in flow_fields() {
        let v = if down { base.wrapping_sub(i) } else { base.wrapping_add(i) };
        f[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_dataplane::wire::{Ipv4Header, UdpHeader};

    #[test]
    fn sizes_count_the_fcs() {
        assert_eq!(udp_frame(64, [2; 6]).len(), 60);
        assert_eq!(udp_frame(1518, [2; 6]).len(), 1514);
        let f = udp_frame(64, [2; 6]);
        let (ip, udp) = (Ipv4Header::new_checked(&f[14..]).unwrap(), UdpHeader::new_checked(&f[34..]).unwrap());
        assert_eq!((ip.total_len(), ip.ttl(), ip.dont_frag(), udp.len(), udp.dst_port()), (46, 64, true, 26, UDP_PORT));
    }

    #[test]
    fn every_flow_keeps_a_valid_checksum_and_its_addresses() {
        let f = udp_frame(64, [2, 0, 0, 0, 0, 2]);
        let mut seen = std::collections::HashSet::new();
        for i in 0..MAX_FLOWS as u16 {
            let g = flow(&f, i);
            let ip = &g[14..34];
            assert!(Ipv4Header::new_checked(ip).unwrap().verify_checksum(), "flow {i}");
            assert_eq!(&ip[12..14], &[198, 18]);
            assert!(ip[16] == 198 && (ip[17] & 0xfe) == 18, "flow {i}: {:?}", &ip[16..20]);
            assert_eq!(g[6] & 1, 0, "unicast source MAC");
            assert!(seen.insert((g[6..12].to_vec(), ip[12..20].to_vec(), g[34..36].to_vec())));
        }
    }
}
