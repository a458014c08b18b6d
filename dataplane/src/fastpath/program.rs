//! The executors' program: one program, built for either hook, that
//! carries known unicast in the kernel and hands everything else to rvs.
//!
//! - **`xdp`**: the port's XDP program; a hit leaves through a DEVMAP
//!   (`bpf_redirect_map`), a miss goes to the port's AF_XDP socket.
//! - **`tc`**: a tcx ingress program on a port without XDP, so that its
//!   host keeps GSO/TSO; a hit leaves as an skb (`bpf_redirect` to the
//!   egress device, VLAN tags as the kernel keeps them, in the skb's
//!   metadata), a miss is redirected into the port's miss device, where
//!   rvs reads it.
//! - **uplink**: an uplink's XDP program takes VXLAN frames of the
//!   tunnels in the VNI map apart and forwards the inner frame as if the
//!   tunnel port had received it; everything else goes on to the uplink's
//!   steering (to rvs if for a local VTEP, else to the host).
//!
//! Into a tunnel, either executor encapsulates toward the remote in the
//! destination's entry (IPv4 underlays: the outer headers from the outer
//! map, their lengths, IPv4 checksum and the UDP source port from the
//! inner flow's hash filled in as userspace does) and sends out of the
//! tunnel's uplink: `xdp` with `bpf_xdp_adjust_head`, `tc` with
//! `bpf_skb_adjust_room`, which keeps a GSO skb whole for the kernel to
//! cut into encapsulated segments.
//!
//! It follows the userspace pipeline's rules, and takes a frame only when
//! the pipeline's verdict could not differ; any doubt is a miss, and the
//! frame goes to userspace as it would without the executor. In C:
//!
//! ```text
//! uplink: if (!(untagged IPv4 UDP VXLAN, lengths exact, flags 0x08)) goto miss;
//!         ME = vnis[{daddr, dport, vni}]; if (!ME) goto miss; data += 50;
//! if (data + 14 > end || (xdp && end - data > MAX_FRAME)) goto miss;
//! in = ports[ME]; if (!in || !(in->flags & INGRESS) || in->bridge == NONE) goto miss;
//! if (uplink != !!(in->flags & TUNNEL)) goto miss;
//! if (tc && skb->vlan_present) {                   // the tag the kernel took off
//!     if (skb->vlan_proto != 0x8100) goto miss; tci = skb->vlan_tci; tagged = IN_META;
//! } else if (eth->type == 0x8100) {                // a tag in the frame
//!     if (data + 18 > end) goto miss; tci = ntohs(eth->tci); tagged = IN_FRAME;
//! } else if (eth->type == 0x88a8) goto miss;      // QinQ: userspace drops it
//! else tagged = 0;
//! if (tagged) {
//!     v = tci & 0xfff;
//!     if (v == 0) { vid = in->pvid; if (!vid) goto miss; }     // priority tag
//!     else if (in->mode == ACCESS) { if (v != in->pvid) goto miss; vid = v; }
//!     else { if (!bit(in->allowed, v)) goto miss; vid = v; }
//! } else { vid = in->pvid; if (!vid) goto miss; }
//! if (src is multicast) goto miss;
//! s = fdb[{src, vid, bridge}]; if (!s) goto miss;    // userspace learns it
//! if (s->port != ME) { if (!static) { delete s; forgotten[key] = 1; } goto miss; } // a move
//! if (uplink && outers[{ME, s->remote}]->daddr != outer saddr) goto miss;  // another remote
//! if (s->seen != clock[0]) s->seen = clock[0];      // rvsd's seconds
//! if (dst is multicast) goto miss;                 // flood in userspace
//! d = fdb[{dst, vid, bridge}]; if (!d || d->port == ME) goto miss;
//! out = ports[d->port]; if (!out || !(out->flags & EGRESS)) goto miss;
//! if (out->flags & TUNNEL) { if (uplink) goto miss; o = outers[{d->port, d->remote}]; if (!o) goto miss; }
//! if (out->mode == ACCESS) { if (out->pvid != vid) goto miss; etag = 0; }
//! else if (out->pvid == vid) etag = 0;
//! else { if (!bit(out->allowed, vid)) goto miss; etag = 1; }
//! if (o && (inner length after the edit > o->max_inner && !gso
//!           || tc && (etag || not IP))) goto miss;
//! if (!tc && TCP or UDP whose checksum field holds just the pseudo-header sum) goto miss;
//! if (uplink) bpf_xdp_adjust_head(ctx, 50);      // decided: decapsulated
//! edit the tag (keep, push, pop, or rewrite the VLAN keeping the priority);
//! if (o) encapsulate with o's headers;
//! count rx on ME and tx on d->port;
//! xdp, uplink: return bpf_redirect_map(&devs, d->port, 0); // a tunnel's: its uplink
//! tc:  skb->cb[0] = d->port + 1; skb->cb[1] = etag ? 0x10000 | etci : 0;
//!      return bpf_redirect(out->ifindex, 0);
//! miss: xdp: return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
//!       tc:  return bpf_redirect(MISS_DEVICE, 0);
//!       uplink: the uplink program's steering (port::afxdp::filter).
//! ```
//!
//! The `tc` program leaves its decision in `skb->cb[0..2]` (scratch words
//! no one else reads on ingress) because `BPF_PROG_TEST_RUN` returns them
//! while it cannot show a tag kept in the skb's metadata: the property
//! tests read them.

use std::os::fd::RawFd;

use super::maps::*;
use crate::bpf::asm::*;
use crate::bpf::Insn;
use crate::fdb::NO_REMOTE;
use crate::ids::PortId;
use crate::port::afxdp::filter;
use crate::port::MAX_FRAME;

/// The maps the programs read and write.
#[derive(Clone, Copy, Debug)]
pub struct Maps {
    /// Port configuration ([`PortEntry`] by port id).
    pub ports: RawFd,
    /// The MAC table ([`MacKey`] → [`MacValue`]).
    pub fdb: RawFd,
    /// Each port's device, by port id (a DEVMAP).
    pub devs: RawFd,
    /// Per-CPU [`KernelCounters`] by port id.
    pub counters: RawFd,
    /// rvsd's clock: its seconds since start, under key 0.
    pub clock: RawFd,
    /// The MACs forgotten on a move ([`MacKey`] → 1), for rvsd to write
    /// back (an LRU hash).
    pub forgotten: RawFd,
    /// Outer headers by tunnel port and remote ([`outer_key`] →
    /// [`OuterEntry`]).
    pub outers: RawFd,
    /// The tunnel of each local VTEP and VNI ([`vni_key`] → port id).
    pub vnis: RawFd,
}

/// Where the program runs, and where its misses go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// The port's XDP program; misses go to the AF_XDP socket of their
    /// receive queue in `xsks` (an XSKMAP).
    Xdp {
        /// The port's XSKMAP.
        xsks: RawFd,
    },
    /// A tcx ingress program; misses are redirected into the device
    /// `miss` (its ifindex), whose far end rvs reads.
    Tc {
        /// The port's miss device.
        miss: u32,
    },
    /// An uplink's XDP program: VXLAN frames of the tunnels the kernel
    /// takes are decapsulated and forwarded; the rest goes on to the
    /// uplink program's steering ([`crate::port::afxdp`]: to the AF_XDP
    /// socket of the queue in `xsks` if it is for a local VTEP in `vteps`,
    /// else to the host).
    Uplink {
        /// The uplink's XSKMAP.
        xsks: RawFd,
        /// The uplink's map of local VTEPs.
        vteps: RawFd,
    },
}

// The stack, below r10.
const KEY: i16 = -16; // MacKey, 12 bytes in 16 zeroed
const IDX: i16 = -20; // u32 key of the array maps
const VID: i16 = -32;
const TAGGED: i16 = -40; // 0, TAG_IN_FRAME or TAG_IN_META
const BRIDGE: i16 = -48;
const LEN: i16 = -56; // on the wire, as it came
const OUT: i16 = -64;
const MACS: i16 = -80; // the 12 address bytes while the head moves
const ETAG: i16 = -88; // leaves tagged
const TCI: i16 = -96; // as it came (0: untagged)
const ETCI: i16 = -104; // as it leaves (0: untagged)
const OUTIF: i16 = -112; // the egress device (tc)
const ME: i16 = -120; // the ingress port (an uplink's frames: their tunnel)
const REMOTE: i16 = -128; // the destination's remote VTEP
const OUTER_SRC: i16 = -136; // (uplink) the outer IPv4 source, as on the wire
const OUTER: i16 = -144; // (into a tunnel) the outer headers' map value
const TUNNEL_OUT: i16 = -152; // 1: into a tunnel
const HASH: i16 = -160; // the inner flow's hash

/// [`TAGGED`]: the tag is in the frame's bytes.
const TAG_IN_FRAME: i32 = 1;
/// [`TAGGED`]: the kernel took the tag off into the skb (tc).
const TAG_IN_META: i32 = 2;

/// A 16-bit load of a big-endian field reads it byte-swapped on x86.
const fn wire16(v: u16) -> i32 {
    u16::from_be(v) as i32
}

/// `if (data + len > data_end) goto to` (data in r7, data_end in r8).
fn need(a: &mut Asm, len: i32, to: &'static str) {
    a.mov(R2, R7).add_k(R2, len).jgt(R2, R8, to);
}

/// `r0 = map[*(u32 *)(r10 + IDX)]`, or `goto to` if absent.
fn lookup_idx(a: &mut Asm, map: RawFd, to: &'static str) {
    a.ld_map(R1, map).mov(R2, R10).add_k(R2, IDX as i32).call(FUNC_MAP_LOOKUP).jeq_k(R0, 0, to);
}

/// `r5 = bit vid (in r1, ≤ 4095) of the allowed set of the port entry in r9`.
fn allowed_bit(a: &mut Asm) {
    a.mov(R2, R1).rsh_k(R2, 3).mov(R5, R9).add(R5, R2).ldx_b(R5, R5, PORT_ALLOWED);
    a.mov(R2, R1).and_k(R2, 7).rsh(R5, R2).and_k(R5, 1);
}

/// Keeps the 12 address bytes at data on the stack.
fn save_macs(a: &mut Asm) {
    a.ldx_dw(R2, R7, 0).stx_dw(R10, MACS, R2).ldx_w(R2, R7, 8).stx_w(R10, MACS + 8, R2);
}

/// Writes them back at data.
fn restore_macs(a: &mut Asm) {
    a.ldx_dw(R2, R10, MACS).stx_dw(R7, 0, R2).ldx_w(R2, R10, MACS + 8).stx_w(R7, 8, R2);
}

/// `bpf_xdp_adjust_head(ctx, delta)`, then data and data_end again.
fn adjust_head(a: &mut Asm, delta: i32, failed: &'static str) {
    a.mov(R1, R6).mov_k(R2, delta).call(FUNC_XDP_ADJUST_HEAD).jne_k(R0, 0, failed);
    a.ldx_w(R7, R6, XDP_DATA).ldx_w(R8, R6, XDP_DATA_END);
}

/// `counters[*(u32 *)(r10 + IDX)].{packets, bytes} += 1, r9`.
fn count(a: &mut Asm, maps: &Maps, packets: i16, bytes: i16, skip: &'static str) {
    lookup_idx(a, maps.counters, skip);
    a.ldx_dw(R1, R0, packets).add_k(R1, 1).stx_dw(R0, packets, R1);
    a.ldx_dw(R1, R0, bytes).add(R1, R9).stx_dw(R0, bytes, R1);
}

/// (xdp) Sends to userspace a TCP or UDP frame whose checksum its sender
/// left to offload (the field holds only the pseudo-header sum): the
/// kernel loses that state on the way through XDP, and rvs's polling
/// threads complete it ([`crate::wire::checksum::complete_partial`]).
/// Keeps r6 to r9 and the stack; clobbers r0 to r5.
fn partial_checksum_misses(a: &mut Asm) {
    a.ldx_dw(R3, R10, TAGGED).lsh_k(R3, 2).add_k(R3, 14).mov(R4, R7).add(R4, R3); // r4 = L3
    a.ldx_h(R2, R4, -2).jeq_k(R2, wire16(0x0800), "csum_v4").jne_k(R2, wire16(0x86dd), "csum_ok");

    // IPv6 without extension headers: r0 = pseudo-header sum.
    a.mov(R2, R4).add_k(R2, 40).jgt(R2, R8, "miss");
    a.ldx_b(R5, R4, 6).jeq_k(R5, 6, "csum_v6_l4").jne_k(R5, 17, "csum_ok");
    a.label("csum_v6_l4");
    a.ldx_h(R3, R4, 4).be16(R3).mov(R0, R5).add(R0, R3);
    for i in 0..16 {
        a.ldx_h(R1, R4, 8 + 2 * i).be16(R1).add(R0, R1);
    }
    a.add_k(R4, 40).ja("csum_l4");

    // IPv4, not a fragment: r0 = pseudo-header sum, r4 = L4.
    a.label("csum_v4");
    a.mov(R2, R4).add_k(R2, 20).jgt(R2, R8, "miss");
    a.ldx_b(R2, R4, 0).mov(R3, R2).and_k(R3, 0xf0).jne_k(R3, 0x40, "csum_ok");
    a.and_k(R2, 0xf).lsh_k(R2, 2).jlt_k(R2, 20, "csum_ok"); // r2 = header length
    a.ldx_h(R3, R4, 6).be16(R3).and_k(R3, 0x3fff).jne_k(R3, 0, "csum_ok");
    a.ldx_b(R5, R4, 9).jeq_k(R5, 6, "csum_v4_l4").jne_k(R5, 17, "csum_ok");
    a.label("csum_v4_l4");
    a.ldx_h(R3, R4, 2).be16(R3).sub(R3, R2).mov(R0, R5).add(R0, R3);
    for i in 0..4 {
        a.ldx_h(R1, R4, 12 + 2 * i).be16(R1).add(R0, R1);
    }
    a.add(R4, R2);

    // The checksum field: TCP's at 16, UDP's at 6 (0: none, never partial).
    a.label("csum_l4");
    a.jeq_k(R5, 17, "csum_udp");
    a.mov(R2, R4).add_k(R2, 18).jgt(R2, R8, "miss").ldx_h(R1, R4, 16).ja("csum_cmp");
    a.label("csum_udp");
    a.mov(R2, R4).add_k(R2, 8).jgt(R2, R8, "miss").ldx_h(R1, R4, 6);
    a.label("csum_cmp");
    a.be16(R1).jeq_k(R1, 0, "csum_ok");
    for _ in 0..3 {
        a.mov(R2, R0).rsh_k(R2, 16).and_k(R0, 0xffff).add(R0, R2);
    }
    a.jeq(R1, R0, "miss");
    a.label("csum_ok");
}

/// (tc) `bpf_skb_vlan_push(skb, 0x8100, ETCI)`, or `goto aborted`.
fn vlan_push(a: &mut Asm) {
    a.mov(R1, R6).mov_k(R2, wire16(0x8100)).ldx_dw(R3, R10, ETCI).call(FUNC_SKB_VLAN_PUSH).jne_k(R0, 0, "aborted");
}

/// (tc) `bpf_skb_vlan_pop(skb)`, or `goto aborted`.
fn vlan_pop(a: &mut Asm) {
    a.mov(R1, R6).call(FUNC_SKB_VLAN_POP).jne_k(R0, 0, "aborted");
}

/// The program for port `me` at `hook` (for [`Hook::Uplink`], the
/// uplink's id: the tunnel a frame belongs to comes from its VNI).
pub fn program(hook: Hook, me: PortId, maps: &Maps) -> Vec<Insn> {
    let tc = matches!(hook, Hook::Tc { .. });
    let uplink = matches!(hook, Hook::Uplink { .. });
    // Where a failure after the frame was changed goes: an uplink frame
    // is decapsulated before its tag edit, and is no VXLAN frame any more.
    let late = if uplink { "aborted" } else { "miss" };
    let mut a = Asm::default();
    a.mov(R6, R1);
    reload(&mut a, tc);
    a.st_dw(R10, KEY, 0).st_dw(R10, KEY + 8, 0).st_dw(R10, TUNNEL_OUT, 0);
    if uplink {
        decap_prologue(&mut a, maps);
    } else {
        a.st_dw(R10, ME, i32::from(me.0));
        need(&mut a, 14, "miss");
    }
    if tc {
        // An skb of any size: GSO frames are cut to the MTU further on.
        a.ldx_w(R2, R6, SKB_LEN).stx_dw(R10, LEN, R2);
    } else {
        a.mov(R2, R8).sub(R2, R7).stx_dw(R10, LEN, R2).jgt_k(R2, MAX_FRAME as i32, "miss");
    }

    // The ingress port (an uplink's frames: a tunnel's).
    a.ldx_dw(R1, R10, ME).stx_w(R10, IDX, R1);
    lookup_idx(&mut a, maps.ports, "miss");
    a.mov(R9, R0);
    a.ldx_b(R1, R9, PORT_FLAGS).and_k(R1, i32::from(PORT_INGRESS | PORT_TUNNEL));
    let want = if uplink { PORT_INGRESS | PORT_TUNNEL } else { PORT_INGRESS };
    a.jne_k(R1, i32::from(want), "miss");
    a.ldx_h(R1, R9, PORT_BRIDGE).jeq_k(R1, i32::from(NO_BRIDGE), "miss").stx_dw(R10, BRIDGE, R1);
    a.ldx_b(R3, R9, PORT_MODE).ldx_h(R4, R9, PORT_PVID);

    // Its tag: r1 = the TCI.
    if tc {
        a.ldx_w(R1, R6, SKB_VLAN_PRESENT).jeq_k(R1, 0, "frame_tag");
        a.ldx_w(R1, R6, SKB_VLAN_PROTO).jne_k(R1, wire16(0x8100), "miss");
        a.ldx_dw(R2, R10, LEN).add_k(R2, 4).stx_dw(R10, LEN, R2);
        a.ldx_w(R1, R6, SKB_VLAN_TCI).st_dw(R10, TAGGED, TAG_IN_META).ja("tagged");
    }
    a.label("frame_tag");
    a.ldx_h(R1, R7, 12);
    a.jeq_k(R1, wire16(0x8100), "frame_tagged").jeq_k(R1, wire16(0x88a8), "miss");
    a.jeq_k(R4, 0, "miss").stx_dw(R10, VID, R4).st_dw(R10, TAGGED, 0).st_dw(R10, TCI, 0).ja("src");
    a.label("frame_tagged");
    need(&mut a, 18, "miss");
    a.ldx_h(R1, R7, 14).be16(R1).st_dw(R10, TAGGED, TAG_IN_FRAME);

    // Its VLAN.
    a.label("tagged");
    a.stx_dw(R10, TCI, R1).and_k(R1, 0xfff);
    a.jne_k(R1, 0, "tagged_vid");
    a.jeq_k(R4, 0, "miss").stx_dw(R10, VID, R4).ja("src");
    a.label("tagged_vid");
    a.jne_k(R3, i32::from(MODE_ACCESS), "trunk_in");
    a.jne(R1, R4, "miss").stx_dw(R10, VID, R1).ja("src");
    a.label("trunk_in");
    allowed_bit(&mut a);
    a.jeq_k(R5, 0, "miss").stx_dw(R10, VID, R1);

    // The source: known on this port (from this remote), or userspace
    // learns it.
    a.label("src");
    a.ldx_b(R1, R7, 6).and_k(R1, 1).jne_k(R1, 0, "miss");
    a.ldx_w(R1, R7, 6).stx_w(R10, KEY, R1).ldx_h(R1, R7, 10).stx_h(R10, KEY + 4, R1);
    a.ldx_dw(R1, R10, VID).stx_h(R10, KEY + KEY_VID, R1);
    a.ldx_dw(R1, R10, BRIDGE).stx_h(R10, KEY + KEY_BRIDGE, R1);
    a.ld_map(R1, maps.fdb).mov(R2, R10).add_k(R2, KEY as i32).call(FUNC_MAP_LOOKUP).jeq_k(R0, 0, "miss");
    a.ldx_h(R1, R0, VAL_PORT).ldx_dw(R2, R10, ME).jne(R1, R2, "moved");
    a.mov(R9, R0);
    if uplink {
        // Behind the remote the frame came from, or a move between
        // remotes that userspace learns.
        a.ldx_h(R1, R9, VAL_REMOTE).jeq_k(R1, i32::from(NO_REMOTE), "miss");
        a.ldx_dw(R2, R10, ME).lsh_k(R2, 16).or(R2, R1).stx_w(R10, IDX, R2);
        lookup_idx(&mut a, maps.outers, "miss");
        a.ldx_w(R1, R0, OUTER_REMOTE_IP).ldx_dw(R2, R10, OUTER_SRC).jne(R1, R2, "miss");
    }
    // Stamped with rvsd's clock, which it sets: cheaper than a clock read.
    a.st_w(R10, IDX, 0);
    lookup_idx(&mut a, maps.clock, "dst");
    a.ldx_w(R0, R0, 0).ldx_w(R1, R9, VAL_SEEN).jeq(R1, R0, "dst").stx_w(R9, VAL_SEEN, R0);

    // The destination: a known MAC on another port the kernel sends to.
    a.label("dst");
    a.ldx_b(R1, R7, 0).and_k(R1, 1).jne_k(R1, 0, "miss");
    a.ldx_w(R1, R7, 0).stx_w(R10, KEY, R1).ldx_h(R1, R7, 4).stx_h(R10, KEY + 4, R1);
    a.ld_map(R1, maps.fdb).mov(R2, R10).add_k(R2, KEY as i32).call(FUNC_MAP_LOOKUP).jeq_k(R0, 0, "miss");
    a.ldx_h(R1, R0, VAL_REMOTE).stx_dw(R10, REMOTE, R1);
    a.ldx_h(R1, R0, VAL_PORT).ldx_dw(R2, R10, ME).jeq(R1, R2, "miss").stx_dw(R10, OUT, R1).stx_w(R10, IDX, R1);
    lookup_idx(&mut a, maps.ports, "miss");
    a.mov(R9, R0);
    a.ldx_b(R1, R9, PORT_FLAGS).and_k(R1, i32::from(PORT_EGRESS)).jeq_k(R1, 0, "miss");
    a.ldx_w(R1, R9, PORT_IFINDEX).stx_dw(R10, OUTIF, R1);
    a.ldx_b(R1, R9, PORT_FLAGS).and_k(R1, i32::from(PORT_TUNNEL)).jeq_k(R1, 0, "vlan_out");
    if uplink {
        a.ja("miss"); // from one tunnel into another: userspace
    } else {
        // Into a tunnel: toward a remote whose outer headers the kernel has.
        a.ldx_dw(R1, R10, OUT).lsh_k(R1, 16).ldx_dw(R2, R10, REMOTE).or(R1, R2).stx_w(R10, IDX, R1);
        lookup_idx(&mut a, maps.outers, "miss");
        a.stx_dw(R10, OUTER, R0).st_dw(R10, TUNNEL_OUT, 1);
    }
    a.label("vlan_out");
    a.ldx_dw(R1, R10, VID).and_k(R1, 0xfff).ldx_h(R4, R9, PORT_PVID).ldx_b(R3, R9, PORT_MODE);
    a.jne_k(R3, i32::from(MODE_ACCESS), "trunk_out");
    a.jne(R4, R1, "miss").mov_k(R5, 0).ja("etag");
    a.label("trunk_out");
    a.jeq(R4, R1, "native_out");
    allowed_bit(&mut a);
    a.jeq_k(R5, 0, "miss").mov_k(R5, 1).ja("etag");
    a.label("native_out");
    a.mov_k(R5, 0);

    // The tag it leaves with: the VLAN, the priority kept.
    a.label("etag");
    a.stx_dw(R10, ETAG, R5).st_dw(R10, ETCI, 0).jeq_k(R5, 0, "etci");
    a.ldx_dw(R2, R10, TCI).and_k(R2, 0xf000).or(R2, R1).stx_dw(R10, ETCI, R2);
    a.label("etci");
    if !uplink {
        tunnel_checks(&mut a, tc);
    }
    if !tc {
        partial_checksum_misses(&mut a);
    }
    if uplink {
        // Decided: the outer headers go.
        adjust_head(&mut a, OUTER_LEN as i32, "aborted");
        need(&mut a, 14, "aborted");
    }

    // The tag edit.
    a.ldx_dw(R5, R10, ETAG).ldx_dw(R2, R10, TAGGED).jeq_k(R2, 0, "untagged_in");
    a.jeq_k(R5, 0, "pop");
    if tc {
        a.jeq_k(R2, TAG_IN_META, "meta_retag");
    }
    need(&mut a, 18, late);
    a.ldx_dw(R2, R10, ETCI).be16(R2).stx_h(R7, 14, R2).ja("edited");
    a.label("pop");
    if tc {
        vlan_pop(&mut a);
    } else {
        save_macs(&mut a);
        adjust_head(&mut a, 4, late);
        need(&mut a, 14, "aborted");
        restore_macs(&mut a);
    }
    a.ja("edited");
    if tc {
        a.label("meta_retag");
        a.ldx_dw(R2, R10, TCI).ldx_dw(R3, R10, ETCI).jeq(R2, R3, "edited");
        vlan_pop(&mut a);
        a.ja("push");
    }
    a.label("untagged_in");
    a.jeq_k(R5, 0, "edited");
    if tc {
        a.label("push");
        vlan_push(&mut a);
    } else {
        save_macs(&mut a);
        adjust_head(&mut a, -4, late);
        need(&mut a, 18, "aborted");
        restore_macs(&mut a);
        a.st_h(R7, 12, wire16(0x8100));
        a.ldx_dw(R1, R10, ETCI).be16(R1).stx_h(R7, 14, R1);
    }
    a.label("edited");
    if !uplink {
        a.ldx_dw(R1, R10, TUNNEL_OUT).jeq_k(R1, 0, "out");
        encap(&mut a, tc);
    }

    // Counted (tx: the length on the wire after the edit, the inner
    // frame's for a tunnel), then sent.
    a.label("out");
    a.ldx_dw(R9, R10, LEN).ldx_dw(R1, R10, ME).stx_w(R10, IDX, R1);
    count(&mut a, maps, CNT_RX_PACKETS, CNT_RX_BYTES, "counted_rx");
    a.label("counted_rx");
    a.ldx_dw(R2, R10, TAGGED).jeq_k(R2, 0, "tx_len").add_k(R9, -4);
    a.label("tx_len");
    a.ldx_dw(R2, R10, ETAG).lsh_k(R2, 2).add(R9, R2);
    a.ldx_dw(R1, R10, OUT).stx_w(R10, IDX, R1);
    count(&mut a, maps, CNT_TX_PACKETS, CNT_TX_BYTES, "counted_tx");
    a.label("counted_tx");
    match hook {
        Hook::Xdp { .. } | Hook::Uplink { .. } => {
            a.ldx_dw(R2, R10, OUT).ld_map(R1, maps.devs).mov_k(R3, 0).call(FUNC_REDIRECT_MAP).exit();
        }
        Hook::Tc { .. } => {
            a.ldx_dw(R1, R10, OUT).add_k(R1, 1).stx_w(R6, SKB_CB, R1);
            a.ldx_dw(R1, R10, ETAG).lsh_k(R1, 16).ldx_dw(R2, R10, ETCI).or(R1, R2).stx_w(R6, SKB_CB + 4, R1);
            a.ldx_dw(R1, R10, OUTIF).mov_k(R2, 0).call(FUNC_REDIRECT).exit();
        }
    }

    // A learned source seen on another port has moved: the kernel forgets
    // it at once, so frames to it reach rvs (which learns the move and
    // mirrors it again) instead of its old port.
    a.label("moved");
    a.ldx_h(R1, R0, VAL_FLAGS).and_k(R1, i32::from(MAC_STATIC)).jne_k(R1, 0, "miss");
    a.ld_map(R1, maps.fdb).mov(R2, R10).add_k(R2, KEY as i32).call(FUNC_MAP_DELETE);
    a.st_w(R10, IDX, 1).ld_map(R1, maps.forgotten).mov(R2, R10).add_k(R2, KEY as i32);
    a.mov(R3, R10).add_k(R3, IDX as i32).mov_k(R4, 0).call(FUNC_MAP_UPDATE);
    a.label("miss");
    match hook {
        Hook::Xdp { xsks } => {
            a.ldx_w(R2, R6, XDP_RX_QUEUE_INDEX).ld_map(R1, xsks).mov_k(R3, XDP_PASS).call(FUNC_REDIRECT_MAP).exit();
            a.label("aborted");
            a.mov_k(R0, 0).exit();
        }
        Hook::Uplink { xsks, vteps } => {
            // The frame as it came: the uplink program's steering.
            filter::emit_uplink(&mut a, xsks, vteps, XDP_PASS);
            a.label("aborted");
            a.mov_k(R0, 0).exit();
        }
        Hook::Tc { miss } => {
            a.mov_k(R1, miss as i32).mov_k(R2, 0).call(FUNC_REDIRECT).exit();
            a.label("aborted");
            a.mov_k(R0, TC_ACT_SHOT).exit();
        }
    }
    a.finish()
}

/// r7 = data, r8 = data_end, from the context in r6.
fn reload(a: &mut Asm, tc: bool) {
    if tc {
        a.ldx_w(R7, R6, SKB_DATA).ldx_w(R8, R6, SKB_DATA_END);
    } else {
        a.ldx_w(R7, R6, XDP_DATA).ldx_w(R8, R6, XDP_DATA_END);
    }
}

/// (uplink) Takes a VXLAN frame apart as userspace would
/// ([`crate::pipeline::decap`]), for the tunnels the kernel decapsulates
/// for: untagged IPv4 without options or fragmentation, UDP to a local
/// VTEP and VNI in the VNI map, exactly the I flag, lengths that agree
/// with the frame's (no padding). Leaves the tunnel in ME, the outer
/// source in OUTER_SRC, and r7 at the inner frame; anything else misses.
fn decap_prologue(a: &mut Asm, maps: &Maps) {
    let (ip, udp, vx) = (14, 14 + 20, 14 + 20 + 8);
    need(a, OUTER_LEN as i32 + 14, "miss");
    a.ldx_h(R1, R7, 12).jne_k(R1, wire16(0x0800), "miss");
    a.ldx_b(R1, R7, ip).jne_k(R1, 0x45, "miss");
    a.ldx_h(R1, R7, ip + 6).and_k(R1, wire16(0x3fff)).jne_k(R1, 0, "miss");
    a.ldx_b(R1, R7, ip + 9).jne_k(R1, 17, "miss");
    a.mov(R2, R8).sub(R2, R7).add_k(R2, -14);
    a.ldx_h(R1, R7, ip + 2).be16(R1).jne(R1, R2, "miss");
    a.add_k(R2, -20).ldx_h(R1, R7, udp + 4).be16(R1).jne(R1, R2, "miss");
    a.ldx_b(R1, R7, vx).jne_k(R1, 0x08, "miss");
    a.ldx_w(R1, R7, ip + 16).stx_w(R10, KEY, R1);
    a.ldx_h(R1, R7, udp + 2).stx_h(R10, KEY + VNI_KEY_PORT, R1);
    a.ldx_w(R1, R7, vx + 4).and_k(R1, 0x00ff_ffff).stx_w(R10, KEY + VNI_KEY_VNI, R1);
    a.ld_map(R1, maps.vnis).mov(R2, R10).add_k(R2, KEY as i32).call(FUNC_MAP_LOOKUP).jeq_k(R0, 0, "miss");
    a.ldx_w(R1, R0, 0).stx_dw(R10, ME, R1);
    a.ldx_w(R1, R7, ip + 12).stx_dw(R10, OUTER_SRC, R1);
    a.st_dw(R10, KEY, 0).st_dw(R10, KEY + 8, 0);
    a.add_k(R7, OUTER_LEN as i32);
}

/// Into a tunnel (TUNNEL_OUT set): misses what the kernel cannot
/// encapsulate as userspace would. The inner frame, tag edit done, must
/// fit the uplink (`TunnelMtu` in userspace; a GSO skb is cut to fit);
/// `tc` encapsulates only IP skbs (`bpf_skb_adjust_room`'s rule) and
/// cannot leave a tag in the inner frame (a pushed tag goes into the
/// skb's metadata, which the outer frame would carry).
fn tunnel_checks(a: &mut Asm, tc: bool) {
    a.ldx_dw(R1, R10, TUNNEL_OUT).jeq_k(R1, 0, "tunnel_ok");
    if tc {
        a.ldx_dw(R1, R10, ETAG).jne_k(R1, 0, "miss");
        a.ldx_h(R1, R7, 12).ldx_dw(R2, R10, TAGGED).jne_k(R2, TAG_IN_FRAME, "inner_type");
        a.ldx_h(R1, R7, 16);
        a.label("inner_type");
        a.jeq_k(R1, wire16(0x0800), "inner_ip").jne_k(R1, wire16(0x86dd), "miss");
        a.label("inner_ip");
        a.ldx_w(R1, R6, SKB_GSO_SIZE).jne_k(R1, 0, "tunnel_ok");
    }
    // r1 = the inner frame's length after the edit.
    a.ldx_dw(R1, R10, LEN).ldx_dw(R2, R10, TAGGED).jeq_k(R2, 0, "inner_len").add_k(R1, -4);
    a.label("inner_len");
    a.ldx_dw(R2, R10, ETAG).lsh_k(R2, 2).add(R1, R2);
    a.ldx_dw(R3, R10, OUTER).ldx_w(R2, R3, OUTER_MAX_INNER).jgt(R1, R2, "miss");
    a.label("tunnel_ok");
}

/// `HASH = vxlan::flow_hash(frame)` over r7..r8 (at least 14 bytes): the
/// same bytes in the same order, so a flow keeps its UDP source port
/// whichever path carries it. FNV-1a: r0 the hash, r4 the prime.
fn flow_hash(a: &mut Asm) {
    fn mix(a: &mut Asm, base: u8, offs: std::ops::Range<i16>) {
        for i in offs {
            a.ldx_b(R1, base, i).xor(R0, R1).mul(R0, R4);
        }
    }
    a.ld_imm64(R0, crate::fnv::OFFSET).ld_imm64(R4, crate::fnv::PRIME);
    mix(a, R7, 0..14);
    a.mov_k(R3, 0).mov(R2, R7).add_k(R2, 14).ldx_h(R1, R7, 12);
    a.jne_k(R1, wire16(0x8100), "h_l3");
    a.mov(R5, R7).add_k(R5, 18).jgt(R5, R8, "h_proto");
    a.ldx_h(R1, R7, 16).add_k(R2, 4);
    a.label("h_l3");
    a.jeq_k(R1, wire16(0x0800), "h_v4").jne_k(R1, wire16(0x86dd), "h_proto");
    a.mov(R5, R2).add_k(R5, 40).jgt(R5, R8, "h_proto");
    mix(a, R2, 8..40);
    a.ldx_b(R3, R2, 6).add_k(R2, 40).ja("h_proto");
    a.label("h_v4");
    a.mov(R5, R2).add_k(R5, 20).jgt(R5, R8, "h_proto");
    mix(a, R2, 12..20);
    a.ldx_h(R1, R2, 6).and_k(R1, wire16(0x3fff)).jne_k(R1, 0, "h_proto");
    a.ldx_b(R3, R2, 9).ldx_b(R1, R2, 0).and_k(R1, 0xf).lsh_k(R1, 2).add(R2, R1);
    // The protocol (0 where there is none), then TCP's or UDP's ports.
    a.label("h_proto");
    a.xor(R0, R3).mul(R0, R4);
    a.jeq_k(R3, 6, "h_ports").jne_k(R3, 17, "h_done");
    a.label("h_ports");
    a.mov(R5, R2).add_k(R5, 4).jgt(R5, R8, "h_done");
    mix(a, R2, 0..4);
    a.label("h_done");
    a.mov(R1, R0).rsh_k(R1, 32).xor(R0, R1).lsh_k(R0, 32).rsh_k(R0, 32).stx_dw(R10, HASH, R0);
}

/// Bytes of the inner frame the hash may read, made linear first (tc).
const HASHED: i32 = 18 + 60 + 4;

/// (TUNNEL_OUT) Puts the outer headers toward the remote (OUTER) in front
/// of the edited inner frame and fills in its lengths, the IPv4 checksum
/// and the UDP source port from the inner flow's hash, as
/// [`crate::wire::vxlan::OuterTemplate::encap`] does.
fn encap(a: &mut Asm, tc: bool) {
    const BPF_ADJ_ROOM_MAC: i32 = 1;
    // IPv4 + UDP + Ethernet (`ETH_P_TEB`) headers, the inner Ethernet
    // header 14 bytes: the kernel can then cut a GSO skb into segments
    // each with their own outer headers, as it does for its own vxlan.
    const ENCAP_FLAGS: u64 = 2 | 16 | 64 | (14 << 56);
    if tc {
        // Its headers linear, so the hash reads what userspace would.
        a.ldx_w(R2, R6, SKB_LEN).jle_k(R2, HASHED, "pull").mov_k(R2, HASHED);
        a.label("pull");
        reload(a, tc);
        a.mov(R1, R8).sub(R1, R7).jge(R1, R2, "pulled");
        a.mov(R1, R6).call(FUNC_SKB_PULL_DATA).jne_k(R0, 0, "aborted");
        a.label("pulled");
    }
    reload(a, tc);
    need(a, 14, "aborted");
    flow_hash(a);
    if tc {
        a.mov(R1, R6).mov_k(R2, OUTER_LEN as i32).mov_k(R3, BPF_ADJ_ROOM_MAC).ld_imm64(R4, ENCAP_FLAGS);
        a.call(FUNC_SKB_ADJUST_ROOM).jne_k(R0, 0, "aborted");
        reload(a, tc);
        need(a, OUTER_LEN as i32 + 14, "aborted");
        // The inner Ethernet header, still in front: after the new room.
        a.ldx_dw(R1, R7, 0).stx_dw(R7, OUTER_LEN as i16, R1);
        a.ldx_w(R1, R7, 8).stx_w(R7, OUTER_LEN as i16 + 8, R1);
        a.ldx_h(R1, R7, 12).stx_h(R7, OUTER_LEN as i16 + 12, R1);
        a.ldx_w(R9, R6, SKB_LEN).add_k(R9, -(OUTER_LEN as i32));
    } else {
        a.mov(R9, R8).sub(R9, R7);
        adjust_head(a, -(OUTER_LEN as i32), "aborted");
        need(a, OUTER_LEN as i32, "aborted");
    }
    // r9 = the inner frame's length; the headers from the map value.
    a.ldx_dw(R3, R10, OUTER);
    for i in (0..48).step_by(8) {
        a.ldx_dw(R1, R3, i).stx_dw(R7, i, R1);
    }
    a.ldx_h(R1, R3, 48).stx_h(R7, 48, R1);
    // IPv4 total length and checksum.
    a.mov(R1, R9).add_k(R1, 20 + 8 + 8).and_k(R1, 0xffff);
    a.ldx_w(R2, R3, OUTER_SUM).add(R2, R1);
    for _ in 0..2 {
        a.mov(R4, R2).rsh_k(R4, 16).and_k(R2, 0xffff).add(R2, R4);
    }
    a.xor_k(R2, 0xffff).be16(R2).stx_h(R7, 14 + 10, R2);
    a.be16(R1).stx_h(R7, 14 + 2, R1);
    // UDP length and source port.
    a.mov(R1, R9).add_k(R1, 8 + 8).be16(R1).stx_h(R7, 14 + 20 + 4, R1);
    a.ldx_dw(R1, R10, HASH).and_k(R1, 0x3fff).add_k(R1, 49152).be16(R1).stx_h(R7, 14 + 20, R1);
}
