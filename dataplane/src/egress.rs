//! Where a decided frame goes and what happens to it on the way out: the
//! one definition that the polling loop acts on and `rvsctl trace` reports,
//! so the two cannot drift apart.
//!
//! A verdict names its outputs ([`outputs`]); for each, [`port_plan`] checks
//! that the port is up and carries the VLAN and picks the tag edit
//! ([`edit_tag`] applies it); a tunnel port then checks the encapsulated
//! size and picks its remotes ([`tunnel_plan`]), and each remote needs its
//! outer headers ([`remote_outer`]). Every refusal is the drop reason the
//! polling loop counts.

use std::ops::Range;

use crate::fdb::NO_REMOTE;
use crate::ids::{PortId, Vid};
use crate::pipeline::{self, Action, TagEdit, Verdict};
use crate::snapshot::{PortInfo, Snapshot, Tunnel};
use crate::stats::DropReason;
use crate::wire::vlan;
use crate::wire::vxlan::OuterTemplate;

/// How a frame leaves one port.
#[derive(Clone, Copy, Debug)]
pub struct PortPlan<'a> {
    /// The port.
    pub port: &'a PortInfo,
    /// What its 802.1Q tag becomes.
    pub edit: TagEdit,
}

/// The ports (each with the remote for a tunnel, or `NO_REMOTE` for all of
/// them) that a frame classified as `v` from `ingress` goes to: the one
/// unicast port, or every member of the flood set but the ingress port (an
/// answer goes back to the ingress port).
pub fn outputs<'a>(snap: &'a Snapshot, v: &Verdict, ingress: PortId) -> impl Iterator<Item = (PortId, u16)> + 'a {
    let (unicast, flood) = match v.action {
        Action::Unicast(o) => (Some((o, v.remote)), None),
        Action::Flood(b) => (None, snap.bridge(b).map(|b| b.flood_set(v.vid))),
        Action::Answer(_) => (Some((ingress, v.remote)), None),
        Action::Drop(_) => (None, None),
    };
    let flooded = flood.into_iter().flatten().filter(move |m| floods_to(m.port, ingress)).map(|m| (m.port, NO_REMOTE));
    unicast.into_iter().chain(flooded)
}

/// A flood copy goes to `member` unless it is where the frame came in.
#[inline]
pub fn floods_to(member: PortId, ingress: PortId) -> bool {
    member != ingress
}

/// The plan for a frame of VLAN `vid` (`tagged` on arrival) leaving port
/// `out`: refused when the port is gone (`PortDown`) or does not carry the
/// VLAN (`VlanFiltered`).
#[inline]
pub fn port_plan(snap: &Snapshot, out: PortId, vid: Vid, tagged: bool) -> Result<PortPlan<'_>, DropReason> {
    let port = snap.port(out).ok_or(DropReason::PortDown)?;
    if !port.vlan.carries(vid) {
        return Err(DropReason::VlanFiltered);
    }
    Ok(PortPlan { port, edit: pipeline::tag_edit(tagged, vid, port.vlan.egress_tagged(vid)) })
}

/// Applies `edit` to the frame at `buf[off..off + len]` (pushing a tag
/// uses the headroom before `off`); returns where the frame now starts and
/// its length, or `None` (`BadVlan`) when it cannot be done.
#[inline]
pub fn edit_tag(buf: &mut [u8], off: usize, len: usize, edit: TagEdit) -> Option<(usize, usize)> {
    match edit {
        TagEdit::Keep => Some((off, len)),
        TagEdit::Push(vid) => Some((vlan::push(buf, off, len, vid)?, len + vlan::TAG_LEN)),
        TagEdit::Pop => Some((vlan::pop(buf, off, len)?, len - vlan::TAG_LEN)),
        TagEdit::Rewrite(vid) => {
            vlan::set_vid(buf.get_mut(off..off + len)?, vid);
            Some((off, len))
        }
    }
}

/// For an inner frame of `inner_len` bytes (tag edit done) sent through
/// tunnel `t` toward `remote` (`NO_REMOTE`: every remote, head-end
/// replication): the indexes of the remotes that get a copy. Refused when
/// the encapsulated frame would not fit the uplink (`TunnelMtu`, never
/// fragmented) or there is nobody to send to (`NoNeighbor`).
#[inline]
pub fn tunnel_plan(t: &Tunnel, inner_len: usize, remote: u16) -> Result<Range<usize>, DropReason> {
    if inner_len > t.max_inner_frame as usize {
        return Err(DropReason::TunnelMtu);
    }
    let targets = match remote {
        NO_REMOTE => 0..t.remotes.len(),
        r if usize::from(r) < t.remotes.len() => usize::from(r)..usize::from(r) + 1,
        _ => 0..0,
    };
    if targets.is_empty() {
        return Err(DropReason::NoNeighbor);
    }
    Ok(targets)
}

/// The outer headers toward remote `r` of `t`, or `NoNeighbor` while its
/// next hop is unresolved (never sent to a wrong MAC).
#[inline]
pub fn remote_outer(t: &Tunnel, r: usize) -> Result<&OuterTemplate, DropReason> {
    t.remotes.get(r).and_then(|x| x.outer.as_ref()).ok_or(DropReason::NoNeighbor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdb::Fdb;
    use crate::ids::BridgeId;
    use crate::snapshot::{Remote, VlanMode, VlanSet};
    use crate::wire::MacAddr;
    use std::sync::Arc;

    fn tunnel(remotes: usize, resolved: bool) -> Tunnel {
        let ip = |i: usize| std::net::IpAddr::from([198, 18, 1, 10 + i as u8]);
        Tunnel {
            vni: 42,
            local: ip(0),
            dst_port: 4789,
            uplink: PortId(9),
            max_inner_frame: 1514,
            remotes: (0..remotes)
                .map(|i| Remote {
                    ip: ip(i + 1),
                    outer: resolved
                        .then(|| OuterTemplate::new(MacAddr([2; 6]), MacAddr([4; 6]), ip(0), ip(i + 1), 4789, 64, 42))
                        .flatten(),
                })
                .collect(),
        }
    }

    /// Ports 0 (access 10), 1 (trunk 10, 20), 2 (access 20) in bridge 0.
    fn snap() -> Snapshot {
        let trunk = VlanMode::Trunk { allowed: [10, 20].map(Vid).into_iter().collect::<VlanSet>(), native: None };
        crate::testing::one_bridge(
            Arc::new(Fdb::new(16)),
            1,
            [VlanMode::Access(Vid(10)), trunk, VlanMode::Access(Vid(20))],
        )
    }

    fn verdict(action: Action, vid: Vid, tagged: bool) -> Verdict {
        Verdict { action, vid, tagged, learn: None, glean: None, remote: NO_REMOTE }
    }

    #[test]
    fn outputs_are_the_unicast_port_or_the_flood_set_less_ingress() {
        let s = snap();
        let out: Vec<_> = outputs(&s, &verdict(Action::Flood(BridgeId(0)), Vid(10), false), PortId(0)).collect();
        assert_eq!(out, vec![(PortId(1), NO_REMOTE)]);
        let out: Vec<_> =
            outputs(&s, &Verdict { remote: 3, ..verdict(Action::Unicast(PortId(2)), Vid(20), false) }, PortId(1))
                .collect();
        assert_eq!(out, vec![(PortId(2), 3)]);
        assert_eq!(outputs(&s, &verdict(Action::Drop(DropReason::Runt), Vid(0), false), PortId(0)).count(), 0);
        assert_eq!(
            outputs(&s, &verdict(Action::Flood(BridgeId(7)), Vid(10), false), PortId(0)).count(),
            0,
            "no such bridge"
        );
    }

    #[test]
    fn port_plans_filter_vlans_and_pick_the_tag_edit() {
        let s = snap();
        assert_eq!(port_plan(&s, PortId(1), Vid(10), false).map(|p| p.edit), Ok(TagEdit::Push(Vid(10))));
        assert_eq!(port_plan(&s, PortId(0), Vid(10), true).map(|p| p.edit), Ok(TagEdit::Pop));
        assert_eq!(port_plan(&s, PortId(1), Vid(20), true).map(|p| p.edit), Ok(TagEdit::Rewrite(Vid(20))));
        assert_eq!(port_plan(&s, PortId(0), Vid(10), false).map(|p| p.edit), Ok(TagEdit::Keep));
        assert_eq!(port_plan(&s, PortId(2), Vid(10), false).map(|p| p.edit), Err(DropReason::VlanFiltered));
        assert_eq!(port_plan(&s, PortId(5), Vid(10), false).map(|p| p.edit), Err(DropReason::PortDown));
    }

    #[test]
    fn tag_edits_move_the_frame_start_and_length() {
        let mut buf = vec![0u8; 4 + 64];
        buf[4 + 12..4 + 14].copy_from_slice(&[0x08, 0x00]);
        let (off, len) = edit_tag(&mut buf, 4, 64, TagEdit::Push(Vid(10))).unwrap();
        assert_eq!((off, len), (0, 68));
        assert_eq!(&buf[12..16], &[0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(edit_tag(&mut buf, 0, 68, TagEdit::Rewrite(Vid(20))), Some((0, 68)));
        assert_eq!(&buf[14..16], &[0x00, 0x14]);
        assert_eq!(edit_tag(&mut buf, 0, 68, TagEdit::Pop), Some((4, 64)));
        assert_eq!(&buf[4 + 12..4 + 14], &[0x08, 0x00]);
        assert_eq!(edit_tag(&mut buf, 0, 64, TagEdit::Push(Vid(10))), None, "no headroom");
    }

    #[test]
    fn tunnel_plans_check_size_then_remotes() {
        let t = tunnel(3, true);
        assert_eq!(tunnel_plan(&t, 1514, NO_REMOTE), Ok(0..3));
        assert_eq!(tunnel_plan(&t, 1514, 1), Ok(1..2));
        assert_eq!(tunnel_plan(&t, 1515, 1), Err(DropReason::TunnelMtu));
        assert_eq!(tunnel_plan(&t, 60, 3), Err(DropReason::NoNeighbor));
        assert_eq!(tunnel_plan(&tunnel(0, true), 60, NO_REMOTE), Err(DropReason::NoNeighbor));
        assert!(remote_outer(&t, 2).is_ok());
        assert_eq!(remote_outer(&tunnel(3, false), 0).err(), Some(DropReason::NoNeighbor));
        assert_eq!(remote_outer(&t, 3).err(), Some(DropReason::NoNeighbor));
    }
}
