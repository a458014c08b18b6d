//! Any bytes on any port of a whole switch in memory (polling loop,
//! pipeline, FDB, flow cache, VLANs, VXLAN encap and decap): no panic,
//! every buffer comes back, the FDB stays within its limit, and every
//! received frame is accounted for: rx = forwarded + flooded + answered
//! (ARP/ND suppressed) + the frames dropped at ingress under a named reason.
//!
//! Input: records of [selector][length][bytes]. The selector picks the
//! port (low 2 bits; 3 is the uplink); with bit 7 set an uplink record is
//! wrapped in valid VXLAN headers from a known remote, so the inner frame
//! is what gets fuzzed. Bit 6 polls before the record is queued.
#![no_main]

mod rig;

use libfuzzer_sys::fuzz_target;
use rvs_dataplane::port::HEADROOM;
use rvs_dataplane::stats::{DropReason, PortCounters};
use std::cell::RefCell;

/// Drops counted after the forwarding decision (egress side), which are
/// not part of a frame's ingress accounting.
const AFTER_DECISION: [DropReason; 4] =
    [DropReason::TxFull, DropReason::NoBuffer, DropReason::TunnelMtu, DropReason::NoNeighbor];

thread_local! {
    // Building a switch per input (packet pool, flow cache) costs more
    // than running one; `reset` makes the reused one start clean.
    static RIG: RefCell<rig::Rig> = RefCell::new(rig::rig());
}

fuzz_target!(|data: &[u8]| RIG.with(|r| run(&mut r.borrow_mut(), data)));

fn run(r: &mut rig::Rig, data: &[u8]) {
    r.reset();
    let before: Vec<PortCounters> = r.stats.iter().map(|s| s.read()).collect();
    let outer = rig::from_remote0();
    let mut rest = data;
    let mut injected = [0u64; rig::TUNNEL];
    while let [sel, len, tail @ ..] = rest {
        // Lengths up to 3832 bytes: bits 3-5 of the selector add 256 each.
        let n = (usize::from(*len) * 8 + (usize::from(sel & 0x38) << 5)).min(tail.len());
        let (frame, more) = tail.split_at(n);
        rest = more;
        if sel & 0x40 != 0 {
            r.pmd.poll_once();
        }
        let port = usize::from(sel & 3);
        if port == rig::UPLINK && sel & 0x80 != 0 && frame.len() >= 14 {
            let mut buf = vec![0u8; HEADROOM + frame.len()];
            buf[HEADROOM..].copy_from_slice(frame);
            let off = outer.encap(&mut buf, HEADROOM, frame.len(), 50000).unwrap();
            r.handles[port].inject(&buf[off..]);
        } else {
            r.handles[port].inject(frame);
        }
        injected[port] += 1;
    }
    // Poll until every queue is empty (each round takes up to a batch).
    while r.pmd.poll_once() > 0 {}
    for h in &r.handles {
        for f in h.take_sent() {
            assert!(f.len() >= 14, "sent a runt of {} bytes", f.len());
        }
    }
    assert_eq!(r.pmd.pool_free(), r.free0, "a buffer was lost");
    assert!(r.fdb.learned() <= rig::MAX_MACS, "FDB over its limit: {}", r.fdb.learned());
    for (id, st) in r.stats.iter().enumerate() {
        let c = rig::since(&st.read(), &before[id]);
        if id < rig::TUNNEL {
            assert_eq!(c.rx_packets, injected[id], "port {id}: frames received != frames injected");
        }
        let after: u64 = AFTER_DECISION.iter().map(|r| c.drops[*r as usize]).sum();
        let ingress = c.total_drops() - after;
        assert_eq!(
            c.rx_packets,
            c.forwarded + c.flooded + c.arp_suppressed + c.nd_suppressed + ingress,
            "port {id}: rx {} != forwarded {} + flooded {} + dropped {} ({:?})",
            c.rx_packets,
            c.forwarded,
            c.flooded,
            ingress,
            c.drops
        );
    }
}
