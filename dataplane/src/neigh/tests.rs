use super::*;
use proptest::prelude::*;

const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000 | n))
}

fn v6(n: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, n))
}

#[test]
fn learn_lookup_refresh_and_move() {
    let t = NeighTable::new(16);
    assert_eq!(t.lookup(v4(1), Vid(1)), None);
    assert_eq!(t.learn(v4(1), Vid(1), A, 5), Glean::New);
    assert_eq!(t.lookup(v4(1), Vid(1)), Some((A, Source::Learned)));
    assert_eq!(t.learn(v4(1), Vid(1), A, 5), Glean::Known);
    assert_eq!(t.learn(v4(1), Vid(1), A, 6), Glean::Refreshed);
    assert_eq!(t.learn(v4(1), Vid(1), B, 7), Glean::New, "the address moved to another MAC");
    assert_eq!(t.lookup(v4(1), Vid(1)), Some((B, Source::Learned)));
    assert_eq!(t.learned(), 1);
    // VLANs and families are apart: 198.18.0.1 is not ::ffff:198.18.0.1's
    // neighbour in another VLAN, nor an IPv6 address.
    assert_eq!(t.lookup(v4(1), Vid(2)), None);
    assert_eq!(t.learn(v6(1), Vid(1), A, 7), Glean::New);
    assert_eq!(t.lookup(v6(1), Vid(1)), Some((A, Source::Learned)));
}

#[test]
fn learned_never_overrides_static_and_remote_never_overrides_either() {
    let t = NeighTable::new(16);
    assert!(t.add_static(v4(1), Vid(1), A, 0));
    assert_eq!(t.learn(v4(1), Vid(1), B, 1), Glean::Static);
    assert_eq!(t.learn(v4(1), Vid(1), A, 1), Glean::Known);
    assert!(t.add_remote(v4(1), Vid(1), B, 1));
    assert_eq!(t.lookup(v4(1), Vid(1)), Some((A, Source::Static)));
    assert_eq!(t.learned(), 0);

    t.learn(v4(2), Vid(1), A, 1);
    assert!(t.add_remote(v4(2), Vid(1), B, 1));
    assert_eq!(t.lookup(v4(2), Vid(1)), Some((A, Source::Learned)));
    // Static replaces learned, and gives back its place under the limit.
    assert!(t.add_static(v4(2), Vid(1), B, 2));
    assert_eq!(t.lookup(v4(2), Vid(1)), Some((B, Source::Static)));
    assert_eq!(t.learned(), 0);

    // Learned (a host seen here) replaces remote.
    assert!(t.add_remote(v4(3), Vid(1), B, 1));
    assert_eq!(t.learn(v4(3), Vid(1), A, 2), Glean::New);
    assert_eq!(t.lookup(v4(3), Vid(1)), Some((A, Source::Learned)));
}

#[test]
fn the_limit_refuses_new_learning_only() {
    let t = NeighTable::new(4);
    for n in 0..4 {
        assert_eq!(t.learn(v4(n), Vid(1), A, 0), Glean::New);
    }
    assert_eq!(t.learn(v4(9), Vid(1), A, 0), Glean::Refused);
    assert_eq!(t.lookup(v4(9), Vid(1)), None);
    // Known ones refresh; static and remote ones still go in.
    assert_eq!(t.learn(v4(0), Vid(1), A, 1), Glean::Refreshed);
    assert!(t.add_static(v4(10), Vid(1), B, 1));
    assert!(t.add_remote(v4(11), Vid(1), B, 1));
    assert_eq!(t.learned(), 4);
    assert_eq!(t.remove(v4(1), Vid(1)), Some(Source::Learned));
    assert_eq!(t.learn(v4(9), Vid(1), A, 2), Glean::New, "room again");
}

#[test]
fn aging_takes_learned_bindings_only() {
    let t = NeighTable::new(16);
    t.learn(v4(1), Vid(1), A, 0);
    t.learn(v4(2), Vid(1), A, 50);
    t.add_static(v4(3), Vid(1), A, 0);
    t.add_remote(v4(4), Vid(1), A, 0);
    assert_eq!(t.age(100, 100), 1);
    assert_eq!(t.lookup(v4(1), Vid(1)), None);
    assert_eq!(t.learned(), 1);
    assert_eq!(t.age(1000, 100), 1);
    let mut left: Vec<Source> = t.entries().iter().map(|b| b.source).collect();
    left.sort();
    assert_eq!(left, vec![Source::Remote, Source::Static]);
}

#[test]
fn removal_keeps_chains_whole() {
    // 200 bindings in 512 slots: chains stay far below MAX_PROBE.
    let t = NeighTable::new(128);
    for n in 0..200 {
        assert!(t.add_static(v6(n), Vid(3), A, 0));
    }
    for n in (0..200).step_by(2) {
        assert_eq!(t.remove(v6(n), Vid(3)), Some(Source::Static));
    }
    for n in 0..200 {
        let want = (n % 2 == 1).then_some((A, Source::Static));
        assert_eq!(t.lookup(v6(n), Vid(3)), want, "{n}");
    }
    assert_eq!(t.remove(v6(0), Vid(3)), None);
    assert_eq!(t.remove_where(|b| b.source == Source::Static), 100);
    assert!(t.entries().is_empty());
}

#[test]
fn entries_give_addresses_back_in_their_family() {
    let t = NeighTable::new(16);
    t.learn(v4(7), Vid(10), A, 3);
    t.add_static(v6(7), Vid(0), B, 4);
    let mut e = t.entries();
    e.sort_by_key(|b| b.last_seen);
    assert_eq!(e[0], Binding { ip: v4(7), vid: Vid(10), mac: A, source: Source::Learned, last_seen: 3 });
    assert_eq!(e[1], Binding { ip: v6(7), vid: Vid(0), mac: B, source: Source::Static, last_seen: 4 });
}

proptest! {
    /// A flood of random senders never holds more learned bindings than
    /// the limit, and static bindings added first all stay.
    #[test]
    fn a_flood_stays_under_the_limit(ips in proptest::collection::vec(any::<u32>(), 1..600), limit in 1u32..64) {
        let t = NeighTable::new(limit);
        for n in 0..8 {
            prop_assert!(t.add_static(v6(n), Vid(1), B, 0));
        }
        for ip in ips {
            t.learn(IpAddr::V4(ip.into()), Vid(1), A, 0);
            prop_assert!(t.learned() <= limit);
        }
        let learned = t.entries().iter().filter(|b| b.source == Source::Learned).count();
        prop_assert_eq!(learned as u32, t.learned());
        for n in 0..8 {
            prop_assert_eq!(t.lookup(v6(n), Vid(1)), Some((B, Source::Static)));
        }
    }
}
