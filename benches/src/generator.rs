//! The traffic generator, in host A's namespace on core 0, in one of two
//! forms that share their XDP pacing and flow stamping ([`progs`]):
//!
//! - **Live frames**: the generator program run with `BPF_PROG_TEST_RUN` in
//!   live-frames mode (kernel 5.18 or later), so the kernel sends each frame
//!   out of host A's interface (XDP_TX) straight from the syscall. Each
//!   syscall costs a fixed ≈ 24 ms or more on top of its frames (the kernel
//!   waits for an RCU grace period while it tears down its page pool), so
//!   one syscall runs for the whole trial (repeat = 2^32 - 1) and is ended
//!   by a signal (`BPF_PROG_TEST_RUN` returns EINTR when one is pending).
//!   Some kernels refuse live frames, even to root (lockdown in integrity
//!   mode: EPERM).
//! - **Loop amplifier**: no test runs at all. A second veth pair g1–g2 in
//!   host A; XDP on g2 bounces every frame back (XDP_TX), XDP on g1
//!   redirects it with `BPF_F_BROADCAST` over a devmap of {g1, host A's
//!   port}: one copy keeps circling, one leaves toward the switch on every
//!   pass. [`PRIMED`] frames sent into g2 by a packet socket start it; a
//!   flag in the settings map stops it (g1 drops every frame). veth runs
//!   its NAPI on the core that woke it, so the loop stays on the core that
//!   primed it, in softirq.
//!
//! Either way the program paces itself with `bpf_ktime_get_ns` when asked
//! for a rate (the NDR search): every run of it (every pass of the loop) is
//! a chance to send, taken only when a frame is due.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rvs_dataplane::bpf::{self, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_DEVMAP, BPF_MAP_TYPE_PERCPU_ARRAY};
use rvs_dataplane::port::afxdp::{self, XdpMode};
use serde::Serialize;

use crate::ns::{self, Netns};
use crate::progs::{
    self, GenMaps, CFG_FLOWS, CFG_INTERVAL, CFG_SIZE, CFG_STOP, GEN_SHIFT, ST_FIRST, ST_LAST, ST_SENT, ST_SIZE,
};
use crate::sh::Result;

/// The core the generator runs on.
pub const CORE: usize = 0;
/// Frames circling in the loop: enough to keep its core busy, few enough
/// that the veth rings (256 frames) never overflow.
pub const PRIMED: usize = 64;
/// The loop's veth pair inside host A.
const LOOP_TX: &str = "g1";
const LOOP_BOUNCE: &str = "g2";
/// How long the loop's frames take to die once stopped (they die on their
/// next pass through g1, within microseconds).
const LOOP_DRAIN: Duration = Duration::from_millis(20);
/// Program runs per kernel batch at full speed (the most the kernel takes)
/// and when pacing (a smaller batch bounds a catch-up burst).
const BATCH: u32 = 256;
const PACED_BATCH: u32 = 64;
/// The signal that ends a live-frames syscall at the end of a trial.
const STOP_SIGNAL: libc::c_int = libc::SIGUSR1;
/// How often the stop signal is repeated until the sending thread is done
/// (it may arrive just before the syscall starts).
const STOP_REPEAT: Duration = Duration::from_millis(5);

/// How frames are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Live frames where the kernel allows them, else the loop.
    Auto,
    /// `BPF_PROG_TEST_RUN` with live frames.
    Live,
    /// The XDP loop amplifier.
    Loop,
}

impl Method {
    /// The method to use for `asked`: `Auto` becomes `Live` or `Loop` after
    /// a probe; `Live` is an error where the kernel refuses it.
    pub fn resolve(asked: Method) -> Result<Method> {
        match asked {
            Method::Loop => Ok(Method::Loop),
            Method::Live => live_frames_allowed().map(|()| Method::Live),
            Method::Auto => Ok(if live_frames_allowed().is_ok() { Method::Live } else { Method::Loop }),
        }
    }

    /// Its name in the report.
    pub fn describe(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Live => "XDP live frames (BPF_PROG_TEST_RUN)",
            Method::Loop => "XDP loop amplifier (veth pair, devmap broadcast)",
        }
    }
}

/// Ok if this kernel runs XDP programs in live-frames mode for us: one run
/// of a program that drops its frame, on loopback.
fn live_frames_allowed() -> Result<()> {
    let prog = bpf::load_xdp(&progs::drop_all(), "rvsb_probe").map_err(|e| format!("live-frames probe: {e}"))?;
    bpf::test_run_live(&prog, &[0u8; 60], 1, 1, 0)
        .map_err(|e| format!("BPF_PROG_TEST_RUN with live frames (kernel >= 5.18) refused: {e}"))
}

/// What one run sent.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    /// Frames sent toward the switch.
    pub frames: u64,
    /// Time from the first frame to the last (by the kernel's clock), or
    /// the wall time of the run when it sent fewer than two.
    pub elapsed: Duration,
}

impl Sent {
    /// Offered rate in frames per second.
    pub fn pps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A generator loaded for host A of one test bed.
pub struct Generator {
    // Field order is drop order: programs detach before the maps go.
    engine: Engine,
    maps: Maps,
    netns: OwnedFd,
    nice: i32,
}

/// The generator programs' settings and per-CPU state (see [`progs`]).
pub struct Maps {
    config: OwnedFd,
    state: OwnedFd,
}

enum Engine {
    Live { prog: OwnedFd, ifindex: u32 },
    Loop { _links: [OwnedFd; 2], _progs: [OwnedFd; 2], _devmap: OwnedFd, bounce_ifindex: u32 },
}

impl Generator {
    /// Loads a generator of `method` (`Live` or `Loop`) sending out of `dev`
    /// in `netns`; its threads run at niceness `nice`. The loop's veth pair
    /// lives in `netns` and goes with it.
    pub fn attach(method: Method, netns: &Netns, dev: &str, nice: i32) -> Result<Generator> {
        let maps = Maps::new()?;
        let nsfd = netns.open()?;
        let engine = match method {
            Method::Live => {
                let prog = bpf::load_xdp(&progs::live_generator(maps.fds()), "rvsb_gen")
                    .map_err(|e| format!("generator: {e}"))?;
                let ifindex =
                    ns::in_netns(&nsfd, || afxdp::iface::ifindex(dev).map_err(|e| format!("generator: {e}")))?;
                Engine::Live { prog, ifindex }
            }
            Method::Loop => Engine::attach_loop(netns, &nsfd, dev, maps.fds())?,
            Method::Auto => return Err("generator: resolve the method first".into()),
        };
        Ok(Generator { engine, maps, netns: nsfd, nice })
    }

    /// Sends `frame` as `flows` flows for `duration`, at `rate` frames per
    /// second or as fast as it can (`None`). Stops early when `stop` is set.
    pub fn run(
        &self,
        frame: &[u8],
        flows: u32,
        rate: Option<f64>,
        duration: Duration,
        stop: &AtomicBool,
    ) -> Result<Sent> {
        let interval = rate.map(|r| ((1e9 / r) * (1u64 << GEN_SHIFT) as f64) as u64).unwrap_or(0);
        self.maps.reset(interval, flows)?;
        let start = Instant::now();
        let wait = || {
            while start.elapsed() < duration && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(2).min(duration.saturating_sub(start.elapsed())));
            }
        };
        match &self.engine {
            Engine::Live { prog, ifindex } => {
                let batch = if interval == 0 { BATCH } else { PACED_BATCH };
                self.run_live(prog, *ifindex, frame, batch, wait)?;
            }
            Engine::Loop { bounce_ifindex, .. } => {
                let primed = self.on_core(|| prime(*bounce_ifindex, frame));
                // Stop the loop whatever priming did: frames may circle.
                if primed.is_ok() {
                    wait();
                }
                self.maps.configure(true, interval, flows)?;
                std::thread::sleep(LOOP_DRAIN);
                primed?;
            }
        }
        let wall = start.elapsed();
        let (frames, first, last) = self.maps.read()?;
        let span = Duration::from_nanos(last.saturating_sub(first) >> GEN_SHIFT);
        // n frames over the span from the first to the last is n - 1 gaps.
        let elapsed = if frames >= 2 { span.mul_f64(frames as f64 / (frames - 1) as f64) } else { wall };
        Ok(Sent { frames, elapsed })
    }

    /// Runs `f` on a thread in host A's namespace, pinned to the generator's
    /// core at the generator's niceness.
    fn on_core<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        ns::in_netns(&self.netns, || {
            self.pin()?;
            f()
        })
    }

    /// Pins the calling thread to the generator's core at its niceness.
    fn pin(&self) -> Result<()> {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: CORE }) {
            return Err(format!("generator: cannot pin to core {CORE}"));
        }
        // SAFETY: gettid has no preconditions; setpriority on our own
        // thread id changes only this thread's niceness.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, self.nice) } != 0 {
            return Err(format!("generator: setting niceness {}: {}", self.nice, std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// One live-frames syscall on a sending thread, interrupted by a signal
    /// once `wait` returns.
    fn run_live(&self, prog: &OwnedFd, ifindex: u32, frame: &[u8], batch: u32, wait: impl FnOnce()) -> Result<()> {
        install_stop_handler()?;
        let tid = Mutex::new(None::<libc::pthread_t>);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let sender = s.spawn(|| {
                let r = ns::enter(&self.netns).and_then(|()| self.pin()).and_then(|()| {
                    // SAFETY: pthread_self has no preconditions.
                    *tid.lock().unwrap_or_else(|e| e.into_inner()) = Some(unsafe { libc::pthread_self() });
                    send_live(prog, ifindex, frame, batch)
                });
                done.store(true, Ordering::Release);
                r
            });
            wait();
            while !done.load(Ordering::Acquire) {
                if let Some(th) = *tid.lock().unwrap_or_else(|e| e.into_inner()) {
                    // SAFETY: `th` is the sending thread, which is not
                    // joined before this scope ends, so its id stays valid;
                    // the signal's handler does nothing.
                    unsafe { libc::pthread_kill(th, STOP_SIGNAL) };
                }
                std::thread::sleep(STOP_REPEAT);
            }
            sender.join().unwrap_or_else(|_| Err("generator thread panicked".into()))
        })
    }
}

impl Maps {
    /// Creates both maps.
    pub fn new() -> Result<Maps> {
        let config = bpf::create_map(BPF_MAP_TYPE_ARRAY, 4, CFG_SIZE, 1, "rvsb_gen_cfg")
            .map_err(|e| format!("generator: {e}"))?;
        let state = bpf::create_map(BPF_MAP_TYPE_PERCPU_ARRAY, 4, ST_SIZE, 1, "rvsb_gen_state")
            .map_err(|e| format!("generator: {e}"))?;
        Ok(Maps { config, state })
    }

    /// Their fds, for the programs.
    pub fn fds(&self) -> GenMaps {
        GenMaps { config: self.config.as_raw_fd(), state: self.state.as_raw_fd() }
    }

    /// Clears the counters and sets the pace for a new run.
    pub fn reset(&self, interval: u64, flows: u32) -> Result<()> {
        let zero = vec![0u8; per_cpu_len(ST_SIZE)?];
        bpf::map_update(&self.state, &0u32.to_ne_bytes(), &zero).map_err(|e| format!("generator state: {e}"))?;
        self.configure(false, interval, flows)
    }

    pub fn configure(&self, stop: bool, interval: u64, flows: u32) -> Result<()> {
        let mut v = [0u8; CFG_SIZE as usize];
        put(&mut v, CFG_STOP, stop as u64);
        put(&mut v, CFG_INTERVAL, interval);
        put(&mut v, CFG_FLOWS, flows as u64);
        bpf::map_update(&self.config, &0u32.to_ne_bytes(), &v).map_err(|e| format!("generator settings: {e}"))
    }

    /// (sent, first, last) over every CPU the program ran on.
    pub fn read(&self) -> Result<(u64, u64, u64)> {
        let mut v = vec![0u8; per_cpu_len(ST_SIZE)?];
        bpf::map_lookup(&self.state, &0u32.to_ne_bytes(), &mut v).map_err(|e| format!("generator state: {e}"))?;
        let slot = bpf::per_cpu_slot(ST_SIZE);
        let (mut sent, mut first, mut last) = (0, u64::MAX, 0);
        for cpu in v.chunks_exact(slot) {
            let at = |o: i16| u64::from_ne_bytes(cpu[o as usize..o as usize + 8].try_into().expect("8 bytes"));
            if at(ST_SENT) > 0 {
                sent += at(ST_SENT);
                first = first.min(at(ST_FIRST));
                last = last.max(at(ST_LAST));
            }
        }
        Ok((sent, if sent == 0 { 0 } else { first }, last))
    }
}

impl Engine {
    /// Builds the loop in host A: g1–g2, their programs, the devmap {g1,
    /// `dev`}.
    fn attach_loop(netns: &Netns, nsfd: &OwnedFd, dev: &str, maps: GenMaps) -> Result<Engine> {
        let devmap =
            bpf::create_map(BPF_MAP_TYPE_DEVMAP, 4, 4, 2, "rvsb_gen_out").map_err(|e| format!("generator: {e}"))?;
        let tx = bpf::load_xdp(&progs::loop_generator(maps, devmap.as_raw_fd()), "rvsb_gen_loop")
            .map_err(|e| format!("generator: {e}"))?;
        let bounce = bpf::load_xdp(&progs::bounce(), "rvsb_gen_bounce").map_err(|e| format!("generator: {e}"))?;
        netns.ip(&["link", "add", LOOP_TX, "type", "veth", "peer", "name", LOOP_BOUNCE])?;
        for d in [LOOP_TX, LOOP_BOUNCE] {
            netns.ip(&["link", "set", d, "up"])?;
        }
        let (links, bounce_ifindex) = ns::in_netns(nsfd, || {
            let err = |e: std::io::Error| format!("generator loop: {e}");
            let ifindex = |d: &str| afxdp::iface::ifindex(d).map_err(err);
            // Devmap entries name interfaces of the caller's namespace.
            for (slot, d) in [LOOP_TX, dev].into_iter().enumerate() {
                bpf::map_update(&devmap, &(slot as u32).to_ne_bytes(), &ifindex(d)?.to_ne_bytes()).map_err(err)?;
            }
            let (l_bounce, _) = afxdp::attach_xdp(&bounce, LOOP_BOUNCE, XdpMode::Native).map_err(err)?;
            let (l_tx, _) = afxdp::attach_xdp(&tx, LOOP_TX, XdpMode::Native).map_err(err)?;
            Ok(([l_tx, l_bounce], ifindex(LOOP_BOUNCE)?))
        })?;
        Ok(Engine::Loop { _links: links, _progs: [tx, bounce], _devmap: devmap, bounce_ifindex })
    }
}

/// Sends [`PRIMED`] copies of `frame` into the loop out of g2 (interface
/// `ifindex` of the calling thread's namespace) with a packet socket.
fn prime(ifindex: u32, frame: &[u8]) -> Result<()> {
    let err = |what: &str| format!("generator: priming the loop: {what}: {}", std::io::Error::last_os_error());
    // SAFETY: a plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(err("socket"));
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = ifindex as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&frame[..6]);
    for _ in 0..PRIMED {
        // SAFETY: `frame` and `to` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(err("sendto"));
        }
    }
    Ok(())
}

/// Runs the live-frames program until a stop signal interrupts the syscall.
fn send_live(prog: &OwnedFd, ifindex: u32, frame: &[u8], batch: u32) -> Result<()> {
    loop {
        match bpf::test_run_live(prog, frame, ifindex, u32::MAX, batch) {
            // All 2^32 - 1 runs done before the trial ended: go on.
            Ok(()) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => return Ok(()),
            Err(e) => return Err(format!("generator: BPF_PROG_TEST_RUN (live frames, kernel >= 5.18): {e}")),
        }
    }
}

fn put(v: &mut [u8], off: i16, x: u64) {
    v[off as usize..off as usize + 8].copy_from_slice(&x.to_ne_bytes());
}

/// Bytes of a per-CPU map value as userspace reads and writes it.
fn per_cpu_len(value_size: u32) -> Result<usize> {
    bpf::per_cpu_len(value_size).map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_slots_are_8_byte_aligned() {
        assert_eq!(bpf::per_cpu_slot(ST_SIZE), 32);
    }
}

/// The generator programs run by the kernel (plain `BPF_PROG_TEST_RUN`,
/// which sends nothing): needs root; skipped without it unless `CI=true`.
#[cfg(test)]
mod kernel_tests {
    use super::Maps;
    use crate::frame;
    use crate::progs::*;
    use rvs_dataplane::bpf::asm::{XDP_DROP, XDP_TX};
    use rvs_dataplane::bpf::Insn;
    use rvs_dataplane::bpf::{self, BPF_MAP_TYPE_DEVMAP};
    use std::os::fd::AsRawFd;

    const XDP_REDIRECT: u32 = 4;

    fn privileged() -> bool {
        rvs_dataplane::testing::require_root("BPF program tests", &[])
    }

    /// (action, frame out) of `n` runs of `insns` on `frame`.
    fn runs(insns: &[Insn], frame: &[u8], n: usize) -> Vec<(u32, Vec<u8>)> {
        let prog = bpf::load_xdp(insns, "rvsb_test").expect("load");
        (0..n).map(|_| bpf::test_run_frame(&prog, frame).expect("test run")).collect()
    }

    #[test]
    fn both_generators_send_stamp_flows_pace_and_stop() {
        if !privileged() {
            return;
        }
        let maps = Maps::new().unwrap();
        let devmap = bpf::create_map(BPF_MAP_TYPE_DEVMAP, 4, 4, 2, "rvsb_test_out").unwrap();
        let f = frame::udp_frame(64, [2, 0, 0, 0, 0, 2]);
        let forms = [
            ("live", live_generator(maps.fds()), XDP_TX as u32, XDP_DROP as u32),
            ("loop", loop_generator(maps.fds(), devmap.as_raw_fd()), XDP_REDIRECT, XDP_TX as u32),
        ];
        for (name, prog, send, skip) in &forms {
            // Full speed, 1000 flows: every run sends, as flow 0, 1, 2, ...
            maps.reset(0, 1000).unwrap();
            for (i, (action, out)) in runs(prog, &f, 3).into_iter().enumerate() {
                assert_eq!(action, *send, "{name}: run {i}");
                assert_eq!(out, frame::flow(&f, i as u16), "{name}: run {i} is flow {i}");
            }
            let (sent, first, last) = maps.read().unwrap();
            assert_eq!(sent, 3, "{name}: counted");
            assert!(first > 0 && last >= first, "{name}: first {first}, last {last}");
            // One flow: the frame leaves as it is.
            maps.reset(0, 1).unwrap();
            assert_eq!(runs(prog, &f, 1)[0], (*send, f.clone()), "{name}: one flow");
            // Paced at one frame a second: the first chance sends, the next
            // is skipped and not counted.
            maps.reset(1_000_000_000 << GEN_SHIFT, 1).unwrap();
            let actions: Vec<u32> = runs(prog, &f, 2).into_iter().map(|r| r.0).collect();
            assert_eq!(actions, [*send, *skip], "{name}: paced");
            assert_eq!(maps.read().unwrap().0, 1, "{name}: paced count");
            // Stopped: every frame is dropped, none counted.
            maps.reset(0, 1).unwrap();
            maps.configure(true, 0, 1).unwrap();
            assert_eq!(runs(prog, &f, 1)[0].0, XDP_DROP as u32, "{name}: stopped");
            assert_eq!(maps.read().unwrap().0, 0, "{name}: stopped count");
        }
        assert_eq!(runs(&bounce(), &f, 1)[0], (XDP_TX as u32, f.clone()));
    }
}
