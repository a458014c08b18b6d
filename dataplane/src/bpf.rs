//! The bpf(2) syscall: its attribute layouts, loading programs, maps and
//! their elements, and test runs; and [`asm`], the assembler every BPF
//! program of rvs (and of rvs-bench) is written with. The AF_XDP layer
//! attaches what rvs loads; tools that bring their own XDP programs
//! (rvs-bench's generator and sink) use the building blocks at the end.

pub mod asm;

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

// bpf(2) commands.
pub(crate) const BPF_MAP_CREATE: libc::c_int = 0;
pub(crate) const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
pub(crate) const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_TEST_RUN: libc::c_int = 10;
const BPF_LINK_CREATE: libc::c_int = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// `BPF_XDP`, the XDP attach type.
pub(crate) const BPF_XDP: u32 = 37;
/// `BPF_TCX_INGRESS`, the tcx ingress attach type (kernel 6.6 or later).
pub(crate) const BPF_TCX_INGRESS: u32 = 46;

/// `bpf_attr` for `BPF_MAP_CREATE` (the leading fields; the kernel zeroes
/// the rest of its union when `size` is smaller than its own).
#[repr(C)]
#[derive(Default)]
pub(crate) struct MapCreateAttr {
    pub(crate) map_type: u32,
    pub(crate) key_size: u32,
    pub(crate) value_size: u32,
    pub(crate) max_entries: u32,
    pub(crate) map_flags: u32,
    pub(crate) inner_map_fd: u32,
    pub(crate) numa_node: u32,
    pub(crate) map_name: [u8; 16],
    pub(crate) map_ifindex: u32,
}

/// `bpf_attr` for `BPF_MAP_*_ELEM`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct MapElemAttr {
    pub(crate) map_fd: u32,
    pub(crate) _pad: u32,
    pub(crate) key: u64,
    pub(crate) value: u64,
    pub(crate) flags: u64,
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

/// `bpf_attr` for `BPF_LINK_CREATE` (the kernel zeroes the per-type
/// extras: for tcx, no anchor and any revision).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// Attaches `prog` to interface `ifindex` (of the calling thread's network
/// namespace) at `attach_type` through a bpf_link, which detaches when the
/// returned fd is closed or the process dies.
pub(crate) fn link_create(prog: &OwnedFd, ifindex: u32, attach_type: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr { prog_fd: prog.as_raw_fd() as u32, target_ifindex: ifindex, attach_type, flags };
    sys_bpf(BPF_LINK_CREATE, &mut attr).map(owned)
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
    pub(crate) code: u8,
    /// dst_reg in the low nibble, src_reg in the high one (little endian).
    pub(crate) regs: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

impl Insn {
    /// An instruction from its opcode, registers, offset and immediate.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn { code, regs: (src << 4) | (dst & 0xf), off, imm }
    }
}

pub(crate) const BPF_PSEUDO_MAP_FD: u8 = 1;

/// Runs one bpf(2) command on `attr`; returns the syscall's result.
pub(crate) fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
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
pub(crate) fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

pub(crate) fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    let b = s.as_bytes();
    let l = b.len().min(15);
    n[..l].copy_from_slice(&b[..l]);
    n
}

/// An XSKMAP of `entries` AF_XDP sockets (by receive queue).
pub fn create_xskmap(entries: u32) -> io::Result<OwnedFd> {
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
pub(crate) fn load_program(insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    load_typed(insns, name, BPF_PROG_TYPE_XDP, BPF_XDP, "XDP")
}

/// Loads `insns` as a tc (`sched_cls`) program named `name`, for a tcx
/// link; on failure the error carries the verifier's log.
pub fn load_tc(insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    load_typed(insns, name, BPF_PROG_TYPE_SCHED_CLS, 0, "tc")
}

fn load_typed(insns: &[Insn], name: &str, prog_type: u32, attach: u32, kind: &str) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = ProgLoadAttr {
            prog_type,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name16(name),
            expected_attach_type: attach,
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
            let mut log = vec![0u8; 256 * 1024];
            let _ = attempt(Some(&mut log));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            // The verdict is at the end of a long log.
            let text: Vec<&str> = text.trim().lines().collect();
            let text = text[text.len().saturating_sub(40)..].join(" | ");
            if text.is_empty() {
                Err(io::Error::new(e.kind(), format!("loading the {kind} program: {e}")))
            } else {
                Err(io::Error::new(e.kind(), format!("loading the {kind} program: {e}; verifier: {text}")))
            }
        }
    }
}

/// Runs the XDP program `prog` once on `frame` (BPF_PROG_TEST_RUN, queue 0)
/// and returns its action. The kernel refuses frames shorter than an
/// Ethernet header (14 bytes) with EINVAL, before running the program.
pub(crate) fn test_run(prog: RawFd, frame: &[u8]) -> io::Result<u32> {
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

// Building blocks for tools that bring their own XDP programs (rvs-bench's
// traffic generator and drop counter). The switch itself does not use them.

const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_MAP_GET_NEXT_KEY: libc::c_int = 4;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `BPF_MAP_TYPE_LRU_HASH`, for [`create_map`]: a full map forgets its
/// least recently used entry to take a new one.
pub const BPF_MAP_TYPE_LRU_HASH: u32 = 9;

/// `BPF_MAP_TYPE_HASH`, for [`create_map`].
pub const BPF_MAP_TYPE_HASH: u32 = 1;
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

/// Bytes one CPU's slot takes in a per-CPU map value as userspace sees it:
/// the value size rounded up to 8.
pub fn per_cpu_slot(value_size: u32) -> usize {
    (value_size as usize).div_ceil(8) * 8
}

/// Bytes of a per-CPU map value as userspace reads and writes it: one
/// [`per_cpu_slot`] per possible CPU.
pub fn per_cpu_len(value_size: u32) -> io::Result<usize> {
    static CPUS: OnceLock<Result<usize, String>> = OnceLock::new();
    let cpus = CPUS.get_or_init(|| {
        let path = "/sys/devices/system/cpu/possible";
        let s = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
        count_cpus(&s).ok_or_else(|| format!("{path}: cannot parse {s:?}"))
    });
    match cpus {
        Ok(n) => Ok(n * per_cpu_slot(value_size)),
        Err(e) => Err(io::Error::other(e.clone())),
    }
}

/// CPUs in a kernel CPU list such as `0-3,5`.
fn count_cpus(list: &str) -> Option<usize> {
    list.trim().split(',').try_fold(0, |n, part| {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b) = (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?);
        (b >= a).then(|| n + b - a + 1)
    })
}

/// Removes `key` from `map`.
pub fn map_delete(map: &OwnedFd, key: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr { map_fd: map.as_raw_fd() as u32, key: key.as_ptr() as u64, ..Default::default() };
    sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr).map(drop)
}

/// The key after `key` in `map` (the first with `None`), written into
/// `next`; false when there is none.
pub fn map_next_key(map: &OwnedFd, key: Option<&[u8]>, next: &mut [u8]) -> io::Result<bool> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.map_or(0, |k| k.as_ptr() as u64),
        // `next_key` shares the place of `value` in the attribute union.
        value: next.as_mut_ptr() as u64,
        ..Default::default()
    };
    match sys_bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
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
    run_once(prog, frame, &mut [])
}

/// One plain test run of `prog` on `frame`: its return code and the frame
/// as it left it; the context comes back into `ctx` (none if empty).
fn run_once(prog: &OwnedFd, frame: &[u8], ctx: &mut [u8]) -> io::Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_size_out: out.len() as u32,
        data_out: out.as_mut_ptr() as u64,
        ctx_size_out: ctx.len() as u32,
        ctx_out: if ctx.is_empty() { 0 } else { ctx.as_mut_ptr() as u64 },
        repeat: 1,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    out.truncate(attr.data_size_out as usize);
    Ok((attr.retval, out))
}

/// How long `prog` (XDP or tc) takes on `frame`, as the kernel times it
/// over `repeat` runs (plain `BPF_PROG_TEST_RUN`, nothing is sent): the
/// mean per run.
pub fn test_run_time(prog: &OwnedFd, frame: &[u8], repeat: u32) -> io::Result<std::time::Duration> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat: repeat.max(1),
        ..Default::default()
    };
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(std::time::Duration::from_nanos(u64::from(attr.duration)))
}

/// What a test run of a tc program gave: its return code, the frame as it
/// left it, and `skb->cb[0..5]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkbRun {
    /// The program's return code (`TC_ACT_*`).
    pub retval: u32,
    /// The frame's bytes afterwards (a tag kept in the skb is not in them).
    pub frame: Vec<u8>,
    /// The skb's control block.
    pub cb: [u32; 5],
}

/// Size of `struct __sk_buff`, the context of a tc program's test run.
const SKB_CTX_LEN: usize = 192;

/// Runs the tc program `prog` once on a copy of `frame` (plain
/// `BPF_PROG_TEST_RUN`: an skb is built, nothing is sent).
pub fn test_run_skb(prog: &OwnedFd, frame: &[u8]) -> io::Result<SkbRun> {
    let mut ctx = [0u8; SKB_CTX_LEN];
    let (retval, frame) = run_once(prog, frame, &mut ctx)?;
    let word = |i: usize| u32::from_ne_bytes(ctx[48 + 4 * i..52 + 4 * i].try_into().expect("4 bytes"));
    Ok(SkbRun { retval, frame, cb: [word(0), word(1), word(2), word(3), word(4)] })
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
        assert_eq!(size_of::<LinkCreateAttr>(), 16);
        assert_eq!(offset_of!(LinkCreateAttr, attach_type), 8);
        assert_eq!(offset_of!(LinkCreateAttr, flags), 12);
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
    fn name_is_truncated_and_terminated() {
        let n = name16("a_very_long_name_indeed");
        assert_eq!(n[15], 0);
        assert_eq!(&n[..3], b"a_v");
    }

    #[test]
    fn cpu_lists_count() {
        assert_eq!(count_cpus("0-1\n"), Some(2));
        assert_eq!(count_cpus("0"), Some(1));
        assert_eq!(count_cpus("0-3,5,7-8"), Some(7));
        assert_eq!(count_cpus("3-1"), None);
        assert_eq!(count_cpus("x"), None);
        assert_eq!((per_cpu_slot(4), per_cpu_slot(8), per_cpu_slot(12)), (8, 8, 16));
    }
}
