//! Wire formats: zero-copy views over frame bytes.
//!
//! Each view is made with `new_checked`, which proves the buffer long enough
//! for every accessor, so no accessor can panic on any input.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv6;
pub mod ip;
pub mod udp;
pub mod vlan;
pub mod vxlan;

pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
pub use ip::{IpRepr, Ipv4Header, Ipv4Repr, Ipv6Header, Ipv6Repr};
pub use udp::{UdpHeader, UdpRepr};

/// A whole UDP frame from its headers' fields and the payload (lengths,
/// whatever `ip` and `udp` said, and the IPv4 header checksum, filled in; the UDP checksum 0). For the
/// control path and tests: it allocates.
pub fn udp_frame(eth: EthernetRepr, mut ip: IpRepr, udp: UdpRepr, payload: &[u8]) -> Vec<u8> {
    ip.set_payload_len(UdpRepr::LEN + payload.len());
    let (l3, l4) = (eth.header_len(), eth.header_len() + ip.header_len());
    let mut f = vec![0u8; l4 + UdpRepr::LEN + payload.len()];
    EthernetRepr { ethertype: ip.ethertype(), ..eth }.emit(&mut f);
    ip.emit(&mut f[l3..]);
    UdpRepr { payload_len: payload.len(), ..udp }.emit(&mut f[l4..]);
    f[l4 + UdpRepr::LEN..].copy_from_slice(payload);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use std::net::IpAddr;

    #[test]
    fn a_udp_frame_reads_back_whole() {
        let ip = IpRepr::new(IpAddr::from([198, 18, 0, 1]), IpAddr::from([198, 18, 0, 2]), ip::PROTO_UDP, 64, 0);
        let eth = EthernetRepr {
            dst: MacAddr([2, 0, 0, 0, 0, 2]),
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            tag: Some(10),
            ethertype: 0,
        };
        let f = udp_frame(eth, ip.unwrap(), UdpRepr { src_port: 1, dst_port: 2, payload_len: 0 }, b"hello");
        assert_eq!(f.len(), 18 + 20 + 8 + 5);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv4(v4)) = p.net else { panic!("no IPv4") };
        assert_eq!(v4.header().total_len(), 33);
        assert_eq!(v4.header().to_header().calc_header_checksum(), v4.header().header_checksum());
        let Some(TransportSlice::Udp(u)) = p.transport else { panic!("no UDP") };
        assert_eq!((u.source_port(), u.destination_port(), u.length(), u.payload()), (1, 2, 13, &b"hello"[..]));
    }
}
