//! Sleeping without missing anything: an idle polling thread waits in
//! `epoll` on its receive queues' descriptors and on its doorbell (an
//! eventfd) instead of waking on a timer, so that a port whose traffic the
//! kernel carries costs no CPU on rvs's cores, and the first frame after a
//! pause is picked up at once.
//!
//! Whoever gives a thread work (a command, a handed-off frame) rings its
//! doorbell; the ring is a syscall only while the thread sleeps.
//!
//! The receive descriptors are in the epoll set only while the thread
//! sleeps: a socket in an epoll set makes the kernel run epoll's callback
//! at every wakeup it signals, on the core that fills it, which cost 8 %
//! of rvs's packet rate when they stayed in.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

/// Wakes one polling thread.
#[derive(Debug)]
pub struct Doorbell {
    /// `None` if no eventfd could be made: its thread sleeps by the clock.
    fd: Option<OwnedFd>,
    /// True while the thread is (about to be) asleep.
    sleeping: AtomicBool,
}

impl Doorbell {
    /// A doorbell nobody sleeps on yet.
    pub fn new() -> Doorbell {
        // SAFETY: eventfd takes no pointers; a non-negative result is a
        // new descriptor that we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        // SAFETY: `fd` is a fresh descriptor owned by nothing else.
        let fd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) });
        Doorbell { fd, sleeping: AtomicBool::new(false) }
    }

    /// Wakes the thread if it sleeps (call after giving it work).
    pub fn ring(&self) {
        if self.sleeping.swap(false, SeqCst) {
            if let Some(fd) = &self.fd {
                let one = 1u64.to_ne_bytes();
                // SAFETY: writes 8 bytes from a live buffer to our eventfd.
                // A failure (the counter full) leaves it readable: awake.
                unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
            }
        }
    }

    /// Empties the eventfd.
    fn drain(&self) {
        if let Some(fd) = &self.fd {
            let mut buf = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a live buffer; the fd is
            // non-blocking, so an empty counter returns EAGAIN at once.
            unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        }
    }
}

impl Default for Doorbell {
    fn default() -> Doorbell {
        Doorbell::new()
    }
}

/// The epoll set a polling thread sleeps on.
#[derive(Debug)]
pub struct Waiter {
    epoll: OwnedFd,
}

impl Waiter {
    /// An epoll set holding `bell`.
    pub fn new(bell: &Doorbell) -> io::Result<Waiter> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result
        // is a new descriptor that we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nothing else.
        let w = Waiter { epoll: unsafe { OwnedFd::from_raw_fd(fd) } };
        let bell = bell.fd.as_ref().ok_or_else(|| io::Error::other("the doorbell has no eventfd"))?;
        w.watch(bell.as_raw_fd())?;
        Ok(w)
    }

    /// Wakes on `fd` becoming readable.
    fn watch(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd as u64 };
        // SAFETY: `ev` is a live epoll_event; the kernel copies it.
        let r = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        match r {
            0 => Ok(()),
            _ => match io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Stops watching `fd`.
    fn unwatch(&self, fd: RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `watch`; errors (ENOENT, EBADF) mean not watched.
        unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }

    /// Sleeps until one of `fds` is readable, `bell` rings, or `timeout`
    /// passes, unless `busy()` (asked once the bell and `fds` are armed,
    /// so that work given meanwhile is not slept through) says there is
    /// work. False if `fds` could not be watched (nothing was slept).
    pub fn sleep(&self, bell: &Doorbell, fds: &[RawFd], timeout: Duration, busy: impl FnOnce() -> bool) -> bool {
        let armed = fds.iter().take_while(|fd| self.watch(**fd).is_ok()).count();
        if armed == fds.len() {
            bell.sleeping.store(true, SeqCst);
            if !busy() {
                let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
                let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
                // SAFETY: `events` is a live array of the length we pass.
                unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, ms) };
            }
            bell.sleeping.store(false, SeqCst);
            bell.drain();
        }
        for fd in &fds[..armed] {
            self.unwatch(*fd);
        }
        armed == fds.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_ring_wakes_a_sleeper_and_costs_nothing_otherwise() {
        let bell = Arc::new(Doorbell::new());
        let w = Waiter::new(&bell).unwrap();
        // Nobody sleeps: the ring writes nothing, so a sleep times out.
        bell.ring();
        let t = Instant::now();
        assert!(w.sleep(&bell, &[], Duration::from_millis(50), || false));
        assert!(t.elapsed() >= Duration::from_millis(40), "woke without a ring");
        // A ring from another thread wakes it long before the timeout.
        let b = bell.clone();
        let ringer = std::thread::spawn(move || {
            while !b.sleeping.load(SeqCst) {
                std::thread::yield_now();
            }
            b.ring();
        });
        let t = Instant::now();
        w.sleep(&bell, &[], Duration::from_secs(30), || false);
        assert!(t.elapsed() < Duration::from_secs(20), "slept through the ring");
        ringer.join().unwrap();
        // Work found after arming: no sleep at all.
        let t = Instant::now();
        w.sleep(&bell, &[], Duration::from_secs(30), || true);
        assert!(t.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn a_readable_descriptor_wakes_it() {
        let bell = Doorbell::new();
        let w = Waiter::new(&bell).unwrap();
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both are fresh descriptors we own from here on.
        let (r, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: writes one byte from a live buffer.
        assert_eq!(unsafe { libc::write(wr.as_raw_fd(), [1u8].as_ptr().cast(), 1) }, 1);
        let t = Instant::now();
        assert!(w.sleep(&bell, &[r.as_raw_fd()], Duration::from_secs(30), || false));
        assert!(t.elapsed() < Duration::from_secs(20), "slept with data waiting");
        // Out of the set once awake: readable, but not slept on.
        let t = Instant::now();
        w.sleep(&bell, &[], Duration::from_millis(50), || false);
        assert!(t.elapsed() >= Duration::from_millis(40), "woke on a descriptor it does not sleep on");
        // A descriptor that cannot be watched: no sleep at all.
        assert!(!w.sleep(&bell, &[wr.as_raw_fd(), -1], Duration::from_secs(30), || false));
    }
}
