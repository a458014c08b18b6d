//! AF_XDP ports: our own loader, UMEM and rings on libc.
//!
//! Control thread: attach an [`XdpProgram`] to each interface, make one
//! [`Umem`] per polling thread from that thread's pool region, open an
//! [`AfXdpPort`] per interface queue and [`register`](AfXdpPort::register)
//! it with the interface's program. Polling thread: drive the ports through
//! the [`Port`](crate::port::Port) trait and call `release` before dropping
//! them. Dropping the `XdpProgram` (or the process dying) detaches it.

mod bpf;
mod filter;
pub mod iface;
mod port;
mod ring;
mod socket;
mod umem;

pub use bpf::{XdpMode, XdpProgram};
pub use port::{AfXdpPort, XskConfig, XskCounters};
pub use socket::XdpStats;
pub use umem::Umem;
