//! rvs's XDP programs on an interface, attached through a bpf_link so that
//! the kernel detaches them when the last file descriptor goes away (even
//! on SIGKILL), each with its XSKMAP:
//!
//! - the six-instruction redirect program, which sends every frame to the
//!   AF_XDP socket registered for its receive queue ([`XdpProgram::attach`]);
//! - the uplink program ([`super::filter`]), which takes only VXLAN/UDP
//!   frames addressed to a registered local VTEP and passes everything else
//!   to the kernel ([`XdpProgram::attach_uplink`]).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::filter::{self, VtepMap};
use super::iface;
use crate::bpf::asm::{Asm, FUNC_REDIRECT_MAP, R1, R2, R3, XDP_PASS, XDP_RX_QUEUE_INDEX};
use crate::bpf::{
    create_xskmap, load_program, sys_bpf, test_run, Insn, MapElemAttr, BPF_MAP_DELETE_ELEM, BPF_MAP_UPDATE_ELEM,
    BPF_XDP,
};
use crate::fastpath::{self, KernelTables};
use crate::ids::PortId;

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// The redirect program: `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`
fn redirect_program(map_fd: RawFd) -> Vec<Insn> {
    let mut a = Asm::default();
    a.ldx_w(R2, R1, XDP_RX_QUEUE_INDEX).ld_map(R1, map_fd).mov_k(R3, XDP_PASS).call(FUNC_REDIRECT_MAP).exit();
    a.finish()
}

/// How to attach the XDP program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic where the driver lacks
    /// it or refuses it (EOPNOTSUPP, EINVAL, ERANGE: e.g. veth with an MTU
    /// above 3506).
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Generic,
}

/// An XDP program attached to one interface, with its XSKMAP: either the
/// redirect-everything program ([`attach`](Self::attach)) or the uplink
/// program ([`attach_uplink`](Self::attach_uplink)) with its map of local
/// VTEPs.
///
/// Dropping it closes the link, map and program fds, which detaches the
/// program; the kernel does the same when the process dies.
#[derive(Debug)]
pub struct XdpProgram {
    // Field order is drop order: link first (detach), then program, then maps.
    link: OwnedFd,
    prog: OwnedFd,
    map: OwnedFd,
    vteps: Option<VtepMap>,
    mode: XdpMode,
    ifname: String,
    queues: u32,
}

impl XdpProgram {
    /// Loads the program and attaches it to `ifname` with room for `queues`
    /// receive queues (at least 1) in its socket map.
    pub fn attach(ifname: &str, mode: XdpMode, queues: u32) -> io::Result<XdpProgram> {
        Self::attach_with(ifname, mode, queues, None, None)
    }

    /// Like [`attach`](Self::attach), with the `xdp` executor of the kernel
    /// fast path ([`crate::fastpath::program`]) for port `me` in front of the
    /// sockets: frames it can carry never reach them.
    pub fn attach_fast(
        ifname: &str,
        mode: XdpMode,
        queues: u32,
        me: PortId,
        tables: &KernelTables,
    ) -> io::Result<XdpProgram> {
        Self::attach_with(ifname, mode, queues, None, Some((me, tables)))
    }

    /// Loads the uplink program and attaches it to `ifname` (the host's
    /// underlay interface), with room for `queues` receive queues (at least
    /// 1) in its socket map and [`MAX_VTEPS`](Self::MAX_VTEPS) local VTEPs.
    ///
    /// The program steers to the queue's AF_XDP socket only UDP frames
    /// (IPv4 without options or fragmentation, or IPv6 without extension
    /// headers; untagged or with one 802.1Q tag) whose destination address
    /// and port were registered with [`add_vtep`](Self::add_vtep); every
    /// other frame, and every frame of a queue without a socket, goes to the
    /// kernel's stack unchanged (XDP_PASS). With no VTEP registered it takes
    /// nothing.
    pub fn attach_uplink(ifname: &str, mode: XdpMode, queues: u32) -> io::Result<XdpProgram> {
        Self::uplink_with(ifname, mode, queues, None)
    }

    /// Like [`attach_uplink`](Self::attach_uplink), with the kernel fast
    /// path's decapsulation in front ([`crate::fastpath::program`]): VXLAN
    /// frames of the tunnels in `tables` are forwarded there, the rest is
    /// steered as without it. `me` is the uplink's port id.
    pub fn attach_uplink_fast(
        ifname: &str,
        mode: XdpMode,
        queues: u32,
        me: PortId,
        tables: &KernelTables,
    ) -> io::Result<XdpProgram> {
        Self::uplink_with(ifname, mode, queues, Some((me, tables)))
    }

    fn uplink_with(
        ifname: &str,
        mode: XdpMode,
        queues: u32,
        fast: Option<(PortId, &KernelTables)>,
    ) -> io::Result<XdpProgram> {
        let vteps = VtepMap::create(Self::MAX_VTEPS).map_err(|e| bpf_error(ifname, "creating the VTEP map", e))?;
        Self::attach_with(ifname, mode, queues, Some(vteps), fast)
    }

    /// Number of local VTEPs an uplink program holds.
    pub const MAX_VTEPS: u32 = 256;

    fn attach_with(
        ifname: &str,
        mode: XdpMode,
        queues: u32,
        vteps: Option<VtepMap>,
        fast: Option<(PortId, &KernelTables)>,
    ) -> io::Result<XdpProgram> {
        let ifindex = iface::ifindex(ifname)?;
        let queues = queues.max(1);
        let map = create_xskmap(queues).map_err(|e| bpf_error(ifname, "creating the XSKMAP", e))?;
        let prog = match (&vteps, fast) {
            (Some(v), Some((me, t))) => {
                let hook = fastpath::program::Hook::Uplink { xsks: map.as_raw_fd(), vteps: v.fd() };
                load_program(&fastpath::program::program(hook, me, &t.maps()), "rvs_uplink")
            }
            (Some(v), None) => load_program(&filter::uplink_program(map.as_raw_fd(), v.fd(), XDP_PASS), "rvs_uplink"),
            (None, Some((me, t))) => {
                let hook = fastpath::program::Hook::Xdp { xsks: map.as_raw_fd() };
                load_program(&fastpath::program::program(hook, me, &t.maps()), "rvs_fast")
            }
            (None, None) => load_program(&redirect_program(map.as_raw_fd()), "rvs_xsk_redir"),
        }
        .map_err(|e| bpf_error(ifname, "", e))?;
        let (link, mode) = match mode {
            XdpMode::Native => (link_create(&prog, ifindex, XDP_FLAGS_DRV_MODE), XdpMode::Native),
            XdpMode::Generic => (link_create(&prog, ifindex, XDP_FLAGS_SKB_MODE), XdpMode::Generic),
            XdpMode::Auto => match link_create(&prog, ifindex, XDP_FLAGS_DRV_MODE) {
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ERANGE)) =>
                {
                    (link_create(&prog, ifindex, XDP_FLAGS_SKB_MODE), XdpMode::Generic)
                }
                other => (other, XdpMode::Native),
            },
        };
        let link = link.map_err(|e| attach_error(ifname, mode, e))?;
        Ok(XdpProgram { link, prog, map, vteps, mode, ifname: ifname.to_owned(), queues })
    }

    /// Whether this is the uplink program (which takes only VTEP traffic).
    pub fn is_uplink(&self) -> bool {
        self.vteps.is_some()
    }

    /// Uplink program: steer UDP frames to `addr`:`udp_port` (a local VTEP,
    /// e.g. port 4789) to the AF_XDP sockets. Adding one twice is no error.
    /// An IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn add_vtep(&self, addr: IpAddr, udp_port: u16) -> io::Result<()> {
        let what = || format!("{}: adding VTEP {}", self.ifname, filter::vtep_name(addr, udp_port));
        self.vtep_map(&what)?.add(addr, udp_port).map_err(|e| match e.raw_os_error() {
            Some(libc::E2BIG) => {
                io::Error::new(e.kind(), format!("{}: table full ({} VTEPs at most)", what(), Self::MAX_VTEPS))
            }
            _ => io::Error::new(e.kind(), format!("{}: {e}", what())),
        })
    }

    /// Uplink program: stop steering `addr`:`udp_port` to the AF_XDP
    /// sockets (its frames go to the kernel again). A VTEP that was never
    /// added is an error of kind `NotFound`.
    pub fn remove_vtep(&self, addr: IpAddr, udp_port: u16) -> io::Result<()> {
        let what = || format!("{}: removing VTEP {}", self.ifname, filter::vtep_name(addr, udp_port));
        self.vtep_map(&what)?.remove(addr, udp_port).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => io::Error::new(io::ErrorKind::NotFound, format!("{}: not registered", what())),
            _ => io::Error::new(e.kind(), format!("{}: {e}", what())),
        })
    }

    fn vtep_map(&self, what: &dyn Fn() -> String) -> io::Result<&VtepMap> {
        self.vteps.as_ref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not an uplink program (attach it with attach_uplink)", what()),
            )
        })
    }

    /// Runs the program once on `frame` with `BPF_PROG_TEST_RUN`, as if it
    /// arrived on queue 0, and returns its XDP action (1 drop, 2 pass,
    /// 4 redirect). Nothing is sent or redirected; for tests and diagnostics.
    /// The kernel refuses frames shorter than 14 bytes (EINVAL).
    pub fn test_run(&self, frame: &[u8]) -> io::Result<u32> {
        test_run(self.prog.as_raw_fd(), frame)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: BPF_PROG_TEST_RUN: {e}", self.ifname)))
    }

    /// The mode the program runs in: `Native` or `Generic`.
    pub fn attached_mode(&self) -> XdpMode {
        self.mode
    }

    /// Name of the interface the program is attached to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Number of queue slots in the socket map.
    pub fn queues(&self) -> u32 {
        self.queues
    }

    /// Steers frames received on `queue` to the AF_XDP socket `xsk_fd`.
    pub fn register(&self, queue: u32, xsk_fd: RawFd) -> io::Result<()> {
        if queue >= self.queues {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: queue {queue} out of range (the XDP program has {} queue slots)",
                    self.ifname, self.queues
                ),
            ));
        }
        let key = queue;
        let value = xsk_fd as u32;
        let mut attr = MapElemAttr {
            map_fd: self.map.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..Default::default()
        };
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop).map_err(|e| {
            io::Error::new(e.kind(), format!("{}: registering the AF_XDP socket for queue {queue}: {e}", self.ifname))
        })
    }

    /// Stops steering `queue` to a socket (its frames go to the kernel stack
    /// again). Closing the socket does the same.
    pub fn unregister(&self, queue: u32) {
        let key = queue;
        let mut attr =
            MapElemAttr { map_fd: self.map.as_raw_fd() as u32, key: &key as *const u32 as u64, ..Default::default() };
        // ENOENT (nothing registered) is the only expected failure.
        let _ = sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr);
    }

    /// File descriptor of the program (for inspection with bpftool and the like).
    pub fn prog_fd(&self) -> RawFd {
        self.prog.as_raw_fd()
    }

    /// File descriptor of the bpf_link.
    pub fn link_fd(&self) -> RawFd {
        self.link.as_raw_fd()
    }
}

fn link_create(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    crate::bpf::link_create(prog, ifindex, BPF_XDP, flags)
}

fn permission_error(ifname: &str, e: &io::Error) -> Option<io::Error> {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)).then(|| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{ifname}: permission denied for XDP/BPF ({e}); run as root or grant CAP_BPF and CAP_NET_ADMIN"),
        )
    })
}

fn bpf_error(ifname: &str, what: &str, e: io::Error) -> io::Error {
    if let Some(p) = permission_error(ifname, &e) {
        return p;
    }
    if what.is_empty() {
        io::Error::new(e.kind(), format!("{ifname}: {e}"))
    } else {
        io::Error::new(e.kind(), format!("{ifname}: {what}: {e}"))
    }
}

fn attach_error(ifname: &str, mode: XdpMode, e: io::Error) -> io::Error {
    if let Some(p) = permission_error(ifname, &e) {
        return p;
    }
    let how = match mode {
        XdpMode::Generic => "generic",
        _ => "native",
    };
    match e.raw_os_error() {
        Some(libc::EBUSY) | Some(libc::EEXIST) => io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{ifname} already has an XDP program attached (owned by another program)"),
        ),
        Some(libc::ENODEV) => io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {ifname}"),
        ),
        Some(libc::ENOSPC) => io::Error::new(
            e.kind(),
            format!("{ifname}: attaching XDP ({how}): {e} (on veth: the interface needs at least as many rx queues as its peer has tx queues)"),
        ),
        Some(libc::ERANGE) => io::Error::new(
            e.kind(),
            format!("{ifname}: attaching XDP ({how}): {e} (MTU too large for native XDP; on veth the peer MTU must be at most 3506)"),
        ),
        _ => io::Error::new(e.kind(), format!("{ifname}: attaching XDP ({how}): {e}")),
    }
}

/// Attaches the XDP program `prog` to `ifname` (looked up in the calling
/// thread's network namespace) through a bpf_link, which detaches when the
/// returned fd is closed or the process dies. Returns the link and the mode
/// it got (`Auto` tries native first, as [`XdpProgram::attach`] does).
pub fn attach_xdp(prog: &OwnedFd, ifname: &str, mode: XdpMode) -> io::Result<(OwnedFd, XdpMode)> {
    let ifindex = iface::ifindex(ifname)?;
    let native = link_create(prog, ifindex, XDP_FLAGS_DRV_MODE);
    let (link, mode) = match (mode, native) {
        (XdpMode::Generic, _) => (link_create(prog, ifindex, XDP_FLAGS_SKB_MODE), XdpMode::Generic),
        (XdpMode::Auto, Err(e))
            if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ERANGE)) =>
        {
            (link_create(prog, ifindex, XDP_FLAGS_SKB_MODE), XdpMode::Generic)
        }
        (_, native) => (native, XdpMode::Native),
    };
    link.map(|l| (l, mode)).map_err(|e| attach_error(ifname, mode, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encoding() {
        let p = redirect_program(7);
        let raw: Vec<u64> = p
            .iter()
            .map(|i| {
                // SAFETY: Insn is an 8-byte repr(C) POD without padding.
                unsafe { std::mem::transmute::<Insn, u64>(*i) }
            })
            .collect();
        // As clang/bpftool would emit them (little endian).
        assert_eq!(raw[0], 0x0000_0000_0010_1261); // r2 = *(u32 *)(r1 + 16)
        assert_eq!(raw[1], 0x0000_0007_0000_1118); // r1 = map fd 7 (pseudo)
        assert_eq!(raw[2], 0);
        assert_eq!(raw[3], 0x0000_0002_0000_03b7); // r3 = 2
        assert_eq!(raw[4], 0x0000_0033_0000_0085); // call 51
        assert_eq!(raw[5], 0x0000_0000_0000_0095); // exit
    }

    #[test]
    fn missing_interface_is_reported_by_name() {
        let e = XdpProgram::attach("rvsx-nonexist", XdpMode::Auto, 1).unwrap_err();
        assert_eq!(e.to_string(), "no interface named rvsx-nonexist");
    }
}
