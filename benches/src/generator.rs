//! The traffic generator: the XDP program of [`progs::generator`] run with
//! `BPF_PROG_TEST_RUN` in live-frames mode, so the kernel sends each frame
//! out of host A's interface (XDP_TX) straight from the syscall, on core 0
//! inside host A's namespace.
//!
//! Each syscall costs a fixed ≈ 24 ms on top of its frames on this kernel
//! (the kernel sleeps while it tears down its page pool), so a rate cannot be
//! held by sleeping between small syscalls. Instead the program paces itself
//! with `bpf_ktime_get_ns` (see [`progs::generator`]), each syscall runs for
//! about [`CALL_TIME`], and two threads alternate on the core so that one
//! sends while the other waits in the kernel.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rvs_dataplane::port::afxdp::{self, BPF_MAP_TYPE_ARRAY};

use crate::ns::{self, Netns};
use crate::progs::{self, GEN_FIRST, GEN_INTERVAL, GEN_LAST, GEN_NEXT, GEN_SENT, GEN_SHIFT, GEN_STATE};
use crate::sh::Result;

/// Program runs per kernel batch at full speed (the most the kernel takes)
/// and when pacing (a smaller batch bounds a catch-up burst).
const BATCH: u32 = 256;
const PACED_BATCH: u32 = 64;
/// Aimed-for length of one syscall.
const CALL_TIME: Duration = Duration::from_millis(100);
/// Program runs in the first syscall of a trial.
const FIRST_CALL: u32 = 100_000;
/// Threads taking turns on the core.
const THREADS: usize = 2;
/// The core the generator runs on.
pub const CORE: usize = 0;

/// A loaded generator for a number of flows.
pub struct Generator {
    prog: OwnedFd,
    state: OwnedFd,
}

/// What one run sent.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    /// Frames handed to the kernel.
    pub frames: u64,
    /// Time from the first frame to the last (by the kernel's clock), or
    /// the wall time of the run when it sent fewer than two.
    pub elapsed: Duration,
}

/// What each sending thread is given.
#[derive(Clone, Copy)]
struct Job<'a> {
    nsfd: &'a OwnedFd,
    dev: &'a str,
    frame: &'a [u8],
    batch: u32,
    start: Instant,
    duration: Duration,
    stop: &'a AtomicBool,
}

impl Sent {
    /// Offered rate in frames per second.
    pub fn pps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Generator {
    /// Loads the program for `flows` flows (1..=[`crate::frame::MAX_FLOWS`]).
    pub fn new(flows: u32) -> Result<Generator> {
        let state = afxdp::create_map(BPF_MAP_TYPE_ARRAY, 4, GEN_STATE, 1, "rvsb_gen")
            .map_err(|e| format!("generator: {e}"))?;
        let prog = afxdp::load_xdp(&progs::generator(flows, state.as_raw_fd()), "rvsb_gen")
            .map_err(|e| format!("generator: {e}"))?;
        Ok(Generator { prog, state })
    }

    /// Sends `frame` out of `dev` in `netns` for `duration`, at `rate`
    /// frames per second or as fast as it can (`None`). Stops early when
    /// `stop` is set.
    pub fn run(
        &self,
        netns: &Netns,
        dev: &str,
        frame: &[u8],
        rate: Option<f64>,
        duration: Duration,
        stop: &AtomicBool,
    ) -> Result<Sent> {
        let interval = rate.map(|r| ((1e9 / r) * (1u64 << GEN_SHIFT) as f64) as u64).unwrap_or(0);
        let before = self.state(interval)?;
        let nsfd = &netns.open()?;
        let start = Instant::now();
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    let batch = if interval == 0 { BATCH } else { PACED_BATCH };
                    let job = Job { nsfd, dev, frame, batch, start, duration, stop };
                    s.spawn(move || self.send_thread(&job))
                })
                .collect();
            threads.into_iter().try_for_each(|t| t.join().unwrap_or_else(|_| Err("generator thread panicked".into())))
        })?;
        let wall = start.elapsed();
        let v = self.read()?;
        let frames = v[0] - before;
        let span = Duration::from_nanos((v[2].saturating_sub(v[1])) >> GEN_SHIFT);
        // n frames over the span from the first to the last is n - 1 gaps.
        let elapsed = if frames >= 2 { span.mul_f64(frames as f64 / (frames - 1) as f64) } else { wall };
        Ok(Sent { frames, elapsed })
    }

    /// Resets the pacing state for a new run; returns the frames sent so far.
    fn state(&self, interval: u64) -> Result<u64> {
        let sent = self.sent()?;
        let mut v = [0u8; GEN_STATE as usize];
        let put = |v: &mut [u8], off: i16, x: u64| v[off as usize..off as usize + 8].copy_from_slice(&x.to_ne_bytes());
        put(&mut v, GEN_SENT, sent);
        put(&mut v, GEN_NEXT, 0);
        put(&mut v, GEN_INTERVAL, interval);
        afxdp::map_update(&self.state, &0u32.to_ne_bytes(), &v).map_err(|e| format!("generator state: {e}"))?;
        Ok(sent)
    }

    fn sent(&self) -> Result<u64> {
        Ok(self.read()?[0])
    }

    /// (sent, first, last) from the state.
    fn read(&self) -> Result<[u64; 3]> {
        let mut v = [0u8; GEN_STATE as usize];
        afxdp::map_lookup(&self.state, &0u32.to_ne_bytes(), &mut v).map_err(|e| format!("generator state: {e}"))?;
        let at = |o: i16| u64::from_ne_bytes(v[o as usize..o as usize + 8].try_into().expect("8 bytes"));
        Ok([at(GEN_SENT), at(GEN_FIRST), at(GEN_LAST)])
    }

    fn send_thread(&self, job: &Job) -> Result<()> {
        let Job { nsfd, dev, frame, batch, start, duration, stop } = *job;
        ns::enter(nsfd)?;
        if !core_affinity::set_for_current(core_affinity::CoreId { id: CORE }) {
            return Err(format!("generator: cannot pin to core {CORE}"));
        }
        let ifindex = afxdp::iface::ifindex(dev).map_err(|e| format!("generator: {e}"))?;
        let mut runs = FIRST_CALL;
        while start.elapsed() < duration && !stop.load(Ordering::Relaxed) {
            // Do not run far past the end of the trial.
            let left = duration.saturating_sub(start.elapsed()).max(Duration::from_millis(10));
            let t = Instant::now();
            afxdp::test_run_live(&self.prog, frame, ifindex, runs, batch)
                .map_err(|e| format!("generator: BPF_PROG_TEST_RUN (live frames, kernel >= 5.18) on {dev}: {e}"))?;
            let took = t.elapsed().as_secs_f64().max(1e-4);
            let aim = CALL_TIME.min(left).as_secs_f64();
            runs = ((runs as f64 * aim / took) as u32).clamp(batch, 50_000_000);
        }
        Ok(())
    }
}
