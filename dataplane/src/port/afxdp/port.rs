//! [`AfXdpPort`]: one AF_XDP socket (interface + queue) as a [`Port`].

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use super::program::XdpProgram;
use super::socket::{XdpStats, XskSocket};
use super::umem::Umem;
use crate::port::{Desc, Pool, Port, FRAME_SIZE, MIN_FILL};

/// Frames the kernel sends per `sendto` in copy mode.
const TX_PER_KICK: u32 = 32;

/// Sizes for an [`AfXdpPort`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XskConfig {
    /// Entries in each of the four rings (a power of two).
    pub ring_size: u32,
    /// The most receive buffers to keep in the fill ring (at most
    /// `ring_size`): a busy socket grows to it while its share of the pool
    /// allows ([`Port::set_fill_share`]); an idle one keeps [`MIN_FILL`].
    pub fill_target: u32,
}

impl Default for XskConfig {
    fn default() -> XskConfig {
        XskConfig { ring_size: 4096, fill_target: 2048 }
    }
}

/// How many receive buffers a socket keeps with the kernel.
///
/// Buffers in a fill ring come back only as frames arrive, so a socket
/// starts with few and doubles them whenever the kernel took more than
/// half of them between two refills (a burst came close to running it
/// dry), up to its share of the pool. Idle sockets then hold [`MIN_FILL`]
/// each, and a thread's sockets together stay within its budget however
/// they come and go (one that grew and went quiet keeps what it has until
/// frames arrive on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FillLevel {
    max: u32,
    share: u32,
    target: u32,
}

impl FillLevel {
    /// At most `max` buffers (0: a socket that never receives).
    fn new(max: u32) -> FillLevel {
        FillLevel { max, share: max, target: max.min(MIN_FILL) }
    }

    /// How many the socket should hold now.
    fn target(&self) -> u32 {
        self.target
    }

    /// The most it may ever hold.
    fn max(&self) -> u32 {
        self.max
    }

    /// Before a refill, with `left` buffers still in the fill ring: grows
    /// the target if the kernel took more than half of it since the last
    /// refill. (Frames received are no measure: a round takes at most a
    /// batch off the receive ring, however many wait there.)
    fn before_refill(&mut self, left: u32) {
        if left.saturating_mul(2) < self.target && self.target < self.share {
            self.target = self.target.saturating_mul(2).min(self.share);
        }
    }

    /// The thread's new share for this socket.
    fn set_share(&mut self, share: u32) {
        self.share = share.min(self.max);
        self.target = self.target.min(self.share);
    }
}

/// Software counters of an [`AfXdpPort`] (the kernel's are in [`XdpStats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskCounters {
    /// `sendto` calls made to push TX.
    pub tx_kicks: u64,
    /// `sendto` calls that returned EAGAIN/EBUSY/ENOBUFS (retried later).
    pub tx_kick_busy: u64,
    /// `recvfrom` calls made because the fill ring asked for a wakeup.
    pub rx_kicks: u64,
    /// Frames handed to `send` that did not fit in the TX ring.
    pub tx_ring_full: u64,
}

/// An AF_XDP socket on one queue of one interface, as a [`Port`].
///
/// Open it on the control thread, register it with the interface's
/// [`XdpProgram`], move it to the polling thread that owns the [`Pool`]
/// behind its [`Umem`], and call [`Port::release`] there before dropping it.
#[derive(Debug)]
pub struct AfXdpPort {
    sock: Option<XskSocket>,
    /// Per chunk: 1 while the kernel holds it through this socket (in the
    /// fill ring or sent and not completed).
    owned: Vec<u8>,
    /// Chunks in the fill ring (given, not yet received).
    in_fill: u32,
    /// Frames on the TX ring not yet completed.
    in_tx: u32,
    fill: FillLevel,
    region: usize,
    ifname: String,
    queue: u32,
    counters: XskCounters,
}

impl AfXdpPort {
    /// Opens and binds a socket on `ifname` queue `queue` with the default
    /// [`XskConfig`]. Does not touch the pool: receive buffers are given to
    /// the kernel by the first [`Port::flush`] on the polling thread.
    pub fn open(ifname: &str, queue: u32, umem: &Arc<Umem>) -> io::Result<AfXdpPort> {
        Self::open_with(ifname, queue, umem, XskConfig::default())
    }

    /// [`open`](Self::open) with explicit ring sizes.
    pub fn open_with(ifname: &str, queue: u32, umem: &Arc<Umem>, cfg: XskConfig) -> io::Result<AfXdpPort> {
        let sock = XskSocket::open(ifname, queue, umem, cfg.ring_size)?;
        Ok(AfXdpPort {
            sock: Some(sock),
            owned: vec![0; umem.frames()],
            in_fill: 0,
            in_tx: 0,
            fill: FillLevel::new(cfg.fill_target.min(cfg.ring_size)),
            region: umem.region().as_ptr() as usize,
            ifname: ifname.to_owned(),
            queue,
            counters: XskCounters::default(),
        })
    }

    /// Steers this queue's frames to the port through `prog` (attached to
    /// the same interface).
    pub fn register(&self, prog: &XdpProgram) -> io::Result<()> {
        prog.register(self.queue, self.as_raw_fd())
    }

    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The queue id.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The kernel's counters for the socket (an error after `release`).
    pub fn xdp_stats(&self) -> io::Result<XdpStats> {
        match &self.sock {
            Some(s) => s.stats(),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("{} queue {}: port released", self.ifname, self.queue),
            )),
        }
    }

    /// This port's software counters.
    pub fn counters(&self) -> XskCounters {
        self.counters
    }

    /// Frames queued for TX and not yet completed.
    pub fn in_flight(&self) -> u32 {
        self.in_tx
    }

    /// Chunks the kernel holds through this port (fill ring + TX in flight).
    pub fn held(&self) -> u32 {
        self.in_fill + self.in_tx
    }

    fn check_pool(&self, pool: &Pool) {
        debug_assert_eq!(
            pool.region().as_ptr() as usize,
            self.region,
            "AfXdpPort used with a pool that is not its UMEM"
        );
    }
}

impl AsRawFd for AfXdpPort {
    /// The socket's fd, or -1 after [`Port::release`].
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_ref().map_or(-1, |s| s.fd())
    }
}

impl Port for AfXdpPort {
    fn kernel_drops(&self) -> u64 {
        // With the extended statistics the kernel counts a full RX ring
        // apart from the other drops (no fill buffer, frame too big).
        self.xdp_stats().map_or(0, |s| s.rx_dropped + s.rx_ring_full)
    }

    fn rx_fd(&self) -> Option<RawFd> {
        // Readable while its receive ring holds frames. A transmit-only
        // socket (no receive buffers) never has any.
        self.sock.as_ref().filter(|_| self.fill.max() > 0).map(|s| s.fd())
    }

    fn tx_pending(&self) -> bool {
        self.in_tx > 0
    }

    fn recv(&mut self, pool: &mut Pool, out: &mut [Desc]) -> io::Result<usize> {
        self.check_pool(pool);
        let Some(sock) = self.sock.as_mut() else {
            return Ok(0);
        };
        let (idx, n) = sock.rx.peek(out.len().min(u32::MAX as usize) as u32);
        if n == 0 {
            return Ok(0);
        }
        for (i, slot) in out.iter_mut().take(n as usize).enumerate() {
            let d = sock.rx.get(idx.wrapping_add(i as u32));
            *slot = Desc { addr: d.addr, len: d.len };
            self.owned[(d.addr / FRAME_SIZE as u64) as usize] = 0;
        }
        sock.rx.release();
        self.in_fill = self.in_fill.saturating_sub(n);
        Ok(n as usize)
    }

    fn send(&mut self, pool: &mut Pool, frames: &[Desc]) -> usize {
        self.check_pool(pool);
        let queued = match self.sock.as_mut() {
            None => 0,
            Some(sock) => {
                let (idx, n) = sock.tx.reserve(frames.len().min(u32::MAX as usize) as u32);
                for (i, f) in frames.iter().take(n as usize).enumerate() {
                    sock.tx.set(idx.wrapping_add(i as u32), libc::xdp_desc { addr: f.addr, len: f.len, options: 0 });
                    self.owned[(f.addr / FRAME_SIZE as u64) as usize] = 1;
                }
                if n > 0 {
                    sock.tx.submit();
                }
                n as usize
            }
        };
        self.in_tx += queued as u32;
        for f in &frames[queued..] {
            pool.free(f.addr);
        }
        self.counters.tx_ring_full += (frames.len() - queued) as u64;
        queued
    }

    fn flush(&mut self, pool: &mut Pool) -> io::Result<()> {
        self.check_pool(pool);
        let Some(sock) = self.sock.as_mut() else {
            return Ok(());
        };
        let mut result = Ok(());

        // Push TX: copy mode sends at most 32 frames per sendto, and says
        // EAGAIN when it stops at that budget; only EAGAIN without progress
        // (completion ring full, device busy) means "try next round".
        if self.in_tx > 0 && sock.tx.needs_wakeup() {
            let mut pending = sock.tx.pending();
            let mut kicks = pending.div_ceil(TX_PER_KICK);
            while pending > 0 && kicks > 0 {
                kicks -= 1;
                self.counters.tx_kicks += 1;
                let r = sock.kick_tx();
                let before = pending;
                pending = sock.tx.pending();
                if let Err(e) = r {
                    match e.raw_os_error() {
                        Some(libc::EAGAIN) if pending < before => {}
                        Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {
                            self.counters.tx_kick_busy += 1;
                            break;
                        }
                        _ => {
                            result = Err(io::Error::new(
                                e.kind(),
                                format!("{} queue {}: transmit: {e}", self.ifname, self.queue),
                            ));
                            break;
                        }
                    }
                }
            }
        }

        // Reap completions.
        if self.in_tx > 0 {
            let (idx, n) = sock.comp.peek(self.in_tx);
            if n > 0 {
                for i in 0..n {
                    let addr = sock.comp.get(idx.wrapping_add(i));
                    self.owned[(addr / FRAME_SIZE as u64) as usize] = 0;
                    pool.free(addr);
                }
                sock.comp.release();
                self.in_tx -= n;
            }
        }

        // Refill receive buffers.
        self.fill.before_refill(sock.fill.pending());
        if self.in_fill < self.fill.target() {
            let want = (self.fill.target() - self.in_fill).min(pool.free_count() as u32);
            let (idx, n) = sock.fill.reserve(want);
            let mut given = 0;
            while given < n {
                let Some(chunk) = pool.alloc() else { break };
                sock.fill.set(idx.wrapping_add(given), chunk);
                self.owned[(chunk / FRAME_SIZE as u64) as usize] = 1;
                given += 1;
            }
            sock.fill.cancel(n - given);
            if given > 0 {
                sock.fill.submit();
                self.in_fill += given;
            }
        }
        if self.in_fill > 0 && sock.fill.needs_wakeup() {
            self.counters.rx_kicks += 1;
            if let Err(e) = sock.kick_rx() {
                if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS))
                    && result.is_ok()
                {
                    result = Err(io::Error::new(
                        e.kind(),
                        format!("{} queue {}: receive wakeup: {e}", self.ifname, self.queue),
                    ));
                }
            }
        }
        result
    }

    fn fill_demand(&self) -> u32 {
        self.fill.max()
    }

    fn set_fill_share(&mut self, buffers: u32) {
        // Buffers already given beyond a lowered share come back as frames
        // arrive; only the refill stops short.
        self.fill.set_share(buffers);
    }

    fn release(&mut self, pool: &mut Pool) {
        self.check_pool(pool);
        // Close first: afterwards the kernel neither writes these chunks
        // nor hands them back, and every marked one is ours to free.
        drop(self.sock.take());
        for (i, o) in self.owned.iter_mut().enumerate() {
            if *o != 0 {
                *o = 0;
                pool.free((i * FRAME_SIZE) as u64);
            }
        }
        self.in_fill = 0;
        self.in_tx = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_starts_small_grows_while_busy_and_never_past_its_share() {
        let mut f = FillLevel::new(2048);
        assert_eq!(f.target(), MIN_FILL);
        // Idle, or the kernel took under half: stays where it is.
        for _ in 0..10 {
            f.before_refill(MIN_FILL);
            f.before_refill(MIN_FILL / 2);
        }
        assert_eq!(f.target(), MIN_FILL);
        // Bursts that take more than half: doubles each refill.
        let mut seen = Vec::new();
        for _ in 0..6 {
            f.before_refill(f.target() / 2 - 1);
            seen.push(f.target());
        }
        assert_eq!(seen, [256, 512, 1024, 2048, 2048, 2048]);
        // Its thread got more sockets: the share caps it, and growth too.
        f.set_share(300);
        assert_eq!(f.target(), 300);
        f.before_refill(0);
        assert_eq!(f.target(), 300);
        f.set_share(5000);
        f.before_refill(0);
        assert_eq!(f.target(), 600, "never past its own maximum, grows again from where it was");
        assert_eq!(FillLevel::new(0).target(), 0, "a transmit-only socket holds none");
    }
}
