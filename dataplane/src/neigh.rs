//! The neighbour table of one bridge: IP → MAC bindings per VLAN, used to
//! answer ARP requests and neighbour solicitations without flooding them.
//!
//! Shared like the [`Fdb`](crate::fdb::Fdb): the control thread adds
//! static and remote bindings, the polling threads add the ones they glean
//! from ARP and ND and read every binding, each slot behind a sequence
//! counter, so a lookup is a few loads without a lock. Only ARP and ND
//! frames touch it, so it needs no cache epoch: those frames never take
//! the flow cache.
//!
//! The senders of ARP choose what is gleaned, so the slot hash is keyed
//! with a secret, probing is bounded, and learned bindings are capped per
//! bridge (an ARP flood of random senders is refused past the cap and
//! counted by the caller). Static and remote bindings are not capped by
//! it; the table leaves room for them beside the learned ones.

use crate::fdb::{HashKey, MAX_PROBE};
use crate::ids::Vid;
use crate::seqslot::SeqSlot;
use crate::wire::MacAddr;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering::*};

/// Learned bindings a bridge's table holds at most.
pub const DEFAULT_LIMIT: u32 = 4096;

const EMPTY: u64 = 0;
const TOMBSTONE: u64 = u64::MAX;
const TAG_PRESENT: u64 = 1 << 62;

/// Where a binding came from; also its precedence, highest first: a
/// binding is replaced by one of its own source or a higher one only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// Installed from the cluster: another node's host.
    Remote = 1,
    /// Gleaned from ARP or ND on a local port; ages.
    Learned = 2,
    /// Added through the control socket (the CNI plugin's ADD).
    Static = 3,
}

impl Source {
    /// The name `rvsctl neigh show` prints.
    pub fn name(self) -> &'static str {
        match self {
            Source::Static => "static",
            Source::Learned => "learned",
            Source::Remote => "remote",
        }
    }

    fn from_bits(b: u64) -> Source {
        match b & 3 {
            3 => Source::Static,
            2 => Source::Learned,
            _ => Source::Remote,
        }
    }
}

/// One binding, as listed by `entries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The address.
    pub ip: IpAddr,
    /// Its VLAN.
    pub vid: Vid,
    /// The MAC it resolves to.
    pub mac: MacAddr,
    /// Where the binding came from.
    pub source: Source,
    /// When it was last seen (static, remote: when installed).
    pub last_seen: u32,
}

/// What gleaning a binding did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Glean {
    /// Already bound so and seen this second (or static/remote to the
    /// same MAC): nothing written.
    Known,
    /// Its last-seen time was updated.
    Refreshed,
    /// A new binding, or one that now points to another MAC.
    New,
    /// Not learned: the bridge is at its limit of learned bindings.
    Refused,
    /// Not changed: a static binding holds this address.
    Static,
}

/// The slot key of (`ip`, `vid`): the address as IPv6 (IPv4 mapped), and
/// a tag word marking the slot used with the VLAN in it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    hi: u64,
    lo: u64,
    tag: u64,
}

impl Key {
    fn of(ip: IpAddr, vid: Vid) -> Key {
        let v6 = match ip {
            IpAddr::V4(a) => a.to_ipv6_mapped(),
            IpAddr::V6(a) => a,
        };
        let n = u128::from(v6);
        Key { hi: (n >> 64) as u64, lo: n as u64, tag: TAG_PRESENT | u64::from(vid.0 & 0xfff) }
    }

    fn ip(self) -> IpAddr {
        let a = Ipv6Addr::from((u128::from(self.hi) << 64) | u128::from(self.lo));
        match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        }
    }

    fn vid(self) -> Vid {
        Vid((self.tag & 0xfff) as u16)
    }

    fn used(self) -> bool {
        self.tag != EMPTY && self.tag != TOMBSTONE
    }
}

/// The value word: MAC in the low 48 bits, source above.
fn val_of(mac: MacAddr, source: Source) -> u64 {
    mac.to_u64() | (source as u64) << 48
}

fn val_mac(v: u64) -> MacAddr {
    MacAddr::from_u64(v & 0xffff_ffff_ffff)
}

fn val_source(v: u64) -> Source {
    Source::from_bits(v >> 48)
}

/// A slot: the key (address high and low, tag), the value and the
/// last-seen time.
type Slot = SeqSlot<5>;

/// A consistent copy of a slot.
#[derive(Clone, Copy)]
struct Read {
    key: Key,
    val: u64,
    seen: u32,
}

impl Read {
    fn of([hi, lo, tag, val, seen]: [u64; 5]) -> Read {
        Read { key: Key { hi, lo, tag }, val, seen: seen as u32 }
    }

    fn words(self) -> [u64; 5] {
        [self.key.hi, self.key.lo, self.key.tag, self.val, u64::from(self.seen)]
    }
}

/// The neighbour table of one bridge.
pub struct NeighTable {
    slots: Box<[Slot]>,
    mask: usize,
    limit: u32,
    learned: AtomicU32,
    key: HashKey,
}

impl std::fmt::Debug for NeighTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeighTable")
            .field("capacity", &self.slots.len())
            .field("learned", &self.learned())
            .field("limit", &self.limit)
            .finish()
    }
}

impl NeighTable {
    /// A table that glean at most `limit` learned bindings; it has room
    /// for as many static and remote ones again, and more.
    pub fn new(limit: u32) -> NeighTable {
        let cap = (limit as usize * 4).next_power_of_two().max(256);
        NeighTable {
            slots: (0..cap).map(|_| Slot::default()).collect(),
            mask: cap - 1,
            limit,
            learned: AtomicU32::new(0),
            key: HashKey::random(),
        }
    }

    /// The most learned bindings it keeps.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Learned bindings it holds.
    pub fn learned(&self) -> u32 {
        self.learned.load(Relaxed)
    }

    #[inline]
    fn chain(&self, key: Key) -> impl Iterator<Item = usize> + '_ {
        let h = self.key.hash(key.lo ^ key.tag.rotate_left(29));
        let home = self.key.hash(key.hi ^ h as u64) & self.mask;
        (0..MAX_PROBE.min(self.slots.len())).map(move |n| (home + n) & self.mask)
    }

    #[inline]
    fn find(&self, key: Key) -> Option<(usize, Read)> {
        for i in self.chain(key) {
            let r = Read::of(self.slots[i].read());
            if r.key == key {
                return Some((i, r));
            }
            if r.key.tag == EMPTY {
                return None;
            }
        }
        None
    }

    /// The MAC `ip` is bound to in VLAN `vid`, and where that came from.
    #[inline]
    pub fn lookup(&self, ip: IpAddr, vid: Vid) -> Option<(MacAddr, Source)> {
        self.find(Key::of(ip, vid)).map(|(_, r)| (val_mac(r.val), val_source(r.val)))
    }

    /// Records that `ip` in VLAN `vid` was seen using `mac` at `now`.
    #[inline]
    pub fn learn(&self, ip: IpAddr, vid: Vid, mac: MacAddr, now: u32) -> Glean {
        let key = Key::of(ip, vid);
        if let Some((_, r)) = self.find(key) {
            let (old_mac, src) = (val_mac(r.val), val_source(r.val));
            match src {
                Source::Static => return if old_mac == mac { Glean::Known } else { Glean::Static },
                Source::Learned if old_mac == mac && r.seen == now => return Glean::Known,
                _ => {}
            }
        }
        self.put(key, mac, Source::Learned, now)
    }

    /// What `learn` would do, without changing anything (for a trace).
    pub fn predict(&self, ip: IpAddr, vid: Vid, mac: MacAddr) -> Glean {
        match self.lookup(ip, vid) {
            Some((m, Source::Static)) if m == mac => Glean::Known,
            Some((_, Source::Static)) => Glean::Static,
            Some((m, Source::Learned)) if m == mac => Glean::Refreshed,
            Some(_) => Glean::New,
            None if self.learned() >= self.limit => Glean::Refused,
            None => Glean::New,
        }
    }

    /// Adds or replaces a static binding (not counted against the limit).
    /// False if the table has no room for it.
    pub fn add_static(&self, ip: IpAddr, vid: Vid, mac: MacAddr, now: u32) -> bool {
        self.put(Key::of(ip, vid), mac, Source::Static, now) != Glean::Refused
    }

    /// Adds or replaces a binding from another node, unless a static or
    /// learned binding holds the address here. False if the table has no
    /// room for it.
    pub fn add_remote(&self, ip: IpAddr, vid: Vid, mac: MacAddr, now: u32) -> bool {
        self.put(Key::of(ip, vid), mac, Source::Remote, now) != Glean::Refused
    }

    /// Writes a binding of `source` unless one of higher precedence holds
    /// the key (`Static`/`Known` then); counts learned ones.
    fn put(&self, key: Key, mac: MacAddr, source: Source, now: u32) -> Glean {
        let val = val_of(mac, source);
        // The slot holding the key, or the first free one of its chain.
        let mut free = None;
        for i in self.chain(key) {
            let r = Read::of(self.slots[i].read());
            if r.key == key {
                free = Some(i);
                break;
            }
            if !r.key.used() && free.is_none() {
                free = Some(i);
            }
            if r.key.tag == EMPTY {
                break;
            }
        }
        let Some(i) = free else { return Glean::Refused };
        let g = self.slots[i].lock();
        let old = Read::of(g.get());
        if old.key == key {
            let old_src = val_source(old.val);
            if old_src > source {
                return if old_src == Source::Static { Glean::Static } else { Glean::Known };
            }
            let counted = |s: Source| s == Source::Learned;
            if counted(source) && !counted(old_src) && !self.take() {
                return Glean::Refused;
            }
            g.set(Read { key, val, seen: now }.words());
            drop(g);
            if counted(old_src) && !counted(source) {
                self.give();
            }
            return if old.val == val { Glean::Refreshed } else { Glean::New };
        }
        if old.key.used() {
            // Taken meanwhile by another key: try the chain again.
            drop(g);
            return self.put(key, mac, source, now);
        }
        if source == Source::Learned && !self.take() {
            return Glean::Refused;
        }
        g.set(Read { key, val, seen: now }.words());
        Glean::New
    }

    fn take(&self) -> bool {
        let limit = self.limit;
        self.learned.fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1)).is_ok()
    }

    fn give(&self) {
        self.learned.fetch_sub(1, Relaxed);
    }

    /// Removes the binding of `ip` in `vid`; its source if there was one.
    pub fn remove(&self, ip: IpAddr, vid: Vid) -> Option<Source> {
        let key = Key::of(ip, vid);
        let (i, _) = self.find(key)?;
        self.remove_slot(i, |b| b.ip == ip && b.vid == vid)
    }

    fn remove_slot(&self, i: usize, pred: impl Fn(&Binding) -> bool) -> Option<Source> {
        let g = self.slots[i].lock();
        let r = Read::of(g.get());
        if !r.key.used() || !pred(&binding_of(r)) {
            return None;
        }
        // A tombstone keeps the chains through this slot whole.
        g.set(Read { key: Key { hi: 0, lo: 0, tag: TOMBSTONE }, val: 0, seen: 0 }.words());
        drop(g);
        let src = val_source(r.val);
        if src == Source::Learned {
            self.give();
        }
        Some(src)
    }

    /// Removes every binding `pred` selects; returns how many.
    pub fn remove_where(&self, pred: impl Fn(&Binding) -> bool) -> usize {
        let mut n = 0;
        for i in 0..self.slots.len() {
            let r = Read::of(self.slots[i].read());
            if r.key.used() && pred(&binding_of(r)) && self.remove_slot(i, &pred).is_some() {
                n += 1;
            }
        }
        n
    }

    /// Removes learned bindings not seen for `max_age` seconds at `now`.
    pub fn age(&self, now: u32, max_age: u32) -> usize {
        self.remove_where(|b| b.source == Source::Learned && now.wrapping_sub(b.last_seen) >= max_age)
    }

    /// Every binding, in no particular order.
    pub fn entries(&self) -> Vec<Binding> {
        self.slots.iter().map(|s| Read::of(s.read())).filter(|r| r.key.used()).map(binding_of).collect()
    }
}

fn binding_of(r: Read) -> Binding {
    Binding { ip: r.key.ip(), vid: r.key.vid(), mac: val_mac(r.val), source: val_source(r.val), last_seen: r.seen }
}

#[cfg(test)]
mod tests;
