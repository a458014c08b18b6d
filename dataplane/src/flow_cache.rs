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

use crate::fdb::{Dest, Learn};
use crate::pipeline::{self, Action, Verdict};
use crate::port::MAX_FRAME;
use crate::snapshot::{PortId, Snapshot};
use crate::stats::DropReason;
use crate::wire::ethernet::{EtherType, HEADER_LEN};
use crate::wire::MacAddr;

/// Entries per thread (a power of two).
pub const DEFAULT_ENTRIES: usize = 8192;

/// The fields of a frame a decision depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Ingress port.
    pub ingress: PortId,
    /// Remote VTEP index for frames from a tunnel, else `NO_REMOTE`.
    pub remote: u16,
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// EtherType or TPID (bytes 12..14).
    pub ethertype: u16,
    /// The tag's TCI for 802.1Q frames, else 0.
    pub tci: u16,
}

impl FlowKey {
    /// The key of `frame`, or `None` if its length alone decides its fate
    /// (runt, oversize, cut-short tag): those always take the full path.
    #[inline]
    pub fn of(ingress: PortId, remote: u16, frame: &[u8]) -> Option<FlowKey> {
        if frame.len() < HEADER_LEN || frame.len() > MAX_FRAME {
            return None;
        }
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        let tci = if ethertype == EtherType::VLAN {
            let t = frame.get(14..18)?;
            u16::from_be_bytes([t[0], t[1]])
        } else {
            0
        };
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&frame[0..6]);
        src.copy_from_slice(&frame[6..12]);
        Some(FlowKey { ingress, remote, dst, src, ethertype, tci })
    }

    #[inline]
    fn hash(&self) -> usize {
        let a = u64::from_le_bytes([
            self.dst[0],
            self.dst[1],
            self.dst[2],
            self.dst[3],
            self.dst[4],
            self.dst[5],
            self.src[0],
            self.src[1],
        ]);
        let b = u64::from_le_bytes([
            self.src[2],
            self.src[3],
            self.src[4],
            self.src[5],
            self.ethertype as u8,
            (self.ethertype >> 8) as u8,
            self.tci as u8,
            (self.tci >> 8) as u8,
        ]);
        let c = u64::from(self.ingress) | (u64::from(self.remote) << 16);
        // Every key bit must reach the low bits the table index takes: a
        // lone multiply left flows differing only in the MACs' last bytes
        // (the usual case) on a few dozen slots.
        fmix64(a ^ fmix64(b ^ c.rotate_left(48))) as usize
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

#[derive(Clone, Copy)]
struct Entry {
    key: FlowKey,
    used: bool,
    generation: u64,
    epoch: u64,
    verdict: Verdict,
    learned_at: u32,
    hits: u64,
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
    mask: usize,
    stats: CacheStats,
}

impl FlowCache {
    /// A cache of `size` entries (rounded up to a power of two).
    pub fn new(size: usize) -> FlowCache {
        let size = size.next_power_of_two().max(1);
        let empty = Entry {
            key: FlowKey::default(),
            used: false,
            generation: 0,
            epoch: 0,
            verdict: Verdict::drop(DropReason::Runt),
            learned_at: 0,
            hits: 0,
        };
        FlowCache { entries: vec![empty; size].into_boxed_slice(), mask: size - 1, stats: CacheStats::default() }
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Drops every entry.
    pub fn flush(&mut self) {
        for e in self.entries.iter_mut() {
            e.used = false;
        }
        self.stats.entries = 0;
    }

    /// The entries still valid under `snap`.
    pub fn flows(&self, snap: &Snapshot) -> Vec<CachedFlow> {
        self.entries
            .iter()
            .filter(|e| e.used && e.generation == snap.generation && Some(e.epoch) == epoch_of(snap, e.key.ingress))
            .map(|e| CachedFlow { key: e.key, verdict: e.verdict, hits: e.hits })
            .collect()
    }

    /// The valid entry for `key`, if the cache holds one: (verdict, hits).
    pub fn peek(&self, snap: &Snapshot, key: &FlowKey) -> Option<(Verdict, u64)> {
        let e = &self.entries[key.hash() & self.mask];
        let valid =
            e.used && e.key == *key && e.generation == snap.generation && Some(e.epoch) == epoch_of(snap, key.ingress);
        valid.then_some((e.verdict, e.hits))
    }

    /// The decision for `frame` (from `ingress`, and remote VTEP `remote`
    /// behind it), from the cache when it holds a valid one, else from
    /// [`pipeline::classify_from`], whose result is then cached.
    #[inline]
    pub fn classify(&mut self, snap: &Snapshot, ingress: PortId, remote: u16, frame: &[u8], now: u32) -> Verdict {
        let Some(key) = FlowKey::of(ingress, remote, frame) else {
            self.stats.misses += 1;
            return pipeline::classify_from(snap, ingress, remote, frame, now);
        };
        let Some(epoch) = epoch_of(snap, ingress) else {
            self.stats.misses += 1;
            return pipeline::classify_from(snap, ingress, remote, frame, now);
        };
        let i = key.hash() & self.mask;
        let e = &mut self.entries[i];
        if e.used && e.key == key && e.generation == snap.generation && e.epoch == epoch {
            let mut v = e.verdict;
            if e.learned_at != now {
                // Keep the source MAC alive, as the full path would.
                if let Some(learn) = refresh(snap, &key, &v, now) {
                    if matches!(learn, Learn::Known | Learn::Refreshed) {
                        e.learned_at = now;
                        v.learn = Some(learn);
                    } else {
                        // Learning changed the FDB: the decision may too.
                        self.stats.misses += 1;
                        return self.insert(i, key, epoch, snap, frame, now);
                    }
                }
            }
            e.hits += 1;
            self.stats.hits += 1;
            return v;
        }
        self.stats.misses += 1;
        self.insert(i, key, epoch, snap, frame, now)
    }

    /// Decides by the full pipeline and caches the result under `epoch`,
    /// read before the decision: any FDB change after that read, this
    /// frame's own learning included, leaves the entry stale, never wrong.
    fn insert(&mut self, i: usize, key: FlowKey, epoch: u64, snap: &Snapshot, frame: &[u8], now: u32) -> Verdict {
        let v = pipeline::classify_from(snap, key.ingress, key.remote, frame, now);
        let e = &mut self.entries[i];
        if e.used && e.key != key {
            self.stats.evictions += 1;
        } else if !e.used {
            self.stats.entries += 1;
        }
        *e = Entry { key, used: true, generation: snap.generation, epoch, verdict: v, learned_at: now, hits: 1 };
        v
    }
}

/// The FDB epoch of the bridge `ingress` belongs to.
#[inline]
fn epoch_of(snap: &Snapshot, ingress: PortId) -> Option<u64> {
    let port = snap.port(ingress)?;
    Some(snap.bridge(port.bridge)?.fdb.epoch())
}

/// Re-learns the source MAC of a cached flow; `None` if the verdict did
/// not learn (a dropped bad source, say).
#[inline]
fn refresh(snap: &Snapshot, key: &FlowKey, v: &Verdict, now: u32) -> Option<Learn> {
    v.learn?;
    let port = snap.port(key.ingress)?;
    let bridge = snap.bridge(port.bridge)?;
    Some(bridge.fdb.learn_at(MacAddr(key.src), v.vid, Dest { port: key.ingress, remote: key.remote }, now))
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
        // common case, must land on about as many slots as random keys
        // would (~940 of 8,192), not on a few dozen.
        let mask = DEFAULT_ENTRIES - 1;
        for vary_src in [false, true] {
            let slots: std::collections::HashSet<usize> = (0..1000u16)
                .map(|i| {
                    let [hi, lo] = i.to_be_bytes();
                    let mut k = FlowKey {
                        dst: [2, 0, 0, 0, 0, 1],
                        src: [2, 0, 0, 0, 0, 2],
                        ethertype: 0x0800,
                        ..Default::default()
                    };
                    let mac = if vary_src { &mut k.src } else { &mut k.dst };
                    mac[4] = hi;
                    mac[5] = lo;
                    k.hash() & mask
                })
                .collect();
            assert!(
                slots.len() > 900,
                "1,000 flows on {} slots (varying {})",
                slots.len(),
                if vary_src { "src" } else { "dst" }
            );
        }
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
    fn collisions_evict_and_count() {
        let fdb = Arc::new(Fdb::new(64));
        let s = world(fdb, 1, 10);
        let mut c = FlowCache::new(1);
        c.classify(&s, 0, NO_REMOTE, &frame(0xff, 0xa, None), 0);
        c.classify(&s, 0, NO_REMOTE, &frame(0xff, 0xc, None), 0);
        assert_eq!(c.stats().evictions, 1);
        assert_eq!(c.stats().entries, 1);
        c.flush();
        assert_eq!(c.stats().entries, 0);
        assert!(c.flows(&s).is_empty());
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

    proptest! {
        /// Two identical switches see the same frames and events; one
        /// decides through the cache, the other always by the full
        /// pipeline. Every decision must be the same.
        #[test]
        fn cached_decisions_equal_the_slow_path(events in proptest::collection::vec(ev(), 1..400)) {
            let (fa, fb) = (Arc::new(Fdb::new(4)), Arc::new(Fdb::new(4)));
            let (mut gen, mut vlan1) = (1u64, 10u16);
            let (mut sa, mut sb) = (world(fa.clone(), gen, vlan1), world(fb.clone(), gen, vlan1));
            let mut cache = FlowCache::new(16);
            let mut now = 0u32;
            let mac = |m: u8| MacAddr([2, 0, 0, 0, 0, m]);
            for e in events {
                match e {
                    Ev::Frame { port, dst, src, tag, dt } => {
                        now += dt;
                        let f = frame(dst, src, tag);
                        let cached = cache.classify(&sa, port, NO_REMOTE, &f, now);
                        let slow = pipeline::classify(&sb, port, &f, now);
                        prop_assert!(same_decision(&cached, &slow), "cached {:?} slow {:?}", cached, slow);
                    }
                    Ev::Flush => { fa.flush(None); fb.flush(None); }
                    Ev::Remove(m) => { fa.remove(mac(m), 10); fb.remove(mac(m), 10); }
                    Ev::Static(m, p) => { fa.add_static(mac(m), 10, p, now); fb.add_static(mac(m), 10, p, now); }
                    Ev::Age => { fa.age(now, 2); fb.age(now, 2); }
                    Ev::MovePort1 => {
                        gen += 1;
                        vlan1 = if vlan1 == 10 { 20 } else { 10 };
                        sa = world(fa.clone(), gen, vlan1);
                        sb = world(fb.clone(), gen, vlan1);
                    }
                }
            }
        }
    }
}
