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
use crate::fdb::NO_REMOTE;
use crate::flow_cache::{CachedFlow, FlowCache, FlowKey, DEFAULT_ENTRIES};
use crate::ids::PortId;
use crate::pipeline::{self, Action, TagEdit, Verdict};
use crate::port::{Desc, Pool, Port, HEADROOM, MAX_FRAME};
use crate::snapshot::{PortKind, Snapshot, Tunnel};
use crate::stats::{DropReason, PortStats, ThreadStats};
use crate::tsc;
use crate::wire::{checksum, vlan, vxlan};
use crossbeam::channel::{Receiver, Sender};
use crossbeam::queue::ArrayQueue;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames taken from one receive queue per round.
pub const BATCH: usize = 64;
// A batch is decided by one call of the flow cache, and its frames are
// marked in a u64.
const _: () = assert!(BATCH <= crate::flow_cache::MAX_BATCH && BATCH <= 64);
const NO_SLOT: u16 = u16::MAX;

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
}

impl Handoff {
    /// Queues for `threads` threads, `parcels` parcels in all.
    pub fn new(threads: usize, parcels: usize) -> Arc<Handoff> {
        let spare = ArrayQueue::new(parcels.max(1));
        for _ in 0..parcels {
            let _ = spare.push(Box::new(Parcel { port: 0, len: 0, data: [0; MAX_FRAME] }));
        }
        Arc::new(Handoff { inbox: (0..threads).map(|_| ArrayQueue::new(parcels.max(1))).collect(), spare })
    }
}

/// Tuning of a polling thread.
#[derive(Clone, Copy, Debug)]
pub struct PmdOptions {
    /// After this long without frames, the thread sleeps between rounds.
    pub idle_after: Duration,
    /// How long it sleeps then (zero: never sleep, pure busy polling).
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
}

/// How often the kernel's per-socket drop counters are read (a syscall
/// per queue, so never per round).
const KERNEL_STATS_EVERY: Duration = Duration::from_secs(1);

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
        Pmd {
            index,
            pool,
            ports: Vec::new(),
            tx_slot: Vec::new(),
            txq: Vec::new(),
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
            ingress: [0; BATCH],
            remotes: [NO_REMOTE; BATCH],
            kernel_seen: Vec::new(),
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
                    std::thread::sleep(self.opts.idle_sleep);
                }
                PortStats::add(&self.stats.idle_ns, (Instant::now() - t0).as_nanos() as u64);
                PortStats::add(&self.stats.idle_cycles, tsc::now().wrapping_sub(c0));
            }
        }
    }

    /// Adds what the kernel dropped on each receive queue since the last
    /// reading to the port's counters.
    pub fn publish_kernel_drops(&mut self) {
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
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Snapshot(s) => {
                    self.stats.generation.store(s.generation, Relaxed);
                    self.snap = s;
                }
                Command::AddPort(p) => {
                    self.ports.push(p);
                    self.txq.push(Vec::with_capacity(BATCH * 4));
                    self.kernel_seen.push(0);
                    self.reindex();
                }
                Command::RemovePort { id, done } => {
                    self.remove_port(id);
                    let _ = done.send(());
                }
                Command::RemoveQueue { id, queue, done } => {
                    self.remove_where(|p| p.id == id && p.queue == queue);
                    let _ = done.send(());
                }
                Command::SetRx { id, rx } => {
                    for p in self.ports.iter_mut().filter(|p| p.id == id) {
                        p.rx = rx;
                    }
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
    }

    fn reindex(&mut self) {
        self.tx_slot.clear();
        for (i, p) in self.ports.iter().enumerate() {
            let id = p.id as usize;
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
        self.tx_slot.get(id as usize).copied().filter(|s| *s != NO_SLOT).map(usize::from)
    }

    #[inline]
    fn count_drop(&self, st: usize, r: DropReason) {
        self.ports[st].stats.drop_one(r);
    }

    fn flood(&mut self, snap: &Snapshot, bridge: u16, ingress: PortId, d: Desc, v: Verdict, st: usize) {
        let Some(br) = snap.bridge(bridge) else {
            self.count_drop(st, DropReason::NoBridge);
            self.pool.free(d.addr);
            return;
        };
        let members = br.flood_set(v.vid);
        let last = members.iter().rposition(|m| m.port != ingress);
        let Some(last) = last else {
            // Nobody else in this VLAN: flooded to an empty set.
            self.pool.free(d.addr);
            return;
        };
        for m in &members[..last] {
            if m.port == ingress {
                continue;
            }
            let Some(chunk) = self.pool.alloc() else {
                self.count_drop(st, DropReason::NoBuffer);
                continue;
            };
            let copy = Desc { addr: chunk + HEADROOM as u64, len: d.len };
            let (src, dst) = self.pool.pair_mut(d, copy);
            dst.copy_from_slice(src);
            self.output(snap, m.port, copy, v, st);
        }
        self.output(snap, members[last].port, d, v, st);
    }

    /// Edits the tag of `d` for port `out` and queues it there (or hands it
    /// to the thread that owns the port's queue).
    fn output(&mut self, snap: &Snapshot, out: PortId, d: Desc, v: Verdict, st: usize) {
        let Some(port) = snap.port(out) else {
            self.count_drop(st, DropReason::PortDown);
            self.pool.free(d.addr);
            return;
        };
        if !port.vlan.carries(v.vid) {
            self.count_drop(st, DropReason::VlanFiltered);
            self.pool.free(d.addr);
            return;
        }
        let Some(d) = self.edit_tag(d, pipeline::tag_edit(v.tagged, v.vid, port.vlan.egress_tagged(v.vid))) else {
            self.count_drop(st, DropReason::BadVlan);
            self.pool.free(d.addr);
            return;
        };
        match &port.kind {
            PortKind::Vxlan(t) => self.encap(snap, t, out, d, v.remote, st),
            _ => self.queue_tx(snap, out, d, st),
        }
    }

    /// Queues `d` on port `out`: on this thread's handle, or through the
    /// thread that has one.
    fn queue_tx(&mut self, snap: &Snapshot, out: PortId, d: Desc, st: usize) {
        match self.tx_slot.get(out as usize).copied().filter(|s| *s != NO_SLOT) {
            Some(slot) if self.ports[slot as usize].port.is_some() => self.txq[slot as usize].push(d),
            _ => self.hand_off(snap, out, d, st),
        }
    }

    /// Sends `d` through tunnel port `port`: to remote `remote`, or to every
    /// remote (head-end replication) for `NO_REMOTE`.
    fn encap(&mut self, snap: &Snapshot, t: &Tunnel, port: PortId, d: Desc, remote: u16, st: usize) {
        let tst = self.slot_of(port).unwrap_or(st);
        if d.len > t.max_inner_frame {
            self.count_drop(tst, DropReason::TunnelMtu);
            self.pool.free(d.addr);
            return;
        }
        let targets = match remote {
            NO_REMOTE => 0..t.remotes.len(),
            r if usize::from(r) < t.remotes.len() => usize::from(r)..usize::from(r) + 1,
            _ => 0..0,
        };
        if targets.is_empty() {
            self.count_drop(tst, DropReason::NoNeighbor);
            self.pool.free(d.addr);
            return;
        }
        if !self.captures.is_empty() {
            self.capture(port, d, true);
        }
        let sport = vxlan::src_port(vxlan::flow_hash(self.pool.data(d)));
        let last = targets.end - 1;
        for r in targets {
            let Some(outer) = t.remotes[r].outer.as_ref() else {
                self.count_drop(tst, DropReason::NoNeighbor);
                if r == last {
                    self.pool.free(d.addr);
                }
                continue;
            };
            let frame = if r == last {
                d
            } else {
                let Some(chunk) = self.pool.alloc() else {
                    self.count_drop(tst, DropReason::NoBuffer);
                    continue;
                };
                let copy = Desc { addr: chunk + HEADROOM as u64, len: d.len };
                let (src, dst) = self.pool.pair_mut(d, copy);
                dst.copy_from_slice(src);
                copy
            };
            let chunk = frame.chunk();
            let off = (frame.addr - chunk) as usize;
            let Some(start) = outer.encap(self.pool.chunk_mut(chunk), off, frame.len as usize, sport) else {
                self.count_drop(tst, DropReason::NoBuffer);
                self.pool.free(frame.addr);
                continue;
            };
            PortStats::add(&self.ports[tst].stats.tx_packets, 1);
            PortStats::add(&self.ports[tst].stats.tx_bytes, u64::from(frame.len));
            let outer_frame = Desc { addr: chunk + start as u64, len: frame.len + outer.len() as u32 };
            self.queue_tx(snap, t.uplink, outer_frame, tst);
        }
    }

    fn edit_tag(&mut self, d: Desc, edit: TagEdit) -> Option<Desc> {
        let chunk = d.chunk();
        let off = (d.addr - chunk) as usize;
        let len = d.len as usize;
        let buf = self.pool.chunk_mut(chunk);
        let (off, len) = match edit {
            TagEdit::Keep => (off, len),
            TagEdit::Push(vid) => (vlan::push(buf, off, len, vid)?, len + vlan::TAG_LEN),
            TagEdit::Pop => (vlan::pop(buf, off, len)?, len - vlan::TAG_LEN),
            TagEdit::Rewrite(vid) => {
                vlan::set_vid(&mut buf[off..off + len], vid);
                (off, len)
            }
        };
        Some(Desc { addr: chunk + off as u64, len: len as u32 })
    }

    fn hand_off(&mut self, snap: &Snapshot, out: PortId, d: Desc, st: usize) {
        let target = snap.tx_thread(out).map(usize::from).filter(|t| *t != usize::from(self.index));
        let Some(inbox) = target.and_then(|t| self.handoff.inbox.get(t)) else {
            self.count_drop(st, DropReason::PortDown);
            self.pool.free(d.addr);
            return;
        };
        let Some(mut parcel) = self.handoff.spare.pop() else {
            self.count_drop(st, DropReason::NoBuffer);
            self.pool.free(d.addr);
            return;
        };
        let frame = self.pool.data(d);
        parcel.port = out;
        parcel.len = frame.len() as u16;
        parcel.data[..frame.len()].copy_from_slice(frame);
        self.pool.free(d.addr);
        if let Err(p) = inbox.push(parcel) {
            let _ = self.handoff.spare.push(p);
            self.count_drop(st, DropReason::TxFull);
        }
    }

    fn take_parcels(&mut self) -> usize {
        let handoff = self.handoff.clone();
        let Some(inbox) = handoff.inbox.get(usize::from(self.index)) else { return 0 };
        let mut n = 0;
        while n < BATCH {
            let Some(parcel) = inbox.pop() else { break };
            n += 1;
            let slot = self
                .tx_slot
                .get(parcel.port as usize)
                .copied()
                .filter(|s| *s != NO_SLOT && self.ports[*s as usize].port.is_some());
            match (slot, self.pool.alloc()) {
                (Some(slot), Some(chunk)) => {
                    let d = Desc { addr: chunk + HEADROOM as u64, len: u32::from(parcel.len) };
                    self.pool.data_mut(d).copy_from_slice(&parcel.data[..usize::from(parcel.len)]);
                    self.txq[slot as usize].push(d);
                }
                (Some(slot), None) => self.ports[slot as usize].stats.drop_one(DropReason::NoBuffer),
                (None, chunk) => {
                    if let Some(c) = chunk {
                        self.pool.free(c);
                    }
                }
            }
            let _ = handoff.spare.push(parcel);
        }
        n
    }

    fn transmit(&mut self) {
        for (i, lp) in self.ports.iter_mut().enumerate() {
            let Some(port) = lp.port.as_mut() else { continue };
            let q = &mut self.txq[i];
            if !q.is_empty() {
                if let Some((_, ring)) = self.captures.iter().find(|(p, _)| *p == lp.id) {
                    for d in q.iter() {
                        ring.offer(self.pool.data(*d), true);
                    }
                }
                let sent = port.send(&mut self.pool, q);
                PortStats::add(&lp.stats.tx_packets, sent as u64);
                PortStats::add(&lp.stats.tx_bytes, q[..sent].iter().map(|d| u64::from(d.len)).sum());
                if sent < q.len() {
                    lp.stats.drop_n(DropReason::TxFull, (q.len() - sent) as u64);
                }
                q.clear();
            }
            // A failing flush means the interface is going away; the frames
            // it held are counted when they are refused, and the control
            // thread takes the port down.
            let _ = port.flush(&mut self.pool);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdb::Fdb;
    use crate::port::mem::{mem_port, MemHandle};
    use crate::snapshot::{BridgeInfo, PortInfo, VlanMode, VlanSet};
    use crate::wire::MacAddr;

    struct Rig {
        pmd: Pmd,
        handles: Vec<MemHandle>,
        stats: Vec<Arc<PortStats>>,
        tx: Sender<Command>,
    }

    fn rig(modes: Vec<VlanMode>) -> Rig {
        let (tx, rx) = crossbeam::channel::unbounded();
        let pool = Pool::new(256).unwrap();
        let mut pmd = Pmd::new(
            0,
            pool,
            rx,
            Handoff::new(1, 4),
            Arc::new(ThreadStats::default()),
            Instant::now(),
            PmdOptions::default(),
        );
        let infos: Vec<PortInfo> = modes
            .into_iter()
            .enumerate()
            .map(|(i, vlan)| PortInfo { id: i as u16, bridge: 0, vlan, name: format!("p{i}"), kind: PortKind::Plain })
            .collect();
        let refs: Vec<&PortInfo> = infos.iter().collect();
        let br = BridgeInfo::new(0, "br0", Arc::new(Fdb::new(64)), &refs);
        let mut handles = Vec::new();
        let mut stats = Vec::new();
        for p in &infos {
            let (port, h) = mem_port();
            let st = Arc::new(PortStats::default());
            tx.send(Command::AddPort(LocalPort {
                id: p.id,
                queue: 0,
                port: Some(Box::new(port)),
                rx: true,
                stats: st.clone(),
            }))
            .unwrap();
            handles.push(h);
            stats.push(st);
        }
        let snap = Snapshot {
            generation: 1,
            tx_thread: vec![0; infos.len()],
            vteps: vec![],
            ports: infos.into_iter().map(Some).collect(),
            bridges: vec![Some(br)],
        };
        tx.send(Command::Snapshot(Arc::new(snap))).unwrap();
        assert!(pmd.apply_commands());
        Rig { pmd, handles, stats, tx }
    }

    fn frame(dst: u8, src: u8, tag: Option<u16>) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src];
        if dst == 0xff {
            f[..6].copy_from_slice(&[0xff; 6]);
        }
        if let Some(t) = tag {
            f.extend([0x81, 0]);
            f.extend(t.to_be_bytes());
        }
        f.extend([0x88, 0xb5]);
        f.resize(f.len() + 46, 0xab);
        f
    }

    #[test]
    fn floods_then_forwards_and_returns_every_buffer() {
        let mut r = rig(vec![VlanMode::Access(1); 3]);
        let free0 = r.pmd.pool_free();
        r.handles[0].inject(&frame(0xb, 0xa, None));
        r.pmd.poll_once();
        assert_eq!(r.handles[1].take_sent(), vec![frame(0xb, 0xa, None)]);
        assert_eq!(r.handles[2].take_sent(), vec![frame(0xb, 0xa, None)]);
        assert!(r.handles[0].take_sent().is_empty(), "never back to the ingress port");
        r.handles[1].inject(&frame(0xa, 0xb, None));
        r.pmd.poll_once();
        assert_eq!(r.handles[0].take_sent().len(), 1);
        assert!(r.handles[2].take_sent().is_empty(), "learned: no flood");
        assert_eq!(r.pmd.pool_free(), free0);
        assert_eq!(r.stats[0].read().rx_packets, 1);
        assert_eq!(r.stats[0].read().tx_packets, 1);
        assert_eq!((r.stats[0].read().flooded, r.stats[0].read().forwarded), (1, 0));
        assert_eq!((r.stats[1].read().flooded, r.stats[1].read().forwarded), (0, 1));
    }

    #[test]
    fn trunk_tags_and_access_untags() {
        let trunk = VlanMode::Trunk { allowed: [10, 20].into_iter().collect::<VlanSet>(), native: None };
        let mut r = rig(vec![VlanMode::Access(10), VlanMode::Access(20), trunk]);
        r.handles[0].inject(&frame(0xff, 0xa, None));
        r.pmd.poll_once();
        assert_eq!(r.handles[2].take_sent(), vec![frame(0xff, 0xa, Some(10))]);
        assert!(r.handles[1].take_sent().is_empty(), "VLAN 20 is isolated from 10");
        r.handles[2].inject(&frame(0xff, 0xc, Some(20)));
        r.pmd.poll_once();
        assert_eq!(r.handles[1].take_sent(), vec![frame(0xff, 0xc, None)]);
        assert!(r.handles[0].take_sent().is_empty());
    }

    #[test]
    fn bad_frames_are_counted_not_forwarded() {
        let mut r = rig(vec![VlanMode::Access(1); 2]);
        let free0 = r.pmd.pool_free();
        r.handles[0].inject(&[1, 2, 3]);
        r.handles[0].inject(&frame(0xb, 0xa, Some(7)));
        let mut mc = frame(0xb, 0xa, None);
        mc[6] = 1;
        r.handles[0].inject(&mc);
        r.pmd.poll_once();
        assert!(r.handles[1].take_sent().is_empty());
        let c = r.stats[0].read();
        assert_eq!(c.drops[DropReason::Runt as usize], 1);
        assert_eq!(c.drops[DropReason::VlanFiltered as usize], 1);
        assert_eq!(c.drops[DropReason::BadSrcMac as usize], 1);
        assert_eq!(c.rx_packets, c.forwarded + c.flooded + c.total_drops());
        assert_eq!(r.pmd.pool_free(), free0);
    }

    #[test]
    fn captures_what_ports_receive_and_send() {
        use crate::capture::{CaptureRing, Direction};
        let mut r = rig(vec![VlanMode::Access(1); 2]);
        let rx = CaptureRing::new(8, 2048, Direction::In);
        let tx = CaptureRing::new(8, 20, Direction::Both);
        r.tx.send(Command::StartCapture { id: 0, ring: rx.clone() }).unwrap();
        r.tx.send(Command::StartCapture { id: 1, ring: tx.clone() }).unwrap();
        r.pmd.apply_commands();
        let f = frame(0xff, 0xa, None);
        r.handles[0].inject(&f);
        r.pmd.poll_once();
        let got = rx.take().unwrap();
        assert_eq!((got.bytes(), got.out), (&f[..], false));
        let sent = tx.take().unwrap();
        assert_eq!((sent.bytes(), sent.orig_len, sent.out), (&f[..20], f.len() as u32, true));
        assert!(rx.take().is_none() && tx.take().is_none());
        r.tx.send(Command::StopCapture { id: 0 }).unwrap();
        r.pmd.apply_commands();
        r.handles[0].inject(&f);
        r.pmd.poll_once();
        assert!(rx.take().is_none(), "captured after stop");
    }

    /// A port that receives nothing and reports what the kernel dropped.
    struct KernelDropper(Arc<std::sync::atomic::AtomicU64>);

    impl Port for KernelDropper {
        fn recv(&mut self, _: &mut Pool, _: &mut [Desc]) -> std::io::Result<usize> {
            Ok(0)
        }
        fn send(&mut self, pool: &mut Pool, frames: &[Desc]) -> usize {
            frames.iter().for_each(|d| pool.free(d.addr));
            0
        }
        fn flush(&mut self, _: &mut Pool) -> std::io::Result<()> {
            Ok(())
        }
        fn release(&mut self, _: &mut Pool) {}
        fn kernel_drops(&self) -> u64 {
            self.0.load(Relaxed)
        }
    }

    #[test]
    fn kernel_drops_are_added_up_across_socket_reopens() {
        let r = rig(vec![VlanMode::Access(1)]);
        let mut pmd = r.pmd;
        let total = Arc::new(std::sync::atomic::AtomicU64::new(5));
        let st = Arc::new(PortStats::default());
        let lp = |st: &Arc<PortStats>| LocalPort {
            id: 0,
            queue: 1,
            port: Some(Box::new(KernelDropper(total.clone()))),
            rx: true,
            stats: st.clone(),
        };
        r.tx.send(Command::AddPort(lp(&st))).unwrap();
        pmd.apply_commands();
        pmd.publish_kernel_drops();
        total.store(7, Relaxed);
        pmd.publish_kernel_drops();
        assert_eq!(st.read().kernel_drops, 7);
        // The socket opened anew: its total starts again from zero.
        let (done, wait) = crossbeam::channel::bounded(1);
        r.tx.send(Command::RemoveQueue { id: 0, queue: 1, done }).unwrap();
        r.tx.send(Command::AddPort(lp(&st))).unwrap();
        pmd.apply_commands();
        wait.recv().unwrap();
        total.store(2, Relaxed);
        pmd.publish_kernel_drops();
        assert_eq!(st.read().kernel_drops, 9);
    }

    #[test]
    fn full_tx_ring_counts_drops() {
        let mut r = rig(vec![VlanMode::Access(1); 2]);
        r.handles[1].limit_tx(Some(1));
        r.handles[0].inject(&frame(0xff, 0xa, None));
        r.handles[0].inject(&frame(0xff, 0xa, None));
        r.pmd.poll_once();
        assert_eq!(r.handles[1].take_sent().len(), 1);
        assert_eq!(r.stats[1].read().drops[DropReason::TxFull as usize], 1);
    }

    #[test]
    fn removed_port_stops_and_frees() {
        let mut r = rig(vec![VlanMode::Access(1); 2]);
        let free0 = r.pmd.pool_free();
        let (done_tx, done_rx) = crossbeam::channel::bounded(1);
        r.tx.send(Command::RemovePort { id: 1, done: done_tx }).unwrap();
        assert!(r.pmd.apply_commands());
        done_rx.recv().unwrap();
        r.handles[0].inject(&frame(0xff, 0xa, None));
        r.handles[1].inject(&frame(0xff, 0xb, None));
        r.pmd.poll_once();
        assert!(r.handles[1].take_sent().is_empty());
        assert_eq!(r.pmd.pool_free(), free0);
        let _ = MacAddr::BROADCAST;
    }

    #[test]
    fn frames_cross_threads_through_the_handoff() {
        let (tx0, rx0) = crossbeam::channel::unbounded();
        let (tx1, rx1) = crossbeam::channel::unbounded();
        let handoff = Handoff::new(2, 8);
        let mk = |i, rx| {
            Pmd::new(
                i,
                Pool::new(64).unwrap(),
                rx,
                handoff.clone(),
                Arc::new(ThreadStats::default()),
                Instant::now(),
                PmdOptions::default(),
            )
        };
        let (mut a, mut b) = (mk(0, rx0), mk(1, rx1));
        let infos: Vec<PortInfo> = (0..2)
            .map(|i| PortInfo {
                id: i,
                bridge: 0,
                vlan: VlanMode::Access(1),
                name: format!("p{i}"),
                kind: PortKind::Plain,
            })
            .collect();
        let refs: Vec<&PortInfo> = infos.iter().collect();
        let br = BridgeInfo::new(0, "br0", Arc::new(Fdb::new(64)), &refs);
        let snap = Arc::new(Snapshot {
            generation: 1,
            tx_thread: vec![0, 1],
            vteps: vec![],
            ports: infos.into_iter().map(Some).collect(),
            bridges: vec![Some(br)],
        });
        let (p0, h0) = mem_port();
        let (p1, h1) = mem_port();
        let st = Arc::new(PortStats::default());
        tx0.send(Command::AddPort(LocalPort {
            id: 0,
            queue: 0,
            port: Some(Box::new(p0)),
            rx: true,
            stats: st.clone(),
        }))
        .unwrap();
        tx1.send(Command::AddPort(LocalPort { id: 1, queue: 0, port: Some(Box::new(p1)), rx: true, stats: st }))
            .unwrap();
        tx0.send(Command::Snapshot(snap.clone())).unwrap();
        tx1.send(Command::Snapshot(snap)).unwrap();
        a.apply_commands();
        b.apply_commands();
        h0.inject(&frame(0xff, 0xa, None));
        a.poll_once();
        b.poll_once();
        assert_eq!(h1.take_sent(), vec![frame(0xff, 0xa, None)]);
        assert!(h0.take_sent().is_empty());
    }

    /// p0 and p1 local ports, p2 the uplink, p3 a VXLAN port (VNI 42) to
    /// three remote VTEPs, all on one thread.
    fn tunnel_rig() -> (Pmd, Vec<MemHandle>, Vec<Arc<PortStats>>, Vec<std::net::IpAddr>) {
        use crate::snapshot::{Remote, Tunnel, Vtep, NO_BRIDGE, TX_ANY};
        use crate::wire::vxlan::{OuterTemplate, PORT};
        let ip = |last: u8| std::net::IpAddr::from([198, 18, 9, last]);
        let remotes = vec![ip(2), ip(3), ip(4)];
        let up = MacAddr([2, 0, 0, 0, 9, 1]);
        let tunnel = Tunnel {
            vni: 42,
            local: ip(1),
            dst_port: PORT,
            uplink: 2,
            max_inner_frame: 1464,
            remotes: remotes
                .iter()
                .enumerate()
                .map(|(i, &r)| Remote {
                    ip: r,
                    outer: OuterTemplate::new(up, MacAddr([2, 0, 0, 0, 9, 0x10 + i as u8]), ip(1), r, PORT, 64, 42),
                })
                .collect(),
        };
        let info =
            |id: u16, bridge, kind| PortInfo { id, bridge, vlan: VlanMode::Access(1), name: format!("p{id}"), kind };
        let infos = vec![
            info(0, 0, PortKind::Plain),
            info(1, 0, PortKind::Plain),
            info(2, NO_BRIDGE, PortKind::Uplink),
            info(3, 0, PortKind::Vxlan(Arc::new(tunnel))),
        ];
        let refs: Vec<&PortInfo> = infos.iter().filter(|p| p.bridge == 0).collect();
        let br = BridgeInfo::new(0, "br0", Arc::new(Fdb::new(64)), &refs);
        let (tx, rx) = crossbeam::channel::unbounded();
        let mut pmd = Pmd::new(
            0,
            Pool::new(256).unwrap(),
            rx,
            Handoff::new(1, 4),
            Arc::default(),
            Instant::now(),
            PmdOptions::default(),
        );
        let (mut handles, mut stats) = (Vec::new(), Vec::new());
        for id in 0..4u16 {
            let st = Arc::new(PortStats::default());
            let port: Option<Box<dyn Port>> = if id < 3 {
                let (p, h) = mem_port();
                handles.push(h);
                Some(Box::new(p))
            } else {
                None
            };
            tx.send(Command::AddPort(LocalPort { id, queue: 0, rx: port.is_some(), port, stats: st.clone() })).unwrap();
            stats.push(st);
        }
        let snap = Snapshot {
            generation: 1,
            tx_thread: vec![0, 0, 0, TX_ANY],
            vteps: vec![Vtep { local: ip(1), dst_port: PORT, vni: 42, port: 3 }],
            ports: infos.into_iter().map(Some).collect(),
            bridges: vec![Some(br)],
        };
        tx.send(Command::Snapshot(Arc::new(snap))).unwrap();
        assert!(pmd.apply_commands());
        (pmd, handles, stats, remotes)
    }

    /// The remote VTEP (outer IPv4 destination) of each encapsulated frame.
    fn outer_dsts(frames: &[Vec<u8>]) -> Vec<std::net::IpAddr> {
        frames.iter().map(|f| crate::wire::vxlan::decap(f).expect("a VXLAN frame").dst).collect()
    }

    #[test]
    fn tunnel_floods_to_every_remote_learns_and_never_returns() {
        use crate::wire::vxlan::OuterTemplate;
        let (mut pmd, h, stats, remotes) = tunnel_rig();
        let free0 = pmd.pool_free();
        // A broadcast from a local host: to p1, and once to every remote.
        h[0].inject(&frame(0xff, 0xa, None));
        pmd.poll_once();
        assert_eq!(h[1].take_sent().len(), 1);
        let out = h[2].take_sent();
        assert_eq!(outer_dsts(&out), remotes, "head-end replication to every remote");
        for f in &out {
            assert_eq!(&f[crate::wire::vxlan::OVERHEAD_V4..], &frame(0xff, 0xa, None)[..], "inner frame unchanged");
        }

        // A broadcast from behind remote 1 (198.18.9.3): to the local
        // ports only, never back into the tunnel (split horizon).
        let from_remote = |src: u8, dst: u8| {
            let t = OuterTemplate::new(
                MacAddr([2, 0, 0, 0, 9, 0x11]),
                MacAddr([2, 0, 0, 0, 9, 1]),
                remotes[1],
                std::net::IpAddr::from([198, 18, 9, 1]),
                crate::wire::vxlan::PORT,
                64,
                42,
            )
            .unwrap();
            let inner = frame(dst, src, None);
            let mut buf = vec![0u8; t.len()];
            buf.extend(&inner);
            let off = t.encap(&mut buf, t.len(), inner.len(), 50000).unwrap();
            buf[off..].to_vec()
        };
        h[2].inject(&from_remote(0xc, 0xff));
        pmd.poll_once();
        assert_eq!(h[0].take_sent(), vec![frame(0xff, 0xc, None)]);
        assert_eq!(h[1].take_sent(), vec![frame(0xff, 0xc, None)]);
        assert!(h[2].take_sent().is_empty(), "flooded back across the tunnel");
        assert_eq!(stats[3].read().rx_packets, 1, "decapsulated frames count on the tunnel port");

        // Its source was learned behind remote 1: a reply goes there alone.
        h[0].inject(&frame(0xc, 0xa, None));
        pmd.poll_once();
        assert_eq!(outer_dsts(&h[2].take_sent()), vec![remotes[1]]);
        assert!(h[1].take_sent().is_empty(), "known unicast flooded");
        assert_eq!(pmd.pool_free(), free0, "every buffer returned");
    }

    #[test]
    fn tunnel_drops_what_does_not_fit_and_bad_vxlan() {
        let (mut pmd, h, stats, _) = tunnel_rig();
        let free0 = pmd.pool_free();
        let mut big = frame(0xff, 0xa, None);
        big.resize(1465, 0);
        h[0].inject(&big);
        pmd.poll_once();
        assert!(h[2].take_sent().is_empty(), "an oversize inner frame was encapsulated");
        assert_eq!(h[1].take_sent().len(), 1, "local ports still get it");
        assert_eq!(stats[3].read().drops[DropReason::TunnelMtu as usize], 1);
        h[2].inject(&[0u8; 60]);
        pmd.poll_once();
        assert_eq!(stats[2].read().drops[DropReason::NotVxlan as usize], 1);
        assert_eq!(pmd.pool_free(), free0);
    }
}
