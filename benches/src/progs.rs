//! The harness's XDP programs: the generator in its two forms (run in
//! live-frames mode, or as the loop amplifier of [`crate::generator`]), and
//! the sink that counts and drops at the far end.

use crate::frame;
use rvs_dataplane::bpf::asm::*;
use rvs_dataplane::bpf::Insn;

/// Layout of the generator's settings (an array map of one [`CFG_SIZE`]-byte
/// value, written by rvs-bench): stop (non-zero: drop every frame), the
/// interval between frames (0: send at every chance) and the number of
/// flows.
pub const CFG_STOP: i16 = 0;
pub const CFG_INTERVAL: i16 = 8;
pub const CFG_FLOWS: i16 = 16;
pub const CFG_SIZE: u32 = 24;
/// Layout of the generator's state (a per-CPU array map of one
/// [`ST_SIZE`]-byte value, written by the program): frames sent, when the
/// next one is due, and when the first and the last frame of the run were
/// sent (0: none yet). Times are `bpf_ktime_get_ns` in 1/256 ns.
pub const ST_SENT: i16 = 0;
pub const ST_NEXT: i16 = 8;
pub const ST_FIRST: i16 = 16;
pub const ST_LAST: i16 = 24;
pub const ST_SIZE: u32 = 32;
/// Fixed-point shift of the generator's times.
pub const GEN_SHIFT: u32 = 8;
/// How far behind its schedule the generator may fall and catch up (a burst
/// of at most this much time's frames); beyond it, the deficit is dropped.
pub const GEN_SLACK_NS: i32 = 200_000;

/// The generator's maps, as the programs see them.
#[derive(Clone, Copy)]
pub struct GenMaps {
    pub config: i32,
    pub state: i32,
}

/// Each run of a generator program is one chance to send its frame. This
/// part, shared by both forms, decides: to `stop` when stopped, to `skip`
/// when pacing (a non-zero interval) and no frame is due by
/// `bpf_ktime_get_ns`, else to `send` after counting the frame and, with
/// more than one flow, rewriting it as flow `sent % flows`: source MAC,
/// source and destination IPv4 address and UDP source port change per flow,
/// and the IPv4 checksum stays valid because the two addresses move in
/// opposite directions (see [`frame`]).
fn pace(a: &mut Asm, maps: GenMaps) {
    a.mov(R6, R1);
    // One u32 key of 0 on the stack for both lookups.
    a.st_w(R10, -4, 0).mov(R2, R10).add_k(R2, -4).ld_map(R1, maps.config).call(FUNC_MAP_LOOKUP);
    a.jeq_k(R0, 0, "stop").mov(R8, R0);
    a.ldx_dw(R1, R8, CFG_STOP).jne_k(R1, 0, "stop");
    a.mov(R2, R10).add_k(R2, -4).ld_map(R1, maps.state).call(FUNC_MAP_LOOKUP);
    a.jeq_k(R0, 0, "stop").mov(R7, R0);
    // r9 = now
    a.call(FUNC_KTIME_GET_NS).lsh_k(R0, GEN_SHIFT as i32).mov(R9, R0);
    a.ldx_dw(R1, R8, CFG_INTERVAL).jeq_k(R1, 0, "count");
    a.ldx_dw(R2, R7, ST_NEXT).jgt(R2, R9, "skip");
    a.mov(R3, R9).add_k(R3, -(GEN_SLACK_NS << GEN_SHIFT)).jgt(R2, R3, "keep").mov(R2, R3);
    a.label("keep").add(R2, R1).stx_dw(R7, ST_NEXT, R2);
    a.label("count").ldx_dw(R1, R7, ST_FIRST).jne_k(R1, 0, "started").stx_dw(R7, ST_FIRST, R9);
    a.label("started").stx_dw(R7, ST_LAST, R9);
    a.ldx_dw(R1, R7, ST_SENT).mov(R2, R1).add_k(R2, 1).stx_dw(R7, ST_SENT, R2);
    a.ldx_dw(R2, R8, CFG_FLOWS).jle_k(R2, 1, "send");
    a.mod_x(R1, R2);
    // r2 = data, r3 = data_end; the rewritten fields end at byte 36.
    a.ldx_w(R2, R6, XDP_DATA).ldx_w(R3, R6, XDP_DATA_END).mov(R4, R2).add_k(R4, frame::FLOW_FIELDS_END as i32);
    a.jgt(R4, R3, "send");
    for (off, base, down) in frame::flow_fields() {
        if down {
            a.mov_k(R5, base as i32).sub(R5, R1);
        } else {
            a.mov(R5, R1).add_k(R5, base as i32);
        }
        a.stx_h(R2, off as i16, R5);
    }
    a.ja("send");
}

/// The live-frames generator: run by `BPF_PROG_TEST_RUN`, it sends its frame
/// out of the interface it is run on (XDP_TX) at each chance it takes.
pub fn live_generator(maps: GenMaps) -> Vec<Insn> {
    let mut a = Asm::default();
    pace(&mut a, maps);
    a.label("send").mov_k(R0, XDP_TX).exit();
    a.label("skip").label("stop").mov_k(R0, XDP_DROP).exit();
    a.finish()
}

/// The loop amplifier's sending end (on g1): a frame it sends goes to every
/// interface of `devmap` (g1 itself, so it circles again, and the port
/// toward the switch); one it skips only circles (XDP_TX back to g2); when
/// stopped, frames die here.
pub fn loop_generator(maps: GenMaps, devmap: i32) -> Vec<Insn> {
    let mut a = Asm::default();
    pace(&mut a, maps);
    a.label("send").ld_map(R1, devmap).mov_k(R2, 0).mov_k(R3, BPF_F_BROADCAST).call(FUNC_REDIRECT_MAP).exit();
    a.label("skip").mov_k(R0, XDP_TX).exit();
    a.label("stop").mov_k(R0, XDP_DROP).exit();
    a.finish()
}

/// Drops every frame (the live-frames probe).
pub fn drop_all() -> Vec<Insn> {
    let mut a = Asm::default();
    a.mov_k(R0, XDP_DROP).exit();
    a.finish()
}

/// The loop's far end (on g2): every frame goes straight back.
pub fn bounce() -> Vec<Insn> {
    let mut a = Asm::default();
    a.mov_k(R0, XDP_TX).exit();
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
