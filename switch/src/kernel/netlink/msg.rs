//! Netlink messages: the fixed kernel headers, attributes, building
//! requests and parsing replies. #[repr(C)] documents the kernel layout;
//! the bytes are written and read field by field, in host byte order, with
//! no casts.

use super::*;

/// struct rtmsg (linux/rtnetlink.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct RtMsg {
    pub(super) family: u8,
    pub(super) dst_len: u8,
    pub(super) src_len: u8,
    pub(super) tos: u8,
    pub(super) table: u8,
    pub(super) protocol: u8,
    pub(super) scope: u8,
    pub(super) rtype: u8,
    pub(super) flags: u32,
}

/// struct ndmsg (linux/neighbour.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct NdMsg {
    pub(super) family: u8,
    pub(super) pad1: u8,
    pub(super) pad2: u16,
    pub(super) ifindex: i32,
    pub(super) state: u16,
    pub(super) flags: u8,
    pub(super) ntype: u8,
}

/// struct ifaddrmsg (linux/if_addr.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct IfAddrMsg {
    pub(super) family: u8,
    pub(super) prefixlen: u8,
    pub(super) flags: u8,
    pub(super) scope: u8,
    pub(super) index: u32,
}

/// struct ifinfomsg (linux/rtnetlink.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct IfInfoMsg {
    pub(super) family: u8,
    pub(super) pad: u8,
    pub(super) itype: u16,
    pub(super) index: i32,
    pub(super) flags: u32,
    pub(super) change: u32,
}

const _: () = assert!(std::mem::size_of::<RtMsg>() == 12);
const _: () = assert!(std::mem::size_of::<NdMsg>() == 12);
const _: () = assert!(std::mem::size_of::<IfAddrMsg>() == 8);
const _: () = assert!(std::mem::size_of::<IfInfoMsg>() == 16);

/// Reads `N` bytes at `at`, or says which header was short.
pub(super) fn take<const N: usize>(b: &[u8], at: usize, what: &str) -> Result<[u8; N], NlError> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| NlError::Malformed(format!("{what} truncated ({} bytes)", b.len())))
}

pub(super) fn u16_at(b: &[u8], at: usize, what: &str) -> Result<u16, NlError> {
    take::<2>(b, at, what).map(u16::from_ne_bytes)
}

pub(super) fn u32_at(b: &[u8], at: usize, what: &str) -> Result<u32, NlError> {
    take::<4>(b, at, what).map(u32::from_ne_bytes)
}

impl RtMsg {
    pub(super) const LEN: usize = 12;
    pub(super) fn bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0; Self::LEN];
        b[..8].copy_from_slice(&[
            self.family,
            self.dst_len,
            self.src_len,
            self.tos,
            self.table,
            self.protocol,
            self.scope,
            self.rtype,
        ]);
        b[8..].copy_from_slice(&self.flags.to_ne_bytes());
        b
    }
    pub(super) fn parse(b: &[u8]) -> Result<RtMsg, NlError> {
        let h = take::<8>(b, 0, "rtmsg")?;
        Ok(RtMsg {
            family: h[0],
            dst_len: h[1],
            src_len: h[2],
            tos: h[3],
            table: h[4],
            protocol: h[5],
            scope: h[6],
            rtype: h[7],
            flags: u32_at(b, 8, "rtmsg")?,
        })
    }
}

impl NdMsg {
    pub(super) const LEN: usize = 12;
    pub(super) fn bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0; Self::LEN];
        b[0] = self.family;
        b[1] = self.pad1;
        b[2..4].copy_from_slice(&self.pad2.to_ne_bytes());
        b[4..8].copy_from_slice(&self.ifindex.to_ne_bytes());
        b[8..10].copy_from_slice(&self.state.to_ne_bytes());
        b[10] = self.flags;
        b[11] = self.ntype;
        b
    }
    pub(super) fn parse(b: &[u8]) -> Result<NdMsg, NlError> {
        let h = take::<{ Self::LEN }>(b, 0, "ndmsg")?;
        Ok(NdMsg {
            family: h[0],
            pad1: h[1],
            pad2: u16::from_ne_bytes([h[2], h[3]]),
            ifindex: i32::from_ne_bytes([h[4], h[5], h[6], h[7]]),
            state: u16::from_ne_bytes([h[8], h[9]]),
            flags: h[10],
            ntype: h[11],
        })
    }
}

impl IfAddrMsg {
    pub(super) const LEN: usize = 8;
    pub(super) fn bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0; Self::LEN];
        b[..4].copy_from_slice(&[self.family, self.prefixlen, self.flags, self.scope]);
        b[4..].copy_from_slice(&self.index.to_ne_bytes());
        b
    }
    pub(super) fn parse(b: &[u8]) -> Result<IfAddrMsg, NlError> {
        let h = take::<4>(b, 0, "ifaddrmsg")?;
        Ok(IfAddrMsg { family: h[0], prefixlen: h[1], flags: h[2], scope: h[3], index: u32_at(b, 4, "ifaddrmsg")? })
    }
}

impl IfInfoMsg {
    pub(super) const LEN: usize = 16;
    pub(super) fn bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0; Self::LEN];
        b[0] = self.family;
        b[1] = self.pad;
        b[2..4].copy_from_slice(&self.itype.to_ne_bytes());
        b[4..8].copy_from_slice(&self.index.to_ne_bytes());
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b[12..16].copy_from_slice(&self.change.to_ne_bytes());
        b
    }
    pub(super) fn parse(b: &[u8]) -> Result<IfInfoMsg, NlError> {
        let h = take::<4>(b, 0, "ifinfomsg")?;
        Ok(IfInfoMsg {
            family: h[0],
            pad: h[1],
            itype: u16::from_ne_bytes([h[2], h[3]]),
            index: u32_at(b, 4, "ifinfomsg")? as i32,
            flags: u32_at(b, 8, "ifinfomsg")?,
            change: u32_at(b, 12, "ifinfomsg")?,
        })
    }
}

// ---------------------------------------------------------------------------
// Messages and attributes

pub(super) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink message being built: header, fixed part, attributes.
pub(super) struct MsgBuilder {
    pub(super) buf: Vec<u8>,
}

impl MsgBuilder {
    pub(super) fn new(ty: u16, flags: u16, seq: u32) -> MsgBuilder {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by finish
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it
        MsgBuilder { buf }
    }

    /// Appends a fixed header (rtmsg, ndmsg, ...), padded to 4 bytes.
    pub(super) fn fixed(mut self, b: &[u8]) -> MsgBuilder {
        self.buf.extend_from_slice(b);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// Appends one attribute, padded to 4 bytes.
    pub(super) fn attr(mut self, ty: u16, data: &[u8]) -> MsgBuilder {
        let len = u16::try_from(4 + data.len()).expect("netlink attribute fits in 64 KiB");
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// Appends attribute `ty` holding what `f` appends (attributes, or a
    /// fixed header and attributes). `ty` is written as given: or in
    /// NLA_F_NESTED for a pure nest.
    pub(super) fn nested(self, ty: u16, f: impl FnOnce(MsgBuilder) -> MsgBuilder) -> MsgBuilder {
        let start = self.buf.len();
        let mut b = f(self.attr(ty, &[]));
        let len = u16::try_from(b.buf.len() - start).expect("netlink attribute fits in 64 KiB");
        b.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        b
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// One received netlink message.
#[derive(Debug)]
pub(super) struct NlMsg<'a> {
    pub(super) ty: u16,
    pub(super) flags: u16,
    pub(super) seq: u32,
    pub(super) payload: &'a [u8],
}

/// The messages of one datagram; yields an error (then stops) at the first
/// header that does not fit.
pub(super) struct Messages<'a> {
    pub(super) rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<NlMsg<'a>, NlError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let b = self.rest;
        let parsed = (|| {
            let len = u32_at(b, 0, "nlmsghdr")? as usize;
            let ty = u16_at(b, 4, "nlmsghdr")?;
            let flags = u16_at(b, 6, "nlmsghdr")?;
            let seq = u32_at(b, 8, "nlmsghdr")?;
            if len < NLMSG_HDRLEN || len > b.len() {
                return Err(NlError::Malformed(format!("message length {len} with {} bytes left", b.len())));
            }
            Ok((NlMsg { ty, flags, seq, payload: &b[NLMSG_HDRLEN..len] }, len))
        })();
        match parsed {
            Ok((m, len)) => {
                self.rest = b.get(align4(len)..).unwrap_or(&[]);
                Some(Ok(m))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

pub(super) fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { rest: buf }
}

/// The attributes after a fixed header; yields (type without flag bits,
/// payload), or an error (then stops) at the first one that does not fit.
pub(super) struct Attrs<'a> {
    pub(super) rest: &'a [u8],
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), NlError>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.rest;
        if b.is_empty() {
            return None;
        }
        let hdr = u16_at(b, 0, "attribute").and_then(|len| Ok((len as usize, u16_at(b, 2, "attribute")?)));
        match hdr {
            Ok((len, ty)) if len >= 4 && len <= b.len() => {
                self.rest = b.get(align4(len)..).unwrap_or(&[]);
                Some(Ok((ty & NLA_TYPE_MASK, &b[4..len])))
            }
            Ok((len, ty)) => {
                self.rest = &[];
                Some(Err(NlError::Malformed(format!("attribute {ty} of length {len} with {} bytes left", b.len()))))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// The attributes of `payload` after a fixed header of `fixed` bytes.
pub(super) fn attrs(payload: &[u8], fixed: usize) -> Attrs<'_> {
    Attrs { rest: payload.get(align4(fixed)..).unwrap_or(&[]) }
}

pub(super) fn ip_from(family: u8, data: &[u8], what: &str) -> Result<IpAddr, NlError> {
    match (i32::from(family), data.len()) {
        (libc::AF_INET, 4) => Ok(IpAddr::V4(Ipv4Addr::new(data[0], data[1], data[2], data[3]))),
        (libc::AF_INET6, 16) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(data);
            Ok(IpAddr::V6(Ipv6Addr::from(o)))
        }
        (f, n) => Err(NlError::Malformed(format!("{what}: {n}-byte address in family {f}"))),
    }
}

pub(super) fn u32_attr(data: &[u8], what: &str) -> Result<u32, NlError> {
    match data.try_into() {
        Ok(b) => Ok(u32::from_ne_bytes(b)),
        Err(_) => Err(NlError::Malformed(format!("{what} of {} bytes", data.len()))),
    }
}

/// An NLMSG_ERROR payload: 0 for an ack, or a negative errno, plus the
/// kernel's extended-ack message if any.
pub(super) fn parse_error(flags: u16, payload: &[u8]) -> Result<(i32, Option<String>), NlError> {
    let code = u32_at(payload, 0, "nlmsgerr")? as i32;
    let mut msg = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        // After the error code comes the request's header, and its payload
        // unless the kernel capped it.
        let echoed = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            (u32_at(payload, 4, "nlmsgerr")? as usize).max(NLMSG_HDRLEN)
        };
        let start = 4usize.saturating_add(align4(echoed));
        if let Some(tlvs) = payload.get(start..) {
            for a in (Attrs { rest: tlvs }) {
                let (ty, data) = a?;
                if ty == NLMSGERR_ATTR_MSG {
                    let text = data.split(|&c| c == 0).next().unwrap_or(&[]);
                    let s: String = String::from_utf8_lossy(text).chars().filter(|c| !c.is_control()).collect();
                    msg = Some(s);
                }
            }
        }
    }
    Ok((code, msg))
}

/// What a route reply says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct RouteReply {
    pub(super) rtype: u8,
    pub(super) dst: Option<IpAddr>,
    pub(super) oif: Option<u32>,
    pub(super) gateway: Option<IpAddr>,
    pub(super) prefsrc: Option<IpAddr>,
}

pub(super) fn parse_route(payload: &[u8]) -> Result<RouteReply, NlError> {
    let rt = RtMsg::parse(payload)?;
    let mut r = RouteReply { rtype: rt.rtype, ..RouteReply::default() };
    for a in attrs(payload, RtMsg::LEN) {
        let (ty, data) = a?;
        match ty {
            RTA_DST => r.dst = Some(ip_from(rt.family, data, "RTA_DST")?),
            RTA_OIF => r.oif = Some(u32_attr(data, "RTA_OIF")?),
            RTA_GATEWAY => r.gateway = Some(ip_from(rt.family, data, "RTA_GATEWAY")?),
            RTA_PREFSRC => r.prefsrc = Some(ip_from(rt.family, data, "RTA_PREFSRC")?),
            // struct rtvia: a u16 family, then the address (IPv4 via IPv6).
            RTA_VIA => {
                let fam = u16_at(data, 0, "RTA_VIA")?;
                let fam = u8::try_from(fam).map_err(|_| NlError::Malformed(format!("RTA_VIA family {fam}")))?;
                r.gateway = Some(ip_from(fam, &data[2..], "RTA_VIA")?);
            }
            _ => {}
        }
    }
    Ok(r)
}

/// What a neighbour reply says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct NeighReply {
    pub(super) ifindex: i32,
    pub(super) state: u16,
    pub(super) dst: Option<IpAddr>,
    pub(super) lladdr: Option<Vec<u8>>,
}

pub(super) fn parse_neigh(payload: &[u8]) -> Result<NeighReply, NlError> {
    let nd = NdMsg::parse(payload)?;
    let mut n = NeighReply { ifindex: nd.ifindex, state: nd.state, ..NeighReply::default() };
    for a in attrs(payload, NdMsg::LEN) {
        let (ty, data) = a?;
        match ty {
            NDA_DST => n.dst = Some(ip_from(nd.family, data, "NDA_DST")?),
            NDA_LLADDR => n.lladdr = Some(data.to_vec()),
            _ => {}
        }
    }
    Ok(n)
}

/// The MAC of a neighbour entry in `state`, if that state may be used.
pub(super) fn usable_mac(state: u16, lladdr: Option<&[u8]>) -> Option<MacAddr> {
    if state & NUD_USABLE == 0 || state & (NUD_INCOMPLETE | NUD_FAILED) != 0 {
        return None;
    }
    match lladdr? {
        &[a, b, c, d, e, f] => Some(MacAddr([a, b, c, d, e, f])),
        _ => None,
    }
}

/// What a link reply says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct LinkReply {
    pub(super) index: u32,
    pub(super) name: String,
    pub(super) mtu: Option<u32>,
    pub(super) addr: Option<Vec<u8>>,
    /// IFLA_LINK: the index of the link this one is tied to (a veth's peer).
    pub(super) link: Option<u32>,
    /// IFLA_LINK_NETNSID: the namespace of that link, when not ours.
    pub(super) link_netnsid: Option<i32>,
    /// IFLA_INFO_KIND inside IFLA_LINKINFO ("veth", "vxlan", ...).
    pub(super) kind: Option<String>,
    /// ifi_flags (IFF_UP, ...).
    pub(super) flags: u32,
    /// IFLA_NUM_RX_QUEUES.
    pub(super) rx_queues: Option<u32>,
    /// IFLA_NUM_TX_QUEUES.
    pub(super) tx_queues: Option<u32>,
}

/// The text of a NUL-terminated string attribute.
fn str_attr(data: &[u8]) -> String {
    let s = data.split(|&c| c == 0).next().unwrap_or(&[]);
    String::from_utf8_lossy(s).into_owned()
}

pub(super) fn parse_link(payload: &[u8]) -> Result<LinkReply, NlError> {
    let ifi = IfInfoMsg::parse(payload)?;
    let mut l = LinkReply { index: ifi.index as u32, flags: ifi.flags, ..LinkReply::default() };
    for a in attrs(payload, IfInfoMsg::LEN) {
        let (ty, data) = a?;
        match ty {
            IFLA_IFNAME => l.name = str_attr(data),
            IFLA_MTU => l.mtu = Some(u32_attr(data, "IFLA_MTU")?),
            IFLA_ADDRESS => l.addr = Some(data.to_vec()),
            IFLA_LINK => l.link = Some(u32_attr(data, "IFLA_LINK")?),
            IFLA_LINK_NETNSID => l.link_netnsid = Some(u32_attr(data, "IFLA_LINK_NETNSID")? as i32),
            IFLA_NUM_RX_QUEUES => l.rx_queues = Some(u32_attr(data, "IFLA_NUM_RX_QUEUES")?),
            IFLA_NUM_TX_QUEUES => l.tx_queues = Some(u32_attr(data, "IFLA_NUM_TX_QUEUES")?),
            IFLA_LINKINFO => {
                for a in (Attrs { rest: data }) {
                    let (ty, data) = a?;
                    if ty == IFLA_INFO_KIND {
                        l.kind = Some(str_attr(data));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(l)
}

/// The veth peer a link reply describes; `None` if the link is not a veth.
///
/// The kernel leaves IFLA_LINK out when the peer's index equals the link's
/// own (possible only across namespaces), so a veth without it has its peer
/// at its own index.
pub(super) fn peer_of(l: &LinkReply) -> Result<Option<VethPeer>, String> {
    if l.kind.as_deref() != Some("veth") {
        return Ok(None);
    }
    let ifindex = l.link.unwrap_or(l.index);
    if ifindex == 0 {
        return Err("the veth has no peer (being deleted?)".into());
    }
    let nsid = match l.link_netnsid {
        None => None,
        Some(id) if id >= 0 => Some(id),
        Some(id) => return Err(format!("the peer's network namespace has no id ({id})")),
    };
    if nsid.is_none() && ifindex == l.index {
        return Err(format!("the veth reports itself (index {ifindex}) as its peer"));
    }
    Ok(Some(VethPeer { ifindex, nsid }))
}

/// NETNSA_NSID of an RTM_NEWNSID reply; `None` for NETNSA_NSID_NOT_ASSIGNED.
pub(super) fn parse_nsid(payload: &[u8]) -> Result<Option<i32>, NlError> {
    take::<RTGENMSG_LEN>(payload, 0, "rtgenmsg")?;
    let mut nsid = None;
    for a in attrs(payload, RTGENMSG_LEN) {
        let (ty, data) = a?;
        if ty == NETNSA_NSID {
            nsid = Some(u32_attr(data, "NETNSA_NSID")? as i32);
        }
    }
    match nsid {
        Some(NETNSA_NSID_NOT_ASSIGNED) => Ok(None),
        Some(id) if id >= 0 => Ok(Some(id)),
        Some(id) => Err(NlError::Malformed(format!("NETNSA_NSID {id}"))),
        None => Err(NlError::Malformed("RTM_NEWNSID without NETNSA_NSID".into())),
    }
}

/// The interface index and address of an address reply: IFA_LOCAL when
/// present (on point-to-point links IFA_ADDRESS is the peer), else IFA_ADDRESS.
pub(super) fn parse_addr(payload: &[u8]) -> Result<(u32, Option<IpAddr>), NlError> {
    let ifa = IfAddrMsg::parse(payload)?;
    let (mut local, mut address) = (None, None);
    for a in attrs(payload, IfAddrMsg::LEN) {
        let (ty, data) = a?;
        match ty {
            IFA_LOCAL => local = Some(ip_from(ifa.family, data, "IFA_LOCAL")?),
            IFA_ADDRESS => address = Some(ip_from(ifa.family, data, "IFA_ADDRESS")?),
            _ => {}
        }
    }
    Ok((ifa.index, local.or(address)))
}
