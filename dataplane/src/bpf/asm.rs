//! A small eBPF assembler: the instructions rvs's programs use, written
//! as method calls (`a.ldx_h(R4, R7, 12).jne_k(R4, ETH_P_8021Q, "l3")`),
//! with forward and backward jumps to named labels resolved by
//! [`Asm::finish`].

use super::{Insn, PSEUDO_MAP_FD};

/// R0: helpers' return value and the program's.
pub const R0: u8 = 0;
/// R1: the context on entry; first helper argument.
pub const R1: u8 = 1;
/// R2: second helper argument.
pub const R2: u8 = 2;
/// R3: third helper argument.
pub const R3: u8 = 3;
/// R4: fourth helper argument.
pub const R4: u8 = 4;
/// R5: fifth helper argument.
pub const R5: u8 = 5;
/// R6: kept across helper calls.
pub const R6: u8 = 6;
/// R7: kept across helper calls.
pub const R7: u8 = 7;
/// R8: kept across helper calls.
pub const R8: u8 = 8;
/// R9: kept across helper calls.
pub const R9: u8 = 9;
/// R10: the frame pointer (read only); the stack lies below it.
pub const R10: u8 = 10;

/// Offset of `data` in `struct xdp_md`.
pub const XDP_DATA: i16 = 0;
/// Offset of `data_end` in `struct xdp_md`.
pub const XDP_DATA_END: i16 = 4;
/// Offset of `rx_queue_index` in `struct xdp_md`.
pub const XDP_RX_QUEUE_INDEX: i16 = 16;

/// Offset of `len` in `struct __sk_buff`.
pub const SKB_LEN: i16 = 0;
/// Offset of `vlan_present` in `struct __sk_buff`.
pub const SKB_VLAN_PRESENT: i16 = 20;
/// Offset of `vlan_tci` in `struct __sk_buff` (host order).
pub const SKB_VLAN_TCI: i16 = 24;
/// Offset of `vlan_proto` in `struct __sk_buff` (network order).
pub const SKB_VLAN_PROTO: i16 = 28;
/// Offset of `cb[0]` in `struct __sk_buff` (five u32 scratch words).
pub const SKB_CB: i16 = 48;
/// Offset of `data` in `struct __sk_buff`.
pub const SKB_DATA: i16 = 76;
/// Offset of `data_end` in `struct __sk_buff`.
pub const SKB_DATA_END: i16 = 80;
/// `__sk_buff.gso_size` (0: not a GSO skb).
pub const SKB_GSO_SIZE: i16 = 176;

/// TC action: drop the frame.
pub const TC_ACT_SHOT: i32 = 2;
/// TC action: to where `bpf_redirect` pointed.
pub const TC_ACT_REDIRECT: i32 = 7;

/// XDP action: drop the frame.
pub const XDP_DROP: i32 = 1;
/// XDP action: on to the kernel's stack.
pub const XDP_PASS: i32 = 2;
/// XDP action: back out of the interface it came in on.
pub const XDP_TX: i32 = 3;
/// XDP action: to where `bpf_redirect_map` pointed.
pub const XDP_REDIRECT: i32 = 4;

/// Helper `bpf_map_lookup_elem`.
pub const FUNC_MAP_LOOKUP: i32 = 1;
/// Helper `bpf_map_update_elem`.
pub const FUNC_MAP_UPDATE: i32 = 2;
/// Helper `bpf_map_delete_elem`.
pub const FUNC_MAP_DELETE: i32 = 3;
/// Helper `bpf_ktime_get_ns`.
pub const FUNC_KTIME_GET_NS: i32 = 5;
/// Helper `bpf_skb_vlan_push`.
pub const FUNC_SKB_VLAN_PUSH: i32 = 18;
/// Helper `bpf_skb_vlan_pop`.
pub const FUNC_SKB_VLAN_POP: i32 = 19;
/// Helper `bpf_redirect`.
pub const FUNC_REDIRECT: i32 = 23;
/// Helper `bpf_xdp_adjust_head`.
pub const FUNC_XDP_ADJUST_HEAD: i32 = 44;
/// `bpf_skb_pull_data(skb, len)`: makes the first `len` bytes linear.
pub const FUNC_SKB_PULL_DATA: i32 = 39;
/// `bpf_skb_adjust_room(skb, len_diff, mode, flags)`.
pub const FUNC_SKB_ADJUST_ROOM: i32 = 50;
/// Helper `bpf_redirect_map`.
pub const FUNC_REDIRECT_MAP: i32 = 51;
/// `bpf_redirect_map` flag: send a copy to every device in the map.
pub const BPF_F_BROADCAST: i32 = 1 << 3;

/// A program being written; [`finish`](Asm::finish) resolves the jumps.
#[derive(Default)]
pub struct Asm {
    insns: Vec<(u8, u8, u8, i16, i32)>,
    labels: Vec<(&'static str, usize)>,
    jumps: Vec<(usize, &'static str)>,
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) -> &mut Self {
        self.insns.push((code, dst, src, off, imm));
        self
    }
    /// `dst = *(u32 *)(src + off)`
    pub fn ldx_w(&mut self, dst: u8, src: u8, off: i16) -> &mut Self {
        self.op(0x61, dst, src, off, 0)
    }
    /// `dst = *(u16 *)(src + off)`
    pub fn ldx_h(&mut self, dst: u8, src: u8, off: i16) -> &mut Self {
        self.op(0x69, dst, src, off, 0)
    }
    /// `dst = *(u64 *)(src + off)`
    pub fn ldx_dw(&mut self, dst: u8, src: u8, off: i16) -> &mut Self {
        self.op(0x79, dst, src, off, 0)
    }
    /// `dst = *(u8 *)(src + off)`
    pub fn ldx_b(&mut self, dst: u8, src: u8, off: i16) -> &mut Self {
        self.op(0x71, dst, src, off, 0)
    }
    /// `*(u32 *)(dst + off) = src`
    pub fn stx_w(&mut self, dst: u8, off: i16, src: u8) -> &mut Self {
        self.op(0x63, dst, src, off, 0)
    }
    /// `*(u16 *)(dst + off) = imm`
    pub fn st_h(&mut self, dst: u8, off: i16, imm: i32) -> &mut Self {
        self.op(0x6a, dst, 0, off, imm)
    }
    /// `*(u64 *)(dst + off) = imm`
    pub fn st_dw(&mut self, dst: u8, off: i16, imm: i32) -> &mut Self {
        self.op(0x7a, dst, 0, off, imm)
    }
    /// `*(u16 *)(dst + off) = src`
    pub fn stx_h(&mut self, dst: u8, off: i16, src: u8) -> &mut Self {
        self.op(0x6b, dst, src, off, 0)
    }
    /// `*(u64 *)(dst + off) = src`
    pub fn stx_dw(&mut self, dst: u8, off: i16, src: u8) -> &mut Self {
        self.op(0x7b, dst, src, off, 0)
    }
    /// `*(u32 *)(dst + off) = imm`
    pub fn st_w(&mut self, dst: u8, off: i16, imm: i32) -> &mut Self {
        self.op(0x62, dst, 0, off, imm)
    }
    /// `lock *(u64 *)(dst + off) += src`
    pub fn atomic_add_dw(&mut self, dst: u8, off: i16, src: u8) -> &mut Self {
        self.op(0xdb, dst, src, off, 0)
    }
    /// `dst = src`
    pub fn mov(&mut self, dst: u8, src: u8) -> &mut Self {
        self.op(0xbf, dst, src, 0, 0)
    }
    /// `dst = imm`
    pub fn mov_k(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.op(0xb7, dst, 0, 0, imm)
    }
    /// `dst += imm`
    pub fn add_k(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.op(0x07, dst, 0, 0, imm)
    }
    /// `dst += src`
    pub fn add(&mut self, dst: u8, src: u8) -> &mut Self {
        self.op(0x0f, dst, src, 0, 0)
    }
    /// `dst &= imm`
    pub fn and_k(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.op(0x57, dst, 0, 0, imm)
    }
    /// `dst <<= imm`
    pub fn lsh_k(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.op(0x67, dst, 0, 0, imm)
    }
    /// `dst |= src`
    pub fn or(&mut self, dst: u8, src: u8) -> &mut Self {
        self.op(0x4f, dst, src, 0, 0)
    }
    /// `dst >>= imm` (logical)
    pub fn rsh_k(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.op(0x77, dst, 0, 0, imm)
    }
    /// `dst >>= src` (logical)
    pub fn rsh(&mut self, dst: u8, src: u8) -> &mut Self {
        self.op(0x7f, dst, src, 0, 0)
    }
    /// `dst ^= src`
    pub fn xor(&mut self, dst: u8, src: u8) -> &mut Self {
        self.op(0xaf, dst, src, 0, 0)
    }
    /// `dst ^= imm`
    pub fn xor_k(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.op(0xa7, dst, 0, 0, imm)
    }
    /// `dst *= src` (64 bits, wrapping)
    pub fn mul(&mut self, dst: u8, src: u8) -> &mut Self {
        self.op(0x2f, dst, src, 0, 0)
    }
    /// `dst = imm` (64 bits: the two-slot `ld_imm64`)
    pub fn ld_imm64(&mut self, dst: u8, imm: u64) -> &mut Self {
        self.op(0x18, dst, 0, 0, imm as u32 as i32).op(0, 0, 0, 0, (imm >> 32) as u32 as i32)
    }
    /// `*(u8 *)(dst + off) = src`
    pub fn stx_b(&mut self, dst: u8, off: i16, src: u8) -> &mut Self {
        self.op(0x73, dst, src, off, 0)
    }
    /// `dst /= imm` (unsigned)
    pub fn div_k(&mut self, dst: u8, imm: i32) -> &mut Self {
        self.op(0x37, dst, 0, 0, imm)
    }
    /// `dst = htobe16(dst)`: swaps the low two bytes on a little-endian
    /// host, zeroing the rest (a 16-bit load of a wire field, read as a
    /// number, or a number stored as a wire field).
    pub fn be16(&mut self, dst: u8) -> &mut Self {
        self.op(0xdc, dst, 0, 0, 16)
    }
    /// `dst -= src`
    pub fn sub(&mut self, dst: u8, src: u8) -> &mut Self {
        self.op(0x1f, dst, src, 0, 0)
    }
    /// `dst %= src` (unsigned)
    pub fn mod_x(&mut self, dst: u8, src: u8) -> &mut Self {
        self.op(0x9f, dst, src, 0, 0)
    }
    /// `dst = map` (the two-slot `ld_imm64` with a map fd)
    pub fn ld_map(&mut self, dst: u8, map_fd: i32) -> &mut Self {
        self.op(0x18, dst, PSEUDO_MAP_FD, 0, map_fd).op(0, 0, 0, 0, 0)
    }
    /// `call helper`
    pub fn call(&mut self, helper: i32) -> &mut Self {
        self.op(0x85, 0, 0, 0, helper)
    }
    /// `exit`
    pub fn exit(&mut self) -> &mut Self {
        self.op(0x95, 0, 0, 0, 0)
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: &'static str) -> &mut Self {
        self.jumps.push((self.insns.len(), to));
        self.op(code, dst, src, 0, imm)
    }
    /// `if dst > src goto to` (unsigned)
    pub fn jgt(&mut self, dst: u8, src: u8, to: &'static str) -> &mut Self {
        self.jump(0x2d, dst, src, 0, to)
    }
    /// `if dst >= src goto to` (unsigned)
    pub fn jge(&mut self, dst: u8, src: u8, to: &'static str) -> &mut Self {
        self.jump(0x3d, dst, src, 0, to)
    }
    /// `if dst > imm goto to` (unsigned)
    pub fn jgt_k(&mut self, dst: u8, imm: i32, to: &'static str) -> &mut Self {
        self.jump(0x25, dst, 0, imm, to)
    }
    /// `if dst < imm goto to` (unsigned)
    pub fn jlt_k(&mut self, dst: u8, imm: i32, to: &'static str) -> &mut Self {
        self.jump(0xa5, dst, 0, imm, to)
    }
    /// `if dst == src goto to`
    pub fn jeq(&mut self, dst: u8, src: u8, to: &'static str) -> &mut Self {
        self.jump(0x1d, dst, src, 0, to)
    }
    /// `if dst != src goto to`
    pub fn jne(&mut self, dst: u8, src: u8, to: &'static str) -> &mut Self {
        self.jump(0x5d, dst, src, 0, to)
    }
    /// `goto to`
    pub fn ja(&mut self, to: &'static str) -> &mut Self {
        self.jump(0x05, 0, 0, 0, to)
    }
    /// `if dst <= imm goto to` (unsigned)
    pub fn jle_k(&mut self, dst: u8, imm: i32, to: &'static str) -> &mut Self {
        self.jump(0xb5, dst, 0, imm, to)
    }
    /// `if dst == imm goto to`
    pub fn jeq_k(&mut self, dst: u8, imm: i32, to: &'static str) -> &mut Self {
        self.jump(0x15, dst, 0, imm, to)
    }
    /// `if dst != imm goto to`
    pub fn jne_k(&mut self, dst: u8, imm: i32, to: &'static str) -> &mut Self {
        self.jump(0x55, dst, 0, imm, to)
    }
    /// Places `name` at the next instruction.
    ///
    /// # Panics
    /// If `name` is placed twice.
    pub fn label(&mut self, name: &'static str) -> &mut Self {
        assert!(self.labels.iter().all(|l| l.0 != name), "label {name} placed twice");
        self.labels.push((name, self.insns.len()));
        self
    }
    /// The instructions, with every jump pointed at its label.
    pub fn finish(&self) -> Vec<Insn> {
        self.resolved().into_iter().map(|(code, dst, src, off, imm)| Insn::new(code, dst, src, off, imm)).collect()
    }

    /// (code, dst, src, off, imm) of each instruction, jumps resolved.
    fn resolved(&self) -> Vec<(u8, u8, u8, i16, i32)> {
        let mut raw = self.insns.clone();
        for &(at, to) in &self.jumps {
            let target = self.labels.iter().find(|l| l.0 == to).unwrap_or_else(|| panic!("no label {to}")).1;
            // Jump offsets count from the instruction after the jump.
            raw[at].3 = i16::try_from(target as i64 - at as i64 - 1).expect("jump within ±32767 instructions");
        }
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_immediates_take_two_slots() {
        let mut a = Asm::default();
        a.ld_imm64(R4, 0x0000_0100_0000_01b3);
        assert_eq!(a.resolved(), vec![(0x18, 4, 0, 0, 0x1b3), (0, 0, 0, 0, 0x100)]);
    }

    #[test]
    fn jumps_land_on_their_labels() {
        let mut a = Asm::default();
        a.jeq_k(R0, 0, "out").mov_k(R0, 1).ld_map(R1, 5).label("out").exit();
        let r = a.resolved();
        assert_eq!(r.len(), 5);
        // From instruction 0, skip mov and the two ld_imm64 slots.
        assert_eq!(r[0], (0x15, 0, 0, 3, 0));
        assert_eq!(r[2], (0x18, 1, PSEUDO_MAP_FD, 0, 5));
        assert_eq!(a.finish().len(), 5);
    }
}
