use super::*;
use crate::neigh::NeighTable;
use crate::wire::arp::ArpRepr;
use etherparse::{Icmpv6Slice, NetSlice, SlicedPacket};
use std::net::Ipv4Addr;

const ASKER: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const OWNER: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
const IP_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn v6(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, n)
}

fn arp_frame(op: u16, sender_ip: Ipv4Addr, target_ip: Ipv4Addr, tag: Option<u16>) -> Vec<u8> {
    crate::testing::arp(op, ASKER, sender_ip, target_ip, tag)
}

fn ns_frame(src: Ipv6Addr, target: Ipv6Addr, slla: bool, tag: Option<u16>) -> Vec<u8> {
    crate::testing::solicit(ASKER, src, target, slla, tag)
}

fn table() -> NeighTable {
    let t = NeighTable::new(16);
    t.add_static(IP_B.into(), Vid(10), OWNER, 0);
    t.add_static(v6(2).into(), Vid(10), OWNER, 0);
    t
}

/// `f` in a buffer with room after it, as in a frame pool.
fn in_buffer(f: &[u8]) -> Vec<u8> {
    let mut b = f.to_vec();
    b.resize(f.len() + 64, 0xee);
    b
}

#[test]
fn an_arp_request_becomes_the_reply_in_place() {
    for tag in [None, Some(10)] {
        let req = arp_frame(arp::OP_REQUEST, IP_A, IP_B, tag);
        let msg = inspect(&req).unwrap();
        assert_eq!(msg, NeighMsg { proto: Proto::Arp, binding: Some((IP_A.into(), ASKER)), target: Some(IP_B.into()) });
        let mut buf = in_buffer(&req);
        let len = answer(&mut buf, req.len(), &table(), Vid(10)).unwrap();
        assert_eq!(len, req.len(), "same length, padding kept");
        let r = &buf[..len];
        assert_eq!(&r[0..6], &ASKER.0, "back to the asker");
        assert_eq!(&r[6..12], &OWNER.0, "from the bound MAC");
        assert_eq!(r[12..14] == [0x81, 0], tag.is_some(), "the tag stays");
        let (_, l3) = l3_of(r).unwrap();
        let reply = ArpRepr::parse(&ArpPacket::new_checked(&r[l3..]).unwrap());
        assert_eq!(
            reply,
            ArpRepr { op: arp::OP_REPLY, sender_mac: OWNER, sender_ip: IP_B, target_mac: ASKER, target_ip: IP_A }
        );
    }
}

#[test]
fn a_solicitation_becomes_a_solicited_advertisement() {
    for (slla, tag) in [(true, None), (false, None), (true, Some(10))] {
        let ns = ns_frame(v6(1), v6(2), slla, tag);
        let msg = inspect(&ns).unwrap();
        assert_eq!(msg.target, Some(v6(2).into()));
        assert_eq!(msg.binding, slla.then_some((v6(1).into(), ASKER)));
        let mut buf = in_buffer(&ns);
        let len = answer(&mut buf, ns.len(), &table(), Vid(10)).unwrap();
        let r = &buf[..len];
        assert_eq!((&r[0..6], &r[6..12]), (&ASKER.0[..], &OWNER.0[..]));
        let p = SlicedPacket::from_ethernet(r).unwrap();
        let Some(NetSlice::Ipv6(ip)) = p.net else { panic!("no IPv6") };
        let h = ip.header();
        assert_eq!((h.source_addr(), h.destination_addr(), h.hop_limit()), (v6(2), v6(1), 255));
        let icmp = Icmpv6Slice::from_slice(ip.payload().payload).unwrap();
        assert!(icmp.is_checksum_valid(v6(2).octets(), v6(1).octets()), "ICMPv6 checksum");
        assert_eq!((icmp.type_u8(), icmp.code_u8()), (136, 0));
        let na = NdMessage::new_checked(ip.payload().payload).unwrap();
        assert_eq!(na.flags(), icmpv6::FLAG_SOLICITED | icmpv6::FLAG_OVERRIDE);
        assert_eq!(na.target(), v6(2));
        assert_eq!(na.lladdr(icmpv6::OPT_TARGET_LLADDR), Some(OWNER));
        assert_eq!(ip.payload().payload.len(), 32);
    }
}

#[test]
fn what_is_never_answered() {
    let t = table();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ARP probe", arp_frame(arp::OP_REQUEST, Ipv4Addr::UNSPECIFIED, IP_B, None)),
        ("gratuitous ARP", arp_frame(arp::OP_REQUEST, IP_B, IP_B, None)),
        ("ARP reply", arp_frame(arp::OP_REPLY, IP_A, IP_B, None)),
        ("unknown target", arp_frame(arp::OP_REQUEST, IP_A, Ipv4Addr::new(198, 18, 0, 9), None)),
        ("DAD", ns_frame(Ipv6Addr::UNSPECIFIED, v6(2), false, None)),
        ("NS for an unknown target", ns_frame(v6(1), v6(9), true, None)),
        ("other VLAN", arp_frame(arp::OP_REQUEST, IP_A, IP_B, Some(20))),
    ];
    for (what, f) in cases {
        let vid = if f[12] == 0x81 { Vid(u16::from(f[15])) } else { Vid(10) };
        let mut buf = in_buffer(&f);
        assert_eq!(answer(&mut buf, f.len(), &t, vid), None, "{what}");
        assert_eq!(&buf[..f.len()], &f[..], "{what}: the buffer was changed");
    }
    // The owner asking for its own address (it would see a duplicate).
    let own = NeighTable::new(4);
    own.add_static(IP_B.into(), Vid(10), ASKER, 0);
    let f = arp_frame(arp::OP_REQUEST, IP_A, IP_B, None);
    assert_eq!(answer(&mut in_buffer(&f), f.len(), &own, Vid(10)), None);
    // Probes and gratuitous ARP still teach their sender, when they have one.
    assert_eq!(inspect(&arp_frame(arp::OP_REQUEST, IP_B, IP_B, None)).unwrap().binding, Some((IP_B.into(), ASKER)));
    assert_eq!(inspect(&arp_frame(arp::OP_REQUEST, Ipv4Addr::UNSPECIFIED, IP_B, None)).unwrap().binding, None);
    assert_eq!(inspect(&ns_frame(Ipv6Addr::UNSPECIFIED, v6(2), true, None)).unwrap().binding, None);
}

#[test]
fn a_hop_limit_below_255_is_not_nd() {
    let mut f = ns_frame(v6(1), v6(2), true, None);
    f[14 + 7] = 64;
    assert_eq!(inspect(&f), None);
}

#[test]
fn an_advertisement_teaches_its_target() {
    let mut f = ns_frame(v6(2), v6(2), false, None);
    let l3 = 14;
    let na =
        NdRepr { msg_type: icmpv6::NEIGHBOR_ADVERT, flags: icmpv6::FLAG_OVERRIDE, target: v6(2), lladdr: Some(OWNER) };
    f.resize(l3 + IPV6_LEN + na.len(), 0);
    let ip = Ipv6Repr { src: v6(2), dst: v6(1), next_header: 58, hop_limit: 255, payload_len: na.len() };
    ip.emit(&mut f[l3..]);
    na.emit(&mut f[l3 + IPV6_LEN..], v6(2), v6(1));
    assert!(is_neigh(&f));
    assert_eq!(inspect(&f), Some(NeighMsg { proto: Proto::Nd, binding: Some((v6(2).into(), OWNER)), target: None }));
}

#[test]
fn truncated_frames_never_panic() {
    let t = table();
    for f in [arp_frame(arp::OP_REQUEST, IP_A, IP_B, Some(10)), ns_frame(v6(1), v6(2), true, Some(10))] {
        for n in 0..f.len() {
            let mut buf = f[..n].to_vec();
            let _ = is_neigh(&buf);
            let _ = inspect(&buf);
            let _ = answer(&mut buf, n, &t, Vid(10));
            // A buffer with no room past the frame.
            let _ = answer(&mut buf, n.saturating_add(8), &t, Vid(10));
        }
    }
}

proptest::proptest! {
    /// Any bytes, any length claimed: no panic, and an answer stays in
    /// the buffer.
    #[test]
    fn any_bytes(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120), len in 0usize..140) {
        let t = table();
        let _ = inspect(&bytes);
        if let Some(n) = answer(&mut bytes, len, &t, Vid(10)) {
            proptest::prop_assert!(n <= bytes.len());
        }
    }
}
