//! One AF_XDP socket: its fd, its four mapped rings, its UMEM membership.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::iface;
use super::ring::{ConsRing, Mmap, Offsets, ProdRing};
use super::umem::{Join, Umem};

/// How long `open` retries a bind that finds its queue still busy.
const BIND_BUSY_WAIT: Duration = Duration::from_secs(2);

/// Counters the kernel keeps per AF_XDP socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Frames dropped for lack of RX ring room or other reasons.
    pub rx_dropped: u64,
    /// Invalid descriptors found on the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors found on the TX ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times a wakeup found the TX ring empty.
    pub tx_ring_empty_descs: u64,
}

/// An open, bound AF_XDP socket and its rings.
#[derive(Debug)]
pub(crate) struct XskSocket {
    pub rx: ConsRing<libc::xdp_desc>,
    pub tx: ProdRing<libc::xdp_desc>,
    pub fill: ProdRing<u64>,
    pub comp: ConsRing<u64>,
    /// `None` only while dropping.
    fd: Option<OwnedFd>,
    umem: Arc<Umem>,
}

// SAFETY: the rings point into mappings owned by this value alone; no other
// userspace thread can reach them, and the kernel side synchronises through
// the atomic indices. Moving the whole socket to another thread is sound.
unsafe impl Send for XskSocket {}

fn ctx(e: io::Error, what: String) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => " (needs root or CAP_NET_RAW)",
        Some(libc::EAFNOSUPPORT) => " (kernel without AF_XDP)",
        Some(libc::ENOMEM) | Some(libc::ENOBUFS) => " (locked memory limit? needs CAP_IPC_LOCK)",
        _ => "",
    };
    io::Error::new(e.kind(), format!("{what}: {e}{hint}"))
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` is a live value of exactly the size we pass.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            val as *const T as *const libc::c_void,
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Plain C structs from `libc` that are valid when all-zero.
trait Pod: Copy {}
impl Pod for libc::xdp_mmap_offsets {}
impl Pod for libc::xdp_statistics {}

/// Reads a `SOL_XDP` option into a `T`, failing if the kernel's size differs.
fn getsockopt<T: Pod>(fd: RawFd, opt: libc::c_int) -> io::Result<T> {
    // SAFETY: `Pod` types are integer-only C structs; all-zero is valid.
    let mut val: T = unsafe { std::mem::zeroed() };
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `val`, which we own.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_XDP, opt, &mut val as *mut T as *mut libc::c_void, &mut len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != size_of::<T>() {
        return Err(io::Error::other(format!(
            "kernel returned {len} bytes for SOL_XDP option {opt}, expected {}",
            size_of::<T>()
        )));
    }
    Ok(val)
}

impl XskSocket {
    /// Creates a socket bound to `ifname`/`queue` whose rings hold `ring_size`
    /// entries each, joining `umem`.
    pub(crate) fn open(ifname: &str, queue: u32, umem: &Arc<Umem>, ring_size: u32) -> io::Result<XskSocket> {
        if !ring_size.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ring size {ring_size} is not a power of two"),
            ));
        }
        let ifindex = iface::ifindex(ifname)?;
        let at = format!("{ifname} queue {queue}");

        // SAFETY: plain socket(2); the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(ctx(io::Error::last_os_error(), format!("{at}: AF_XDP socket")));
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // Hold the UMEM's lock until bound, so the socket we share stays open.
        let mut bound = umem.lock();
        let join = Umem::join(&bound);
        if let Join::Register = join {
            setsockopt(raw, libc::XDP_UMEM_REG, &umem.reg())
                .map_err(|e| ctx(e, format!("{at}: registering the UMEM")))?;
        }
        for (opt, name) in [
            (libc::XDP_UMEM_FILL_RING, "fill"),
            (libc::XDP_UMEM_COMPLETION_RING, "completion"),
            (libc::XDP_RX_RING, "rx"),
            (libc::XDP_TX_RING, "tx"),
        ] {
            setsockopt(raw, opt, &ring_size).map_err(|e| ctx(e, format!("{at}: sizing the {name} ring")))?;
        }
        let off: libc::xdp_mmap_offsets =
            getsockopt(raw, libc::XDP_MMAP_OFFSETS).map_err(|e| ctx(e, format!("{at}: reading ring offsets")))?;
        let (rx_o, tx_o, fr_o, cr_o) =
            (Offsets::from(off.rx), Offsets::from(off.tx), Offsets::from(off.fr), Offsets::from(off.cr));
        let map = |len, pgoff: u64, name: &str| {
            Mmap::ring(raw, len, pgoff).map_err(|e| ctx(e, format!("{at}: mapping the {name} ring")))
        };
        let rx = ConsRing::new(
            map(ConsRing::<libc::xdp_desc>::map_len(&rx_o, ring_size), libc::XDP_PGOFF_RX_RING as u64, "rx")?,
            &rx_o,
            ring_size,
        );
        let tx = ProdRing::new(
            map(ProdRing::<libc::xdp_desc>::map_len(&tx_o, ring_size), libc::XDP_PGOFF_TX_RING as u64, "tx")?,
            &tx_o,
            ring_size,
        );
        let fill = ProdRing::new(
            map(ProdRing::<u64>::map_len(&fr_o, ring_size), libc::XDP_UMEM_PGOFF_FILL_RING, "fill")?,
            &fr_o,
            ring_size,
        );
        let comp = ConsRing::new(
            map(ConsRing::<u64>::map_len(&cr_o, ring_size), libc::XDP_UMEM_PGOFF_COMPLETION_RING, "completion")?,
            &cr_o,
            ring_size,
        );

        // A sharing socket inherits copy/zero-copy and need_wakeup from the
        // UMEM's first socket; passing any of them again is EINVAL.
        let (flags, shared_fd) = match join {
            Join::Register => (libc::XDP_COPY | libc::XDP_USE_NEED_WAKEUP, 0),
            Join::Share(other) => (libc::XDP_SHARED_UMEM, other as u32),
        };
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: shared_fd,
        };
        // A socket closed just before on the same queue frees it in deferred
        // kernel work: retry EBUSY for a while (control plane only).
        let deadline = Instant::now() + BIND_BUSY_WAIT;
        let r = loop {
            // SAFETY: `sa` is a valid sockaddr_xdp of the size we pass.
            let r = unsafe {
                libc::bind(
                    raw,
                    &sa as *const libc::sockaddr_xdp as *const libc::sockaddr,
                    size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            if r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EBUSY) || Instant::now() >= deadline {
                break r;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            let hint = match e.raw_os_error() {
                Some(libc::EINVAL) => " (no such queue on the interface?)",
                Some(libc::EBUSY) => " (another AF_XDP socket is bound to this queue)",
                _ => "",
            };
            return Err(io::Error::new(e.kind(), format!("{at}: binding the AF_XDP socket: {e}{hint}")));
        }
        bound.push(raw);
        drop(bound);
        Ok(XskSocket { rx, tx, fill, comp, fd: Some(fd), umem: umem.clone() })
    }

    /// The socket's fd (valid until drop).
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Wakes the kernel to transmit (copy mode: up to 32 frames per call).
    #[inline]
    pub(crate) fn kick_tx(&self) -> io::Result<()> {
        // SAFETY: a zero-length sendto with no buffer and no address only
        // tells the kernel to process the TX ring; it reads no memory.
        let r = unsafe { libc::sendto(self.fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Wakes the kernel to use the fill ring.
    #[inline]
    pub(crate) fn kick_rx(&self) -> io::Result<()> {
        // SAFETY: a zero-length recvfrom with no buffer and no address
        // writes no memory; it only wakes the kernel's RX processing.
        let r = unsafe {
            libc::recvfrom(
                self.fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// The kernel's counters for this socket.
    pub(crate) fn stats(&self) -> io::Result<XdpStats> {
        let s: libc::xdp_statistics = getsockopt(self.fd(), libc::XDP_STATISTICS)?;
        Ok(XdpStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }
}

impl Drop for XskSocket {
    fn drop(&mut self) {
        // Leave the UMEM's list and close under its lock, so no new socket
        // picks this fd to share while (or after) it closes.
        let umem = self.umem.clone();
        let mut bound = umem.lock();
        if let Some(fd) = self.fd.take() {
            let raw = fd.as_raw_fd();
            bound.retain(|&b| b != raw);
            drop(fd);
        }
        // The rings unmap when the fields drop, after the close: harmless,
        // a mapping keeps its ring memory alive by itself.
    }
}
