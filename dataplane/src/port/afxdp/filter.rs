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
mod tests;
