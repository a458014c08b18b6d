//! Port backends behind one narrow trait.
//!
//! Frames live in a per-thread [`Pool`] (for AF_XDP it is the UMEM), and
//! move between ports as [`Desc`]riptors: an AF_XDP port hands the pipeline
//! the very buffer the kernel filled, and a frame forwarded to another
//! AF_XDP port of the same thread goes out without a copy.

pub mod afxdp;
pub mod ethtool;
pub mod mem;
pub mod netns;
pub mod pool;
pub mod split;
pub mod tap;
pub mod tc;

pub use pool::{Desc, Pool, Region, FRAME_SIZE, HEADROOM, MAX_FRAME};

use std::io;
use std::os::fd::RawFd;

/// The receive buffers an idle receiving socket keeps with the kernel, and
/// the least share of its thread's pool it is given: two bursts.
pub const MIN_FILL: u32 = 128;

/// A source and sink of Ethernet frames, polled by one thread.
///
/// Implementations must not block, allocate or make more than a bounded
/// number of syscalls per call (never one per frame where the kernel
/// offers batching).
pub trait Port: Send {
    /// Receives up to `out.len()` frames into `out`, taking buffers from
    /// `pool` as needed, and returns how many were written. The caller owns
    /// the returned descriptors and must send or free each one.
    fn recv(&mut self, pool: &mut Pool, out: &mut [Desc]) -> io::Result<usize>;

    /// Queues `frames` for transmission and takes ownership of all of them:
    /// those it cannot queue are freed back to `pool`. Returns how many were
    /// queued; the caller counts the rest as dropped.
    fn send(&mut self, pool: &mut Pool, frames: &[Desc]) -> usize;

    /// Once per poll round: pushes queued frames to the kernel, returns
    /// completed buffers to `pool` and refills receive buffers.
    fn flush(&mut self, pool: &mut Pool) -> io::Result<()>;

    /// Returns every buffer the port still holds to `pool` (called before
    /// the port is dropped, on the thread that owns the pool).
    fn release(&mut self, pool: &mut Pool);

    /// Frames the kernel dropped on their way to this port before rvs saw
    /// them (receive ring full, frame too big for a buffer), as a running
    /// total since the port opened. May cost a syscall: call it rarely.
    fn kernel_drops(&self) -> u64 {
        0
    }

    /// A descriptor that polls readable when frames wait to be received,
    /// so an idle thread can sleep on it; `None` if there is none (the
    /// thread then sleeps by the clock).
    fn rx_fd(&self) -> Option<RawFd> {
        None
    }

    /// True while frames it was given wait for the kernel (a thread must
    /// not sleep on them).
    fn tx_pending(&self) -> bool {
        false
    }

    /// Receive buffers it would keep with the kernel if its thread's pool
    /// had room for every port's (0: it keeps none).
    fn fill_demand(&self) -> u32 {
        0
    }

    /// How many receive buffers it may keep with the kernel: its share of
    /// the pool, set by its thread whenever ports come or go.
    fn set_fill_share(&mut self, _buffers: u32) {}
}
