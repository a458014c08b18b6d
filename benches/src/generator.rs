//! The traffic generator: the XDP program of [`progs::generator`] run with
//! `BPF_PROG_TEST_RUN` in live-frames mode, so the kernel sends each frame
//! out of host A's interface (XDP_TX) straight from the syscall, on core 0
//! inside host A's namespace.
//!
//! Each syscall costs a fixed ≈ 24 ms or more on top of its frames on this
//! kernel (the kernel waits for an RCU grace period while it tears down its
//! page pool, longer when the other core is busy), so neither a rate nor a
//! steady stream can come from many short syscalls. Instead one syscall runs
//! for the whole trial (repeat = 2^32 - 1) and is ended by a signal
//! (`BPF_PROG_TEST_RUN` returns EINTR when one is pending), and the program
//! paces itself with `bpf_ktime_get_ns` (see [`progs::generator`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rvs_dataplane::port::afxdp::{self, BPF_MAP_TYPE_ARRAY};

use crate::ns::{self, Netns};
use crate::progs::{self, GEN_FIRST, GEN_INTERVAL, GEN_LAST, GEN_NEXT, GEN_SENT, GEN_SHIFT, GEN_STATE};
use crate::sh::Result;

/// Program runs per kernel batch at full speed (the most the kernel takes)
/// and when pacing (a smaller batch bounds a catch-up burst).
const BATCH: u32 = 256;
const PACED_BATCH: u32 = 64;
/// The signal that ends a syscall at the end of a trial.
const STOP_SIGNAL: libc::c_int = libc::SIGUSR1;
/// Sending threads on the generator's core. One is enough now that a trial
/// is one syscall (two, tried side by side, were no faster).
const THREADS: usize = 1;
/// How often the stop signal is repeated until the sending thread is done
/// (it may arrive just before the syscall starts).
const STOP_REPEAT: Duration = Duration::from_millis(5);
/// The core the generator runs on.
pub const CORE: usize = 0;

/// A loaded generator for a number of flows.
pub struct Generator {
    prog: OwnedFd,
    state: OwnedFd,
    nice: i32,
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

/// A sending thread's id (once it runs) and whether it is done.
#[derive(Default)]
struct Slot {
    tid: Mutex<Option<libc::pthread_t>>,
    done: AtomicBool,
}

impl Sent {
    /// Offered rate in frames per second.
    pub fn pps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Generator {
    /// Loads the program for `flows` flows (1..=[`crate::frame::MAX_FLOWS`]);
    /// its threads will run at niceness `nice`.
    pub fn new(flows: u32, nice: i32) -> Result<Generator> {
        let state = afxdp::create_map(BPF_MAP_TYPE_ARRAY, 4, GEN_STATE, 1, "rvsb_gen")
            .map_err(|e| format!("generator: {e}"))?;
        let prog = afxdp::load_xdp(&progs::generator(flows, state.as_raw_fd()), "rvsb_gen")
            .map_err(|e| format!("generator: {e}"))?;
        Ok(Generator { prog, state, nice })
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
        let batch = if interval == 0 { BATCH } else { PACED_BATCH };
        install_stop_handler()?;
        let start = Instant::now();
        let slots: Vec<Slot> = (0..THREADS).map(|_| Slot::default()).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = slots
                .iter()
                .map(|slot| {
                    s.spawn(move || {
                        let r = self.send_thread(nsfd, dev, frame, batch, &slot.tid);
                        slot.done.store(true, Ordering::Release);
                        r
                    })
                })
                .collect();
            let all_done = || slots.iter().all(|t| t.done.load(Ordering::Acquire));
            while start.elapsed() < duration && !stop.load(Ordering::Relaxed) && !all_done() {
                std::thread::sleep(Duration::from_millis(2).min(duration.saturating_sub(start.elapsed())));
            }
            while !all_done() {
                for slot in slots.iter().filter(|t| !t.done.load(Ordering::Acquire)) {
                    if let Some(th) = *slot.tid.lock().unwrap_or_else(|e| e.into_inner()) {
                        // SAFETY: `th` is a sending thread, which is not
                        // joined before this scope ends, so its id stays
                        // valid; the signal's handler does nothing.
                        unsafe { libc::pthread_kill(th, STOP_SIGNAL) };
                    }
                }
                std::thread::sleep(STOP_REPEAT);
            }
            handles.into_iter().try_for_each(|t| t.join().unwrap_or_else(|_| Err("generator thread panicked".into())))
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

    /// Sends until a stop signal interrupts the syscall.
    fn send_thread(
        &self,
        nsfd: &OwnedFd,
        dev: &str,
        frame: &[u8],
        batch: u32,
        tid: &Mutex<Option<libc::pthread_t>>,
    ) -> Result<()> {
        ns::enter(nsfd)?;
        if !core_affinity::set_for_current(core_affinity::CoreId { id: CORE }) {
            return Err(format!("generator: cannot pin to core {CORE}"));
        }
        // SAFETY: gettid has no preconditions; setpriority on our own
        // thread id changes only this thread's niceness.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, self.nice) } != 0 {
            return Err(format!("generator: setting niceness {}: {}", self.nice, std::io::Error::last_os_error()));
        }
        let ifindex = afxdp::iface::ifindex(dev).map_err(|e| format!("generator: {e}"))?;
        // SAFETY: pthread_self has no preconditions.
        *tid.lock().unwrap_or_else(|e| e.into_inner()) = Some(unsafe { libc::pthread_self() });
        loop {
            match afxdp::test_run_live(&self.prog, frame, ifindex, u32::MAX, batch) {
                // All 2^32 - 1 runs done before the trial ended: go on.
                Ok(()) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => break,
                Err(e) => {
                    return Err(format!("generator: BPF_PROG_TEST_RUN (live frames, kernel >= 5.18) on {dev}: {e}"))
                }
            }
        }
        Ok(())
    }
}

/// Installs a handler that does nothing for [`STOP_SIGNAL`] (without
/// SA_RESTART), so the signal only interrupts the sending syscall.
fn install_stop_handler() -> Result<()> {
    static INSTALLED: OnceLock<Result<()>> = OnceLock::new();
    extern "C" fn nothing(_: libc::c_int) {}
    INSTALLED
        .get_or_init(|| {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
            // value, and the handler is async-signal-safe (it does nothing).
            let r = unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(STOP_SIGNAL, &sa, std::ptr::null_mut())
            };
            if r == 0 {
                Ok(())
            } else {
                Err(format!("installing the generator's stop signal: {}", std::io::Error::last_os_error()))
            }
        })
        .clone()
}
