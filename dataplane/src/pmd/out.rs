//! The way out of a polling thread: flood copies, the egress plan acted on
//! (tag edits, VXLAN encapsulation), frames handed to the thread that owns
//! a port, and one send per port per round.

use super::*;
use crate::responder::{self, Proto};

impl Pmd {
    #[inline]
    pub(super) fn flood(&mut self, snap: &Snapshot, bridge: BridgeId, ingress: PortId, d: Desc, v: Verdict, st: usize) {
        let Some(br) = snap.bridge(bridge) else {
            self.count_drop(st, DropReason::NoBridge);
            self.pool.free(d.addr);
            return;
        };
        let members = br.flood_set(v.vid);
        let last = members.iter().rposition(|m| egress::floods_to(m.port, ingress));
        let Some(last) = last else {
            // Nobody else in this VLAN: flooded to an empty set.
            self.pool.free(d.addr);
            return;
        };
        for m in &members[..last] {
            if !egress::floods_to(m.port, ingress) {
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

    /// Turns the request `d` into its answer in place and sends it back
    /// out `ingress`, counting it as suppressed; should the binding have
    /// gone since the decision, the request is flooded as it would have been.
    #[inline]
    pub(super) fn answer(&mut self, snap: &Snapshot, ingress: PortId, d: Desc, v: Verdict, proto: Proto, st: usize) {
        let Some(br) = snap.port(ingress).and_then(|p| p.bridge).and_then(|b| snap.bridge(b)) else {
            self.count_drop(st, DropReason::NoBridge);
            self.pool.free(d.addr);
            return;
        };
        let chunk = d.chunk();
        let off = (d.addr - chunk) as usize;
        let buf = self.pool.chunk_mut(chunk).get_mut(off..).unwrap_or_default();
        let Some(len) = responder::answer(buf, d.len as usize, &br.neigh, v.vid) else {
            PortStats::add(&self.ports[st].stats.flooded, 1);
            self.flood(snap, br.id, ingress, d, v, st);
            return;
        };
        let counter = match proto {
            Proto::Arp => &self.ports[st].stats.arp_suppressed,
            Proto::Nd => &self.ports[st].stats.nd_suppressed,
        };
        PortStats::add(counter, 1);
        self.output(snap, ingress, Desc { addr: d.addr, len: len as u32 }, v, st);
    }

    /// Edits the tag of `d` for port `out` and queues it there (or hands it
    /// to the thread that owns the port's queue).
    #[inline]
    pub(super) fn output(&mut self, snap: &Snapshot, out: PortId, d: Desc, v: Verdict, st: usize) {
        let plan = match egress::port_plan(snap, out, v.vid, v.tagged) {
            Ok(p) => p,
            Err(r) => {
                self.count_drop(st, r);
                self.pool.free(d.addr);
                return;
            }
        };
        let Some(d) = self.edit_tag(d, plan.edit) else {
            self.count_drop(st, DropReason::BadVlan);
            self.pool.free(d.addr);
            return;
        };
        match &plan.port.kind {
            PortKind::Vxlan(t) => self.encap(snap, t, out, d, v.remote, st),
            _ => self.queue_tx(snap, out, d, st),
        }
    }

    /// Queues `d` on port `out`: on this thread's handle, or through the
    /// thread that has one.
    #[inline]
    pub(super) fn queue_tx(&mut self, snap: &Snapshot, out: PortId, d: Desc, st: usize) {
        match self.tx_slot.get(out.index()).copied().filter(|s| *s != NO_SLOT) {
            Some(slot) if self.ports[slot as usize].port.is_some() => self.txq[slot as usize].push(d),
            _ => self.hand_off(snap, out, d, st),
        }
    }

    /// Sends `d` through tunnel port `port`: to remote `remote`, or to every
    /// remote (head-end replication) for `NO_REMOTE`.
    #[inline]
    pub(super) fn encap(&mut self, snap: &Snapshot, t: &Tunnel, port: PortId, d: Desc, remote: u16, st: usize) {
        let tst = self.slot_of(port).unwrap_or(st);
        let targets = match egress::tunnel_plan(t, d.len as usize, remote) {
            Ok(t) => t,
            Err(r) => {
                self.count_drop(tst, r);
                self.pool.free(d.addr);
                return;
            }
        };
        if !self.captures.is_empty() {
            self.capture(port, d, true);
        }
        let sport = vxlan::src_port(vxlan::flow_hash(self.pool.data(d)));
        let last = targets.end - 1;
        for r in targets {
            let outer = match egress::remote_outer(t, r) {
                Ok(o) => o,
                Err(reason) => {
                    self.count_drop(tst, reason);
                    if r == last {
                        self.pool.free(d.addr);
                    }
                    continue;
                }
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

    #[inline]
    pub(super) fn edit_tag(&mut self, d: Desc, edit: TagEdit) -> Option<Desc> {
        let chunk = d.chunk();
        let off = (d.addr - chunk) as usize;
        let (off, len) = egress::edit_tag(self.pool.chunk_mut(chunk), off, d.len as usize, edit)?;
        Some(Desc { addr: chunk + off as u64, len: len as u32 })
    }

    pub(super) fn hand_off(&mut self, snap: &Snapshot, out: PortId, d: Desc, st: usize) {
        let target = snap.tx_thread(out).map(usize::from).filter(|t| *t != usize::from(self.index));
        let Some(inbox) = target.and_then(|t| self.handoff.inbox.get(t)) else {
            self.count_drop(st, DropReason::PortDown);
            self.pool.free(d.addr);
            return;
        };
        // A frame that grew on its way (a pushed tag, outer headers) may
        // no longer fit a parcel, nor the buffer the other thread puts it in.
        if d.len as usize > MAX_FRAME {
            self.count_drop(st, DropReason::Oversize);
            self.pool.free(d.addr);
            return;
        }
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
        match inbox.push(parcel) {
            Ok(()) => self.handoff.wake(target.unwrap_or_default()),
            Err(p) => {
                let _ = self.handoff.spare.push(p);
                self.count_drop(st, DropReason::TxFull);
            }
        }
    }

    pub(super) fn take_parcels(&mut self) -> usize {
        let handoff = self.handoff.clone();
        let Some(inbox) = handoff.inbox.get(usize::from(self.index)) else { return 0 };
        let mut n = 0;
        while n < BATCH {
            let Some(parcel) = inbox.pop() else { break };
            n += 1;
            let slot = self
                .tx_slot
                .get(parcel.port.index())
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
                    // The sender's snapshot still had the port here. (A
                    // port not added here yet has no counters to count on.)
                    if let Some((_, st)) = self.gone.iter().find(|(id, _)| *id == parcel.port) {
                        st.drop_one(DropReason::PortDown);
                    }
                }
            }
            let _ = handoff.spare.push(parcel);
        }
        n
    }

    pub(super) fn transmit(&mut self) {
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
}
