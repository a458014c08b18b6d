//! AF_XDP ports: our own loader, UMEM and rings on libc.
//!
//! Control thread: attach an [`XdpProgram`] to each interface, make one
//! [`Umem`] per polling thread from that thread's pool region, open an
//! [`AfXdpPort`] per interface queue and [`register`](AfXdpPort::register)
//! it with the interface's program. Polling thread: drive the ports through
//! the [`Port`](crate::port::Port) trait and call `release` before dropping
//! them. Dropping the `XdpProgram` (or the process dying) detaches it.
//!
//! An uplink (the host's underlay interface, which keeps its addresses and
//! the host's own traffic) gets [`XdpProgram::attach_uplink`] instead: only
//! UDP frames to the VTEPs given to [`XdpProgram::add_vtep`] reach the
//! AF_XDP sockets; everything else goes to the kernel. Register a socket on
//! every receive queue of the uplink: VTEP frames arriving on a queue
//! without one go to the kernel too.

mod bpf;
mod filter;
pub mod iface;
mod port;
mod program;
mod ring;
mod socket;
mod umem;

/// Loader building blocks for tools with their own XDP programs (rvs-bench).
pub use bpf::{
    create_map, load_xdp, map_lookup, map_update, test_run_frame, test_run_live, Insn, BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_DEVMAP, BPF_MAP_TYPE_PERCPU_ARRAY, PSEUDO_MAP_FD,
};
pub use port::{AfXdpPort, XskConfig, XskCounters};
pub use program::{attach_xdp, XdpMode, XdpProgram};
pub use socket::XdpStats;
pub use umem::Umem;
