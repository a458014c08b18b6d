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

pub(crate) mod filter;
pub mod iface;
mod port;
mod program;
mod ring;
mod socket;
mod umem;

pub use port::{AfXdpPort, XskConfig, XskCounters};
pub use program::{attach_xdp, XdpMode, XdpProgram};
pub use socket::XdpStats;
pub use umem::Umem;
