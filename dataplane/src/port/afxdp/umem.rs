//! The UMEM: the frame pool of one polling thread, registered with the
//! kernel once and shared by every AF_XDP socket of that thread.
//!
//! The first socket registers the region (`XDP_UMEM_REG`); every later one,
//! on any interface or queue, binds with `XDP_SHARED_UMEM` naming a socket
//! that is still bound, and brings its own fill and completion rings. When
//! the last socket closes, the kernel forgets the UMEM, and the next socket
//! registers it again. This bookkeeping is control-plane work under a mutex.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::port::{Region, FRAME_SIZE};

/// A pool's memory as an AF_XDP UMEM, shared by the sockets of one thread.
///
/// Create it on the control thread from the polling thread's
/// [`Pool::region`](crate::port::Pool::region), open ports with it, then
/// move the ports to the thread that owns the pool.
#[derive(Debug)]
pub struct Umem {
    region: Arc<Region>,
    /// Sockets currently bound to this UMEM (any of them can be shared).
    bound: Mutex<Vec<RawFd>>,
}

/// What a new socket must do to join the UMEM (held under its lock).
pub(crate) enum Join {
    /// No socket is bound: register the region on the new socket.
    Register,
    /// Bind with `XDP_SHARED_UMEM` to this bound socket.
    Share(RawFd),
}

impl Umem {
    /// Wraps `region` (whose length must be a whole number of frames).
    pub fn new(region: Arc<Region>) -> io::Result<Arc<Umem>> {
        if region.is_empty() || region.len() & (FRAME_SIZE - 1) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "UMEM region must be a non-empty whole number of frames",
            ));
        }
        Ok(Arc::new(Umem { region, bound: Mutex::new(Vec::new()) }))
    }

    /// The memory behind the UMEM.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// Number of frame chunks.
    pub fn frames(&self) -> usize {
        self.region.len() / FRAME_SIZE
    }

    /// Number of sockets bound to the UMEM right now.
    pub fn sockets(&self) -> usize {
        self.lock().len()
    }

    /// The `XDP_UMEM_REG` argument for this region: 2048-byte chunks, no
    /// extra headroom, so received data starts `XDP_PACKET_HEADROOM` (256
    /// = [`HEADROOM`](crate::port::HEADROOM)) into its chunk.
    pub(crate) fn reg(&self) -> libc::xdp_umem_reg {
        libc::xdp_umem_reg {
            addr: self.region.as_ptr() as u64,
            len: self.region.len() as u64,
            chunk_size: FRAME_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        }
    }

    /// Locks the list of bound sockets. Hold it from choosing how to join
    /// until the new socket is bound (or closed), so the shared socket
    /// cannot close in between.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<RawFd>> {
        // A panic while holding the lock leaves the list valid.
        self.bound.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How the next socket joins, given the locked list.
    pub(crate) fn join(bound: &[RawFd]) -> Join {
        match bound.first() {
            None => Join::Register,
            Some(&fd) => Join::Share(fd),
        }
    }
}
