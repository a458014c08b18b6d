//! A port whose two directions are two ports: for the `tc` executor, its
//! misses arrive on the port's miss device (an AF_XDP socket there) while
//! frames rvs sends leave through the port's own device (a transmit-only
//! AF_XDP socket, which needs no XDP program on it).

use std::io;
use std::os::fd::RawFd;

use super::{Desc, Pool, Port};

/// Receives from `rx`, sends through `tx`.
#[derive(Debug)]
pub struct SplitPort<R, T> {
    rx: R,
    tx: T,
}

impl<R: Port, T: Port> SplitPort<R, T> {
    /// The port made of `rx` (only received from) and `tx` (only sent to).
    pub fn new(rx: R, tx: T) -> SplitPort<R, T> {
        SplitPort { rx, tx }
    }
}

impl<R: Port, T: Port> Port for SplitPort<R, T> {
    fn recv(&mut self, pool: &mut Pool, out: &mut [Desc]) -> io::Result<usize> {
        self.rx.recv(pool, out)
    }

    fn send(&mut self, pool: &mut Pool, frames: &[Desc]) -> usize {
        self.tx.send(pool, frames)
    }

    fn flush(&mut self, pool: &mut Pool) -> io::Result<()> {
        let rx = self.rx.flush(pool);
        let tx = self.tx.flush(pool);
        rx.and(tx)
    }

    fn release(&mut self, pool: &mut Pool) {
        self.rx.release(pool);
        self.tx.release(pool);
    }

    fn kernel_drops(&self) -> u64 {
        self.rx.kernel_drops() + self.tx.kernel_drops()
    }

    fn rx_fd(&self) -> Option<RawFd> {
        self.rx.rx_fd()
    }

    fn tx_pending(&self) -> bool {
        self.tx.tx_pending()
    }

    fn fill_demand(&self) -> u32 {
        self.rx.fill_demand() + self.tx.fill_demand()
    }

    fn set_fill_share(&mut self, buffers: u32) {
        // Only the receiving side keeps buffers with the kernel.
        self.rx.set_fill_share(buffers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it was asked to do.
    #[derive(Default)]
    struct Probe {
        sent: usize,
        received: usize,
        flushed: usize,
        released: bool,
    }

    impl Port for Probe {
        fn recv(&mut self, _: &mut Pool, out: &mut [Desc]) -> io::Result<usize> {
            self.received += 1;
            Ok(out.len().min(1))
        }
        fn send(&mut self, _: &mut Pool, frames: &[Desc]) -> usize {
            self.sent += frames.len();
            frames.len()
        }
        fn flush(&mut self, _: &mut Pool) -> io::Result<()> {
            self.flushed += 1;
            Ok(())
        }
        fn release(&mut self, _: &mut Pool) {
            self.released = true;
        }
        fn kernel_drops(&self) -> u64 {
            1
        }
    }

    #[test]
    fn each_direction_goes_to_its_own_port() {
        let mut pool = Pool::new(8).expect("pool");
        let mut p = SplitPort::new(Probe::default(), Probe::default());
        let mut out = [Desc::default(); 4];
        assert_eq!(p.recv(&mut pool, &mut out).unwrap(), 1);
        assert_eq!(p.send(&mut pool, &out[..3]), 3);
        p.flush(&mut pool).unwrap();
        p.release(&mut pool);
        assert_eq!((p.rx.received, p.rx.sent, p.tx.received, p.tx.sent), (1, 0, 0, 3));
        assert_eq!((p.rx.flushed, p.tx.flushed), (1, 1));
        assert!(p.rx.released && p.tx.released);
        assert_eq!(p.kernel_drops(), 2);
    }
}
