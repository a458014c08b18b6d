//! VXLAN decapsulation against a configured VTEP on any bytes: no panic,
//! an accepted frame names a tunnel port and a known remote and its inner
//! frame lies inside the buffer. And any inner frame encapsulated over
//! IPv4 or IPv6 decapsulates back to itself.
#![no_main]

mod rig;

use libfuzzer_sys::fuzz_target;
use rvs_dataplane::fdb::Fdb;
use rvs_dataplane::pipeline;
use rvs_dataplane::snapshot::PortKind;
use rvs_dataplane::wire::vxlan::{self, OuterTemplate, PORT};
use rvs_dataplane::wire::MacAddr;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

fuzz_target!(|data: &[u8]| {
    static SNAP: OnceLock<rvs_dataplane::snapshot::Snapshot> = OnceLock::new();
    let snap = SNAP.get_or_init(|| rig::snapshot(Arc::new(Fdb::new(rig::MAX_MACS))));
    if let Ok(d) = pipeline::decap(snap, data) {
        assert!(d.len >= 14 && d.inner + d.len <= data.len(), "inner frame outside the buffer");
        let Some(PortKind::Vxlan(t)) = snap.port(d.port).map(|p| &p.kind) else {
            panic!("decap to a port that is not a tunnel")
        };
        assert!(usize::from(d.remote) < t.remotes.len());
    }

    // Round trip of `data` as the inner frame.
    if data.len() < 14 || data.len() > 1600 {
        return;
    }
    let v6 = |x: u16| IpAddr::from([0x2001, 2, 0, 0, 0, 0, 0, x]);
    let vni = u32::from_be_bytes([0, data[0], data[1], data[2]]);
    for (l, r) in [(rig::ip(1), rig::ip(2)), (v6(1), v6(2))] {
        let t =
            OuterTemplate::new(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]), l, r, PORT, 64, vni).unwrap();
        let mut buf = vec![0u8; t.len() + data.len()];
        buf[t.len()..].copy_from_slice(data);
        let off = t.encap(&mut buf, t.len(), data.len(), vxlan::src_port(vxlan::flow_hash(data))).unwrap();
        let frame = &buf[off..];
        let o = vxlan::decap(frame).expect("our own encapsulation decapsulates");
        assert_eq!((o.src, o.dst, o.dst_port, o.vni), (l, r, PORT, vni));
        assert_eq!(&frame[o.inner..o.inner + o.inner_len], data);
    }
});
