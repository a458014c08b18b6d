//! An in-memory port for tests and benchmarks: frames injected through a
//! handle come out of `recv`, frames sent are kept for the handle to take.
//!
//! It guards its queues with a mutex because a test thread and the polling
//! thread share them; it is never used on a real data path.

use super::{Desc, Pool, Port, HEADROOM, MAX_FRAME};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
struct Queues {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    tx_limit: Option<usize>,
}

/// The port side, owned by a polling thread.
pub struct MemPort {
    q: Arc<Mutex<Queues>>,
}

/// The test side: inject received frames, take sent ones.
#[derive(Clone)]
pub struct MemHandle {
    q: Arc<Mutex<Queues>>,
}

/// A connected port and handle.
pub fn mem_port() -> (MemPort, MemHandle) {
    let q = Arc::new(Mutex::new(Queues::default()));
    (MemPort { q: q.clone() }, MemHandle { q })
}

fn lock(q: &Mutex<Queues>) -> MutexGuard<'_, Queues> {
    q.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemHandle {
    /// Queues a frame to be received by the port.
    pub fn inject(&self, frame: &[u8]) {
        lock(&self.q).rx.push_back(frame.to_vec());
    }

    /// Takes every frame the port has sent so far.
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut lock(&self.q).tx)
    }

    /// Makes `send` accept at most `n` more frames (to test full rings).
    pub fn limit_tx(&self, n: Option<usize>) {
        lock(&self.q).tx_limit = n;
    }
}

impl Port for MemPort {
    fn recv(&mut self, pool: &mut Pool, out: &mut [Desc]) -> io::Result<usize> {
        let mut q = lock(&self.q);
        let mut n = 0;
        while n < out.len() {
            let Some(chunk) = pool.alloc() else { break };
            let Some(frame) = q.rx.pop_front() else {
                pool.free(chunk);
                break;
            };
            let len = frame.len().min(MAX_FRAME);
            let d = Desc { addr: chunk + HEADROOM as u64, len: len as u32 };
            pool.data_mut(d).copy_from_slice(&frame[..len]);
            out[n] = d;
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, pool: &mut Pool, frames: &[Desc]) -> usize {
        let mut q = lock(&self.q);
        let mut sent = 0;
        for d in frames {
            if q.tx_limit.is_none_or(|l| l > 0) {
                let frame = pool.data(*d).to_vec();
                q.tx.push(frame);
                if let Some(l) = q.tx_limit.as_mut() {
                    *l -= 1;
                }
                sent += 1;
            }
            pool.free(d.addr);
        }
        sent
    }

    fn flush(&mut self, _pool: &mut Pool) -> io::Result<()> {
        Ok(())
    }

    fn release(&mut self, _pool: &mut Pool) {}
}
