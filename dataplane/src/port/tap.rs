//! Tap ports: a tap device that rvsd creates (or adopts) and switches.
//!
//! [`TapPort::open`] attaches to the tap named by the user, creating it if
//! it does not exist, marks it persistent (so the device, and the link of
//! whatever is attached to it, survive an rvsd restart) and brings it up.
//! The file descriptor is non-blocking; frames move with one `read` or
//! `write` per frame (the tap has no batched interface short of io_uring,
//! and the kernel builds one skb per frame anyway).
//!
//! A tap may live in another network namespace: the device is created
//! there from a short-lived thread (see [`in_netns`]) and the descriptor
//! then works from any thread.

use super::netns::in_netns;
use super::pool::MAX_FRAME;
use super::{Desc, Pool, Port, HEADROOM};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The tun/tap clone device.
const TUN_PATH: &CStr = c"/dev/net/tun";

/// A tap device used as a switch port.
#[derive(Debug)]
pub struct TapPort {
    fd: OwnedFd,
    name: String,
    netns: Option<String>,
    oversize: u64,
    /// The tap did not exist before [`TapPort::open`]: rvsd made it.
    created: bool,
}

impl TapPort {
    /// Opens the tap `name`, in the network namespace `netns` (a name under
    /// `/var/run/netns`) if given: creates it, or adopts an existing one
    /// (single- or multi-queue), makes it persistent and sets it up.
    ///
    /// Errors are one line naming the tap, e.g. `tap "eth0": interface
    /// "eth0" exists and is not a tap device`.
    pub fn open(name: &str, netns: Option<&str>) -> io::Result<TapPort> {
        let ctx = |e: io::Error| with_context(e, name, netns);
        ifreq_for(name).map_err(ctx)?;
        let (fd, created) = in_netns(netns, || open_here(name)).map_err(ctx)?;
        Ok(TapPort { fd, name: name.to_string(), netns: netns.map(str::to_string), oversize: 0, created })
    }

    /// True if this open created the tap; false if it adopted one.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The tap's interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace the tap lives in (`None`: rvsd's own).
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Frames read that were longer than [`MAX_FRAME`] and dropped (only
    /// possible when the tap's MTU is raised above what a chunk holds).
    pub fn oversize_drops(&self) -> u64 {
        self.oversize
    }

    /// A second handle on the same tap queue (a duplicated descriptor), so
    /// other polling threads can transmit to it.
    pub fn try_clone(&self) -> io::Result<TapPort> {
        Ok(TapPort {
            fd: self.fd.try_clone()?,
            name: self.name.clone(),
            netns: self.netns.clone(),
            oversize: 0,
            created: self.created,
        })
    }
}

impl AsRawFd for TapPort {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Port for TapPort {
    fn rx_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    /// The frames too big for a buffer ([`TapPort::oversize_drops`]): a
    /// tap has no ring of its own to overflow.
    fn kernel_drops(&self) -> u64 {
        self.oversize
    }

    /// Reads frames until the tap has none (EAGAIN), `out` is full or the
    /// pool is empty. Each frame is read to `HEADROOM` in its own chunk.
    ///
    /// The kernel cuts a frame to the buffer without saying so, so the read
    /// has one spare byte past the chunk: a frame longer than [`MAX_FRAME`]
    /// (possible only if the tap's MTU is raised above 1778) is dropped and
    /// counted in [`TapPort::oversize_drops`], never forwarded cut short.
    fn recv(&mut self, pool: &mut Pool, out: &mut [Desc]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            let Some(chunk) = pool.alloc() else { break };
            let buf = &mut pool.chunk_mut(chunk)[HEADROOM..];
            debug_assert_eq!(buf.len(), MAX_FRAME);
            // One spare byte past the chunk: a frame that reaches it is
            // longer than a chunk holds (the kernel silently cuts a frame
            // to the buffer, so a plain read could not tell).
            let mut spare = 0u8;
            let iov = [
                libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() },
                libc::iovec { iov_base: (&mut spare as *mut u8).cast(), iov_len: 1 },
            ];
            // SAFETY: both iovecs point to writable memory of their length
            // (a chunk of the pool this thread owns, a local byte) that
            // outlives the call; `fd` is an open tap.
            let r = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
            if r < 0 {
                let e = io::Error::last_os_error();
                pool.free(chunk);
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    Some(libc::EINTR) => continue,
                    // Keep what was read; the error shows again next call.
                    _ if n > 0 => break,
                    _ => return Err(e),
                }
            }
            let len = r as usize;
            if len == 0 || len > MAX_FRAME {
                pool.free(chunk);
                if len > MAX_FRAME {
                    self.oversize += 1;
                }
                continue;
            }
            out[n] = Desc { addr: chunk + HEADROOM as u64, len: len as u32 };
            n += 1;
        }
        Ok(n)
    }

    /// Writes each frame and frees it. A frame the kernel refuses on its
    /// own (shorter than an Ethernet header: EINVAL) is skipped; on
    /// EAGAIN/ENOBUFS or any other error the rest are freed unsent.
    fn send(&mut self, pool: &mut Pool, frames: &[Desc]) -> usize {
        let mut sent = 0;
        let mut i = 0;
        while i < frames.len() {
            let d = frames[i];
            let data = pool.data(d);
            // SAFETY: `data` is a readable slice of `data.len()` bytes in the
            // pool; `fd` is an open tap.
            let r = unsafe { libc::write(self.fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
            if r >= 0 {
                sent += 1;
            } else {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EINVAL | libc::EMSGSIZE | libc::EFAULT) => {}
                    _ => break,
                }
            }
            pool.free(d.addr);
            i += 1;
        }
        for d in &frames[i..] {
            pool.free(d.addr);
        }
        sent
    }

    /// Nothing to do: writes reach the kernel at once.
    fn flush(&mut self, _pool: &mut Pool) -> io::Result<()> {
        Ok(())
    }

    /// Nothing to do: a tap port holds no pool buffers between calls.
    fn release(&mut self, _pool: &mut Pool) {}
}

/// Removes the persistent tap `name` (in `netns` if given): clears its
/// persist flag, so the device goes away when the last descriptor closes.
/// Fails with "in use" while another program (an rvsd) has it open.
pub fn tap_delete(name: &str, netns: Option<&str>) -> io::Result<()> {
    let ctx = |e: io::Error| with_context(e, name, netns);
    ifreq_for(name).map_err(ctx)?;
    in_netns(netns, || {
        let fd = attach(name)?;
        // SAFETY: TUNSETPERSIST takes an integer argument, not a pointer.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, 0 as libc::c_ulong) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    })
    .map_err(ctx)
}

/// Creates or adopts the tap in the current thread's namespace; true if
/// it created it.
fn open_here(name: &str) -> io::Result<(OwnedFd, bool)> {
    let existed = interface_exists(&ifreq_for(name)?);
    let fd = attach(name)?;
    // SAFETY: TUNSETPERSIST takes an integer argument, not a pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("cannot make it persistent: {e}")));
    }
    set_up(ifreq_for(name)?)?;
    Ok((fd, !existed))
}

/// Opens the clone device and attaches it to tap `name` (creating it),
/// trying single-queue and then multi-queue.
fn attach(name: &str) -> io::Result<OwnedFd> {
    let ifr = ifreq_for(name)?;
    // SAFETY: `TUN_PATH` is a NUL-terminated path; the result is checked.
    let raw = unsafe { libc::open(TUN_PATH.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if raw < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("cannot open /dev/net/tun: {e}")));
    }
    // SAFETY: `raw` was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let base = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    let mut last = None;
    for flags in [base, base | libc::IFF_MULTI_QUEUE as libc::c_short] {
        let mut req = ifr;
        req.ifr_ifru.ifru_flags = flags;
        // SAFETY: TUNSETIFF reads and writes the `ifreq` it points to,
        // which lives on this stack frame for the whole call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) } == 0 {
            return Ok(fd);
        }
        let e = io::Error::last_os_error();
        // EINVAL: the name exists as another kind of device, or as a tap
        // with the other queue mode; anything else will not change.
        if e.raw_os_error() != Some(libc::EINVAL) {
            last = Some(e);
            break;
        }
        last = Some(e);
    }
    let e = last.unwrap_or_else(|| io::Error::other("TUNSETIFF failed"));
    Err(match e.raw_os_error() {
        Some(libc::EINVAL) if interface_exists(&ifr) => {
            io::Error::new(io::ErrorKind::AlreadyExists, format!("interface {name:?} exists and is not a tap device"))
        }
        Some(libc::EBUSY) => {
            io::Error::new(io::ErrorKind::ResourceBusy, format!("tap {name:?} is in use by another program"))
        }
        Some(libc::EPERM) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("not allowed to attach to tap {name:?} (needs CAP_NET_ADMIN or its owner)"),
        ),
        _ => io::Error::new(e.kind(), format!("cannot create tap {name:?}: {e}")),
    })
}

/// True if an interface of that name exists in this thread's namespace.
fn interface_exists(ifr: &libc::ifreq) -> bool {
    // SAFETY: `ifr_name` is NUL-terminated (built by `ifreq_for`).
    unsafe { libc::if_nametoindex(ifr.ifr_name.as_ptr()) != 0 }
}

/// Sets the interface administratively up if it is not.
fn set_up(ifr: libc::ifreq) -> io::Result<()> {
    // SAFETY: plain socket creation; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just created and is owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = ifr;
    // SAFETY: SIOCGIFFLAGS fills `ifr_flags` of the `ifreq` it points to,
    // which lives on this stack frame for the whole call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("cannot read link flags: {e}")));
    }
    // SAFETY: the kernel just wrote `ifru_flags`, the union member read here.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the `ifreq` it points to, as above.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("cannot set link up: {e}")));
    }
    Ok(())
}

/// An `ifreq` holding `name`, after checking it is a valid interface name.
/// (Built where it is used: `ifreq` holds a pointer member, so it is not
/// `Send` and cannot cross into the namespace thread.)
fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    let invalid =
        |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid interface name {name:?}: {why}")));
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() >= libc::IFNAMSIZ {
        return invalid("longer than 15 bytes");
    }
    if name == "." || name == ".." || name.bytes().any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace() || b == b':')
    {
        return invalid("contains '/', ':', whitespace or NUL");
    }
    // SAFETY: `ifreq` is plain old data (a name and a union of integers and
    // pointers); all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(ifr)
}

/// Prefixes an error with the tap (and namespace) it is about.
fn with_context(e: io::Error, name: &str, netns: Option<&str>) -> io::Error {
    let msg = match netns {
        Some(ns) => format!("tap {name:?} in netns {ns:?}: {e}"),
        None => format!("tap {name:?}: {e}"),
    };
    io::Error::new(e.kind(), msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for (name, why) in
            [("", "empty"), ("sixteen-chars-xx", "longer than 15"), ("a/b", "contains"), ("a b", "contains")]
        {
            let e = TapPort::open(name, None).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains(why), "{name:?}: {e}");
            assert!(e.to_string().starts_with("tap "), "{e}");
        }
        assert!(ifreq_for("fifteen-chars-x").is_ok());
    }

    #[test]
    fn missing_namespace_is_named() {
        let e = TapPort::open("rvst0", Some("rvs-no-such-ns-q")).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("\"rvs-no-such-ns-q\" not found"), "{s}");
        assert!(!s.contains('\n'));
    }
}
