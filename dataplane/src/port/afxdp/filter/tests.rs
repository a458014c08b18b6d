//! The uplink program run by the kernel on crafted frames (needs root).
use super::*;
use crate::bpf::{create_xskmap, load_program, test_run};
use crate::wire::{EthernetRepr, Ipv6Repr, MacAddr, UdpRepr};
use std::net::{Ipv4Addr, Ipv6Addr};

const XDP_DROP: u32 = 1;
const PASS: u32 = XDP_PASS as u32;
/// What a hit returns in these tests: the XSKMAP has no socket, so
/// bpf_redirect_map returns the fallback, which here is XDP_DROP.
const HIT: u32 = XDP_DROP;

const VTEP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const VTEP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);

fn privileged(test: &str) -> bool {
    crate::testing::require_root(test, &[])
}

/// The test program (hit fallback XDP_DROP) with VTEP4:4789 and
/// [VTEP6]:4789 registered.
struct Rig {
    prog: OwnedFd,
    vteps: VtepMap,
    _xsks: OwnedFd,
}

impl Rig {
    fn new() -> Rig {
        let xsks = create_xskmap(1).unwrap();
        let vteps = VtepMap::create(16).unwrap();
        let insns = uplink_program(xsks.as_raw_fd(), vteps.fd(), XDP_DROP as i32);
        let prog = load_program(&insns, "rvs_uplink_t").unwrap();
        vteps.add(VTEP4.into(), 4789).unwrap();
        vteps.add(VTEP6.into(), 4789).unwrap();
        Rig { prog, vteps, _xsks: xsks }
    }

    fn run(&self, frame: &[u8]) -> u32 {
        test_run(self.prog.as_raw_fd(), frame).unwrap_or_else(|e| panic!("test run on {frame:02x?}: {e}"))
    }
}

fn eth(ethertype: u16) -> Vec<u8> {
    let e = EthernetRepr { dst: MacAddr([2, 0, 0, 0, 0, 2]), src: MacAddr([2, 0, 0, 0, 0, 1]), tag: None, ethertype };
    let mut f = vec![0; e.header_len()];
    e.emit(&mut f);
    f
}

fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0; UdpRepr::LEN];
    UdpRepr { src_port, dst_port, payload_len: payload.len() }.emit(&mut u);
    u.extend_from_slice(payload);
    u
}

/// An IPv4 packet: `options` (a multiple of 4 bytes) sets IHL. Built by
/// hand: `Ipv4Repr` writes neither options nor fragment offsets.
fn ipv4(dst: Ipv4Addr, proto: u8, frag_off: u16, options: &[u8], l4: &[u8]) -> Vec<u8> {
    let hlen = 20 + options.len();
    let mut p = vec![0x40 | (hlen / 4) as u8, 0];
    p.extend_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34]);
    p.extend_from_slice(&frag_off.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&[198, 18, 0, 2]);
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(options);
    p.extend_from_slice(l4);
    p
}

fn ipv6(dst: Ipv6Addr, next_header: u8, l4: &[u8]) -> Vec<u8> {
    let src = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
    let mut p = vec![0; Ipv6Repr::LEN];
    Ipv6Repr { src, dst, next_header, hop_limit: 64, payload_len: l4.len() }.emit(&mut p);
    p.extend_from_slice(l4);
    p
}

fn frame(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = eth(ethertype);
    f.extend_from_slice(l3);
    f
}

/// `frame` with one 802.1Q tag (VLAN `vid`) after the MAC addresses.
fn tagged(f: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
    let mut t = f[..12].to_vec();
    t.extend_from_slice(&tpid.to_be_bytes());
    t.extend_from_slice(&vid.to_be_bytes());
    t.extend_from_slice(&f[12..]);
    t
}

/// A VXLAN header and an inner Ethernet frame: a realistic payload.
fn vxlan_payload() -> Vec<u8> {
    let mut p = vec![0x08, 0, 0, 0, 0, 0, 0x64, 0];
    p.extend_from_slice(&frame(0x0800, &ipv4(Ipv4Addr::new(10, 0, 0, 2), 1, 0, &[], &[8, 0, 0, 0])));
    p
}

fn vxlan4(dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    frame(0x0800, &ipv4(dst, 17, 0x4000, &[], &udp(54321, dport, &vxlan_payload())))
}

fn vxlan6(dst: Ipv6Addr, dport: u16) -> Vec<u8> {
    frame(0x86dd, &ipv6(dst, 17, &udp(54321, dport, &vxlan_payload())))
}

#[test]
fn key_layout_matches_the_program() {
    assert_eq!(size_of::<VtepKey>(), 20);
    let k = VtepKey::new(VTEP4.into(), 4789);
    // SAFETY: VtepKey is a 20-byte repr(C) struct without padding.
    let b: [u8; 20] = unsafe { std::mem::transmute(k) };
    assert_eq!(&b[..4], &[0x12, 0xb5, 2, 0]);
    assert_eq!(&b[4..8], &VTEP4.octets());
    assert_eq!(&b[8..], &[0; 12]);
    let k = VtepKey::new(VTEP6.into(), 4789);
    // SAFETY: as above.
    let b: [u8; 20] = unsafe { std::mem::transmute(k) };
    assert_eq!(&b[..4], &[0x12, 0xb5, 10, 0]);
    assert_eq!(&b[4..], &VTEP6.octets());
    // An IPv4-mapped address is its IPv4 address.
    assert_eq!(VtepKey::new(IpAddr::V6(VTEP4.to_ipv6_mapped()), 4789), VtepKey::new(VTEP4.into(), 4789));
    assert_eq!(vtep_name(VTEP6.into(), 4789), "[2001:2::1]:4789");
}

#[test]
fn program_assembles_with_resolved_jumps() {
    const CALL: u8 = 0x85;
    const EXIT: u8 = 0x95;
    const MOV_K: u8 = 0xb7;
    let p = uplink_program(3, 4, XDP_PASS);
    for (i, insn) in p.iter().enumerate() {
        if insn.code & 0x07 == 0x05 && insn.code != CALL && insn.code != EXIT {
            let to = i as isize + 1 + insn.off as isize;
            assert!(insn.off != 0 && to > i as isize && (to as usize) < p.len(), "jump {i} to {to}");
        }
    }
    assert_eq!(p.len(), 67, "65 instructions, two of them ld_imm64 (two slots)");
    assert_eq!(p.last().unwrap().code, EXIT);
    assert_eq!(p[p.len() - 2], Insn::new(MOV_K, R0, 0, 0, XDP_PASS));
}

#[test]
fn verifier_accepts_the_program() {
    if !privileged("verifier_accepts_the_program") {
        return;
    }
    let xsks = create_xskmap(4).unwrap();
    let vteps = VtepMap::create(256).unwrap();
    for fallback in [XDP_PASS, XDP_DROP as i32] {
        let insns = uplink_program(xsks.as_raw_fd(), vteps.fd(), fallback);
        load_program(&insns, "rvs_uplink_t").unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn vteps_are_taken() {
    if !privileged("vteps_are_taken") {
        return;
    }
    let rig = Rig::new();
    assert_eq!(rig.run(&vxlan4(VTEP4, 4789)), HIT, "IPv4 hit");
    assert_eq!(rig.run(&vxlan6(VTEP6, 4789)), HIT, "IPv6 hit");
    // DF set or not, any source port, an empty UDP payload: still a hit.
    let bare = frame(0x0800, &ipv4(VTEP4, 17, 0, &[], &udp(1, 4789, &[])));
    assert_eq!(rig.run(&bare), HIT, "IPv4 without DF, bare UDP header");
    // Trailing bytes after the IP packet (Ethernet padding) do not matter.
    let mut padded = bare.clone();
    padded.extend_from_slice(&[0; 18]);
    assert_eq!(rig.run(&padded), HIT, "padded");
    // Removing a VTEP makes it a miss.
    rig.vteps.remove(VTEP4.into(), 4789).unwrap();
    assert_eq!(rig.run(&vxlan4(VTEP4, 4789)), PASS, "IPv4 after removal");
    assert_eq!(rig.vteps.remove(VTEP4.into(), 4789).unwrap_err().raw_os_error(), Some(libc::ENOENT));
    rig.vteps.add(VTEP4.into(), 4789).unwrap();
    rig.vteps.add(VTEP4.into(), 4789).unwrap(); // idempotent
    assert_eq!(rig.run(&vxlan4(VTEP4, 4789)), HIT, "IPv4 added again");
}

#[test]
fn everything_else_passes() {
    if !privileged("everything_else_passes") {
        return;
    }
    let rig = Rig::new();
    let other4 = Ipv4Addr::new(198, 18, 0, 9);
    let other6 = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 9);
    let payload = vxlan_payload();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("IPv4 wrong port", vxlan4(VTEP4, 4790)),
        ("IPv4 source port 4789 only", frame(0x0800, &ipv4(VTEP4, 17, 0, &[], &udp(4789, 4790, &payload)))),
        ("IPv4 other address", vxlan4(other4, 4789)),
        ("IPv4 VTEP6's bytes as address", vxlan4(Ipv4Addr::new(0x20, 1, 0, 2), 4789)),
        ("IPv6 wrong port", vxlan6(VTEP6, 8472)),
        ("IPv6 other address", vxlan6(other6, 4789)),
        ("IPv6 with the IPv4 VTEP mapped", vxlan6(VTEP4.to_ipv6_mapped(), 4789)),
        (
            "ARP request for the VTEP",
            frame(0x0806, &[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 198, 18, 0, 2, 0, 0, 0, 0, 0, 0, 198, 18, 0, 1]),
        ),
        ("ICMP echo to the VTEP", frame(0x0800, &ipv4(VTEP4, 1, 0x4000, &[], &[8, 0, 0, 0, 0, 1, 0, 1]))),
        ("TCP to the VTEP port 4789", frame(0x0800, &ipv4(VTEP4, 6, 0x4000, &[], &udp(4789, 4789, &[0; 12])))),
        ("ICMPv6 (ND) to the VTEP", frame(0x86dd, &ipv6(VTEP6, 58, &[135, 0, 0, 0, 0, 0, 0, 0]))),
        ("TCP over IPv6 to the VTEP", frame(0x86dd, &ipv6(VTEP6, 6, &udp(1, 4789, &[0; 12])))),
        (
            "IPv6 hop-by-hop header before UDP",
            frame(0x86dd, &ipv6(VTEP6, 0, &[[17, 0, 1, 4, 0, 0, 0, 0].as_slice(), &udp(1, 4789, &payload)].concat())),
        ),
        ("IPv4 with options", frame(0x0800, &ipv4(VTEP4, 17, 0, &[1, 1, 1, 0], &udp(1, 4789, &payload)))),
        ("IPv4 first fragment (MF)", frame(0x0800, &ipv4(VTEP4, 17, 0x2000, &[], &udp(1, 4789, &payload)))),
        ("IPv4 later fragment (offset)", frame(0x0800, &ipv4(VTEP4, 17, 0x0010, &[], &udp(1, 4789, &payload)))),
        (
            "IPv4 last fragment (offset, DF bit pattern)",
            frame(0x0800, &ipv4(VTEP4, 17, 0x4001, &[], &udp(1, 4789, &payload))),
        ),
        ("IPv4 header claiming version 6", {
            let mut f = vxlan4(VTEP4, 4789);
            f[14] = 0x65;
            f
        }),
        ("IPv6 header claiming version 4", {
            let mut f = vxlan6(VTEP6, 4789);
            f[14] = 0x40;
            f
        }),
        ("IPv6 EtherType carrying IPv4", frame(0x86dd, &vxlan4(VTEP4, 4789)[14..])),
        ("IPv4 EtherType carrying IPv6", frame(0x0800, &vxlan6(VTEP6, 4789)[14..])),
        ("802.1ad outer tag", tagged(&vxlan4(VTEP4, 4789), 0x88a8, 100)),
        ("two 802.1Q tags", tagged(&tagged(&vxlan4(VTEP4, 4789), 0x8100, 100), 0x8100, 200)),
        ("VLAN-tagged ARP", tagged(&frame(0x0806, &[0; 28]), 0x8100, 100)),
        ("LLDP", frame(0x88cc, &[0; 32])),
        ("all zeroes", vec![0; 64]),
        ("all ones", vec![0xff; 64]),
    ];
    for (what, f) in cases {
        assert_eq!(rig.run(&f), PASS, "{what}");
    }
}

#[test]
fn one_vlan_tag_is_accepted() {
    if !privileged("one_vlan_tag_is_accepted") {
        return;
    }
    let rig = Rig::new();
    assert_eq!(rig.run(&tagged(&vxlan4(VTEP4, 4789), 0x8100, 100)), HIT, "tagged IPv4 hit");
    assert_eq!(rig.run(&tagged(&vxlan6(VTEP6, 4789), 0x8100, 4095)), HIT, "tagged IPv6 hit");
    assert_eq!(rig.run(&tagged(&vxlan4(VTEP4, 4790), 0x8100, 100)), PASS, "tagged IPv4 miss");
    assert_eq!(rig.run(&tagged(&vxlan6(VTEP6, 4790), 0x8100, 100)), PASS, "tagged IPv6 miss");
}

#[test]
fn truncated_frames_pass() {
    if !privileged("truncated_frames_pass") {
        return;
    }
    let rig = Rig::new();
    let frames = [
        vxlan4(VTEP4, 4789),
        vxlan6(VTEP6, 4789),
        tagged(&vxlan4(VTEP4, 4789), 0x8100, 7),
        tagged(&vxlan6(VTEP6, 4789), 0x8100, 7),
    ];
    for f in &frames {
        // The headers the program reads: Ethernet (+ tag), IP, UDP.
        let tag = if f[12..14] == [0x81, 0] { 4 } else { 0 };
        let ip = if f[12 + tag..14 + tag] == [8, 0] { 20 } else { 40 };
        let needed = 14 + tag + ip + 8;
        // BPF_PROG_TEST_RUN refuses to run on less than an Ethernet
        // header; the program itself checks data + 14 <= data_end first,
        // and the verifier has proved every access in bounds for any length.
        for len in 0..14 {
            let e = test_run(rig.prog.as_raw_fd(), &f[..len]).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{len} bytes");
        }
        for len in 14..needed {
            assert_eq!(rig.run(&f[..len]), PASS, "{len} of {} bytes of {:02x?}", f.len(), &f[..needed]);
        }
        for len in needed..=f.len() {
            assert_eq!(rig.run(&f[..len]), HIT, "{len} of {} bytes", f.len());
        }
    }
}
