//! Counters the polling threads write and the control thread reads.
//!
//! Each `PortStats` is written by exactly one polling thread (a port has
//! one per thread that touches it), so updates are plain relaxed stores of
//! thread-local sums: no contended atomics on the packet path. Readers add
//! the per-thread copies up.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a frame was dropped. Every dropped frame is counted under one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// Longer than the largest frame a port buffer holds.
    Oversize,
    /// A VLAN tag cut short, or an unsupported tag stack (802.1ad outer tag).
    BadVlan,
    /// Multicast or broadcast source MAC.
    BadSrcMac,
    /// The frame's VLAN is not carried by the ingress or egress port.
    VlanFiltered,
    /// The destination was learned on the port the frame came in on.
    Hairpin,
    /// The ingress port is not (or no longer) in a bridge.
    NoBridge,
    /// The egress port's transmit ring was full.
    TxFull,
    /// No free buffer to copy a flooded frame or take a received one.
    NoBuffer,
    /// The egress port is down or went away.
    PortDown,
    /// A frame on an uplink that is not VXLAN for a local VTEP.
    NotVxlan,
    /// VXLAN flags other than the I flag alone.
    VxlanBadFlags,
    /// VXLAN to a local VTEP with a VNI no tunnel port has.
    VxlanUnknownVni,
    /// VXLAN from an address that is not a remote of the tunnel.
    VxlanUnknownVtep,
    /// VXLAN headers or inner frame cut short.
    VxlanTruncated,
    /// The inner frame would not fit the uplink MTU once encapsulated.
    TunnelMtu,
    /// The next hop toward the remote VTEP is not resolved yet.
    NoNeighbor,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 17] = [
        DropReason::Runt,
        DropReason::Oversize,
        DropReason::BadVlan,
        DropReason::BadSrcMac,
        DropReason::VlanFiltered,
        DropReason::Hairpin,
        DropReason::NoBridge,
        DropReason::TxFull,
        DropReason::NoBuffer,
        DropReason::PortDown,
        DropReason::NotVxlan,
        DropReason::VxlanBadFlags,
        DropReason::VxlanUnknownVni,
        DropReason::VxlanUnknownVtep,
        DropReason::VxlanTruncated,
        DropReason::TunnelMtu,
        DropReason::NoNeighbor,
    ];

    /// The stable name shown by `rvsctl stats` and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::Oversize => "oversize",
            DropReason::BadVlan => "bad_vlan",
            DropReason::BadSrcMac => "bad_src_mac",
            DropReason::VlanFiltered => "vlan_filtered",
            DropReason::Hairpin => "hairpin",
            DropReason::NoBridge => "no_bridge",
            DropReason::TxFull => "tx_full",
            DropReason::NoBuffer => "no_buffer",
            DropReason::PortDown => "port_down",
            DropReason::NotVxlan => "not_vxlan",
            DropReason::VxlanBadFlags => "vxlan_bad_flags",
            DropReason::VxlanUnknownVni => "vxlan_unknown_vni",
            DropReason::VxlanUnknownVtep => "vxlan_unknown_vtep",
            DropReason::VxlanTruncated => "vxlan_truncated",
            DropReason::TunnelMtu => "tunnel_mtu",
            DropReason::NoNeighbor => "no_neighbor",
        }
    }
}

/// Number of drop reasons.
pub const DROP_REASONS: usize = DropReason::ALL.len();

/// Counters of one port as seen by one polling thread.
#[derive(Debug, Default)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: AtomicU64,
    /// Bytes received.
    pub rx_bytes: AtomicU64,
    /// Frames sent.
    pub tx_packets: AtomicU64,
    /// Bytes sent.
    pub tx_bytes: AtomicU64,
    /// Source MACs not learned because the bridge was at its limit.
    pub learn_refused: AtomicU64,
    /// Received frames decided to go to one port (for an uplink: VXLAN
    /// frames handed to their tunnel port).
    pub forwarded: AtomicU64,
    /// Received frames decided to be flooded in their bridge and VLAN.
    pub flooded: AtomicU64,
    /// Frames the kernel dropped before rvs received them (AF_XDP: RX ring
    /// full, frame larger than a buffer), read about once a second.
    pub kernel_drops: AtomicU64,
    /// Frames dropped, by reason (`DropReason as usize`).
    pub drops: [AtomicU64; DROP_REASONS],
}

/// A plain copy of port counters, for adding up and printing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Source MACs not learned because of the bridge limit.
    pub learn_refused: u64,
    /// Received frames sent on to one port.
    pub forwarded: u64,
    /// Received frames flooded.
    pub flooded: u64,
    /// Frames the kernel dropped before rvs received them.
    pub kernel_drops: u64,
    /// Drops by reason.
    pub drops: [u64; DROP_REASONS],
}

impl PortStats {
    /// Adds `n` to a counter. Only the owning thread writes, so a relaxed
    /// load and store (no read-modify-write) is exact.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Counts one dropped frame.
    #[inline]
    pub fn drop_one(&self, reason: DropReason) {
        Self::add(&self.drops[reason as usize], 1);
    }

    /// Counts `n` dropped frames.
    #[inline]
    pub fn drop_n(&self, reason: DropReason, n: u64) {
        Self::add(&self.drops[reason as usize], n);
    }

    /// A copy of the counters.
    pub fn read(&self) -> PortCounters {
        PortCounters {
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            learn_refused: self.learn_refused.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            flooded: self.flooded.load(Relaxed),
            kernel_drops: self.kernel_drops.load(Relaxed),
            drops: std::array::from_fn(|i| self.drops[i].load(Relaxed)),
        }
    }
}

impl PortCounters {
    /// Adds `other` into `self`.
    pub fn accumulate(&mut self, other: &PortCounters) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.learn_refused += other.learn_refused;
        self.forwarded += other.forwarded;
        self.flooded += other.flooded;
        self.kernel_drops += other.kernel_drops;
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            *a += b;
        }
    }

    /// Total frames dropped.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// Counters of one polling thread.
#[derive(Debug, Default)]
pub struct ThreadStats {
    /// Frames received by this thread.
    pub packets: AtomicU64,
    /// Poll rounds that moved at least one frame.
    pub busy_rounds: AtomicU64,
    /// Poll rounds that found nothing.
    pub idle_rounds: AtomicU64,
    /// Nanoseconds spent in busy rounds.
    pub busy_ns: AtomicU64,
    /// Nanoseconds spent in idle rounds.
    pub idle_ns: AtomicU64,
    /// The snapshot generation the thread runs.
    pub generation: AtomicU64,
    /// TSC cycles in busy rounds.
    pub busy_cycles: AtomicU64,
    /// TSC cycles in idle rounds (sleep included).
    pub idle_cycles: AtomicU64,
    /// Flow cache hits.
    pub cache_hits: AtomicU64,
    /// Flow cache misses.
    pub cache_misses: AtomicU64,
    /// Flow cache evictions.
    pub cache_evictions: AtomicU64,
    /// Flow cache slots in use.
    pub cache_entries: AtomicU64,
}
