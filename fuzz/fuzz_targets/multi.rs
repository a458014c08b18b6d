//! The multi-thread path of the whole switch in memory: the `pipeline`
//! target's ports spread over three polling threads that share one handoff
//! (16 parcels), one FDB and one snapshot, so that unicast, floods, VLAN tag
//! edits, decap and encap cross threads (`hand_off`, `take_parcels`, every
//! thread's `transmit`). The fuzzer picks the frames, the order in which
//! threads poll (a thread may poll before applying its commands: it then
//! decides with an old snapshot while parcels are in flight), and events
//! between polls: FDB flushes, static MACs added and removed (moves), a
//! lower learning limit, ports removed and re-added, short transmit rings.
//! The threads run in turn on one OS thread, so every input replays.
//!
//! A single-thread rig (`rig.rs`) replays every batch a thread received, in
//! the same order and under the snapshot that thread decided with, so both
//! take the same decisions. After draining every thread:
//! - no panic; every thread's buffers are back in its pool;
//! - per port, rx, forwarded, flooded and learn_refused equal the single
//!   thread's, and rx equals the frames injected;
//! - every egress copy is accounted for: frames sent + frames dropped (all
//!   reasons, every port, every thread) equal the single thread's;
//! - per port, the frames sent are byte-identical to the single thread's,
//!   but for those the threads dropped under a reason (parcels used up, a
//!   full ring, a port gone); with the same drops, exactly the same frames.
//!
//! Input: records, each an op byte and its arguments.
//! - `0x00..=0x7f` a frame: [op][len][bytes] on port `op & 3` (3: the
//!   uplink; with bit 2 wrapped in VXLAN from remote 0), `len * 8` bytes
//!   plus 256 per unit of bits 3-5; bit 6 then polls the port's thread.
//! - `0x80..=0xbf` a poll of thread `(op & 3) % 3`, `1 + (op >> 3 & 7)`
//!   times; bit 2: without applying its commands first.
//! - `0xc0..=0xff` an event `op >> 3 & 7` with `x = op & 7`: flush learned
//!   MACs; flush port x's; static MAC [6 bytes][vlan] on port x; remove MAC
//!   [6][vlan]; remove or re-add port `x & 3` (bit 2: forget its MACs);
//!   port `x & 3` sends at most [n] more (255: no limit); poll every
//!   thread; lower the learning limit to [n & 31].
#![no_main]

mod rig;

use crossbeam::channel::Sender;
use libfuzzer_sys::fuzz_target;
use rvs_dataplane::fdb::Fdb;
use rvs_dataplane::ids::{PortId, Vid};
use rvs_dataplane::pmd::{Command, Pmd, BATCH};
use rvs_dataplane::port::mem::MemHandle;
use rvs_dataplane::port::HEADROOM;
use rvs_dataplane::snapshot::{PortInfo, Snapshot, TX_ANY};
use rvs_dataplane::stats::{PortCounters, PortStats, DROP_REASONS};
use rvs_dataplane::testing;
use rvs_dataplane::wire::MacAddr;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

const THREADS: usize = 3;
const PORTS: usize = rig::TUNNEL + 1;
/// The thread that sends on each port: every local port on its own, the
/// uplink beside p1, so that floods, decap and encap cross threads.
const OWNER: [u8; PORTS] = [0, 1, 2, 1, TX_ANY];
/// The single-thread rig's (`testing::world`'s).
const SINGLE: [u8; PORTS] = [0, 0, 0, 0, TX_ANY];
/// Few, so that a burst uses them up.
const PARCELS: usize = 16;
/// Enough that a thread always takes a whole batch from each of its ports
/// (a frame holds at most 3 buffers: itself, a flood copy, an encap copy),
/// which the replay relies on.
const BUFFERS: u32 = 1024;
const VLANS: [u16; 3] = [1, 10, 20];

/// What the control plane published; each thread sees what it applied.
#[derive(Clone)]
struct View {
    generation: u64,
    present: [bool; PORTS],
    /// Per port, its handle (index in `Multi::handles[port]`).
    handle: [usize; PORTS],
    /// Per thread, the ports it receives on, in the order it polls them.
    order: [Vec<usize>; THREADS],
    /// The same configuration over the single-thread rig's FDB.
    single: Arc<Snapshot>,
}

struct Multi {
    pmds: Vec<Pmd>,
    txs: Vec<Sender<Command>>,
    fdb: Arc<Fdb>,
    free0: Vec<usize>,
    /// Per port, every handle it had in this input (none for the tunnel).
    handles: Vec<Vec<MemHandle>>,
    /// Per port, its counters on each thread that has it.
    stats: Vec<Vec<Arc<PortStats>>>,
    /// What was published last, what the rig started from, and what each
    /// thread applied.
    now: View,
    start: View,
    seen: Vec<View>,
    /// Frames not yet received, per port.
    staged: Vec<VecDeque<Vec<u8>>>,
    injected: [u64; PORTS],
    single: rig::Rig,
    /// The generation the single-thread rig runs.
    single_gen: u64,
    /// The snapshots of each set of present ports (for both rigs), built
    /// once: a generation stands for one configuration.
    built: Vec<Option<[Arc<Snapshot>; 2]>>,
}

/// The generation of the configuration with these ports (above the
/// single-thread rig's first, 1).
fn generation(present: &[bool; PORTS]) -> u64 {
    100 + (0..PORTS).filter(|i| present[*i]).map(|i| 1 << i).sum::<u64>()
}

/// The rig's snapshot without the absent ports, each sent by `owner[id]`.
fn spread(fdb: &Arc<Fdb>, present: &[bool; PORTS], owner: &[u8; PORTS]) -> Snapshot {
    let ports = rig::ports().into_iter().filter(|p| present[p.id.index()]).collect();
    let mut s = testing::world(fdb.clone(), generation(present), ports, rig::vteps());
    // `world` lists the ports in a row; a snapshot holds each at its id.
    let mut at: Vec<Option<PortInfo>> = (0..PORTS).map(|_| None).collect();
    for p in s.ports.drain(..).flatten() {
        let i = p.id.index();
        at[i] = Some(p);
    }
    s.ports = at;
    s.tx_thread = (0..PORTS).map(|i| if present[i] { owner[i] } else { TX_ANY }).collect();
    s
}

impl Multi {
    fn new() -> Multi {
        let (mut pmds, txs) = testing::pmds(THREADS as u8, PARCELS, BUFFERS);
        let fdb = Arc::new(Fdb::new(rig::MAX_MACS));
        let present = [true; PORTS];
        let (handles, stats) = testing::attach_threads(&mut pmds, &txs, spread(&fdb, &present, &OWNER));
        let single = rig::rig();
        let now = View {
            generation: generation(&present),
            present,
            handle: [0; PORTS],
            order: std::array::from_fn(|t| (0..PORTS).filter(|p| usize::from(OWNER[*p]) == t).collect()),
            single: Arc::new(spread(&single.fdb, &present, &SINGLE)),
        };
        Multi {
            free0: pmds.iter().map(Pmd::pool_free).collect(),
            pmds,
            txs,
            fdb,
            handles: handles.into_iter().map(|h| h.into_iter().collect()).collect(),
            stats,
            start: now.clone(),
            seen: vec![now.clone(); THREADS],
            now,
            staged: vec![VecDeque::new(); PORTS],
            injected: [0; PORTS],
            single,
            single_gen: 1,
            built: vec![None; 1 << PORTS],
        }
    }

    fn fdbs(&self) -> [&Fdb; 2] {
        [&self.fdb, &self.single.fdb]
    }

    /// Sends every thread the snapshot of `now`.
    fn publish(&mut self) {
        let (present, fdbs) = (self.now.present, [self.fdb.clone(), self.single.fdb.clone()]);
        let slot = &mut self.built[generation(&present) as usize - 100];
        let [snap, single] = slot
            .get_or_insert_with(|| [0, 1].map(|i| Arc::new(spread(&fdbs[i], &present, [&OWNER, &SINGLE][i]))))
            .clone();
        self.now.generation = snap.generation;
        self.now.single = single;
        for tx in &self.txs {
            tx.send(Command::Snapshot(snap.clone())).unwrap();
        }
    }

    /// Removes port `p` from its thread, or gives it back as a new port.
    fn toggle(&mut self, p: usize, forget: bool) {
        let (owner, id) = (usize::from(OWNER[p]), PortId(p as u16));
        if self.now.present[p] {
            let (done, _) = crossbeam::channel::bounded(1);
            self.txs[owner].send(Command::RemovePort { id, done }).unwrap();
            self.now.order[owner].retain(|q| *q != p);
            self.staged[p].clear();
            if forget {
                for f in self.fdbs() {
                    f.forget_port(id);
                }
            }
        } else {
            let (local, h) = testing::mem_local(id, self.stats[p][0].clone());
            self.txs[owner].send(Command::AddPort(local)).unwrap();
            self.handles[p].push(h);
            self.now.handle[p] = self.handles[p].len() - 1;
            self.now.order[owner].push(p);
        }
        self.now.present[p] = !self.now.present[p];
        self.publish();
    }

    /// One round of thread `t` (after its commands if `apply`) over what
    /// is staged for its ports; then the same batches through the single
    /// thread. Returns the frames the thread moved.
    fn poll(&mut self, t: usize, apply: bool) -> usize {
        if apply {
            assert!(self.pmds[t].apply_commands(), "thread {t} stopped");
            self.seen[t] = self.now.clone();
        }
        let view = &self.seen[t];
        let mut batches = Vec::new();
        for &p in &view.order[t] {
            let n = self.staged[p].len().min(BATCH);
            if n > 0 {
                let frames: Vec<Vec<u8>> = self.staged[p].drain(..n).collect();
                frames.iter().for_each(|f| self.handles[p][view.handle[p]].inject(f));
                batches.push((p, frames, self.stats[p][0].rx_packets.load(Relaxed)));
            }
        }
        let moved = self.pmds[t].poll_once();
        for (p, frames, rx0) in &batches {
            let got = self.stats[*p][0].rx_packets.load(Relaxed) - rx0;
            assert_eq!(got, frames.len() as u64, "thread {t} took {got} of {} frames on p{p}", frames.len());
            self.injected[*p] += got;
        }
        if !batches.is_empty() && self.single_gen != view.generation {
            self.single.tx.send(Command::Snapshot(view.single.clone())).unwrap();
            assert!(self.single.pmd.apply_commands());
            self.single_gen = view.generation;
        }
        for (p, frames, _) in batches {
            frames.iter().for_each(|f| self.single.handles[p].inject(f));
            self.single.pmd.poll_once();
        }
        moved
    }

    /// Polls every thread until nothing moves (no frame staged, no parcel
    /// in flight).
    fn drain(&mut self) {
        while (0..THREADS).map(|t| self.poll(t, true)).sum::<usize>() > 0 {}
    }

    /// Back to the state after `new`, counters apart.
    fn reset(&mut self) {
        // A thread polls its ports in the order they were added: restore it.
        for t in 0..THREADS {
            if self.now.order[t] != self.start.order[t] {
                for p in self.now.order[t].clone() {
                    self.toggle(p, false);
                }
            }
        }
        for p in 0..PORTS {
            if !self.now.present[p] {
                self.toggle(p, false);
            }
        }
        // A cache entry stays right as long as its generation and FDB epoch
        // (so the same input may hit where it missed before), but for a
        // refusal across a raised learning limit: see `event`.
        if self.fdbs().iter().any(|f| f.limit() != rig::MAX_MACS) {
            self.txs.iter().chain([&self.single.tx]).for_each(|tx| tx.send(Command::FlushFlows).unwrap());
            assert!(self.single.pmd.apply_commands());
        }
        for pmd in &mut self.pmds {
            assert!(pmd.apply_commands());
        }
        for (p, hs) in self.handles.iter_mut().enumerate() {
            if let Some(h) = hs.pop() {
                h.limit_tx(None);
                *hs = vec![h];
                self.now.handle[p] = 0;
            }
        }
        self.seen = vec![self.now.clone(); THREADS];
        for f in self.fdbs() {
            f.remove_where(|_| true);
            f.set_limit(rig::MAX_MACS);
        }
        self.staged.iter_mut().for_each(VecDeque::clear);
        self.injected = [0; PORTS];
    }

    /// Every port's counters, added up over the threads, in both rigs.
    fn counters(&self) -> (Vec<PortCounters>, Vec<PortCounters>) {
        let multi = self
            .stats
            .iter()
            .map(|st| {
                let mut c = PortCounters::default();
                st.iter().for_each(|s| c.accumulate(&s.read()));
                c
            })
            .collect();
        (multi, self.single.stats.iter().map(|s| s.read()).collect())
    }

    fn run(&mut self, data: &[u8]) {
        let (before, before1) = self.counters();
        let outer = rig::from_remote0();
        let mut rest = data;
        while let [op, tail @ ..] = rest {
            rest = tail;
            match op {
                0x00..=0x7f => {
                    let [len, tail @ ..] = rest else { break };
                    let n = (usize::from(*len) * 8 + (usize::from(op & 0x38) << 5)).min(tail.len());
                    let (frame, more) = tail.split_at(n);
                    rest = more;
                    let p = usize::from(op & 3);
                    if !self.now.present[p] {
                        continue;
                    }
                    let frame = if p == rig::UPLINK && op & 4 != 0 && frame.len() >= 14 {
                        let mut buf = vec![0u8; HEADROOM + frame.len()];
                        buf[HEADROOM..].copy_from_slice(frame);
                        let off = outer.encap(&mut buf, HEADROOM, frame.len(), 50000).unwrap();
                        buf.split_off(off)
                    } else {
                        frame.to_vec()
                    };
                    self.staged[p].push_back(frame);
                    if op & 0x40 != 0 {
                        self.poll(usize::from(OWNER[p]), true);
                    }
                }
                0x80..=0xbf => {
                    for _ in 0..=(op >> 3 & 7) {
                        self.poll(usize::from(op & 3) % THREADS, op & 4 == 0);
                    }
                }
                _ => {
                    let x = usize::from(op & 7);
                    let kind = op >> 3 & 7;
                    let args = match kind {
                        2 | 3 => 7,
                        5 | 7 => 1,
                        _ => 0,
                    };
                    if rest.len() < args {
                        break;
                    }
                    let (a, tail) = rest.split_at(args);
                    rest = tail;
                    self.event(kind, x, a);
                }
            }
        }
        self.drain();
        self.check(&before, &before1);
    }

    /// Event `kind` with `x` (the op's low bits) and its arguments `a`.
    fn event(&mut self, kind: u8, x: usize, a: &[u8]) {
        let port = PortId((x % PORTS) as u16);
        match kind {
            0 | 1 => {
                for f in self.fdbs() {
                    f.flush((kind == 1).then_some(port));
                }
            }
            2 | 3 => {
                let (mac, vid) = (MacAddr([a[0], a[1], a[2], a[3], a[4], a[5]]), Vid(VLANS[usize::from(a[6]) % 3]));
                for f in self.fdbs() {
                    if kind == 2 {
                        f.add_static(mac, vid, port, 0);
                    } else {
                        f.remove(mac, vid);
                    }
                }
            }
            4 => self.toggle(x & 3, x & 4 != 0),
            5 => {
                let p = x & 3;
                self.handles[p][self.now.handle[p]].limit_tx((a[0] != 255).then_some(usize::from(a[0])));
            }
            6 => {
                for t in 0..THREADS {
                    self.poll(t, true);
                }
            }
            // Only lowered: a raise does not change the FDB epoch, so a
            // cached refusal outlives it (up to a second, in every rig).
            _ => self.fdbs().iter().for_each(|f| f.set_limit(f.limit().min(u32::from(a[0] & 31)))),
        }
    }

    fn check(&self, before: &[PortCounters], before1: &[PortCounters]) {
        for (t, pmd) in self.pmds.iter().enumerate() {
            assert_eq!(pmd.pool_free(), self.free0[t], "thread {t} lost a buffer");
        }
        assert_eq!(self.single.pmd.pool_free(), self.single.free0, "the single thread lost a buffer");
        for f in self.fdbs() {
            assert!(f.learned() <= f.capacity_limit(), "FDB over its limit: {}", f.learned());
        }
        let (now, now1) = self.counters();
        let (mut drops, mut drops1) = ([0u64; DROP_REASONS], [0u64; DROP_REASONS]);
        for p in 0..PORTS {
            let (c, c1) = (rig::since(&now[p], &before[p]), rig::since(&now1[p], &before1[p]));
            let decided = |c: &PortCounters| (c.rx_packets, c.forwarded, c.flooded, c.learn_refused);
            assert_eq!(decided(&c), decided(&c1), "p{p}: (rx, fwd, flood, refused) differ from one thread's");
            if p != rig::TUNNEL {
                assert_eq!(c.rx_packets, self.injected[p], "p{p}: frames received != frames injected");
            }
            (0..DROP_REASONS).for_each(|r| (drops[r], drops1[r]) = (drops[r] + c.drops[r], drops1[r] + c1.drops[r]));
        }
        let (mut sent, mut sent1) = (0, 0);
        for p in 0..rig::TUNNEL {
            let mut out: Vec<Vec<u8>> = self.handles[p].iter().flat_map(MemHandle::take_sent).collect();
            let mut out1 = self.single.handles[p].take_sent();
            assert!(out.iter().all(|f| f.len() >= 14), "p{p} sent a runt");
            out.sort();
            out1.sort();
            (sent, sent1) = (sent + out.len(), sent1 + out1.len());
            if drops == drops1 {
                assert!(out == out1, "p{p}: {} frames sent, one thread sent {} (same drops)", out.len(), out1.len());
            } else {
                assert!(included(&out, &out1), "p{p} sent a frame one thread did not");
            }
        }
        let (lost, lost1): (u64, u64) = (drops.iter().sum(), drops1.iter().sum());
        assert_eq!(
            sent as u64 + lost,
            sent1 as u64 + lost1,
            "egress copies: {sent} sent + {lost} dropped {drops:?} != one thread's {sent1} + {lost1} {drops1:?}"
        );
    }
}

/// True if the sorted `a` is a sub-multiset of the sorted `b`.
fn included(a: &[Vec<u8>], b: &[Vec<u8>]) -> bool {
    let mut b = b.iter();
    a.iter().all(|x| b.by_ref().any(|y| y == x))
}

thread_local! {
    // Built once (pools, flow caches), reset for each input.
    static MULTI: RefCell<Multi> = RefCell::new(Multi::new());
}

fuzz_target!(|data: &[u8]| MULTI.with(|m| {
    let mut m = m.borrow_mut();
    m.reset();
    m.run(data);
}));
