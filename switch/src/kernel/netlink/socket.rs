//! The rtnetlink socket: one request and its replies at a time.

use super::*;

/// What a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// One reply message (or an NLMSG_ERROR).
    One,
    /// A multipart dump, up to NLMSG_DONE.
    Dump,
    /// An NLMSG_ERROR carrying 0 (the request had NLM_F_ACK).
    Ack,
}

/// Drives one request/response exchange over received datagrams; separate
/// from the socket so the unit tests can feed it crafted replies.
pub(super) struct Exchange {
    pub(super) seq: u32,
    pub(super) expect: Expect,
    pub(super) done: bool,
}

/// A handler of reply messages: `(nlmsg_type, payload)`.
pub(super) type OnMsg<'a> = dyn FnMut(u16, &[u8]) -> Result<(), NlError> + 'a;

impl Exchange {
    /// Handles one datagram; calls `on_msg(type, payload)` for each reply
    /// message of ours. Sets `done` when the exchange is complete.
    pub(super) fn feed(&mut self, datagram: &[u8], on_msg: &mut OnMsg<'_>) -> Result<(), NlError> {
        for m in messages(datagram) {
            let m = m?;
            if m.seq != self.seq || self.done {
                continue; // not ours (a stale reply), or after the end
            }
            match m.ty {
                NLMSG_NOOP => {}
                NLMSG_ERROR => {
                    let (code, msg) = parse_error(m.flags, m.payload)?;
                    if code < 0 {
                        return Err(NlError::Kernel { errno: code.saturating_neg(), msg });
                    }
                    self.done = true; // an ack
                }
                NLMSG_DONE => {
                    // A dump that failed midway puts a negative errno here.
                    if let Ok(code) = u32_at(m.payload, 0, "NLMSG_DONE") {
                        let code = code as i32;
                        if code < 0 {
                            let (_, msg) = parse_error(m.flags, m.payload).unwrap_or((code, None));
                            return Err(NlError::Kernel { errno: code.saturating_neg(), msg });
                        }
                    }
                    self.done = true;
                }
                NLMSG_OVERRUN => return Err(NlError::Malformed("NLMSG_OVERRUN".into())),
                ty => {
                    on_msg(ty, m.payload)?;
                    if self.expect == Expect::One && m.flags & NLM_F_MULTI == 0 {
                        self.done = true;
                    }
                }
            }
        }
        Ok(())
    }
}

pub(super) fn next_seq() -> u32 {
    static SEQ: AtomicU32 = AtomicU32::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// A NETLINK_ROUTE socket with a receive timeout.
pub(super) struct Socket {
    pub(super) fd: OwnedFd,
    pub(super) buf: Vec<u8>,
}

pub(super) fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` is a live, initialized T of size_of::<T>() bytes for the
    // whole call, and the kernel only reads that many bytes from it.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, (val as *const T).cast(), std::mem::size_of::<T>() as libc::socklen_t)
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Socket {
    pub(super) fn open() -> io::Result<Socket> {
        // SAFETY: socket(2) with constant arguments; the result is checked
        // before it is used.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor we just opened and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval { tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
        setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDTIMEO, &tv)?;
        // Best effort (older kernels lack them): the kernel's error text,
        // errors without the echoed request, strict checking of requests.
        let one: libc::c_int = 1;
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK, NETLINK_GET_STRICT_CHK] {
            let _ = setsockopt(fd.as_raw_fd(), SOL_NETLINK, opt, &one);
        }
        Ok(Socket { fd, buf: vec![0; RECV_BUF] })
    }

    /// Sends `req` (built with sequence number `seq`) and feeds the replies
    /// to `on_msg` until the exchange completes, fails, or times out.
    pub(super) fn exchange(
        &mut self,
        req: &[u8],
        seq: u32,
        expect: Expect,
        mut on_msg: impl FnMut(u16, &[u8]) -> Result<(), NlError>,
    ) -> Result<(), NlError> {
        loop {
            // SAFETY: `req` is a live buffer of req.len() bytes.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
            if n >= 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(NlError::Io(e));
            }
        }
        let mut ex = Exchange { seq, expect, done: false };
        let deadline = Instant::now() + RECV_TIMEOUT;
        while !ex.done {
            if Instant::now() > deadline {
                return Err(NlError::Timeout);
            }
            // SAFETY: `self.buf` is a live, writable buffer of buf.len()
            // bytes; with MSG_TRUNC the kernel still writes at most that many
            // and returns the datagram's full length.
            let n = unsafe {
                libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), libc::MSG_TRUNC)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Err(NlError::Timeout),
                    _ => return Err(NlError::Io(e)),
                }
            }
            let n = n as usize;
            if n > self.buf.len() {
                return Err(NlError::Malformed(format!(
                    "datagram of {n} bytes exceeds the {} byte buffer",
                    self.buf.len()
                )));
            }
            ex.feed(&self.buf[..n], &mut on_msg)?;
        }
        Ok(())
    }

    pub(super) fn get_route(&mut self, dst: IpAddr) -> Result<RouteReply, NlError> {
        let seq = next_seq();
        let rt = RtMsg { family: family_of(dst), dst_len: if dst.is_ipv4() { 32 } else { 128 }, ..RtMsg::default() };
        let req = MsgBuilder::new(RTM_GETROUTE, NLM_F_REQUEST, seq)
            .fixed(&rt.bytes())
            .attr(RTA_DST, &addr_bytes(&dst))
            .finish();
        let mut out = None;
        self.exchange(&req, seq, Expect::One, |ty, p| {
            if ty == RTM_NEWROUTE {
                out = Some(parse_route(p)?);
            }
            Ok(())
        })?;
        out.ok_or_else(|| NlError::Malformed("no RTM_NEWROUTE in the reply".into()))
    }

    pub(super) fn get_link(&mut self, key: LinkKey<'_>) -> Result<LinkReply, NlError> {
        let seq = next_seq();
        let (index, name) = match key {
            LinkKey::Index(i) => {
                (i32::try_from(i).map_err(|_| NlError::Malformed(format!("interface index {i}")))?, None)
            }
            LinkKey::Name(n) => (0, Some(n)),
        };
        let ifi = IfInfoMsg { index, ..IfInfoMsg::default() };
        let mut b = MsgBuilder::new(RTM_GETLINK, NLM_F_REQUEST, seq).fixed(&ifi.bytes());
        if let Some(n) = name {
            let mut z = n.as_bytes().to_vec();
            z.push(0);
            b = b.attr(IFLA_IFNAME, &z);
        }
        let mut out = None;
        self.exchange(&b.finish(), seq, Expect::One, |ty, p| {
            if ty == RTM_NEWLINK {
                out = Some(parse_link(p)?);
            }
            Ok(())
        })?;
        out.ok_or_else(|| NlError::Malformed("no RTM_NEWLINK in the reply".into()))
    }

    /// RTM_GETNSID of the namespace open at `fd`: see [`netns_id`].
    pub(super) fn get_nsid(&mut self, fd: RawFd) -> Result<Option<i32>, NlError> {
        let seq = next_seq();
        let fd = u32::try_from(fd).map_err(|_| NlError::Malformed(format!("descriptor {fd}")))?;
        let req = MsgBuilder::new(RTM_GETNSID, NLM_F_REQUEST, seq)
            .fixed(&[libc::AF_UNSPEC as u8])
            .attr(NETNSA_FD, &fd.to_ne_bytes())
            .finish();
        let mut out = None;
        self.exchange(&req, seq, Expect::One, |ty, p| {
            if ty == RTM_NEWNSID {
                out = Some(parse_nsid(p)?);
            }
            Ok(())
        })?;
        out.ok_or_else(|| NlError::Malformed("no RTM_NEWNSID in the reply".into()))
    }

    /// The neighbour entry of `addr` on `ifindex`; `None` if there is none.
    pub(super) fn get_neigh(&mut self, ifindex: u32, addr: IpAddr) -> Result<Option<NeighReply>, NlError> {
        let seq = next_seq();
        let ifindex_i = i32::try_from(ifindex).map_err(|_| NlError::Malformed(format!("interface index {ifindex}")))?;
        let nd = NdMsg { family: family_of(addr), ifindex: ifindex_i, ..NdMsg::default() };
        let req = MsgBuilder::new(RTM_GETNEIGH, NLM_F_REQUEST, seq)
            .fixed(&nd.bytes())
            .attr(NDA_DST, &addr_bytes(&addr))
            .finish();
        let mut out = None;
        let got = self.exchange(&req, seq, Expect::One, |ty, p| {
            if ty == RTM_NEWNEIGH {
                out = Some(parse_neigh(p)?);
            }
            Ok(())
        });
        match got {
            Ok(()) => Ok(out),
            Err(NlError::Kernel { errno: libc::ENOENT, .. }) => Ok(None),
            // Kernels before 5.0 have no single-entry neighbour get: dump.
            Err(NlError::Kernel { errno: libc::EOPNOTSUPP | libc::EINVAL, .. }) => self.dump_neigh(ifindex_i, addr),
            Err(e) => Err(e),
        }
    }

    pub(super) fn dump_neigh(&mut self, ifindex: i32, addr: IpAddr) -> Result<Option<NeighReply>, NlError> {
        let seq = next_seq();
        let nd = NdMsg { family: family_of(addr), ifindex, ..NdMsg::default() };
        let req = MsgBuilder::new(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, seq).fixed(&nd.bytes()).finish();
        let mut out = None;
        self.exchange(&req, seq, Expect::Dump, |ty, p| {
            if ty == RTM_NEWNEIGH {
                let n = parse_neigh(p)?;
                if n.ifindex == ifindex && n.dst == Some(addr) {
                    out = Some(n);
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// RTM_NEWNEIGH with NTF_USE: see [`trigger_resolution_detailed`].
    pub(super) fn neigh_use(&mut self, ifindex: u32, addr: IpAddr) -> Result<(), NlError> {
        let seq = next_seq();
        let nd = NdMsg {
            family: family_of(addr),
            ifindex: ifindex as i32, // checked <= i32::MAX by the caller
            state: NUD_NONE,
            flags: NTF_USE,
            ..NdMsg::default()
        };
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
        let req =
            MsgBuilder::new(RTM_NEWNEIGH, flags, seq).fixed(&nd.bytes()).attr(NDA_DST, &addr_bytes(&addr)).finish();
        self.exchange(&req, seq, Expect::Ack, |_, _| Ok(()))
    }

    /// RTM_NEWLINK of a veth pair: see [`create_veth`].
    pub(super) fn new_veth(&mut self, spec: &VethSpec<'_>) -> Result<(), NlError> {
        let seq = next_seq();
        let up = IfInfoMsg { flags: IFF_UP, change: IFF_UP, ..IfInfoMsg::default() };
        let common = |b: MsgBuilder, name: &str| {
            let mut z = name.as_bytes().to_vec();
            z.push(0);
            b.attr(IFLA_IFNAME, &z)
                .attr(IFLA_MTU, &spec.mtu.to_ne_bytes())
                .attr(IFLA_NUM_TX_QUEUES, &spec.queues.to_ne_bytes())
                .attr(IFLA_NUM_RX_QUEUES, &spec.queues.to_ne_bytes())
        };
        // The peer stays down: the kernel opens it, when asked to, before
        // linking it to its other end, and veth_open then fails (ENOTCONN).
        let peer = |b: MsgBuilder| {
            let b = common(b.fixed(&IfInfoMsg::default().bytes()), spec.peer);
            match spec.peer_netns {
                Some(fd) => b.attr(IFLA_NET_NS_FD, &(fd.as_raw_fd() as u32).to_ne_bytes()),
                None => b,
            }
        };
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        let req = common(MsgBuilder::new(RTM_NEWLINK, flags, seq).fixed(&up.bytes()), spec.name)
            .nested(NLA_F_NESTED | IFLA_LINKINFO, |b| {
                b.attr(IFLA_INFO_KIND, b"veth\0")
                    .nested(NLA_F_NESTED | IFLA_INFO_DATA, |b| b.nested(VETH_INFO_PEER, peer))
            })
            .finish();
        self.exchange(&req, seq, Expect::Ack, |_, _| Ok(()))
    }

    /// RTM_NEWLINK of interface `ifindex`, setting IFF_UP or clearing it.
    pub(super) fn set_up(&mut self, ifindex: u32, up: bool) -> Result<(), NlError> {
        let seq = next_seq();
        let index = i32::try_from(ifindex).map_err(|_| NlError::Malformed(format!("interface index {ifindex}")))?;
        let ifi = IfInfoMsg { index, flags: if up { IFF_UP } else { 0 }, change: IFF_UP, ..IfInfoMsg::default() };
        let req = MsgBuilder::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq).fixed(&ifi.bytes()).finish();
        self.exchange(&req, seq, Expect::Ack, |_, _| Ok(()))
    }

    /// RTM_DELLINK of interface `ifindex`.
    pub(super) fn del_link(&mut self, ifindex: u32) -> Result<(), NlError> {
        let seq = next_seq();
        let index = i32::try_from(ifindex).map_err(|_| NlError::Malformed(format!("interface index {ifindex}")))?;
        let ifi = IfInfoMsg { index, ..IfInfoMsg::default() };
        let req = MsgBuilder::new(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq).fixed(&ifi.bytes()).finish();
        self.exchange(&req, seq, Expect::Ack, |_, _| Ok(()))
    }

    pub(super) fn get_addrs(&mut self, ifindex: u32) -> Result<Vec<IpAddr>, NlError> {
        Ok(self.get_addr_prefixes(ifindex)?.into_iter().map(|(a, _)| a).collect())
    }
}

impl Socket {
    /// Addresses of `ifindex` with their prefix lengths: see [`link_addrs`].
    pub(super) fn get_addr_prefixes(&mut self, ifindex: u32) -> Result<Vec<(IpAddr, u8)>, NlError> {
        Ok(self.dump_addrs(Some(ifindex))?.into_iter().map(|(_, a, p)| (a, p)).collect())
    }

    /// (interface, address, prefix length) of every address, or of
    /// `ifindex`'s only.
    pub(super) fn dump_addrs(&mut self, ifindex: Option<u32>) -> Result<Vec<(u32, IpAddr, u8)>, NlError> {
        let seq = next_seq();
        // With strict checking the kernel filters on ifa_index (0: none);
        // we filter too.
        let ifa = IfAddrMsg { index: ifindex.unwrap_or(0), ..IfAddrMsg::default() };
        let req = MsgBuilder::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq).fixed(&ifa.bytes()).finish();
        let mut out = Vec::new();
        self.exchange(&req, seq, Expect::Dump, |ty, p| {
            if ty == RTM_NEWADDR {
                let prefix = IfAddrMsg::parse(p)?.prefixlen;
                if let (i, Some(a)) = parse_addr(p)? {
                    if ifindex.is_none_or(|want| want == i) {
                        out.push((i, a, prefix));
                    }
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// RTM_DELADDR: see [`del_address`].
    pub(super) fn del_addr(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> Result<(), NlError> {
        let seq = next_seq();
        let ifa = IfAddrMsg { family: family_of(addr), prefixlen: prefix_len, flags: 0, scope: 0, index: ifindex };
        let req = MsgBuilder::new(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq)
            .fixed(&ifa.bytes())
            .attr(IFA_LOCAL, &addr_bytes(&addr))
            .attr(IFA_ADDRESS, &addr_bytes(&addr))
            .finish();
        self.exchange(&req, seq, Expect::Ack, |_, _| Ok(()))
    }

    /// RTM_NEWLINK of interface `ifindex` setting one attribute (IFLA_MTU,
    /// IFLA_ADDRESS): see [`set_mtu`], [`set_mac`].
    pub(super) fn set_link_attr(&mut self, ifindex: u32, attr: u16, value: &[u8]) -> Result<(), NlError> {
        let seq = next_seq();
        let index = i32::try_from(ifindex).map_err(|_| NlError::Malformed(format!("interface index {ifindex}")))?;
        let ifi = IfInfoMsg { index, ..IfInfoMsg::default() };
        let req =
            MsgBuilder::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq).fixed(&ifi.bytes()).attr(attr, value).finish();
        self.exchange(&req, seq, Expect::Ack, |_, _| Ok(()))
    }

    /// RTM_NEWADDR: see [`add_address`].
    pub(super) fn new_addr(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> Result<(), NlError> {
        let seq = next_seq();
        let ifa = IfAddrMsg {
            family: family_of(addr),
            prefixlen: prefix_len,
            flags: if addr.is_ipv6() { IFA_F_NODAD } else { 0 },
            scope: 0,
            index: ifindex,
        };
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        let req = MsgBuilder::new(RTM_NEWADDR, flags, seq)
            .fixed(&ifa.bytes())
            .attr(IFA_LOCAL, &addr_bytes(&addr))
            .attr(IFA_ADDRESS, &addr_bytes(&addr))
            .finish();
        self.exchange(&req, seq, Expect::Ack, |_, _| Ok(()))
    }

    /// RTM_NEWROUTE: see [`add_route`].
    pub(super) fn new_route(&mut self, r: &Route) -> Result<(), NlError> {
        let seq = next_seq();
        let Some(family_addr) = r.dst.or(r.gateway) else {
            return Err(NlError::Malformed("a default route needs a gateway".into()));
        };
        let rt = RtMsg {
            family: family_of(family_addr),
            dst_len: if r.dst.is_some() { r.dst_len } else { 0 },
            table: RT_TABLE_MAIN,
            protocol: RTPROT_BOOT,
            scope: if r.gateway.is_some() { 0 } else { RT_SCOPE_LINK },
            rtype: RTN_UNICAST,
            ..RtMsg::default()
        };
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        let mut b = MsgBuilder::new(RTM_NEWROUTE, flags, seq).fixed(&rt.bytes());
        if let Some(d) = r.dst {
            b = b.attr(RTA_DST, &addr_bytes(&d));
        }
        if let Some(g) = r.gateway {
            b = b.attr(RTA_GATEWAY, &addr_bytes(&g));
        }
        if let Some(oif) = r.oif {
            b = b.attr(RTA_OIF, &oif.to_ne_bytes());
        }
        self.exchange(&b.finish(), seq, Expect::Ack, |_, _| Ok(()))
    }

    /// Main-table routes through `ifindex`: see [`link_routes`].
    pub(super) fn dump_routes(&mut self, ifindex: u32) -> Result<Vec<Route>, NlError> {
        let seq = next_seq();
        let req =
            MsgBuilder::new(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq).fixed(&RtMsg::default().bytes()).finish();
        let mut out = Vec::new();
        self.exchange(&req, seq, Expect::Dump, |ty, p| {
            if ty != RTM_NEWROUTE {
                return Ok(());
            }
            let rt = RtMsg::parse(p)?;
            // The table id is in the header, or in RTA_TABLE past 255.
            let mut table = u32::from(rt.table);
            for a in attrs(p, RtMsg::LEN) {
                let (ty, data) = a?;
                if ty == RTA_TABLE {
                    table = u32_attr(data, "RTA_TABLE")?;
                }
            }
            let r = parse_route(p)?;
            if table == u32::from(RT_TABLE_MAIN) && r.oif == Some(ifindex) {
                out.push(Route { dst: r.dst, dst_len: rt.dst_len, gateway: r.gateway, oif: r.oif });
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// Which link RTM_GETLINK asks for.
#[derive(Debug, Clone, Copy)]
pub(super) enum LinkKey<'a> {
    Index(u32),
    Name(&'a str),
}

/// The fallback trigger: an empty UDP datagram to `addr` port 9 (discard),
/// pinned to `ifindex` where the kernel allows; sending it makes the kernel
/// resolve the next hop.
pub(super) fn udp_probe(ifindex: u32, addr: IpAddr) -> io::Result<()> {
    let (sock, to) = match addr {
        IpAddr::V4(a) => {
            let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
            // IP_UNICAST_IF takes the index in network byte order.
            let _ = setsockopt(s.as_raw_fd(), libc::IPPROTO_IP, libc::IP_UNICAST_IF, &ifindex.to_be());
            (s, SocketAddr::V4(SocketAddrV4::new(a, 9)))
        }
        IpAddr::V6(a) => {
            let s = UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0))?;
            let _ = setsockopt(s.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_UNICAST_IF, &(ifindex as libc::c_int));
            let scope = if a.segments()[0] & 0xffc0 == 0xfe80 { ifindex } else { 0 };
            (s, SocketAddr::V6(SocketAddrV6::new(a, 9, 0, scope)))
        }
    };
    sock.send_to(&[], to).map(|_| ())
}
