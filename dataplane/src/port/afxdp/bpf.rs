//! A minimal BPF loader on the bpf(2) syscall: one XSKMAP and one of two XDP
//! programs, attached through a bpf_link so that the kernel detaches it when
//! the last file descriptor goes away (even on SIGKILL):
//!
//! - the six-instruction redirect program, which sends every frame to the
//!   AF_XDP socket registered for its receive queue ([`XdpProgram::attach`]);
//! - the uplink program ([`super::filter`]), which takes only VXLAN/UDP
//!   frames addressed to a registered local VTEP and passes everything else
//!   to the kernel ([`XdpProgram::attach_uplink`]).

use std::io;
use std::mem::size_of;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::filter::{self, VtepMap};
use super::iface;

// bpf(2) commands.
pub(super) const BPF_MAP_CREATE: libc::c_int = 0;
pub(super) const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
pub(super) const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_TEST_RUN: libc::c_int = 10;
const BPF_LINK_CREATE: libc::c_int = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `bpf_attr` for `BPF_MAP_CREATE` (the leading fields; the kernel zeroes
/// the rest of its union when `size` is smaller than its own).
#[repr(C)]
#[derive(Default)]
pub(super) struct MapCreateAttr {
    pub(super) map_type: u32,
    pub(super) key_size: u32,
    pub(super) value_size: u32,
    pub(super) max_entries: u32,
    pub(super) map_flags: u32,
    pub(super) inner_map_fd: u32,
    pub(super) numa_node: u32,
    pub(super) map_name: [u8; 16],
    pub(super) map_ifindex: u32,
}

/// `bpf_attr` for `BPF_MAP_*_ELEM`.
#[repr(C)]
#[derive(Default)]
pub(super) struct MapElemAttr {
    pub(super) map_fd: u32,
    pub(super) _pad: u32,
    pub(super) key: u64,
    pub(super) value: u64,
    pub(super) flags: u64,
}

/// `bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `bpf_attr` for `BPF_LINK_CREATE` (no per-type extras).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// `bpf_attr` for `BPF_PROG_TEST_RUN`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub(super) code: u8,
    /// dst_reg in the low nibble, src_reg in the high one (little endian).
    pub(super) regs: u8,
    pub(super) off: i16,
    pub(super) imm: i32,
}

impl Insn {
    /// An instruction from its opcode, registers, offset and immediate.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn { code, regs: (src << 4) | (dst & 0xf), off, imm }
    }
}

pub(super) const BPF_PSEUDO_MAP_FD: u8 = 1;
pub(super) const XDP_PASS: i32 = 2;
pub(super) const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// Offset of `rx_queue_index` in `struct xdp_md`.
pub(super) const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// The redirect program: `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`
fn redirect_program(map_fd: RawFd) -> [Insn; 6] {
    [
        // r2 = *(u32 *)(r1 + 16)        BPF_LDX | BPF_MEM | BPF_W
        Insn::new(0x61, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        // r1 = map (ld_imm64, two slots)  BPF_LD | BPF_DW | BPF_IMM
        Insn::new(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        Insn::new(0, 0, 0, 0, 0),
        // r3 = XDP_PASS                  BPF_ALU64 | BPF_MOV | BPF_K
        Insn::new(0xb7, 3, 0, 0, XDP_PASS),
        // call bpf_redirect_map          BPF_JMP | BPF_CALL
        Insn::new(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // exit                           BPF_JMP | BPF_EXIT
        Insn::new(0x95, 0, 0, 0, 0),
    ]
}

/// Runs one bpf(2) command on `attr`; returns the syscall's result.
pub(super) fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, fully initialised `#[repr(C)]` value without
    // implicit padding, and we pass its exact size, so the kernel reads (and
    // for some commands writes) only memory we own; any pointers inside it
    // were set by the caller to buffers that outlive this call.
    let r = unsafe {
        libc::syscall(libc::SYS_bpf, cmd, attr as *mut T as *mut libc::c_void, size_of::<T>() as libc::c_uint)
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Wraps a new fd returned by bpf(2).
pub(super) fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

pub(super) fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    let b = s.as_bytes();
    let l = b.len().min(15);
    n[..l].copy_from_slice(&b[..l]);
    n
}

pub(super) fn create_xskmap(entries: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: entries.max(1),
        map_name: name16("rvs_xsks"),
        ..Default::default()
    };
    sys_bpf(BPF_MAP_CREATE, &mut attr).map(owned)
}

/// Loads `insns` as an XDP program named `name`; on failure the error
/// carries the verifier's log.
pub(super) fn load_program(insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name16(name),
            expected_attach_type: BPF_XDP,
            ..Default::default()
        };
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = buf.as_mut_ptr() as u64;
        }
        sys_bpf(BPF_PROG_LOAD, &mut attr).map(owned)
    };
    match attempt(None) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            // Load again with the verifier log on, to say why.
            let mut log = vec![0u8; 64 * 1024];
            let _ = attempt(Some(&mut log));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let text = text.trim().replace('\n', " | ");
            if text.is_empty() {
                Err(io::Error::new(e.kind(), format!("loading the XDP program: {e}")))
            } else {
                Err(io::Error::new(e.kind(), format!("loading the XDP program: {e}; verifier: {text}")))
            }
        }
    }
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
        Self::attach_with(ifname, mode, queues, None)
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
        let vteps = VtepMap::create(Self::MAX_VTEPS).map_err(|e| bpf_error(ifname, "creating the VTEP map", e))?;
        Self::attach_with(ifname, mode, queues, Some(vteps))
    }

    /// Number of local VTEPs an uplink program holds.
    pub const MAX_VTEPS: u32 = 256;

    fn attach_with(ifname: &str, mode: XdpMode, queues: u32, vteps: Option<VtepMap>) -> io::Result<XdpProgram> {
        let ifindex = iface::ifindex(ifname)?;
        let queues = queues.max(1);
        let map = create_xskmap(queues).map_err(|e| bpf_error(ifname, "creating the XSKMAP", e))?;
        let prog = match &vteps {
            None => load_program(&redirect_program(map.as_raw_fd()), "rvs_xsk_redir"),
            Some(v) => load_program(&filter::uplink_program(map.as_raw_fd(), v.fd(), XDP_PASS), "rvs_uplink"),
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

/// Runs the XDP program `prog` once on `frame` (BPF_PROG_TEST_RUN, queue 0)
/// and returns its action. The kernel refuses frames shorter than an
/// Ethernet header (14 bytes) with EINVAL, before running the program.
pub(super) fn test_run(prog: RawFd, frame: &[u8]) -> io::Result<u32> {
    let mut attr = TestRunAttr {
        prog_fd: prog as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat: 1,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(attr.retval)
}

fn link_create(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr =
        LinkCreateAttr { prog_fd: prog.as_raw_fd() as u32, target_ifindex: ifindex, attach_type: BPF_XDP, flags };
    sys_bpf(BPF_LINK_CREATE, &mut attr).map(owned)
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

// Building blocks for tools that bring their own XDP programs (rvs-bench's
// traffic generator and drop counter). The switch itself does not use them.

const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `BPF_MAP_TYPE_ARRAY`, for [`create_map`].
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_PERCPU_ARRAY`, for [`create_map`]: from userspace a value
/// is one slot per possible CPU, each rounded up to 8 bytes.
pub const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
/// `BPF_MAP_TYPE_DEVMAP` (u32 keys, u32 ifindex values), the target of
/// `bpf_redirect_map`.
pub const BPF_MAP_TYPE_DEVMAP: u32 = 14;

/// `src_reg` of a `ld_imm64` instruction whose immediate is a map fd.
pub const PSEUDO_MAP_FD: u8 = BPF_PSEUDO_MAP_FD;

/// Loads `insns` as an XDP program named `name`; on failure the error
/// carries the verifier's log.
pub fn load_xdp(insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    load_program(insns, name)
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

/// Creates a BPF map named `name` (e.g. [`BPF_MAP_TYPE_ARRAY`]).
pub fn create_map(map_type: u32, key_size: u32, value_size: u32, entries: u32, name: &str) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries: entries,
        map_name: name16(name),
        ..Default::default()
    };
    sys_bpf(BPF_MAP_CREATE, &mut attr)
        .map(owned)
        .map_err(|e| io::Error::new(e.kind(), format!("creating map {name}: {e}")))
}

/// Reads the value under `key` of `map` into `value` (both exactly the
/// map's key and value sizes).
pub fn map_lookup(map: &OwnedFd, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).map(drop)
}

/// Writes `value` under `key` of `map` (both exactly the map's sizes).
pub fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        ..Default::default()
    };
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Runs the XDP program `prog` once on a copy of `frame` (plain
/// `BPF_PROG_TEST_RUN`, nothing is sent) and returns its action and the
/// frame as the program left it (at most `frame.len() + 256` bytes).
pub fn test_run_frame(prog: &OwnedFd, frame: &[u8]) -> io::Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_size_out: out.len() as u32,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    out.truncate(attr.data_size_out as usize);
    Ok((attr.retval, out))
}

/// `struct xdp_md` as `BPF_PROG_TEST_RUN` takes it for its context.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// Runs `prog` `repeat` times on `frame` in live-frames mode
/// (`BPF_F_TEST_XDP_LIVE_FRAMES`, kernel 5.18 or later) as if it arrived on
/// queue 0 of `ifindex` (an interface of the calling thread's network
/// namespace): frames the program returns XDP_TX for leave through that
/// interface, XDP_REDIRECT ones go where the program sent them.
/// `batch` frames go per kernel batch (1..=256; 0 for the kernel's 64).
pub fn test_run_live(prog: &OwnedFd, frame: &[u8], ifindex: u32, repeat: u32, batch: u32) -> io::Result<()> {
    let mut ctx = XdpMd { data_end: frame.len() as u32, ingress_ifindex: ifindex, ..Default::default() };
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ctx_size_in: size_of::<XdpMd>() as u32,
        ctx_in: &mut ctx as *mut XdpMd as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size: batch,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn attr_layouts_match_the_uapi() {
        assert_eq!(size_of::<Insn>(), 8);
        assert_eq!(size_of::<MapCreateAttr>(), 48);
        assert_eq!(offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(offset_of!(MapCreateAttr, map_ifindex), 44);
        assert_eq!(size_of::<MapElemAttr>(), 32);
        assert_eq!(offset_of!(MapElemAttr, key), 8);
        assert_eq!(offset_of!(MapElemAttr, value), 16);
        assert_eq!(offset_of!(MapElemAttr, flags), 24);
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
        assert_eq!(offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(offset_of!(ProgLoadAttr, license), 16);
        assert_eq!(offset_of!(ProgLoadAttr, log_level), 24);
        assert_eq!(offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(offset_of!(ProgLoadAttr, kern_version), 40);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, prog_ifindex), 64);
        assert_eq!(offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(size_of::<LinkCreateAttr>(), 16);
        assert_eq!(offset_of!(LinkCreateAttr, attach_type), 8);
        assert_eq!(offset_of!(LinkCreateAttr, flags), 12);
        assert_eq!(size_of::<TestRunAttr>(), 80);
        assert_eq!(offset_of!(TestRunAttr, data_in), 16);
        assert_eq!(offset_of!(TestRunAttr, repeat), 32);
        assert_eq!(offset_of!(TestRunAttr, ctx_size_in), 40);
        assert_eq!(offset_of!(TestRunAttr, ctx_in), 48);
        assert_eq!(offset_of!(TestRunAttr, flags), 64);
        assert_eq!(offset_of!(TestRunAttr, batch_size), 72);
        assert_eq!(size_of::<XdpMd>(), 24);
        assert_eq!(offset_of!(XdpMd, ingress_ifindex), 12);
    }

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
    fn name_is_truncated_and_terminated() {
        let n = name16("a_very_long_name_indeed");
        assert_eq!(n[15], 0);
        assert_eq!(&n[..3], b"a_v");
    }

    #[test]
    fn missing_interface_is_reported_by_name() {
        let e = XdpProgram::attach("rvsx-nonexist", XdpMode::Auto, 1).unwrap_err();
        assert_eq!(e.to_string(), "no interface named rvsx-nonexist");
    }
}
