//! The forwarding decision: parse → classify VLAN → learn → look up.
//!
//! Pure: a frame, its ingress port, the configuration snapshot and the time
//! go in, a [`Verdict`] comes out; the only side effects are learning into
//! the bridge's FDB and, from ARP and ND, into its neighbour table. The
//! polling loop applies verdicts (tag edits, transmit, flood copies, ARP
//! and ND answers) and the same function answers `rvsctl trace`.

use crate::fdb::{Dest, Learn, NO_REMOTE};
use crate::ids::{BridgeId, PortId, Vid};
use crate::neigh::Glean;
use crate::port::MAX_FRAME;
use crate::responder::{self, Proto};
use crate::snapshot::{PortKind, Snapshot, VlanMode};
use crate::stats::DropReason;
use crate::wire::vlan::{self, Tag, TagError};
use crate::wire::vxlan::{self, DecapError};
use crate::wire::EthernetFrame;

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Dropped, and why.
    Drop(DropReason),
    /// To one port (its MAC was learned there).
    Unicast(PortId),
    /// To every other port of the bridge in the frame's VLAN.
    Flood(BridgeId),
    /// An ARP request or neighbour solicitation for a bound address:
    /// answered (by [`responder::answer`]) back out the ingress port,
    /// not flooded.
    Answer(Proto),
}

/// The decision for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Where it goes.
    pub action: Action,
    /// The VLAN it was classified into (0 if dropped before that).
    pub vid: Vid,
    /// True if it arrived with an 802.1Q tag (priority tags included).
    pub tagged: bool,
    /// What learning its source MAC did (`None` if it was not attempted).
    pub learn: Option<Learn>,
    /// What gleaning an IP-MAC binding from ARP or ND did (`None` if the
    /// frame showed none, or came through a tunnel).
    pub glean: Option<Glean>,
    /// For `Unicast` to a tunnel port: the remote VTEP index; else
    /// `NO_REMOTE` (a flood to a tunnel goes to every remote).
    pub remote: u16,
}

impl Verdict {
    /// A verdict that drops for `reason`.
    pub fn drop(reason: DropReason) -> Verdict {
        Verdict {
            action: Action::Drop(reason),
            vid: Vid(0),
            tagged: false,
            learn: None,
            glean: None,
            remote: NO_REMOTE,
        }
    }
}

/// Decides what happens to `frame`, received on `ingress` at time `now`
/// (seconds), learning its source MAC on the way.
#[inline]
pub fn classify(snap: &Snapshot, ingress: PortId, frame: &[u8], now: u32) -> Verdict {
    classify_from(snap, ingress, NO_REMOTE, frame, now)
}

/// `classify` for a frame that came through a tunnel port from remote VTEP
/// `remote` (an index into the tunnel's remotes), which is learned with it.
#[inline]
pub fn classify_from(snap: &Snapshot, ingress: PortId, remote: u16, frame: &[u8], now: u32) -> Verdict {
    decide::<true>(snap, ingress, remote, frame, now)
}

/// The decision `classify_from` would take, by the same code, without
/// learning: `Verdict::learn` says what learning would do. For `rvsctl trace`.
pub fn dry_run(snap: &Snapshot, ingress: PortId, remote: u16, frame: &[u8], now: u32) -> Verdict {
    decide::<false>(snap, ingress, remote, frame, now)
}

#[inline]
fn decide<const LEARN: bool>(snap: &Snapshot, ingress: PortId, remote: u16, frame: &[u8], now: u32) -> Verdict {
    let Some(eth) = EthernetFrame::new_checked(frame) else {
        return Verdict::drop(DropReason::Runt);
    };
    if frame.len() > MAX_FRAME {
        return Verdict::drop(DropReason::Oversize);
    }
    let Some(port) = snap.port(ingress) else {
        return Verdict::drop(DropReason::NoBridge);
    };
    let Some(bridge) = port.bridge.and_then(|b| snap.bridge(b)) else {
        return Verdict::drop(DropReason::NoBridge);
    };

    let (vid, tagged) = match ingress_vlan(&port.vlan, frame) {
        Ok(v) => v,
        Err(reason) => return Verdict::drop(reason),
    };

    let src = eth.src();
    if src.is_multicast() {
        return Verdict::drop(DropReason::BadSrcMac).in_vlan(vid, tagged);
    }
    let at = Dest { port: ingress, remote };
    let learn =
        Some(if LEARN { bridge.fdb.learn_at(src, vid, at, now) } else { bridge.fdb.predict(src, vid, at, now) });

    // ARP and ND: glean the binding the frame shows (on local ports only:
    // other nodes' come from the cluster), and answer a request for a
    // bound address instead of flooding it.
    let mut glean = None;
    if let Some(msg) = responder::inspect(frame) {
        let local = !matches!(port.kind, PortKind::Vxlan(_));
        if let (Some((ip, mac)), true) = (msg.binding, local) {
            let t = &bridge.neigh;
            glean = Some(if LEARN { t.learn(ip, vid, mac, now) } else { t.predict(ip, vid, mac) });
        }
        let bound = msg.target.and_then(|t| bridge.neigh.lookup(t, vid));
        // Never answer the owner of the address: it would see a duplicate.
        // Only requests sent to all (broadcast ARP, NS to a solicited-node
        // group): a unicast one is a host checking that its neighbour is
        // alive (NUD), which only the neighbour itself may confirm.
        if eth.dst().is_multicast() && bound.is_some_and(|(mac, _)| mac != src) {
            return Verdict { action: Action::Answer(msg.proto), vid, tagged, learn, glean, remote };
        }
    }

    let dst = eth.dst();
    let (action, remote) = if dst.is_multicast() {
        (Action::Flood(bridge.id), NO_REMOTE)
    } else {
        match bridge.fdb.lookup_dest(dst, vid) {
            // Never back out of the port it came in on; for a tunnel that
            // is split horizon: remotes reach each other directly.
            Some(d) if d.port == ingress => (Action::Drop(DropReason::Hairpin), NO_REMOTE),
            Some(d) => (Action::Unicast(d.port), d.remote),
            None => (Action::Flood(bridge.id), NO_REMOTE),
        }
    };
    Verdict { action, vid, tagged, learn, glean, remote }
}

impl Verdict {
    fn in_vlan(self, vid: Vid, tagged: bool) -> Verdict {
        Verdict { vid, tagged, ..self }
    }
}

/// Starts loading the FDB slots that classifying `frame` from `ingress`
/// will read (its source and destination MACs), so that several frames'
/// lookups can wait on memory at once.
#[inline]
pub fn prefetch(snap: &Snapshot, ingress: PortId, frame: &[u8]) {
    let Some(eth) = EthernetFrame::new_checked(frame) else { return };
    let Some(port) = snap.port(ingress) else { return };
    let Some(bridge) = port.bridge.and_then(|b| snap.bridge(b)) else { return };
    let Ok((vid, _)) = ingress_vlan(&port.vlan, frame) else { return };
    bridge.fdb.prefetch(eth.src(), vid);
    if !eth.dst().is_multicast() {
        bridge.fdb.prefetch(eth.dst(), vid);
    }
}

/// A frame from an uplink, taken apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decapped {
    /// The tunnel port it belongs to.
    pub port: PortId,
    /// The remote VTEP it came from (index into the tunnel's remotes).
    pub remote: u16,
    /// Offset of the inner frame.
    pub inner: usize,
    /// Length of the inner frame.
    pub len: usize,
}

/// Finds the tunnel port and remote VTEP of a VXLAN frame received on an
/// uplink, or the reason to drop it.
#[inline]
pub fn decap(snap: &Snapshot, frame: &[u8]) -> Result<Decapped, DropReason> {
    let o = vxlan::decap(frame).map_err(|e| match e {
        DecapError::NotVxlan => DropReason::NotVxlan,
        DecapError::Truncated => DropReason::VxlanTruncated,
        DecapError::BadFlags => DropReason::VxlanBadFlags,
    })?;
    let Some(port) = snap.vtep(o.dst, o.dst_port, o.vni) else {
        return Err(if snap.is_local_vtep(o.dst, o.dst_port) {
            DropReason::VxlanUnknownVni
        } else {
            DropReason::NotVxlan
        });
    };
    let Some(PortKind::Vxlan(tunnel)) = snap.port(port).map(|p| &p.kind) else {
        return Err(DropReason::NoBridge);
    };
    let remote = tunnel.remote_index(o.src).ok_or(DropReason::VxlanUnknownVtep)?;
    Ok(Decapped { port, remote, inner: o.inner, len: o.inner_len })
}

/// The VLAN a frame belongs to on a port, and whether it came tagged.
#[inline]
fn ingress_vlan(mode: &VlanMode, frame: &[u8]) -> Result<(Vid, bool), DropReason> {
    let tag = vlan::parse(frame).map_err(|e| match e {
        TagError::Truncated | TagError::Unsupported => DropReason::BadVlan,
    })?;
    match (mode, tag) {
        (VlanMode::Access(v), Tag::Untagged) => Ok((*v, false)),
        (VlanMode::Access(v), Tag::Dot1q { vid, .. }) if vid == Vid(0) || vid == *v => Ok((*v, true)),
        (VlanMode::Access(_), Tag::Dot1q { .. }) => Err(DropReason::VlanFiltered),
        (VlanMode::Trunk { native, .. }, Tag::Untagged) => native.map(|v| (v, false)).ok_or(DropReason::VlanFiltered),
        (VlanMode::Trunk { native, .. }, Tag::Dot1q { vid: Vid(0), .. }) => {
            native.map(|v| (v, true)).ok_or(DropReason::VlanFiltered)
        }
        (VlanMode::Trunk { allowed, .. }, Tag::Dot1q { vid, .. }) if allowed.contains(vid) => Ok((vid, true)),
        (VlanMode::Trunk { .. }, Tag::Dot1q { .. }) => Err(DropReason::VlanFiltered),
    }
}

/// How a frame's tag must change to leave through a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagEdit {
    /// Leave the frame as it is.
    Keep,
    /// Add a tag with this VLAN.
    Push(Vid),
    /// Remove the tag.
    Pop,
    /// Rewrite the tag's VLAN (a priority-tagged frame leaving a trunk).
    Rewrite(Vid),
}

/// The tag edit for a frame of `vid` (`tagged` on arrival) leaving a port
/// that sends it tagged or not.
#[inline]
pub fn tag_edit(tagged: bool, vid: Vid, egress_tagged: bool) -> TagEdit {
    match (tagged, egress_tagged) {
        (false, false) => TagEdit::Keep,
        (false, true) => TagEdit::Push(vid),
        (true, false) => TagEdit::Pop,
        (true, true) => TagEdit::Rewrite(vid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdb::Fdb;
    use crate::snapshot::VlanSet;
    use crate::wire::MacAddr;
    use proptest::prelude::*;
    use std::sync::Arc;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);

    fn trunk(vids: &[Vid], native: Option<Vid>) -> VlanMode {
        VlanMode::Trunk { allowed: vids.iter().copied().collect::<VlanSet>(), native }
    }

    /// Ports 0,1: access VLAN 10; 2: access VLAN 20; 3: trunk 10,20.
    fn snap() -> Snapshot {
        let modes = [
            VlanMode::Access(Vid(10)),
            VlanMode::Access(Vid(10)),
            VlanMode::Access(Vid(20)),
            trunk(&[Vid(10), Vid(20)], None),
        ];
        crate::testing::one_bridge(Arc::new(Fdb::new(64)), 1, modes)
    }

    use crate::testing::frame;

    #[test]
    fn unknown_then_learned_unicast() {
        let s = snap();
        let v = classify(&s, PortId(0), &frame(B, A, None), 0);
        assert_eq!(v.action, Action::Flood(BridgeId(0)));
        assert_eq!(v.learn, Some(Learn::New));
        assert_eq!((v.vid, v.tagged), (Vid(10), false));
        // B answers from port 1: A is known now.
        let v = classify(&s, PortId(1), &frame(A, B, None), 0);
        assert_eq!(v.action, Action::Unicast(PortId(0)));
        let v = classify(&s, PortId(0), &frame(B, A, None), 0);
        assert_eq!(v.action, Action::Unicast(PortId(1)));
    }

    #[test]
    fn dry_run_decides_alike_and_learns_nothing() {
        let s = snap();
        classify(&s, PortId(1), &frame(A, B, None), 0);
        let f = frame(B, A, None);
        let dry = dry_run(&s, PortId(0), NO_REMOTE, &f, 0);
        assert_eq!(dry.learn, Some(Learn::New));
        assert_eq!(s.bridge(BridgeId(0)).unwrap().fdb.lookup(A, Vid(10)), None, "a dry run learned");
        let real = classify(&s, PortId(0), &f, 0);
        assert_eq!((dry.action, dry.vid, dry.learn), (real.action, real.vid, real.learn));
        assert_eq!(dry_run(&s, PortId(0), NO_REMOTE, &f, 0).learn, Some(Learn::Known));
    }

    #[test]
    fn never_back_to_the_ingress_port() {
        let s = snap();
        classify(&s, PortId(0), &frame(B, A, None), 0);
        classify(&s, PortId(0), &frame(A, B, None), 0);
        let v = classify(&s, PortId(0), &frame(A, B, None), 0);
        assert_eq!(v.action, Action::Drop(DropReason::Hairpin));
    }

    #[test]
    fn broadcast_floods_and_multicast_source_is_dropped() {
        let s = snap();
        assert_eq!(classify(&s, PortId(2), &frame(MacAddr::BROADCAST, A, None), 0).action, Action::Flood(BridgeId(0)));
        let v = classify(&s, PortId(2), &frame(B, MacAddr([1, 0, 0x5e, 0, 0, 1]), None), 0);
        assert_eq!(v.action, Action::Drop(DropReason::BadSrcMac));
    }

    #[test]
    fn vlans_are_separate_learning_domains() {
        let s = snap();
        classify(&s, PortId(0), &frame(B, A, None), 0); // A in VLAN 10 on port 0
        let v = classify(&s, PortId(2), &frame(A, B, None), 0); // from VLAN 20
        assert_eq!(v.action, Action::Flood(BridgeId(0)), "A is unknown in VLAN 20");
        assert_eq!(v.vid, Vid(20));
    }

    #[test]
    fn access_and_trunk_tag_rules() {
        let s = snap();
        type Case = (PortId, Option<u16>, Result<(Vid, bool), DropReason>);
        let cases: &[Case] = &[
            (PortId(0), None, Ok((Vid(10), false))),
            (PortId(0), Some(10), Ok((Vid(10), true))),
            (PortId(0), Some(0x2000), Ok((Vid(10), true))), // priority tag
            (PortId(0), Some(20), Err(DropReason::VlanFiltered)),
            (PortId(3), Some(20), Ok((Vid(20), true))),
            (PortId(3), Some(30), Err(DropReason::VlanFiltered)),
            (PortId(3), None, Err(DropReason::VlanFiltered)), // no native VLAN
        ];
        for &(p, tag, want) in cases {
            let v = classify(&s, p, &frame(B, A, tag), 0);
            match want {
                Ok((vid, tagged)) => assert_eq!((v.vid, v.tagged), (vid, tagged), "port {p} tag {tag:?}"),
                Err(r) => assert_eq!(v.action, Action::Drop(r), "port {p} tag {tag:?}"),
            }
        }
    }

    #[test]
    fn flood_sets_follow_vlan_membership() {
        let s = snap();
        let br = s.bridge(BridgeId(0)).unwrap();
        let members = |vid| br.flood_set(vid).iter().map(|m| (m.port, m.tagged)).collect::<Vec<_>>();
        assert_eq!(members(Vid(10)), vec![(PortId(0), false), (PortId(1), false), (PortId(3), true)]);
        assert_eq!(members(Vid(20)), vec![(PortId(2), false), (PortId(3), true)]);
        assert!(members(Vid(30)).is_empty());
    }

    #[test]
    fn malformed_frames_get_named_drops() {
        let s = snap();
        assert_eq!(classify(&s, PortId(0), &[0u8; 13], 0).action, Action::Drop(DropReason::Runt));
        assert_eq!(classify(&s, PortId(0), &vec![0u8; MAX_FRAME + 1], 0).action, Action::Drop(DropReason::Oversize));
        let mut cut = frame(B, A, Some(10));
        cut.truncate(16);
        assert_eq!(classify(&s, PortId(3), &cut, 0).action, Action::Drop(DropReason::BadVlan));
        let mut qinq = frame(B, A, Some(10));
        qinq[12] = 0x88;
        qinq[13] = 0xa8;
        assert_eq!(classify(&s, PortId(3), &qinq, 0).action, Action::Drop(DropReason::BadVlan));
        assert_eq!(classify(&s, PortId(9), &frame(B, A, None), 0).action, Action::Drop(DropReason::NoBridge));
    }

    #[test]
    fn tag_edits() {
        assert_eq!(tag_edit(false, Vid(10), false), TagEdit::Keep);
        assert_eq!(tag_edit(false, Vid(10), true), TagEdit::Push(Vid(10)));
        assert_eq!(tag_edit(true, Vid(10), false), TagEdit::Pop);
        assert_eq!(tag_edit(true, Vid(10), true), TagEdit::Rewrite(Vid(10)));
    }

    mod neigh {
        use super::*;
        use crate::neigh::{Glean, Source};
        use crate::responder::Proto;
        use crate::testing::{arp, solicit};
        use crate::wire::arp::{OP_REPLY, OP_REQUEST};
        use std::net::{Ipv4Addr, Ipv6Addr};

        const IP_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
        const IP_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

        fn v6(n: u16) -> Ipv6Addr {
            Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, n)
        }

        #[test]
        fn a_request_for_a_bound_address_is_answered_not_flooded() {
            let s = snap();
            let neigh = &s.bridge(BridgeId(0)).unwrap().neigh;
            neigh.add_static(IP_B.into(), Vid(10), B, 0);
            neigh.add_static(v6(2).into(), Vid(10), B, 0);
            let v = classify(&s, PortId(0), &arp(OP_REQUEST, A, IP_A, IP_B, None), 0);
            assert_eq!((v.action, v.vid, v.glean), (Action::Answer(Proto::Arp), Vid(10), Some(Glean::New)));
            assert_eq!(v.learn, Some(Learn::New), "the asker's MAC is learned as from any frame");
            let v = classify(&s, PortId(3), &arp(OP_REQUEST, A, IP_A, IP_B, Some(10)), 0);
            assert_eq!((v.action, v.tagged), (Action::Answer(Proto::Arp), true));
            let v = classify(&s, PortId(0), &solicit(A, v6(1), v6(2), true, None), 0);
            assert_eq!(v.action, Action::Answer(Proto::Nd));
            // Another VLAN, an unknown address: flooded as before.
            assert_eq!(
                classify(&s, PortId(2), &arp(OP_REQUEST, A, IP_A, IP_B, None), 0).action,
                Action::Flood(BridgeId(0))
            );
            let v = classify(&s, PortId(0), &arp(OP_REQUEST, A, IP_A, Ipv4Addr::new(198, 18, 0, 9), None), 0);
            assert_eq!(v.action, Action::Flood(BridgeId(0)));
            // Nor a unicast request (a host checking its neighbour is
            // alive): it goes to the owner.
            for mut f in [arp(OP_REQUEST, A, IP_A, IP_B, None), solicit(A, v6(1), v6(2), true, None)] {
                f[..6].copy_from_slice(&B.0);
                assert!(!matches!(classify(&s, PortId(0), &f, 0).action, Action::Answer(_)));
            }
            // Nor when the owner asks, nor for probes, gratuitous ARP or DAD.
            let owner = classify(&s, PortId(1), &arp(OP_REQUEST, B, IP_A, IP_B, None), 0);
            assert_eq!(owner.action, Action::Flood(BridgeId(0)));
            for f in [
                arp(OP_REQUEST, A, Ipv4Addr::UNSPECIFIED, IP_B, None),
                arp(OP_REQUEST, A, IP_B, IP_B, None),
                solicit(A, Ipv6Addr::UNSPECIFIED, v6(2), false, None),
            ] {
                assert_eq!(classify(&s, PortId(0), &f, 1).action, Action::Flood(BridgeId(0)));
            }
        }

        #[test]
        fn bindings_are_gleaned_on_local_ports_only() {
            let s = snap();
            let neigh = &s.bridge(BridgeId(0)).unwrap().neigh;
            classify(&s, PortId(0), &arp(OP_REPLY, A, IP_A, IP_B, None), 0);
            assert_eq!(neigh.lookup(IP_A.into(), Vid(10)), Some((A, Source::Learned)));
            classify(&s, PortId(0), &solicit(A, v6(1), v6(2), true, None), 0);
            assert_eq!(neigh.lookup(v6(1).into(), Vid(10)), Some((A, Source::Learned)));
            // A dry run tells, and changes nothing.
            let f = arp(OP_REQUEST, B, IP_B, IP_A, None);
            assert_eq!(dry_run(&s, PortId(1), NO_REMOTE, &f, 0).glean, Some(Glean::New));
            assert_eq!(neigh.lookup(IP_B.into(), Vid(10)), None);
            // Now B may be answered for; A's request for it is.
            classify(&s, PortId(1), &f, 0);
            assert_eq!(
                classify(&s, PortId(0), &arp(OP_REQUEST, A, IP_A, IP_B, None), 0).action,
                Action::Answer(Proto::Arp)
            );
            // A static binding is not overridden by what is seen.
            neigh.add_static(IP_A.into(), Vid(10), B, 0);
            assert_eq!(classify(&s, PortId(0), &arp(OP_REPLY, A, IP_A, IP_B, None), 1).glean, Some(Glean::Static));
            assert_eq!(neigh.lookup(IP_A.into(), Vid(10)), Some((B, Source::Static)));
        }

        #[test]
        fn nothing_is_gleaned_through_a_tunnel() {
            use crate::snapshot::{PortKind, Tunnel};
            let tunnel = Tunnel {
                vni: 42,
                local: "198.18.1.1".parse().unwrap(),
                dst_port: 4789,
                uplink: PortId(2),
                max_inner_frame: 1514,
                remotes: vec![],
            };
            let ports = vec![
                crate::testing::port(0, VlanMode::Access(Vid(10)), PortKind::Plain),
                crate::testing::port(1, VlanMode::Access(Vid(10)), PortKind::Vxlan(Arc::new(tunnel))),
                crate::testing::port(2, VlanMode::Access(Vid(1)), PortKind::Uplink),
            ];
            let s = crate::testing::world(Arc::new(Fdb::new(64)), 1, ports, vec![]);
            let v = classify(&s, PortId(1), &arp(OP_REQUEST, A, IP_A, IP_B, None), 0);
            assert_eq!((v.glean, v.action), (None, Action::Flood(BridgeId(0))));
            assert_eq!(s.bridge(BridgeId(0)).unwrap().neigh.lookup(IP_A.into(), Vid(10)), None);
        }
    }

    proptest! {
        /// Any bytes on any port: a verdict, never a panic; unicast never
        /// returns to the ingress port and always stays in the frame's VLAN.
        #[test]
        fn any_bytes_any_port(bytes in proptest::collection::vec(any::<u8>(), 0..200), p in 0u16..6) {
            let s = snap();
            let v = classify(&s, PortId(p), &bytes, 0);
            if let Action::Unicast(out) = v.action {
                prop_assert_ne!(out, PortId(p));
                prop_assert!(s.port(out).unwrap().vlan.carries(v.vid));
            }
        }
    }
}
