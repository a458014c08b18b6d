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
    /// (runt, oversize, cut-short tag): those always take the full path.
    #[inline]
    pub fn of(ingress: PortId, remote: u16, frame: &[u8]) -> Option<FlowKey> {
        if frame.len() < HEADER_LEN || frame.len() > MAX_FRAME {
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
        self.origin as u16
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
    Some(&*snap.bridge(port.bridge)?.fdb)
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
mod tests {
    use super::*;
    use crate::fdb::{Fdb, NO_REMOTE};
    use crate::snapshot::{BridgeInfo, PortInfo, PortKind, VlanMode, VlanSet};
    use proptest::prelude::*;
    use std::sync::Arc;

    #[test]
    fn flows_spread_over_the_table() {
        // 1,000 flows that differ only in the last bytes of one MAC, the
        // common case, must land on about as many sets as random keys
        // would (~890 of 4,096), not on a few dozen.
        let mask = DEFAULT_ENTRIES / WAYS - 1;
        for vary_src in [false, true] {
            let sets: std::collections::HashSet<usize> = (0..1000u16)
                .map(|i| {
                    let [hi, lo] = i.to_be_bytes();
                    let mut f = frame(1, 2, None);
                    let at = if vary_src { 10 } else { 4 };
                    f[at] = hi;
                    f[at + 1] = lo;
                    FlowKey::of(0, NO_REMOTE, &f).unwrap().hash() & mask
                })
                .collect();
            assert!(
                sets.len() > 850,
                "1,000 flows on {} sets (varying {})",
                sets.len(),
                if vary_src { "src" } else { "dst" }
            );
        }
    }

    #[test]
    fn keys_give_back_their_fields() {
        let mut f = frame(0xb, 0xa, Some(0x2064));
        f[0] = 0x12;
        let k = FlowKey::of(3, 7, &f).unwrap();
        assert_eq!((k.ingress(), k.remote()), (3, 7));
        assert_eq!(k.dst(), MacAddr([0x12, 0, 0, 0, 0, 0xb]));
        assert_eq!(k.src(), MacAddr([2, 0, 0, 0, 0, 0xa]));
        // The tag is part of the key; bytes after it are not.
        let mut other = f.clone();
        other[15] = 0x65;
        assert_ne!(FlowKey::of(3, 7, &other), Some(k));
        other = f.clone();
        other[20] ^= 1;
        assert_eq!(FlowKey::of(3, 7, &other), Some(k));
        assert_ne!(FlowKey::of(3, NO_REMOTE, &f), Some(k));
    }

    /// Four ports on one bridge: 0,1 access VLAN 10; 2 access VLAN 20;
    /// 3 trunk 10,20. `gen` is the snapshot generation.
    fn world(fdb: Arc<Fdb>, gen: u64, vlan_of_1: u16) -> Snapshot {
        let modes = [
            VlanMode::Access(10),
            VlanMode::Access(vlan_of_1),
            VlanMode::Access(20),
            VlanMode::Trunk { allowed: [10, 20].into_iter().collect::<VlanSet>(), native: None },
        ];
        let ports: Vec<PortInfo> = modes
            .into_iter()
            .enumerate()
            .map(|(i, vlan)| PortInfo { id: i as u16, bridge: 0, vlan, name: format!("p{i}"), kind: PortKind::Plain })
            .collect();
        let refs: Vec<&PortInfo> = ports.iter().collect();
        let br = BridgeInfo::new(0, "br0", fdb, &refs);
        Snapshot {
            generation: gen,
            ports: ports.into_iter().map(Some).collect(),
            bridges: vec![Some(br)],
            tx_thread: vec![],
            vteps: vec![],
        }
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
        f.resize(f.len() + 46, 0);
        f
    }

    #[test]
    fn hits_after_the_first_frame_and_learning_invalidates() {
        let fdb = Arc::new(Fdb::new(64));
        let s = world(fdb.clone(), 1, 10);
        let mut c = FlowCache::new(64);
        // A → B unknown: flood. Learning A changed the FDB after the entry's
        // epoch was read, so the second frame decides again; the third hits.
        for _ in 0..3 {
            assert_eq!(c.classify(&s, 0, NO_REMOTE, &frame(0xb, 0xa, None), 0).action, Action::Flood(0));
        }
        assert_eq!((c.stats().hits, c.stats().misses), (1, 2));
        // B answers: learning B bumps the epoch, so A → B is decided anew.
        assert_eq!(c.classify(&s, 1, NO_REMOTE, &frame(0xa, 0xb, None), 0).action, Action::Unicast(0));
        assert_eq!(c.classify(&s, 0, NO_REMOTE, &frame(0xb, 0xa, None), 0).action, Action::Unicast(1));
        assert_eq!(c.classify(&s, 0, NO_REMOTE, &frame(0xb, 0xa, None), 0).action, Action::Unicast(1));
        assert_eq!(c.stats().hits, 2);
    }

    #[test]
    fn hits_refresh_the_source_mac_once_a_second() {
        let fdb = Arc::new(Fdb::new(64));
        let s = world(fdb.clone(), 1, 10);
        let mut c = FlowCache::new(64);
        c.classify(&s, 1, NO_REMOTE, &frame(0xa, 0xb, None), 0);
        c.classify(&s, 0, NO_REMOTE, &frame(0xb, 0xa, None), 0);
        for now in 1..=400 {
            c.classify(&s, 0, NO_REMOTE, &frame(0xb, 0xa, None), now);
            c.classify(&s, 1, NO_REMOTE, &frame(0xa, 0xb, None), now);
            fdb.age(now, 300);
        }
        assert!(fdb.lookup(MacAddr([2, 0, 0, 0, 0, 0xa]), 10).is_some(), "A aged out while its flow hit the cache");
    }

    #[test]
    fn configuration_change_invalidates() {
        let fdb = Arc::new(Fdb::new(64));
        let s1 = world(fdb.clone(), 1, 10);
        let mut c = FlowCache::new(64);
        c.classify(&s1, 1, NO_REMOTE, &frame(0xa, 0xb, None), 0);
        c.classify(&s1, 0, NO_REMOTE, &frame(0xb, 0xa, None), 0);
        assert_eq!(c.classify(&s1, 0, NO_REMOTE, &frame(0xb, 0xa, None), 0).action, Action::Unicast(1));
        // Port 1 moves to VLAN 20: B is no longer reachable from VLAN 10.
        let s2 = world(fdb, 2, 20);
        let v = c.classify(&s2, 0, NO_REMOTE, &frame(0xb, 0xa, None), 0);
        let slow = pipeline::classify(&s2, 0, &frame(0xb, 0xa, None), 0);
        assert!(same_decision(&v, &slow), "{v:?} vs {slow:?}");
    }

    #[test]
    fn length_decided_frames_bypass_the_cache() {
        let fdb = Arc::new(Fdb::new(64));
        let s = world(fdb, 1, 10);
        let mut c = FlowCache::new(64);
        assert_eq!(c.classify(&s, 0, NO_REMOTE, &[0u8; 10], 0).action, Action::Drop(DropReason::Runt));
        let mut cut = frame(0xb, 0xa, Some(10));
        cut.truncate(16);
        assert_eq!(c.classify(&s, 3, NO_REMOTE, &cut, 0).action, Action::Drop(DropReason::BadVlan));
        assert_eq!(c.stats().entries, 0);
    }

    #[test]
    fn collisions_evict_the_least_recent_and_count() {
        let fdb = Arc::new(Fdb::new(64));
        // Sources known beforehand, so that no learning leaves entries stale.
        for m in [0xa, 0xb, 0xc] {
            fdb.learn(MacAddr([2, 0, 0, 0, 0, m]), 10, 0, 0);
        }
        let s = world(fdb, 1, 10);
        // One set of two ways: two flows fit, a third evicts the one seen
        // least recently.
        let mut c = FlowCache::new(2);
        let (a, b, d) = (frame(0xff, 0xa, None), frame(0xff, 0xb, None), frame(0xff, 0xc, None));
        c.classify(&s, 0, NO_REMOTE, &a, 0);
        c.classify(&s, 0, NO_REMOTE, &b, 1);
        c.classify(&s, 0, NO_REMOTE, &a, 2);
        assert_eq!((c.stats().entries, c.stats().evictions), (2, 0));
        // A full set admits a new flow now and then, not at once.
        let mut tries = 0;
        while c.stats().evictions == 0 && tries < 1000 {
            c.classify(&s, 0, NO_REMOTE, &d, 3);
            tries += 1;
        }
        assert!(tries > 1 && tries < 1000, "admitted after {tries} frames");
        assert_eq!((c.stats().entries, c.stats().evictions), (2, 1));
        let cached: Vec<MacAddr> = c.flows(&s).iter().map(|f| f.key.src()).collect();
        assert!(cached.contains(&MacAddr([2, 0, 0, 0, 0, 0xa])) && !cached.contains(&MacAddr([2, 0, 0, 0, 0, 0xb])));
        c.flush();
        assert_eq!(c.stats().entries, 0);
        assert!(c.flows(&s).is_empty());
    }

    #[test]
    fn a_batch_decides_as_frame_by_frame_would() {
        // In one batch: A → B floods (B unknown), B → A teaches B, and the
        // next A → B must already go to B's port, though its set was probed
        // before B was learned.
        let fdb = Arc::new(Fdb::new(64));
        let s = world(fdb, 1, 10);
        let mut c = FlowCache::new(64);
        let frames = [(0, frame(0xb, 0xa, None)), (1, frame(0xa, 0xb, None)), (0, frame(0xb, 0xa, None))];
        let mut out = [Verdict::drop(DropReason::Runt); 3];
        c.classify_batch(&s, 0, 3, |k| (frames[k].0, NO_REMOTE, &frames[k].1[..]), 0, &mut out);
        let actions: Vec<Action> = out.iter().map(|v| v.action).collect();
        assert_eq!(actions, [Action::Flood(0), Action::Unicast(0), Action::Unicast(1)]);
        // A skipped frame keeps the verdict it had.
        let mut out = [Verdict::drop(DropReason::NotVxlan); 3];
        c.classify_batch(&s, 0, 3, |k| (frames[k].0, NO_REMOTE, &frames[k].1[..]), 0b010, &mut out);
        assert_eq!(out[1].action, Action::Drop(DropReason::NotVxlan));
        assert_eq!(out[2].action, Action::Unicast(1));
    }

    #[derive(Debug, Clone)]
    enum Ev {
        Frame { port: u16, dst: u8, src: u8, tag: Option<u16>, dt: u32 },
        Flush,
        Remove(u8),
        Static(u8, u16),
        Age,
        MovePort1,
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            12 => (0u16..4, prop_oneof![Just(0xffu8), 1u8..6], 1u8..6, proptest::option::of(prop_oneof![Just(10u16), Just(20), Just(30), Just(0)]), 0u32..3)
                .prop_map(|(port, dst, src, tag, dt)| Ev::Frame { port, dst, src, tag, dt }),
            1 => Just(Ev::Flush),
            1 => (1u8..6).prop_map(Ev::Remove),
            1 => (1u8..6, 0u16..4).prop_map(|(m, p)| Ev::Static(m, p)),
            1 => Just(Ev::Age),
            1 => Just(Ev::MovePort1),
        ]
    }

    /// Two identical switches: `a` decides through a cache, `b` by the
    /// full pipeline; configuration and FDB events hit both alike.
    struct Twins {
        fa: Arc<Fdb>,
        fb: Arc<Fdb>,
        gen: u64,
        vlan1: u16,
        sa: Snapshot,
        sb: Snapshot,
    }

    impl Twins {
        fn new() -> Twins {
            let (fa, fb) = (Arc::new(Fdb::new(4)), Arc::new(Fdb::new(4)));
            let (sa, sb) = (world(fa.clone(), 1, 10), world(fb.clone(), 1, 10));
            Twins { fa, fb, gen: 1, vlan1: 10, sa, sb }
        }

        /// Applies an event that is not a frame to both.
        fn apply(&mut self, e: &Ev, now: u32) {
            let mac = |m: u8| MacAddr([2, 0, 0, 0, 0, m]);
            for f in [&self.fa, &self.fb] {
                match *e {
                    Ev::Flush => drop(f.flush(None)),
                    Ev::Remove(m) => drop(f.remove(mac(m), 10)),
                    Ev::Static(m, p) => drop(f.add_static(mac(m), 10, p, now)),
                    Ev::Age => drop(f.age(now, 2)),
                    Ev::Frame { .. } | Ev::MovePort1 => {}
                }
            }
            if let Ev::MovePort1 = e {
                self.gen += 1;
                self.vlan1 = if self.vlan1 == 10 { 20 } else { 10 };
                self.sa = world(self.fa.clone(), self.gen, self.vlan1);
                self.sb = world(self.fb.clone(), self.gen, self.vlan1);
            }
        }

        /// Decides `batch` through `cache` on `a` and frame by frame on `b`;
        /// the first pair of decisions that differ, if any.
        fn decide(&self, cache: &mut FlowCache, batch: &[(u16, Vec<u8>)], now: u32) -> Result<(), TestCaseError> {
            let mut out = vec![Verdict::drop(DropReason::Runt); batch.len()];
            cache.classify_batch(&self.sa, now, batch.len(), |k| (batch[k].0, NO_REMOTE, &batch[k].1[..]), 0, &mut out);
            for ((port, f), cached) in batch.iter().zip(&out) {
                let slow = pipeline::classify(&self.sb, *port, f, now);
                prop_assert!(same_decision(cached, &slow), "cached {:?} slow {:?}", cached, slow);
            }
            Ok(())
        }
    }

    proptest! {
        // Many cases: a mismatch needs a learning frame and a stale hit
        // close together, which a few hundred sequences can miss.
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Every frame decided on its own: the cache's decision must be the
        /// slow path's.
        #[test]
        fn cached_decisions_equal_the_slow_path(events in proptest::collection::vec(ev(), 1..400)) {
            let mut t = Twins::new();
            let mut cache = FlowCache::new(16);
            let mut now = 0u32;
            for e in events {
                if let Ev::Frame { port, dst, src, tag, dt } = e {
                    now += dt;
                    t.decide(&mut cache, &[(port, frame(dst, src, tag))], now)?;
                } else {
                    t.apply(&e, now);
                }
            }
        }

        /// The same with frames decided in batches (as the polling thread
        /// does), events between batches: the batch must decide each frame
        /// as the slow path does frame by frame.
        #[test]
        fn batched_decisions_equal_the_slow_path(events in proptest::collection::vec(ev(), 1..400)) {
            let mut t = Twins::new();
            let mut cache = FlowCache::new(16);
            let mut now = 0u32;
            let mut batch: Vec<(u16, Vec<u8>)> = Vec::new();
            for e in events {
                // A batch ends at an event, when full, or when a second passes.
                let second = matches!(e, Ev::Frame { dt, .. } if dt > 1);
                if !matches!(e, Ev::Frame { .. }) || batch.len() == MAX_BATCH || second {
                    t.decide(&mut cache, &batch, now)?;
                    batch.clear();
                }
                match e {
                    Ev::Frame { port, dst, src, tag, .. } => {
                        now += u32::from(second);
                        batch.push((port, frame(dst, src, tag)));
                    }
                    e => t.apply(&e, now),
                }
            }
            t.decide(&mut cache, &batch, now)?;
        }
    }
}
