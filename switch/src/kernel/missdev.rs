//! The device where a port's TC program sends the frames it cannot handle.
//!
//! The tc executor's program on a port redirects its misses into the outer
//! end of a veth pair that rvsd owns; rvsd reads them at the inner end with
//! AF_XDP. The inner end lives in a network namespace private to this
//! process (made on first use, held only by an open descriptor), so no one
//! else sees it, and when rvsd dies, even by SIGKILL, the namespace goes
//! and the kernel deletes both ends with it.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

use rvs_dataplane::port::ethtool::set_features;
use rvs_dataplane::port::netns::in_netns_fd;

use super::netlink::{create_veth, delete_link, find_link, kernel_errno, set_link_up, VethSpec};

/// A veth pair owned by this rvsd: `outer` lives in rvsd's own network
/// namespace (the TC program redirects misses into it), `inner` in a
/// private network namespace that only this process holds (rvs attaches XDP
/// and AF_XDP sockets there). Dropping it deletes the pair.
#[derive(Debug)]
pub struct MissDevice {
    outer_name: String,
    inner_name: String,
    outer_ifindex: u32,
    inner_ifindex: u32,
    netns: BorrowedFd<'static>,
}

impl MissDevice {
    /// Creates the pair for port device `port_ifindex`: `rvsm{port_ifindex}`
    /// in our namespace, `m{port_ifindex}` in the private one, each with
    /// `queues` receive and transmit queues and MTU `mtu`, both up. A stale
    /// veth named `rvsm{port_ifindex}` in our namespace is deleted first.
    ///
    /// Errors are one line naming the device (which names the port).
    pub fn create(port_ifindex: u32, queues: u32, mtu: u32) -> io::Result<MissDevice> {
        let outer_name = format!("rvsm{port_ifindex}");
        let inner_name = format!("m{port_ifindex}");
        let fail = |e: io::Error| io::Error::new(e.kind(), format!("creating miss device {outer_name}: {e}"));
        if queues == 0 {
            return Err(fail(io::Error::new(io::ErrorKind::InvalidInput, "no queues")));
        }
        let netns = private_netns().map_err(fail)?;
        if let Some(stale) = find_link(&outer_name).map_err(fail)? {
            if stale.kind.as_deref() != Some("veth") {
                return Err(fail(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{outer_name} exists and is not a veth ({}); not deleting it", kind_name(&stale.kind)),
                )));
            }
            match delete_link(stale.index) {
                Ok(()) => tracing::info!("miss device {outer_name}: deleted a stale one (index {})", stale.index),
                Err(e) if kernel_errno(&e) == Some(libc::ENODEV) => {} // gone meanwhile
                Err(e) => return Err(fail(io::Error::new(e.kind(), format!("deleting the stale one: {e}")))),
            }
        }
        let spec = VethSpec { name: &outer_name, peer: &inner_name, peer_netns: Some(netns), mtu, queues };
        let outer = create_veth(&spec).map_err(fail)?;
        let mut dev = MissDevice {
            outer_ifindex: outer.index,
            inner_ifindex: 0, // set below, once it is up
            outer_name: outer_name.clone(),
            inner_name,
            netns,
        };
        // The kernel cannot bring the peer up in the creating request (see
        // create_veth): bring it up in its namespace, found by name, which
        // is ours alone there. Dropping `dev` on failure deletes the pair.
        let inner = dev.inner_name.clone();
        let index = dev
            .in_private(move || {
                let l = find_link(&inner)?.ok_or_else(|| io::Error::other(format!("its peer {inner} is missing")))?;
                set_link_up(l.index, true).map(|()| l.index)
            })
            .map_err(fail)?;
        dev.inner_ifindex = index;
        // A tag the kernel keeps in an skb's metadata would not reach the
        // XDP program at the far end, nor rvs: the outer end writes tags
        // into the frame as it sends.
        set_features(dev.outer_ifindex, &[("tx-vlan-hw-insert", false), ("tx-vlan-stag-hw-insert", false)])
            .map_err(fail)?;
        Ok(dev)
    }

    /// Index of the outer end, in our namespace (where the TC program
    /// redirects to).
    pub fn outer_ifindex(&self) -> u32 {
        self.outer_ifindex
    }

    /// Name of the outer end, in our namespace.
    pub fn outer_name(&self) -> &str {
        &self.outer_name
    }

    /// Index of the inner end, in the private namespace.
    pub fn inner_ifindex(&self) -> u32 {
        self.inner_ifindex
    }

    /// Name of the inner end, in the private namespace.
    pub fn inner_name(&self) -> &str {
        &self.inner_name
    }

    /// Runs `f` on a short-lived thread inside the private namespace, where
    /// the inner end is; sockets it opens stay in that namespace.
    pub fn in_private<T: Send, F: FnOnce() -> io::Result<T> + Send>(&self, f: F) -> io::Result<T> {
        in_netns_fd(self.netns.try_clone_to_owned()?, "rvs-private", f)
    }
}

impl Drop for MissDevice {
    fn drop(&mut self) {
        match delete_link(self.outer_ifindex) {
            Err(e) if kernel_errno(&e) != Some(libc::ENODEV) => {
                tracing::warn!("miss device {}: {e}", self.outer_name);
            }
            _ => {}
        }
    }
}

fn kind_name(kind: &Option<String>) -> &str {
    kind.as_deref().unwrap_or("no kind: a physical device")
}

/// The private network namespace, made on first success and held for the
/// life of the process.
static NETNS: OnceLock<OwnedFd> = OnceLock::new();
/// Serializes making it, so two callers do not make two.
static NETNS_MAKING: Mutex<()> = Mutex::new(());

/// The private network namespace: made on first call (a failure is
/// returned, and the next call tries again), then the same one.
fn private_netns() -> io::Result<BorrowedFd<'static>> {
    if let Some(fd) = NETNS.get() {
        return Ok(fd.as_fd());
    }
    let _making = NETNS_MAKING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(fd) = NETNS.get() {
        return Ok(fd.as_fd());
    }
    let fd =
        new_netns().map_err(|e| io::Error::new(e.kind(), format!("making rvs's private network namespace: {e}")))?;
    Ok(NETNS.get_or_init(|| fd).as_fd())
}

/// A new network namespace, open: a thread unshares into it and opens it,
/// then ends; the namespace lives as long as the descriptor.
fn new_netns() -> io::Result<OwnedFd> {
    std::thread::Builder::new()
        .name("rvs-netns-new".into())
        .spawn(|| {
            // SAFETY: unshare(2) with a constant flag; it moves only this
            // fresh thread, which runs nothing else and ends below, into a
            // new network namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // std opens with O_CLOEXEC.
            Ok(OwnedFd::from(File::open("/proc/thread-self/ns/net")?))
        })?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port index no real device has, distinct per test (`k`) and per
    /// test process.
    fn fake_port(k: u32) -> u32 {
        4_000_000_000 + (std::process::id() % 1_000_000) * 10 + k
    }

    fn sys(name: &str, what: &str) -> Option<String> {
        std::fs::read_to_string(format!("/sys/class/net/{name}/{what}")).ok().map(|s| s.trim().to_string())
    }

    /// Skips (returns true) when not root: the tests make devices.
    fn not_root() -> bool {
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        let uid = unsafe { libc::geteuid() };
        if uid != 0 {
            eprintln!("skipped: needs root");
        }
        uid != 0
    }

    #[test]
    fn creates_both_ends_and_drop_deletes_them() {
        if not_root() {
            return;
        }
        let port = fake_port(1);
        let dev = MissDevice::create(port, 3, 3000).unwrap();
        assert_eq!(dev.outer_name(), format!("rvsm{port}"));
        assert!(dev.outer_name().len() < libc::IFNAMSIZ);

        // The outer end, in our namespace.
        let outer = find_link(dev.outer_name()).unwrap().expect("outer end exists");
        assert_eq!(outer.index, dev.outer_ifindex());
        assert_eq!(outer.kind.as_deref(), Some("veth"));
        assert_eq!(outer.mtu, Some(3000));
        assert!(outer.up);
        assert_eq!((outer.rx_queues, outer.tx_queues), (Some(3), Some(3)));
        assert_eq!(sys(dev.outer_name(), "mtu").as_deref(), Some("3000"));
        assert_eq!(sys(dev.outer_name(), "ifindex"), Some(dev.outer_ifindex().to_string()));
        // The carrier is on only when the peer is up too.
        assert_eq!(sys(dev.outer_name(), "carrier").as_deref(), Some("1"));
        assert!(find_link(dev.inner_name()).unwrap().is_none(), "the inner end is not in our namespace");

        // The inner end, in the private namespace, where the outer is not.
        let (inner, outer_there) =
            dev.in_private(|| Ok((find_link(dev.inner_name())?, find_link(dev.outer_name())?))).unwrap();
        let inner = inner.expect("inner end exists in the private namespace");
        assert!(outer_there.is_none());
        assert_eq!(inner.index, dev.inner_ifindex());
        assert_eq!(inner.mtu, Some(3000));
        assert!(inner.up);
        assert_eq!((inner.rx_queues, inner.tx_queues), (Some(3), Some(3)));

        // A socket there sees it too (SIOCGIFINDEX), and not in ours.
        let idx_there = dev.in_private(|| ioctl_ifindex(dev.inner_name())).unwrap();
        assert_eq!(idx_there, dev.inner_ifindex());
        assert!(ioctl_ifindex(dev.inner_name()).is_err());

        let (outer_name, inner_name) = (dev.outer_name().to_string(), dev.inner_name().to_string());
        drop(dev);
        assert!(find_link(&outer_name).unwrap().is_none(), "outer end deleted");
        assert!(sys(&outer_name, "mtu").is_none());
        let netns = private_netns().unwrap().try_clone_to_owned().unwrap();
        let inner_after = in_netns_fd(netns, "rvs-private", || find_link(&inner_name)).unwrap();
        assert!(inner_after.is_none(), "inner end deleted with it");
    }

    #[test]
    fn a_stale_device_is_replaced() {
        if not_root() {
            return;
        }
        let port = fake_port(2);
        let first = MissDevice::create(port, 1, 1500).unwrap();
        let stale = first.outer_ifindex();
        std::mem::forget(first);
        let second = MissDevice::create(port, 2, 2000).unwrap();
        assert_ne!(second.outer_ifindex(), stale);
        let l = find_link(second.outer_name()).unwrap().unwrap();
        assert_eq!((l.index, l.mtu, l.rx_queues), (second.outer_ifindex(), Some(2000), Some(2)));
        let name = second.outer_name().to_string();
        drop(second);
        assert!(find_link(&name).unwrap().is_none());
    }

    #[test]
    fn errors_name_the_device() {
        if not_root() {
            return;
        }
        let port = fake_port(3);
        let e = MissDevice::create(port, 0, 1500).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), format!("creating miss device rvsm{port}: no queues"));
        // An MTU the veth driver refuses: the kernel's error, with context.
        let e = MissDevice::create(port, 1, 1_000_000).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with(&format!("creating miss device rvsm{port}: creating veth rvsm{port}")), "{text}");
        assert!(find_link(&format!("rvsm{port}")).unwrap().is_none(), "nothing left behind");
    }

    /// SIOCGIFINDEX of `name` on a socket of the calling thread's namespace.
    fn ioctl_ifindex(name: &str) -> io::Result<u32> {
        // SAFETY: socket(2) with constant arguments; checked below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: ifreq is plain data; all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(name.as_bytes().iter().take(libc::IFNAMSIZ - 1)) {
            *d = *s as libc::c_char;
        }
        // SAFETY: `req` is a live ifreq the kernel reads the name from and
        // writes the index into; `sock` is an open socket.
        let rc = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&sock), libc::SIOCGIFINDEX, &mut req) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: SIOCGIFINDEX filled the ifru_ifindex member of the union.
        Ok(unsafe { req.ifr_ifru.ifru_ifindex } as u32)
    }
}
