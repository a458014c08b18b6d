//! The uplink XDP program: VXLAN/UDP frames for a local VTEP go to AF_XDP,
//! everything else (the host's own traffic: ARP, ND, ICMP, TCP, other UDP)
//! goes to the kernel untouched.
//!
//! Written in raw eBPF instructions, assembled here with labels. In C it
//! would read:
//!
//! ```text
//! key = {0};                                     // 20 bytes on the stack
//! if (data + 14 > end) return PASS;
//! type = eth->h_proto;
//! if (type == 0x8100) {                          // one 802.1Q tag
//!     if (data + 18 > end) return PASS;
//!     data += 4; type = eth->h_proto;            // inner type at the same offset
//! }
//! if (type == 0x0800) {
//!     if (data + 14 + 20 + 8 > end) return PASS;
//!     if (ip->ver_ihl != 0x45) return PASS;      // IPv4, no options
//!     if (ip->frag_off & 0x3fff) return PASS;    // MF or offset: a fragment
//!     if (ip->protocol != 17) return PASS;
//!     key.port = udp->dest; key.family = AF_INET; memcpy(key.addr, &ip->daddr, 4);
//! } else if (type == 0x86dd) {
//!     if (data + 14 + 40 + 8 > end) return PASS;
//!     if ((ip6->ver & 0xf0) != 0x60) return PASS;
//!     if (ip6->nexthdr != 17) return PASS;       // no extension headers
//!     key.port = udp->dest; key.family = AF_INET6; memcpy(key.addr, &ip6->daddr, 16);
//! } else return PASS;
//! if (!bpf_map_lookup_elem(&vteps, &key)) return PASS;
//! return bpf_redirect_map(&xsks, ctx->rx_queue_index, HIT_FALLBACK /* PASS */);
//! ```

use std::io;
use std::mem::size_of;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::bpf::{
    name16, owned, sys_bpf, Insn, MapCreateAttr, MapElemAttr, BPF_FUNC_REDIRECT_MAP, BPF_MAP_CREATE,
    BPF_MAP_DELETE_ELEM, BPF_MAP_UPDATE_ELEM, BPF_PSEUDO_MAP_FD, XDP_MD_RX_QUEUE_INDEX, XDP_PASS,
};

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;

/// Key of the VTEP map, as the program builds it on its stack: the UDP
/// destination port as on the wire, the address family (`AF_INET` or
/// `AF_INET6`, host order) and the destination address, zero-padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct VtepKey {
    port_be: u16,
    family: u16,
    addr: [u8; 16],
}

impl VtepKey {
    pub(super) fn new(addr: IpAddr, udp_port: u16) -> VtepKey {
        let mut key = VtepKey { port_be: udp_port.to_be(), ..Default::default() };
        match addr.to_canonical() {
            IpAddr::V4(a) => {
                key.family = libc::AF_INET as u16;
                key.addr[..4].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                key.family = libc::AF_INET6 as u16;
                key.addr = a.octets();
            }
        }
        key
    }
}

/// `addr:port` as people write it (`[2001:db8::1]:4789` for IPv6).
pub(super) fn vtep_name(addr: IpAddr, udp_port: u16) -> String {
    std::net::SocketAddr::new(addr, udp_port).to_string()
}

/// The hash map of local VTEPs (key [`VtepKey`], value u32, unused).
#[derive(Debug)]
pub(super) struct VtepMap(OwnedFd);

impl VtepMap {
    pub(super) fn create(entries: u32) -> io::Result<VtepMap> {
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_HASH,
            key_size: size_of::<VtepKey>() as u32,
            value_size: 4,
            max_entries: entries.max(1),
            map_name: name16("rvs_vteps"),
            ..Default::default()
        };
        sys_bpf(BPF_MAP_CREATE, &mut attr).map(owned).map(VtepMap)
    }

    pub(super) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    pub(super) fn add(&self, addr: IpAddr, udp_port: u16) -> io::Result<()> {
        let key = VtepKey::new(addr, udp_port);
        let value = 1u32;
        let mut attr = MapElemAttr {
            map_fd: self.fd() as u32,
            key: &key as *const VtepKey as u64,
            value: &value as *const u32 as u64,
            ..Default::default() // BPF_ANY
        };
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
    }

    pub(super) fn remove(&self, addr: IpAddr, udp_port: u16) -> io::Result<()> {
        let key = VtepKey::new(addr, udp_port);
        let mut attr =
            MapElemAttr { map_fd: self.fd() as u32, key: &key as *const VtepKey as u64, ..Default::default() };
        sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr).map(drop)
    }
}

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R10: u8 = 10;

// Opcodes (class | size/op | mode/source).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const LDX_H: u8 = 0x69; // BPF_LDX | BPF_MEM | BPF_H
const LDX_B: u8 = 0x71; // BPF_LDX | BPF_MEM | BPF_B
const STX_W: u8 = 0x63; // BPF_STX | BPF_MEM | BPF_W
const STX_H: u8 = 0x6b; // BPF_STX | BPF_MEM | BPF_H
const ST_H: u8 = 0x6a; // BPF_ST | BPF_MEM | BPF_H
const ST_DW: u8 = 0x7a; // BPF_ST | BPF_MEM | BPF_DW
const MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const ADD_K: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JGT_X: u8 = 0x2d; // BPF_JMP | BPF_JGT | BPF_X
const JA: u8 = 0x05; // BPF_JMP | BPF_JA
const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_DW | BPF_IMM

/// Jump targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    L3,
    Ipv4,
    Lookup,
    Pass,
}

/// A tiny assembler: instructions plus forward jumps resolved at the end.
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<(Label, usize)>,
    jumps: Vec<(usize, Label)>,
}

impl Asm {
    fn new() -> Asm {
        Asm { insns: Vec::new(), labels: Vec::new(), jumps: Vec::new() }
    }

    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn::new(code, dst, src, off, imm));
    }

    fn label(&mut self, l: Label) {
        assert!(self.labels.iter().all(|&(x, _)| x != l), "label {l:?} placed twice");
        self.labels.push((l, self.insns.len()));
    }

    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.jumps.push((self.insns.len(), to));
        self.op(code, dst, src, 0, imm);
    }

    /// `dst = *(size *)(src + off)`
    fn ldx(&mut self, code: u8, dst: u8, src: u8, off: i16) {
        self.op(code, dst, src, off, 0);
    }

    /// `*(size *)(dst + off) = src`
    fn stx(&mut self, code: u8, dst: u8, off: i16, src: u8) {
        self.op(code, dst, src, off, 0);
    }

    /// `r1 = <map fd>` (two slots, relocated by the kernel at load).
    fn ld_map(&mut self, dst: u8, fd: RawFd) {
        self.op(LD_IMM64, dst, BPF_PSEUDO_MAP_FD, 0, fd);
        self.op(0, 0, 0, 0, 0);
    }

    /// `if (data + len > data_end) goto pass` with data in r7, data_end in r8.
    fn need(&mut self, len: i32) {
        self.op(MOV_X, R2, R7, 0, 0);
        self.op(ADD_K, R2, 0, 0, len);
        self.jump(JGT_X, R2, R8, 0, Label::Pass);
    }

    fn finish(mut self) -> Vec<Insn> {
        for &(at, to) in &self.jumps {
            let target =
                self.labels.iter().find(|&&(l, _)| l == to).unwrap_or_else(|| panic!("label {to:?} unplaced")).1;
            let off = target as isize - at as isize - 1;
            self.insns[at].off = i16::try_from(off).expect("jump out of range");
        }
        self.insns
    }
}

const ETH_HLEN: i16 = 14;
const VLAN_HLEN: i32 = 4;
const IPV4_HLEN: i16 = 20;
const IPV6_HLEN: i16 = 40;
const UDP_HLEN: i16 = 8;
const IPPROTO_UDP: i32 = 17;
/// EtherTypes as a 16-bit load (host order) of the big-endian field reads
/// them: 0x0800 reads 0x0008 on x86.
const ETH_P_IP_LE: i32 = u16::from_be(0x0800) as i32;
const ETH_P_IPV6_LE: i32 = u16::from_be(0x86dd) as i32;
const ETH_P_8021Q_LE: i32 = u16::from_be(0x8100) as i32;
/// MF flag and fragment offset of the IPv4 `frag_off` field (0x3fff), as a
/// 16-bit load sees them (0xff3f on x86).
const IP_MF_OFFSET_LE: i32 = u16::from_be(0x3fff) as i32;
/// The key's place on the stack: r10 - 24 .. r10 - 4 (20 bytes).
const KEY: i16 = -24;

/// The uplink program (see the module docs). `hit_fallback` is what a hit
/// returns when its queue has no AF_XDP socket: XDP_PASS in service; the
/// tests use XDP_DROP to tell a hit from a miss without a socket.
pub(super) fn uplink_program(xsk_map: RawFd, vtep_map: RawFd, hit_fallback: i32) -> Vec<Insn> {
    let mut a = Asm::new();
    a.op(MOV_X, R6, R1, 0, 0); // r6 = ctx
    a.ldx(LDX_W, R7, R6, 0); // r7 = ctx->data
    a.ldx(LDX_W, R8, R6, 4); // r8 = ctx->data_end
                             // The key (20 bytes) lies in 24 zeroed bytes: the helper reads only
                             // initialised stack, and the hash compares every byte.
    a.op(ST_DW, R10, 0, KEY, 0);
    a.op(ST_DW, R10, 0, KEY + 8, 0);
    a.op(ST_DW, R10, 0, KEY + 16, 0);

    // Ethernet, at most one 802.1Q tag.
    a.need(ETH_HLEN as i32);
    a.ldx(LDX_H, R4, R7, 12); // r4 = EtherType
    a.jump(JNE_K, R4, 0, ETH_P_8021Q_LE, Label::L3);
    a.need(ETH_HLEN as i32 + VLAN_HLEN);
    a.op(ADD_K, R7, 0, 0, VLAN_HLEN); // r7 = data + 4: the inner type is at r7 + 12 again
    a.ldx(LDX_H, R4, R7, 12);
    a.label(Label::L3);
    a.jump(JEQ_K, R4, 0, ETH_P_IP_LE, Label::Ipv4);
    a.jump(JNE_K, R4, 0, ETH_P_IPV6_LE, Label::Pass);

    // IPv6 + UDP.
    let ip = ETH_HLEN;
    let udp = ip + IPV6_HLEN;
    a.need((udp + UDP_HLEN) as i32);
    a.ldx(LDX_B, R4, R7, ip); // version | traffic class
    a.op(AND_K, R4, 0, 0, 0xf0);
    a.jump(JNE_K, R4, 0, 0x60, Label::Pass);
    a.ldx(LDX_B, R4, R7, ip + 6); // next header
    a.jump(JNE_K, R4, 0, IPPROTO_UDP, Label::Pass);
    a.ldx(LDX_H, R4, R7, udp + 2); // UDP destination port, wire order kept
    a.stx(STX_H, R10, KEY, R4);
    a.op(ST_H, R10, 0, KEY + 2, libc::AF_INET6);
    for i in 0..4 {
        a.ldx(LDX_W, R4, R7, ip + 24 + 4 * i); // destination address
        a.stx(STX_W, R10, KEY + 4 + 4 * i, R4);
    }
    a.jump(JA, 0, 0, 0, Label::Lookup);

    // IPv4 + UDP.
    a.label(Label::Ipv4);
    let udp = ip + IPV4_HLEN;
    a.need((udp + UDP_HLEN) as i32);
    a.ldx(LDX_B, R4, R7, ip); // version | IHL
    a.jump(JNE_K, R4, 0, 0x45, Label::Pass);
    a.ldx(LDX_H, R4, R7, ip + 6); // flags | fragment offset
    a.op(AND_K, R4, 0, 0, IP_MF_OFFSET_LE);
    a.jump(JNE_K, R4, 0, 0, Label::Pass);
    a.ldx(LDX_B, R4, R7, ip + 9); // protocol
    a.jump(JNE_K, R4, 0, IPPROTO_UDP, Label::Pass);
    a.ldx(LDX_H, R4, R7, udp + 2);
    a.stx(STX_H, R10, KEY, R4);
    a.op(ST_H, R10, 0, KEY + 2, libc::AF_INET);
    a.ldx(LDX_W, R4, R7, ip + 16); // destination address
    a.stx(STX_W, R10, KEY + 4, R4);

    // Lookup, then redirect to the queue's socket.
    a.label(Label::Lookup);
    a.op(MOV_X, R2, R10, 0, 0);
    a.op(ADD_K, R2, 0, 0, KEY as i32);
    a.ld_map(R1, vtep_map);
    a.op(CALL, 0, 0, 0, BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump(JEQ_K, R0, 0, 0, Label::Pass);
    a.ldx(LDX_W, R2, R6, XDP_MD_RX_QUEUE_INDEX);
    a.ld_map(R1, xsk_map);
    a.op(MOV_K, R3, 0, 0, hit_fallback);
    a.op(CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP);
    a.op(EXIT, 0, 0, 0, 0);

    a.label(Label::Pass);
    a.op(MOV_K, R0, 0, 0, XDP_PASS);
    a.op(EXIT, 0, 0, 0, 0);
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::super::bpf::{create_xskmap, load_program, test_run};
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const XDP_DROP: u32 = 1;
    const PASS: u32 = XDP_PASS as u32;
    /// What a hit returns in these tests: the XSKMAP has no socket, so
    /// bpf_redirect_map returns the fallback, which here is XDP_DROP.
    const HIT: u32 = XDP_DROP;

    const VTEP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const VTEP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);

    fn privileged(test: &str) -> bool {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return true;
        }
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: loading BPF programs needs root (CI=true, so not skipping)");
        }
        eprintln!("{test}: skipped, needs root (BPF_PROG_LOAD, BPF_PROG_TEST_RUN)");
        false
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
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    /// An IPv4 packet: `options` (a multiple of 4 bytes) sets IHL.
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

    fn ipv6(dst: Ipv6Addr, next: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2).octets());
        p.extend_from_slice(&dst.octets());
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
                frame(
                    0x0806,
                    &[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 198, 18, 0, 2, 0, 0, 0, 0, 0, 0, 198, 18, 0, 1],
                ),
            ),
            ("ICMP echo to the VTEP", frame(0x0800, &ipv4(VTEP4, 1, 0x4000, &[], &[8, 0, 0, 0, 0, 1, 0, 1]))),
            ("TCP to the VTEP port 4789", frame(0x0800, &ipv4(VTEP4, 6, 0x4000, &[], &udp(4789, 4789, &[0; 12])))),
            ("ICMPv6 (ND) to the VTEP", frame(0x86dd, &ipv6(VTEP6, 58, &[135, 0, 0, 0, 0, 0, 0, 0]))),
            ("TCP over IPv6 to the VTEP", frame(0x86dd, &ipv6(VTEP6, 6, &udp(1, 4789, &[0; 12])))),
            (
                "IPv6 hop-by-hop header before UDP",
                frame(
                    0x86dd,
                    &ipv6(VTEP6, 0, &[[17, 0, 1, 4, 0, 0, 0, 0].as_slice(), &udp(1, 4789, &payload)].concat()),
                ),
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
}
