//! Next hops toward remote VTEPs, from the kernel's routing and neighbour
//! tables over rtnetlink (`NETLINK_ROUTE`).
//!
//! VXLAN encapsulation needs the Ethernet destination and the egress
//! interface of each remote VTEP. [`resolve`] asks the kernel what
//! `ip route get DST` would answer, then looks up the neighbour entry of the
//! gateway (or of the destination itself when it is on-link). When that entry
//! is missing, [`trigger_resolution`] makes the kernel start its own ARP/ND
//! resolution, and a later [`resolve`] picks up the answer: rvs never keeps
//! ARP entries of its own.
//!
//! Control plane only: every call opens its own socket, with a 1 s receive
//! timeout, and makes one to three requests on it. Every reply is parsed with
//! bounds checks; a malformed reply is an error, never a panic.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rvs_dataplane::wire::MacAddr;

// Kernel UAPI values (linux/netlink.h, linux/rtnetlink.h, linux/neighbour.h,
// linux/if_addr.h, linux/if_link.h). Declared here with the integer types
// the wire uses; the unit tests check them against libc where it has them.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_MULTI: u16 = 0x02;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
/// In an NLMSG_ERROR: the echoed request was cut to its header.
const NLM_F_CAPPED: u16 = 0x100;
/// In an NLMSG_ERROR: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_VIA: u16 = 18;

const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;

const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;

const NUD_NONE: u16 = 0x00;
const NUD_INCOMPLETE: u16 = 0x01;
const NUD_REACHABLE: u16 = 0x02;
const NUD_STALE: u16 = 0x04;
const NUD_DELAY: u16 = 0x08;
const NUD_PROBE: u16 = 0x10;
const NUD_FAILED: u16 = 0x20;
const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;
/// States whose link-layer address may be used to send.
const NUD_USABLE: u16 = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;

const NTF_USE: u8 = 0x01;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;

/// Attribute type bits that are flags (NLA_F_NESTED, NLA_F_NET_BYTEORDER).
const NLA_TYPE_MASK: u16 = 0x3fff;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NETLINK_GET_STRICT_CHK: libc::c_int = 12;

/// Receive timeout of every netlink socket.
const RECV_TIMEOUT: Duration = Duration::from_secs(1);
/// Receive buffer: the kernel never sends a single datagram over 32 KiB.
const RECV_BUF: usize = 64 * 1024;

/// Where packets toward one destination leave, and to which Ethernet address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// Egress interface index.
    pub ifindex: u32,
    /// Egress interface name.
    pub ifname: String,
    /// The gateway, or `None` when the destination is on-link.
    pub gateway: Option<IpAddr>,
    /// The kernel's preferred source address toward the destination.
    pub src: Option<IpAddr>,
    /// The next hop's MAC, `None` while unresolved (absent, INCOMPLETE, FAILED).
    pub mac: Option<MacAddr>,
}

/// How [`trigger_resolution_detailed`] started resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// RTM_NEWNEIGH with NTF_USE: the kernel's `neigh_event_send`, nothing of ours on the wire.
    NtfUse,
    /// Fallback (no CAP_NET_ADMIN, or an old kernel): an empty UDP datagram to port 9 (discard).
    UdpProbe,
}

/// Route lookup (like `ip route get DST`), then the neighbour entry of the
/// gateway, or of `dst` itself when on-link, on the egress interface.
///
/// `mac` is `Some` only for usable neighbour states (REACHABLE, STALE, DELAY,
/// PROBE, PERMANENT, NOARP with an Ethernet address); `None` while the entry
/// is INCOMPLETE, FAILED or absent: call [`trigger_resolution`] then.
pub fn resolve(dst: IpAddr) -> io::Result<NextHop> {
    let ctx = format!("route lookup for {dst}");
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    let route = sock.get_route(dst).map_err(|e| e.context(&ctx))?;
    match route.rtype {
        RTN_UNICAST => {}
        RTN_LOCAL => return Err(plain(io::ErrorKind::InvalidInput, format!("{ctx}: {dst} is a local address"))),
        t => return Err(plain(io::ErrorKind::InvalidInput, format!("{ctx}: not a unicast route ({})", rtn_name(t)))),
    }
    let ifindex = route.oif.ok_or_else(|| NlError::Malformed("route reply without RTA_OIF".into()).context(&ctx))?;
    let link = sock.get_link(LinkKey::Index(ifindex)).map_err(|e| e.context(&format!("{ctx}: interface {ifindex}")))?;
    let target = route.gateway.unwrap_or(dst);
    let neigh = sock
        .get_neigh(ifindex, target)
        .map_err(|e| e.context(&format!("neighbour lookup for {target} on {}", link.name)))?;
    Ok(NextHop {
        ifindex,
        ifname: link.name,
        gateway: route.gateway,
        src: route.prefsrc,
        mac: neigh.and_then(|n| usable_mac(n.state, n.lladdr.as_deref())),
    })
}

/// Starts the kernel's ARP/ND resolution of `addr` on `ifindex`; poll
/// [`resolve`] for the answer.
pub fn trigger_resolution(ifindex: u32, addr: IpAddr) -> io::Result<()> {
    trigger_resolution_detailed(ifindex, addr).map(|_| ())
}

/// [`trigger_resolution`], telling which way it was done.
///
/// First RTM_NEWNEIGH (NLM_F_CREATE|NLM_F_REPLACE) with `ndm_flags = NTF_USE`
/// and state NUD_NONE: the kernel's `neigh_add` creates the entry if needed
/// and calls `neigh_event_send` on it instead of updating it, which moves a
/// NONE/FAILED entry to INCOMPLETE and sends the kernel's own solicitation
/// (a STALE one goes to DELAY, then PROBE); usable entries are left alone.
/// That needs CAP_NET_ADMIN; without it (or on a kernel that refuses), an
/// empty UDP datagram to `addr` port 9 makes the kernel resolve `addr` to
/// send it.
///
/// IPv6: the kernel sends the solicitations it starts itself from the
/// interface's link-local address, so none go out while that address is
/// tentative (DAD, about 1-2 s after the link comes up) or if it has none;
/// the entry then retries and may end FAILED, and the next trigger restarts it.
pub fn trigger_resolution_detailed(ifindex: u32, addr: IpAddr) -> io::Result<Trigger> {
    let ctx = format!("neighbour resolution of {addr} on interface {ifindex}");
    if ifindex == 0 || ifindex > i32::MAX as u32 {
        return Err(plain(io::ErrorKind::InvalidInput, format!("{ctx}: bad interface index")));
    }
    if !is_unicast(addr) {
        return Err(plain(io::ErrorKind::InvalidInput, format!("{ctx}: not a unicast address")));
    }
    let first = Socket::open().map_err(NlError::Io).and_then(|mut s| s.neigh_use(ifindex, addr));
    match first {
        Ok(()) => Ok(Trigger::NtfUse),
        Err(e) if e.worth_fallback() => match udp_probe(ifindex, addr) {
            Ok(()) => Ok(Trigger::UdpProbe),
            Err(u) => Err(plain(u.kind(), format!("{}; UDP fallback: {u}", e.context(&ctx).to_string().trim_end()))),
        },
        Err(e) => Err(e.context(&ctx)),
    }
}

/// The addresses configured on interface `ifname` (RTM_GETADDR dump), IPv4
/// and IPv6, in the kernel's order.
pub fn interface_addrs(ifname: &str) -> io::Result<Vec<IpAddr>> {
    let ctx = format!("addresses of {ifname}");
    check_ifname(ifname).map_err(|e| plain(io::ErrorKind::InvalidInput, format!("{ctx}: {e}")))?;
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    let link = sock.get_link(LinkKey::Name(ifname)).map_err(|e| e.context(&ctx))?;
    sock.get_addrs(link.index).map_err(|e| e.context(&ctx))
}

/// MTU and MAC address of interface `ifname` (RTM_GETLINK).
pub fn link_info(ifname: &str) -> io::Result<(u32, MacAddr)> {
    let ctx = format!("link lookup for {ifname}");
    check_ifname(ifname).map_err(|e| plain(io::ErrorKind::InvalidInput, format!("{ctx}: {e}")))?;
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    let link = sock.get_link(LinkKey::Name(ifname)).map_err(|e| e.context(&ctx))?;
    let mtu = link.mtu.ok_or_else(|| NlError::Malformed("link reply without IFLA_MTU".into()).context(&ctx))?;
    match link.addr.as_deref() {
        Some(&[a, b, c, d, e, f]) => Ok((mtu, MacAddr([a, b, c, d, e, f]))),
        Some(other) => Err(plain(
            io::ErrorKind::InvalidInput,
            format!("{ctx}: not an Ethernet interface (link-layer address of {} bytes)", other.len()),
        )),
        None => {
            Err(plain(io::ErrorKind::InvalidInput, format!("{ctx}: not an Ethernet interface (no link-layer address)")))
        }
    }
}

/// The kernel's errno behind an error from this module, if it came from one.
pub fn kernel_errno(err: &io::Error) -> Option<i32> {
    err.get_ref().and_then(|e| e.downcast_ref::<KernelError>()).map(|k| k.errno)
}

// ---------------------------------------------------------------------------
// Errors

/// What went wrong below the public functions, before context is added.
#[derive(Debug)]
enum NlError {
    /// NLMSG_ERROR with a negative errno, and the kernel's extended-ack text.
    Kernel { errno: i32, msg: Option<String> },
    /// A failing system call.
    Io(io::Error),
    /// A reply that does not parse.
    Malformed(String),
    /// No (complete) reply within the timeout.
    Timeout,
}

/// An io::Error payload that keeps the kernel's errno (see [`kernel_errno`]).
#[derive(Debug)]
struct KernelError {
    errno: i32,
    line: String,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl std::error::Error for KernelError {}

impl NlError {
    /// The one-line io::Error: "CTX: WHAT".
    fn context(self, ctx: &str) -> io::Error {
        match self {
            NlError::Kernel { errno, msg } => {
                let os = io::Error::from_raw_os_error(errno);
                let mut line = format!("{ctx}: {}", strerror(&os));
                if let Some(m) = msg.filter(|m| !m.is_empty()) {
                    line.push_str(&format!(" ({m})"));
                }
                io::Error::new(os.kind(), KernelError { errno, line })
            }
            NlError::Io(e) => plain(e.kind(), format!("{ctx}: {e}")),
            NlError::Malformed(what) => plain(io::ErrorKind::InvalidData, format!("{ctx}: bad netlink reply: {what}")),
            NlError::Timeout => plain(
                io::ErrorKind::TimedOut,
                format!("{ctx}: no reply from the kernel within {} s", RECV_TIMEOUT.as_secs()),
            ),
        }
    }

    /// True if the UDP fallback of trigger_resolution is worth trying:
    /// no privilege, or a kernel that does not do NTF_USE.
    fn worth_fallback(&self) -> bool {
        match self {
            NlError::Kernel { errno, .. } => {
                [libc::EPERM, libc::EACCES, libc::EOPNOTSUPP, libc::EINVAL, libc::EAFNOSUPPORT].contains(errno)
            }
            NlError::Io(e) => e.kind() == io::ErrorKind::PermissionDenied,
            NlError::Malformed(_) | NlError::Timeout => false,
        }
    }
}

fn plain(kind: io::ErrorKind, line: String) -> io::Error {
    io::Error::new(kind, line)
}

/// "Network is unreachable", without Rust's " (os error 101)".
fn strerror(os: &io::Error) -> String {
    let s = os.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn rtn_name(t: u8) -> String {
    match t {
        3 => "broadcast".into(),
        4 => "anycast".into(),
        5 => "multicast".into(),
        6 => "blackhole".into(),
        7 => "unreachable".into(),
        8 => "prohibit".into(),
        9 => "throw".into(),
        t => format!("type {t}"),
    }
}

fn is_unicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

fn check_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') || name.contains('/') {
        return Err("bad interface name");
    }
    Ok(())
}

fn family_of(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn addr_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

// ---------------------------------------------------------------------------
// Fixed headers. #[repr(C)] documents the kernel layout; the bytes are
// written and read field by field, in host byte order, with no casts.

/// struct rtmsg (linux/rtnetlink.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct RtMsg {
    family: u8,
    dst_len: u8,
    src_len: u8,
    tos: u8,
    table: u8,
    protocol: u8,
    scope: u8,
    rtype: u8,
    flags: u32,
}

/// struct ndmsg (linux/neighbour.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct NdMsg {
    family: u8,
    pad1: u8,
    pad2: u16,
    ifindex: i32,
    state: u16,
    flags: u8,
    ntype: u8,
}

/// struct ifaddrmsg (linux/if_addr.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct IfAddrMsg {
    family: u8,
    prefixlen: u8,
    flags: u8,
    scope: u8,
    index: u32,
}

/// struct ifinfomsg (linux/rtnetlink.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct IfInfoMsg {
    family: u8,
    pad: u8,
    itype: u16,
    index: i32,
    flags: u32,
    change: u32,
}

const _: () = assert!(std::mem::size_of::<RtMsg>() == 12);
const _: () = assert!(std::mem::size_of::<NdMsg>() == 12);
const _: () = assert!(std::mem::size_of::<IfAddrMsg>() == 8);
const _: () = assert!(std::mem::size_of::<IfInfoMsg>() == 16);

/// Reads `N` bytes at `at`, or says which header was short.
fn take<const N: usize>(b: &[u8], at: usize, what: &str) -> Result<[u8; N], NlError> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| NlError::Malformed(format!("{what} truncated ({} bytes)", b.len())))
}

fn u16_at(b: &[u8], at: usize, what: &str) -> Result<u16, NlError> {
    take::<2>(b, at, what).map(u16::from_ne_bytes)
}

fn u32_at(b: &[u8], at: usize, what: &str) -> Result<u32, NlError> {
    take::<4>(b, at, what).map(u32::from_ne_bytes)
}

impl RtMsg {
    const LEN: usize = 12;
    fn bytes(&self) -> [u8; Self::LEN] {
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
    fn parse(b: &[u8]) -> Result<RtMsg, NlError> {
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
    const LEN: usize = 12;
    fn bytes(&self) -> [u8; Self::LEN] {
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
    fn parse(b: &[u8]) -> Result<NdMsg, NlError> {
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
    const LEN: usize = 8;
    fn bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0; Self::LEN];
        b[..4].copy_from_slice(&[self.family, self.prefixlen, self.flags, self.scope]);
        b[4..].copy_from_slice(&self.index.to_ne_bytes());
        b
    }
    fn parse(b: &[u8]) -> Result<IfAddrMsg, NlError> {
        let h = take::<4>(b, 0, "ifaddrmsg")?;
        Ok(IfAddrMsg { family: h[0], prefixlen: h[1], flags: h[2], scope: h[3], index: u32_at(b, 4, "ifaddrmsg")? })
    }
}

impl IfInfoMsg {
    const LEN: usize = 16;
    fn bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0; Self::LEN];
        b[0] = self.family;
        b[1] = self.pad;
        b[2..4].copy_from_slice(&self.itype.to_ne_bytes());
        b[4..8].copy_from_slice(&self.index.to_ne_bytes());
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b[12..16].copy_from_slice(&self.change.to_ne_bytes());
        b
    }
    fn parse(b: &[u8]) -> Result<IfInfoMsg, NlError> {
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

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink message being built: header, fixed part, attributes.
struct MsgBuilder {
    buf: Vec<u8>,
}

impl MsgBuilder {
    fn new(ty: u16, flags: u16, seq: u32) -> MsgBuilder {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by finish
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it
        MsgBuilder { buf }
    }

    /// Appends a fixed header (rtmsg, ndmsg, ...), padded to 4 bytes.
    fn fixed(mut self, b: &[u8]) -> MsgBuilder {
        self.buf.extend_from_slice(b);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// Appends one attribute, padded to 4 bytes.
    fn attr(mut self, ty: u16, data: &[u8]) -> MsgBuilder {
        let len = u16::try_from(4 + data.len()).expect("netlink attribute fits in 64 KiB");
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// One received netlink message.
#[derive(Debug)]
struct NlMsg<'a> {
    ty: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
}

/// The messages of one datagram; yields an error (then stops) at the first
/// header that does not fit.
struct Messages<'a> {
    rest: &'a [u8],
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

fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { rest: buf }
}

/// The attributes after a fixed header; yields (type without flag bits,
/// payload), or an error (then stops) at the first one that does not fit.
struct Attrs<'a> {
    rest: &'a [u8],
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
fn attrs(payload: &[u8], fixed: usize) -> Attrs<'_> {
    Attrs { rest: payload.get(align4(fixed)..).unwrap_or(&[]) }
}

fn ip_from(family: u8, data: &[u8], what: &str) -> Result<IpAddr, NlError> {
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

fn u32_attr(data: &[u8], what: &str) -> Result<u32, NlError> {
    match data.try_into() {
        Ok(b) => Ok(u32::from_ne_bytes(b)),
        Err(_) => Err(NlError::Malformed(format!("{what} of {} bytes", data.len()))),
    }
}

/// An NLMSG_ERROR payload: 0 for an ack, or a negative errno, plus the
/// kernel's extended-ack message if any.
fn parse_error(flags: u16, payload: &[u8]) -> Result<(i32, Option<String>), NlError> {
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
struct RouteReply {
    rtype: u8,
    dst: Option<IpAddr>,
    oif: Option<u32>,
    gateway: Option<IpAddr>,
    prefsrc: Option<IpAddr>,
}

fn parse_route(payload: &[u8]) -> Result<RouteReply, NlError> {
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
struct NeighReply {
    ifindex: i32,
    state: u16,
    dst: Option<IpAddr>,
    lladdr: Option<Vec<u8>>,
}

fn parse_neigh(payload: &[u8]) -> Result<NeighReply, NlError> {
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
fn usable_mac(state: u16, lladdr: Option<&[u8]>) -> Option<MacAddr> {
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
struct LinkReply {
    index: u32,
    name: String,
    mtu: Option<u32>,
    addr: Option<Vec<u8>>,
}

fn parse_link(payload: &[u8]) -> Result<LinkReply, NlError> {
    let ifi = IfInfoMsg::parse(payload)?;
    let mut l = LinkReply { index: ifi.index as u32, ..LinkReply::default() };
    for a in attrs(payload, IfInfoMsg::LEN) {
        let (ty, data) = a?;
        match ty {
            IFLA_IFNAME => {
                let name = data.split(|&c| c == 0).next().unwrap_or(&[]);
                l.name = String::from_utf8_lossy(name).into_owned();
            }
            IFLA_MTU => l.mtu = Some(u32_attr(data, "IFLA_MTU")?),
            IFLA_ADDRESS => l.addr = Some(data.to_vec()),
            _ => {}
        }
    }
    Ok(l)
}

/// The interface index and address of an address reply: IFA_LOCAL when
/// present (on point-to-point links IFA_ADDRESS is the peer), else IFA_ADDRESS.
fn parse_addr(payload: &[u8]) -> Result<(u32, Option<IpAddr>), NlError> {
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

// ---------------------------------------------------------------------------
// The socket

/// What a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// One reply message (or an NLMSG_ERROR).
    One,
    /// A multipart dump, up to NLMSG_DONE.
    Dump,
    /// An NLMSG_ERROR carrying 0 (the request had NLM_F_ACK).
    Ack,
}

/// Drives one request/response exchange over received datagrams; separate
/// from the socket so the unit tests can feed it crafted replies.
struct Exchange {
    seq: u32,
    expect: Expect,
    done: bool,
}

/// A handler of reply messages: `(nlmsg_type, payload)`.
type OnMsg<'a> = dyn FnMut(u16, &[u8]) -> Result<(), NlError> + 'a;

impl Exchange {
    /// Handles one datagram; calls `on_msg(type, payload)` for each reply
    /// message of ours. Sets `done` when the exchange is complete.
    fn feed(&mut self, datagram: &[u8], on_msg: &mut OnMsg<'_>) -> Result<(), NlError> {
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

fn next_seq() -> u32 {
    static SEQ: AtomicU32 = AtomicU32::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// A NETLINK_ROUTE socket with a receive timeout.
struct Socket {
    fd: OwnedFd,
    buf: Vec<u8>,
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
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
    fn open() -> io::Result<Socket> {
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
    fn exchange(
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

    fn get_route(&mut self, dst: IpAddr) -> Result<RouteReply, NlError> {
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

    fn get_link(&mut self, key: LinkKey<'_>) -> Result<LinkReply, NlError> {
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

    /// The neighbour entry of `addr` on `ifindex`; `None` if there is none.
    fn get_neigh(&mut self, ifindex: u32, addr: IpAddr) -> Result<Option<NeighReply>, NlError> {
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

    fn dump_neigh(&mut self, ifindex: i32, addr: IpAddr) -> Result<Option<NeighReply>, NlError> {
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
    fn neigh_use(&mut self, ifindex: u32, addr: IpAddr) -> Result<(), NlError> {
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

    fn get_addrs(&mut self, ifindex: u32) -> Result<Vec<IpAddr>, NlError> {
        let seq = next_seq();
        // With strict checking the kernel filters on ifa_index; we filter too.
        let ifa = IfAddrMsg { index: ifindex, ..IfAddrMsg::default() };
        let req = MsgBuilder::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq).fixed(&ifa.bytes()).finish();
        let mut out = Vec::new();
        self.exchange(&req, seq, Expect::Dump, |ty, p| {
            if ty == RTM_NEWADDR {
                if let (i, Some(a)) = parse_addr(p)? {
                    if i == ifindex {
                        out.push(a);
                    }
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// Which link RTM_GETLINK asks for.
#[derive(Debug, Clone, Copy)]
enum LinkKey<'a> {
    Index(u32),
    Name(&'a str),
}

/// The fallback trigger: an empty UDP datagram to `addr` port 9 (discard),
/// pinned to `ifindex` where the kernel allows; sending it makes the kernel
/// resolve the next hop.
fn udp_probe(ifindex: u32, addr: IpAddr) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
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
        assert_eq!(RTM_GETLINK, libc::RTM_GETLINK);
        assert_eq!(RTM_NEWLINK, libc::RTM_NEWLINK);
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
            let d =
                neigh_reply(libc::AF_INET as u8, state, &[(NDA_DST, vec![198, 18, 5, 2]), (NDA_LLADDR, mac.clone())]);
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
            LinkReply { index: 9, name: "uplink0".into(), mtu: Some(9000), addr: Some(vec![2, 0, 0, 0, 0, 1]) }
        );

        let ifa = IfAddrMsg { family: libc::AF_INET as u8, prefixlen: 32, index: 9, ..IfAddrMsg::default() };
        let d = MsgBuilder::new(RTM_NEWADDR, NLM_F_MULTI, SEQ)
            .fixed(&ifa.bytes())
            .attr(IFA_ADDRESS, &[198, 18, 5, 9]) // the peer on a point-to-point link
            .attr(IFA_LOCAL, &[198, 18, 5, 1])
            .finish();
        assert_eq!(parse_addr(&d[NLMSG_HDRLEN..]).unwrap(), (9, Some(v4("198.18.5.1"))));
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
            MsgBuilder::new(RTM_NEWADDR, NLM_F_MULTI, seq)
                .fixed(&ifa.bytes())
                .attr(IFA_LOCAL, &[198, 18, 0, 1])
                .finish()
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
            ty in prop_oneof![Just(RTM_NEWROUTE), Just(RTM_NEWNEIGH), Just(RTM_NEWLINK), Just(RTM_NEWADDR), Just(NLMSG_ERROR), Just(NLMSG_DONE)],
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
                    _ => parse_addr(p).map(|_| ()),
                };
                Ok(())
            });
        }
    }
}
