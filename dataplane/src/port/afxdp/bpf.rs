//! A minimal BPF loader on the bpf(2) syscall: one XSKMAP, one six-instruction
//! XDP program that redirects every frame to the AF_XDP socket registered
//! for its receive queue, attached through a bpf_link so that the kernel
//! detaches it when the last file descriptor goes away (even on SIGKILL).

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::iface;

// bpf(2) commands.
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_PROG_LOAD: libc::c_int = 5;
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
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
}

/// `bpf_attr` for `BPF_MAP_*_ELEM`.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
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

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one (little endian).
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn { code, regs: (src << 4) | (dst & 0xf), off, imm }
    }
}

const BPF_PSEUDO_MAP_FD: u8 = 1;
const XDP_PASS: i32 = 2;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

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
fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
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
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    let b = s.as_bytes();
    let l = b.len().min(15);
    n[..l].copy_from_slice(&b[..l]);
    n
}

fn create_xskmap(entries: u32) -> io::Result<OwnedFd> {
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

fn load_program(map_fd: RawFd) -> io::Result<OwnedFd> {
    let insns = redirect_program(map_fd);
    let license = c"GPL";
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name16("rvs_xsk_redir"),
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

/// The redirect program attached to one interface, with its XSKMAP.
///
/// Dropping it closes the link, map and program fds, which detaches the
/// program; the kernel does the same when the process dies.
#[derive(Debug)]
pub struct XdpProgram {
    // Field order is drop order: link first (detach), then program, then map.
    link: OwnedFd,
    prog: OwnedFd,
    map: OwnedFd,
    mode: XdpMode,
    ifname: String,
    queues: u32,
}

impl XdpProgram {
    /// Loads the program and attaches it to `ifname` with room for `queues`
    /// receive queues (at least 1) in its socket map.
    pub fn attach(ifname: &str, mode: XdpMode, queues: u32) -> io::Result<XdpProgram> {
        let ifindex = iface::ifindex(ifname)?;
        let queues = queues.max(1);
        let map = create_xskmap(queues).map_err(|e| bpf_error(ifname, "creating the XSKMAP", e))?;
        let prog = load_program(map.as_raw_fd()).map_err(|e| bpf_error(ifname, "", e))?;
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
        Ok(XdpProgram { link, prog, map, mode, ifname: ifname.to_owned(), queues })
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
