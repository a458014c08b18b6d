//! Packet capture: frames a port receives or sends, copied by the polling
//! thread into a bounded lock-free ring that the control thread drains.
//!
//! Buffers are allocated when a capture starts and recycled; the polling
//! thread never waits: with no free buffer or a full ring, the frame is
//! counted as a capture drop and the data path goes on. With no capture
//! running the cost is one empty-list check per batch.

use crate::port::MAX_FRAME;
use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Which frames a capture takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Frames the port receives.
    In,
    /// Frames the port sends.
    Out,
    /// Both.
    Both,
}

impl Direction {
    fn takes(self, out: bool) -> bool {
        matches!((self, out), (Direction::Both, _) | (Direction::In, false) | (Direction::Out, true))
    }
}

/// One captured frame.
pub struct Captured {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Length of the frame on the wire.
    pub orig_len: u32,
    /// True if the port sent it, false if it received it.
    pub out: bool,
    len: u32,
    data: [u8; MAX_FRAME],
}

impl Captured {
    /// The captured bytes (at most the snap length).
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }
}

/// A running capture on one port.
pub struct CaptureRing {
    frames: ArrayQueue<Box<Captured>>,
    spare: ArrayQueue<Box<Captured>>,
    dropped: AtomicU64,
    snaplen: usize,
    dir: Direction,
}

impl std::fmt::Debug for CaptureRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureRing")
            .field("queued", &self.frames.len())
            .field("dropped", &self.dropped())
            .field("snaplen", &self.snaplen)
            .field("dir", &self.dir)
            .finish()
    }
}

impl CaptureRing {
    /// A ring holding up to `capacity` frames, each cut to `snaplen` bytes.
    pub fn new(capacity: usize, snaplen: u32, dir: Direction) -> Arc<CaptureRing> {
        let capacity = capacity.max(1);
        let spare = ArrayQueue::new(capacity);
        for _ in 0..capacity {
            let _ = spare.push(Box::new(Captured { ts_ns: 0, orig_len: 0, out: false, len: 0, data: [0; MAX_FRAME] }));
        }
        Arc::new(CaptureRing {
            frames: ArrayQueue::new(capacity),
            spare,
            dropped: AtomicU64::new(0),
            snaplen: (snaplen as usize).clamp(1, MAX_FRAME),
            dir,
        })
    }

    /// Polling thread: copies `frame` in if the capture wants it.
    #[inline]
    pub fn offer(&self, frame: &[u8], out: bool) {
        if !self.dir.takes(out) {
            return;
        }
        let Some(mut c) = self.spare.pop() else {
            self.dropped.fetch_add(1, Relaxed);
            return;
        };
        let n = frame.len().min(self.snaplen);
        c.data[..n].copy_from_slice(&frame[..n]);
        c.len = n as u32;
        c.orig_len = frame.len() as u32;
        c.out = out;
        c.ts_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        if let Err(c) = self.frames.push(c) {
            let _ = self.spare.push(c);
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Control thread: the oldest captured frame, if any. Give it back
    /// with `recycle` once written out.
    pub fn take(&self) -> Option<Box<Captured>> {
        self.frames.pop()
    }

    /// Returns a frame's buffer for reuse.
    pub fn recycle(&self, c: Box<Captured>) {
        let _ = self.spare.push(c);
    }

    /// Frames lost because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_cut_and_counts_drops() {
        let r = CaptureRing::new(2, 4, Direction::In);
        r.offer(&[1, 2, 3, 4, 5, 6], false);
        r.offer(&[9; 3], true); // not our direction
        r.offer(&[7; 10], false);
        r.offer(&[8; 10], false); // ring full
        assert_eq!(r.dropped(), 1);
        let a = r.take().unwrap();
        assert_eq!((a.bytes(), a.orig_len, a.out), (&[1, 2, 3, 4][..], 6, false));
        r.recycle(a);
        assert_eq!(r.take().unwrap().bytes(), &[7; 4]);
        assert!(r.take().is_none());
    }
}
