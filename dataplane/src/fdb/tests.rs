//! The MAC table: learning, limits, aging, moves, and concurrent readers.
use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

fn mac(n: u32) -> MacAddr {
    let b = n.to_be_bytes();
    MacAddr([0x02, 0, b[0], b[1], b[2], b[3]])
}

#[test]
fn learn_lookup_refresh_move() {
    let f = Fdb::new(16);
    assert_eq!(f.lookup(mac(1), Vid(1)), None);
    assert_eq!(f.learn(mac(1), Vid(1), PortId(3), 10), Learn::New);
    assert_eq!(f.lookup(mac(1), Vid(1)), Some(PortId(3)));
    assert_eq!(f.lookup(mac(1), Vid(2)), None, "VLANs are separate");
    assert_eq!(f.learn(mac(1), Vid(1), PortId(3), 10), Learn::Known);
    assert_eq!(f.learn(mac(1), Vid(1), PortId(3), 11), Learn::Refreshed);
    let e0 = f.epoch();
    assert_eq!(f.learn(mac(1), Vid(1), PortId(4), 12), Learn::Moved { from: Dest::port(PortId(3)) });
    assert!(f.epoch() > e0, "a move changes decisions");
    assert_eq!(f.lookup(mac(1), Vid(1)), Some(PortId(4)));
    assert_eq!(f.learned(), 1);
}

#[test]
fn limit_refuses_and_known_hosts_keep_working() {
    let f = Fdb::new(4);
    for i in 0..4 {
        assert_eq!(f.learn(mac(i), Vid(1), PortId(1), 0), Learn::New);
    }
    assert_eq!(f.learn(mac(99), Vid(1), PortId(1), 0), Learn::Refused);
    assert_eq!(f.lookup(mac(99), Vid(1)), None);
    assert_eq!(f.learned(), 4);
    assert_eq!(
        f.learn(mac(2), Vid(1), PortId(2), 1),
        Learn::Moved { from: Dest::port(PortId(1)) },
        "moves are not refused"
    );
    assert!(f.remove(mac(0), Vid(1)));
    assert_eq!(f.learn(mac(99), Vid(1), PortId(1), 2), Learn::New);
}

#[test]
fn aging_removes_only_stale_learned_entries() {
    let f = Fdb::new(16);
    f.learn(mac(1), Vid(1), PortId(1), 0);
    f.learn(mac(2), Vid(1), PortId(1), 250);
    assert!(f.add_static(mac(3), Vid(1), PortId(2), 0));
    assert_eq!(f.age(300, 300), 1);
    assert_eq!(f.lookup(mac(1), Vid(1)), None);
    assert_eq!(f.lookup(mac(2), Vid(1)), Some(PortId(1)));
    assert_eq!(f.lookup(mac(3), Vid(1)), Some(PortId(2)), "static entries never age");
    assert_eq!(f.learned(), 1);
}

#[test]
fn refresh_moves_only_a_matching_learned_entry_forward_and_keeps_it_from_aging() {
    let f = Fdb::new(16);
    f.learn(mac(1), Vid(1), PortId(1), 10);
    assert!(f.add_static(mac(2), Vid(1), PortId(2), 0));
    let e0 = f.epoch();
    assert!(!f.refresh(mac(1), Vid(1), Dest::port(PortId(2)), 250), "another port");
    assert!(!f.refresh(mac(1), Vid(1), Dest::port(PortId(1)), 5), "older than what rvs saw");
    assert!(!f.refresh(mac(2), Vid(1), Dest::port(PortId(2)), 250), "static");
    assert!(!f.refresh(mac(3), Vid(1), Dest::port(PortId(1)), 250), "absent");
    assert!(f.refresh(mac(1), Vid(1), Dest::port(PortId(1)), 250));
    assert_eq!(f.epoch(), e0, "no decision changed");
    assert_eq!(f.age(300, 100), 0);
    assert_eq!(f.lookup(mac(1), Vid(1)), Some(PortId(1)));
}

#[test]
fn static_entries_hold_against_learning() {
    let f = Fdb::new(16);
    f.learn(mac(1), Vid(1), PortId(1), 0);
    assert!(f.add_static(mac(1), Vid(1), PortId(2), 0));
    assert_eq!(f.learned(), 0, "a learned entry turned static stops counting");
    assert_eq!(f.learn(mac(1), Vid(1), PortId(5), 1), Learn::Static);
    assert_eq!(f.lookup(mac(1), Vid(1)), Some(PortId(2)));
    assert_eq!(f.flush(None), 0, "flush keeps static entries");
    assert_eq!(f.forget_port(PortId(2)), 1);
    assert_eq!(f.lookup(mac(1), Vid(1)), None);
}

#[test]
fn remote_vteps_are_part_of_the_location() {
    let f = Fdb::new(16);
    let at = |r| Dest { port: PortId(5), remote: r };
    assert_eq!(f.learn_at(mac(1), Vid(1), at(0), 0), Learn::New);
    assert_eq!(f.lookup_dest(mac(1), Vid(1)), Some(at(0)));
    assert_eq!(f.learn_at(mac(1), Vid(1), at(3), 0), Learn::Moved { from: at(0) });
    assert_eq!(f.lookup_dest(mac(1), Vid(1)), Some(at(3)));
    assert_eq!(f.entries()[0].remote, 3);
    f.learn(mac(2), Vid(1), PortId(1), 0);
    assert_eq!(f.lookup_dest(mac(2), Vid(1)), Some(Dest::port(PortId(1))));
}

#[test]
fn flush_by_port() {
    let f = Fdb::new(16);
    f.learn(mac(1), Vid(1), PortId(1), 0);
    f.learn(mac(2), Vid(1), PortId(2), 0);
    f.learn(mac(3), Vid(7), PortId(2), 0);
    assert_eq!(f.flush(Some(PortId(2))), 2);
    assert_eq!(f.entries().len(), 1);
    assert_eq!(f.learned(), 1);
}

#[test]
fn churn_does_not_fill_the_table_with_tombstones() {
    let f = Fdb::new(128);
    for round in 0..200u32 {
        for i in 0..100 {
            f.learn(mac(round * 1000 + i), Vid(1), PortId(1), round);
        }
        f.age(round + 1, 1);
    }
    assert_eq!(f.learned(), 0);
    // An absent key must meet an empty slot quickly.
    assert_eq!(f.lookup(mac(7), Vid(1)), None);
    let tomb = f.slots.iter().filter(|s| s.read()[0] == TOMBSTONE).count();
    assert!(tomb < f.slots.len() / 2, "{tomb} tombstones left");
}

#[test]
fn concurrent_learning_respects_the_limit() {
    let f = std::sync::Arc::new(Fdb::new(500));
    let threads: Vec<_> = (0..4u16)
        .map(|t| {
            let f = f.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    f.learn(mac(i), Vid(1), PortId(t), 0);
                    f.lookup(mac(i / 2), Vid(1));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = f.entries().len();
    assert!(n <= 500, "{n} entries over the limit");
    assert_eq!(f.learned() as usize, n);
}

/// The slot the table used to pick with its unkeyed hash: public, so a
/// sender could choose MACs that all start at one slot.
fn unkeyed_home(key: u64, mask: usize) -> usize {
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & mask
}

#[test]
fn macs_chosen_against_a_public_hash_do_not_share_a_chain() {
    let f = Fdb::new(4096);
    // 2,000 MACs whose keys the unkeyed hash sent to one slot: each was a
    // lookup scanning the whole chain.
    let target = unkeyed_home(key_of(mac(0), Vid(1)), f.mask);
    let crafted: Vec<MacAddr> =
        (0u32..).map(mac).filter(|&m| unkeyed_home(key_of(m, Vid(1)), f.mask) == target).take(2000).collect();
    for (i, &m) in crafted.iter().enumerate() {
        assert_eq!(f.learn(m, Vid(1), PortId(1), 0), Learn::New, "MAC {i} refused");
    }
    // Keyed, they scatter like any other MACs (at 25 % load the expected
    // longest chain is a handful of slots).
    let longest = f.longest_probe();
    assert!(longest <= 16, "longest probe chain {longest}");
    // The same MAC in every VLAN differed only in key bits the unkeyed
    // hash dropped for tables up to 65,536 slots.
    let g = Fdb::new(8192);
    for v in 1..=4094 {
        assert_eq!(g.learn(mac(7), Vid(v), PortId(1), 0), Learn::New);
    }
    assert!(g.longest_probe() <= 16, "longest probe chain {}", g.longest_probe());
}

#[test]
fn probing_stops_after_max_probe_slots_even_if_every_key_collides() {
    // A known key stands in for an attacker who learned the secret.
    let f = Fdb::with_key(1000, HashKey(0, 0));
    let colliding: Vec<MacAddr> = (0u32..).map(mac).filter(|&m| f.home(key_of(m, Vid(1))) == 0).take(100).collect();
    let learned = colliding.iter().filter(|&&m| f.learn(m, Vid(1), PortId(1), 0) == Learn::New).count();
    assert_eq!(learned, MAX_PROBE, "the chain holds MAX_PROBE entries, the rest are refused");
    assert_eq!(f.learned() as usize, MAX_PROBE, "refusals give their reservation back");
    assert_eq!(f.longest_probe(), MAX_PROBE);
    assert!(colliding[..MAX_PROBE].iter().all(|&m| f.lookup(m, Vid(1)) == Some(PortId(1))));
    assert!(colliding[MAX_PROBE..].iter().all(|&m| f.lookup(m, Vid(1)).is_none()));
    assert!(!f.add_static(colliding[99], Vid(1), PortId(2), 0), "no room for a static entry either");
}

#[test]
fn a_port_limit_caps_one_port_and_leaves_the_rest_of_the_bridge() {
    let f = Fdb::new(100);
    f.set_port_limit(PortId(1), Some(3)).unwrap();
    for i in 0..3 {
        assert_eq!(f.learn(mac(i), Vid(1), PortId(1), 0), Learn::New);
    }
    assert_eq!(f.predict(mac(9), Vid(1), Dest::port(PortId(1)), 0), Learn::Refused);
    assert_eq!(f.learn(mac(9), Vid(1), PortId(1), 0), Learn::Refused);
    assert_eq!(f.learn(mac(9), Vid(1), PortId(2), 0), Learn::New, "other ports still learn");
    assert_eq!(f.learn(mac(9), Vid(1), PortId(1), 1), Learn::Refused, "nor can the port claim a known MAC");
    assert_eq!(f.lookup(mac(9), Vid(1)), Some(PortId(2)));
    assert_eq!((f.port_learned(PortId(1)), f.port_learned(PortId(2)), f.learned()), (3, 1, 4));
    // Leaving the port frees its share: a move away, a removal, aging.
    assert_eq!(f.learn(mac(0), Vid(1), PortId(2), 1), Learn::Moved { from: Dest::port(PortId(1)) });
    assert_eq!(f.port_learned(PortId(1)), 2);
    assert_eq!(f.learn(mac(9), Vid(1), PortId(1), 2), Learn::Moved { from: Dest::port(PortId(2)) });
    assert!(f.remove(mac(1), Vid(1)));
    assert!(f.add_static(mac(2), Vid(1), PortId(1), 2), "static entries are outside the limit");
    assert_eq!(f.port_learned(PortId(1)), 1);
    f.set_port_limit(PortId(1), None).unwrap();
    for i in 10..20 {
        assert_eq!(f.learn(mac(i), Vid(1), PortId(1), 3), Learn::New);
    }
    assert_eq!(f.age(100, 10), 12);
    assert_eq!((f.port_learned(PortId(1)), f.port_learned(PortId(2)), f.learned()), (0, 0, 0));
    assert!(f.set_port_limit(PortId(QUOTA_PORTS as u16), Some(1)).is_err());
}

#[test]
fn a_grown_table_keeps_entries_remotes_ages_and_port_limits() {
    let f = Fdb::new(4);
    f.set_port_limit(PortId(1), Some(2)).unwrap();
    f.learn(mac(1), Vid(1), PortId(1), 5);
    f.learn_at(mac(2), Vid(1), Dest { port: PortId(3), remote: 7 }, 6);
    assert!(f.add_static_at(mac(3), Vid(2), Dest { port: PortId(3), remote: 2 }, 0));
    let g = f.grown(1000);
    let mut before = f.entries();
    let mut after = g.entries();
    before.sort_by_key(|e| e.mac);
    after.sort_by_key(|e| e.mac);
    assert_eq!(before, after);
    assert_eq!((g.limit(), g.learned(), g.port_learned(PortId(1))), (1000, 2, 1));
    assert_eq!(g.learn(mac(4), Vid(1), PortId(1), 7), Learn::New);
    assert_eq!(g.learn(mac(5), Vid(1), PortId(1), 7), Learn::Refused, "the port's limit came along");
}

#[derive(Debug, Clone)]
enum Op {
    Learn(u8, u16, u16, u32),
    Remove(u8, u16),
    Age(u32),
    Static(u8, u16, u16),
    Flush(Option<u16>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..40, 1u16..3, 0u16..4, 0u32..50).prop_map(|(m, v, p, t)| Op::Learn(m, v, p, t)),
        1 => (0u8..40, 1u16..3).prop_map(|(m, v)| Op::Remove(m, v)),
        1 => (0u32..60).prop_map(Op::Age),
        1 => (0u8..40, 1u16..3, 0u16..4).prop_map(|(m, v, p)| Op::Static(m, v, p)),
        1 => proptest::option::of(0u16..4).prop_map(Op::Flush),
    ]
}

proptest! {
    /// The table behaves like a map with a cap on learned entries, and
    /// one on port 0's.
    #[test]
    fn matches_a_model(ops in proptest::collection::vec(op(), 1..300)) {
        const LIMIT: usize = 8;
        const PORT0_LIMIT: usize = 3;
        let f = Fdb::new(LIMIT as u32);
        f.set_port_limit(PortId(0), Some(PORT0_LIMIT as u32)).unwrap();
        // (mac, vid) -> (port, static, seen)
        let mut model: HashMap<(u8, u16), (u16, bool, u32)> = HashMap::new();
        for o in ops {
            match o {
                Op::Learn(m, v, p, t) => {
                    let got = f.learn(mac(m.into()), Vid(v), PortId(p), t);
                    let learned = model.values().filter(|e| !e.1).count();
                    let port_full = p == 0 && model.values().filter(|e| !e.1 && e.0 == 0).count() >= PORT0_LIMIT;
                    match model.get(&(m, v)).copied() {
                        Some((_, true, _)) => {}
                        Some((q, false, _)) if q != p && port_full => prop_assert_eq!(got, Learn::Refused),
                        Some((_, false, _)) => { model.insert((m, v), (p, false, t)); }
                        None if learned < LIMIT && !port_full => { model.insert((m, v), (p, false, t)); }
                        None => prop_assert_eq!(got, Learn::Refused),
                    }
                }
                Op::Remove(m, v) => {
                    prop_assert_eq!(f.remove(mac(m.into()), Vid(v)), model.remove(&(m, v)).is_some());
                }
                Op::Age(now) => {
                    f.age(now, 10);
                    model.retain(|_, e| e.1 || now.wrapping_sub(e.2) < 10);
                }
                Op::Static(m, v, p) => {
                    prop_assert!(f.add_static(mac(m.into()), Vid(v), PortId(p), 0));
                    model.insert((m, v), (p, true, 0));
                }
                Op::Flush(port) => {
                    f.flush(port.map(PortId));
                    model.retain(|_, e| e.1 || port.is_some_and(|p| e.0 != p));
                }
            }
            prop_assert!(f.learned() as usize <= LIMIT);
            prop_assert_eq!(f.learned() as usize, model.values().filter(|e| !e.1).count());
            prop_assert_eq!(f.port_learned(PortId(0)) as usize, model.values().filter(|e| !e.1 && e.0 == 0).count());
            for (&(m, v), &(p, _, _)) in &model {
                prop_assert_eq!(f.lookup(mac(m.into()), Vid(v)), Some(PortId(p)));
            }
            prop_assert_eq!(f.entries().len(), model.len());
        }
    }
}

proptest! {
    /// Paging visits every entry once, in (VLAN, MAC) order, each page at
    /// most `limit` long, and says whether more follow.
    #[test]
    fn pages_cover_the_table_in_order(
        keys in proptest::collection::btree_set((0u32..500, 1u16..4), 0..200),
        limit in 1usize..40,
    ) {
        let f = Fdb::new(1024);
        for &(m, v) in &keys {
            prop_assert_eq!(f.learn(mac(m), Vid(v), PortId(1), 0), Learn::New);
        }
        let mut want: Vec<(Vid, MacAddr)> = keys.iter().map(|&(m, v)| (Vid(v), mac(m))).collect();
        want.sort_by_key(|&(v, m)| (v, m.to_u64()));
        let (mut got, mut after) = (Vec::new(), None);
        loop {
            let page = f.page(after, limit);
            prop_assert!(page.entries.len() <= limit);
            prop_assert_eq!(page.total, keys.len());
            got.extend(page.entries.iter().map(|e| (e.vid, e.mac)));
            if !page.more {
                break;
            }
            prop_assert_eq!(page.entries.len(), limit);
            after = page.entries.last().map(|e| (e.vid, e.mac));
        }
        prop_assert_eq!(got, want);
    }
}

#[test]
fn a_changed_limit_moves_the_epoch_so_cached_refusals_go() {
    let f = Fdb::new(16);
    let e0 = f.epoch();
    f.set_limit(8);
    let e1 = f.epoch();
    assert!(e1 > e0, "the flow cache keeps 'refused' while the epoch stands");
    f.set_port_limit(PortId(1), Some(2)).unwrap();
    assert!(f.epoch() > e1);
}
