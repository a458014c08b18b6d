//! The polling loop: one per core, joining ports and pipeline.
//!
//! Each round it receives a batch from every receive queue it owns, decides
//! the whole batch with [`pipeline::classify`], applies the verdicts (tag
//! edits, flood copies), hands each egress port its frames in one `send`,
//! and flushes every port once. Configuration arrives as commands between
//! rounds, so the packet path reads it without locks.
//!
//! A frame bound for an AF_XDP port whose queues belong to another thread
//! is copied into a preallocated parcel and passed to that thread through a
//! lock-free queue ([`Handoff`]); no allocation happens per frame.

use crate::capture::CaptureRing;
use crate::egress;
use crate::fdb::NO_REMOTE;
use crate::flow_cache::{CachedFlow, FlowCache, FlowKey, DEFAULT_ENTRIES};
use crate::ids::{BridgeId, PortId};
use crate::pipeline::{self, Action, TagEdit, Verdict};
use crate::port::{Desc, Pool, Port, HEADROOM, MAX_FRAME};
use crate::snapshot::{PortKind, Snapshot, Tunnel};
use crate::stats::{DropReason, PortStats, ThreadStats};
use crate::tsc;
use crate::wire::{checksum, vxlan};
use crossbeam::channel::{Receiver, Sender};
use crossbeam::queue::ArrayQueue;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wake::{Doorbell, Waiter};

/// Frames taken from one receive queue per round.
pub const BATCH: usize = 64;
// A batch is decided by one call of the flow cache, and its frames are
// marked in a u64.
const _: () = assert!(BATCH <= crate::flow_cache::MAX_BATCH && BATCH <= 64);
const NO_SLOT: u16 = u16::MAX;

const _: () = assert!(crate::port::MIN_FILL >= 2 * BATCH as u32, "a socket holds at least two bursts");

/// The receive sockets' buffers together take at most half of a thread's
/// pool; the other half stays for frames in flight, tap reads, flood
/// copies and hand-offs.
pub const fn fill_budget(pool_frames: u32) -> u32 {
    pool_frames / 2
}

/// The most receiving sockets (AF_XDP queues) one thread with a pool of
/// `pool_frames` buffers can carry, each with a share of at least
/// [`MIN_FILL`](crate::port::MIN_FILL).
pub const fn max_rx_sockets(pool_frames: u32) -> usize {
    (fill_budget(pool_frames) / crate::port::MIN_FILL) as usize
}

/// A port queue handed to a polling thread.
pub struct LocalPort {
    /// The port's id in the snapshot.
    pub id: PortId,
    /// The queue this handle serves (0 for single-queue ports).
    pub queue: u32,
    /// The backend; `None` for a tunnel port, which has no I/O of its own
    /// (its frames leave through an uplink) but keeps counters per thread.
    pub port: Option<Box<dyn Port>>,
    /// True if this thread receives on it (a tap's transmit-only clones on
    /// other threads are false).
    pub rx: bool,
    /// This thread's counters for the port.
    pub stats: Arc<PortStats>,
}

/// What the control thread tells a polling thread.
pub enum Command {
    /// Use this configuration from the next round on.
    Snapshot(Arc<Snapshot>),
    /// Start polling and transmitting on a port queue.
    AddPort(LocalPort),
    /// Stop using every queue of port `id`, give their buffers back, and
    /// signal `done` once the handles are closed.
    RemovePort {
        /// The port.
        id: PortId,
        /// Signalled when done.
        done: Sender<()>,
    },
    /// Stop using queue `queue` of port `id` (give its buffers back, close
    /// it) and signal `done`; other queues keep running.
    RemoveQueue {
        /// The port.
        id: PortId,
        /// The queue.
        queue: u32,
        /// Signalled when done.
        done: Sender<()>,
    },
    /// Start or stop receiving on this thread's handles of port `id`.
    SetRx {
        /// The port.
        id: PortId,
        /// Receive on it or not.
        rx: bool,
    },
    /// Copy the frames port `id` receives or sends into a capture ring
    /// (one capture per port; a new one replaces the old).
    StartCapture {
        /// The port.
        id: PortId,
        /// Where the frames go.
        ring: Arc<CaptureRing>,
    },
    /// Stop capturing on port `id`.
    StopCapture {
        /// The port.
        id: PortId,
    },
    /// Empty the flow cache.
    FlushFlows,
    /// Send a copy of the valid flow cache entries.
    DumpFlows(Sender<Vec<CachedFlow>>),
    /// Send the valid cache entry for a flow, if any: (verdict, hits).
    PeekFlow(FlowKey, Sender<Option<(Verdict, u64)>>),
    /// Release everything and end the loop.
    Stop,
    /// Panic, as a bug would: fault injection for rvsd's supervision
    /// (`rvsd --debug-faults`, SIGUSR1).
    Panic,
}

/// A frame in transit between threads.
pub struct Parcel {
    port: PortId,
    len: u16,
    data: [u8; MAX_FRAME],
}

/// Queues that carry frames between polling threads, with a shared stock of
/// parcels allocated once.
pub struct Handoff {
    inbox: Vec<ArrayQueue<Box<Parcel>>>,
    spare: ArrayQueue<Box<Parcel>>,
    /// Each thread's doorbell, rung when it is given work.
    bells: Vec<Doorbell>,
}

impl Handoff {
    /// Queues for `threads` threads, `parcels` parcels in all.
    pub fn new(threads: usize, parcels: usize) -> Arc<Handoff> {
        let spare = ArrayQueue::new(parcels.max(1));
        for _ in 0..parcels {
            let _ = spare.push(Box::new(Parcel { port: PortId(0), len: 0, data: [0; MAX_FRAME] }));
        }
        Arc::new(Handoff {
            inbox: (0..threads).map(|_| ArrayQueue::new(parcels.max(1))).collect(),
            spare,
            bells: (0..threads).map(|_| Doorbell::new()).collect(),
        })
    }

    /// Wakes thread `thread` if it sleeps.
    pub fn wake(&self, thread: usize) {
        if let Some(b) = self.bells.get(thread) {
            b.ring();
        }
    }
}

/// The sending end of a polling thread's commands: sending wakes it.
#[derive(Clone)]
pub struct Commands {
    tx: Sender<Command>,
    handoff: Arc<Handoff>,
    thread: usize,
}

impl Commands {
    /// Commands to thread `thread` over `tx`, waking it through `handoff`.
    pub fn new(tx: Sender<Command>, handoff: Arc<Handoff>, thread: usize) -> Commands {
        Commands { tx, handoff, thread }
    }

    /// Sends `cmd` and wakes the thread; fails once it has stopped.
    pub fn send(&self, cmd: Command) -> Result<(), crossbeam::channel::SendError<Command>> {
        self.tx.send(cmd)?;
        self.handoff.wake(self.thread);
        Ok(())
    }
}

/// Tuning of a polling thread.
#[derive(Clone, Copy, Debug)]
pub struct PmdOptions {
    /// After this long without frames, the thread sleeps: until a frame
    /// or a command arrives where every receive queue can be waited on
    /// ([`Port::rx_fd`]), else for `idle_sleep` between rounds.
    pub idle_after: Duration,
    /// How long it sleeps by the clock (zero: never sleep, pure busy
    /// polling).
    pub idle_sleep: Duration,
}

impl Default for PmdOptions {
    fn default() -> Self {
        PmdOptions { idle_after: Duration::from_millis(1), idle_sleep: Duration::from_micros(20) }
    }
}

/// One polling thread's state.
pub struct Pmd {
    index: u8,
    pool: Pool,
    ports: Vec<LocalPort>,
    /// Port id → index in `ports` of the handle that transmits on it.
    tx_slot: Vec<u16>,
    /// Frames waiting to be sent, per entry of `ports`.
    txq: Vec<Vec<Desc>>,
    /// Counters of ports removed from this thread, for the frames other
    /// threads handed to them before they saw the removal.
    gone: Vec<(PortId, Arc<PortStats>)>,
    snap: Arc<Snapshot>,
    commands: Receiver<Command>,
    handoff: Arc<Handoff>,
    stats: Arc<ThreadStats>,
    start: Instant,
    opts: PmdOptions,
    cache: FlowCache,
    /// Running captures: (port, ring). Usually empty.
    captures: Vec<(PortId, Arc<CaptureRing>)>,
    rx: [Desc; BATCH],
    verdicts: [Verdict; BATCH],
    /// Per frame of the batch: the port it entered the bridge through (the
    /// tunnel port for a decapsulated frame).
    ingress: [PortId; BATCH],
    /// Per frame of the batch: the remote VTEP it came from, or `NO_REMOTE`.
    remotes: [u16; BATCH],
    /// Per entry of `ports`: the kernel's drop total last read from it.
    kernel_seen: Vec<u64>,
    /// What an idle thread sleeps on (`None`: it sleeps by the clock).
    waiter: Option<Waiter>,
    /// The receive descriptors an idle thread sleeps on; `None` when some
    /// receive queue has none.
    watched: Option<Vec<RawFd>>,
}

/// How often the kernel's per-socket drop counters are read (a syscall
/// per queue, so never per round).
const KERNEL_STATS_EVERY: Duration = Duration::from_secs(1);
/// The longest an idle thread sleeps waiting for frames.
const IDLE_WAIT: Duration = Duration::from_millis(100);

impl Pmd {
    /// A polling thread numbered `index` (its inbox in `handoff`), using
    /// `pool` for frames; `start` is the time origin shared with the FDB's
    /// users.
    pub fn new(
        index: u8,
        pool: Pool,
        commands: Receiver<Command>,
        handoff: Arc<Handoff>,
        stats: Arc<ThreadStats>,
        start: Instant,
        opts: PmdOptions,
    ) -> Pmd {
        let none = Verdict::drop(DropReason::Runt);
        let waiter = handoff_waiter(&handoff, index);
        Pmd {
            index,
            pool,
            ports: Vec::new(),
            tx_slot: Vec::new(),
            txq: Vec::new(),
            gone: Vec::new(),
            snap: Arc::new(Snapshot::default()),
            commands,
            handoff,
            stats,
            start,
            opts,
            cache: FlowCache::new(DEFAULT_ENTRIES),
            captures: Vec::new(),
            rx: [Desc::default(); BATCH],
            verdicts: [none; BATCH],
            ingress: [PortId(0); BATCH],
            remotes: [NO_REMOTE; BATCH],
            kernel_seen: Vec::new(),
            waiter,
            watched: Some(Vec::new()),
        }
    }

    /// Polls until told to stop.
    pub fn run(mut self) {
        let mut last_busy = Instant::now();
        let mut last_kernel = last_busy;
        loop {
            if !self.apply_commands() {
                return;
            }
            if last_kernel.elapsed() >= KERNEL_STATS_EVERY {
                self.publish_kernel_drops();
                last_kernel = Instant::now();
            }
            let (t0, c0) = (Instant::now(), tsc::now());
            let moved = self.poll_once();
            let (t1, c1) = (Instant::now(), tsc::now());
            if moved > 0 {
                PortStats::add(&self.stats.busy_ns, (t1 - t0).as_nanos() as u64);
                PortStats::add(&self.stats.busy_cycles, c1.wrapping_sub(c0));
                PortStats::add(&self.stats.busy_rounds, 1);
                PortStats::add(&self.stats.packets, moved as u64);
                self.publish_cache_stats();
                last_busy = t1;
            } else {
                PortStats::add(&self.stats.idle_rounds, 1);
                if !self.opts.idle_sleep.is_zero() && t1 - last_busy > self.opts.idle_after {
                    self.idle_wait();
                }
                PortStats::add(&self.stats.idle_ns, (Instant::now() - t0).as_nanos() as u64);
                PortStats::add(&self.stats.idle_cycles, tsc::now().wrapping_sub(c0));
            }
        }
    }

    /// Sleeps until there is work: in `epoll` on the receive queues and
    /// the doorbell where it can, else for `idle_sleep`.
    fn idle_wait(&mut self) {
        let pending = self.ports.iter().any(|p| p.port.as_ref().is_some_and(|p| p.tx_pending()));
        if let (Some(w), Some(fds), false) = (&self.waiter, &self.watched, pending) {
            let me = usize::from(self.index);
            let (commands, handoff) = (&self.commands, &self.handoff);
            let busy = || !commands.is_empty() || handoff.inbox.get(me).is_some_and(|q| !q.is_empty());
            if w.sleep(&handoff.bells[me], fds, IDLE_WAIT, busy) {
                return;
            }
        }
        std::thread::sleep(self.opts.idle_sleep);
    }

    /// The receive descriptors of the ports as they are now.
    fn rewatch(&mut self) {
        let fds: Option<Vec<RawFd>> =
            self.ports.iter().filter(|p| p.rx).filter_map(|p| p.port.as_ref()).map(|p| p.rx_fd()).collect();
        self.watched = fds;
    }

    /// Adds what the kernel dropped on each receive queue since the last
    /// reading to the port's counters.
    pub fn publish_kernel_drops(&mut self) {
        self.stats.pool_free.store(self.pool.free_count() as u64, Relaxed);
        for (i, lp) in self.ports.iter().enumerate() {
            let Some(port) = lp.port.as_ref().filter(|_| lp.rx) else { continue };
            let total = port.kernel_drops();
            // A total below the last one: the socket was opened anew.
            let new = total.checked_sub(self.kernel_seen[i]).unwrap_or(total);
            self.kernel_seen[i] = total;
            PortStats::add(&lp.stats.kernel_drops, new);
        }
    }

    fn publish_cache_stats(&self) {
        let c = self.cache.stats();
        self.stats.cache_hits.store(c.hits, Relaxed);
        self.stats.cache_misses.store(c.misses, Relaxed);
        self.stats.cache_evictions.store(c.evictions, Relaxed);
        self.stats.cache_entries.store(c.entries, Relaxed);
    }

    /// Applies pending commands; false once told to stop.
    pub fn apply_commands(&mut self) -> bool {
        let mut moved = false;
        let go_on = self.apply_each(&mut moved);
        if moved {
            self.rewatch();
        }
        go_on
    }

    fn apply_each(&mut self, moved: &mut bool) -> bool {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Snapshot(s) => {
                    self.stats.generation.store(s.generation, Relaxed);
                    self.snap = s;
                }
                Command::AddPort(p) => {
                    *moved = true;
                    self.gone.retain(|(id, _)| *id != p.id);
                    self.ports.push(p);
                    self.txq.push(Vec::with_capacity(BATCH * 4));
                    self.kernel_seen.push(0);
                    self.reindex();
                    self.share_fill();
                }
                Command::RemovePort { id, done } => {
                    *moved = true;
                    self.remove_port(id);
                    let _ = done.send(());
                }
                Command::RemoveQueue { id, queue, done } => {
                    *moved = true;
                    self.remove_where(|p| p.id == id && p.queue == queue);
                    let _ = done.send(());
                }
                Command::SetRx { id, rx } => {
                    for p in self.ports.iter_mut().filter(|p| p.id == id) {
                        p.rx = rx;
                    }
                    *moved = true;
                }
                Command::StartCapture { id, ring } => {
                    self.captures.retain(|(p, _)| *p != id);
                    self.captures.push((id, ring));
                }
                Command::StopCapture { id } => self.captures.retain(|(p, _)| *p != id),
                Command::FlushFlows => {
                    self.cache.flush();
                    self.publish_cache_stats();
                }
                Command::DumpFlows(reply) => {
                    let _ = reply.send(self.cache.flows(&self.snap));
                }
                Command::PeekFlow(key, reply) => {
                    let _ = reply.send(self.cache.peek(&self.snap, &key));
                }
                Command::Panic => panic!("fault injected (rvsd --debug-faults)"),
                Command::Stop => {
                    let ids: Vec<PortId> = self.ports.iter().map(|p| p.id).collect();
                    for id in ids {
                        self.remove_port(id);
                    }
                    return false;
                }
            }
        }
        true
    }

    fn remove_port(&mut self, id: PortId) {
        self.remove_where(|p| p.id == id);
    }

    fn remove_where(&mut self, pred: impl Fn(&LocalPort) -> bool) {
        let mut i = 0;
        while i < self.ports.len() {
            if pred(&self.ports[i]) {
                let mut p = self.ports.remove(i);
                self.kernel_seen.remove(i);
                self.gone.retain(|(id, _)| *id != p.id);
                self.gone.push((p.id, p.stats.clone()));
                for d in self.txq.remove(i) {
                    self.pool.free(d.addr);
                }
                if let Some(port) = p.port.as_mut() {
                    port.release(&mut self.pool);
                }
            } else {
                i += 1;
            }
        }
        self.reindex();
        self.share_fill();
    }

    /// Gives each port its share of the pool's receive buffers: what it
    /// asks for while all demands fit in [`fill_budget`], else the budget
    /// split in proportion, so no socket is left without buffers however
    /// many the thread carries (the control thread refuses more than
    /// [`max_rx_sockets`]).
    fn share_fill(&mut self) {
        let ports = || self.ports.iter().filter_map(|p| p.port.as_ref());
        let demand: u64 = ports().map(|p| u64::from(p.fill_demand())).sum();
        let budget = u64::from(fill_budget(self.pool.frames()));
        let mut given = 0;
        for p in self.ports.iter_mut().filter_map(|p| p.port.as_mut()) {
            let want = u64::from(p.fill_demand());
            let share = if demand <= budget { want } else { want * budget / demand };
            p.set_fill_share(share as u32);
            given += share;
        }
        self.stats.fill_share.store(given, Relaxed);
    }

    fn reindex(&mut self) {
        self.tx_slot.clear();
        for (i, p) in self.ports.iter().enumerate() {
            let id = p.id.index();
            if self.tx_slot.len() <= id {
                self.tx_slot.resize(id + 1, NO_SLOT);
            }
            if self.tx_slot[id] == NO_SLOT {
                self.tx_slot[id] = i as u16;
            }
        }
    }

    /// One round over every queue; returns the frames received.
    pub fn poll_once(&mut self) -> usize {
        let now = self.start.elapsed().as_secs() as u32;
        let mut moved = 0;
        for i in 0..self.ports.len() {
            if self.ports[i].rx {
                moved += self.rx_queue(i, now);
            }
        }
        moved += self.take_parcels();
        self.transmit();
        moved
    }

    fn rx_queue(&mut self, i: usize, now: u32) -> usize {
        let Some(port) = self.ports[i].port.as_mut() else { return 0 };
        let n = match port.recv(&mut self.pool, &mut self.rx) {
            Ok(n) => n,
            Err(_) => {
                self.ports[i].stats.drop_one(DropReason::PortDown);
                0
            }
        };
        if n == 0 {
            return 0;
        }
        let port_id = self.ports[i].id;
        if !self.captures.is_empty() {
            for k in 0..n {
                self.capture(port_id, self.rx[k], false);
            }
        }
        let snap = self.snap.clone();
        let from_uplink = matches!(snap.port(port_id).map(|p| &p.kind), Some(PortKind::Uplink));
        let mut bytes = 0;
        for d in &self.rx[..n] {
            bytes += u64::from(d.len);
        }
        self.ingress[..n].fill(port_id);
        self.remotes[..n].fill(NO_REMOTE);
        let (decapped, decided) = if from_uplink { self.decap_batch(&snap, i, n) } else { (0, 0) };
        let (pool, rx, ingress, remotes) = (&self.pool, &self.rx, &self.ingress, &self.remotes);
        self.cache.classify_batch(
            &snap,
            now,
            n,
            |k| (ingress[k], remotes[k], pool.data(rx[k])),
            decided,
            &mut self.verdicts,
        );
        let st = &self.ports[i].stats;
        PortStats::add(&st.rx_packets, n as u64);
        PortStats::add(&st.rx_bytes, bytes);
        // An uplink's share of the accounting: the frames it handed to a
        // tunnel port, which counts them again as its own received frames.
        PortStats::add(&st.forwarded, decapped);
        for k in 0..n {
            let (d, v, ingress) = (self.rx[k], self.verdicts[k], self.ingress[k]);
            // Counters of the port the frame entered the bridge through.
            let st = if ingress == port_id { i } else { self.slot_of(ingress).unwrap_or(i) };
            if v.learn == Some(crate::fdb::Learn::Refused) {
                PortStats::add(&self.ports[st].stats.learn_refused, 1);
            }
            if v.glean == Some(crate::neigh::Glean::Refused) {
                PortStats::add(&self.ports[st].stats.neigh_refused, 1);
            }
            match v.action {
                Action::Drop(r) => {
                    self.ports[st].stats.drop_one(r);
                    self.pool.free(d.addr);
                }
                Action::Unicast(out) => {
                    PortStats::add(&self.ports[st].stats.forwarded, 1);
                    checksum::complete_partial(self.pool.data_mut(d));
                    self.output(&snap, out, d, v, st);
                }
                Action::Flood(b) => {
                    PortStats::add(&self.ports[st].stats.flooded, 1);
                    checksum::complete_partial(self.pool.data_mut(d));
                    self.flood(&snap, b, ingress, d, v, st);
                }
                Action::Answer(proto) => self.answer(&snap, ingress, d, v, proto, st),
            }
        }
        n
    }

    /// Takes the VXLAN header off frames `0..n` received on uplink slot `i`:
    /// each becomes its inner frame, entering through its tunnel port from
    /// its remote VTEP, or gets a drop verdict. Returns how many were
    /// decapsulated and the mask of frames already decided (dropped).
    fn decap_batch(&mut self, snap: &Snapshot, i: usize, n: usize) -> (u64, u64) {
        let (mut decapped, mut decided) = (0, 0u64);
        for k in 0..n {
            let d = self.rx[k];
            match pipeline::decap(snap, self.pool.data(d)) {
                Ok(x) => {
                    decapped += 1;
                    let inner = Desc { addr: d.addr + x.inner as u64, len: x.len as u32 };
                    self.rx[k] = inner;
                    if !self.captures.is_empty() {
                        self.capture(x.port, inner, false);
                    }
                    self.ingress[k] = x.port;
                    self.remotes[k] = x.remote;
                    let tst = &self.ports[self.slot_of(x.port).unwrap_or(i)].stats;
                    PortStats::add(&tst.rx_packets, 1);
                    PortStats::add(&tst.rx_bytes, u64::from(inner.len));
                }
                Err(r) => {
                    self.verdicts[k] = Verdict::drop(r);
                    decided |= 1 << k;
                }
            }
        }
        (decapped, decided)
    }

    /// Offers a frame to the capture on `port`, if one runs.
    #[inline]
    fn capture(&self, port: PortId, d: Desc, out: bool) {
        if let Some((_, ring)) = self.captures.iter().find(|(p, _)| *p == port) {
            ring.offer(self.pool.data(d), out);
        }
    }

    /// Index in `ports` of this thread's handle on port `id`, if any; the
    /// counters of a frame's port are passed around as this index.
    #[inline]
    fn slot_of(&self, id: PortId) -> Option<usize> {
        self.tx_slot.get(id.index()).copied().filter(|s| *s != NO_SLOT).map(usize::from)
    }

    #[inline]
    fn count_drop(&self, st: usize, r: DropReason) {
        self.ports[st].stats.drop_one(r);
    }

    /// This thread's flow cache counters, as they are now.
    pub fn cache_stats(&self) -> crate::flow_cache::CacheStats {
        self.cache.stats()
    }

    /// Frames free in the pool (for tests: every frame must come back).
    pub fn pool_free(&self) -> usize {
        self.pool.free_count()
    }
}

mod out;
pub mod wake;

/// The waiter of thread `index` (`None` where epoll or its doorbell is
/// missing: it then sleeps by the clock).
fn handoff_waiter(handoff: &Handoff, index: u8) -> Option<Waiter> {
    Waiter::new(handoff.bells.get(usize::from(index))?).ok()
}
#[cfg(test)]
mod tests;
