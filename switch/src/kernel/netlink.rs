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
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
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
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
/// In an NLMSG_ERROR: the echoed request was cut to its header.
const NLM_F_CAPPED: u16 = 0x100;
/// In an NLMSG_ERROR: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_VIA: u16 = 18;
const RTA_TABLE: u16 = 15;

/// The main routing table (RT_TABLE_MAIN), where `ip route add` puts routes.
const RT_TABLE_MAIN: u8 = 254;
/// rtm_protocol of routes added by an administrator (RTPROT_BOOT, as `ip`).
const RTPROT_BOOT: u8 = 3;
/// rtm_scope of a route to directly attached hosts.
const RT_SCOPE_LINK: u8 = 253;

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
/// ifa_flags bit: no duplicate address detection (IPv6).
const IFA_F_NODAD: u8 = 0x02;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_LINK_NETNSID: u16 = 37;
/// Nested in IFLA_LINKINFO: the link's kind ("veth", "vxlan", ...).
const IFLA_INFO_KIND: u16 = 1;
/// Nested in IFLA_LINKINFO: the kind's own attributes.
const IFLA_INFO_DATA: u16 = 2;
/// In a veth's IFLA_INFO_DATA (linux/veth.h): a struct ifinfomsg, then the
/// peer's own IFLA_* attributes.
const VETH_INFO_PEER: u16 = 1;

/// struct ifinfomsg's ifi_flags bit of an interface that is up.
const IFF_UP: u32 = 0x1;

/// struct rtgenmsg: a family byte, padded to 4 by the builder.
const RTGENMSG_LEN: usize = 1;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
/// NETNSA_NSID of a namespace that has no id in ours.
const NETNSA_NSID_NOT_ASSIGNED: i32 = -1;

/// Attribute type bits that are flags (NLA_F_NESTED, NLA_F_NET_BYTEORDER).
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Attribute type bit of an attribute made of attributes.
const NLA_F_NESTED: u16 = 0x8000;

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

/// The other end of a veth pair, as its rvs-side end sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VethPeer {
    /// The peer's interface index, in the peer's own namespace.
    pub ifindex: u32,
    /// The id that our namespace gives the peer's namespace (see
    /// [`netns_id`]); `None` when the peer is in our own namespace.
    pub nsid: Option<i32>,
}

/// The peer of veth `ifname` (RTM_GETLINK); `None` when `ifname` is not a
/// veth.
///
/// Asking makes the kernel assign an id to the peer's namespace if it had
/// none, so [`netns_id`] can find that namespace afterwards.
pub fn veth_peer(ifname: &str) -> io::Result<Option<VethPeer>> {
    let ctx = format!("veth peer of {ifname}");
    check_ifname(ifname).map_err(|e| plain(io::ErrorKind::InvalidInput, format!("{ctx}: {e}")))?;
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    let link = sock.get_link(LinkKey::Name(ifname)).map_err(|e| e.context(&ctx))?;
    peer_of(&link).map_err(|e| plain(io::ErrorKind::InvalidData, format!("{ctx}: {e}")))
}

/// The id that the calling thread's network namespace gives the namespace
/// open at `fd` (RTM_GETNSID with NETNSA_FD, like `ip netns list-id`);
/// `None` when it has none (ids are assigned on demand, e.g. by a
/// [`veth_peer`] query across namespaces).
pub fn netns_id(fd: RawFd) -> io::Result<Option<i32>> {
    let ctx = format!("namespace id of descriptor {fd}");
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    sock.get_nsid(fd).map_err(|e| e.context(&ctx))
}

/// One interface, as RTM_GETLINK describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// IFLA_INFO_KIND ("veth", "vxlan", ...); `None` for a physical NIC.
    pub kind: Option<String>,
    /// IFLA_LINK: the index of the link this one is tied to (a veth's peer,
    /// in the peer's namespace).
    pub link: Option<u32>,
    /// IFLA_MTU.
    pub mtu: Option<u32>,
    /// IFF_UP is set (administratively up; says nothing of the carrier).
    pub up: bool,
    /// IFLA_NUM_RX_QUEUES.
    pub rx_queues: Option<u32>,
    /// IFLA_NUM_TX_QUEUES.
    pub tx_queues: Option<u32>,
}

impl From<LinkReply> for Link {
    fn from(l: LinkReply) -> Link {
        Link {
            index: l.index,
            name: l.name,
            kind: l.kind,
            link: l.link,
            mtu: l.mtu,
            up: l.flags & IFF_UP != 0,
            rx_queues: l.rx_queues,
            tx_queues: l.tx_queues,
        }
    }
}

/// Interface `ifname` of the calling thread's namespace (RTM_GETLINK);
/// `None` when there is none.
pub fn find_link(ifname: &str) -> io::Result<Option<Link>> {
    let ctx = format!("link lookup for {ifname}");
    check_ifname(ifname).map_err(|e| plain(io::ErrorKind::InvalidInput, format!("{ctx}: {e}")))?;
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    match sock.get_link(LinkKey::Name(ifname)) {
        Ok(l) => Ok(Some(l.into())),
        Err(NlError::Kernel { errno: libc::ENODEV, .. }) => Ok(None),
        Err(e) => Err(e.context(&ctx)),
    }
}

/// A veth pair for [`create_veth`]: both ends get the same MTU and queue
/// counts.
#[derive(Debug, Clone, Copy)]
pub struct VethSpec<'a> {
    /// The end created in the calling thread's namespace.
    pub name: &'a str,
    /// The other end.
    pub peer: &'a str,
    /// The namespace the peer is created in (IFLA_NET_NS_FD); `None`: ours.
    pub peer_netns: Option<BorrowedFd<'a>>,
    /// MTU of both ends.
    pub mtu: u32,
    /// Receive and transmit queues of each end.
    pub queues: u32,
}

/// Creates a veth pair with one RTM_NEWLINK (NLM_F_CREATE|NLM_F_EXCL, like
/// `ip link add NAME mtu M numtxqueues Q numrxqueues Q up type veth peer
/// name PEER netns NS mtu M numtxqueues Q numrxqueues Q`), and returns the
/// end named `spec.name`; its [`Link::link`] is the peer's index in the
/// peer's namespace.
///
/// `spec.name` comes up; the peer stays down until [`set_link_up`] in its
/// namespace (the kernel cannot bring it up in the same request: it opens
/// the peer before linking it to its other end, and that fails with
/// ENOTCONN). Fails with EEXIST when either name is taken in its namespace.
pub fn create_veth(spec: &VethSpec<'_>) -> io::Result<Link> {
    let ctx = format!("creating veth {} (peer {})", spec.name, spec.peer);
    for n in [spec.name, spec.peer] {
        check_ifname(n).map_err(|e| plain(io::ErrorKind::InvalidInput, format!("{ctx}: {n:?}: {e}")))?;
    }
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    sock.new_veth(spec).map_err(|e| e.context(&ctx))?;
    sock.get_link(LinkKey::Name(spec.name)).map(Link::from).map_err(|e| e.context(&format!("{ctx}: looking it up")))
}

/// Sets (`up`) or clears IFF_UP on interface `ifindex` of the calling
/// thread's namespace (RTM_NEWLINK), like `ip link set DEV up|down`.
pub fn set_link_up(ifindex: u32, up: bool) -> io::Result<()> {
    let ctx = format!("setting interface {ifindex} {}", if up { "up" } else { "down" });
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    sock.set_up(ifindex, up).map_err(|e| e.context(&ctx))
}

/// Deletes interface `ifindex` of the calling thread's namespace
/// (RTM_DELLINK); deleting either end of a veth deletes both. A missing
/// interface is an error whose [`kernel_errno`] is ENODEV.
pub fn delete_link(ifindex: u32) -> io::Result<()> {
    let ctx = format!("deleting interface {ifindex}");
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    sock.del_link(ifindex).map_err(|e| e.context(&ctx))
}

/// The addresses of interface `ifindex` of the calling thread's namespace,
/// each with its prefix length (RTM_GETADDR dump), in the kernel's order.
pub fn link_addrs(ifindex: u32) -> io::Result<Vec<(IpAddr, u8)>> {
    let ctx = format!("addresses of interface {ifindex}");
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    sock.get_addr_prefixes(ifindex).map_err(|e| e.context(&ctx))
}

/// Adds `addr/prefix_len` to interface `ifindex` of the calling thread's
/// namespace (RTM_NEWADDR), like `ip addr add`; IPv6 addresses skip
/// duplicate address detection (`nodad`), so they are usable at once.
/// An address already there is an error whose [`kernel_errno`] is EEXIST.
pub fn add_address(ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
    let ctx = format!("adding {addr}/{prefix_len} to interface {ifindex}");
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(plain(io::ErrorKind::InvalidInput, format!("{ctx}: prefix length over {max}")));
    }
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    sock.new_addr(ifindex, addr, prefix_len).map_err(|e| e.context(&ctx))
}

/// Removes `addr/prefix_len` from interface `ifindex` of the calling
/// thread's namespace (RTM_DELADDR), like `ip addr del`. An address not
/// there is an error whose [`kernel_errno`] is EADDRNOTAVAIL.
pub fn del_address(ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
    let ctx = format!("removing {addr}/{prefix_len} from interface {ifindex}");
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    sock.del_addr(ifindex, addr, prefix_len).map_err(|e| e.context(&ctx))
}

/// Every address of the calling thread's namespace, as (interface index,
/// address, prefix length) (one RTM_GETADDR dump).
pub fn all_addrs() -> io::Result<Vec<(u32, IpAddr, u8)>> {
    let ctx = "addresses of every interface";
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(ctx))?;
    sock.dump_addrs(None).map_err(|e| e.context(ctx))
}

/// The name of interface `ifindex` of the calling thread's namespace.
pub fn link_name(ifindex: u32) -> io::Result<String> {
    let ctx = format!("link lookup for interface {ifindex}");
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    sock.get_link(LinkKey::Index(ifindex)).map(|l| l.name).map_err(|e| e.context(&ctx))
}

/// Sets the MTU of interface `ifindex` of the calling thread's namespace
/// (RTM_NEWLINK with IFLA_MTU), like `ip link set DEV mtu MTU`.
pub fn set_mtu(ifindex: u32, mtu: u32) -> io::Result<()> {
    let ctx = format!("setting the MTU of interface {ifindex} to {mtu}");
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    sock.set_link_attr(ifindex, IFLA_MTU, &mtu.to_ne_bytes()).map_err(|e| e.context(&ctx))
}

/// Sets the MAC address of interface `ifindex` of the calling thread's
/// namespace (RTM_NEWLINK with IFLA_ADDRESS), like `ip link set DEV address MAC`.
pub fn set_mac(ifindex: u32, mac: MacAddr) -> io::Result<()> {
    let ctx = format!("setting the MAC address of interface {ifindex} to {mac}");
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    sock.set_link_attr(ifindex, IFLA_ADDRESS, &mac.0).map_err(|e| e.context(&ctx))
}

/// A route of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination network; `None` for a default route.
    pub dst: Option<IpAddr>,
    /// Prefix length of `dst` (0 for a default route).
    pub dst_len: u8,
    /// Next hop; `None` for an on-link route.
    pub gateway: Option<IpAddr>,
    /// Egress interface.
    pub oif: Option<u32>,
}

/// Adds `route` to the main table of the calling thread's namespace
/// (RTM_NEWROUTE), like `ip route add DST/LEN [via GW] dev OIF`. An equal
/// route already there is an error whose [`kernel_errno`] is EEXIST.
/// `dst` (or, for a default route, `gateway`) gives the family.
pub fn add_route(route: &Route) -> io::Result<()> {
    let dst = match route.dst {
        Some(d) => format!("{d}/{}", route.dst_len),
        None => "default".to_string(),
    };
    let ctx = format!("adding route {dst}");
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    sock.new_route(route).map_err(|e| e.context(&ctx))
}

/// The routes of the main table of the calling thread's namespace that
/// leave through interface `ifindex` (RTM_GETROUTE dump), IPv4 and IPv6.
pub fn link_routes(ifindex: u32) -> io::Result<Vec<Route>> {
    let ctx = format!("routes of interface {ifindex}");
    let mut sock = Socket::open().map_err(|e| NlError::Io(e).context(&ctx))?;
    sock.dump_routes(ifindex).map_err(|e| e.context(&ctx))
}

/// The kernel's errno behind an error from this module, if it came from one.
pub fn kernel_errno(err: &io::Error) -> Option<i32> {
    err.get_ref().and_then(|e| e.downcast_ref::<KernelError>()).map(|k| k.errno)
}

mod error;
mod msg;
mod socket;
#[cfg(test)]
mod tests;

use error::*;
use msg::*;
use socket::*;
