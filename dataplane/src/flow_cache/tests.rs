//! The flow cache: hits, eviction, admission, and batches decided exactly as the slow path decides.
use super::*;
use crate::fdb::{Fdb, NO_REMOTE};
use crate::ids::BridgeId;
use crate::ids::Vid;
use crate::snapshot::{VlanMode, VlanSet};
use crate::testing::frame_between as frame;
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
                FlowKey::of(PortId(0), NO_REMOTE, &f).unwrap().hash() & mask
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
    let k = FlowKey::of(PortId(3), 7, &f).unwrap();
    assert_eq!((k.ingress(), k.remote()), (PortId(3), 7));
    assert_eq!(k.dst(), MacAddr([0x12, 0, 0, 0, 0, 0xb]));
    assert_eq!(k.src(), MacAddr([2, 0, 0, 0, 0, 0xa]));
    // The tag is part of the key; bytes after it are not.
    let mut other = f.clone();
    other[15] = 0x65;
    assert_ne!(FlowKey::of(PortId(3), 7, &other), Some(k));
    other = f.clone();
    other[20] ^= 1;
    assert_eq!(FlowKey::of(PortId(3), 7, &other), Some(k));
    assert_ne!(FlowKey::of(PortId(3), NO_REMOTE, &f), Some(k));
}

/// Four ports on one bridge: 0,1 access VLAN 10; 2 access VLAN 20;
/// 3 trunk 10,20. `gen` is the snapshot generation.
fn world(fdb: Arc<Fdb>, gen: u64, vlan_of_1: u16) -> Snapshot {
    let modes = [
        VlanMode::Access(Vid(10)),
        VlanMode::Access(Vid(vlan_of_1)),
        VlanMode::Access(Vid(20)),
        VlanMode::Trunk { allowed: [10, 20].map(Vid).into_iter().collect::<VlanSet>(), native: None },
    ];
    crate::testing::one_bridge(fdb, gen, modes)
}

#[test]
fn hits_after_the_first_frame_and_learning_invalidates() {
    let fdb = Arc::new(Fdb::new(64));
    let s = world(fdb.clone(), 1, 10);
    let mut c = FlowCache::new(64);
    // A → B unknown: flood. Learning A changed the FDB after the entry's
    // epoch was read, so the second frame decides again; the third hits.
    for _ in 0..3 {
        assert_eq!(c.classify(&s, PortId(0), NO_REMOTE, &frame(0xb, 0xa, None), 0).action, Action::Flood(BridgeId(0)));
    }
    assert_eq!((c.stats().hits, c.stats().misses), (1, 2));
    // B answers: learning B bumps the epoch, so A → B is decided anew.
    assert_eq!(c.classify(&s, PortId(1), NO_REMOTE, &frame(0xa, 0xb, None), 0).action, Action::Unicast(PortId(0)));
    assert_eq!(c.classify(&s, PortId(0), NO_REMOTE, &frame(0xb, 0xa, None), 0).action, Action::Unicast(PortId(1)));
    assert_eq!(c.classify(&s, PortId(0), NO_REMOTE, &frame(0xb, 0xa, None), 0).action, Action::Unicast(PortId(1)));
    assert_eq!(c.stats().hits, 2);
}

#[test]
fn hits_refresh_the_source_mac_once_a_second() {
    let fdb = Arc::new(Fdb::new(64));
    let s = world(fdb.clone(), 1, 10);
    let mut c = FlowCache::new(64);
    c.classify(&s, PortId(1), NO_REMOTE, &frame(0xa, 0xb, None), 0);
    c.classify(&s, PortId(0), NO_REMOTE, &frame(0xb, 0xa, None), 0);
    for now in 1..=400 {
        c.classify(&s, PortId(0), NO_REMOTE, &frame(0xb, 0xa, None), now);
        c.classify(&s, PortId(1), NO_REMOTE, &frame(0xa, 0xb, None), now);
        fdb.age(now, 300);
    }
    assert!(fdb.lookup(MacAddr([2, 0, 0, 0, 0, 0xa]), Vid(10)).is_some(), "A aged out while its flow hit the cache");
}

#[test]
fn configuration_change_invalidates() {
    let fdb = Arc::new(Fdb::new(64));
    let s1 = world(fdb.clone(), 1, 10);
    let mut c = FlowCache::new(64);
    c.classify(&s1, PortId(1), NO_REMOTE, &frame(0xa, 0xb, None), 0);
    c.classify(&s1, PortId(0), NO_REMOTE, &frame(0xb, 0xa, None), 0);
    assert_eq!(c.classify(&s1, PortId(0), NO_REMOTE, &frame(0xb, 0xa, None), 0).action, Action::Unicast(PortId(1)));
    // Port 1 moves to VLAN 20: B is no longer reachable from VLAN 10.
    let s2 = world(fdb, 2, 20);
    let v = c.classify(&s2, PortId(0), NO_REMOTE, &frame(0xb, 0xa, None), 0);
    let slow = pipeline::classify(&s2, PortId(0), &frame(0xb, 0xa, None), 0);
    assert!(same_decision(&v, &slow), "{v:?} vs {slow:?}");
}

#[test]
fn length_decided_frames_bypass_the_cache() {
    let fdb = Arc::new(Fdb::new(64));
    let s = world(fdb, 1, 10);
    let mut c = FlowCache::new(64);
    assert_eq!(c.classify(&s, PortId(0), NO_REMOTE, &[0u8; 10], 0).action, Action::Drop(DropReason::Runt));
    let mut cut = frame(0xb, 0xa, Some(10));
    cut.truncate(16);
    assert_eq!(c.classify(&s, PortId(3), NO_REMOTE, &cut, 0).action, Action::Drop(DropReason::BadVlan));
    assert_eq!(c.stats().entries, 0);
}

#[test]
fn collisions_evict_the_least_recent_and_count() {
    let fdb = Arc::new(Fdb::new(64));
    // Sources known beforehand, so that no learning leaves entries stale.
    for m in [0xa, 0xb, 0xc] {
        fdb.learn(MacAddr([2, 0, 0, 0, 0, m]), Vid(10), PortId(0), 0);
    }
    let s = world(fdb, 1, 10);
    // One set of two ways: two flows fit, a third evicts the one seen
    // least recently.
    let mut c = FlowCache::new(2);
    let (a, b, d) = (frame(0xff, 0xa, None), frame(0xff, 0xb, None), frame(0xff, 0xc, None));
    c.classify(&s, PortId(0), NO_REMOTE, &a, 0);
    c.classify(&s, PortId(0), NO_REMOTE, &b, 1);
    c.classify(&s, PortId(0), NO_REMOTE, &a, 2);
    assert_eq!((c.stats().entries, c.stats().evictions), (2, 0));
    // A full set admits a new flow now and then, not at once.
    let mut tries = 0;
    while c.stats().evictions == 0 && tries < 1000 {
        c.classify(&s, PortId(0), NO_REMOTE, &d, 3);
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
    c.classify_batch(&s, 0, 3, |k| (PortId(frames[k].0), NO_REMOTE, &frames[k].1[..]), 0, &mut out);
    let actions: Vec<Action> = out.iter().map(|v| v.action).collect();
    assert_eq!(actions, [Action::Flood(BridgeId(0)), Action::Unicast(PortId(0)), Action::Unicast(PortId(1))]);
    // A skipped frame keeps the verdict it had.
    let mut out = [Verdict::drop(DropReason::NotVxlan); 3];
    c.classify_batch(&s, 0, 3, |k| (PortId(frames[k].0), NO_REMOTE, &frames[k].1[..]), 0b010, &mut out);
    assert_eq!(out[1].action, Action::Drop(DropReason::NotVxlan));
    assert_eq!(out[2].action, Action::Unicast(PortId(1)));
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
                Ev::Remove(m) => drop(f.remove(mac(m), Vid(10))),
                Ev::Static(m, p) => drop(f.add_static(mac(m), Vid(10), PortId(p), now)),
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
        cache.classify_batch(
            &self.sa,
            now,
            batch.len(),
            |k| (PortId(batch[k].0), NO_REMOTE, &batch[k].1[..]),
            0,
            &mut out,
        );
        for ((port, f), cached) in batch.iter().zip(&out) {
            let slow = pipeline::classify(&self.sb, PortId(*port), f, now);
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
