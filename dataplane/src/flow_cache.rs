//! Exact-match cache of forwarding decisions, one per polling thread.
//!
//! The key is every frame field the decision reads: ingress port (and the
//! remote VTEP for frames from a tunnel), both MAC addresses, and the
//! EtherType/TPID with the VLAN tag. An entry stores the whole verdict, and
//! it is valid only while the configuration snapshot's generation and the
//! bridge's FDB epoch are the ones it was made under. Anything that could
//! change a decision (a new MAC, a move, an age-out, a flush, a static
//! entry, any port, bridge, tunnel or VLAN change) bumps one of the two, so
//! a stale entry can never be used: invalidation is by construction, not
//! by tracking what each change touches.
//!
//! A hit still keeps MAC learning alive: once per second per flow it
//! refreshes the source MAC's age in the FDB, and if that learning changes
//! the FDB (the MAC was aged out meanwhile) the frame takes the slow path.
//!
//! The table is 2-way set associative, one cache line an entry, so that
//! two hot flows on one set do not take turns evicting each other. A batch
//! is decided in stages: keys and set addresses for every frame first (the
//! sets prefetched), then a probe of each set (the FDB slots of the misses
//! prefetched), then the decisions in arrival order. The last stage reads
//! the FDB epoch afresh for every frame, so a frame always sees the FDB as
//! the frames before it in the batch left it: the batch decides exactly as
//! frame-by-frame classification would, only with the memory latency of
//! the lookups overlapped.

use crate::fdb::{Dest, Fdb, Learn};
use crate::ids::PortId;
use crate::pipeline::{self, Action, Verdict};
use crate::port::MAX_FRAME;
use crate::prefetch::prefetch;
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::wire::ethernet::{EtherType, HEADER_LEN};
use crate::wire::MacAddr;

/// Entries per thread (a power of two): 4 MiB, enough to hold 100,000
/// flows' worth of the hottest ones.
pub const DEFAULT_ENTRIES: usize = 65536;

/// A miss whose set is full replaces an entry only one time in this many
/// (as Open vSwitch's EMC does): with more flows than entries, replacing on
/// every miss would only churn the table; this way it keeps a stable part
/// of the flows, which hit, and the others cost one lookup, not an insert.
const ADMIT_ONE_IN: u32 = 16;

/// The most frames one `classify_batch` call takes.
pub const MAX_BATCH: usize = 64;

const WAYS: usize = 2;
/// Set in every key's `origin`, so an unused entry (all zero) never matches.
const IN_USE: u32 = 1 << 31;
/// `sets` of a frame that bypasses the cache.
const NO_SET: u32 = u32::MAX;

/// The fields of a frame a decision depends on, in three words: bytes 0..8
/// (the destination MAC and the start of the source), bytes 8..14 (the
/// rest of the source and the EtherType) with an 802.1Q tag's TCI above
/// them, and the ingress port with the remote VTEP behind it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    head: u64,
    tail: u64,
    origin: u32,
}

impl FlowKey {
    /// The key of `frame`, or `None` if its length alone decides its fate
    /// (runt, oversize, cut-short tag) or it is ARP or ND: those always
    /// take the full path.
    #[inline]
    pub fn of(ingress: PortId, remote: u16, frame: &[u8]) -> Option<FlowKey> {
        if frame.len() < HEADER_LEN || frame.len() > MAX_FRAME {
            return None;
        }
        // ARP and ND are decided by what they carry (answered or not) and
        // teach the neighbour table: every one takes the full path.
        if crate::responder::is_neigh(frame) {
            return None;
        }
        let head = u64::from_le_bytes(frame[0..8].try_into().ok()?);
        let mut tail = u64::from(u32::from_le_bytes(frame[8..12].try_into().ok()?))
            | u64::from(u16::from_le_bytes([frame[12], frame[13]])) << 32;
        if u16::from_be_bytes([frame[12], frame[13]]) == EtherType::VLAN {
            // The whole tag must be there for the frame to be cached.
            let t = frame.get(14..18)?;
            tail |= u64::from(u16::from_le_bytes([t[0], t[1]])) << 48;
        }
        let origin = IN_USE | u32::from(ingress) | u32::from(remote & 0x7fff) << 16;
        Some(FlowKey { head, tail, origin })
    }

    /// Ingress port.
    pub fn ingress(&self) -> PortId {
        PortId(self.origin as u16)
    }

    /// Remote VTEP index for frames from a tunnel, else `NO_REMOTE`.
    pub fn remote(&self) -> u16 {
        ((self.origin >> 16) & 0x7fff) as u16
    }

    /// Destination MAC.
    pub fn dst(&self) -> MacAddr {
        let b = self.head.to_le_bytes();
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// Source MAC.
    pub fn src(&self) -> MacAddr {
        let (h, t) = (self.head.to_le_bytes(), self.tail.to_le_bytes());
        MacAddr([h[6], h[7], t[0], t[1], t[2], t[3]])
    }

    #[inline]
    fn hash(&self) -> usize {
        // The multiply spreads the MACs' last bytes (where flows usually
        // differ) over the whole word before the finalizer mixes in the rest;
        // every key bit must reach the low bits the set index takes.
        let h = self.head.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ self.tail.rotate_left(21) ^ u64::from(self.origin);
        fmix64(h) as usize
    }
}

/// MurmurHash3's 64-bit finalizer: each input bit flips about half of
/// the output bits.
#[inline]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// One cached decision: a cache line (the key's fields are laid out flat
/// so that the whole entry fits in 64 bytes).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Entry {
    head: u64,
    tail: u64,
    origin: u32,
    /// The second its flow last refreshed its source MAC: also the age
    /// that picks the way to evict.
    learned_at: u32,
    generation: u64,
    epoch: u64,
    hits: u64,
    verdict: Verdict,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 64, "a flow cache entry is one cache line");

impl Entry {
    #[inline]
    fn key(&self) -> FlowKey {
        FlowKey { head: self.head, tail: self.tail, origin: self.origin }
    }

    #[inline]
    fn holds(&self, key: &FlowKey) -> bool {
        self.head == key.head && self.tail == key.tail && self.origin == key.origin
    }

    #[inline]
    fn used(&self) -> bool {
        self.origin & IN_USE != 0
    }

    #[inline]
    fn valid(&self, generation: u64, epoch: u64) -> bool {
        self.generation == generation && self.epoch == epoch
    }
}

/// Counters of one cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Decisions taken from the cache.
    pub hits: u64,
    /// Decisions taken by the full pipeline.
    pub misses: u64,
    /// Entries replaced by another flow.
    pub evictions: u64,
    /// Slots holding an entry (some may be stale until reused).
    pub entries: u64,
}

/// A cached flow, for `rvsctl flows show`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedFlow {
    /// Its key.
    pub key: FlowKey,
    /// The decision.
    pub verdict: Verdict,
    /// Frames that used it.
    pub hits: u64,
}

/// The cache of one polling thread.
pub struct FlowCache {
    entries: Box<[Entry]>,
    set_mask: usize,
    stats: CacheStats,
    // Per frame of the batch being decided: its key and its set (or
    // NO_SET).
    keys: [FlowKey; MAX_BATCH],
    sets: [u32; MAX_BATCH],
    /// xorshift32 state for admitting new flows into full sets.
    rng: u32,
}

impl FlowCache {
    /// A cache of `size` entries (rounded up to a power of two, at least
    /// one set).
    pub fn new(size: usize) -> FlowCache {
        let size = size.next_power_of_two().max(WAYS);
        let empty = Entry {
            head: 0,
            tail: 0,
            origin: 0,
            learned_at: 0,
            generation: 0,
            epoch: 0,
            hits: 0,
            verdict: Verdict::drop(DropReason::Runt),
        };
        FlowCache {
            entries: vec![empty; size].into_boxed_slice(),
            set_mask: size / WAYS - 1,
            stats: CacheStats::default(),
            keys: [FlowKey::default(); MAX_BATCH],
            sets: [NO_SET; MAX_BATCH],
            rng: 0x9e37_79b9,
        }
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Drops every entry.
    pub fn flush(&mut self) {
        for e in self.entries.iter_mut() {
            e.origin = 0;
        }
        self.stats.entries = 0;
    }

    /// The entries still valid under `snap`.
    pub fn flows(&self, snap: &Snapshot) -> Vec<CachedFlow> {
        self.entries
            .iter()
            .filter(|e| {
                e.used() && e.generation == snap.generation && Some(e.epoch) == epoch_of(snap, e.key().ingress())
            })
            .map(|e| CachedFlow { key: e.key(), verdict: e.verdict, hits: e.hits })
            .collect()
    }

    /// The valid entry for `key`, if the cache holds one: (verdict, hits).
    pub fn peek(&self, snap: &Snapshot, key: &FlowKey) -> Option<(Verdict, u64)> {
        let set = key.hash() & self.set_mask;
        let e = self.entries[set * WAYS..][..WAYS].iter().find(|e| e.holds(key))?;
        let valid = Some(e.epoch) == epoch_of(snap, key.ingress()) && e.generation == snap.generation;
        valid.then_some((e.verdict, e.hits))
    }

    /// The decision for `frame` (from `ingress`, and remote VTEP `remote`
    /// behind it), from the cache when it holds a valid one, else from
    /// [`pipeline::classify_from`], whose result is then cached.
    #[inline]
    pub fn classify(&mut self, snap: &Snapshot, ingress: PortId, remote: u16, frame: &[u8], now: u32) -> Verdict {
        let mut out = [Verdict::drop(DropReason::Runt)];
        self.classify_batch(snap, now, 1, |_| (ingress, remote, frame), 0, &mut out);
        out[0]
    }

    /// Decides frames `0..n` of a batch into `out`: `frame(k)` gives the
    /// k-th frame with its ingress port and remote VTEP. Frames whose bit
    /// is set in `skip` are left alone (already decided by the caller).
    #[inline]
    pub fn classify_batch<'a>(
        &mut self,
        snap: &Snapshot,
        now: u32,
        n: usize,
        frame: impl Fn(usize) -> (PortId, u16, &'a [u8]),
        skip: u64,
        out: &mut [Verdict],
    ) {
        assert!(n <= MAX_BATCH && out.len() >= n, "batch of {n} frames");
        let todo = |k: usize| skip & (1 << k) == 0;
        // Parse: every key and its set, whose lines are fetched meanwhile.
        for k in (0..n).filter(|&k| todo(k)) {
            let (ingress, remote, f) = frame(k);
            self.sets[k] = match FlowKey::of(ingress, remote, f) {
                Some(key) => {
                    let set = key.hash() & self.set_mask;
                    self.keys[k] = key;
                    prefetch(&self.entries[set * WAYS]);
                    prefetch(&self.entries[set * WAYS + 1]);
                    set as u32
                }
                None => NO_SET,
            };
        }
        // Probe: a frame whose key is in no way will need the FDB, whose
        // slots for it are fetched while the others are probed.
        for k in (0..n).filter(|&k| todo(k)) {
            let set = self.sets[k];
            if set == NO_SET || self.way_of(set as usize, &self.keys[k]).is_none() {
                let (ingress, _, f) = frame(k);
                pipeline::prefetch(snap, ingress, f);
            }
        }
        // Decide, in arrival order.
        let mut fdb: Option<(PortId, Option<&Fdb>)> = None;
        for k in (0..n).filter(|&k| todo(k)) {
            let (ingress, remote, f) = frame(k);
            let set = self.sets[k];
            if set == NO_SET {
                self.stats.misses += 1;
                out[k] = pipeline::classify_from(snap, ingress, remote, f, now);
                continue;
            }
            let bridge_fdb = match fdb {
                Some((p, b)) if p == ingress => b,
                _ => {
                    let b = fdb_of(snap, ingress);
                    fdb = Some((ingress, b));
                    b
                }
            };
            let Some(bridge_fdb) = bridge_fdb else {
                self.stats.misses += 1;
                out[k] = pipeline::classify_from(snap, ingress, remote, f, now);
                continue;
            };
            out[k] = self.decide(snap, bridge_fdb, set as usize, self.keys[k], f, now);
        }
    }

    /// The way of `set` whose entry has `key`.
    #[inline]
    fn way_of(&self, set: usize, key: &FlowKey) -> Option<usize> {
        self.entries[set * WAYS..][..WAYS].iter().position(|e| e.holds(key))
    }

    /// The decision for one frame whose key is `key`, in `set`. The set is
    /// probed again: a frame earlier in the batch may have filled it.
    #[inline]
    fn decide(&mut self, snap: &Snapshot, fdb: &Fdb, set: usize, key: FlowKey, frame: &[u8], now: u32) -> Verdict {
        // Read before the decision: any FDB change after this, the frame's
        // own learning included, leaves the new entry stale, never wrong.
        let epoch = fdb.epoch();
        let way = self.way_of(set, &key);
        if let Some(way) = way {
            let i = set * WAYS + way;
            let e = &mut self.entries[i];
            if e.valid(snap.generation, epoch) {
                let mut v = e.verdict;
                if e.learned_at != now {
                    // Keep the source MAC alive, as the full path would.
                    if let Some(learn) = refresh(fdb, &key, &v, now) {
                        if !matches!(learn, Learn::Known | Learn::Refreshed) {
                            // Learning changed the FDB: the decision may too.
                            self.stats.misses += 1;
                            return self.insert(i, key, epoch, snap, frame, now);
                        }
                        e.learned_at = now;
                        v.learn = Some(learn);
                    }
                }
                e.hits += 1;
                self.stats.hits += 1;
                return v;
            }
        }
        self.stats.misses += 1;
        let i = match way {
            Some(way) => set * WAYS + way,
            None => match self.victim(set, snap.generation) {
                Some(i) => i,
                None => return pipeline::classify_from(snap, key.ingress(), key.remote(), frame, now),
            },
        };
        self.insert(i, key, epoch, snap, frame, now)
    }

    /// The entry of `set` a new flow takes: an unused one or one made under
    /// an older configuration if there is one, else, if the flow is
    /// admitted, the one whose flow was seen least recently. (Entries of
    /// other bridges have other epochs, so the epoch does not say which
    /// entries are dead.)
    #[inline]
    fn victim(&mut self, set: usize, generation: u64) -> Option<usize> {
        let base = set * WAYS;
        let ways = &self.entries[base..][..WAYS];
        if let Some(w) = ways.iter().position(|e| !e.used() || e.generation != generation) {
            return Some(base + w);
        }
        let lru = base + usize::from(ways[1].learned_at < ways[0].learned_at);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        self.rng.is_multiple_of(ADMIT_ONE_IN).then_some(lru)
    }

    /// Decides by the full pipeline and caches the result in entry `i`
    /// under `epoch`, read before the decision.
    fn insert(&mut self, i: usize, key: FlowKey, epoch: u64, snap: &Snapshot, frame: &[u8], now: u32) -> Verdict {
        let v = pipeline::classify_from(snap, key.ingress(), key.remote(), frame, now);
        let e = &mut self.entries[i];
        if e.used() && !e.holds(&key) {
            self.stats.evictions += 1;
        } else if !e.used() {
            self.stats.entries += 1;
        }
        *e = Entry {
            head: key.head,
            tail: key.tail,
            origin: key.origin,
            generation: snap.generation,
            epoch,
            verdict: v,
            learned_at: now,
            hits: 1,
        };
        v
    }
}

/// The FDB of the bridge `ingress` belongs to.
#[inline]
fn fdb_of(snap: &Snapshot, ingress: PortId) -> Option<&Fdb> {
    let port = snap.port(ingress)?;
    Some(&*snap.bridge(port.bridge?)?.fdb)
}

/// The FDB epoch of the bridge `ingress` belongs to.
#[inline]
fn epoch_of(snap: &Snapshot, ingress: PortId) -> Option<u64> {
    fdb_of(snap, ingress).map(Fdb::epoch)
}

/// Re-learns the source MAC of a cached flow; `None` if the verdict did
/// not learn (a dropped bad source, say).
#[inline]
fn refresh(fdb: &Fdb, key: &FlowKey, v: &Verdict, now: u32) -> Option<Learn> {
    v.learn?;
    Some(fdb.learn_at(key.src(), v.vid, Dest { port: key.ingress(), remote: key.remote() }, now))
}

/// True if two verdicts send the frame to the same place (for tests).
pub fn same_decision(a: &Verdict, b: &Verdict) -> bool {
    a.action == b.action && (a.vid == b.vid || matches!(a.action, Action::Drop(_))) && a.remote == b.remote
}

#[cfg(test)]
mod tests;
