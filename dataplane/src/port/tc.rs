//! The `tc` executor on an interface: the kernel fast path's program
//! ([`crate::fastpath::program`]) at tcx ingress, through a bpf_link, so
//! that the kernel detaches it when the last file descriptor goes away
//! (even on SIGKILL) and no qdisc or filter is left behind.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::afxdp::iface;
use crate::bpf::{link_create, load_tc, BPF_TCX_INGRESS};
use crate::fastpath::program::{program, Hook};
use crate::fastpath::KernelTables;
use crate::ids::PortId;

/// A tc ingress program attached to one interface. Dropping it detaches
/// it.
#[derive(Debug)]
pub struct TcProgram {
    // Field order is drop order: link first (detach), then the program.
    link: OwnedFd,
    prog: OwnedFd,
    ifname: String,
}

impl TcProgram {
    /// Attaches the `tc` executor for port `me` to the ingress of `ifname`
    /// (in the calling thread's network namespace), reading `tables`;
    /// its misses are redirected into device `miss`.
    pub fn attach_fast(ifname: &str, me: PortId, tables: &KernelTables, miss: u32) -> io::Result<TcProgram> {
        let ifindex = iface::ifindex(ifname)?;
        let ctx = |what: &str, e: io::Error| {
            let hint = match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => " (needs root, or CAP_BPF and CAP_NET_ADMIN)",
                Some(libc::EINVAL) => " (tcx needs kernel 6.6 or later)",
                _ => "",
            };
            io::Error::new(e.kind(), format!("{ifname}: {what}: {e}{hint}"))
        };
        let prog = load_tc(&program(Hook::Tc { miss }, me, &tables.maps()), "rvs_fast_tc")
            .map_err(|e| ctx("loading the tc executor", e))?;
        let link = link_create(&prog, ifindex, BPF_TCX_INGRESS, 0).map_err(|e| ctx("attaching at tcx ingress", e))?;
        Ok(TcProgram { link, prog, ifname: ifname.to_owned() })
    }

    /// The interface it is attached to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// File descriptor of the program.
    pub fn prog_fd(&self) -> RawFd {
        self.prog.as_raw_fd()
    }

    /// File descriptor of the bpf_link.
    pub fn link_fd(&self) -> RawFd {
        self.link.as_raw_fd()
    }
}
