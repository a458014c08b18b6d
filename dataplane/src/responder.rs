//! ARP and ND seen by the switch: what a frame teaches about IP ↔ MAC
//! bindings, whether it is a request rvs may answer, and the answer built
//! in place, in the request's own buffer.
//!
//! Pure and allocation-free; the pipeline decides with [`inspect`], the
//! polling loop writes the reply with [`answer`].

use crate::ids::Vid;
use crate::neigh::NeighTable;
use crate::wire::arp::{self, ArpPacket, ArpRepr};
use crate::wire::ethernet::{EtherType, MacAddr};
use crate::wire::icmpv6::{self, NdMessage, NdRepr};
use crate::wire::ip::{l3_of, Ipv6Header, Ipv6Repr, IPV6_LEN};
use std::net::{IpAddr, Ipv6Addr};

/// Which protocol a request or an answer is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// ARP (IPv4).
    Arp,
    /// Neighbour discovery (IPv6).
    Nd,
}

impl Proto {
    /// Its name in traces: `arp` or `nd`.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Arp => "arp",
            Proto::Nd => "nd",
        }
    }
}

/// What an ARP or ND frame says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighMsg {
    /// ARP or ND.
    pub proto: Proto,
    /// A binding it shows: an ARP sender, an NS source with its link-layer
    /// address, an NA target with its link-layer address.
    pub binding: Option<(IpAddr, MacAddr)>,
    /// The address asked for, if it is a request rvs may answer (not an
    /// announcement, probe or duplicate address detection).
    pub target: Option<IpAddr>,
}

/// True if `frame` is ARP or an NS/NA: a frame the flow cache must not
/// decide, since what happens to it depends on more than its addresses.
#[inline]
pub fn is_neigh(frame: &[u8]) -> bool {
    match l3_of(frame) {
        Some((EtherType::ARP, _)) => true,
        Some((EtherType::IPV6, l3)) => {
            frame.get(l3 + 6) == Some(&icmpv6::PROTO_ICMPV6)
                && matches!(frame.get(l3 + IPV6_LEN), Some(&icmpv6::NEIGHBOR_SOLICIT | &icmpv6::NEIGHBOR_ADVERT))
        }
        _ => false,
    }
}

/// What `frame` (an Ethernet frame, maybe tagged) says about neighbours,
/// if it is ARP for IPv4 or a well-formed NS/NA; `None` for anything else.
#[inline]
pub fn inspect(frame: &[u8]) -> Option<NeighMsg> {
    let (ethertype, l3) = l3_of(frame)?;
    match ethertype {
        EtherType::ARP => inspect_arp(frame.get(l3..)?),
        EtherType::IPV6 => inspect_nd(frame.get(l3..)?),
        _ => None,
    }
}

fn inspect_arp(l3: &[u8]) -> Option<NeighMsg> {
    let a = ArpRepr::parse(&ArpPacket::new_checked(l3)?);
    if a.op != arp::OP_REQUEST && a.op != arp::OP_REPLY {
        return None;
    }
    let binding = (!a.sender_ip.is_unspecified() && usable(a.sender_mac)).then_some((a.sender_ip.into(), a.sender_mac));
    let target = (a.op == arp::OP_REQUEST && !a.is_announcement()).then_some(a.target_ip.into());
    Some(NeighMsg { proto: Proto::Arp, binding, target })
}

fn inspect_nd(l3: &[u8]) -> Option<NeighMsg> {
    let ip = Ipv6Repr::parse(&Ipv6Header::new_checked(l3)?);
    // RFC 4861 7.1.1: anything else did not come from this link.
    if ip.next_header != icmpv6::PROTO_ICMPV6 || ip.hop_limit != icmpv6::ND_HOP_LIMIT {
        return None;
    }
    let body = l3.get(IPV6_LEN..IPV6_LEN + ip.payload_len)?;
    let nd = NdRepr::parse(&NdMessage::new_checked(body)?);
    if nd.target.is_multicast() {
        return None;
    }
    let lladdr = nd.lladdr.filter(|m| usable(*m));
    let (binding, target) = if nd.msg_type == icmpv6::NEIGHBOR_SOLICIT {
        // An NS from :: is duplicate address detection: its sender has no
        // address yet, and only the owner of the target may answer it.
        let dad = ip.src.is_unspecified();
        (lladdr.filter(|_| !dad).map(|m| (ip.src.into(), m)), (!dad).then_some(nd.target.into()))
    } else {
        (lladdr.map(|m| (nd.target.into(), m)), None)
    };
    Some(NeighMsg { proto: Proto::Nd, binding, target })
}

fn usable(mac: MacAddr) -> bool {
    !mac.is_multicast() && !mac.is_zero()
}

/// Turns the request in `buf[..len]` into its answer, in place, if `table`
/// binds its target in VLAN `vid`: an ARP reply, or a solicited neighbour
/// advertisement with the target's link-layer address (it may be up to 8
/// bytes longer than the solicitation, so `buf` should have room after
/// the frame). The 802.1Q tag, if any, stays. Returns the answer's
/// length, or `None` (the buffer untouched) if there is nothing to answer.
pub fn answer(buf: &mut [u8], len: usize, table: &NeighTable, vid: Vid) -> Option<usize> {
    let frame = buf.get(..len)?;
    let msg = inspect(frame)?;
    let asker = MacAddr(frame.get(6..12)?.try_into().ok()?);
    let (mac, _) = table.lookup(msg.target?, vid)?;
    if mac == asker {
        return None;
    }
    let (_, l3) = l3_of(frame)?;
    match msg.proto {
        Proto::Arp => answer_arp(buf, len, l3, mac),
        Proto::Nd => answer_nd(buf, l3, mac),
    }
}

/// Swaps the Ethernet addresses: back to the asker, from `mac`.
fn reply_ethernet(buf: &mut [u8], mac: MacAddr) {
    buf.copy_within(6..12, 0);
    buf[6..12].copy_from_slice(&mac.0);
}

fn answer_arp(buf: &mut [u8], len: usize, l3: usize, mac: MacAddr) -> Option<usize> {
    let req = ArpRepr::parse(&ArpPacket::new_checked(buf.get(l3..len)?)?);
    let reply = ArpRepr {
        op: arp::OP_REPLY,
        sender_mac: mac,
        sender_ip: req.target_ip,
        target_mac: req.sender_mac,
        target_ip: req.sender_ip,
    };
    reply.emit(buf.get_mut(l3..l3 + arp::LEN)?);
    reply_ethernet(buf, mac);
    Some(len)
}

fn answer_nd(buf: &mut [u8], l3: usize, mac: MacAddr) -> Option<usize> {
    let ip = Ipv6Repr::parse(&Ipv6Header::new_checked(buf.get(l3..)?)?);
    let ns = NdRepr::parse(&NdMessage::new_checked(buf.get(l3 + IPV6_LEN..l3 + IPV6_LEN + ip.payload_len)?)?);
    let na = NdRepr {
        msg_type: icmpv6::NEIGHBOR_ADVERT,
        flags: icmpv6::FLAG_SOLICITED | icmpv6::FLAG_OVERRIDE,
        target: ns.target,
        lladdr: Some(mac),
    };
    let end = l3 + IPV6_LEN + na.len();
    let frame = buf.get_mut(..end)?;
    let (src, dst): (Ipv6Addr, Ipv6Addr) = (ns.target, ip.src);
    let hdr = Ipv6Repr {
        src,
        dst,
        next_header: icmpv6::PROTO_ICMPV6,
        hop_limit: icmpv6::ND_HOP_LIMIT,
        payload_len: na.len(),
    };
    hdr.emit(&mut frame[l3..]);
    na.emit(&mut frame[l3 + IPV6_LEN..], src, dst);
    reply_ethernet(frame, mac);
    Some(end)
}

#[cfg(test)]
mod tests;
