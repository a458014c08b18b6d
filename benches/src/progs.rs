//! The two XDP programs of the harness: the generator, run in live-frames
//! mode, and the sink that counts and drops at the far end.

use crate::asm::*;
use crate::frame;
use rvs_dataplane::port::afxdp::Insn;

/// Layout of the generator's state (an array map of one [`GEN_STATE`]-byte
/// value): frames sent, when the next one is due, the interval between
/// frames (an interval of 0 sends every frame), and when the first and the
/// last frame of the run were sent (0: none yet). Times are
/// `bpf_ktime_get_ns` in 1/256 ns.
pub const GEN_SENT: i16 = 0;
pub const GEN_NEXT: i16 = 8;
pub const GEN_INTERVAL: i16 = 16;
pub const GEN_FIRST: i16 = 24;
pub const GEN_LAST: i16 = 32;
pub const GEN_STATE: u32 = 40;
/// Fixed-point shift of the generator's times.
pub const GEN_SHIFT: u32 = 8;
/// How far behind its schedule the generator may fall and catch up (a burst
/// of at most this much time's frames); beyond it, the deficit is dropped.
pub const GEN_SLACK_NS: i32 = 200_000;

/// The generator: each run of the program is one chance to send its frame
/// (XDP_TX). Paced (a non-zero interval in the state), it sends only when a
/// frame is due by `bpf_ktime_get_ns` and drops the chance otherwise. With
/// `flows` > 1 it rewrites the frame as flow `sent % flows` first: source
/// MAC, source and destination IPv4 address and UDP source port change per
/// flow, and the IPv4 checksum stays valid because the two addresses move
/// in opposite directions (see [`frame`]).
pub fn generator(flows: u32, state_map: i32) -> Vec<Insn> {
    let mut a = Asm::default();
    a.mov(R6, R1);
    // One u32 key of 0 on the stack, then look the state up.
    a.st_w(R10, -4, 0).mov(R2, R10).add_k(R2, -4).ld_map(R1, state_map).call(FUNC_MAP_LOOKUP);
    a.jeq_k(R0, 0, "tx").mov(R7, R0);
    // r9 = now
    a.call(FUNC_KTIME_GET_NS).lsh_k(R0, GEN_SHIFT as i32).mov(R9, R0);
    a.ldx_dw(R8, R7, GEN_INTERVAL).jeq_k(R8, 0, "count");
    a.ldx_dw(R1, R7, GEN_NEXT).jgt(R1, R9, "drop");
    a.mov(R2, R9).add_k(R2, -(GEN_SLACK_NS << GEN_SHIFT)).jgt(R1, R2, "keep").mov(R1, R2);
    a.label("keep").add(R1, R8).stx_dw(R7, GEN_NEXT, R1);
    a.label("count").ldx_dw(R1, R7, GEN_FIRST).jne_k(R1, 0, "started").stx_dw(R7, GEN_FIRST, R9);
    a.label("started").stx_dw(R7, GEN_LAST, R9);
    a.ldx_dw(R1, R7, GEN_SENT).mov(R2, R1).add_k(R2, 1).stx_dw(R7, GEN_SENT, R2);
    if flows > 1 {
        a.mod_k(R1, flows as i32);
        // r2 = data, r3 = data_end; the rewritten fields end at byte 36.
        a.ldx_w(R2, R6, XDP_DATA).ldx_w(R3, R6, XDP_DATA_END).mov(R4, R2).add_k(R4, frame::FLOW_FIELDS_END as i32);
        a.jgt(R4, R3, "tx");
        for (off, base, down) in frame::flow_fields() {
            if down {
                a.mov_k(R5, base as i32).sub(R5, R1);
            } else {
                a.mov(R5, R1).add_k(R5, base as i32);
            }
            a.stx_h(R2, off as i16, R5);
        }
    }
    a.label("tx").mov_k(R0, XDP_TX).exit();
    a.label("drop").mov_k(R0, XDP_DROP).exit();
    a.finish()
}

/// The sink: counts IPv4 UDP frames to `udp_port` (at the offsets of an
/// untagged frame without IP options) in `count_map` (an array of one u64)
/// and drops them; every other frame (ARP, the hosts' own traffic) passes.
pub fn sink(udp_port: u16, count_map: i32) -> Vec<Insn> {
    let mut a = Asm::default();
    a.ldx_w(R2, R1, XDP_DATA).ldx_w(R3, R1, XDP_DATA_END).mov(R4, R2).add_k(R4, 38);
    a.jgt(R4, R3, "pass");
    // EtherType IPv4, protocol UDP, destination port (loads are little endian).
    a.ldx_h(R4, R2, 12).jne_k(R4, 0x0008, "pass");
    a.ldx_b(R4, R2, 23).jne_k(R4, 17, "pass");
    a.ldx_h(R4, R2, 36).jne_k(R4, udp_port.swap_bytes() as i32, "pass");
    a.st_w(R10, -4, 0).mov(R2, R10).add_k(R2, -4).ld_map(R1, count_map).call(FUNC_MAP_LOOKUP);
    a.jeq_k(R0, 0, "drop");
    a.mov_k(R1, 1).atomic_add_dw(R0, 0, R1);
    a.label("drop").mov_k(R0, XDP_DROP).exit();
    a.label("pass").mov_k(R0, XDP_PASS).exit();
    a.finish()
}
