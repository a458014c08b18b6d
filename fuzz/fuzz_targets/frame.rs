//! Frame parsers on any bytes: the Ethernet view, the 802.1Q tag, VXLAN
//! outer headers, the flow hash, the checksum fixer and the ARP/ND
//! responder never panic, an answer stays in its buffer, and a tag pushed
//! then popped gives the frame back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_dataplane::ids::Vid;
use rvs_dataplane::neigh::NeighTable;
use rvs_dataplane::responder;
use rvs_dataplane::wire::{checksum, vlan, vxlan, EthernetFrame, MacAddr};

fuzz_target!(|data: &[u8]| {
    if let Some(eth) = EthernetFrame::new_checked(data) {
        let _ = (eth.dst(), eth.src(), eth.ethertype(), eth.payload().len());
    }
    let tag = vlan::parse(data);
    if let Ok(o) = vxlan::decap(data) {
        let len = o.inner_len;
        assert!(len >= 14 && o.inner + len <= data.len(), "inner frame outside the buffer");
    }
    let _ = vxlan::src_port(vxlan::flow_hash(data));
    let mut copy = data.to_vec();
    let _ = checksum::complete_partial(&mut copy);

    // ARP and ND: whatever the frame asks for is bound, so every request
    // that parses is answered, in a buffer with room after the frame.
    if let Some(msg) = responder::inspect(data) {
        let table = NeighTable::new(16);
        if let Some(ip) = msg.target {
            table.add_static(ip, Vid(1), MacAddr([2, 0, 0, 0, 0, 0xfe]), 0);
        }
        let mut buf = data.to_vec();
        buf.resize(data.len() + 64, 0);
        if let Some(n) = responder::answer(&mut buf, data.len(), &table, Vid(1)) {
            assert!(n <= buf.len(), "an answer past its buffer");
            assert!(responder::inspect(&buf[..n]).is_some_and(|m| m.target.is_none()), "the answer asks again");
        }
    }

    // Tag edits inside a buffer with headroom, as the polling loop does.
    const HEAD: usize = 8;
    let mut buf = vec![0u8; HEAD + data.len()];
    buf[HEAD..].copy_from_slice(data);
    let vid = Vid(data.first().map_or(1, |b| u16::from(*b) << 4 | 5) & 0xfff);
    if let Some(off) = vlan::push(&mut buf, HEAD, data.len(), vid) {
        let tagged = &mut buf[off..off + data.len() + vlan::TAG_LEN];
        assert!(matches!(vlan::parse(tagged), Ok(vlan::Tag::Dot1q { vid: v, .. }) if v == vid));
        vlan::set_vid(tagged, Vid(7));
        let back = vlan::pop(&mut buf, off, data.len() + vlan::TAG_LEN).expect("pop of a pushed tag");
        assert_eq!(&buf[back..back + data.len()], data, "push then pop changed the frame");
    } else {
        assert!(data.len() < 14, "push refused a whole frame");
    }
    if let Ok(vlan::Tag::Dot1q { .. }) = tag {
        let mut buf = data.to_vec();
        assert!(vlan::pop(&mut buf, 0, data.len()).is_some(), "pop refused a tagged frame");
    }
});
