//! Parsers against crafted replies, and the UAPI values against libc.
use super::*;
use proptest::prelude::*;

const SEQ: u32 = 77;

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn route_reply(family: u8, rtype: u8, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let rt = RtMsg { family, dst_len: 32, rtype, table: 254, ..RtMsg::default() };
    let mut b = MsgBuilder::new(RTM_NEWROUTE, 0, SEQ).fixed(&rt.bytes());
    for (t, d) in attrs {
        b = b.attr(*t, d);
    }
    b.finish()
}

fn neigh_reply(family: u8, state: u16, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let nd = NdMsg { family, ifindex: 7, state, ntype: 1, ..NdMsg::default() };
    let mut b = MsgBuilder::new(RTM_NEWNEIGH, 0, SEQ).fixed(&nd.bytes());
    for (t, d) in attrs {
        b = b.attr(*t, d);
    }
    b.finish()
}

fn error_msg(errno: i32, ext: Option<&str>) -> Vec<u8> {
    let flags = if ext.is_some() { NLM_F_CAPPED | NLM_F_ACK_TLVS } else { NLM_F_CAPPED };
    let mut payload = (-errno).to_ne_bytes().to_vec();
    payload.extend_from_slice(&MsgBuilder::new(RTM_GETROUTE, NLM_F_REQUEST, SEQ).finish());
    let mut b = MsgBuilder::new(NLMSG_ERROR, flags, SEQ).fixed(&payload);
    if let Some(t) = ext {
        let mut z = t.as_bytes().to_vec();
        z.push(0);
        b = b.attr(NLMSGERR_ATTR_MSG, &z);
    }
    b.finish()
}

/// What [`feed`] returns: the result, the messages handed on, `done`.
type Fed = (Result<(), NlError>, Vec<(u16, Vec<u8>)>, bool);

/// Runs a crafted datagram through an exchange.
fn feed(expect: Expect, dgram: &[u8]) -> Fed {
    let mut ex = Exchange { seq: SEQ, expect, done: false };
    let mut got = Vec::new();
    let r = ex.feed(dgram, &mut |t, p| {
        got.push((t, p.to_vec()));
        Ok(())
    });
    (r, got, ex.done)
}

#[test]
fn constants_match_libc() {
    assert_eq!(RTM_GETROUTE, libc::RTM_GETROUTE);
    assert_eq!(RTM_NEWROUTE, libc::RTM_NEWROUTE);
    assert_eq!(RTM_GETNEIGH, libc::RTM_GETNEIGH);
    assert_eq!(RTM_NEWNEIGH, libc::RTM_NEWNEIGH);
    assert_eq!(RTM_GETADDR, libc::RTM_GETADDR);
    assert_eq!(RTM_NEWADDR, libc::RTM_NEWADDR);
    assert_eq!(RTM_DELADDR, libc::RTM_DELADDR);
    assert_eq!(RTM_GETLINK, libc::RTM_GETLINK);
    assert_eq!(RTM_NEWLINK, libc::RTM_NEWLINK);
    assert_eq!(RTM_GETNSID, libc::RTM_GETNSID);
    assert_eq!(RTM_NEWNSID, libc::RTM_NEWNSID);
    assert_eq!(RTA_OIF, libc::RTA_OIF);
    assert_eq!(RTA_GATEWAY, libc::RTA_GATEWAY);
    assert_eq!(RTA_PREFSRC, libc::RTA_PREFSRC);
    assert_eq!(RTA_DST, libc::RTA_DST);
    assert_eq!(NDA_DST, libc::NDA_DST);
    assert_eq!(NDA_LLADDR, libc::NDA_LLADDR);
    assert_eq!(NTF_USE, libc::NTF_USE);
    assert_eq!(NUD_REACHABLE, libc::NUD_REACHABLE);
    assert_eq!(NUD_PERMANENT, libc::NUD_PERMANENT);
    assert_eq!(NUD_NOARP, libc::NUD_NOARP);
    assert_eq!(NUD_INCOMPLETE, libc::NUD_INCOMPLETE);
    assert_eq!(NUD_FAILED, libc::NUD_FAILED);
    assert_eq!(IFA_LOCAL, libc::IFA_LOCAL);
    assert_eq!(IFLA_MTU, libc::IFLA_MTU);
    assert_eq!(IFLA_IFNAME, libc::IFLA_IFNAME);
    assert_eq!(i32::from(NLMSG_ERROR), libc::NLMSG_ERROR);
    assert_eq!(i32::from(NLMSG_DONE), libc::NLMSG_DONE);
    assert_eq!(i32::from(NLM_F_DUMP), libc::NLM_F_DUMP);
    assert_eq!(i32::from(NLM_F_CREATE), libc::NLM_F_CREATE);
    assert_eq!(SOL_NETLINK, libc::SOL_NETLINK);
    assert_eq!(NETLINK_EXT_ACK, libc::NETLINK_EXT_ACK);
    assert_eq!(NETLINK_GET_STRICT_CHK, libc::NETLINK_GET_STRICT_CHK);
}

#[test]
fn route_reply_with_gateway_and_source() {
    let d = route_reply(
        libc::AF_INET as u8,
        RTN_UNICAST,
        &[
            (RTA_DST, vec![198, 18, 7, 9]),
            (RTA_OIF, 12u32.to_ne_bytes().to_vec()),
            (RTA_GATEWAY, vec![198, 18, 5, 2]),
            (RTA_PREFSRC, vec![198, 18, 5, 1]),
            (0x8000 | 15, vec![0xaa; 3]), // unknown, nested flag, odd length
        ],
    );
    let (r, got, done) = feed(Expect::One, &d);
    r.unwrap();
    assert!(done);
    assert_eq!(got.len(), 1);
    let route = parse_route(&got[0].1).unwrap();
    assert_eq!(
        route,
        RouteReply {
            rtype: RTN_UNICAST,
            dst: Some(v4("198.18.7.9")),
            oif: Some(12),
            gateway: Some(v4("198.18.5.2")),
            prefsrc: Some(v4("198.18.5.1")),
        }
    );
}

#[test]
fn route_reply_ipv6_onlink_and_via() {
    let a: Ipv6Addr = "2001:2:0:5::1".parse().unwrap();
    let d = route_reply(
        libc::AF_INET6 as u8,
        RTN_UNICAST,
        &[(RTA_OIF, 3u32.to_ne_bytes().to_vec()), (RTA_PREFSRC, a.octets().to_vec())],
    );
    let route = parse_route(&d[NLMSG_HDRLEN..]).unwrap();
    assert_eq!((route.oif, route.gateway, route.prefsrc), (Some(3), None, Some(IpAddr::V6(a))));

    // IPv4 route via an IPv6 gateway (RTA_VIA).
    let gw: Ipv6Addr = "fe80::1".parse().unwrap();
    let mut via = (libc::AF_INET6 as u16).to_ne_bytes().to_vec();
    via.extend_from_slice(&gw.octets());
    let d = route_reply(libc::AF_INET as u8, RTN_UNICAST, &[(RTA_VIA, via)]);
    assert_eq!(parse_route(&d[NLMSG_HDRLEN..]).unwrap().gateway, Some(IpAddr::V6(gw)));
}

#[test]
fn route_reply_bad_attributes_are_errors() {
    let bad_gw = route_reply(libc::AF_INET as u8, RTN_UNICAST, &[(RTA_GATEWAY, vec![1, 2, 3])]);
    assert!(parse_route(&bad_gw[NLMSG_HDRLEN..]).is_err());
    let bad_oif = route_reply(libc::AF_INET as u8, RTN_UNICAST, &[(RTA_OIF, vec![1, 2])]);
    assert!(parse_route(&bad_oif[NLMSG_HDRLEN..]).is_err());
    let short_via = route_reply(libc::AF_INET as u8, RTN_UNICAST, &[(RTA_VIA, vec![10])]);
    assert!(parse_route(&short_via[NLMSG_HDRLEN..]).is_err());
    assert!(parse_route(&[2, 32, 0]).is_err());
    // An attribute whose length runs past the end.
    let mut d = route_reply(libc::AF_INET as u8, RTN_UNICAST, &[(RTA_OIF, 1u32.to_ne_bytes().to_vec())]);
    let at = NLMSG_HDRLEN + RtMsg::LEN;
    d[at..at + 2].copy_from_slice(&200u16.to_ne_bytes());
    assert!(parse_route(&d[NLMSG_HDRLEN..]).is_err());
    // An attribute length under 4.
    d[at..at + 2].copy_from_slice(&2u16.to_ne_bytes());
    assert!(parse_route(&d[NLMSG_HDRLEN..]).is_err());
}

#[test]
fn neighbour_states() {
    let mac = vec![0x02, 0, 0, 0, 0, 0x42];
    let want = Some(MacAddr([0x02, 0, 0, 0, 0, 0x42]));
    for (state, usable) in [
        (NUD_REACHABLE, true),
        (NUD_STALE, true),
        (NUD_DELAY, true),
        (NUD_PROBE, true),
        (NUD_PERMANENT, true),
        (NUD_NOARP, true),
        (NUD_INCOMPLETE, false),
        (NUD_FAILED, false),
        (NUD_NONE, false),
    ] {
        let d = neigh_reply(libc::AF_INET as u8, state, &[(NDA_DST, vec![198, 18, 5, 2]), (NDA_LLADDR, mac.clone())]);
        let n = parse_neigh(&d[NLMSG_HDRLEN..]).unwrap();
        assert_eq!(n.dst, Some(v4("198.18.5.2")));
        assert_eq!(n.ifindex, 7);
        assert_eq!(usable_mac(n.state, n.lladdr.as_deref()), if usable { want } else { None }, "state {state:#x}");
    }
    // Usable state but no / a non-Ethernet link-layer address.
    assert_eq!(usable_mac(NUD_NOARP, None), None);
    assert_eq!(usable_mac(NUD_REACHABLE, Some(&[1, 2, 3, 4])), None);
    // IPv6.
    let a: Ipv6Addr = "2001:2:0:5::2".parse().unwrap();
    let d = neigh_reply(libc::AF_INET6 as u8, NUD_STALE, &[(NDA_DST, a.octets().to_vec()), (NDA_LLADDR, mac)]);
    let n = parse_neigh(&d[NLMSG_HDRLEN..]).unwrap();
    assert_eq!((n.dst, usable_mac(n.state, n.lladdr.as_deref())), (Some(IpAddr::V6(a)), want));
    // Truncated.
    assert!(parse_neigh(&d[NLMSG_HDRLEN..NLMSG_HDRLEN + 5]).is_err());
}

#[test]
fn link_and_addr_replies() {
    let ifi = IfInfoMsg { index: 9, ..IfInfoMsg::default() };
    let d = MsgBuilder::new(RTM_NEWLINK, 0, SEQ)
        .fixed(&ifi.bytes())
        .attr(IFLA_IFNAME, b"uplink0\0")
        .attr(IFLA_MTU, &9000u32.to_ne_bytes())
        .attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 1])
        .finish();
    let l = parse_link(&d[NLMSG_HDRLEN..]).unwrap();
    assert_eq!(
        l,
        LinkReply {
            index: 9,
            name: "uplink0".into(),
            mtu: Some(9000),
            addr: Some(vec![2, 0, 0, 0, 0, 1]),
            ..LinkReply::default()
        }
    );
    assert_eq!(peer_of(&l), Ok(None));

    let ifa = IfAddrMsg { family: libc::AF_INET as u8, prefixlen: 32, index: 9, ..IfAddrMsg::default() };
    let d = MsgBuilder::new(RTM_NEWADDR, NLM_F_MULTI, SEQ)
        .fixed(&ifa.bytes())
        .attr(IFA_ADDRESS, &[198, 18, 5, 9]) // the peer on a point-to-point link
        .attr(IFA_LOCAL, &[198, 18, 5, 1])
        .finish();
    assert_eq!(parse_addr(&d[NLMSG_HDRLEN..]).unwrap(), (9, Some(v4("198.18.5.1"))));
}

/// An RTM_NEWLINK payload for interface 9 with `attrs` after its name.
fn link_payload(attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let ifi = IfInfoMsg { index: 9, ..IfInfoMsg::default() };
    let mut b = MsgBuilder::new(RTM_NEWLINK, 0, SEQ).fixed(&ifi.bytes()).attr(IFLA_IFNAME, b"veth0\0");
    for (t, d) in attrs {
        b = b.attr(*t, d);
    }
    b.finish()[NLMSG_HDRLEN..].to_vec()
}

/// IFLA_LINKINFO (flagged nested, as the kernel sends it) with the kind,
/// then IFLA_INFO_DATA (2), which is skipped.
fn linkinfo(kind: &[u8]) -> Vec<u8> {
    let inner = MsgBuilder::new(0, 0, 0).attr(IFLA_INFO_KIND, kind).attr(2, &[0xaa; 5]).finish();
    inner[NLMSG_HDRLEN..].to_vec()
}

const NESTED: u16 = 0x8000;

#[test]
fn veth_replies() {
    // A veth whose peer (index 4) is in the namespace of id 3.
    let p = link_payload(&[
        (IFLA_LINK, 4u32.to_ne_bytes().to_vec()),
        (NESTED | IFLA_LINKINFO, linkinfo(b"veth\0")),
        (IFLA_LINK_NETNSID, 3i32.to_ne_bytes().to_vec()),
    ]);
    let l = parse_link(&p).unwrap();
    assert_eq!((l.link, l.link_netnsid, l.kind.as_deref()), (Some(4), Some(3), Some("veth")));
    assert_eq!(peer_of(&l), Ok(Some(VethPeer { ifindex: 4, nsid: Some(3) })));

    // Its peer in our namespace: no IFLA_LINK_NETNSID.
    let p = link_payload(&[(IFLA_LINK, 4u32.to_ne_bytes().to_vec()), (IFLA_LINKINFO, linkinfo(b"veth\0"))]);
    assert_eq!(peer_of(&parse_link(&p).unwrap()), Ok(Some(VethPeer { ifindex: 4, nsid: None })));

    // Older kernels leave IFLA_LINK out when the peer's index is our own.
    let p = link_payload(&[(IFLA_LINKINFO, linkinfo(b"veth")), (IFLA_LINK_NETNSID, 0i32.to_ne_bytes().to_vec())]);
    assert_eq!(peer_of(&parse_link(&p).unwrap()), Ok(Some(VethPeer { ifindex: 9, nsid: Some(0) })));

    // Not a veth: another kind, or none (a physical NIC), even with IFLA_LINK.
    let p = link_payload(&[(IFLA_LINK, 4u32.to_ne_bytes().to_vec()), (IFLA_LINKINFO, linkinfo(b"vxlan\0"))]);
    assert_eq!(peer_of(&parse_link(&p).unwrap()), Ok(None));
    let p = link_payload(&[(IFLA_LINK, 4u32.to_ne_bytes().to_vec())]);
    assert_eq!(peer_of(&parse_link(&p).unwrap()), Ok(None));
    let p = link_payload(&[(IFLA_LINKINFO, linkinfo(b"vethx\0"))]);
    assert_eq!(peer_of(&parse_link(&p).unwrap()), Ok(None));

    // A veth without a peer, an unassigned id, and a peer at our own index in our namespace.
    let p = link_payload(&[(IFLA_LINK, 0u32.to_ne_bytes().to_vec()), (IFLA_LINKINFO, linkinfo(b"veth\0"))]);
    assert!(peer_of(&parse_link(&p).unwrap()).unwrap_err().contains("no peer"));
    let p = link_payload(&[
        (IFLA_LINK, 4u32.to_ne_bytes().to_vec()),
        (IFLA_LINKINFO, linkinfo(b"veth\0")),
        (IFLA_LINK_NETNSID, (-1i32).to_ne_bytes().to_vec()),
    ]);
    assert!(peer_of(&parse_link(&p).unwrap()).unwrap_err().contains("no id"));
    let p = link_payload(&[(IFLA_LINKINFO, linkinfo(b"veth\0"))]);
    assert!(peer_of(&parse_link(&p).unwrap()).is_err());

    // Bad sizes and a broken nested attribute are errors.
    let p = link_payload(&[(IFLA_LINK, vec![4, 0])]);
    assert!(parse_link(&p).is_err());
    let p = link_payload(&[(IFLA_LINK_NETNSID, vec![3])]);
    assert!(parse_link(&p).is_err());
    let mut bad = linkinfo(b"veth\0");
    bad[..2].copy_from_slice(&100u16.to_ne_bytes());
    assert!(parse_link(&link_payload(&[(IFLA_LINKINFO, bad)])).is_err());
}

/// An RTM_NEWNSID payload: rtgenmsg, padded, then `attrs`.
fn nsid_payload(attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = MsgBuilder::new(RTM_NEWNSID, 0, SEQ).fixed(&[libc::AF_UNSPEC as u8]);
    for (t, d) in attrs {
        b = b.attr(*t, d);
    }
    b.finish()[NLMSG_HDRLEN..].to_vec()
}

#[test]
fn nsid_replies() {
    // The request: rtgenmsg padded to 4 bytes, then NETNSA_FD.
    let req = MsgBuilder::new(RTM_GETNSID, NLM_F_REQUEST, SEQ)
        .fixed(&[libc::AF_UNSPEC as u8])
        .attr(NETNSA_FD, &7u32.to_ne_bytes())
        .finish();
    assert_eq!(req.len(), NLMSG_HDRLEN + 4 + 8);
    let mut want = vec![0u8; 4];
    want.extend_from_slice(&8u16.to_ne_bytes());
    want.extend_from_slice(&NETNSA_FD.to_ne_bytes());
    want.extend_from_slice(&7u32.to_ne_bytes());
    assert_eq!(&req[NLMSG_HDRLEN..], &want[..]);

    assert_eq!(parse_nsid(&nsid_payload(&[(NETNSA_NSID, 5i32.to_ne_bytes().to_vec())])).unwrap(), Some(5));
    assert_eq!(parse_nsid(&nsid_payload(&[(NETNSA_NSID, 0i32.to_ne_bytes().to_vec())])).unwrap(), Some(0));
    // NETNSA_CURRENT_NSID (5) and others are skipped.
    let p = nsid_payload(&[(5, 9i32.to_ne_bytes().to_vec()), (NETNSA_NSID, 2i32.to_ne_bytes().to_vec())]);
    assert_eq!(parse_nsid(&p).unwrap(), Some(2));
    assert_eq!(parse_nsid(&nsid_payload(&[(NETNSA_NSID, (-1i32).to_ne_bytes().to_vec())])).unwrap(), None);
    assert!(parse_nsid(&nsid_payload(&[(NETNSA_NSID, (-7i32).to_ne_bytes().to_vec())])).is_err());
    assert!(parse_nsid(&nsid_payload(&[(NETNSA_NSID, vec![1, 2])])).is_err());
    assert!(parse_nsid(&nsid_payload(&[])).is_err());
    assert!(parse_nsid(&[]).is_err());
}

#[test]
fn netns_id_live() {
    // Asking about a namespace needs no privilege; about our own it
    // answers Ok (an id only if one was set). A file that is no namespace
    // is the kernel's EINVAL.
    let own = std::fs::File::open("/proc/self/ns/net").unwrap();
    netns_id(own.as_raw_fd()).unwrap();
    let stat = std::fs::File::open("/proc/self/stat").unwrap();
    let e = netns_id(stat.as_raw_fd()).unwrap_err();
    assert!(e.to_string().starts_with(&format!("namespace id of descriptor {}: ", stat.as_raw_fd())), "{e}");
    assert!(netns_id(-1).is_err());
}

#[test]
fn errors_acks_and_dumps() {
    // An error with the kernel's text.
    let (r, _, _) = feed(Expect::One, &error_msg(libc::ENETUNREACH, Some("no route\nhere")));
    match r {
        Err(NlError::Kernel { errno, msg }) => {
            assert_eq!(errno, libc::ENETUNREACH);
            assert_eq!(msg.as_deref(), Some("no routehere"));
        }
        other => panic!("{other:?}"),
    }
    let e = NlError::Kernel { errno: libc::ENETUNREACH, msg: None }.context("route lookup for 198.18.1.2");
    assert_eq!(e.to_string(), "route lookup for 198.18.1.2: Network is unreachable");
    assert_eq!(kernel_errno(&e), Some(libc::ENETUNREACH));

    // An ack.
    let (r, got, done) = feed(Expect::Ack, &error_msg(0, None));
    assert!(r.is_ok() && got.is_empty() && done);

    // A dump in one datagram: two entries, then NLMSG_DONE; a message of
    // another sequence number is ignored.
    let ifa = IfAddrMsg { family: libc::AF_INET as u8, index: 1, ..IfAddrMsg::default() };
    let entry = |seq| {
        MsgBuilder::new(RTM_NEWADDR, NLM_F_MULTI, seq).fixed(&ifa.bytes()).attr(IFA_LOCAL, &[198, 18, 0, 1]).finish()
    };
    let mut dg = entry(SEQ);
    dg.extend(entry(SEQ + 1));
    dg.extend(entry(SEQ));
    let (r, got, done) = feed(Expect::Dump, &dg);
    assert!(r.is_ok() && got.len() == 2 && !done);
    let (r, _, done) =
        feed(Expect::Dump, &MsgBuilder::new(NLMSG_DONE, NLM_F_MULTI, SEQ).fixed(&0i32.to_ne_bytes()).finish());
    assert!(r.is_ok() && done);
    // A dump that fails midway.
    let (r, _, _) = feed(
        Expect::Dump,
        &MsgBuilder::new(NLMSG_DONE, NLM_F_MULTI, SEQ).fixed(&(-libc::EBUSY).to_ne_bytes()).finish(),
    );
    assert!(matches!(r, Err(NlError::Kernel { errno: libc::EBUSY, .. })));
}

#[test]
fn truncated_and_garbage_datagrams_are_errors() {
    let d = route_reply(libc::AF_INET as u8, RTN_UNICAST, &[(RTA_OIF, 5u32.to_ne_bytes().to_vec())]);
    for cut in 1..d.len() {
        let (r, got, _) = feed(Expect::One, &d[..cut]);
        assert!(r.is_err(), "cut at {cut}");
        assert!(got.is_empty());
    }
    // nlmsg_len below the header size, and zero (which must not loop).
    let mut z = d.clone();
    z[..4].copy_from_slice(&0u32.to_ne_bytes());
    assert!(feed(Expect::One, &z).0.is_err());
    z[..4].copy_from_slice(&8u32.to_ne_bytes());
    assert!(feed(Expect::One, &z).0.is_err());
    // A short error payload.
    let mut e = MsgBuilder::new(NLMSG_ERROR, 0, SEQ).finish();
    e.extend_from_slice(&[1, 2]);
    e[..4].copy_from_slice(&18u32.to_ne_bytes());
    assert!(feed(Expect::One, &e).0.is_err());
    // Extended-ack flags with an echoed length that points past the end.
    let mut p = (-libc::EINVAL).to_ne_bytes().to_vec();
    p.extend_from_slice(&u32::MAX.to_ne_bytes());
    let e = MsgBuilder::new(NLMSG_ERROR, NLM_F_ACK_TLVS, SEQ).fixed(&p).finish();
    assert!(matches!(feed(Expect::One, &e).0, Err(NlError::Kernel { errno: libc::EINVAL, .. })));
}

/// Every parser on arbitrary bytes: an answer or an error, no panic.
fn everything(bytes: &[u8], flags: u16) {
    for expect in [Expect::One, Expect::Dump, Expect::Ack] {
        let _ = feed(expect, bytes);
    }
    let _ = parse_route(bytes);
    let _ = parse_neigh(bytes);
    let _ = parse_link(bytes);
    let _ = parse_addr(bytes);
    let _ = parse_nsid(bytes);
    let _ = parse_link(bytes).map(|l| peer_of(&l));
    let _ = parse_error(flags, bytes);
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), flags in any::<u16>()) {
        everything(&bytes, flags);
    }

    /// Valid framing around random payloads reaches the inner parsers.
    #[test]
    fn random_payloads_never_panic(
        ty in prop_oneof![Just(RTM_NEWROUTE), Just(RTM_NEWNEIGH), Just(RTM_NEWLINK), Just(RTM_NEWADDR), Just(RTM_NEWNSID), Just(NLMSG_ERROR), Just(NLMSG_DONE)],
        flags in any::<u16>(),
        payload in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let d = MsgBuilder::new(ty, flags, SEQ).fixed(&payload).finish();
        everything(&d, flags);
        everything(&d[NLMSG_HDRLEN..], flags);
        let mut ex = Exchange { seq: SEQ, expect: Expect::One, done: false };
        let _ = ex.feed(&d, &mut |t, p| {
            let _ = match t {
                RTM_NEWROUTE => parse_route(p).map(|_| ()),
                RTM_NEWNEIGH => parse_neigh(p).map(|_| ()),
                RTM_NEWLINK => parse_link(p).map(|_| ()),
                RTM_NEWNSID => parse_nsid(p).map(|_| ()),
                _ => parse_addr(p).map(|_| ()),
            };
            Ok(())
        });
    }
}
