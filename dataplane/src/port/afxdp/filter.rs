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

use crate::bpf::asm::*;
use crate::bpf::{
    name16, owned, sys_bpf, Insn, MapCreateAttr, MapElemAttr, BPF_MAP_CREATE, BPF_MAP_DELETE_ELEM, BPF_MAP_TYPE_HASH,
    BPF_MAP_UPDATE_ELEM,
};

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

/// `if (data + len > data_end) goto pass` with data in r7, data_end in r8.
fn need(a: &mut Asm, len: i32) {
    a.mov(R2, R7).add_k(R2, len).jgt(R2, R8, "pass");
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
    let mut a = Asm::default();
    a.mov(R6, R1); // r6 = ctx
    emit_uplink(&mut a, xsk_map, vtep_map, hit_fallback);
    a.finish()
}

/// The uplink program's body, with the context in r6: what the kernel
/// executors' uplink program ([`crate::fastpath::program`]) does with the
/// frames it does not decapsulate itself.
pub(crate) fn emit_uplink(a: &mut Asm, xsk_map: RawFd, vtep_map: RawFd, hit_fallback: i32) {
    a.ldx_w(R7, R6, XDP_DATA).ldx_w(R8, R6, XDP_DATA_END);
    // The key (20 bytes) lies in 24 zeroed bytes: the helper reads only
    // initialised stack, and the hash compares every byte.
    a.st_dw(R10, KEY, 0).st_dw(R10, KEY + 8, 0).st_dw(R10, KEY + 16, 0);

    // Ethernet, at most one 802.1Q tag.
    need(a, ETH_HLEN as i32);
    a.ldx_h(R4, R7, 12); // r4 = EtherType
    a.jne_k(R4, ETH_P_8021Q_LE, "l3");
    need(a, ETH_HLEN as i32 + VLAN_HLEN);
    a.add_k(R7, VLAN_HLEN); // r7 = data + 4: the inner type is at r7 + 12 again
    a.ldx_h(R4, R7, 12);
    a.label("l3");
    a.jeq_k(R4, ETH_P_IP_LE, "ipv4");
    a.jne_k(R4, ETH_P_IPV6_LE, "pass");

    // IPv6 + UDP.
    let ip = ETH_HLEN;
    let udp = ip + IPV6_HLEN;
    need(a, (udp + UDP_HLEN) as i32);
    a.ldx_b(R4, R7, ip).and_k(R4, 0xf0).jne_k(R4, 0x60, "pass"); // version
    a.ldx_b(R4, R7, ip + 6).jne_k(R4, IPPROTO_UDP, "pass"); // next header
    a.ldx_h(R4, R7, udp + 2).stx_h(R10, KEY, R4); // UDP destination port, wire order kept
    a.st_h(R10, KEY + 2, libc::AF_INET6);
    for i in 0..4 {
        a.ldx_w(R4, R7, ip + 24 + 4 * i).stx_w(R10, KEY + 4 + 4 * i, R4); // destination address
    }
    a.ja("lookup");

    // IPv4 + UDP.
    a.label("ipv4");
    let udp = ip + IPV4_HLEN;
    need(a, (udp + UDP_HLEN) as i32);
    a.ldx_b(R4, R7, ip).jne_k(R4, 0x45, "pass"); // version | IHL
    a.ldx_h(R4, R7, ip + 6).and_k(R4, IP_MF_OFFSET_LE).jne_k(R4, 0, "pass"); // a fragment
    a.ldx_b(R4, R7, ip + 9).jne_k(R4, IPPROTO_UDP, "pass"); // protocol
    a.ldx_h(R4, R7, udp + 2).stx_h(R10, KEY, R4);
    a.st_h(R10, KEY + 2, libc::AF_INET);
    a.ldx_w(R4, R7, ip + 16).stx_w(R10, KEY + 4, R4); // destination address

    // Lookup, then redirect to the queue's socket.
    a.label("lookup");
    a.mov(R2, R10).add_k(R2, KEY as i32);
    a.ld_map(R1, vtep_map).call(FUNC_MAP_LOOKUP);
    a.jeq_k(R0, 0, "pass");
    a.ldx_w(R2, R6, XDP_RX_QUEUE_INDEX);
    a.ld_map(R1, xsk_map).mov_k(R3, hit_fallback).call(FUNC_REDIRECT_MAP).exit();

    a.label("pass");
    a.mov_k(R0, XDP_PASS).exit();
}

#[cfg(test)]
mod tests;
