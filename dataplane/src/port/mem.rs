//! In-memory ports. [`MemPort`], for tests: frames injected through a
//! handle come out of `recv`, frames sent are kept for the handle to take
//! (behind a mutex, as a test thread and the polling thread share them).
//! [`ReplayPort`], for benchmarks: receives one frame over and over as
//! many flows and counts what it sends, with no lock or allocation, so that what
//! a benchmark measures is the pipeline plus one copy per frame in (what
//! the kernel's copy mode costs an AF_XDP port).

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

/// Copies `frame` (cut at `MAX_FRAME`) into pool chunk `chunk`, where a
/// received frame starts.
fn load(pool: &mut Pool, chunk: u64, frame: &[u8]) -> Desc {
    let len = frame.len().min(MAX_FRAME);
    let d = Desc { addr: chunk + HEADROOM as u64, len: len as u32 };
    pool.data_mut(d).copy_from_slice(&frame[..len]);
    d
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
            out[n] = load(pool, chunk, &frame);
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

/// A benchmark port: `recv` copies the next frames of a fixed list (round
/// robin) into pool buffers; `send` counts and frees.
pub struct ReplayPort {
    template: Vec<u8>,
    flows: u32,
    /// Where in the frame the flow number goes (4 bytes, big-endian).
    flow_at: usize,
    next: u32,
    sent: Arc<std::sync::atomic::AtomicU64>,
}

impl ReplayPort {
    /// A port that receives `template` forever as `flows` flows in turn:
    /// frame k carries `k mod flows` as a big-endian u32 at `flow_at` (say,
    /// the last four bytes of a MAC address). One template rather than a
    /// stored frame per flow, so that many flows cost what the tables they
    /// fill cost, not cache misses on the source of the copy (a generator
    /// rewrites a template too). `flows` of 0 receives nothing. Returns the
    /// counter of what it sends.
    pub fn new(template: Vec<u8>, flows: u32, flow_at: usize) -> (ReplayPort, Arc<std::sync::atomic::AtomicU64>) {
        assert!(flow_at + 4 <= template.len().min(MAX_FRAME), "flow number outside the frame");
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        (ReplayPort { template, flows, flow_at, next: 0, sent: sent.clone() }, sent)
    }
}

impl Port for ReplayPort {
    fn recv(&mut self, pool: &mut Pool, out: &mut [Desc]) -> io::Result<usize> {
        if self.flows == 0 {
            return Ok(0);
        }
        let mut n = 0;
        while n < out.len() {
            let Some(chunk) = pool.alloc() else { break };
            let d = load(pool, chunk, &self.template);
            pool.data_mut(d)[self.flow_at..self.flow_at + 4].copy_from_slice(&self.next.to_be_bytes());
            self.next = (self.next + 1) % self.flows;
            out[n] = d;
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, pool: &mut Pool, frames: &[Desc]) -> usize {
        for d in frames {
            pool.free(d.addr);
        }
        self.sent.fetch_add(frames.len() as u64, std::sync::atomic::Ordering::Relaxed);
        frames.len()
    }

    fn flush(&mut self, _pool: &mut Pool) -> io::Result<()> {
        Ok(())
    }

    fn release(&mut self, _pool: &mut Pool) {}
}
