//! MAC learning table of one bridge, shared by every polling thread.
//!
//! A fixed-capacity open-addressing table. Each slot is a key word and a
//! value word guarded by a sequence counter: readers never wait (they retry
//! the slot if a writer was inside), writers take the slot by making its
//! counter odd. Lookups therefore cost a few loads and no lock, and learning
//! contends only when two threads write the very same slot.
//!
//! Time is whole seconds from an arbitrary start, supplied by the caller, so
//! the table itself reads no clock and tests drive aging directly.
//!
//! Sources are chosen by whoever sends frames, so the slot hash is keyed
//! with a secret drawn at start (nobody can pick MACs that share a probe
//! chain), and probing stops after [`MAX_PROBE`] slots whatever the keys:
//! a lookup costs a bounded number of loads even against a table filled by
//! an attacker. A per-port limit keeps one port from using the bridge's.

use crate::ids::{PortId, Vid};
use crate::seqslot::SeqSlot;
use crate::wire::MacAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

const EMPTY: u64 = 0;
const TOMBSTONE: u64 = u64::MAX;
const KEY_PRESENT: u64 = 1 << 62;
const VAL_STATIC: u64 = 1 << 16;
const VAL_REMOTE_SHIFT: u32 = 17;

/// The most slots a lookup or an insertion looks at. With at least half
/// the slots free (the learned limit is half the capacity) and a keyed
/// hash, a chain this long is practically never needed; an insertion that
/// finds no slot within it is refused like one over the limit.
pub const MAX_PROBE: usize = 64;

/// Port ids below this can be given a per-port MAC limit (the same bound
/// as the kernel tables' port ids).
pub const QUOTA_PORTS: usize = 4096;

/// `remote` of a MAC not behind a tunnel.
pub const NO_REMOTE: u16 = 0x7fff;

/// Where a MAC is: a port, and behind a tunnel port, which remote VTEP
/// (an index into the tunnel's remote list; [`NO_REMOTE`] otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dest {
    /// The port.
    pub port: PortId,
    /// The remote VTEP index, or `NO_REMOTE`.
    pub remote: u16,
}

impl Dest {
    /// A MAC on a plain port.
    pub fn port(port: PortId) -> Dest {
        Dest { port, remote: NO_REMOTE }
    }
}

/// What `learn` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learn {
    /// Already known on this port and seen this second: nothing written.
    Known,
    /// Known on this port; its last-seen time was updated.
    Refreshed,
    /// A new entry.
    New,
    /// The MAC moved here from another port (or another remote VTEP).
    Moved {
        /// Where it was.
        from: Dest,
    },
    /// Not learned: the bridge, or the port it was seen on, is at its
    /// limit of learned MACs (or its probe chain is full).
    Refused,
    /// Not moved: a static entry holds this MAC on another port.
    Static,
}

/// One entry, as listed by `entries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The MAC address.
    pub mac: MacAddr,
    /// Its VLAN.
    pub vid: Vid,
    /// The port it is reached through.
    pub port: PortId,
    /// Behind a tunnel port: the remote VTEP index; else `NO_REMOTE`.
    pub remote: u16,
    /// True for static entries (never aged, never moved by learning).
    pub is_static: bool,
    /// When it was last seen (static: when added).
    pub last_seen: u32,
}

/// A slot: the key word and the value word.
type Slot = SeqSlot<2>;

/// Learned entries of one port, and the most it may have.
struct Quota {
    learned: AtomicU32,
    limit: AtomicU32,
}

impl Default for Quota {
    fn default() -> Quota {
        Quota { learned: AtomicU32::new(0), limit: AtomicU32::new(u32::MAX) }
    }
}

/// The MAC table of one bridge.
pub struct Fdb {
    slots: Box<[Slot]>,
    mask: usize,
    limit: AtomicU32,
    learned: AtomicU32,
    epoch: AtomicU64,
    /// Per-port learned counts and limits, indexed by port id.
    quotas: Box<[Quota]>,
    key: HashKey,
}

impl std::fmt::Debug for Fdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fdb")
            .field("capacity", &self.slots.len())
            .field("learned", &self.learned())
            .field("limit", &self.limit())
            .finish()
    }
}

#[inline]
fn key_of(mac: MacAddr, vid: Vid) -> u64 {
    KEY_PRESENT | (u64::from(vid.0 & 0xfff) << 48) | mac.to_u64()
}

#[inline]
fn val_of(d: Dest, is_static: bool, seen: u32) -> u64 {
    (u64::from(seen) << 32)
        | (u64::from(d.remote & NO_REMOTE) << VAL_REMOTE_SHIFT)
        | if is_static { VAL_STATIC } else { 0 }
        | u64::from(d.port)
}

#[inline]
fn val_port(v: u64) -> PortId {
    PortId(v as u16)
}

#[inline]
fn val_dest(v: u64) -> Dest {
    Dest { port: PortId(v as u16), remote: ((v >> VAL_REMOTE_SHIFT) as u16) & NO_REMOTE }
}

#[inline]
fn val_static(v: u64) -> bool {
    v & VAL_STATIC != 0
}

#[inline]
fn val_seen(v: u64) -> u32 {
    (v >> 32) as u32
}

/// The secret of the slot hash, drawn once per table.
#[derive(Clone, Copy)]
pub(crate) struct HashKey(u64, u64);

impl HashKey {
    /// Random keys from the standard library's per-process random
    /// hasher state (the one that protects `HashMap` from the same attack).
    pub(crate) fn random() -> HashKey {
        use std::hash::BuildHasher;
        let s = std::collections::hash_map::RandomState::new();
        HashKey(s.hash_one(0u64), s.hash_one(1u64))
    }

    /// Two rounds of folded multiplication (as foldhash and wyhash mix),
    /// the key mixed in before each: every input bit reaches every output
    /// bit, and without the key nobody can predict which slot a MAC gets.
    #[inline]
    pub(crate) fn hash(self, key: u64) -> usize {
        let h = fold_mul(key ^ self.0, 0x9e37_79b9_7f4a_7c15);
        fold_mul(h ^ self.1, 0x2d35_8dcc_aa6c_78a5) as usize
    }
}

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Fdb {
    /// A table that may hold `limit` learned MACs (plus static ones).
    pub fn new(limit: u32) -> Fdb {
        Fdb::with_key(limit, HashKey::random())
    }

    fn with_key(limit: u32, key: HashKey) -> Fdb {
        // Room for twice the limit keeps probe chains short even when the
        // table is full and static entries are added on top.
        let cap = (limit as usize * 2).next_power_of_two().max(256);
        Fdb {
            slots: (0..cap).map(|_| Slot::default()).collect(),
            mask: cap - 1,
            limit: AtomicU32::new(limit),
            learned: AtomicU32::new(0),
            epoch: AtomicU64::new(0),
            quotas: (0..QUOTA_PORTS).map(|_| Quota::default()).collect(),
            key,
        }
    }

    /// A table for `limit` learned MACs holding this one's entries (remote
    /// VTEPs and ages included) and port limits, for a raised limit.
    pub fn grown(&self, limit: u32) -> Fdb {
        let fdb = Fdb::new(limit);
        for (q, old) in fdb.quotas.iter().zip(self.quotas.iter()) {
            q.limit.store(old.limit.load(Relaxed), Relaxed);
        }
        for e in self.entries() {
            let at = Dest { port: e.port, remote: e.remote };
            if e.is_static {
                fdb.add_static_at(e.mac, e.vid, at, e.last_seen);
            } else {
                fdb.learn_at(e.mac, e.vid, at, e.last_seen);
            }
        }
        fdb
    }

    /// Limits the learned MACs of `port` to `limit` (`None`: only the
    /// bridge's limit applies). Entries above a lowered limit stay until
    /// they age out. Errors for a port id beyond [`QUOTA_PORTS`].
    pub fn set_port_limit(&self, port: PortId, limit: Option<u32>) -> Result<(), String> {
        match (self.quotas.get(port.index()), limit) {
            (Some(q), l) => {
                q.limit.store(l.unwrap_or(u32::MAX), Relaxed);
                self.bump();
                Ok(())
            }
            (None, None) => Ok(()),
            (None, Some(_)) => Err(format!("port id {port} beyond the {QUOTA_PORTS} ports a MAC limit can be set on")),
        }
    }

    /// Learned entries on `port`.
    pub fn port_learned(&self, port: PortId) -> u32 {
        self.quotas.get(port.index()).map_or(0, |q| q.learned.load(Relaxed))
    }

    /// The longest probe chain in the table: how many slots the slowest
    /// lookup of a present key reads (at most [`MAX_PROBE`]).
    pub fn longest_probe(&self) -> usize {
        (0..self.slots.len())
            .filter_map(|i| {
                let [k, _] = self.slots[i].read();
                (k != EMPTY && k != TOMBSTONE).then(|| (i.wrapping_sub(self.home(k)) & self.mask) + 1)
            })
            .max()
            .unwrap_or(0)
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        self.key.hash(key) & self.mask
    }

    /// The slots a chain starting at `key`'s home slot may use.
    #[inline]
    fn chain(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let home = self.home(key);
        (0..MAX_PROBE.min(self.slots.len())).map(move |n| (home + n) & self.mask)
    }

    /// The most learned MACs this table can be given as a limit.
    pub fn capacity_limit(&self) -> u32 {
        (self.slots.len() / 2) as u32
    }

    /// Learned-MAC limit.
    pub fn limit(&self) -> u32 {
        self.limit.load(Relaxed)
    }

    /// Changes the learned-MAC limit (at most `capacity_limit`). Existing
    /// entries above a lowered limit stay until they age out.
    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit.min(self.capacity_limit()), Relaxed);
        // Cached decisions include "refused": a raised limit must reach them.
        self.bump();
    }

    /// Number of learned (not static) entries.
    pub fn learned(&self) -> u32 {
        self.learned.load(Relaxed)
    }

    /// Counts every change that can alter a forwarding decision (new entry,
    /// move, removal); a cache of decisions is valid while this is unchanged.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Acquire)
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, Release);
    }

    /// Index of the slot holding `key`, or `None`.
    #[inline]
    fn find(&self, key: u64) -> Option<(usize, u64)> {
        for i in self.chain(key) {
            let [k, v] = self.slots[i].read();
            if k == key {
                return Some((i, v));
            }
            if k == EMPTY {
                return None;
            }
        }
        None
    }

    /// Starts loading the slot where a lookup of `mac` in VLAN `vid` begins.
    #[inline]
    pub fn prefetch(&self, mac: MacAddr, vid: Vid) {
        crate::prefetch::prefetch(&self.slots[self.home(key_of(mac, vid))]);
    }

    /// The port `mac` was learned on in VLAN `vid`.
    #[inline]
    pub fn lookup(&self, mac: MacAddr, vid: Vid) -> Option<PortId> {
        self.lookup_dest(mac, vid).map(|d| d.port)
    }

    /// Where `mac` was learned in VLAN `vid`, remote VTEP included.
    #[inline]
    pub fn lookup_dest(&self, mac: MacAddr, vid: Vid) -> Option<Dest> {
        self.find(key_of(mac, vid)).map(|(_, v)| val_dest(v))
    }

    /// Records that `mac` was seen on `port` in VLAN `vid` at time `now`.
    #[inline]
    pub fn learn(&self, mac: MacAddr, vid: Vid, port: PortId, now: u32) -> Learn {
        self.learn_at(mac, vid, Dest::port(port), now)
    }

    /// Records that `mac` was seen at `at` (a port, and maybe a remote VTEP
    /// behind it) in VLAN `vid` at time `now`.
    #[inline]
    pub fn learn_at(&self, mac: MacAddr, vid: Vid, at: Dest, now: u32) -> Learn {
        let key = key_of(mac, vid);
        if let Some((i, v)) = self.find(key) {
            if val_dest(v) == at {
                if val_static(v) || val_seen(v) == now {
                    return Learn::Known;
                }
                return self.update(i, key, at, now);
            }
            if val_static(v) {
                return Learn::Static;
            }
            return self.update(i, key, at, now);
        }
        self.insert(key, at, false, now)
    }

    /// What `learn_at` would do, without changing anything.
    pub fn predict(&self, mac: MacAddr, vid: Vid, at: Dest, now: u32) -> Learn {
        match self.find(key_of(mac, vid)) {
            Some((_, v)) if val_dest(v) == at && (val_static(v) || val_seen(v) == now) => Learn::Known,
            Some((_, v)) if val_dest(v) == at => Learn::Refreshed,
            Some((_, v)) if val_static(v) => Learn::Static,
            Some((_, v)) if self.port_has_room(at.port) => Learn::Moved { from: val_dest(v) },
            Some(_) => Learn::Refused,
            None if self.learned() >= self.limit() || !self.port_has_room(at.port) => Learn::Refused,
            None => Learn::New,
        }
    }

    /// Rewrites an existing learned entry under its slot lock.
    fn update(&self, i: usize, key: u64, at: Dest, now: u32) -> Learn {
        let g = self.slots[i].lock();
        if g.word(0) != key {
            // Aged out or replaced meanwhile: learn it afresh.
            drop(g);
            return self.insert(key, at, false, now);
        }
        let old = g.word(1);
        if val_static(old) {
            return if val_dest(old) == at { Learn::Known } else { Learn::Static };
        }
        let from = val_dest(old);
        // A move into a port at its limit is refused like a new MAC, or the
        // port could gather any number of MACs by claiming known ones.
        if from.port != at.port && !self.take_port(at.port) {
            return Learn::Refused;
        }
        g.set([key, val_of(at, false, now)]);
        drop(g);
        if from == at {
            return Learn::Refreshed;
        }
        if from.port != at.port {
            self.give_port(from.port);
        }
        self.bump();
        Learn::Moved { from }
    }

    /// Puts `key` in the first free slot of its chain, unless a racing
    /// writer put it there first.
    fn insert(&self, key: u64, at: Dest, is_static: bool, now: u32) -> Learn {
        if !is_static && !self.take(at.port) {
            return Learn::Refused;
        }
        for i in self.chain(key) {
            let [k, _] = self.slots[i].read();
            if k != key && k != EMPTY && k != TOMBSTONE {
                continue;
            }
            let g = self.slots[i].lock();
            let k = g.word(0);
            if k == key {
                // Another thread learned it first: treat as an update.
                let old = g.word(1);
                if !is_static && val_static(old) {
                    drop(g);
                    self.give(at.port);
                    return Learn::Static;
                }
                g.set([key, val_of(at, is_static, now)]);
                drop(g);
                // The entry replaced gives back what it held; ours holds
                // what was taken for it.
                if !val_static(old) {
                    self.give(val_port(old));
                }
                self.bump();
                return Learn::New;
            }
            if k == EMPTY || k == TOMBSTONE {
                g.set([key, val_of(at, is_static, now)]);
                drop(g);
                self.bump();
                return Learn::New;
            }
        }
        if !is_static {
            self.give(at.port);
        }
        Learn::Refused
    }

    /// Whether `port` may learn one more MAC.
    fn port_has_room(&self, port: PortId) -> bool {
        self.quotas.get(port.index()).is_none_or(|q| q.learned.load(Relaxed) < q.limit.load(Relaxed))
    }

    /// Counts one more learned entry on the bridge and on `port`, if both
    /// are below their limits.
    fn take(&self, port: PortId) -> bool {
        let limit = self.limit();
        if self.learned.fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1)).is_err() {
            return false;
        }
        if !self.take_port(port) {
            self.learned.fetch_sub(1, Relaxed);
            return false;
        }
        true
    }

    fn take_port(&self, port: PortId) -> bool {
        let Some(q) = self.quotas.get(port.index()) else { return true };
        let limit = q.limit.load(Relaxed);
        q.learned.fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1)).is_ok()
    }

    /// Gives back what `take` counted, for an entry on `port` that goes.
    fn give(&self, port: PortId) {
        self.learned.fetch_sub(1, Relaxed);
        self.give_port(port);
    }

    fn give_port(&self, port: PortId) {
        if let Some(q) = self.quotas.get(port.index()) {
            q.learned.fetch_sub(1, Relaxed);
        }
    }

    /// Adds or replaces a static entry (not counted against the limit).
    /// Returns false if the table has no room.
    pub fn add_static(&self, mac: MacAddr, vid: Vid, port: PortId, now: u32) -> bool {
        self.add_static_at(mac, vid, Dest::port(port), now)
    }

    /// Adds or replaces a static entry at a port and maybe a remote VTEP.
    pub fn add_static_at(&self, mac: MacAddr, vid: Vid, at: Dest, now: u32) -> bool {
        let key = key_of(mac, vid);
        if let Some((i, _)) = self.find(key) {
            let g = self.slots[i].lock();
            if g.word(0) == key {
                let old = g.word(1);
                g.set([key, val_of(at, true, now)]);
                drop(g);
                if !val_static(old) {
                    self.give(val_port(old));
                }
                self.bump();
                return true;
            }
        }
        self.insert(key, at, true, now) == Learn::New
    }
    /// Removes the entry for `mac` in `vid`; true if there was one.
    pub fn remove(&self, mac: MacAddr, vid: Vid) -> bool {
        let key = key_of(mac, vid);
        match self.find(key) {
            Some((i, _)) => self.remove_slot(i, |k, _| k == key),
            None => false,
        }
    }

    fn remove_slot(&self, i: usize, pred: impl Fn(u64, u64) -> bool) -> bool {
        let g = self.slots[i].lock();
        let (k, v) = (g.word(0), g.word(1));
        if k == EMPTY || k == TOMBSTONE || !pred(k, v) {
            return false;
        }
        g.set([TOMBSTONE, 0]);
        drop(g);
        if !val_static(v) {
            self.give(val_port(v));
        }
        self.bump();
        true
    }

    /// Removes every entry `pred(entry)` selects; returns how many.
    pub fn remove_where(&self, pred: impl Fn(&Entry) -> bool) -> usize {
        let mut n = 0;
        for i in 0..self.slots.len() {
            let [k, v] = self.slots[i].read();
            if k == EMPTY || k == TOMBSTONE {
                continue;
            }
            if pred(&entry_of(k, v)) && self.remove_slot(i, |k2, v2| pred(&entry_of(k2, v2))) {
                n += 1;
            }
        }
        self.reclaim_tombstones();
        n
    }

    /// Removes learned entries not seen for `max_age` seconds at `now`.
    pub fn age(&self, now: u32, max_age: u32) -> usize {
        self.remove_where(|e| !e.is_static && now.wrapping_sub(e.last_seen) >= max_age)
    }

    /// Moves the last-seen time of the learned entry of `mac` in `vid` at
    /// `at` forward to `seen`, for a source that rvs did not see itself
    /// (the kernel fast path carried it). Nothing else changes, so no
    /// decision does. False if there is no such entry or it was seen later.
    pub fn refresh(&self, mac: MacAddr, vid: Vid, at: Dest, seen: u32) -> bool {
        let key = key_of(mac, vid);
        let fresher = |v: u64| !val_static(v) && val_dest(v) == at && val_seen(v) < seen;
        let Some((i, v)) = self.find(key) else { return false };
        if !fresher(v) {
            return false;
        }
        let g = self.slots[i].lock();
        if g.word(0) != key || !fresher(g.word(1)) {
            return false;
        }
        g.set([key, val_of(at, false, seen)]);
        true
    }

    /// Removes learned entries, of one port if given.
    pub fn flush(&self, port: Option<PortId>) -> usize {
        self.remove_where(|e| !e.is_static && port.is_none_or(|p| e.port == p))
    }

    /// Removes every entry, static ones too, that points at `port` (for a
    /// port being deleted).
    pub fn forget_port(&self, port: PortId) -> usize {
        self.remove_where(|e| e.port == port)
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> Vec<Entry> {
        let mut v = Vec::new();
        self.for_each(|e| v.push(e));
        v
    }

    /// Calls `f` with every entry, in no particular order, without
    /// collecting them (a table may hold a million).
    pub fn for_each(&self, mut f: impl FnMut(Entry)) {
        for s in self.slots.iter() {
            let [k, v] = s.read();
            if k != EMPTY && k != TOMBSTONE {
                f(entry_of(k, v));
            }
        }
    }

    /// Up to `limit` entries ordered by (VLAN, MAC), those after `after`
    /// only, whether more follow, and how many entries the whole table
    /// holds; one pass over the table, whatever its size, keeping at most
    /// `limit` entries at a time.
    pub fn page(&self, after: Option<(Vid, MacAddr)>, limit: usize) -> Page {
        use std::collections::BinaryHeap;
        let key = |e: &Entry| (e.vid, e.mac.to_u64());
        let after = after.map(|(v, m)| (v, m.to_u64()));
        // The `limit` smallest keys past `after`: a max-heap of them.
        let mut heap: BinaryHeap<(Vid, u64, HeapEntry)> = BinaryHeap::with_capacity(limit + 1);
        let (mut more, mut total) = (false, 0);
        self.for_each(|e| {
            total += 1;
            let k = key(&e);
            if after.is_some_and(|a| k <= a) {
                return;
            }
            heap.push((k.0, k.1, HeapEntry(e)));
            if heap.len() > limit {
                heap.pop();
                more = true;
            }
        });
        let entries = heap.into_sorted_vec().into_iter().map(|(_, _, e)| e.0).collect();
        Page { entries, more, total }
    }

    /// Turns tombstones that end a chain back into empty slots, so lookups
    /// of absent keys stay short after churn. Runs on the control thread.
    fn reclaim_tombstones(&self) {
        let n = self.slots.len();
        for i in 0..n {
            let next = (i + 1) & self.mask;
            if self.slots[i].read()[0] != TOMBSTONE || self.slots[next].read()[0] != EMPTY {
                continue;
            }
            // Walk backwards over the run of tombstones that ends here.
            let mut j = i;
            for _ in 0..n {
                let g_next = self.slots[(j + 1) & self.mask].lock();
                let g = self.slots[j].lock();
                if g.word(0) != TOMBSTONE || g_next.word(0) != EMPTY {
                    break;
                }
                g.set([EMPTY, 0]);
                drop(g);
                drop(g_next);
                j = j.wrapping_sub(1) & self.mask;
            }
        }
    }
}

/// What [`Fdb::page`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The entries of the page, in (VLAN, MAC) order.
    pub entries: Vec<Entry>,
    /// True if entries follow the last one.
    pub more: bool,
    /// Entries in the whole table.
    pub total: usize,
}

/// An entry in `page`'s heap, ordered by the key beside it only.
struct HeapEntry(Entry);

impl PartialEq for HeapEntry {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for HeapEntry {}
impl PartialOrd for HeapEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapEntry {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

fn entry_of(k: u64, v: u64) -> Entry {
    Entry {
        mac: MacAddr::from_u64(k & 0xffff_ffff_ffff),
        vid: Vid(((k >> 48) & 0xfff) as u16),
        port: val_port(v),
        remote: val_dest(v).remote,
        is_static: val_static(v),
        last_seen: val_seen(v),
    }
}

#[cfg(test)]
mod tests;
